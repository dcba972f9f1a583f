#!/usr/bin/env bash
# End-to-end test of docker-compose.cluster.yml on this machine's Docker
# Engine: three nodes replicated by Raft, the two clients, and a leader kill.
#
#   scripts/e2e-cluster.sh
#
# It checks that
#   - the three nodes become healthy and agree on one leader (GET /cluster);
#   - both clients exit 0 (every task stored exactly once on every node they
#     read), with the leader killed (docker kill) while they send; the
#     verdict sees the same 10,000 tasks on the three nodes;
#   - a new leader took over; the killed node, started again, catches up:
#     the three ./cluster/nodeN/tasks.json on the host are byte-identical and
#     hold 10,000 tasks with unique ids, 5,000 per client;
#   - the membership changes the README shows (curl with the secret):
#     node 3 removed, added back as a learner, made a voter; a write after
#     them is on the three nodes;
#   - `docker exec ... taskserver raft-log` prints the node's log (what the
#     last snapshot left of it, contiguous, to the last entry);
#   - the nodes run as the owner of their directory (here root's and uid
#     4242's), and leave that owner and mode as they were;
#   - `compose down` removes the containers and the network.
#
# Like scripts/e2e-compose.sh it works in a temporary copy of the project,
# under names and free ports of its own (image taskserver-e2e:local, shared
# with that test), and removes what it made at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
E2E_NAME=e2e-cluster
E2E_DEFAULT_TIMEOUT=1500
E2E_COMPOSE_FILE=docker-compose.cluster.yml
# shellcheck source=lib/e2e.sh
source "$ROOT/scripts/lib/e2e.sh"
readonly TASKS_PER_CLIENT=5000

export TASKSERVER_IMAGE="taskserver-e2e:local"
export CLUSTER_CONTAINER_PREFIX="$project"
unset TASKS CONCURRENCY RUST_LOG TASKSERVER_CLUSTER_SECRET COMPOSE_FILE
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export NODE1_PORT NODE2_PORT NODE3_PORT
NODE1_PORT="$(free_port)"
NODE2_PORT="$(free_port)"
NODE3_PORT="$(free_port)"
port_of() { local v="NODE${1#node}_PORT"; echo "${!v}"; }

# cluster_json NODE [FIELD]: GET /cluster of a node through its published port.
cluster_json() {
    python3 - "$(port_of "$1")" "${2:-}" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/cluster", timeout=3) as r:
    status = json.load(r)
print(status[sys.argv[2]] if sys.argv[2] else json.dumps(status))
PY
}
leader() { cluster_json node1 leader_id 2>/dev/null || cluster_json node2 leader_id 2>/dev/null || cluster_json node3 leader_id; }
one_leader() {
    local a b c
    a="$(cluster_json node1 leader_id)" b="$(cluster_json node2 leader_id)" c="$(cluster_json node3 leader_id)"
    [[ "$a" =~ ^[0-9]+$ && "$a" == "$b" && "$b" == "$c" ]]
}
leader_is_not() { local l; l="$(leader)"; [[ "$l" =~ ^[0-9]+$ && "$l" != "$1" ]]; }
healthy() { [[ "$(docker inspect --format '{{.State.Health.Status}}' "$(cid "$1")")" == healthy ]]; }
exit_code() { docker inspect --format '{{.State.ExitCode}}' "$(cid "$1")"; }
last_line() { docker logs "$(cid "$1")" 2>&1 | grep -E "$2" | tail -n 1; }
owner_mode() { stat -c '%u:%g %a' "$1"; }

# tasks_ok FILE: every task of both clients, unique ids, TASKS_PER_CLIENT each.
tasks_ok() {
    python3 - "$1" "$((2 * TASKS_PER_CLIENT))" "$TASKS_PER_CLIENT" <<'PY'
import collections, json, sys
tasks = json.load(open(sys.argv[1]))
ids = [t["id"] for t in tasks]
per = collections.Counter(t.get("cliente") for t in tasks)
print(f"        {len(tasks)} tasks, {len(set(ids))} distinct ids, per client {dict(per)}")
total, each = int(sys.argv[2]), int(sys.argv[3])
sys.exit(0 if len(tasks) == total == len(set(ids)) and per == {"client1": each, "client2": each} else 1)
PY
}
same_files() { cmp -s "$work/cluster/node1/tasks.json" "$work/cluster/node2/tasks.json" && cmp -s "$work/cluster/node1/tasks.json" "$work/cluster/node3/tasks.json"; }
caught_up() {
    local n applied committed
    for n in node1 node2 node3; do
        applied="$(cluster_json "$n" applied)" committed="$(cluster_json "$n" committed)"
        [[ "$applied" =~ ^[0-9]+$ && "$applied" == "$committed" ]] || return 1
    done
    same_files
}

copy_project
# Node 1's directory root's (as in a clone made as root), node 2's uid 4242's
# with mode 0750, node 3's whoever runs this test.
mkdir -p "$work/cluster/node1" "$work/cluster/node2" "$work/cluster/node3"
if [[ $(id -u) == 0 ]]; then
    chown 0:0 "$work/cluster/node1"
    chown 4242:4242 "$work/cluster/node2" && chmod 0750 "$work/cluster/node2"
fi
declare -A before_owner=()
for n in node1 node2 node3; do before_owner[$n]="$(owner_mode "$work/cluster/$n")"; done
echo "        directories: node1 ${before_owner[node1]}, node2 ${before_owner[node2]}, node3 ${before_owner[node3]}"

base_images
phase "build (real Dockerfile, through compose)"
build_start=$SECONDS
bounded 1500 "${compose_cmd[@]}" build node1 || fail "compose build"
ok "image built in $((SECONDS - build_start)) s"

phase "the three nodes"
bounded 300 "${compose_cmd[@]}" up -d node1 node2 node3 || fail "compose up of the nodes"
for n in node1 node2 node3; do wait_for 120 "$n is healthy" healthy "$n"; done
wait_for 60 "the three nodes agree on a leader" one_leader
first_leader="$(leader)"
ok "node$first_leader leads: $(cluster_json "node$first_leader" | cut -c1-160)"
for n in node1 node2 node3; do
    uid="$(docker exec "$(cid "$n")" awk '/^Uid:/ { print $2 }' /proc/1/status)"
    check "$n runs as the owner of its directory (uid $uid)" test "$uid" == "${before_owner[$n]%%:*}"
done

phase "the clients, and a kill of the leader while they send"
# Bigger runs than the default, so that the kill lands in the middle.
export TASKS=$TASKS_PER_CLIENT CONCURRENCY=4
applied_before="$(cluster_json "node$first_leader" applied)"
bounded 60 "${compose_cmd[@]}" up -d --no-deps client1 client2 || fail "compose up of the clients"
cid client1 >/dev/null && cid client2 >/dev/null # looked up now, while they run
# The kill must find them sending: once the leader applied 20 of their entries.
sending() { (($(cluster_json "node$first_leader" applied) >= applied_before + 20)); }
wait_for 120 "the clients are sending (20 entries applied)" sending
running() { [[ "$(docker inspect --format '{{.State.Running}}' "$(cid "$1")")" == true ]]; }
check "both clients are still sending (else raise TASKS_PER_CLIENT)" running client1
check "(client2 too)" running client2
bounded 30 docker kill "$(cid "node$first_leader")" >/dev/null
ok "killed node$first_leader, the leader"
for c in client1 client2; do
    bounded 300 docker wait "$(cid "$c")" >/dev/null || fail "$c finished within 300 s"
    echo "        $c says: $(last_line "$c" "^$c:")"
    echo "        $(last_line "$c" "^Outcome")"
    echo "        $(last_line "$c" "^Latency")"
    check "$c exited 0" test "$(exit_code "$c")" == 0
done
wait_for 30 "another node leads" leader_is_not "$first_leader"
ok "node$(leader) leads now"

phase "the killed node back, the verdict"
bounded 60 docker start "$(cid "node$first_leader")" >/dev/null
wait_for 120 "node$first_leader is healthy again" healthy "node$first_leader"
wait_for 120 "the three nodes applied everything and hold the same file" caught_up
bounded 120 "${compose_cmd[@]}" up --no-deps verdict >/dev/null 2>&1 || true
line="$(last_line verdict '^verdict: (OK|FAILED)')"
echo "        verdict says: $line"
total=$((2 * TASKS_PER_CLIENT))
check "verdict: the three nodes hold the same $total tasks" grep -q "OK, .* same $total tasks" <<<"$line"
check "the host's three tasks.json are byte-identical" same_files
check "they hold $total tasks, unique ids, $TASKS_PER_CLIENT per client" tasks_ok "$work/cluster/node1/tasks.json"
# The log as raft-log prints it: what is left after the last snapshot (one
# every 10,000 entries, keeping 1,000 before it), up to the last entry.
docker exec "$(cid node2)" taskserver raft-log >"$work/raft-log.jsonl"
raft_log_ok() {
    python3 - "$work/raft-log.jsonl" "$(cluster_json node2 last_log_index)" "$(cluster_json node2 snapshot)" <<'PY'
import json, sys
entries = [json.loads(line) for line in open(sys.argv[1])]
last, snapshot = int(sys.argv[2]), (None if sys.argv[3] == "None" else int(sys.argv[3]))
idx = [e["index"] for e in entries]
tasks = sum(len(e["entry"]) for e in entries if e["kind"] == "tasks")
print(f"        raft-log: {len(entries)} entries ({tasks} tasks), indexes {idx[0]}-{idx[-1]}; last_log_index {last}, snapshot {snapshot}")
contiguous = idx == list(range(idx[0], idx[-1] + 1))
starts_right = idx[0] <= 1 or (snapshot is not None and idx[0] <= snapshot + 1)
sys.exit(0 if entries and tasks > 0 and contiguous and idx[-1] == last and starts_right else 1)
PY
}
check "docker exec node2 taskserver raft-log prints its log, from the last snapshot to the last entry" raft_log_ok
for n in node1 node2 node3; do
    check "$n's directory keeps its owner and mode (${before_owner[$n]})" test "$(owner_mode "$work/cluster/$n")" == "${before_owner[$n]}"
done

phase "membership, as the README changes it"
secret_header="Authorization: Bearer tareas-cluster-secret-of-the-course"
json_header="Content-Type: application/json"
n1="127.0.0.1:$NODE1_PORT"
# admin METHOD PATH [BODY]: a membership call through node 1; prints the answer.
admin() {
    local args=(-s -f -X "$1" -H "$secret_header" "http://$n1$2")
    [[ -z "${3:-}" ]] || args+=(-H "$json_header" -d "$3")
    bounded 150 curl -o /dev/null "${args[@]}"
}
voters_are() { [[ "$(cluster_json "$1" voters | tr -d ' ')" == "$2" ]]; }
check "DELETE /cluster/members/3" admin DELETE /cluster/members/3
wait_for 30 "node 1 sees voters [1, 2]" voters_are node1 "[1,2]"
ok "voters: $(cluster_json node1 voters)"
check "POST /cluster/learners node 3 (answers once it caught up)" admin POST /cluster/learners '{"id":3,"addr":"node3:9000"}'
check "node 3 is a learner" test "$(cluster_json node1 learners | tr -d ' ')" == "[3]"
check "POST /cluster/voters node 3" admin POST /cluster/voters '{"id":3}'
all_voters_are() { voters_are node1 "$1" && voters_are node2 "$1" && voters_are node3 "$1"; }
wait_for 30 "every node sees voters [1, 2, 3]" all_voters_are "[1,2,3]"
ok "voters again: $(cluster_json node3 voters)"
check "a write through node 3 after the changes" \
    curl -s -f -o /dev/null -H "$json_header" -d '{"titulo":"after the membership changes"}' "http://127.0.0.1:$NODE3_PORT/tareas"
wait_for 60 "the three nodes applied it and hold the same file" caught_up
ok "the three files are the same bytes, $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/cluster/node1/tasks.json") tasks"

phase "compose down"
bounded 120 "${compose_cmd[@]}" down --volumes --remove-orphans --timeout 10
check "no container of $project is left" \
    test -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")"

echo
say "done in $SECONDS s"
say "$passed passed, $failed failed"
