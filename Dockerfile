# One image for the whole exercise: `taskserver` (the default command) and
# `clientemulator` (the clients in docker-compose.yml override the command).
#
#   docker build -t taskserver:local .
#   docker run --rm -p 127.0.0.1:9000:9000 taskserver:local
#
# Two stages: a Rust toolchain compiles both binaries, then only the binaries go
# into a slim Debian image. Both stages are Debian 12 "bookworm", so the binaries
# are linked against exactly the glibc (2.36) they run with. Both base images
# exist for amd64 and arm64, so this builds on Docker Desktop on Apple silicon.
#
# There is deliberately no "# syntax=" line and no `RUN --mount`: the file builds
# with BuildKit and with the classic builder alike, and offline from base images
# made locally (scripts/docker-base-images.sh does that for the e2e test).

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src

# Dependencies first, in their own layer: copy only the manifests, build the
# dependencies against empty stand-in crates, then throw the stand-ins' own
# artifacts away. Docker reuses this layer until Cargo.toml or Cargo.lock
# change, so editing the code recompiles only our two crates.
COPY Cargo.toml Cargo.lock ./
COPY taskserver/Cargo.toml taskserver/
COPY clientemulator/Cargo.toml clientemulator/
RUN for crate in taskserver clientemulator; do \
        mkdir -p "$crate/src" \
        && echo 'fn main() {}' > "$crate/src/main.rs" \
        && : > "$crate/src/lib.rs"; \
    done \
    && cargo build --release --locked \
    && cargo clean --release --package taskserver --package clientemulator \
    && rm -r taskserver/src clientemulator/src

# Now the real code. `cargo clean` above removed the stand-ins' fingerprints,
# so cargo rebuilds our crates even though the copied files may look older.
COPY taskserver taskserver
COPY clientemulator clientemulator
RUN cargo build --release --locked \
    && install -D -m 0755 -t /out target/release/taskserver target/release/clientemulator


FROM debian:bookworm-slim

# A fixed non-root user, uid/gid 1000: on a Linux laptop that is usually the
# owner of the bind-mounted tasks.json, and Docker Desktop (macOS, Windows) lets
# any uid write bind mounts. docker-compose.yml can run the server as another
# uid (APP_UID/APP_GID), so /app is writable by everyone (mode 1777, like /tmp):
# the server writes tasks.json in place and may put a `tasks.json.torn-*` side
# file next to it when it repairs a crash-torn tail.
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid 1000 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
    && install -d -m 1777 /app

COPY --from=builder /out/ /usr/local/bin/

WORKDIR /app
ENV TASKSERVER_BIND=0.0.0.0:9000 \
    TASKSERVER_DATA=/app/tasks.json
USER 1000:1000
EXPOSE 9000

# `taskserver healthcheck` exits 0 when GET http://127.0.0.1:9000/health answers
# 200; no curl needed in the image. Compose sets a shorter interval.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["taskserver", "healthcheck"]

CMD ["taskserver"]
