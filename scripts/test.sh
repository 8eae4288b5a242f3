#!/usr/bin/env bash
# Leasehold's test command (the one the README names, and what CI runs after fmt and clippy):
#   1. installs the packages the network-namespace tests drive, when missing (real DHCP clients, Kea's
#      perfdhcp and kea-dhcp4, ISC dhcpd (the lease files `leasehold import` reads), the tftp-hpa and atftp clients, curl,
#      busybox, iproute2, tcpdump, iptables);
#   2. makes sure a Docker engine with compose runs, for tests/compose.rs: installs docker.io and
#      docker-compose (Debian packages) when `docker` is missing, and starts the daemon when `docker info`
#      fails (the service, else dockerd in the background), waiting for it with a deadline;
#   3. builds every binary of the workspace (the tests run target/debug/leasehold);
#   4. runs every test of the workspace: unit, property, simulation and, as root, the netns tests.
# The netns tests need root (namespaces, veths, a bridge). Without root this script says so and fails,
# rather than skipping them silently; likewise when no Docker engine can be had.
#
#   scripts/test.sh [extra cargo test arguments, e.g. -p leasehold-tests --test netns_clients]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: must run as root: the network-namespace tests create namespaces, veth pairs and a" >&2
    echo "bridge (all private to the test). Run it in a root shell (or with sudo where there is one)" >&2
    exit 1
fi

PACKAGES=(isc-dhcp-client udhcpc dhcpcd kea-admin kea-dhcp4-server busybox-static iproute2 tcpdump iptables
    qemu-system-x86 ipxe-qemu ipxe ovmf isc-dhcp-relay dnsmasq-base isc-dhcp-server systemd tftp-hpa atftp curl
    protobuf-compiler etcd-server etcd-client debootstrap)
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
    dhcrelay dnsmasq dhcpd systemd-analyze dpkg-deb tftp atftp curl protoc etcd etcdctl; do
    command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
    command -v "$tool" >/dev/null || { echo "scripts/test.sh: $tool not found after install" >&2; exit 1; }
done

# The compose test needs a Docker engine with compose. An engine that already runs is left alone.
DOCKER_START_LIMIT_SECS=60
docker_missing=()
command -v docker >/dev/null || docker_missing+=(docker.io docker-compose)
if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1 \
    && ! command -v docker-compose >/dev/null; then
    docker_missing+=(docker-compose)
fi
if ((${#docker_missing[@]})); then
    echo "scripts/test.sh: installing ${docker_missing[*]} (for tests/compose.rs)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${docker_missing[@]}"
    command -v docker >/dev/null || { echo "scripts/test.sh: docker not found after installing docker.io" >&2; exit 1; }
fi
if ! docker info >/dev/null 2>&1; then
    echo "scripts/test.sh: the Docker daemon does not answer (docker info); starting it"
    dockerd_log=${TMPDIR:-/tmp}/leasehold-test-dockerd.log
    if ! service docker start >/dev/null 2>&1; then
        # No init system to ask (a container, a minimal VM): the daemon itself, in the background.
        if command -v dockerd >/dev/null; then
            nohup dockerd >"$dockerd_log" 2>&1 &
            echo "scripts/test.sh: started dockerd (pid $!, log $dockerd_log)"
        else
            echo "scripts/test.sh: 'service docker start' failed and there is no dockerd to start" >&2
        fi
    fi
    deadline=$((SECONDS + DOCKER_START_LIMIT_SECS))
    until docker info >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "scripts/test.sh: the Docker daemon did not come up within ${DOCKER_START_LIMIT_SECS} s, and" >&2
            echo "tests/compose.rs cannot run without it. docker info says:" >&2
            docker info 2>&1 | tail -n 5 >&2 || true
            [[ -f $dockerd_log ]] && { echo "dockerd's log ($dockerd_log) ends:" >&2; tail -n 10 "$dockerd_log" >&2; }
            exit 1
        fi
        sleep 1
    done
    echo "scripts/test.sh: the Docker daemon answers"
fi

# cargo-deb builds the Debian package that tests/package.rs installs (scripts/package.sh).
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

# Segments (network namespaces) left by an earlier run that was killed.
scripts/netns.sh gc

# The compose test's stand-in base images (mostly waiting on deb.debian.org), made while the workspace
# builds. When this fails the test makes them itself, and fails with the reason.
scripts/compose/base-images.sh >"${TMPDIR:-/tmp}/leasehold-base-images.log" 2>&1 &
bases_pid=$!
cargo build --workspace --bins
wait "$bases_pid" || echo "scripts/test.sh: base-images.sh failed (${TMPDIR:-/tmp}/leasehold-base-images.log)" >&2
export LEASEHOLD_BIN=${LEASEHOLD_BIN:-$PWD/target/debug/leasehold}
if (($#)); then
    cargo test "$@"
else
    cargo test --workspace
fi
