#!/usr/bin/env bash
# Leasehold chaos run: a 3-node cluster in network namespaces under DHCP load, faults on a seeded
# schedule, and a checker that trusts only what the clients were told.
#
#   scripts/chaos/run.sh --minutes N [--seed S] [--store etcd] [any other flag of the chaos driver]
#
# `--store etcd` runs the nodes on three etcd members started in the server namespaces (needs etcd
# and etcdctl) with the etcd-mode fault kinds.
#
# Builds the server (`cargo build --bin leasehold`) and the driver (the `chaos` example of the tests
# crate), then runs the driver (`--help` lists its flags). The report goes to stdout; progress and
# violations to stderr. Exit status 0: nothing found; 1: violations (the report prints the seed and the
# command that replays the run); 2: usage. Needs root (namespaces, veths, iptables inside them).
# `--release` builds and runs both in release mode.
#
# Everything runs inside namespaces the driver creates (segment lh<pid>n0); on exit, also on Ctrl-C,
# `scripts/netns.sh gc` removes any segment whose driver process is gone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

profile=debug
cargo_flags=()
args=()
while (($# > 0)); do
    case $1 in
    -h | --help) usage ;;
    --release)
        profile=release
        cargo_flags=(--release)
        ;;
    *) args+=("$1") ;;
    esac
    shift
done
((${#args[@]} > 0)) || usage
[[ $(id -u) -eq 0 ]] || {
    echo "chaos/run.sh: must run as root (network namespaces)" >&2
    exit 2
}

cd "$root"
cargo build "${cargo_flags[@]}" --bin leasehold
cargo build "${cargo_flags[@]}" -p leasehold-tests --example chaos

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    "$root/scripts/netns.sh" gc || true
}
trap cleanup EXIT

status=0
LEASEHOLD_BIN="$root/target/$profile/leasehold" "$root/target/$profile/examples/chaos" "${args[@]}" || status=$?
exit "$status"
