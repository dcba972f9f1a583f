#!/usr/bin/env bash
# End-to-end test of docker-compose.zookeeper.yml on this machine's Docker
# Engine: the README's walk-through, done by a script.
#
#   scripts/e2e-zookeeper.sh
#
# It checks that
#   - the three ZooKeeper servers (zookeeper:3.8) form an ensemble;
#   - exactly one of the three contenders says `leader cN`;
#   - `docker kill` of the ZooKeeper server that leads the ensemble changes
#     nothing: the same contender leads, the workers go on;
#   - `docker kill` of the leading contender: another one says `leader cM`;
#   - the three workers finish and the verdict passes: the counter is 3000 =
#     3 x 1000, and never two leaders at once;
#   - zkCli.sh, inside a ZooKeeper container, lists the election's two
#     remaining candidates and reads the counter;
#   - with the killed server back, the verdict passes again;
#   - `compose down` leaves no container, network or volume behind.
#
# It never touches your containers or images: it works in a temporary copy
# of the project under a compose project name and image tag of its own
# (coordination-e2e:local), and removes its containers, network, volume and
# copy at the end. zookeeper:3.8 and the base images stay, so the next run is
# quicker. Where no registry is reachable (our CI), the images are made
# locally first (scripts/docker-base-images.sh, which needs root).
#
# Environment:
#   E2E_TIMEOUT=SECS      limit for the whole run (default 900)
#   E2E_LOCAL_BASE=0      don't make missing images locally; let Docker pull
#   E2E_KEEP=1            leave the containers and the copy behind for a look
#   E2E_REQUIRE_DOCKER=1  fail instead of skipping when Docker does not answer
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

E2E_NAME=e2e-zookeeper
E2E_DEFAULT_TIMEOUT=900
E2E_COMPOSE_FILE=docker-compose.zookeeper.yml
# shellcheck source=lib/e2e.sh
source "$ROOT/scripts/lib/e2e.sh"

export TASKSERVER_IMAGE="coordination-e2e:local"
# The compose file's defaults are what we test.
unset ADDS SESSION_TIMEOUT COMPOSE_FILE

state() { docker inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$(cid "$1")"; }
# The stdout lines of a service so far.
lines() { docker logs "$(cid "$1")" 2>/dev/null; }

# leaders: the contenders whose last line is `leader cN`.
leaders() {
    local c last
    for c in contender1 contender2 contender3; do
        last="$(lines "$c" | grep -E '^(leader|follower) ' | tail -n 1)"
        [[ "$last" == "leader "* && "$(state "$c")" == running* ]] && echo "$c ${last#leader }"
    done
    return 0
}
one_leader() { [[ "$(leaders | wc -l)" == 1 ]]; }
new_leader_other_than() { one_leader && [[ "$(leaders | cut -d' ' -f1)" != "$1" ]]; }

# The ZooKeeper server that leads the ensemble (srvr over bash's /dev/tcp).
zk_mode() {
    docker exec "$(cid "$1")" bash -c 'exec 3<>/dev/tcp/127.0.0.1/2181 && printf srvr >&3 && sed -n "s/^Mode: //p" <&3' 2>/dev/null
}
counter_total() {
    docker exec "$(cid contender2)" coordination counter demo 2>/dev/null | awk '$1 == "total" { print $2 }'
}
counter_above() { (($(counter_total || echo 0) > $1)); }
# zkcli SERVICE ARGS...: ZooKeeper's own CLI, inside that server's container.
zkcli() {
    local zoo="$1"
    shift
    docker exec "$(cid "$zoo")" zkCli.sh -server localhost:2181 "$@" 2>/dev/null
}

# --- 0. a copy of the project -------------------------------------------------
copy_project

# --- 1. images -----------------------------------------------------------------
base_images --compose "$work/docker-compose.zookeeper.yml"
check "image zookeeper:3.8 is here" docker image inspect zookeeper:3.8 >/dev/null
phase "build the project's image (real Dockerfile, through compose)"
build_start=$SECONDS
bounded 1500 "${compose_cmd[@]}" build contender1 || fail "compose build"
ok "image $TASKSERVER_IMAGE built in $((SECONDS - build_start)) s"
check "the image holds the coordination program" \
    docker run --rm --entrypoint coordination "$TASKSERVER_IMAGE" --version

# --- 2. up ---------------------------------------------------------------------
phase "compose up"
# The workers come later, so that the ZooKeeper server dies while they work.
bounded 300 "${compose_cmd[@]}" up -d zoo1 zoo2 zoo3 contender1 contender2 contender3 || fail "compose up"
for zoo in zoo1 zoo2 zoo3; do
    wait_for 120 "$zoo serves as part of the ensemble" zk_mode "$zoo"
done
modes="$(for zoo in zoo1 zoo2 zoo3; do echo "$zoo=$(zk_mode "$zoo")"; done | xargs)"
check "the ensemble has one leader and two followers ($modes)" \
    test "$(tr ' ' '\n' <<<"$modes" | grep -c '=leader$')" == 1
wait_for 60 "one contender says it leads" one_leader
first="$(leaders)"
ok "one contender leads: ${first#* }"

phase "docker kill the ZooKeeper server that leads the ensemble"
zk_leader="$(tr ' ' '\n' <<<"$modes" | sed -n 's/=leader$//p')"
bounded 120 "${compose_cmd[@]}" up -d --no-deps worker1 worker2 worker3 || fail "compose up the workers"
wait_for 60 "the workers to have started adding" counter_above 0
before="$(counter_total)"
docker kill "$(cid "$zk_leader")" >/dev/null
ok "killed $zk_leader (the counter was at $before)"
others=()
for zoo in zoo1 zoo2 zoo3; do [[ $zoo == "$zk_leader" ]] || others+=("$zoo"); done
for zoo in "${others[@]}"; do
    wait_for 60 "$zoo serves again without $zk_leader" zk_mode "$zoo"
done
ok "the other two elected a new ensemble leader: $(for zoo in "${others[@]}"; do echo "$zoo=$(zk_mode "$zoo")"; done | xargs)"
wait_for 60 "the workers to go on adding" counter_above "$((before + 100))"
ok "the workers went on: the counter passed $((before + 100))"
check "the same contender still leads, and never stepped down" \
    test "$(leaders)" == "$first" -a "$(lines "${first%% *}" | grep -c '^follower ')" == 0

phase "docker kill the leading contender"
killed="${first%% *}"
kill_time="$(date +%s.%N)"
docker kill "$(cid "$killed")" >/dev/null
wait_for 60 "another contender takes over" new_leader_other_than "$killed"
second="$(leaders)"
# When Docker received the new leader's line.
elected="$(docker logs --timestamps "$(cid "${second%% *}")" 2>/dev/null | grep " leader ${second#* }$" | tail -n 1 | cut -d' ' -f1)"
took="$(python3 -c 'import sys, datetime as d; t = d.datetime.fromisoformat(sys.argv[1][:26] + "+00:00"); print(f"{t.timestamp() - float(sys.argv[2]):.1f}")' "$elected" "$kill_time" 2>/dev/null || echo "?")"
ok "${second#* } took over from ${first#* } $took s after the kill (session timeout 4 s, ZooKeeper's tick 2 s)"

phase "the workers finish; the verdict"
for w in worker1 worker2 worker3; do
    bounded 600 docker wait "$(cid "$w")" >/dev/null || fail "$w finished within 600 s"
    check "$w exited 0 (its last words: $(lines "$w" | grep -E '^(total|w[0-9]) ' | xargs))" test "$(state "$w")" == "exited 0"
done
status=0
verdict="$(bounded 120 "${compose_cmd[@]}" run --rm --no-deps verdict 2>&1)" || status=$?
sed 's/^/        /' <<<"$verdict"
check "the verdict passed" test "$status" == 0
check "the verdict counted 3000 = 3 workers x 1000" grep -q "OK: the counter is 3000 = 3 workers x 1000," <<<"$verdict"
check "the verdict saw never two leaders at once" grep -q "never two leaders at once" <<<"$verdict"

phase "zkCli.sh inside ${others[0]}"
listing="$(zkcli "${others[0]}" ls /coordination/elections/demo | tail -n 1)"
echo "        ls /coordination/elections/demo: $listing"
check "zkCli.sh lists the two remaining candidates" test "$(grep -o 'latch-' <<<"$listing" | wc -l)" == 2
counter="$(zkcli "${others[0]}" get /coordination/counters/demo | grep '"total"')"
echo "        get /coordination/counters/demo: $counter"
check "zkCli.sh reads the counter: total 3000" grep -q '"total":3000' <<<"$counter"

phase "the killed ZooKeeper server comes back"
docker start "$(cid "$zk_leader")" >/dev/null
wait_for 120 "$zk_leader serves again" zk_mode "$zk_leader"
ok "$zk_leader rejoined as $(zk_mode "$zk_leader")"
status=0
verdict="$(bounded 120 "${compose_cmd[@]}" run --rm --no-deps verdict 2>&1)" || status=$?
check "the verdict passes again" test "$status" == 0

# --- 3. down -------------------------------------------------------------------
phase "compose down"
bounded 120 "${compose_cmd[@]}" down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1
check "no container of $project is left" \
    test -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")"
check "no volume of $project is left" \
    test -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$project")"

echo
say "done in $SECONDS s"
say "$passed passed, $failed failed"
