#!/usr/bin/env bash
# Leasehold demo: a private L2 segment in network namespaces, one leasehold node on the embedded
# demo config (192.168.77.1 on eth0, pool 192.168.77.100-200), a real DHCP client (busybox udhcpc)
# that gets a lease, and the node's lease table. Everything lives in namespaces this script creates
# (lhdemo-*) and is removed at the end; the host's interfaces, routes and firewall are not touched.
#
#   scripts/demo.sh            run the demo and clean up
#   scripts/demo.sh --keep     leave the node running (Ctrl-C to stop and clean up)
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP=false
[[ ${1:-} == --keep ]] && KEEP=true
[[ $(id -u) == 0 ]] || { echo "demo.sh: needs root (it creates network namespaces)" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1; }
if ! need udhcpc || ! need ip; then
    echo "== installing udhcpc and iproute2"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq udhcpc iproute2 >/dev/null
fi
need cargo || { echo "demo.sh: needs a Rust toolchain (cargo)" >&2; exit 1; }

echo "== building leasehold"
cargo build --quiet --bin leasehold
BIN=$PWD/target/debug/leasehold

BR=lhdemo-br SRV=lhdemo-srv CLI=lhdemo-cli
WORK=$(mktemp -d /tmp/leasehold-demo.XXXXXX)
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    for ns in $CLI $SRV $BR; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "/etc/netns/$CLI" "$WORK"
}
trap cleanup EXIT
for ns in $CLI $SRV $BR; do ip netns del "$ns" 2>/dev/null || true; done

echo "== segment: bridge in $BR, leasehold in $SRV (192.168.77.1), client in $CLI"
for ns in $BR $SRV $CLI; do
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
ip -n $BR link add br0 type bridge forward_delay 0 stp_state 0
ip -n $BR link set br0 up
for pair in "$SRV:vs" "$CLI:vc"; do
    ns=${pair%%:*} port=${pair##*:}
    ip -n $BR link add "$port" type veth peer name eth0 netns "$ns"
    ip -n $BR link set "$port" master br0 up
    ip -n "$ns" link set eth0 up
done
ip -n $SRV addr add 192.168.77.1/24 dev eth0
mkdir -p "/etc/netns/$CLI" && : > "/etc/netns/$CLI/resolv.conf"

echo "== leasehold serve (embedded demo config; data in $WORK/data)"
ip netns exec $SRV "$BIN" serve --data-dir "$WORK/data" > "$WORK/leasehold.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    ip netns exec $SRV "$BIN" leases >/dev/null 2>&1 && break
    kill -0 $SERVER_PID 2>/dev/null || { cat "$WORK/leasehold.log"; exit 1; }
    sleep 0.1
done

cat > "$WORK/udhcpc.sh" <<'HOOK'
#!/bin/sh
# Only touches the client's own interface inside its namespace.
case "$1" in
    bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
                 echo "udhcpc: $1 $ip lease ${lease}s from $serverid" ;;
    deconfig) ip addr flush dev "$interface" ;;
esac
HOOK
chmod +x "$WORK/udhcpc.sh"
echo "== udhcpc in $CLI"
ip netns exec $CLI udhcpc -i eth0 -n -q -f -t 5 -T 2 -x hostname:demo-client -s "$WORK/udhcpc.sh"
echo "== client address"
ip -n $CLI -4 addr show dev eth0 | grep inet
echo "== leasehold leases"
ip netns exec $SRV "$BIN" leases
echo "== decisions logged by the node"
grep -E 'dhcp' "$WORK/leasehold.log" | tail -n 5 || true

if $KEEP; then
    echo "== node running; try: ip netns exec $SRV $BIN leases   (Ctrl-C stops and cleans up)"
    wait $SERVER_PID
fi
