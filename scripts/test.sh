#!/usr/bin/env bash
# Leasehold's test command (the one the README names, and what CI runs after fmt and clippy):
#   1. installs the packages the network-namespace tests drive, when missing (real DHCP clients, Kea's
#      perfdhcp and kea-dhcp4, busybox, iproute2, tcpdump, iptables);
#   2. builds every binary of the workspace (the tests run target/debug/leasehold);
#   3. runs every test of the workspace: unit, property, simulation and, as root, the netns tests.
# The netns tests need root (namespaces, veths, a bridge). Without root this script says so and fails,
# rather than skipping them silently.
#
#   scripts/test.sh [extra cargo test arguments, e.g. -p leasehold-tests --test netns_clients]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: must run as root: the network-namespace tests create namespaces, veth pairs and a" >&2
    echo "bridge (all private to the test). Run: sudo scripts/test.sh" >&2
    exit 1
fi

PACKAGES=(isc-dhcp-client udhcpc dhcpcd kea-admin kea-dhcp4-server busybox-static iproute2 tcpdump iptables
    qemu-system-x86 ipxe-qemu ipxe ovmf isc-dhcp-relay dnsmasq-base)
missing=()
for package in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "scripts/test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi
for tool in dhclient udhcpc dhcpcd perfdhcp kea-dhcp4 busybox ip nsenter unshare tcpdump qemu-system-x86_64 timeout \
    dhcrelay dnsmasq; do
    command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
    command -v "$tool" >/dev/null || { echo "scripts/test.sh: $tool not found after install" >&2; exit 1; }
done

# Segments (network namespaces) left by an earlier run that was killed.
scripts/netns.sh gc

cargo build --workspace --bins
export LEASEHOLD_BIN=${LEASEHOLD_BIN:-$PWD/target/debug/leasehold}
if (($#)); then
    cargo test "$@"
else
    cargo test --workspace
fi
