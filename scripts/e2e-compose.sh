#!/usr/bin/env bash
# End-to-end test of the Docker side on the real Docker Engine of this machine:
# the real Dockerfile and the real docker-compose.yml, starting from `[]`.
#
#   scripts/e2e-compose.sh
#
# It checks that
#   - the image builds, has a HEALTHCHECK, and runs clients as uid 1000;
#   - `compose up` brings the server to "healthy", then both clients exit 0,
#     with no request slower than 500 ms at the 99th percentile, and the
#     verdict service reports the server's total;
#   - the host's tasks.json holds exactly 200 tasks, 100 per client, unique ids,
#     and `docker exec` into the server reads the very same file;
#   - whoever owns tasks.json, it works: the first round from a file owned by
#     root, the second from one owned by uid 4242 with mode 0640; the server
#     runs as that owner (root only for root's file), and the file's owner
#     and mode are the same afterwards;
#   - the port is published on 127.0.0.1 only and answers GET /health there;
#   - a restart of the server container keeps every task;
#   - a second `compose up` adds 200 more tasks and passes again;
#   - `compose down` removes the containers and the network.
#
# It never touches your own tasks.json, containers, images or port 9000: it
# works in a temporary copy of the project, under a compose project name, a
# container name, an image tag and a free port of its own, and removes its
# containers, network and copy at the end. The base images and the built image
# (taskserver-e2e:local) stay, so the next run is much quicker.
#
# No registry is reachable on our CI machines, so scripts/docker-base-images.sh
# first makes the Dockerfile's base images locally when they are missing (it
# needs root for debootstrap). On a laptop that can pull, E2E_LOCAL_BASE=0
# skips that and lets the build pull them as usual.
#
# Environment:
#   E2E_TIMEOUT=SECS      limit for the whole run (default 1500)
#   E2E_LOCAL_BASE=0      don't make missing base images locally; let Docker pull
#   E2E_KEEP=1            leave the containers and the copy behind for a look
#   E2E_REQUIRE_DOCKER=1  fail instead of skipping when Docker does not answer
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly TASKS_PER_CLIENT=100 # the compose file's default, which we test
readonly P99_LIMIT_MS=500     # no request of the burst may wait for a SYN retransmission (1 s)

E2E_NAME=e2e-compose
E2E_DEFAULT_TIMEOUT=1500
E2E_COMPOSE_FILE=docker-compose.yml
# shellcheck source=lib/e2e.sh
source "$ROOT/scripts/lib/e2e.sh"

export TASKSERVER_CONTAINER="$project-server"
export TASKSERVER_IMAGE="taskserver-e2e:local"
TASKSERVER_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export TASKSERVER_PORT
# The defaults of the compose file are what we test.
unset TASKS CONCURRENCY RUST_LOG COMPOSE_FILE
server="$TASKSERVER_CONTAINER"
network="${project}_ticsnet"
data="$work/tasks.json"

# Not cached as the library's: a second `compose up` may make new containers.
cid() { compose ps -a -q "$1"; }
exit_code() { docker inspect --format '{{.State.ExitCode}}' "$1"; }
health() { docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1"; }

wait_healthy() {
    local deadline=$((SECONDS + 90))
    until [[ "$(health "$server")" == healthy ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

# tasks_ok FILE TOTAL PER_CLIENT: the file is a JSON array of TOTAL tasks with
# unique ids, PER_CLIENT of them from each of client1 and client2.
tasks_ok() {
    python3 - "$@" <<'EOF'
import collections, json, sys
path, total, per_client = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path) as f:
    tasks = json.load(f)
ids = [t["id"] for t in tasks]
by_client = collections.Counter(t.get("cliente") for t in tasks)
print(f"        {len(tasks)} tasks, {len(set(ids))} distinct ids, per client {dict(by_client)}")
sys.exit(0 if isinstance(tasks, list)
         and len(tasks) == total
         and len(set(ids)) == total
         and by_client == {"client1": per_client, "client2": per_client} else 1)
EOF
}

# health_total: what GET /health says from the host, through the published port.
health_total() {
    python3 - "$TASKSERVER_PORT" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=5) as r:
    print(json.load(r)["tareas"])
EOF
}

# last_line CONTAINER PATTERN: the last log line matching PATTERN.
last_line() { docker logs "$1" 2>&1 | grep -E "$2" | tail -n 1; }

# p99_ok CONTAINER: the client's "Latency (ms) ... p99 X ..." line says X is
# at most P99_LIMIT_MS.
p99_ok() {
    local line p99
    line="$(last_line "$1" '^Latency \(ms\)')"
    p99="$(sed -nE 's/.* p99 ([0-9.]+) .*/\1/p' <<<"$line")"
    echo "        $line"
    [[ -n $p99 ]] && python3 -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$p99" "$P99_LIMIT_MS"
}

# owner_mode: owner uid:gid and mode of the host's tasks.json.
owner_mode() { stat -c '%u:%g %a' "$data"; }

# set_owner UID:GID MODE: gives the host's tasks.json that owner and mode,
# as root, or else through a container of the image (so that the test works
# for any user who may run Docker).
set_owner() {
    if [[ $(id -u) == 0 ]]; then
        chown "$1" "$data" && chmod "$2" "$data"
    else
        docker run --rm --user 0 --entrypoint sh -v "$work:/w" "$TASKSERVER_IMAGE" \
            -c "chown $1 /w/tasks.json && chmod $2 /w/tasks.json"
    fi
}

# server_uid: the uid the server process (pid 1 of its container) runs as.
server_uid() { docker exec "$server" awk '/^Uid:/ { print $2 }' /proc/1/status; }

# run_clients ROUND EXPECTED_TOTAL: `compose up -d`, then both clients and the
# verdict must end well, and the file must hold EXPECTED_TOTAL tasks.
run_clients() {
    local round="$1" total="$2" c id status line
    phase "round $round: compose up"
    # `up -d` returns once the clients have finished (the verdict service waits
    # for them); a failing client makes it fail, which the checks below explain.
    status=0
    bounded 600 "${compose_cmd[@]}" up -d || status=$?
    [[ $status == 0 ]] || echo "        (compose up exited with $status)"

    check "server container is healthy" wait_healthy
    for c in client1 client2 verdict; do
        id="$(cid "$c")"
        [[ -n "$id" ]] || fail "$c container exists"
        # Bounded: a client that hangs fails the test instead of blocking it.
        bounded 300 docker wait "$id" >/dev/null || fail "$c finished within 300 s"
        line="$(last_line "$id" "^($c|verdict):")"
        echo "        $c says: ${line:-(nothing)}"
        check "$c exited 0" test "$(exit_code "$id")" == 0
        if [[ $c != verdict ]]; then
            check "$c: p99 latency at most $P99_LIMIT_MS ms" p99_ok "$id"
        fi
    done
    line="$(last_line "$(cid verdict)" '^verdict:')"
    check "verdict reports $total tasks" grep -q "holds $total tasks" <<<"$line"
    check "host tasks.json holds $total tasks, unique ids" \
        tasks_ok "$data" "$total" $((total / 2))
    check "docker exec $server cat /app/tasks.json = the host file" \
        cmp -s "$data" <(docker exec "$server" cat /app/tasks.json)
    check "GET http://127.0.0.1:$TASKSERVER_PORT/health says $total" \
        test "$(health_total)" == "$total"
}

# --- 0. a copy of the project, with an empty tasks.json ----------------------
copy_project
printf '[]\n' >"$data"
echo "        port 127.0.0.1:$TASKSERVER_PORT"

# --- 1. base images and the image ----------------------------------------------
base_images
if [[ "${E2E_LOCAL_BASE:-1}" != 0 ]]; then
    mapfile -t base_images < <(awk 'toupper($1) == "FROM" && $2 ~ /:/ { print $2 }' "$work/Dockerfile")
    for image in "${base_images[@]}"; do
        check "base image $image is here" docker image inspect "$image" >/dev/null
    done
fi

phase "build (real Dockerfile, through compose)"
build_start=$SECONDS
old_image="$(docker image inspect --format '{{.Id}}' "$TASKSERVER_IMAGE" 2>/dev/null || true)"
bounded 1500 "${compose_cmd[@]}" build || fail "compose build"
ok "image built in $((SECONDS - build_start)) s"
new_image="$(docker image inspect --format '{{.Id}}' "$TASKSERVER_IMAGE")"
if [[ -n "$old_image" && "$old_image" != "$new_image" ]]; then
    docker rmi "$old_image" >/dev/null 2>&1 || true # the previous run's image
fi
check "image's entrypoint chooses the user (taskserver-entrypoint)" \
    test "$(docker image inspect --format '{{json .Config.Entrypoint}}' "$TASKSERVER_IMAGE")" == '["taskserver-entrypoint"]'
check "a client command in the image runs as uid 1000, not root" \
    test "$(docker run --rm "$TASKSERVER_IMAGE" id -u)" == 1000
check "a server with no data file of its own runs as uid 1000" \
    grep -q 'running taskserver as uid:gid 1000:1000' <<<"$(docker run --rm "$TASKSERVER_IMAGE" taskserver --version 2>&1)"
check "image has a HEALTHCHECK through taskserver healthcheck" \
    test "$(docker image inspect --format '{{json .Config.Healthcheck.Test}}' "$TASKSERVER_IMAGE")" \
    == '["CMD","taskserver","healthcheck"]'
check "image's default command is taskserver" \
    test "$(docker image inspect --format '{{json .Config.Cmd}}' "$TASKSERVER_IMAGE")" == '["taskserver"]'

# --- 2. first round from [], in a file owned by root ----------------------------
phase "tasks.json owned by root (a clone made as root, a CI machine)"
set_owner 0:0 644
before_owner="$(owner_mode)"
echo "        host tasks.json: owner:group mode = $before_owner"
run_clients 1 $((2 * TASKS_PER_CLIENT))
check "server runs as root, the owner of root's file" test "$(server_uid)" == 0
check "tasks.json keeps its owner and mode ($before_owner)" test "$(owner_mode)" == "$before_owner"

phase "inside the topology"
echo "        the server's net.core.somaxconn: $(docker exec "$server" cat /proc/sys/net/core/somaxconn)"
check "port 9000 published on 127.0.0.1 only" \
    test "$(docker port "$server" 9000/tcp)" == "127.0.0.1:$TASKSERVER_PORT"
check "network $network is a bridge" \
    test "$(docker network inspect --format '{{.Driver}}' "$network")" == bridge
for c in server client1 client2; do
    check "$c is on $network" grep -qw "$network" \
        <<<"$(docker inspect --format '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' "$(cid "$c")")"
done

phase "restart of the server container"
before="$(sha256sum <"$data")"
bounded 60 docker restart --time 10 "$server" >/dev/null
check "server is healthy again after docker restart" wait_healthy
check "tasks.json unchanged by the restart" test "$(sha256sum <"$data")" == "$before"
check "GET /health still says $((2 * TASKS_PER_CLIENT))" \
    test "$(health_total)" == $((2 * TASKS_PER_CLIENT))

# --- 3. second round on top of the first, the file now owned by uid 4242 ------
# Mode 0640 as root; 0644 otherwise, so that this script can still read it.
mode=640
[[ $(id -u) == 0 ]] || mode=644
phase "tasks.json owned by uid 4242, mode $mode (a user whose uid is not 1000)"
set_owner 4242:4242 "$mode"
before_owner="$(owner_mode)"
echo "        host tasks.json: owner:group mode = $before_owner"
bounded 60 docker restart --time 10 "$server" >/dev/null
check "server is healthy again, as the file's new owner" wait_healthy
check "server runs as uid 4242, the file's owner, not root" test "$(server_uid)" == 4242
run_clients 2 $((4 * TASKS_PER_CLIENT))
check "tasks.json keeps its owner and mode ($before_owner)" test "$(owner_mode)" == "$before_owner"

# --- 4. down -------------------------------------------------------------------
phase "compose down"
bounded 120 "${compose_cmd[@]}" down --volumes --remove-orphans --timeout 10
check "no container of $project is left" \
    test -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")"
check "network $network is gone" bash -c "! docker network inspect '$network' >/dev/null 2>&1"
check "tasks.json still holds every task after down" \
    tasks_ok "$data" $((4 * TASKS_PER_CLIENT)) $((2 * TASKS_PER_CLIENT))

echo
say "done in $SECONDS s"
say "$passed passed, $failed failed"
