#!/usr/bin/env bash
# End-to-end test of docker-compose.race.yml, the race the course warns
# about, and of docker-compose.yml beside it, on this machine's Docker Engine.
#
#   scripts/e2e-race.sh
#
# It checks that
#   - the race server (--unsafe-no-locking) says loudly what it is, in its
#     log and in GET /health;
#   - the two clients' read-back finds acknowledged tasks lost
#     ("clientN: X/100 stored, L lost"), and clientemulator exits 1;
#   - the verdict says LOST and why, and ./race/tasks.json holds fewer
#     than the 200 tasks sent;
#   - the same clients against the safe server (docker-compose.yml, in the
#     same run) have 100/100 stored, 0 lost, each, and exit 0.
#
# Like the other end-to-end tests it works in a temporary copy of the
# project, under names and free ports of its own (image
# taskserver-e2e:local, shared with them), and removes what it made.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
E2E_NAME=e2e-race
E2E_DEFAULT_TIMEOUT=1500
E2E_COMPOSE_FILE=docker-compose.race.yml
# shellcheck source=lib/e2e.sh
source "$ROOT/scripts/lib/e2e.sh"

export TASKSERVER_IMAGE="taskserver-e2e:local"
unset TASKS CONCURRENCY RUST_LOG COMPOSE_FILE
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export RACE_PORT RACE_CONTAINER="$project-race" TASKSERVER_PORT TASKSERVER_CONTAINER="$project-safe"
RACE_PORT="$(free_port)"
TASKSERVER_PORT="$(free_port)"

# The safe run: docker-compose.yml under a project of its own.
safe_cmd=("${compose_cmd[@]}")
safe_cmd[${#safe_cmd[@]} - 1]="$work/docker-compose.yml"
safe_cmd=(env COMPOSE_PROJECT_NAME="$project-safe" "${safe_cmd[@]}")
safe() { "${safe_cmd[@]}" "$@"; }
race_cleanup() {
    local status=$?
    [[ "${E2E_KEEP:-}" == 1 ]] || timeout 120 "${safe_cmd[@]}" down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    (exit "$status")
    cleanup
}
trap race_cleanup EXIT

healthy() { [[ "$(docker inspect --format '{{.State.Health.Status}}' "$1")" == healthy ]]; }
# The client's verdict line ("client1: 63/100 stored, 37 lost, ..."), or ""
# (never a failed grep: this script runs under set -e).
client_line() { docker logs "$1" 2>&1 | grep -E "^$2: [0-9]+/[0-9]+ " | grep -v "clientemulator exited" | tail -n 1 || true; }
exited_line() { docker logs "$1" 2>&1 | grep -E "^$2: clientemulator exited" | tail -n 1 || true; }
lost_of() { local n; n="$(sed -nE 's/.* ([0-9]+) lost.*/\1/p' <<<"$1")"; echo "${n:-0}"; }

copy_project
base_images
phase "build (real Dockerfile, through compose)"
build_start=$SECONDS
bounded 1500 "${compose_cmd[@]}" build server || fail "compose build"
ok "image built in $((SECONDS - build_start)) s"

phase "the race server"
bounded 120 "${compose_cmd[@]}" up -d server || fail "compose up of the server"
wait_for 120 "the race server is healthy" healthy "$(cid server)"
check "its log says UNSAFE MODE" grep -q "UNSAFE MODE (--unsafe-no-locking)" <(docker logs "$(cid server)" 2>&1)
health="$(curl -fsS "http://127.0.0.1:$RACE_PORT/health")"
echo "        GET /health: ${health:0:120}..."
check "GET /health says mode unsafe-no-locking" grep -q '"mode":"unsafe-no-locking"' <<<"$health"

phase "the two clients against it"
bounded 300 "${compose_cmd[@]}" up --no-deps client1 client2 >/dev/null 2>&1 || fail "the clients ran"
lost_total=0
for c in client1 client2; do
    line="$(client_line "$(cid "$c")" "$c")"
    echo "        $c says: $line"
    echo "        $(exited_line "$(cid "$c")" "$c")"
    if [[ -z "$line" ]]; then
        docker logs "$(cid "$c")" 2>&1 | tail -n 15 | sed 's/^/        | /'
        fail "$c printed its verdict line"
    fi
    lost_total=$((lost_total + $(lost_of "$line")))
    check "$c's clientemulator exited 1" grep -q "exited 1" <<<"$(exited_line "$(cid "$c")" "$c")"
done
check "the clients found acknowledged tasks lost ($lost_total in all)" test "$lost_total" -gt 0
bounded 120 "${compose_cmd[@]}" up --no-deps verdict >/dev/null 2>&1 || true
verdict="$(docker logs "$(cid verdict)" 2>&1 | grep '^verdict:' || true)"
echo "$verdict" | sed 's/^/        /'
check "the verdict says LOST and why" grep -q "^verdict: LOST" <<<"$verdict"
check "(and why)" grep -q "no lock" <<<"$verdict"
held="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/race/tasks.json")"
check "./race/tasks.json holds fewer than the 200 sent ($held)" test "$held" -lt 200

phase "the same clients against the safe server (docker-compose.yml)"
echo '[]' >"$work/tasks.json"
bounded 120 "${safe_cmd[@]}" up -d server || fail "compose up of the safe server"
wait_for 120 "the safe server is healthy" healthy "$(safe ps -q server)"
bounded 300 "${safe_cmd[@]}" up --no-deps client1 client2 >/dev/null 2>&1 || fail "the clients ran against the safe server"
for c in client1 client2; do
    id="$(safe ps -a -q "$c")"
    line="$(client_line "$id" "$c")"
    echo "        $c says: $line"
    check "$c: 100/100 stored, 0 lost" grep -q "^$c: 100/100 stored, 0 lost, 0 duplicated" <<<"$line"
    check "$c exited 0" test "$(docker inspect --format '{{.State.ExitCode}}' "$id")" == 0
done
held="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/tasks.json")"
check "./tasks.json holds the 200 tasks sent ($held)" test "$held" -eq 200

echo
say "done in $SECONDS s"
say "$passed passed, $failed failed"
