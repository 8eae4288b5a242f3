#!/usr/bin/env bash
# Build the leasehold container image with nothing pulled: no base image, no registry.
#
# A root filesystem is assembled in a temporary directory — the leasehold binary (debug info stripped),
# the shared libraries ldd lists for it, a static busybox with a link per applet (sh, wget for the
# health check, udhcpc and ip for the client), the entrypoint and the udhcpc hook from image/ — and
# imported with `docker import`. Nodes and clients run the same image.
#
#   scripts/compose/build-image.sh [--binary PATH] [--tag NAME:TAG]
#
#   --binary PATH   put this leasehold binary in the image (e.g. target/debug/leasehold) instead of
#                   building one with `cargo build --release --bin leasehold`
#   --tag NAME:TAG  the image name (default: $LEASEHOLD_IMAGE, else leasehold:dev)
#
# Installs the Debian package busybox-static (apt-get, as root) when no static busybox is found.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/scripts/compose
tag=${LEASEHOLD_IMAGE:-leasehold:dev}
binary=

die() {
    echo "build-image.sh: $*" >&2
    exit 1
}

while (($#)); do
    case $1 in
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --tag) tag=${2:?--tag needs a name}; shift 2 ;;
        -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

command -v docker >/dev/null || die "docker is not installed"

# A static binary: ldd refuses it ("not a dynamic executable").
is_static() { [[ -x $1 ]] && ! ldd "$1" >/dev/null 2>&1; }
busybox=
for candidate in /bin/busybox /usr/bin/busybox; do
    if is_static "$candidate"; then busybox=$candidate; break; fi
done
if [[ -z $busybox ]]; then
    [[ $(id -u) -eq 0 ]] || die "no static busybox found: install busybox-static (apt-get install busybox-static, as root)"
    echo "build-image.sh: installing busybox-static"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null; }
    busybox=/bin/busybox
    is_static "$busybox" || die "busybox-static installed, but $busybox is not a static binary"
fi

if [[ -z $binary ]]; then
    (cd "$root" && cargo build --release --bin leasehold)
    binary=$root/target/release/leasehold
fi
[[ -x $binary ]] || die "$binary is not an executable (build it first, or drop --binary)"

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/leasehold-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,data,dev,etc/leasehold,proc,root,run,sys,tmp,var/run}
chmod 1777 "$rootfs/tmp"

# The binary without its debug info (the release profile keeps line tables: 80 MB -> about 15 MB).
if command -v strip >/dev/null; then
    strip --strip-debug -o "$rootfs/bin/leasehold" "$binary"
else
    cp "$binary" "$rootfs/bin/leasehold"
fi
chmod 755 "$rootfs/bin/leasehold"

# Its shared libraries and the dynamic loader, at the paths the binary asks for.
if ldd "$binary" >/dev/null 2>&1; then
    while read -r lib; do
        [[ -n $lib ]] || continue
        mkdir -p "$rootfs$(dirname "$lib")"
        cp -L "$lib" "$rootfs$lib"
    done < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
fi

cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [[ -e $rootfs/bin/$applet ]] || ln -s busybox "$rootfs/bin/$applet"
done
ln -s bin "$rootfs/sbin"
mkdir -p "$rootfs/usr"
ln -s ../bin "$rootfs/usr/bin"
ln -s ../bin "$rootfs/usr/sbin"

install -m 755 "$here/image/entrypoint.sh" "$rootfs/bin/leasehold-entrypoint"
install -m 755 "$here/image/udhcpc.script" "$rootfs/etc/leasehold/udhcpc.script"
printf 'root:x:0:0:root:/root:/bin/sh\nleasehold:x:10001:10001:leasehold:/data:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nleasehold:x:10001:\n' >"$rootfs/etc/group"
# The nodes run as leasehold (10001): their state and the shared credentials are its own. A named
# volume mounted there starts with the image's ownership.
mkdir -p "$rootfs/secret"
chown -R 0:0 "$rootfs"
chown 10001:10001 "$rootfs/data" "$rootfs/secret"
chmod 700 "$rootfs/data" "$rootfs/secret"

old_id=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
tar -C "$rootfs" --numeric-owner -c . |
    docker import \
        --change 'ENV PATH=/bin' \
        --change 'WORKDIR /' \
        --change 'ENTRYPOINT ["/bin/leasehold-entrypoint"]' \
        --change 'CMD ["leasehold", "--help"]' \
        --message "leasehold image from $(basename "$binary") (scripts/compose/build-image.sh)" \
        - "$tag" >/dev/null

# Smoke check: the binary starts inside the image (libraries and loader in place).
version=$(docker run --rm --network none "$tag" leasehold --version) ||
    die "the image $tag was built, but leasehold does not start in it"
new_id=$(docker image inspect -f '{{.Id}}' "$tag")
# The image this tag named before, now untagged: remove it unless a container still uses it.
if [[ -n $old_id && $old_id != "$new_id" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi
echo "build-image.sh: $tag ($version, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
