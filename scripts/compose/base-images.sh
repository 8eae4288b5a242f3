#!/usr/bin/env bash
# Make local stand-ins for the two base images the Dockerfile names, without any registry:
#
#   leasehold-base/debian:bookworm-slim        for RUNTIME_IMAGE (default debian:bookworm-slim): Debian
#       bookworm from `debootstrap --variant=minbase` (deb.debian.org), trimmed as the slim image is (no
#       documentation, manual pages, locales or apt lists), loaded with `docker import`;
#   leasehold-base/rust:<version>-slim-bookworm  for RUST_IMAGE (default rust:1-slim-bookworm): that
#       image plus gcc, libc6-dev, ca-certificates, libcap2-bin, busybox-static and protobuf-compiler
#       (protoc, for the etcd feature; apt-get in a `docker build`) and this machine's default Rust
#       toolchain (cargo, rustc, the standard library and rust-lld of `rustc --print sysroot`) in
#       /usr/local/rust. Debian's own rustc is too old.
#       It trusts the certificate authorities this machine added to its own store
#       (/usr/local/share/ca-certificates: a TLS-inspecting proxy's, say), so that cargo in the build
#       reaches crates.io wherever cargo on this machine does. The final image holds none of this.
#
# An image that already exists is kept (--force makes both again). On success the last line of
# standard output is the build arguments for the Dockerfile:
#   RUST_IMAGE=leasehold-base/rust:1.95.0-slim-bookworm RUNTIME_IMAGE=leasehold-base/debian:bookworm-slim
#
#   scripts/compose/base-images.sh [--force]
#
# Needs root (debootstrap; it installs the Debian package debootstrap with apt-get when missing),
# a Docker engine, and cargo and rustc on PATH. $LEASEHOLD_DEBIAN_MIRROR overrides the mirror.
set -euo pipefail
mirror=${LEASEHOLD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
runtime_tag=leasehold-base/debian:bookworm-slim
force=0

die() {
    echo "base-images.sh: $*" >&2
    exit 1
}
say() { echo "base-images.sh: $*" >&2; }

while (($#)); do
    case $1 in
        --force) force=1; shift ;;
        -h | --help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

command -v docker >/dev/null || die "docker is not installed"
# The toolchain of the machine's default (from /, so no directory override applies).
sysroot=$(cd / && rustc --print sysroot) || die "no rustc on PATH (install Rust with rustup)"
host=$(cd / && rustc -vV | sed -n 's/^host: //p')
version=$(cd / && rustc -vV | sed -n 's/^release: //p')
[[ $host == x86_64-unknown-linux-gnu ]] || die "the stand-in builder is made for x86_64-unknown-linux-gnu, not $host"
rust_tag=leasehold-base/rust:$version-slim-bookworm

exists() { docker image inspect "$1" >/dev/null 2>&1; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/leasehold-bases.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

if ((force)) || ! exists "$runtime_tag"; then
    [[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q debootstrap >/dev/null ||
            { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; }
    fi
    rootfs=$scratch/rootfs
    say "debootstrap --variant=minbase bookworm from $mirror (about a minute)"
    if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$scratch/debootstrap.log" 2>&1; then
        tail -n 20 "$scratch/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    # As the slim image: no documentation, manual pages or locales, now or from later installs; no
    # package lists or downloaded packages; nothing of this machine (debootstrap copies its
    # resolv.conf and hostname; Docker provides both, and /dev, at run time).
    rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
        "$rootfs"/var/log/apt/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/dev/* \
        "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/leasehold-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    printf 'APT::Install-Recommends "false";\n' >"$rootfs/etc/apt/apt.conf.d/leasehold-slim"
    # The suites debian:bookworm-slim lists: updates and security fixes too.
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    tar -C "$rootfs" --numeric-owner -c . |
        docker import --change 'CMD ["bash"]' \
            --message "Debian bookworm minbase, stand-in for debian:bookworm-slim (scripts/compose/base-images.sh)" \
            - "$runtime_tag" >/dev/null
    rm -rf "$rootfs"
    say "$runtime_tag made"
fi

if ((force)) || ! exists "$rust_tag"; then
    # What cargo and rustc need of the toolchain: not the documentation (most of its size), the other
    # tools or other targets. rust-lld: rustc links with it by default on this target.
    context=$scratch/rust-context
    mkdir -p "$context/rust/bin" "$context/rust/lib/rustlib/$host"
    cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$context/rust/bin/"
    cp -a "$sysroot"/lib/*.so* "$context/rust/lib/"
    cp -a "$sysroot/lib/rustlib/$host/lib" "$sysroot/lib/rustlib/$host/bin" "$context/rust/lib/rustlib/$host/"
    mkdir -p "$context/ca"
    find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$context/ca/" \; 2>/dev/null || true
    cat >"$context/Dockerfile" <<EOF
FROM $runtime_tag
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\
        gcc libc6-dev ca-certificates libcap2-bin busybox-static protobuf-compiler && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
COPY rust/ /usr/local/rust/
ENV CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN rustc --version && cargo --version
EOF
    say "building $rust_tag (apt-get in a container; the toolchain from $sysroot)"
    if ! docker build -q -t "$rust_tag" "$context" >"$scratch/build.log" 2>&1; then
        tail -n 20 "$scratch/build.log" >&2
        die "docker build of $rust_tag failed"
    fi
    # Stand-ins for other toolchain versions, from earlier runs: not needed any more.
    docker image ls --format '{{.Repository}}:{{.Tag}}' leasehold-base/rust | grep -vxF "$rust_tag" |
        xargs -r docker image rm >/dev/null 2>&1 || true
    say "$rust_tag made"
fi

echo "RUST_IMAGE=$rust_tag RUNTIME_IMAGE=$runtime_tag"
