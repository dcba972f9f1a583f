#!/usr/bin/env bash
# Make the Dockerfile's base images locally, for machines that cannot pull them.
#
#   scripts/docker-base-images.sh [--force] [DOCKERFILE] [--compose FILE]...
#
# The Dockerfile is a normal one: `FROM rust:1.95-slim-bookworm` and
# `FROM debian:bookworm-slim`, which Docker pulls from Docker Hub. Our CI machine
# reaches no container registry, so this script builds images under exactly
# those names from Debian's own packages. Docker then finds them locally and
# never tries to pull (as long as nobody passes --pull or adds a "# syntax="
# line, which would make BuildKit fetch a frontend image).
#
# - debian:<suite>-slim: a minimal Debian root made with debootstrap and
#   loaded with `docker import`.
# - rust:<version>-slim-<suite>, in two layers:
#   1. tareas-base/rust-toolchain:<version>-slim-<suite>: that Debian image plus
#      gcc and libc6-dev (as in the official image) and this machine's own Rust
#      toolchain (rustup's, in ~/.rustup), copied in;
#   2. on top, the crates of the workspace's Cargo.lock (`cargo vendor` on the
#      host) and a cargo config in CARGO_HOME that takes crates from there.
#      Containers here cannot download crates (crates.io is reachable from the
#      host only), and this way the Dockerfile needs no vendoring step of its
#      own. A label records which Cargo.lock files the crates come from. When
#      Cargo.lock changes, its crates are added on top (a branch and main, or
#      two checkouts building at once, then both find theirs); after
#      8 locks the image starts again from the toolchain layer.
#
# - zookeeper:<major.minor> (for docker-compose.zookeeper.yml, named with
#   --compose): that Debian image plus Debian's `zookeeper` package and the
#   JRE it depends on, with an entry point that reads the official image's ZOO_*
#   settings (ZOO_MY_ID, ZOO_SERVERS, ZOO_TICK_TIME, ZOO_4LW_COMMANDS_WHITELIST,
#   ZOO_CFG_EXTRA, ...), its folders (/conf, /data, /datalog, /logs), its user
#   and its command (`zkServer.sh start-foreground`), and zkCli.sh on PATH.
#   Its files are in scripts/zookeeper-image/. Debian has one ZooKeeper per
#   release (3.8.0 in bookworm); another version is refused.
#
# Images that are already here are reused: a real one (pulled on a machine that
# could) as it is, one of ours as long as its crates match Cargo.lock. --force
# remakes them all. The names are read from the Dockerfile's FROM lines and the
# `image:` lines of each --compose file, so they cannot drift apart.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

force=false
dockerfile="$ROOT/Dockerfile"
compose_files=()
while (($#)); do
    case "$1" in
        --force) force=true ;;
        --compose)
            [[ -n "${2:-}" ]] || { echo "base-images: --compose needs a file" >&2; exit 2; }
            compose_files+=("$2")
            shift
            ;;
        *) dockerfile="$1" ;;
    esac
    shift
done

log() { echo "base-images: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Temporary folders, removed however the script ends.
scratch=()
cleanup() {
    if ((${#scratch[@]})); then
        rm -rf "${scratch[@]}"
    fi
}
trap cleanup EXIT

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# The external images named by FROM lines ("FROM name [AS stage]"), skipping
# FROM lines that name an earlier stage ("FROM builder").
base_images() {
    awk '
        toupper($1) == "FROM" {
            name = $2
            if (!(tolower(name) in stages)) print name
            if (toupper($3) == "AS") stages[tolower($4)] = 1
        }' "$1" | sort -u
}

# The images a compose file names literally (`image: zookeeper:3.8`); those
# with a ${VARIABLE} in them are the project's own, built by compose.
compose_images() {
    sed -n -E 's/^[[:space:]]*image:[[:space:]]*([^$[:space:]]+)[[:space:]]*$/\1/p' "$1" | sort -u
}

# debootstrap is not on a new machine: install it from Debian's packages.
ensure_debootstrap() {
    command -v debootstrap >/dev/null && return
    [[ $(id -u) == 0 ]] || die "debootstrap is missing; install it (apt-get install debootstrap) or run as root"
    log "installing debootstrap from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

# make_debian NAME SUITE: a minimal Debian root, trimmed like the official
# "-slim" images (no docs, man pages or apt lists), loaded with `docker import`.
make_debian() {
    local name="$1" suite="$2" rootfs
    ensure_debootstrap
    rootfs="$(mktemp -d /var/tmp/debian-rootfs.XXXXXX)"
    scratch+=("$rootfs")
    log "debootstrap $suite ($MIRROR) for $name"
    debootstrap --variant=minbase --arch="$(dpkg --print-architecture)" \
        "$suite" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
        || { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
    rm -f "$rootfs.log"

    # Like the official image: security updates too, and apt inside the image
    # skips docs and man pages when it installs something later.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
    rm -rf "$rootfs"/usr/share/{man,info}/* "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/log/*.log "$rootfs"/tmp/*

    log "docker import -> $name"
    tar --numeric-owner -C "$rootfs" -c . \
        | docker import --change 'CMD ["bash"]' \
            --message "made locally by scripts/docker-base-images.sh (debootstrap $suite)" \
            - "$name" >/dev/null
}

# The host's Rust toolchain folder (rustup layout: bin/, lib/) for VERSION,
# e.g. 1.95. Prefer an exact match; otherwise use the default toolchain and
# say so, since the image then holds another version than its name says.
host_toolchain() {
    local version="$1" dir
    for dir in "${RUSTUP_HOME:-$HOME/.rustup}"/toolchains/"$version"*; do
        if [[ -x "$dir/bin/rustc" ]]; then
            readlink -f "$dir"
            return
        fi
    done
    command -v rustc >/dev/null || die "no Rust toolchain on this machine to copy into the builder image"
    log "WARNING: no toolchain $version here; using $(rustc --version) instead"
    rustc --print sysroot
}

# make_toolchain NAME VERSION SUITE: debian:SUITE-slim + gcc + this machine's
# toolchain, laid out as in the official image (RUSTUP_HOME=/usr/local/rustup,
# CARGO_HOME=/usr/local/cargo, cargo and rustc on PATH).
make_toolchain() {
    local name="$1" version="$2" suite="$3" toolchain triple context
    local base="debian:$suite-slim"
    image_exists "$base" || make_debian "$base" "$suite"

    toolchain="$(host_toolchain "$version")"
    triple="$("$toolchain/bin/rustc" -vV | sed -n 's/^host: //p')"
    context="$(mktemp -d /var/tmp/rust-image.XXXXXX)"
    scratch+=("$context")
    log "copying $("$toolchain/bin/rustc" --version) from $toolchain"
    # The documentation is most of the toolchain's size and not needed to build.
    mkdir "$context/toolchain"
    tar -C "$toolchain" --exclude=./share/doc -c . | tar -C "$context/toolchain" -x

    cat >"$context/Dockerfile" <<EOF
FROM $base
RUN apt-get update \\
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY toolchain /usr/local/rustup/toolchains/$version-$triple
RUN mkdir -p /usr/local/cargo/bin \\
    && for tool in cargo rustc rustdoc; do \\
        ln -s /usr/local/rustup/toolchains/$version-$triple/bin/\$tool /usr/local/cargo/bin/\$tool; \\
    done \\
    && cargo --version && rustc --version
EOF
    log "docker build -> $name"
    docker build --quiet -t "$name" "$context" >/dev/null
}

# make_vendored NAME BASE_IMAGE LOCKS: BASE_IMAGE (the toolchain image, or
# this image as it is) plus the workspace's crates, so that `cargo build
# --locked` works with no network. LOCKS is the label's new value.
make_vendored() {
    local name="$1" base_image="$2" locks="$3" context
    context="$(mktemp -d /var/tmp/rust-vendor.XXXXXX)"
    scratch+=("$context")
    log "cargo vendor (on the host) for $workspace/Cargo.lock"
    # --versioned-dirs lets crates of several versions sit side by side.
    cargo vendor --quiet --locked --versioned-dirs \
        --manifest-path "$workspace/Cargo.toml" "$context/vendor" >/dev/null
    cat >"$context/config.toml" <<'EOF'
# Written by scripts/docker-base-images.sh: this image takes crates from the
# folder below instead of downloading them from crates.io.
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/usr/local/cargo/vendor"
EOF
    # COPY merges into the folder the base may have: crates of earlier locks stay.
    cat >"$context/Dockerfile" <<EOF
FROM $base_image
COPY vendor /usr/local/cargo/vendor
COPY config.toml /usr/local/cargo/config.toml
LABEL $LOCK_LABEL="$locks"
EOF
    log "docker build -> $name"
    docker build --quiet -t "$name" "$context" >/dev/null
}

# make_rust NAME VERSION SUITE EARLIER_LOCKS: the toolchain image (reused when
# present), then the vendored crates on top: on top of NAME itself while it
# holds fewer than MAX_LOCKS locks' crates, else afresh.
make_rust() {
    local name="$1" version="$2" suite="$3" earlier="$4"
    local toolchain_image="tareas-base/rust-toolchain:$version-slim-$suite"
    if $force || ! image_exists "$toolchain_image"; then
        make_toolchain "$toolchain_image" "$version" "$suite"
    fi
    local base="$toolchain_image" locks="$lock_sum"
    read -r -a earlier_list <<<"$earlier"
    if [[ -n "$earlier" ]] && ! $force && ((${#earlier_list[@]} < MAX_LOCKS)); then
        base="$name"
        locks="$earlier $lock_sum"
        log "adding the crates of this Cargo.lock to $name (it has those of ${#earlier_list[@]} other locks)"
    fi
    # The image this replaces would linger untagged; remove it if nothing else
    # (a container, a build cache layer, the new image itself) still uses it.
    local old
    old="$(docker image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)"
    make_vendored "$name" "$base" "$locks"
    if [[ -n "$old" && "$old" != "$(docker image inspect --format '{{.Id}}' "$name")" ]]; then
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
}

# make_zookeeper NAME VERSION SUITE: debian:SUITE-slim + Debian's zookeeper
# package, laid out and started like the official zookeeper image.
make_zookeeper() {
    local name="$1" version="$2" suite="$3" context
    local base="debian:$suite-slim"
    image_exists "$base" || make_debian "$base" "$suite"
    context="$(mktemp -d /var/tmp/zookeeper-image.XXXXXX)"
    scratch+=("$context")
    cp "$ROOT/scripts/zookeeper-image/docker-entrypoint.sh" "$ROOT/scripts/zookeeper-image/zkEnv.sh" "$context/"
    cat >"$context/Dockerfile" <<EOF
FROM $base
# The package brings its JRE (Debian's default-jre) along. The JRE's
# post-install links its man page, whose folder a slim image lacks.
RUN mkdir -p /usr/share/man/man1 \\
    && apt-get update \\
    && apt-get install -y --no-install-recommends zookeeper \\
    && rm -rf /var/lib/apt/lists/* \\
    && installed="\$(dpkg-query -W -f='\${Version}' zookeeper)" \\
    && case "\$installed" in $version.*) ;; *) echo "Debian's zookeeper is \$installed, not $version"; exit 1 ;; esac
COPY zkEnv.sh /usr/share/zookeeper/bin/zkEnv.sh
COPY docker-entrypoint.sh /docker-entrypoint.sh
ENV ZOO_CONF_DIR=/conf ZOO_DATA_DIR=/data ZOO_DATA_LOG_DIR=/datalog ZOO_LOG_DIR=/logs \\
    ZOOCFGDIR=/conf ZOO_TICK_TIME=2000 ZOO_INIT_LIMIT=5 ZOO_SYNC_LIMIT=2 \\
    ZOO_AUTOPURGE_PURGEINTERVAL=0 ZOO_AUTOPURGE_SNAPRETAINCOUNT=3 ZOO_MAX_CLIENT_CNXNS=60 \\
    ZOO_STANDALONE_ENABLED=true ZOO_ADMINSERVER_ENABLED=true \\
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/share/zookeeper/bin
RUN mkdir -p /conf /data /datalog /logs \\
    && chown zookeeper:zookeeper /conf /data /datalog /logs
WORKDIR /usr/share/zookeeper
VOLUME ["/data", "/datalog", "/logs"]
EXPOSE 2181 2888 3888 8080
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["zkServer.sh", "start-foreground"]
EOF
    log "docker build -> $name (Debian's zookeeper package)"
    docker build --quiet -t "$name" "$context" >/dev/null
}

# Which Cargo.lock files the vendored crates of an image came from (their
# sha256, space-separated), and how many an image may collect.
readonly LOCK_LABEL="tareas.cargo-lock-sha256"
readonly MAX_LOCKS=8
lock_label() {
    docker image inspect --format "{{ index .Config.Labels \"$LOCK_LABEL\" }}" "$1" 2>/dev/null || true
}

[[ -f "$dockerfile" ]] || die "no Dockerfile at $dockerfile"
workspace="$(cd "$(dirname "$dockerfile")" && pwd)"
[[ -f "$workspace/Cargo.lock" ]] || die "no Cargo.lock next to $dockerfile"
lock_sum="$(sha256sum "$workspace/Cargo.lock" | cut -d' ' -f1)"
docker info >/dev/null 2>&1 || die "docker info does not answer: is the Docker Engine running?"

mapfile -t images < <(
    base_images "$dockerfile"
    for file in "${compose_files[@]+"${compose_files[@]}"}"; do
        [[ -f "$file" ]] || die "no compose file at $file"
        compose_images "$file"
    done
)
for image in "${images[@]}"; do
    start=$SECONDS
    case "$image" in
        debian:*)
            # debian:bookworm-slim, debian:trixie, ...
            if image_exists "$image" && ! $force; then
                log "reusing $image"
                continue
            fi
            tag="${image#debian:}"
            make_debian "$image" "${tag%-slim}"
            ;;
        rust:*-slim-*)
            # rust:1.95-slim-bookworm -> version 1.95, suite bookworm
            made_here="$(lock_label "$image")"
            if image_exists "$image" && [[ -z "$made_here" ]] && ! $force; then
                # The real image (pulled earlier, say): it downloads crates itself.
                log "reusing $image (not made by this script)"
                continue
            fi
            if [[ " $made_here " == *" $lock_sum "* ]] && ! $force; then
                log "reusing $image (it has the crates of this Cargo.lock)"
                continue
            fi
            tag="${image#rust:}"
            make_rust "$image" "${tag%%-slim-*}" "${tag##*-slim-}" "$made_here"
            ;;
        zookeeper:*)
            # zookeeper:3.8 -> Debian's zookeeper 3.8.x, on bookworm
            if image_exists "$image" && ! $force; then
                log "reusing $image"
                continue
            fi
            make_zookeeper "$image" "${image#zookeeper:}" bookworm
            ;;
        *)
            die "cannot make $image locally: only debian:SUITE[-slim], rust:VERSION-slim-SUITE and zookeeper:VERSION are known"
            ;;
    esac
    log "made $image in $((SECONDS - start)) s"
done
