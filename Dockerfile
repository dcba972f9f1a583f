# One image for the whole exercise: `taskserver` (the default command),
# `clientemulator` (the clients in docker-compose.yml override the command)
# and `coordination` (the contenders and workers of docker-compose.zookeeper.yml).
#
#   docker build -t taskserver:local .
#   docker run --rm -p 127.0.0.1:9000:9000 taskserver:local
#
# Stages: `planner` keeps the workspace's skeleton, `builder` compiles the
# dependencies from it and then both binaries, and the final stage is a slim
# Debian image with only the binaries. All are Debian 12 "bookworm", so the
# binaries are linked against exactly the glibc (2.36) they run with. Both base
# images exist for amd64 and arm64 (Docker Desktop on Apple silicon).
#
# There is deliberately no "# syntax=" line and no `RUN --mount`: the file builds
# with BuildKit and with the classic builder alike, and offline from base images
# made locally (scripts/docker-base-images.sh does that for the e2e test).

# A skeleton of the workspace: every Cargo.toml, the Cargo.lock, and every file
# that can be a target's root (lib.rs, main.rs, src/bin, build.rs, tests,
# benches, examples) replaced by a stand-in. It is all cargo needs to resolve
# and build the dependencies, and it changes only when the manifests or the
# set of targets change, not when the code does. (cargo-chef's idea, in find.)
FROM rust:1.95-slim-bookworm AS planner
WORKDIR /src
COPY . .
RUN mkdir /skeleton \
    && find . -name target -prune -o -type f \( -name Cargo.toml -o -name Cargo.lock \) \
        -exec cp --parents '{}' /skeleton/ ';' \
    && find . -name target -prune -o -type f -name '*.rs' \( -path '*/src/lib.rs' \
        -o -path '*/src/main.rs' -o -path '*/src/bin/*' -o -name build.rs \
        -o -path '*/tests/*' -o -path '*/benches/*' -o -path '*/examples/*' \) -print \
    | while read -r file; do \
        mkdir -p "/skeleton/${file%/*}"; \
        case "$file" in \
            */lib.rs) : > "/skeleton/$file" ;; \
            *) echo 'fn main() {}' > "/skeleton/$file" ;; \
        esac; \
    done


FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src

# Dependencies first, in their own layer, built against the skeleton. Docker
# reuses this layer as long as the skeleton is the same, so editing the code
# recompiles only our crates. Then `cargo clean` drops the stand-ins' own
# artifacts, so cargo rebuilds our crates even if the real files look older.
COPY --from=planner /skeleton/ ./
RUN cargo build --release --locked -p taskserver -p clientemulator -p coordination \
    && cargo clean --release -p taskserver -p clientemulator -p coordination

# Now the real code of the crates the image ships. (Should they ever
# depend on another crate of the workspace by path, copy that one here too.)
COPY taskserver taskserver
COPY clientemulator clientemulator
COPY coordination coordination
RUN cargo build --release --locked -p taskserver -p clientemulator -p coordination \
    && install -D -m 0755 -t /out target/release/taskserver target/release/clientemulator \
        target/release/coordination


FROM debian:bookworm-slim

# A fixed non-root user, uid/gid 1000, for the clients and for a server with
# no data file of its own. The server itself runs as whoever owns the
# bind-mounted tasks.json (docker/entrypoint.sh): the image starts as root only
# to choose that user, then drops to it, and never changes the file's owner or
# mode. /app is writable by everyone (mode 1777, like /tmp), whatever uid the
# server gets: it writes tasks.json in place and may put a `tasks.json.torn-*`
# side file next to it when it repairs a crash-torn tail. /journal is where
# the election contenders of docker-compose.zookeeper.yml note what they said
# (a volume there starts with this folder's mode, so uid 1000 can write it).
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid 1000 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
    && install -d -m 1777 /app /journal

COPY --from=builder /out/ /usr/local/bin/
COPY docker/entrypoint.sh /usr/local/bin/taskserver-entrypoint

WORKDIR /app
ENV TASKSERVER_BIND=0.0.0.0:9000 \
    TASKSERVER_DATA=/app/tasks.json
EXPOSE 9000
ENTRYPOINT ["taskserver-entrypoint"]

# `taskserver healthcheck` exits 0 when GET http://127.0.0.1:9000/health answers
# 200; no curl needed in the image. Compose sets a shorter interval.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["taskserver", "healthcheck"]

CMD ["taskserver"]
