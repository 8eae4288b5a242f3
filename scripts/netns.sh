#!/usr/bin/env bash
# Leasehold network-namespace test bed: a private L2 segment with servers and clients.
#
#   scripts/netns.sh up   NAME N_SERVERS N_CLIENTS [PREFIX_LEN]
#   scripts/netns.sh down NAME
#   scripts/netns.sh list NAME
#   scripts/netns.sh gc
#
# `up` creates, and touches nothing outside them:
#   NAME-br         namespace holding bridge br0 (stp off, forward_delay 0) and one veth end per node
#   NAME-s1..sN     server namespaces: eth0 = 10.77.0.1, .2, .3 ... /PREFIX_LEN (default 24), lo up
#   NAME-c1..cN     client namespaces: eth0 up without an address, lo up,
#                   /etc/netns/NAME-cK/resolv.conf created empty (so client scripts cannot reach the host's)
# Every veth pair is created inside NAME-br; its peer end is created directly in the node's namespace as
# eth0, so the root namespace's interfaces, routes and firewall are never touched. IPv6 is off everywhere.
#
# `down` ends the processes still running inside those namespaces (by PID, from `ip netns pids`), deletes
# every namespace whose name is NAME-br, NAME-sK or NAME-cK and the /etc/netns entries `up` made; it is
# idempotent and safe to call after a failed `up`. Namespaces are deleted only by the names
# this script gives them. `list` prints the namespaces of the segment NAME.
set -euo pipefail

SUBNET_PREFIX=10.77.0

die() {
    echo "netns.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

check_name() {
    local name=$1
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$ ]] || die "bad segment name '$name' (letters, digits, ._- only)"
}

# The namespaces of segment NAME that exist now (exact pattern NAME-br, NAME-s<digits>, NAME-c<digits>).
segment_namespaces() {
    local name=$1
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${name//./\\.}-(br|s[0-9]+|c[0-9]+)\$" || true
}

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

quiet_ns() {
    local ns=$1
    # IPv6 off (keeps captures to DHCPv4 only), loopback up.
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
}

add_node() {
    local name=$1 ns=$2 port=$3
    ip netns add "$ns"
    quiet_ns "$ns"
    # The pair is born in the bridge namespace; its peer end is created straight inside the node namespace.
    ip -n "$name-br" link add "$port" type veth peer name eth0 netns "$ns"
    in_ns "$name-br" sysctl -qw "net.ipv6.conf.$port.disable_ipv6=1"
    in_ns "$ns" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
    ip -n "$name-br" link set "$port" master br0
    ip -n "$name-br" link set "$port" up
    ip -n "$ns" link set eth0 up
}

cmd_up() {
    [[ $# -eq 3 || $# -eq 4 ]] || usage
    local name=$1 servers=$2 clients=$3 plen=${4:-24}
    check_name "$name"
    [[ $servers =~ ^[0-9]+$ && $servers -le 20 ]] || die "N_SERVERS must be 0..20, got '$servers'"
    [[ $clients =~ ^[0-9]+$ && $clients -le 50 ]] || die "N_CLIENTS must be 0..50, got '$clients'"
    [[ $plen =~ ^[0-9]+$ && $plen -ge 8 && $plen -le 30 ]] || die "PREFIX_LEN must be 8..30, got '$plen'"
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
    if [[ -n $(segment_namespaces "$name") ]]; then
        die "segment '$name' already exists: scripts/netns.sh down $name"
    fi
    # On any failure half-way, remove what was made.
    trap 'cmd_down "$name" >/dev/null 2>&1 || true' ERR

    local br="$name-br"
    ip netns add "$br"
    quiet_ns "$br"
    ip -n "$br" link add br0 type bridge forward_delay 0 stp_state 0
    in_ns "$br" sysctl -qw net.ipv6.conf.br0.disable_ipv6=1
    ip -n "$br" link set br0 up

    local i
    for ((i = 1; i <= servers; i++)); do
        add_node "$name" "$name-s$i" "s$i"
        ip -n "$name-s$i" addr add "$SUBNET_PREFIX.$i/$plen" dev eth0
    done
    for ((i = 1; i <= clients; i++)); do
        mkdir -p "/etc/netns/$name-c$i"
        : >"/etc/netns/$name-c$i/resolv.conf"
        add_node "$name" "$name-c$i" "c$i"
    done
    trap - ERR
}

cmd_down() {
    [[ $# -eq 1 ]] || usage
    local name=$1 ns
    check_name "$name"
    local spaces
    spaces=$(segment_namespaces "$name")
    # Processes still running inside the segment's namespaces were started there by a test or a benchmark
    # (or are daemons those started, e.g. dhclient or dhcpcd's privilege-separated helpers): end them by PID.
    local -a pids
    segment_pids() {
        pids=()
        local ns
        for ns in $spaces; do
            # shellcheck disable=SC2207 # one PID a line
            pids+=($(ip netns pids "$ns" 2>/dev/null || true))
        done
    }
    segment_pids
    ((${#pids[@]} == 0)) || kill -TERM "${pids[@]}" 2>/dev/null || true
    local tries
    for ((tries = 0; tries < 20; tries++)); do
        segment_pids
        ((${#pids[@]} > 0)) || break
        sleep 0.1
    done
    ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null || true
    for ns in $spaces; do
        # Deleting a namespace destroys its veth ends (and so their peers) and the bridge with it.
        ip netns delete "$ns" 2>/dev/null || true
    done
    local dir
    for dir in /etc/netns/"$name"-br /etc/netns/"$name"-s[0-9]* /etc/netns/"$name"-c[0-9]*; do
        [[ -d $dir && $dir =~ ^/etc/netns/${name//./\\.}-(br|s[0-9]+|c[0-9]+)$ ]] || continue
        rm -f "$dir/resolv.conf"
        rmdir "$dir" 2>/dev/null || true
    done
}

cmd_list() {
    [[ $# -eq 1 ]] || usage
    check_name "$1"
    segment_namespaces "$1"
}

cmd_gc() {
    [[ $# -eq 0 ]] || usage
    local ns seg pid done=" "
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        [[ $ns =~ ^(lh([0-9]+)[a-z][A-Za-z0-9]*)-(br|s[0-9]+|c[0-9]+)$ ]] || continue
        seg=${BASH_REMATCH[1]} pid=${BASH_REMATCH[2]}
        [[ -d /proc/$pid || $done == *" $seg "* ]] && continue
        done+="$seg "
        echo "netns.sh: removing segment $seg left by process $pid, which is gone" >&2
        cmd_down "$seg"
    done
}

[[ $# -ge 1 ]] || usage
action=$1
shift
case $action in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
list) cmd_list "$@" ;;
gc) cmd_gc "$@" ;;
*) usage ;;
esac
