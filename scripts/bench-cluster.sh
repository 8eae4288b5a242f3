#!/usr/bin/env bash
# Leasehold cluster benchmark (issue 3), in ONE run on one private L2 segment (scripts/netns.sh: 3 server
# namespaces 10.77.0.1-3/16, a perfdhcp namespace and a probe namespace), pinned like scripts/bench.sh:
#   (a) sustained perfdhcp 4-way exchanges/s (drops < 1%) against a 3-node leasehold cluster (fsync on);
#   (b) the same against a Kea HA hot-standby pair (kea-dhcp4 + libdhcp_ha.so + libdhcp_lease_cmds.so,
#       memfile, raw sockets, default HA timers, peers talking through the HA hook's dedicated HTTP
#       listener with multi-threading on, one packet thread), and the ratio (a)/(b);
#   (c) failover time: clients that never stop asking (tests/examples/failover_probe.rs: 16 machines doing
#       DORA over and over, retransmitting like real clients with a growing `secs`), kill -9 of the leasehold
#       leader (--failover-runs times, a fresh cluster each time) and of the Kea primary (--kea-failover-runs
#       times, each bounded by --kea-failover-limit seconds); the gap is the time between the last ACK
#       before the kill and the first ACK from another server after it. Each gap, the median and the max.
#   (c') rolling restart (--rolling-runs times, a fresh cluster each time): the same probe running, every node
#       in turn (the current leader first whenever it has not been restarted yet) gets SIGTERM, which makes a
#       leader hand leadership to the most up-to-date follower before it exits, is started again with the same
#       flags and waited for (/healthz 200 and the leader's applied index); the answer gap of a restart is the
#       longest time between two ACKs (from any server) from the SIGTERM until the node is back. Each gap, the
#       median and the max, next to the kill -9 figures; also the same measure while nothing restarts (the
#       probe's own rhythm) and the slowest single DORA in the windows (a machine whose REQUEST named the old
#       leader starts over after 4 unanswered tries).
#   (d) with --stability-seconds S: a fresh cluster under perfdhcp load for S seconds (--stability-rate, default
#       90% of (a), else 4,000/s); leader changes counted by Raft term before and after (must be 0).
#   (e) with --catchup-leases N: a cluster filled with N leases (failover_probe as a loader: sequential MACs);
#       a follower's data directory is wiped and the follower restarted with the same flags while perfdhcp
#       brings new clients at --catchup-rate/s (default 2,000): time until it has applied the leader's index,
#       the leader's ACKs/s before and during the catch-up; then that follower restarted with its data: time
#       to /healthz 200 and to the leader's index.
#   (f) with --store etcd: also 3 nodes keeping their pool in etcd (README "Keeping the pool in etcd"): three
#       etcd members (Debian's etcd 3.4, flags as in tests/etcd_store.rs), one in each server namespace beside
#       its node, pinned with the servers, data directories in the run's scratch directory (etcd fsyncs its
#       WAL before a transaction commits), started fresh for every cluster and stopped by PID; the nodes run
#       `serve --store etcd --etcd-endpoints ...` (default prefix, election TTL 2 s). (a)'s rate search and
#       (c)'s kill -9 (--failover-runs times; the victim is the node GET /v1/cluster names as leader_id) for
#       it, printed side by side with the Raft store and Kea HA, with the ratios; after each etcd-mode run the
#       nodes' mean transaction latency (/metrics leasehold_etcd_txn_latency_microseconds_sum / _transactions_total)
#       and etcd's mean WAL fsync and backend commit times (its own /metrics).
#   (g) with --store etcd (or --cpu-rate R): server CPU per exchange at one common rate for every server kind
#       measured: fresh servers, new clients at R/s (default 1,000/s, lowered to 80% of the lowest rate the
#       search found if that is less) for --cpu-period s (default 10); utime + stime from /proc of the three
#       nodes (both Kea servers) over the run divided by the exchanges ACKed; in etcd mode the three etcd
#       members' CPU is summed separately and added. The ratios.
#
#   scripts/bench-cluster.sh [--period SECONDS] [--to broadcast|leader] [--failover-runs N]
#                            [--kea-failover-runs N] [--kea-failover-limit SECONDS] [--skip-throughput]
#                            [--skip-failover] [--rolling-runs N] [--no-kea] [--no-leasehold-throughput] [--kea-threads N]
#                            [--wait-quiet SECONDS] [--no-build] [--stability-seconds S] [--stability-rate R]
#                            [--catchup-leases N] [--catchup-rate R] [--store raft|etcd] [--cpu-rate R]
#                            [--cpu-period SECONDS]
#
# --no-leasehold-throughput skips the Raft store's rate search only (with --store etcd the etcd store's runs).
# With --store etcd the build has the etcd feature (-p leasehold-node -p leasehold-tests: the tests crate
# enables it); both stores then run that one binary.
#
# perfdhcp acts as a relay (10.77.0.250 on its interface, so giaddr is set and the servers answer to it on
# port 67). --to broadcast (default) sends every message to 255.255.255.255, so every node of the cluster and
# both Kea servers receive all traffic, as on a shared segment or with a relay that forwards to every server;
# --to leader sends to the leasehold leader's (or Kea primary's) address only.
# Rate search as in scripts/bench.sh: double from 2,000/s until a rate fails (two runs in a row with 1% or more
# lost), then bisect three times; every run has fresh servers and data directories and lasts --period s.
# Pinning on 2+ CPUs: every server process on CPU 1 (the three nodes share it, so do both Kea servers),
# perfdhcp (-g single) and the probe on CPU 0, all at nice -10. Run it on a quiet machine: --wait-quiet S
# waits up to S seconds for the 1-minute load average to fall under 0.5 and says so if it does not.
#
# Root is needed (namespaces). All traffic stays on the segment; every process is started here and killed by
# PID; everything is removed on exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"
PROG=bench-cluster.sh
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

PERIOD=5
TO=broadcast
FAILOVER_RUNS=5
ROLLING_RUNS=2
KEA_FAILOVER_RUNS=2
KEA_FAILOVER_LIMIT=120
LH_FAILOVER_LIMIT=30
THROUGHPUT=1
FAILOVER=1
KEA=1
LH_THROUGHPUT=1
KEA_THREADS=1
WAIT_QUIET=0
BUILD=1
STABILITY_SECONDS=0
STABILITY_RATE=0
CATCHUP_LEASES=0
CATCHUP_RATE=2000
CATCHUP_BEFORE=15
CATCHUP_TIMEOUT=120
START_RATE=2000
MAX_RATE=128000
CLIENTS=60000
STORE=raft
CPU_RATE=""
CPU_PERIOD=10
while (($#)); do
    case $1 in
    --period) PERIOD=$2; shift 2 ;;
    --to) TO=$2; shift 2 ;;
    --failover-runs) FAILOVER_RUNS=$2; shift 2 ;;
    --rolling-runs) ROLLING_RUNS=$2; shift 2 ;;
    --kea-failover-runs) KEA_FAILOVER_RUNS=$2; shift 2 ;;
    --kea-failover-limit) KEA_FAILOVER_LIMIT=$2; shift 2 ;;
    --skip-throughput) THROUGHPUT=0; shift ;;
    --skip-failover) FAILOVER=0; shift ;;
    --no-kea) KEA=0; shift ;;
    --no-leasehold-throughput) LH_THROUGHPUT=0; shift ;;
    --kea-threads) KEA_THREADS=$2; shift 2 ;;
    --wait-quiet) WAIT_QUIET=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --stability-seconds) STABILITY_SECONDS=$2; shift 2 ;;
    --stability-rate) STABILITY_RATE=$2; shift 2 ;;
    --catchup-leases) CATCHUP_LEASES=$2; shift 2 ;;
    --catchup-rate) CATCHUP_RATE=$2; shift 2 ;;
    --store) STORE=$2; shift 2 ;;
    --cpu-rate) CPU_RATE=$2; shift 2 ;;
    --cpu-period) CPU_PERIOD=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "bench-cluster.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
number() { [[ $2 =~ ^[0-9]+$ && $2 -ge $3 && $2 -le $4 ]] || { echo "bench-cluster.sh: $1 must be $3..$4" >&2; exit 2; }; }
number --period "$PERIOD" 1 60
number --failover-runs "$FAILOVER_RUNS" 0 50
number --rolling-runs "$ROLLING_RUNS" 0 20
number --kea-failover-runs "$KEA_FAILOVER_RUNS" 0 10
number --kea-failover-limit "$KEA_FAILOVER_LIMIT" 10 600
number --wait-quiet "$WAIT_QUIET" 0 3600
number --kea-threads "$KEA_THREADS" 1 16
number --stability-seconds "$STABILITY_SECONDS" 0 7200
number --stability-rate "$STABILITY_RATE" 0 200000
number --catchup-leases "$CATCHUP_LEASES" 0 4000000
number --catchup-rate "$CATCHUP_RATE" 100 100000
[[ $TO == broadcast || $TO == leader ]] || { echo "bench-cluster.sh: --to broadcast|leader" >&2; exit 2; }
[[ $STORE == raft || $STORE == etcd ]] || { echo "bench-cluster.sh: --store raft|etcd" >&2; exit 2; }
# The CPU phase: asked for with --cpu-rate, or part of --store etcd (1,000/s unless the search says less).
CPU_AUTO=0
if [[ -z $CPU_RATE ]]; then
    CPU_RATE=0
    [[ $STORE == etcd ]] && CPU_RATE=1000 CPU_AUTO=1
fi
number --cpu-rate "$CPU_RATE" 0 100000
number --cpu-period "$CPU_PERIOD" 1 120
[[ $(id -u) -eq 0 ]] || { echo "bench-cluster.sh: must run as root (network namespaces)" >&2; exit 1; }
PATH=$PATH:/usr/sbin:/sbin
for tool in perfdhcp taskset; do
    command -v $tool >/dev/null || { echo "bench-cluster.sh: $tool missing (scripts/test.sh installs it)" >&2; exit 1; }
done
KEA_HOOKS=/usr/lib/x86_64-linux-gnu/kea/hooks
if ((KEA)); then
    command -v kea-dhcp4 >/dev/null || { echo "bench-cluster.sh: kea-dhcp4 missing (or pass --no-kea)" >&2; exit 1; }
    for hook in libdhcp_ha.so libdhcp_lease_cmds.so; do
        [[ -f $KEA_HOOKS/$hook ]] || { echo "bench-cluster.sh: $KEA_HOOKS/$hook missing" >&2; exit 1; }
    done
fi
if [[ $STORE == etcd ]]; then
    for tool in etcd etcdctl; do
        command -v $tool >/dev/null || { echo "bench-cluster.sh: $tool missing (Debian: etcd-server, etcd-client)" >&2; exit 1; }
    done
fi

set_pinning "servers on CPU 1, perfdhcp -g single / probe on CPU 0"

BIN=${LEASEHOLD_RELEASE_BIN:-$REPO/target/release/leasehold}
PROBE=${FAILOVER_PROBE_BIN:-$REPO/target/release/examples/failover_probe}
if ((BUILD)); then
    echo "building the release binary and the failover probe..."
    if [[ $STORE == etcd ]]; then
        # One invocation: leasehold-tests enables leasehold-node's etcd feature for both.
        cargo build --release -p leasehold-node -p leasehold-tests --bin leasehold --example failover_probe
    else
        cargo build --release --bin leasehold
        cargo build --release -p leasehold-tests --example failover_probe
    fi
fi
[[ -x $BIN ]] || { echo "bench-cluster.sh: $BIN missing" >&2; exit 1; }
[[ -x $PROBE ]] || { echo "bench-cluster.sh: $PROBE missing" >&2; exit 1; }

NAME=lh$$k
PERF_NS=$NAME-c1
PROBE_NS=$NAME-c2
mkdir -p "$REPO/target"
WORK=$(mktemp -d "${BENCH_DIR:-$REPO/target}/bench-cluster.XXXXXX")
declare -A PID=()
PROBE_PID=""

# stop_pid KEY: SIGTERM the process started under KEY, up to 5 s, then SIGKILL; reap it.
stop_pid() {
    local key=$1 pid=${PID[$1]:-}
    [[ -n $pid ]] || return 0
    stop_process "$pid"
    unset "PID[$key]"
}

stop_all() {
    local key
    for key in "${!PID[@]}"; do stop_pid "$key"; done
}

stop_probe() {
    [[ -n $PROBE_PID ]] || return 0
    kill -TERM "$PROBE_PID" 2>/dev/null || true
    wait "$PROBE_PID" 2>/dev/null || true
    PROBE_PID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_probe
    stop_all
    scripts/netns.sh down "$NAME" || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load_average() { cut -d' ' -f1 /proc/loadavg; }
is_quiet() { awk -v l="$(load_average)" 'BEGIN {exit !(l < 0.5)}'; }
if ((WAIT_QUIET > 0)) && ! is_quiet; then
    echo "waiting up to ${WAIT_QUIET} s for the load average ($(load_average)) to fall under 0.5..."
    for ((waited = 0; waited < WAIT_QUIET; waited += 10)); do
        is_quiet && break
        sleep 10
    done
fi
if ! is_quiet; then
    echo "WARNING: load average $(load_average): other processes compete for the CPUs, so every figure below is"
    echo "         low and noisy; the ratios (same run, same pinning) are still comparable"
fi

scripts/netns.sh gc
scripts/netns.sh up "$NAME" 3 2 16
# perfdhcp needs an address on its interface (it then acts as a relay); 10.77.0.250 is outside the pool.
ip -n "$PERF_NS" addr add 10.77.0.250/16 dev eth0
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/cluster.secret"

warn_if_tmpfs "$WORK"

# http_get NS PATH: GET http://127.0.0.1:6767/PATH inside NS (bash's /dev/tcp); prints "STATUS BODY".
http_get() {
    http_response "$1" "$2" 5 |
        awk 'NR == 1 {status = $2; next} body {b = b $0} /^\r?$/ {body = 1} END {print status, b}'
}

RUN=0
LEADER=""
# start_cluster: a fresh 3-node leasehold cluster (fresh data directories, fsync on); waits until all three
# nodes answer /healthz 200 naming the same leader (polled every 0.1 s, at most 30 s); sets LEADER.
# With CONFIG (a file holding [limits] and [[pool]] tables), the pools come from it instead of the flags.
start_cluster() {
    local config=${1:-}
    RUN=$((RUN + 1))
    CLUSTER_DIR=$WORK/cluster-$RUN
    local dir=$CLUSTER_DIR i
    mkdir -p "$dir"
    local peers=() pools=()
    for i in 1 2 3; do peers+=(--peer "$i=10.77.0.$i:6768"); done
    if [[ -n $config ]]; then
        pools=(--config "$config")
    else
        # perfdhcp is one relay bringing thousands of new clients a second: lift the per-relay token
        # bucket (limits.rate, README "Hostile networks"), as an operator would for such a relay.
        printf '%s\n' '[limits.rate]' 'relay_messages_per_sec = 1000000.0' 'relay_burst_messages = 1000000' \
            >"$dir/limits.toml"
        pools=(--config "$dir/limits.toml" --subnet-mask 255.255.0.0 --ip-start 10.77.1.0 --ip-end 10.77.255.254
            --lease-time 3600)
    fi
    for i in 1 2 3; do
        NODE_ARGS[$i]="serve --interface eth0 --server-ip 10.77.0.$i ${pools[*]} --data-dir $dir/node$i \
            --admin-listen 127.0.0.1:6767 --log-level warning --node-id $i ${peers[*]} \
            --cluster-listen 10.77.0.$i:6768 --cluster-secret-file $WORK/cluster.secret"
        start_node "$i"
    done
    local tries answer ids
    for ((tries = 0; tries < 300; tries++)); do
        ids=()
        for i in 1 2 3; do
            kill -0 "${PID[node$i]}" 2>/dev/null || { echo "node $i exited at start:"; tail -20 "$dir/node$i.log"; exit 1; }
            answer=$(http_get "$NAME-s$i" /healthz || true)
            [[ $answer == 200* ]] && ids+=("$(grep -o '"leader_id":[0-9]*' <<<"$answer" | cut -d: -f2)")
        done
        if ((${#ids[@]} == 3)) && [[ ${ids[0]} == "${ids[1]}" && ${ids[1]} == "${ids[2]}" ]]; then
            LEADER=${ids[0]}
            return 0
        fi
        sleep 0.1
    done
    echo "bench-cluster.sh: the cluster elected no leader within 30 s:"
    for i in 1 2 3; do tail -5 "$dir/node$i.log"; done
    exit 1
}

# start_node I: start node I of the current cluster with the arguments start_cluster gave it (appending to
# its log).
declare -A NODE_ARGS=()
start_node() {
    local i=$1
    # shellcheck disable=SC2086 # NODE_ARGS holds words without spaces inside them
    ip netns exec "$NAME-s$i" "${SERVER_CPU[@]}" "$BIN" ${NODE_ARGS[$i]} >>"$CLUSTER_DIR/node$i.log" 2>&1 &
    PID[node$i]=$!
}

stop_cluster() {
    local i
    for i in 1 2 3; do stop_pid "node$i"; done
}

# -- The etcd store (--store etcd) ------------------------------------------------------------------------------
ETCD_ENDPOINTS=http://10.77.0.1:2379,http://10.77.0.2:2379,http://10.77.0.3:2379

# start_etcd_members DIR: three fresh etcd members, member I in server namespace I (10.77.0.I:2379 for
# clients, :2380 for peers), data directories DIR/etcdI, pinned with the servers; waits (every 0.2 s, at
# most 30 s) until etcdctl finds all three healthy.
start_etcd_members() {
    local dir=$1 i initial=""
    for i in 1 2 3; do initial+="${initial:+,}e$i=http://10.77.0.$i:2380"; done
    for i in 1 2 3; do
        ip netns exec "$NAME-s$i" "${SERVER_CPU[@]}" etcd --name "e$i" --data-dir "$dir/etcd$i" \
            --listen-client-urls "http://10.77.0.$i:2379" --advertise-client-urls "http://10.77.0.$i:2379" \
            --listen-peer-urls "http://10.77.0.$i:2380" --initial-advertise-peer-urls "http://10.77.0.$i:2380" \
            --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "$NAME-$RUN" \
            >"$dir/etcd$i.log" 2>&1 &
        PID[etcd$i]=$!
    done
    local tries
    for ((tries = 0; tries < 150; tries++)); do
        for i in 1 2 3; do
            kill -0 "${PID[etcd$i]}" 2>/dev/null || { echo "etcd member $i exited at start:"; tail -20 "$dir/etcd$i.log"; exit 1; }
        done
        ETCDCTL_API=3 timeout 5 ip netns exec "$NAME-s1" etcdctl --endpoints "$ETCD_ENDPOINTS" \
            --command-timeout=2s endpoint health >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "bench-cluster.sh: etcd was not healthy within 30 s:"
    tail -5 "$dir/etcd1.log"
    exit 1
}

stop_etcd_members() {
    local i
    for i in 1 2 3; do stop_pid "etcd$i"; done
}

# start_etcd_cluster: fresh etcd members and 3 leasehold nodes keeping the pool in them (the pool and limits
# of start_cluster); waits until all three nodes' GET /v1/cluster name the same leader_id and that node
# answers as leader (polled every 0.1 s, at most 30 s); sets LEADER.
start_etcd_cluster() {
    RUN=$((RUN + 1))
    CLUSTER_DIR=$WORK/etcd-cluster-$RUN
    local dir=$CLUSTER_DIR i
    mkdir -p "$dir"
    start_etcd_members "$dir"
    printf '%s\n' '[limits.rate]' 'relay_messages_per_sec = 1000000.0' 'relay_burst_messages = 1000000' \
        >"$dir/limits.toml"
    for i in 1 2 3; do
        NODE_ARGS[$i]="serve --interface eth0 --server-ip 10.77.0.$i --config $dir/limits.toml \
            --subnet-mask 255.255.0.0 --ip-start 10.77.1.0 --ip-end 10.77.255.254 --lease-time 3600 \
            --data-dir $dir/node$i --admin-listen 127.0.0.1:6767 --log-level warning --node-id $i \
            --store etcd --etcd-endpoints $ETCD_ENDPOINTS"
        start_node "$i"
    done
    local tries answer ids leader_answers
    for ((tries = 0; tries < 300; tries++)); do
        ids=() leader_answers=""
        for i in 1 2 3; do
            kill -0 "${PID[node$i]}" 2>/dev/null || { echo "node $i exited at start:"; tail -20 "$dir/node$i.log"; exit 1; }
            answer=$(http_get "$NAME-s$i" /v1/cluster || true)
            [[ $answer == 200* ]] || continue
            ids+=("$(grep -o '"leader_id":[0-9]*' <<<"$answer" | cut -d: -f2)")
            [[ $answer == *'"answers_as_leader":true'* ]] && leader_answers=$i
        done
        if ((${#ids[@]} == 3)) && [[ -n ${ids[0]} && ${ids[0]} == "${ids[1]}" && ${ids[1]} == "${ids[2]}" &&
            $leader_answers == "${ids[0]}" ]]; then
            LEADER=${ids[0]}
            return 0
        fi
        sleep 0.1
    done
    echo "bench-cluster.sh: the nodes on etcd agreed on no elected node within 30 s:"
    for i in 1 2 3; do tail -5 "$dir/node$i.log"; done
    exit 1
}

stop_etcd_cluster() {
    stop_cluster
    stop_etcd_members
}

# etcd_metrics I: etcd member I's /metrics (Prometheus text), bounded by 5 s.
etcd_metrics() {
    # shellcheck disable=SC2016 # the inner script expands $1 itself
    timeout 5 ip netns exec "$NAME-s$1" bash -c 'exec 3<>/dev/tcp/$1/2379 || exit 1
        printf "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3
        cat <&3' etcd_metrics "10.77.0.$1" 2>/dev/null || true
}

# etcd_note: where an etcd-mode run's time went, summed over the three nodes and the three members (read
# before they stop): the nodes' mean transaction latency, etcd's mean WAL fsync and backend commit.
etcd_note() {
    local i txns=0 lat=0 n l
    for i in 1 2 3; do
        n=$(node_metric "$i" leasehold_etcd_transactions_total)
        l=$(node_metric "$i" leasehold_etcd_txn_latency_microseconds_sum)
        txns=$((txns + ${n:-0})) lat=$((lat + ${l:-0}))
    done
    local disk
    disk=$(for i in 1 2 3; do etcd_metrics "$i"; done | awk '
        $1 == "etcd_disk_wal_fsync_duration_seconds_sum" {fs += $2}
        $1 == "etcd_disk_wal_fsync_duration_seconds_count" {fn += $2}
        $1 == "etcd_disk_backend_commit_duration_seconds_sum" {cs += $2}
        $1 == "etcd_disk_backend_commit_duration_seconds_count" {cn += $2}
        END {printf "WAL fsync mean %.2f ms (%d), backend commit mean %.2f ms (%d)", fn ? fs * 1000 / fn : 0, fn,
            cn ? cs * 1000 / cn : 0, cn}')
    awk -v t="$txns" -v l="$lat" -v d="$disk" 'BEGIN {
        printf "etcd txn mean %.2f ms (%d txns); members: %s", t ? l / t / 1000 : 0, t, d}'
}

# start_kea_ha: a fresh Kea HA hot-standby pair (primary 10.77.0.1, standby 10.77.0.2), default HA timers;
# waits until both have logged the transition to HOT-STANDBY (polled every 0.2 s, at most 90 s). LEADER=1.
start_kea_ha() {
    RUN=$((RUN + 1))
    local dir=$WORK/kea-$RUN i
    mkdir -p "$dir"
    for i in 1 2; do
        mkdir -p "$dir/run$i"
        cat >"$dir/kea$i.json" <<EOF
{ "Dhcp4": {
  "interfaces-config": { "interfaces": ["eth0"], "dhcp-socket-type": "raw" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$dir/leases$i.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600,
  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": $KEA_THREADS, "packet-queue-size": 64 },
  "hooks-libraries": [
    { "library": "$KEA_HOOKS/libdhcp_lease_cmds.so" },
    { "library": "$KEA_HOOKS/libdhcp_ha.so", "parameters": { "high-availability": [ {
        "this-server-name": "server$i",
        "mode": "hot-standby",
        "multi-threading": { "enable-multi-threading": true, "http-dedicated-listener": true,
                             "http-listener-threads": $KEA_THREADS, "http-client-threads": $KEA_THREADS },
        "peers": [
          { "name": "server1", "url": "http://10.77.0.1:8001/", "role": "primary", "auto-failover": true },
          { "name": "server2", "url": "http://10.77.0.2:8001/", "role": "standby", "auto-failover": true }
        ] } ] } }
  ],
  "subnet4": [ { "id": 1, "subnet": "10.77.0.0/16", "pools": [ { "pool": "10.77.1.0 - 10.77.255.254" } ] } ],
  "loggers": [
    { "name": "kea-dhcp4", "output_options": [ { "output": "stdout" } ], "severity": "INFO" },
    { "name": "kea-dhcp4.leases", "output_options": [ { "output": "stdout" } ], "severity": "WARN" },
    { "name": "kea-dhcp4.packets", "output_options": [ { "output": "stdout" } ], "severity": "WARN" }
  ]
} }
EOF
        KEA_PIDFILE_DIR=$dir/run$i KEA_LOCKFILE_DIR=$dir/run$i ip netns exec "$NAME-s$i" "${SERVER_CPU[@]}" \
            kea-dhcp4 -c "$dir/kea$i.json" >"$dir/kea$i.log" 2>&1 &
        PID[kea$i]=$!
    done
    local tries
    for ((tries = 0; tries < 450; tries++)); do
        for i in 1 2; do
            kill -0 "${PID[kea$i]}" 2>/dev/null || { echo "kea $i exited at start:"; tail -20 "$dir/kea$i.log"; exit 1; }
        done
        if grep -qs 'to HOT-STANDBY state' "$dir/kea1.log" && grep -qs 'to HOT-STANDBY state' "$dir/kea2.log"; then
            LEADER=1
            return 0
        fi
        sleep 0.2
    done
    echo "bench-cluster.sh: the Kea HA pair did not reach HOT-STANDBY within 90 s:"
    grep -h HA_ "$dir/kea1.log" "$dir/kea2.log" | tail -10
    exit 1
}

stop_kea_ha() {
    stop_pid kea1
    stop_pid kea2
}

label() {
    case $1 in
    cluster) echo "leasehold 3-node cluster" ;;
    etcd) echo "leasehold 3 nodes on etcd" ;;
    kea-ha) echo "kea HA hot-standby" ;;
    esac
}

start_servers() {
    case $1 in
    cluster) start_cluster ;;
    etcd) start_etcd_cluster ;;
    kea-ha) start_kea_ha ;;
    esac
}
stop_servers() {
    case $1 in
    cluster) stop_cluster ;;
    etcd) stop_etcd_cluster ;;
    kea-ha) stop_kea_ha ;;
    esac
}

# measure KIND RATE: one bounded perfdhcp run against fresh servers; sets M_XPS, M_LOSS, M_OK.
measure() {
    local kind=$1 rate=$2
    start_servers "$kind"
    local target=()
    [[ $TO == leader ]] && target=("10.77.0.$LEADER")
    local out=$WORK/perfdhcp-$RUN.out
    timeout $((PERIOD + 30)) ip netns exec "$PERF_NS" "${CLIENT_CPU[@]}" perfdhcp -4 -l eth0 -g single \
        -r "$rate" -R "$CLIENTS" -p "$PERIOD" -W 300000 "${target[@]}" >"$out" 2>&1 || true
    M_NOTE=""
    [[ $kind != etcd ]] || M_NOTE=$(etcd_note)
    stop_servers "$kind"
    perfdhcp_result "$out" "$rate"
    local sent=$SENT
    local verdict="ok"
    ((M_OK)) || verdict="over 1% lost"
    M_SHORT=0
    if ((sent * 100 / PERIOD < rate * 95)); then
        # perfdhcp could not generate the rate it was asked for: the load generator, not the server, was the limit.
        M_SHORT=1
        verdict+="; perfdhcp sent only $((sent * 100 / PERIOD / rate))% of the $rate/s asked"
    fi
    printf '  %-26s offered %6d/s: %6d exchanges/s, drops %6s%% (%s)\n' "$(label "$kind")" "$((sent / PERIOD))" \
        "$M_XPS" "$M_LOSS" "$verdict"
    [[ -z $M_NOTE ]] || printf '  %-26s   %s\n' "" "$M_NOTE"
}

declare -A RESULT_XPS RESULT_LOSS RESULT_SHORT RESULT_NOTE RESULT_RATE
# search KIND: the highest rate with drops under 1% (as in scripts/bench.sh).
search() {
    local kind=$1 lo=0 hi=0 rate=$START_RATE best_xps=0 best_loss="-" best_short=0 best_note=""
    while ((rate <= MAX_RATE)); do
        measure_twice "$kind" "$rate"
        if ((M_OK)); then
            lo=$rate best_xps=$M_XPS best_loss=$M_LOSS best_short=$M_SHORT best_note=$M_NOTE
            # Asking perfdhcp for more than it can send measures perfdhcp: stop doubling.
            ((M_SHORT == 0)) || break
            rate=$((rate * 2))
        else
            hi=$rate
            break
        fi
    done
    # A server that loses 1% already at the starting rate: search downwards from there.
    if ((lo == 0)); then
        for rate in 1000 500 250; do
            measure_twice "$kind" "$rate"
            if ((M_OK)); then
                lo=$rate best_xps=$M_XPS best_loss=$M_LOSS best_short=$M_SHORT best_note=$M_NOTE
                break
            fi
            hi=$rate
        done
    fi
    local i mid
    for ((i = 0; i < 3 && hi > 0 && lo > 0; i++)); do
        mid=$(((lo + hi) / 2 / 125 * 125))
        ((mid > lo && mid < hi)) || break
        measure_twice "$kind" "$mid"
        if ((M_OK)); then
            lo=$mid best_xps=$M_XPS best_loss=$M_LOSS best_short=$M_SHORT best_note=$M_NOTE
        else
            hi=$mid
        fi
    done
    RESULT_XPS[$kind]=$best_xps
    RESULT_LOSS[$kind]=$best_loss
    RESULT_SHORT[$kind]=$best_short
    RESULT_NOTE[$kind]=$best_note
    RESULT_RATE[$kind]=$lo
}

# ack_count FILE: how many ACK lines the probe has written so far.
ack_count() {
    local n
    n=$(grep -c '^ack' "$1" 2>/dev/null || true)
    echo "${n:-0}"
}

# failover_once KIND LIMIT: fresh servers, the probe running, kill -9 of the leader / primary once the probe
# has 20 ACKs; waits (at most LIMIT s) for an ACK from another server. Sets GAP (seconds, or "" if none).
failover_once() {
    local kind=$1 limit=$2
    start_servers "$kind"
    local out=$WORK/probe-$RUN.out
    : >"$out"
    ip netns exec "$PROBE_NS" "${CLIENT_CPU[@]}" "$PROBE" --duration-s $((limit + 30)) --mac-base $((RUN << 20)) \
        >"$out" 2>"$out.err" &
    PROBE_PID=$!
    local tries
    for ((tries = 0; tries < 100; tries++)); do
        (($(ack_count "$out") >= 20)) && break
        kill -0 "$PROBE_PID" 2>/dev/null || { echo "the probe exited:"; cat "$out.err"; exit 1; }
        sleep 0.1
    done
    (($(ack_count "$out") >= 20)) || { echo "the probe got no ACKs in 10 s:"; tail "$out" "$out.err"; exit 1; }
    local victim=10.77.0.$LEADER key=node$LEADER
    [[ $kind != kea-ha ]] || key=kea1
    local killed_ms
    killed_ms=$(date +%s%3N)
    kill -KILL "${PID[$key]}"
    wait "${PID[$key]}" 2>/dev/null || true
    unset "PID[$key]"
    # Poll the probe's output (every 0.1 s, at most LIMIT s) for the first ACK from another server.
    for ((tries = 0; tries < limit * 10; tries++)); do
        awk -v k="$killed_ms" -v v="$victim" '$1 == "ack" && $2 > k && $4 != v {f = 1} END {exit !f}' "$out" && break
        sleep 0.1
    done
    stop_probe
    stop_servers "$kind"
    GAP=$(awk -v k="$killed_ms" -v v="$victim" '
        $1 == "ack" && $4 == v {last = $2}
        $1 == "ack" && $2 > k && $4 != v && !first {first = $2; by = $4}
        END {if (first && last) printf "%.2f %s", (first - last) / 1000, by}' "$out")
}

declare -A FAILOVER_LINE FAILOVER_MM
# failover KIND RUNS LIMIT: RUNS kills; prints each gap, then median and max.
failover() {
    local kind=$1 runs=$2 limit=$3 r gaps=() missed=0 gap by
    for ((r = 1; r <= runs; r++)); do
        failover_once "$kind" "$limit"
        if [[ -n $GAP ]]; then
            read -r gap by <<<"$GAP"
            gaps+=("$gap")
            printf '  %-26s run %d: %6.2f s from the last ACK before the kill to the first ACK from %s\n' \
                "$(label "$kind")" "$r" "$gap" "$by"
        else
            missed=$((missed + 1))
            printf '  %-26s run %d: no takeover within %d s\n' "$(label "$kind")" "$r" "$limit"
        fi
    done
    local summary
    if ((${#gaps[@]} > 0)); then
        summary=$(printf '%s\n' "${gaps[@]}" | sort -n | awk '{v[NR] = $1} END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "median %.2f s, max %.2f s", m, v[NR]}')
        FAILOVER_MM[$kind]=$(awk '{m = $2; x = $5} END {printf "%s / %s s", m, x}' <<<"$summary")
        summary+=" (${#gaps[@]} runs"
        ((missed == 0)) || summary+="; $missed more with no takeover within $limit s"
        summary+=")"
    else
        summary="no takeover within $limit s ($runs runs)"
    fi
    FAILOVER_LINE[$kind]="$(label "$kind") failover: $summary"
}

# -- Rolling restart: the probe running; each node in turn gets SIGTERM (a leader hands over first), waits for
# the exit, starts again with the same flags; then /healthz 200 on it and its applied index at the leader's.
declare -a ROLLING_GAPS=() ROLLING_DORAS=() ROLLING_STEADY=()
rolling_once() {
    start_cluster
    local out=$WORK/rolling-$RUN.out
    : >"$out"
    ip netns exec "$PROBE_NS" "${CLIENT_CPU[@]}" "$PROBE" --duration-s 300 --mac-base $((RUN << 20)) \
        >"$out" 2>"$out.err" &
    PROBE_PID=$!
    local tries
    for ((tries = 0; tries < 100; tries++)); do
        (($(ack_count "$out") >= 20)) && break
        kill -0 "$PROBE_PID" 2>/dev/null || { echo "the probe exited:"; cat "$out.err"; exit 1; }
        sleep 0.1
    done
    (($(ack_count "$out") >= 20)) || { echo "the probe got no ACKs in 10 s:"; tail "$out" "$out.err"; exit 1; }
    # The steady state to compare with: the longest time between two ACKs while nothing restarts (the probe's
    # 16 machines pause --interval-ms between exchanges, so ACKs come in bursts).
    local steady_from
    steady_from=$(date +%s%3N)
    for ((tries = 0; tries < 100; tries++)); do
        (($(ack_count "$out") >= 300)) && break
        sleep 0.1
    done
    ROLLING_STEADY+=("$(awk -v s="$steady_from" '$1 == "ack" {if (have && $2 >= s && $2 - prev > g) g = $2 - prev
        prev = $2; have = 1} END {printf "%.3f\n", g / 1000}' "$out")")
    echo "  $(label cluster)   steady state before the restarts: longest answer gap ${ROLLING_STEADY[-1]} s"
    local done_nodes=" " leader=$LEADER id was signalled exited back target applied answer gap dora
    while ((${#done_nodes} < 7)); do
        if [[ $done_nodes == *" $leader "* ]]; then
            for id in 1 2 3; do [[ $done_nodes == *" $id "* ]] || break; done
        else
            id=$leader
        fi
        was=""
        [[ $id == "$leader" ]] && was=" (leader)"
        signalled=$(date +%s%3N)
        kill -TERM "${PID[node$id]}"
        wait "${PID[node$id]}" 2>/dev/null || { echo "node $id exited with an error after SIGTERM:"; tail -5 "$CLUSTER_DIR/node$id.log"; }
        exited=$(date +%s%3N)
        unset "PID[node$id]"
        start_node "$id"
        back=""
        for ((tries = 0; tries < 600; tries++)); do
            answer=$(http_get "$NAME-s$id" /healthz || true)
            if [[ $answer == 200* ]]; then
                leader=$(grep -o '"leader_id":[0-9]*' <<<"$answer" | cut -d: -f2)
                target=$(node_metric "$leader" leasehold_applied_index)
                applied=$(node_metric "$id" leasehold_applied_index)
                if ((${applied:-0} >= ${target:-1})); then
                    back=$(date +%s%3N)
                    break
                fi
            fi
            sleep 0.05
        done
        [[ -n $back ]] || { echo "node $id did not come back within 30 s:"; tail -5 "$CLUSTER_DIR/node$id.log"; exit 1; }
        # Let the probe record the ACKs after the window's end before reading them.
        sleep 0.5
        read -r gap dora < <(awk -v s="$signalled" -v b="$back" '
            $1 == "ack" {
                if (have && $2 >= s && prev <= b && $2 - prev > g) g = $2 - prev
                if ($2 >= s && $2 - $5 <= b && $5 > d) d = $5
                prev = $2; have = 1
            }
            END {printf "%.3f %.3f\n", g / 1000, d / 1000}' "$out")
        ROLLING_GAPS+=("$gap")
        ROLLING_DORAS+=("$dora")
        printf '  %-26s node %d%-9s exited %.2f s after SIGTERM, back (healthy, caught up) %.2f s later: longest answer gap %.3f s, slowest DORA %.3f s\n' \
            "$(label cluster)" "$id" "$was" "$(((exited - signalled)))e-3" "$(((back - exited)))e-3" "$gap" "$dora"
        done_nodes+="$id "
    done
    stop_probe
    stop_cluster
}

# rolling RUNS: RUNS rolling restarts of a fresh cluster; the summary line.
ROLLING_LINE=""
rolling() {
    local runs=$1 r
    for ((r = 1; r <= runs; r++)); do rolling_once; done
    ROLLING_LINE=$(printf '%s\n' "${ROLLING_GAPS[@]}" | sort -n | awk -v l="$(label cluster)" -v n="$runs" \
        -v d="$(printf '%s\n' "${ROLLING_DORAS[@]}" | sort -n | tail -1)" \
        -v q="$(printf '%s\n' "${ROLLING_STEADY[@]}" | sort -n | tail -1)" '{v[NR] = $1} END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%s rolling restart (SIGTERM, start; the leader hands over): answer gap per restart median %.3f s, max %.3f s (%d restarts in %d runs; %.3f s without restarts); slowest DORA %.3f s", l, m, v[NR], NR, n, q, d}')
}

# node_metric I NAME: the value of metric NAME (exactly as printed, labels included) on node I, or "".
node_metric() {
    { http_response "$NAME-s$1" /metrics 5 || true; } | awk -v m="$2" '$1 == m {print $2; exit}'
}

# node_term I: node I's Raft term from /healthz ("" when it does not answer).
node_term() {
    { http_response "$NAME-s$1" /healthz 5 || true; } | { grep -o '"term":[0-9]*' || true; } | cut -d: -f2
}

# -- Stability: a fresh cluster under full load for --stability-seconds; every leader change bumps the term.
declare -a STABILITY_LINES=()
stability() {
    local seconds=$1 rate=$2 i before=() after=()
    echo "-- $(label cluster): $seconds s of perfdhcp at $rate/s; leader changes are counted by Raft term"
    start_cluster
    local leader_before=$LEADER
    for i in 1 2 3; do before+=("$(node_term "$i")"); done
    local out=$WORK/stability.out saved_period=$PERIOD
    timeout $((seconds + 60)) ip netns exec "$PERF_NS" "${CLIENT_CPU[@]}" perfdhcp -4 -l eth0 -g single \
        -r "$rate" -R "$CLIENTS" -p "$seconds" -W 300000 >"$out" 2>&1 || true
    for i in 1 2 3; do after+=("$(node_term "$i")"); done
    local answer leader_after
    answer=$(http_get "$NAME-s1" /healthz || true)
    leader_after=$(grep -o '"leader_id":[0-9]*' <<<"$answer" | cut -d: -f2)
    stop_cluster
    PERIOD=$seconds
    perfdhcp_result "$out" "$rate"
    PERIOD=$saved_period
    local high_before high_after
    high_before=$(printf '%s\n' "${before[@]}" | sort -n | tail -1)
    high_after=$(printf '%s\n' "${after[@]}" | sort -n | tail -1)
    STABILITY_LINES+=("$(printf '%s under load: %d s at %d/s offered, %d exchanges/s ACKed (drops %s%%), leader changes %d (terms %s -> %s, leader %s -> %s)' \
        "$(label cluster)" "$seconds" "$rate" "$M_XPS" "$M_LOSS" $((${high_after:-0} - ${high_before:-0})) \
        "${before[*]}" "${after[*]}" "$leader_before" "${leader_after:-none}")")
    echo "  ${STABILITY_LINES[-1]}"
}

# -- Catch-up: a cluster holding --catchup-leases leases; a follower loses its data directory and is restarted
# with the same flags (README "Lost data directory") while perfdhcp brings new clients to the leader. The
# leader's ACKs are sampled every 0.5 s from /metrics; the follower is caught up when its applied index
# reaches the leader's applied index at the wipe; "during" is the leader's rate from the wipe until then (at
# least 5 s). Then the same follower is restarted with its data
# (SIGTERM, start) and timed to /healthz 200 and to the leader's index.
declare -a CATCHUP_LINES=()
catchup() {
    local leases=$1 rate=$2 dir=$WORK/catchup i
    mkdir -p "$dir"
    # A snapshot every 5,000 entries: the log behind it is compacted, so the wiped follower needs the snapshot.
    printf '%s\n' '[limits]' "max_leases = $((leases + leases / 4 + 100000))" 'max_offers = 200000' \
        'snapshot_every_entries = 5000' '[[pool]]' \
        'name = "big"' 'subnet = "10.64.0.0/10"' 'range_start = "10.80.0.0"' 'range_end = "10.111.255.254"' \
        'lease_time_secs = 86400' '[limits.rate]' 'relay_messages_per_sec = 1000000.0' \
        'relay_burst_messages = 1000000' >"$dir/pools.toml"
    echo "-- $(label cluster): catch-up of a wiped follower at $leases leases (pool 10.80.0.0-10.111.255.254)"
    start_cluster "$dir/pools.toml"
    local leader=$LEADER follower=$((LEADER % 3 + 1)) started count=0 tries
    # Sequential new MACs, 512 machines at a time, each starting over with a new MAC after its ACK.
    started=$(date +%s%3N)
    ip netns exec "$PROBE_NS" "${CLIENT_CPU[@]}" "$PROBE" --slots 512 --interval-ms 0 --retransmit-ms 1000 \
        --duration-s 3600 --mac-base $((1 << 24)) >/dev/null 2>"$dir/fill.err" &
    PROBE_PID=$!
    for ((tries = 0; tries < leases / 500 + 600; tries++)); do
        count=$(node_metric "$leader" leasehold_leases)
        ((${count:-0} >= leases)) && break
        kill -0 "$PROBE_PID" 2>/dev/null || { echo "the loader exited:"; cat "$dir/fill.err"; exit 1; }
        sleep 1
    done
    stop_probe
    ((${count:-0} >= leases)) || { echo "bench-cluster.sh: only ${count:-0} of $leases leases bound"; exit 1; }
    echo "  filled: $count leases in $((($(date +%s%3N) - started) / 1000)) s"
    local total=$((CATCHUP_BEFORE + CATCHUP_TIMEOUT + 10)) samples=$dir/acks.txt
    : >"$samples"
    timeout $((total + 30)) ip netns exec "$PERF_NS" "${CLIENT_CPU[@]}" perfdhcp -4 -l eth0 -g single \
        -b mac=00:0d:00:00:00:00 -r "$rate" -R 1000000 -p "$total" -W 300000 >"$dir/perfdhcp.out" 2>&1 &
    local perf_pid=$!
    (
        while kill -0 "$perf_pid" 2>/dev/null; do
            echo "$(date +%s%3N) $(node_metric "$leader" 'leasehold_packets_sent_total{type="ack"}')"
            sleep 0.5
        done
    ) >>"$samples" &
    local sampler=$!
    sleep "$CATCHUP_BEFORE"
    local target wiped caught="" applied
    target=$(node_metric "$leader" leasehold_applied_index)
    wiped=$(date +%s%3N)
    kill -KILL "${PID[node$follower]}"
    wait "${PID[node$follower]}" 2>/dev/null || true
    rm -rf "${CLUSTER_DIR:?}/node$follower"
    start_node "$follower"
    for ((tries = 0; tries < CATCHUP_TIMEOUT * 5; tries++)); do
        applied=$(node_metric "$follower" leasehold_applied_index)
        if ((${applied:-0} >= target)); then
            caught=$(date +%s%3N)
            break
        fi
        sleep 0.2
    done
    local snapshot_bytes follower_leases
    snapshot_bytes=$(du -sb "$CLUSTER_DIR/node$follower/snapshots" 2>/dev/null | cut -f1)
    follower_leases=$(node_metric "$follower" leasehold_leases)
    kill -TERM "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    # The leader's ACKs a second before the wipe (from 2 s into the load) and from the wipe until caught up.
    local before during
    read -r before during < <(awk -v w="$wiped" -v c="${caught:-0}" '
        NF == 2 {
            if (!have) s0 = $1
            if (have && pt >= s0 + 2000) {
                dt = ($1 - pt) / 1000; dn = $2 - pn
                if ($1 <= w) {bt += dt; bn += dn}
                else if (c && pt >= w - 500 && pt < (c > w + 5000 ? c : w + 5000)) {dt2 += dt; dn2 += dn}
            }
            pt = $1; pn = $2; have = 1
        }
        END {printf "%.0f %.0f\n", bt ? bn / bt : 0, dt2 ? dn2 / dt2 : -1}' "$samples")
    if [[ -z $caught ]]; then
        CATCHUP_LINES+=("$(label cluster) catch-up at $count leases: the wiped follower did not reach index $target within $CATCHUP_TIMEOUT s")
    else
        CATCHUP_LINES+=("$(awk -v n="$count" -v t=$((caught - wiped)) -v b="$before" -v d="$during" \
            -v z="${snapshot_bytes:-0}" -v f="${follower_leases:-0}" -v r="$rate" -v l="$(label cluster)" 'BEGIN {
            printf "%s catch-up of a wiped follower at %d leases: caught up in %.2f s (%d leases, snapshot file %.0f MB); ", l, n, t / 1000, f, z / 1e6
            printf "leader ACKs/s with new clients offered at %d/s: before %d, during %s", r, b, (d < 0 ? "n/a" : d)
            if (d >= 0 && b > 0) printf " (%+.0f%%)", (d - b) * 100 / b }')")
    fi
    echo "  ${CATCHUP_LINES[-1]}"
    # Restart with its data: SIGTERM, start again; time to /healthz 200 and to the leader's index.
    stop_pid "node$follower"
    local restarted healthy="" loaded=""
    target=$(node_metric "$leader" leasehold_applied_index)
    restarted=$(date +%s%3N)
    start_node "$follower"
    for ((tries = 0; tries < 600; tries++)); do
        if [[ -z $healthy && $(http_get "$NAME-s$follower" /healthz || true) == 200* ]]; then
            healthy=$(date +%s%3N)
        fi
        applied=$(node_metric "$follower" leasehold_applied_index)
        if [[ -n $healthy ]] && ((${applied:-0} >= target)); then
            loaded=$(date +%s%3N)
            break
        fi
        sleep 0.05
    done
    CATCHUP_LINES+=("$(awk -v h="${healthy:-0}" -v r="$restarted" -v a="${loaded:-0}" -v n="$count" -v l="$(label cluster)" 'BEGIN {
        printf "%s restart of a follower holding %d leases (SIGTERM, start): /healthz 200 after %s, ", l, n,
            h ? sprintf("%.2f s", (h - r) / 1000) : "(not within 30 s)"
        printf "at the leader'"'"'s applied index after %s", a ? sprintf("%.2f s", (a - r) / 1000) : "(not within 30 s)" }')")
    echo "  ${CATCHUP_LINES[-1]}"
    stop_cluster
}

# -- CPU per exchange at one common rate: fresh servers, new clients at RATE/s for --cpu-period s; utime +
# stime (/proc/PID/stat) of the server processes over the run divided by the exchanges ACKed. In etcd mode
# the nodes' and the etcd members' are kept apart.
# proc_ticks KEY...: the user + system CPU ticks so far of the processes started under the KEYs.
proc_ticks() {
    local key sum=0 t
    for key in "$@"; do
        t=$(awk '{print $14 + $15}' "/proc/${PID[$key]}/stat" 2>/dev/null || echo 0)
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

declare -A CPU_US CPU_ETCD_US CPU_LINES
cpu_measure() {
    local kind=$1 rate=$2 out keys=(node1 node2 node3) etcd_keys=() before after etcd_before=0 etcd_after=0
    [[ $kind != kea-ha ]] || keys=(kea1 kea2)
    [[ $kind != etcd ]] || etcd_keys=(etcd1 etcd2 etcd3)
    start_servers "$kind"
    out=$WORK/cpu-$kind-$RUN.out
    before=$(proc_ticks "${keys[@]}")
    ((${#etcd_keys[@]} == 0)) || etcd_before=$(proc_ticks "${etcd_keys[@]}")
    timeout $((CPU_PERIOD + 30)) ip netns exec "$PERF_NS" "${CLIENT_CPU[@]}" perfdhcp -4 -l eth0 -g single \
        -r "$rate" -R "$CLIENTS" -p "$CPU_PERIOD" -W 300000 >"$out" 2>&1 || true
    after=$(proc_ticks "${keys[@]}")
    ((${#etcd_keys[@]} == 0)) || etcd_after=$(proc_ticks "${etcd_keys[@]}")
    stop_servers "$kind"
    local sent acked hz line
    hz=$(getconf CLK_TCK)
    read -r sent acked < <(perfdhcp_counts "$out")
    CPU_US[$kind]=$(awk -v a="$acked" -v t=$((after - before)) -v hz="$hz" 'BEGIN {printf "%.0f", a ? t * 1e6 / hz / a : 0}')
    line=$(printf '%s at %d/s: %d exchanges/s (%d of %d completed), %d µs %s CPU per exchange' "$(label "$kind")" \
        "$rate" $((acked / CPU_PERIOD)) "$acked" "$sent" "${CPU_US[$kind]}" \
        "$([[ $kind == kea-ha ]] && echo "servers' (2)" || echo "nodes' (3)")")
    if [[ $kind == etcd ]]; then
        CPU_ETCD_US[$kind]=$(awk -v a="$acked" -v t=$((etcd_after - etcd_before)) -v hz="$hz" \
            'BEGIN {printf "%.0f", a ? t * 1e6 / hz / a : 0}')
        line+=$(printf " + %d µs etcd members' (3) = %d µs" "${CPU_ETCD_US[$kind]}" \
            $((CPU_US[$kind] + CPU_ETCD_US[$kind])))
    fi
    echo "  $line"
    CPU_LINES[$kind]=$line
}

# cpu_total KIND: the CPU µs per exchange measured for KIND, etcd's included.
cpu_total() { echo $((${CPU_US[$1]:-0} + ${CPU_ETCD_US[$1]:-0})); }

echo "== Leasehold cluster benchmark ($PINNING; perfdhcp sends to the $TO address) =="
echo "   segment $NAME, pool 10.77.1.0-10.77.255.254, data on $fs_type ($WORK), load average $(load_average)"
KINDS=()
((LH_THROUGHPUT)) && KINDS+=(cluster)
[[ $STORE != etcd ]] || KINDS+=(etcd)
((KEA)) && KINDS+=(kea-ha)
if ((THROUGHPUT)); then
    for kind in "${KINDS[@]}"; do
        echo "-- $(label "$kind"): rate search, $PERIOD s per run, $CLIENTS clients"
        search "$kind"
    done
fi
if ((FAILOVER)); then
    echo "-- $(label cluster): kill -9 of the leader, $FAILOVER_RUNS runs (each bounded by $LH_FAILOVER_LIMIT s)"
    ((FAILOVER_RUNS == 0)) || failover cluster "$FAILOVER_RUNS" "$LH_FAILOVER_LIMIT"
    if ((ROLLING_RUNS > 0)); then
        echo "-- $(label cluster): rolling restart of all 3 nodes under the probe, $ROLLING_RUNS runs"
        rolling "$ROLLING_RUNS"
    fi
    if [[ $STORE == etcd ]]; then
        echo "-- $(label etcd): kill -9 of the elected node (GET /v1/cluster leader_id), $FAILOVER_RUNS runs (each bounded by $LH_FAILOVER_LIMIT s)"
        ((FAILOVER_RUNS == 0)) || failover etcd "$FAILOVER_RUNS" "$LH_FAILOVER_LIMIT"
    fi
    if ((KEA && KEA_FAILOVER_RUNS > 0)); then
        echo "-- $(label kea-ha): kill -9 of the primary, $KEA_FAILOVER_RUNS runs (each bounded by $KEA_FAILOVER_LIMIT s)"
        failover kea-ha "$KEA_FAILOVER_RUNS" "$KEA_FAILOVER_LIMIT"
    fi
fi

if ((CPU_RATE > 0)); then
    CPU_KINDS=(cluster)
    [[ $STORE != etcd ]] || CPU_KINDS+=(etcd)
    ((KEA)) && CPU_KINDS+=(kea-ha)
    if ((CPU_AUTO)); then
        # A rate every kind sustained in the search: 80% of the lowest found, if under 1,000/s.
        for kind in "${CPU_KINDS[@]}"; do
            found=${RESULT_RATE[$kind]:-0}
            ((found == 0 || found * 8 / 10 >= CPU_RATE)) || CPU_RATE=$((found * 8 / 10 / 50 * 50))
        done
        ((CPU_RATE >= 50)) || CPU_RATE=50
    fi
    echo "-- server CPU per exchange at $CPU_RATE new clients a second, $CPU_PERIOD s, fresh servers"
    for kind in "${CPU_KINDS[@]}"; do cpu_measure "$kind" "$CPU_RATE"; done
fi

if ((STABILITY_SECONDS > 0)); then
    rate=$STABILITY_RATE
    ((rate > 0)) || rate=$((${RESULT_XPS[cluster]:-0} * 9 / 10 / 250 * 250))
    ((rate > 0)) || rate=4000
    stability "$STABILITY_SECONDS" "$rate"
fi
((CATCHUP_LEASES == 0)) || catchup "$CATCHUP_LEASES" "$CATCHUP_RATE"
echo
echo "== Results ($PINNING; perfdhcp to the $TO address; load average $(load_average)) =="
if ((THROUGHPUT)); then
    for kind in "${KINDS[@]}"; do
        limited=""
        [[ ${RESULT_SHORT[$kind]:-0} == 0 ]] || limited=", at least: perfdhcp could not send faster"
        printf '%s: %d exchanges/s (drops %s%%%s)\n' "$(label "$kind")" "${RESULT_XPS[$kind]}" "${RESULT_LOSS[$kind]}" \
            "$limited"
        [[ -z ${RESULT_NOTE[$kind]:-} ]] || echo "  at that rate: ${RESULT_NOTE[$kind]}"
    done
    if [[ ${RESULT_XPS[kea-ha]:-0} -gt 0 && -n ${RESULT_XPS[cluster]:-} ]]; then
        at_least=""
        [[ ${RESULT_SHORT[cluster]:-0} == 0 ]] || at_least="at least "
        awk -v a="${RESULT_XPS[cluster]}" -v b="${RESULT_XPS[kea-ha]}" -v p="$at_least" \
            'BEGIN {printf "ratio: %s%.2f\n", p, a / b}'
        echo "note: a Kea HA primary ACKs once the standby has answered its lease update; both keep leases in memfile"
        echo "      CSV files and never call fsync. leasehold (fsync on) ACKs only after a majority of the nodes"
        echo "      has the binding fsynced: not a like-for-like durability comparison."
    fi
    # ratio_line NAME A B: "ratio NAME: A/B" when both were measured (B > 0).
    ratio_line() {
        [[ ${RESULT_XPS[$2]:-0} -gt 0 && ${RESULT_XPS[$3]:-0} -gt 0 ]] || return 0
        local p=""
        [[ ${RESULT_SHORT[$2]:-0} == 0 ]] || p="at least "
        awk -v a="${RESULT_XPS[$2]}" -v b="${RESULT_XPS[$3]}" -v p="$p" -v n="$1" 'BEGIN {printf "ratio %s: %s%.2f\n", n, p, a / b}'
    }
    if [[ -n ${RESULT_XPS[etcd]:-} ]]; then
        ratio_line "etcd store / Raft store" etcd cluster
        ratio_line "etcd store / kea HA" etcd kea-ha
        echo "note: the etcd store ACKs once its transaction has committed (etcd fsyncs its WAL on a majority of the"
        echo "      members first) and the node's watch has delivered it; the etcd members share CPU 1 with the nodes."
    fi
fi
for kind in cluster etcd kea-ha; do
    [[ -z ${FAILOVER_LINE[$kind]:-} ]] || echo "${FAILOVER_LINE[$kind]}"
    [[ $kind != cluster || -z $ROLLING_LINE ]] || echo "$ROLLING_LINE"
done
if ((CPU_RATE > 0)); then
    for kind in "${CPU_KINDS[@]}"; do
        [[ -z ${CPU_LINES[$kind]:-} ]] || echo "${CPU_LINES[$kind]}"
    done
    # cpu_ratio NAME A B: CPU per exchange, A's (etcd's included) over B's.
    cpu_ratio() {
        local a b
        a=$(cpu_total "$2") b=$(cpu_total "$3")
        ((a > 0 && b > 0)) || return 0
        awk -v a="$a" -v b="$b" -v n="$1" -v r="$CPU_RATE" 'BEGIN {printf "server CPU per exchange at %d/s, %s: %.2f\n", r, n, a / b}'
    }
    cpu_ratio "Raft store / kea HA" cluster kea-ha
    cpu_ratio "etcd store (nodes + etcd) / Raft store" etcd cluster
    cpu_ratio "etcd store (nodes + etcd) / kea HA" etcd kea-ha
fi
if [[ $STORE == etcd ]]; then
    # Side by side: one column per kind measured.
    cols=()
    for kind in cluster etcd kea-ha; do
        if [[ -n ${RESULT_XPS[$kind]:-} || -n ${FAILOVER_MM[$kind]:-} || -n ${CPU_US[$kind]:-} ]]; then
            cols+=("$kind")
        fi
    done
    declare -A HEAD=([cluster]="leasehold Raft store" [etcd]="leasehold etcd store" [kea-ha]="kea HA hot-standby")
    echo
    echo "side by side:"
    # row LABEL CELL...: padded by characters (bash's printf pads by bytes, and "µ" is two).
    row() {
        local LC_ALL=C.utf8 cell
        printf '  %-44s' "$1"
        shift
        for cell in "$@"; do printf ' | %s%*s' "$cell" $((26 - ${#cell})) ""; done
        echo
    }
    cells=()
    for kind in "${cols[@]}"; do cells+=("${HEAD[$kind]}"); done
    row "" "${cells[@]}"
    if ((THROUGHPUT)); then
        cells=()
        for kind in "${cols[@]}"; do
            cell=${RESULT_XPS[$kind]:-"-"}
            [[ ${RESULT_SHORT[$kind]:-0} == 0 ]] || cell=">= $cell"
            cells+=("$cell")
        done
        row "exchanges/s, drops < 1%" "${cells[@]}"
    fi
    if ((FAILOVER)); then
        cells=()
        for kind in "${cols[@]}"; do cells+=("${FAILOVER_MM[$kind]:-"-"}"); done
        row "failover after kill -9, median / max" "${cells[@]}"
    fi
    if ((CPU_RATE > 0)); then
        cells=()
        for kind in "${cols[@]}"; do
            if [[ -z ${CPU_US[$kind]:-} ]]; then
                cells+=("-")
            elif [[ $kind == etcd ]]; then
                cells+=("${CPU_US[$kind]} + ${CPU_ETCD_US[$kind]} etcd = $(cpu_total etcd) µs")
            else
                cells+=("${CPU_US[$kind]} µs")
            fi
        done
        row "server CPU per exchange at $CPU_RATE/s" "${cells[@]}"
    fi
fi
for line in "${STABILITY_LINES[@]}" "${CATCHUP_LINES[@]}"; do
    echo "$line"
done
