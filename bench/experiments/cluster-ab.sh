#!/usr/bin/env bash
# Two (or more) builds of taskserver side by side in cluster mode: rounds
# that alternate between the binaries, each round three fresh nodes on
# loopback and 64 connections (CONNECTIONS) spread over them (one wrk -t1 per node,
# bench/post.lua), as bench/run loads a cluster. Prints, for each round and
# binary, the writes acknowledged, the p99 latency (the slowest of the three
# wrk's, as bench/run) and each node's CPU per write (L the leader, F a
# follower), then each binary's median ratio of writes to the
# first binary's, taken within a round. On this machine the same build moves
# by 1.5x between rounds: only ratios within a round mean anything.
#
# READS=C adds, beside the writes, C connections of linearizable reads of
# one task (GET /tareas/1, bench/get.lua) on a follower, and prints the
# reads answered and their median ratio too.
#
#   cp target/release/taskserver /tmp/ts-before   # build, copy, change, build
#   bench/experiments/cluster-ab.sh ROUNDS SECONDS /tmp/ts-before target/release/taskserver
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
(($# >= 4)) || { echo "usage: $0 ROUNDS SECONDS BINARY BINARY..." >&2; exit 2; }
rounds="$1" SECS="$2"
shift 2
for b in "$@"; do [[ -x $b ]] || { echo "not an executable: $b" >&2; exit 2; }; done
TASKSERVER_BIN="$1"
source "$ROOT/bench/experiments/lib.sh"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A writes reads
for r in $(seq "$rounds"); do
    k=0
    for b in "$@"; do
        BIN="$b"
        # By position: two builds may share a name.
        k=$((k + 1))
        name="round$r-binary$k"
        start_cluster "$name"
        leader="$(leader_of "${urls[0]}")"
        declare -A before=()
        for p in "${nodes[@]}"; do before[$p]="$(cpu_ticks "$p")"; done
        if [[ -n ${READS:-} ]]; then
            # The task read, there before the reads start.
            curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
                -d '{"titulo": "read me"}' "${urls[0]}/tareas"
            follower="${urls[leader % 3]}"
            wrk -t1 -c"$READS" -d"${SECS}s" --timeout 10s -s "$ROOT/bench/get.lua" \
                "$follower/tareas/1" >"$work/$name.reads" 2>&1 &
            reader=$!
        fi
        start_load "$name" "${urls[@]}"
        for l in "${loads[@]}"; do wait "$l"; done
        totals="$(wrk_totals "$work/$name"-*.wrk)"
        read -r n _ p99 <<<"$totals"
        writes[$r,$k]="$n"
        line="round $r $b: $n writes, p99 $p99 ms (slowest wrk);"
        if [[ -n ${READS:-} ]]; then
            wait "$reader"
            read -r m _ rp99 <<<"$(wrk_totals "$work/$name.reads")"
            reads[$r,$k]="$m"
            line+=" $m reads on a follower, p99 $rp99 ms;"
        fi
        for i in 1 2 3; do
            p="${nodes[i - 1]}"
            role=F
            ((i == leader)) && role=L
            line+=" $role $((($(cpu_ticks "$p") - ${before[$p]}) * 10000 / n)) µs"
        done
        echo "$line of CPU per write"
        kill -9 "${nodes[@]}"
        wait "${nodes[@]}" 2>/dev/null || true
    done
done
median() {
    python3 -c "import statistics, sys; r = sorted(map(float, sys.argv[2:])); print(f'{sys.argv[1]} / first: median {statistics.median(r):.2f} ({r[0]:.2f} to {r[-1]:.2f}) over {len(r)} rounds')" "$@"
}
for ((k = 2; k <= $#; k++)); do
    ratios=()
    for r in $(seq "$rounds"); do ratios+=("$(python3 -c "print(${writes[$r,$k]} / ${writes[$r,1]})")"); done
    median "${!k} writes" "${ratios[@]}"
    if [[ -n ${READS:-} ]]; then
        ratios=()
        for r in $(seq "$rounds"); do ratios+=("$(python3 -c "print(${reads[$r,$k]} / ${reads[$r,1]})")"); done
        median "${!k} reads" "${ratios[@]}"
    fi
done
