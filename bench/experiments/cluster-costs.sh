#!/usr/bin/env bash
# Where cluster mode's throughput goes: the followers passing writes on, or the snapshots?
#
# One three-node cluster on loopback (release binary), the durable POST load
# of bench/run (wrk, bench/post.lua, 64 connections), in rounds:
#   spread   the 64 connections split over the three nodes, as bench/run
#            does: two thirds of the writes reach a follower, which passes
#            each one to the leader in a request of its own;
#   leader   the same 64 connections all on the leader: nothing forwarded;
#   single   one taskserver in single-node mode, same load;
#   nosnap   spread, with no snapshot during the load
#            (TASKSERVER_RAFT_SNAPSHOT_EVERY=100000000): what the snapshots,
#            every 10,000 entries by default, cost.
# The order alternates per round, and each ratio is taken within one round.
# leader / spread bounds what batching the forwarded writes could gain.
#
#   cargo build --release -p taskserver
#   bench/experiments/cluster-costs.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
ROUNDS="${1:-3}"
SECS="${2:-6}"
source "$ROOT/bench/experiments/lib.sh"

# load NAME URL...: 64 connections split over the URLs; prints requests/s.
load() {
    local name="$1" i n c here=() totals
    shift
    n=$#
    i=0
    for url in "$@"; do
        c=$((64 / n + (i < 64 % n ? 1 : 0)))
        wrk -t1 -c"$c" -d"${SECS}s" --timeout 10s -s "$ROOT/bench/post.lua" "$url/tareas" -- "$name-$i" \
            >"$work/$name-$i.wrk" 2>&1 &
        here+=($!)
        i=$((i + 1))
    done
    for p in "${here[@]}"; do wait "$p"; done
    totals="$(wrk_totals "$work/$name"-*.wrk)"
    echo "${totals#* }"
}

declare -A got
for ((r = 1; r <= ROUNDS; r++)); do
    order=(spread leader single nosnap)
    ((r % 2 == 0)) && order=(nosnap single leader spread)
    for what in "${order[@]}"; do
        snapshot_every=10000
        case $what in
        single)
            start_single "single-$r"
            got[$what-$r]="$(load "single-$r" "$single_url")"
            ;;
        spread)
            start_cluster "spread-$r"
            got[$what-$r]="$(load "spread-$r" "${urls[@]}")"
            ;;
        nosnap)
            snapshot_every=100000000
            start_cluster "nosnap-$r"
            got[$what-$r]="$(load "nosnap-$r" "${urls[@]}")"
            ;;
        leader)
            start_cluster "leader-$r"
            leader="$(leader_of "${urls[0]}")"
            got[$what-$r]="$(load "leader-$r" "${urls[leader - 1]}")"
            ;;
        esac
        for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
        pids=()
        echo "round $r $what: ${got[$what-$r]} (requests/s, p99 ms)"
    done
done
python3 - "$ROUNDS" "$(for k in "${!got[@]}"; do echo "$k ${got[$k]}"; done)" <<'PY'
import statistics, sys
rounds = int(sys.argv[1])
got = {}
for line in sys.argv[2].splitlines():
    key, rps, p99 = line.split()
    got[key] = (float(rps), float(p99))
med = lambda xs: statistics.median(xs)
for what in ("single", "leader", "spread", "nosnap"):
    print(f"{what:7} {med([got[f'{what}-{r}'][0] for r in range(1, rounds + 1)]):9,.0f} requests/s, p99 {med([got[f'{what}-{r}'][1] for r in range(1, rounds + 1)]):.1f} ms")
for a, b in (("leader", "spread"), ("nosnap", "spread"), ("spread", "single"), ("leader", "single")):
    ratios = [got[f"{a}-{r}"][0] / got[f"{b}-{r}"][0] for r in range(1, rounds + 1)]
    print(f"{a} / {b}: median {med(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
PY
