# Leasehold's container image, built from the source in this directory.
#
#   docker build -t leasehold:dev .
#
# Build arguments:
#   RUST_IMAGE     the builder's base: cargo and rustc (1.85 or newer), gcc and libc6-dev for linking
#                  (default rust:1-slim-bookworm)
#   RUNTIME_IMAGE  the final image's base: Debian bookworm or another glibc system as new
#                  (default debian:bookworm-slim)
#   PROFILE        the cargo profile of the build (default release; the compose test uses compose-test)
#   FEATURES       cargo features of the leasehold binary (default none; `etcd`: the etcd lease store,
#                  `--store etcd`, which needs protoc: the builder installs protobuf-compiler when its
#                  base lacks it)
# Without a registry, scripts/compose/base-images.sh makes local stand-ins for both bases and
# scripts/compose/build-image.sh builds with them.
#
# The image runs as the user leasehold (10001), owner of /data and /secret. /usr/local/bin/leasehold
# carries the file capabilities cap_net_bind_service and cap_net_raw (ports 67, 69 and 80;
# SO_BINDTODEVICE on kernels before 5.7): give the container those two (docker run --cap-drop ALL
# --cap-add NET_BIND_SERVICE --cap-add NET_RAW) and not no-new-privileges, which voids file
# capabilities. No file in the image is setuid or setgid. A static busybox supplies what the base
# lacks (wget for health checks, udhcpc and ip for the compose test's clients).
ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
ARG FEATURES=
# setcap and a static busybox; protoc for the etcd feature (etcd-client's gRPC code). A stand-in base
# has all three already; the public rust images lack protoc.
RUN packages=; \
    command -v setcap >/dev/null || packages="$packages libcap2-bin"; \
    [ -x /bin/busybox ] || packages="$packages busybox-static"; \
    case ",$FEATURES," in *,etcd,*) command -v protoc >/dev/null || packages="$packages protobuf-compiler" ;; esac; \
    if [ -n "$packages" ]; then \
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            $packages && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
ARG PROFILE=release
# The dependencies first, in a layer of their own built from the manifests and stub sources: after a
# change to Leasehold's source Docker reuses it, and only Leasehold's crates compile again. Every
# workspace member's manifest is needed here (cargo loads the whole workspace).
COPY Cargo.toml Cargo.lock ./
COPY config/Cargo.toml config/
COPY cluster/Cargo.toml cluster/
COPY node/Cargo.toml node/
COPY sim/Cargo.toml sim/
COPY tests/Cargo.toml tests/
RUN mkdir -p config/src cluster/src node/src sim/src \
    && touch config/src/lib.rs cluster/src/lib.rs node/src/lib.rs sim/src/lib.rs \
    && echo 'fn main() {}' >node/src/main.rs && cp node/src/main.rs sim/src/main.rs \
    && cargo build --locked --profile "$PROFILE" -p leasehold-node --bin leasehold ${FEATURES:+--features "$FEATURES"} \
    && cargo clean --locked --profile "$PROFILE" -p leasehold-node -p leasehold-cluster -p leasehold-config \
    && rm -rf config/src cluster/src node/src sim/src
COPY . .
# The commit `leasehold --version` names (node/build.rs; the context has no .git): build-image.sh
# passes it.
ARG LEASEHOLD_COMMIT=
# Everything for the final image goes to /out, as a tree: Docker's classic builder keeps a file's
# capabilities when COPY --from copies a directory, and drops them when it copies the file alone.
RUN cargo build --locked --profile "$PROFILE" -p leasehold-node --bin leasehold ${FEATURES:+--features "$FEATURES"} \
    && dir=$PROFILE && if [ "$PROFILE" = dev ]; then dir=debug; fi \
    && mkdir -p /out/bin \
    && strip --strip-debug -o /out/bin/leasehold "target/$dir/leasehold" \
    && setcap cap_net_bind_service,cap_net_raw+ep /out/bin/leasehold \
    && cp /bin/busybox /out/bin/busybox

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/ /usr/local/
COPY scripts/compose/image/entrypoint.sh /usr/local/bin/leasehold-entrypoint
COPY scripts/compose/image/udhcpc.script /etc/leasehold/udhcpc.script
# busybox applets for every command the base lacks; the user; its directories; no setuid or setgid
# file (the process keeps the two capabilities its binary carries, and gains nothing by exec).
RUN set -e; \
    for applet in $(/usr/local/bin/busybox --list); do \
        command -v "$applet" >/dev/null || ln -s busybox "/usr/local/bin/$applet"; \
    done; \
    echo 'leasehold:x:10001:10001:leasehold:/data:/usr/sbin/nologin' >>/etc/passwd; \
    echo 'leasehold:x:10001:' >>/etc/group; \
    mkdir -p /data /secret; \
    chown 10001:10001 /data /secret; \
    chmod 700 /data /secret; \
    find / -xdev -type f -perm /6000 -exec chmod ug-s {} +; \
    chmod 755 /usr/local/bin/leasehold-entrypoint /etc/leasehold/udhcpc.script; \
    leasehold --version
USER 10001:10001
EXPOSE 67/udp 69/udp 80/tcp 6767/tcp 6768/tcp
ENTRYPOINT ["/usr/local/bin/leasehold-entrypoint"]
CMD ["leasehold", "--help"]
