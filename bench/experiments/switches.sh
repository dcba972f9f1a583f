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
# load URL...: 64 connections split over the URLs; prints the writes.
load() {
    local i=0 n=$# here=()
    for url in "$@"; do
        wrk -t$((n == 1 ? 2 : 1)) -c$((64 / n + (i < 64 % n ? 1 : 0))) -d"${SECS}s" --timeout 10s \
            -s "$ROOT/bench/post.lua" "$url/tareas" -- "w$i" >"$work/w$i" 2>&1 &
        here+=($!)
        i=$((i + 1))
    done
    for p in "${here[@]}"; do wait "$p"; done
    cat "$work"/w* | sed -nE 's/^BENCH requests=([0-9]+) .* non2xx=([0-9]+) .*/\1 \2/p' |
        awk '{ n += $1; bad += $2 } END { if (bad) { print "non-2xx answers: " bad > "/dev/stderr"; exit 1 } print n }'
    rm -f "$work"/w*
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

port="$(free_port)"
mkdir -p "$work/single"
"$BIN" --bind "127.0.0.1:$port" --data "$work/single/tasks.json" 2>"$work/single.log" &
single=$!
pids+=("$single")
until_ok 30 curl -fsS "http://127.0.0.1:$port/health"
mark "$single"
writes="$(load "http://127.0.0.1:$port")"
echo "single: $writes writes in $SECS s"
report single "$single" "$writes"
kill -9 "$single"
wait "$single" 2>/dev/null || true

start_cluster cluster
leader="$(leader_of "${urls[0]}")"
for p in "${nodes[@]}"; do mark "$p"; done
if [[ $MODE == spread ]]; then
    writes="$(load "${urls[@]}")"
else
    writes="$(load "${urls[leader - 1]}")"
fi
echo "cluster ($MODE, leader node $leader): $writes writes in $SECS s"
for i in 1 2 3; do
    role=follower
    ((i == leader)) && role=leader
    report "node $i ($role)" "${nodes[i - 1]}" "$writes"
done
