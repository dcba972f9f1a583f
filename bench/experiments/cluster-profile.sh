#!/usr/bin/env bash
# What one committed write costs in CPU: a single node against each node of
# a three-node cluster, under the same durable POST load (wrk, bench/post.lua,
# 64 connections). Where cluster-costs.sh compares throughputs, this says
# where the CPU of a write goes, which is what bounds the throughput when
# three nodes share this machine's two cores.
#
#   single   one taskserver in single-node mode, all 64 connections on it;
#   cluster  three nodes, the 64 connections on the leader (MODE=leader,
#            the default: nothing forwarded) or split over the three
#            (MODE=spread, as bench/run does).
#
# For each process: its CPU time (user + system, from /proc) over the whole
# load, divided by the writes acknowledged. With PERF=1 (and perf
# installed), the single node and the leader are also sampled for 3 s in
# the middle of the load, and their CPU per write is split into kinds of
# work (the kernel's scheduling and wake-ups, its network and disk, malloc,
# HTTP, tokio, openraft, serde). PROFILE=follower samples a follower in
# place of the leader.
#
#   cargo build --release -p taskserver
#   [MODE=leader|spread] [PERF=1 [PROFILE=follower]] bench/experiments/cluster-profile.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
SECS="${1:-8}"
MODE="${MODE:-leader}"
source "$ROOT/bench/experiments/lib.sh"
if [[ -n ${PERF:-} ]] && ! command -v perf >/dev/null; then
    echo "perf is missing (apt-get install linux-perf), or run without PERF=1" >&2
    exit 2
fi
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# load NAME PROFILED_PID URL...: 64 connections split over the URLs
# (start_load); prints the writes acknowledged. With PERF, samples
# PROFILED_PID into $work/NAME.perf while the load runs.
load() {
    local name="$1" profiled="$2" totals
    shift 2
    start_load "$name" "$@"
    if [[ -n ${PERF:-} ]]; then
        # From a third of the load on, for 3 s (the load is longer).
        sleep "$(python3 -c "print(max(1, $SECS / 3))")"
        perf record -q -F 1999 -o "$work/$name.perf" -p "$profiled" -- sleep 3 >/dev/null 2>&1
        perf report -i "$work/$name.perf" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
            >"$work/$name.report"
    fi
    for p in "${loads[@]}"; do wait "$p"; done
    totals="$(wrk_totals "$work/$name"-*.wrk)"
    echo "${totals%% *}"
}

# report NAME WRITES PID...: CPU per write of each process.
report() {
    local name="$1" writes="$2" p
    shift 2
    for p in "$@"; do
        echo "$name pid $p: $(python3 -c "print(f'{($(cpu_ticks "$p") - ${before[$p]}) * 1e4 / $writes:.0f}')") µs of CPU per write"
    done
}
declare -A before

# The single node.
start_single single
before[$single]="$(cpu_ticks "$single")"
writes="$(load single "$single" "$single_url")"
echo "single: $writes writes in ${SECS} s"
report single "$writes" "$single"
kill -9 "$single"

# The cluster.
start_cluster cluster
leader="$(leader_of "${urls[0]}")"
profiled="${nodes[leader - 1]}"
[[ ${PROFILE:-leader} == follower ]] && profiled="${nodes[leader % 3]}"
for p in "${nodes[@]}"; do before[$p]="$(cpu_ticks "$p")"; done
if [[ $MODE == spread ]]; then
    writes="$(load cluster "$profiled" "${urls[@]}")"
else
    writes="$(load cluster "$profiled" "${urls[leader - 1]}")"
fi
echo "cluster ($MODE, leader node $leader): $writes writes in ${SECS} s"
for i in 1 2 3; do
    role=follower
    ((i == leader)) && role=leader
    report "cluster node $i ($role)" "$writes" "${nodes[i - 1]}"
done

[[ -n ${PERF:-} ]] || exit 0
# The samples, in µs per write by kind of work: each sample's share of
# the CPU time perf counted, over the writes the load made in those 3 s
# (its rate over the whole load).
single_totals="$(wrk_totals "$work"/single-*.wrk)"
cluster_totals="$(wrk_totals "$work"/cluster-*.wrk)"
python3 - "$work" "$SECS" "${single_totals%% *}" "${cluster_totals%% *}" <<'PY'
import collections, os, re, sys
work, secs, single, cluster = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def kind(dso, sym):
    if dso.startswith("[kernel"):
        if re.search(r"task_switch|spin_unlock|schedule|futex|wake|irqentry|enqueue|dequeue|update_curr|pick_next", sym):
            return "kernel: scheduling, wake-ups"
        return "kernel: network, disk, other"
    if dso.startswith("libc"):
        if re.search(r"malloc|free|_int_|unlink_chunk|consolidate|realloc", sym):
            return "malloc, free"
        return "libc: memcpy, other"
    for pattern, name in ((r"openraft", "openraft"), (r"serde", "serde, JSON"),
                          (r"hyper|axum|tower|http::|reqwest|httparse", "HTTP (hyper, axum, reqwest)"),
                          (r"tokio", "tokio: runtime, channels, timers")):
        if re.search(pattern, sym):
            return name
    return "other"

def costs(name, writes):
    text = open(f"{work}/{name}.report").read()
    total_ns = float(re.search(r"Event count \(approx.\): (\d+)", text).group(1))
    in_window = writes / secs * 3
    out = collections.Counter()
    for line in text.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)", line)
        if m:
            out[kind(m.group(2), m.group(3))] += float(m.group(1)) / 100 * total_ns / 1000 / in_window
    return out

s, l = costs("single", single), costs("cluster", cluster)
print(f"{'µs of CPU per write':34} {'single':>8} {os.environ.get('PROFILE', 'leader'):>8}")
for k in sorted(set(s) | set(l), key=lambda k: -l[k]):
    print(f"{k:34} {s[k]:8.1f} {l[k]:8.1f}")
print(f"{'all':34} {sum(s.values()):8.1f} {sum(l.values()):8.1f}")
PY
