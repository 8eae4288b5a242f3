#!/usr/bin/env bash
# Builds the Debian package of Leasehold (package `leasehold`: /usr/bin/leasehold, the systemd unit
# packaging/leasehold.service, /etc/leasehold/leasehold.toml from the example config) with cargo-deb,
# installing cargo-deb first when it is missing.
#
#   scripts/package.sh                      # cargo build --release, then target/debian/leasehold_*.deb
#   scripts/package.sh --binary PATH [--output FILE]
#                                           # package an already built binary (the tests package the one
#                                           # they run); stripped, as a release build would be
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BINARY=
OUTPUT=
while (($#)); do
    case $1 in
    --binary) BINARY=$2; shift 2 ;;
    --output) OUTPUT=$2; shift 2 ;;
    *) echo "scripts/package.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
command -v dpkg-deb >/dev/null || { echo "scripts/package.sh: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }

args=(-p leasehold-node --no-build)
[[ -n $OUTPUT ]] && args+=(--output "$OUTPUT")
if [[ -z $BINARY ]]; then
    cargo build --release --bin leasehold
    exec cargo deb "${args[@]}" --strip
fi
[[ -x $BINARY ]] || { echo "scripts/package.sh: $BINARY is not an executable" >&2; exit 1; }
# cargo-deb takes the binary from <target dir>/release: give it a target dir holding only this one.
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/release"
cp "$BINARY" "$STAGE/release/leasehold"
CARGO_TARGET_DIR=$STAGE cargo deb "${args[@]}" --fast --strip
