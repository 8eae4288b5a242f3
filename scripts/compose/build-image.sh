#!/usr/bin/env bash
# Build the leasehold image from the Dockerfile at the top of the repository (cargo build inside the
# build, from the source in the working tree), with nothing pulled: unless other bases are named, the
# two base images are the local stand-ins scripts/compose/base-images.sh makes (once, a few
# minutes; it needs root and this machine's Rust toolchain).
#
#   scripts/compose/build-image.sh [--tag NAME:TAG] [--profile PROFILE] [--features LIST]
#                                  [--etcd-tag NAME:TAG] [--rust-image IMAGE]
#                                  [--runtime-image IMAGE] [--public-bases]
#
#   --tag NAME:TAG         the image name (default: $LEASEHOLD_IMAGE, else leasehold:dev)
#   --profile PROFILE      the cargo profile (default release; tests/compose.rs builds compose-test)
#   --features LIST        cargo features, comma-separated (FEATURES): `etcd` for --store etcd
#   --etcd-tag NAME:TAG    also build the etcd server image (scripts/compose/etcd/Dockerfile, Debian's
#                          etcd on the same runtime base) for docker-compose.etcd.yml, e.g.
#                          leasehold-etcd:dev
#   --rust-image IMAGE     the builder's base (RUST_IMAGE) instead of the stand-in
#   --runtime-image IMAGE  the final image's base (RUNTIME_IMAGE) instead of the stand-in
#   --public-bases         the Dockerfile's defaults, rust:1-slim-bookworm and debian:bookworm-slim
#                          (Docker pulls them from its registry)
#
# The build's output streams to the terminal. The image the tag named before is removed, unless a
# container still uses it; Docker's build cache (the intermediate images) stays for the next build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tag=${LEASEHOLD_IMAGE:-leasehold:dev}
profile=release
features=
etcd_tag=
rust_image=
runtime_image=
public=0

die() {
    echo "build-image.sh: $*" >&2
    exit 1
}

while (($#)); do
    case $1 in
        --tag) tag=${2:?--tag needs a name}; shift 2 ;;
        --profile) profile=${2:?--profile needs a cargo profile}; shift 2 ;;
        --features) features=${2?--features needs a list}; shift 2 ;;
        --etcd-tag) etcd_tag=${2:?--etcd-tag needs a name}; shift 2 ;;
        --rust-image) rust_image=${2:?--rust-image needs an image}; shift 2 ;;
        --runtime-image) runtime_image=${2:?--runtime-image needs an image}; shift 2 ;;
        --public-bases) public=1; shift ;;
        -h | --help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

command -v docker >/dev/null || die "docker is not installed"

build_args=(--build-arg "PROFILE=$profile" --build-arg "FEATURES=$features")
# The commit for `leasehold --version`, as node/build.rs names it (the build context has no .git).
if commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null); then
    [[ -z $(git -C "$root" status --porcelain --untracked-files=no) ]] || commit=$commit-dirty
    build_args+=(--build-arg "LEASEHOLD_COMMIT=$commit")
fi
if ((!public)) && [[ -z $rust_image || -z $runtime_image ]]; then
    # The last line of base-images.sh: RUST_IMAGE=... RUNTIME_IMAGE=...
    bases=$("$root/scripts/compose/base-images.sh" | tail -n 1) || die "cannot make the stand-in base images"
    for pair in $bases; do
        case $pair in
            RUST_IMAGE=*) rust_image=${rust_image:-${pair#RUST_IMAGE=}} ;;
            RUNTIME_IMAGE=*) runtime_image=${runtime_image:-${pair#RUNTIME_IMAGE=}} ;;
        esac
    done
fi
[[ -n $rust_image ]] && build_args+=(--build-arg "RUST_IMAGE=$rust_image")
[[ -n $runtime_image ]] && build_args+=(--build-arg "RUNTIME_IMAGE=$runtime_image")

old_id=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
echo "build-image.sh: docker build ${build_args[*]} -t $tag" >&2
started=$SECONDS
docker build --force-rm "${build_args[@]}" -t "$tag" -f "$root/Dockerfile" "$root" >&2 ||
    die "docker build failed"
built_in=$((SECONDS - started))

# Smoke check: the binary starts inside the image (libraries and loader in place).
version=$(docker run --rm --network none "$tag" leasehold --version) ||
    die "the image $tag was built, but leasehold does not start in it"
new_id=$(docker image inspect -f '{{.Id}}' "$tag")
if [[ -n $old_id && $old_id != "$new_id" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi
size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.1f MB", $1/1e6}'; }
echo "build-image.sh: $tag ($version, profile $profile, features ${features:-none}, $(size "$tag"), built in ${built_in} s)"

if [[ -n $etcd_tag ]]; then
    etcd_args=()
    [[ -n $runtime_image ]] && etcd_args+=(--build-arg "RUNTIME_IMAGE=$runtime_image")
    old_id=$(docker image inspect -f '{{.Id}}' "$etcd_tag" 2>/dev/null || true)
    echo "build-image.sh: docker build ${etcd_args[*]} -t $etcd_tag scripts/compose/etcd" >&2
    started=$SECONDS
    docker build --force-rm "${etcd_args[@]}" -t "$etcd_tag" "$root/scripts/compose/etcd" >&2 ||
        die "docker build of the etcd image failed"
    built_in=$((SECONDS - started))
    # All of its output, then the first line (`| head` could end etcd with SIGPIPE, and pipefail).
    version=$(docker run --rm --network none "$etcd_tag" etcd --version) ||
        die "the image $etcd_tag was built, but etcd does not start in it"
    version=${version%%$'\n'*}
    new_id=$(docker image inspect -f '{{.Id}}' "$etcd_tag")
    if [[ -n $old_id && $old_id != "$new_id" ]]; then
        docker image rm "$old_id" >/dev/null 2>&1 || true
    fi
    echo "build-image.sh: $etcd_tag ($version, $(size "$etcd_tag"), built in ${built_in} s)"
fi
