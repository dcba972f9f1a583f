#!/usr/bin/env bash
# Context switches per committed write: a single node, then each node of a
# three-node cluster, under the same durable POST load (wrk, bench/post.lua,
# 64 connections; on the leader, or MODE=spread over the three), counted
# from /proc/PID/task/*/status (voluntary and not), and split by thread:
# the main thread, the Raft log's writer (taskserver-raft), tokio's workers
# and blocking threads (tokio-rt-worker). On this 2-core virtual machine a
# switch costs more than most of the work around it: they are what the
# kernel's scheduling share of cluster-profile.sh's samples is made of.
# (A thread that ended during the load takes its switches with it.)
#
#   cargo build --release -p taskserver
#   [MODE=leader|spread] bench/experiments/switches.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
SECS="${1:-5}"
MODE="${MODE:-leader}"
source "$ROOT/bench/experiments/lib.sh"
# switches PID: by thread name, "name threads switches" lines.
switches() {
    for t in /proc/"$1"/task/*; do
        echo "$(cat "$t/comm") $(awk '/ctxt_switches/ { s += $2 } END { print s }' "$t/status")"
    done | awk '{ n[$1] += $2; c[$1]++ } END { for (k in n) print k, c[k], n[k] }'
}
# load NAME URL...: 64 connections split over the URLs (start_load);
# prints the writes.
load() {
    local name="$1" totals
    shift
    start_load "$name" "$@"
    for p in "${loads[@]}"; do wait "$p"; done
    totals="$(wrk_totals "$work/$name"-*.wrk)"
    echo "${totals%% *}"
}

# report NAME PID WRITES: switches per 100 writes since mark PID, in all
# and by kind of thread.
mark() { switches "$1" >"$work/before.$1"; }
report() {
    local name="$1" pid="$2" writes="$3"
    switches "$pid" | awk -v w="$writes" -v name="$name" '
        NR == FNR { before[$1] = $3; next }
        { d[$1] = $3 - before[$1]; c[$1] = $2; all += d[$1] }
        END {
            printf "%s: %d switches per 100 writes\n", name, all * 100 / w
            for (k in d) printf "    %-16s %d thread(s): %d per 100 writes\n", k, c[k], d[k] * 100 / w
        }' "$work/before.$pid" -
}

start_single single
mark "$single"
writes="$(load single "$single_url")"
echo "single: $writes writes in $SECS s"
report single "$single" "$writes"
kill -9 "$single"

start_cluster cluster
leader="$(leader_of "${urls[0]}")"
for p in "${nodes[@]}"; do mark "$p"; done
if [[ $MODE == spread ]]; then
    writes="$(load cluster "${urls[@]}")"
else
    writes="$(load cluster "${urls[leader - 1]}")"
fi
echo "cluster ($MODE, leader node $leader): $writes writes in $SECS s"
for i in 1 2 3; do
    role=follower
    ((i == leader)) && role=leader
    report "node $i ($role)" "${nodes[i - 1]}" "$writes"
done
