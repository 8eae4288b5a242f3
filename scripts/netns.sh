#!/usr/bin/env bash
# Leasehold network-namespace test bed: a private L2 segment with servers and clients.
#
#   scripts/netns.sh up     NAME N_SERVERS N_CLIENTS [PREFIX_LEN]
#   scripts/netns.sh router NAME K UPSTREAM_CIDR DOWNSTREAM_CIDR
#   scripts/netns.sh down   NAME
#   scripts/netns.sh list   NAME
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
# `router` adds, to a segment made by `up`, a router between it and a second (routed) client subnet:
#   NAME-rK         router namespace (K = 1..9): eth0 on the segment's bridge with UPSTREAM_CIDR (e.g.
#                   10.77.0.254/24), lan0 with DOWNSTREAM_CIDR (e.g. 10.78.0.1/24), the veth to the client;
#                   relay0, a macvlan on lan0 with the same address as a /32, for a relay agent to listen
#                   on (see cmd_router); net.ipv4.ip_forward = 1 inside this namespace only
#   NAME-rKc1       the client namespace of the routed subnet: eth0 (lan0's peer) up without an address,
#                   lo up, /etc/netns/NAME-rKc1/resolv.conf created empty
# and, in every server namespace NAME-sI of the segment, a route to DOWNSTREAM_CIDR's network via the
# router's upstream address (replies to a client's unicast renewal go to its ciaddr there). A relay agent
# (e.g. dhcrelay) is left for the caller to run inside NAME-rK.
#
# `down` ends the processes still running inside those namespaces (by PID, from `ip netns pids`), deletes
# every namespace whose name is NAME-br, NAME-sK, NAME-cK, NAME-rK or NAME-rKc1 and the /etc/netns entries
# `up` and `router` made; it is idempotent and safe to call after a failed `up` or `router`. Namespaces are
# deleted only by the names this script gives them. `list` prints the namespaces of the segment NAME;
# `gc` removes every segment named lh<PID>… whose process PID is gone.
set -euo pipefail

SUBNET_PREFIX=10.77.0

die() {
    echo "netns.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

check_name() {
    local name=$1
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$ ]] || die "bad segment name '$name' (letters, digits, ._- only)"
}

# The namespace suffixes this script makes: NAME-br, NAME-s<digits>, NAME-c<digits>, NAME-r<digits> and
# NAME-r<digits>c<digits>.
NS_SUFFIX='(br|s[0-9]+|c[0-9]+|r[0-9]+|r[0-9]+c[0-9]+)'

# The namespaces of segment NAME that exist now (exact pattern NAME-<suffix>).
segment_namespaces() {
    local name=$1
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${name//./\\.}-${NS_SUFFIX}\$" || true
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

# A.B.C.D/LEN -> "A.B.C.D LEN NETWORK/LEN"; dies on anything else.
parse_cidr() {
    local cidr=$1 what=$2
    [[ $cidr =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] ||
        die "$what must be A.B.C.D/LEN, got '$cidr'"
    local -a o=()
    local len=$((10#${BASH_REMATCH[5]})) x
    for x in "${BASH_REMATCH[@]:1:4}"; do
        ((10#$x <= 255)) || die "$what: bad address in '$cidr'"
        o+=($((10#$x)))
    done
    ((len >= 8 && len <= 30)) || die "$what: prefix length must be 8..30, got '$cidr'"
    local ip=$(((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]))
    local net=$((ip & ((0xffffffff << (32 - len)) & 0xffffffff)))
    echo "${cidr%/*} $len $((net >> 24 & 255)).$((net >> 16 & 255)).$((net >> 8 & 255)).$((net & 255))/$len"
}

cmd_router() {
    [[ $# -eq 4 ]] || usage
    local name=$1 k=$2 upstream=$3 downstream=$4
    check_name "$name"
    [[ $k =~ ^[0-9]+$ && $k -ge 1 && $k -le 9 ]] || die "K must be 1..9, got '$k'"
    local parsed up_ip up_net down_ip down_net _
    parsed=$(parse_cidr "$upstream" UPSTREAM_CIDR) || exit 2
    read -r up_ip _ up_net <<<"$parsed"
    parsed=$(parse_cidr "$downstream" DOWNSTREAM_CIDR) || exit 2
    read -r down_ip _ down_net <<<"$parsed"
    [[ $up_net != "$down_net" ]] || die "the upstream and downstream subnets must differ ($up_net)"
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
    local br="$name-br" r="$name-r$k" c="$name-r${k}c1"
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$br" || die "segment '$name' does not exist: scripts/netns.sh up first"
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$r"; then
        die "router $r already exists"
    fi
    # On any failure half-way, remove the whole segment: a test bed is built in one go.
    trap 'cmd_down "$name" >/dev/null 2>&1 || true' ERR

    # Upstream: a port of the segment's bridge, like a server's.
    add_node "$name" "$r" "r$k"
    ip -n "$r" addr add "$upstream" dev eth0
    # Downstream: a veth pair born in the router namespace (lan0) with its peer created straight inside the
    # client namespace as eth0. (A point-to-point link, not a bridge: dhcrelay told to listen on a bridge
    # also opened a packet socket on the bridge's port.)
    mkdir -p "/etc/netns/$c"
    : >"/etc/netns/$c/resolv.conf"
    ip netns add "$c"
    quiet_ns "$c"
    ip -n "$r" link add lan0 type veth peer name eth0 netns "$c"
    in_ns "$r" sysctl -qw net.ipv6.conf.lan0.disable_ipv6=1
    in_ns "$c" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
    ip -n "$r" addr add "$downstream" dev lan0
    ip -n "$r" link set lan0 up
    ip -n "$c" link set eth0 up
    # relay0: where a relay agent listens. ISC dhcrelay reads every UDP/67 frame its interfaces see (packet
    # sockets, no check of the IP destination), so on lan0 it would also relay, as a second copy, each
    # unicast renewal that the router forwards to a server. relay0 is a macvlan on lan0 with its own MAC and
    # ARP off, holding the same gateway address as a /32: it receives the client link's broadcasts and what
    # is sent to its own MAC, never the unicast frames addressed to lan0 (the gateway the client ARPs for),
    # so the relayed path (broadcasts) and the routed path (unicast) stay apart, as on a router whose relay
    # agent only handles what is broadcast to it. Replies sent through relay0 leave by lan0.
    ip -n "$r" link add relay0 link lan0 type macvlan mode private
    in_ns "$r" sysctl -qw net.ipv6.conf.relay0.disable_ipv6=1
    ip -n "$r" link set relay0 arp off
    ip -n "$r" addr add "$down_ip/32" dev relay0
    ip -n "$r" link set relay0 up
    # Routing between the two subnets, in this namespace only (a namespace's own sysctl).
    in_ns "$r" sysctl -qw net.ipv4.ip_forward=1
    # The servers reach the routed subnet through the router.
    local s
    for s in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${name//./\\.}-s[0-9]+\$" || true); do
        ip -n "$s" route replace "$down_net" via "$up_ip" dev eth0
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
    for dir in /etc/netns/"$name"-br /etc/netns/"$name"-s[0-9]* /etc/netns/"$name"-c[0-9]* /etc/netns/"$name"-r[0-9]*; do
        [[ -d $dir && $dir =~ ^/etc/netns/${name//./\\.}-${NS_SUFFIX}$ ]] || continue
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
        [[ $ns =~ ^(lh([0-9]+)[a-z][A-Za-z0-9]*)-${NS_SUFFIX}$ ]] || continue
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
router) cmd_router "$@" ;;
down) cmd_down "$@" ;;
list) cmd_list "$@" ;;
gc) cmd_gc "$@" ;;
*) usage ;;
esac
