# Functions shared by scripts/bench.sh and scripts/bench-cluster.sh (sourced by both, not run on its own).
# The sourcing script sets PROG (its name, for messages) before calling any of these.
# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are read by the sourcing script

# set_pinning DESCRIPTION: on 2+ CPUs, servers on CPU 1 and the load generator on CPU 0, all at nice -10;
# sets SERVER_CPU and CLIENT_CPU (command prefixes) and PINNING (DESCRIPTION, or "not pinned" on one CPU).
set_pinning() {
    if (($(nproc) >= 2)); then
        SERVER_CPU=(nice -n -10 taskset -c 1)
        CLIENT_CPU=(nice -n -10 taskset -c 0)
        PINNING=$1
    else
        SERVER_CPU=(nice -n -10)
        CLIENT_CPU=(nice -n -10)
        PINNING="one CPU only: not pinned"
    fi
}

# stop_process PID: SIGTERM, up to 5 s (polled every 0.1 s), then SIGKILL; reaps it.
stop_process() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# http_response NS PATH SECONDS: GET http://127.0.0.1:6767/PATH inside NS (bash's /dev/tcp, no other tool),
# bounded by SECONDS; prints the raw HTTP response (status line, headers, body).
http_response() {
    # shellcheck disable=SC2016 # the inner script expands $1 itself
    timeout "$3" ip netns exec "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6767 || exit 1
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3
        cat <&3' http_get "$2" 2>/dev/null
}

# perfdhcp_counts FILE: "<DISCOVERs sent> <ACKs received>" from perfdhcp's final report.
perfdhcp_counts() {
    awk '/Statistics for: DISCOVER-OFFER/ {s = "do"} /Statistics for: REQUEST-ACK/ {s = "ra"}
         /sent packets:/ {if (s == "do") d = $3}
         /received packets:/ {if (s == "ra") a = $3}
         END {printf "%d %d\n", d, a}' "$1"
}

# perfdhcp_result FILE RATE: the outcome of one perfdhcp run of PERIOD seconds asked for RATE/s; sets SENT,
# ACKED, M_XPS (ACKs a second), M_LOSS (percent of the exchanges lost) and M_OK (1: under 1% lost). Exits
# if perfdhcp sent nothing.
perfdhcp_result() {
    local out=$1 rate=$2
    read -r SENT ACKED < <(perfdhcp_counts "$out")
    if ((SENT == 0)); then
        echo "$PROG: perfdhcp sent nothing at $rate/s:"
        tail -20 "$out"
        exit 1
    fi
    M_XPS=$((ACKED / PERIOD))
    M_LOSS=$(awk -v s="$SENT" -v a="$ACKED" 'BEGIN {printf "%.2f", (s - a) * 100 / s}')
    M_OK=$(awk -v l="$M_LOSS" 'BEGIN {print (l < 1.0) ? 1 : 0}')
}

# measure_twice KIND RATE: measure (defined by the sourcing script), and once more if the first run lost 1%
# or more.
measure_twice() {
    measure "$1" "$2"
    ((M_OK)) || measure "$1" "$2"
}

# warn_if_tmpfs DIR: fsync on tmpfs costs nothing; sets fs_type.
warn_if_tmpfs() {
    fs_type=$(stat -f -c %T "$1")
    if [[ $fs_type == tmpfs || $fs_type == ramfs ]]; then
        echo "WARNING: data directories are on $fs_type, where fsync costs nothing; set BENCH_DIR to a disk directory"
    fi
}
