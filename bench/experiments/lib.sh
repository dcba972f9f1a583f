# What the experiments' scripts share (sourced, after `cd` to the
# repository's root and setting ROOT): the release binary and wrk checked,
# a scratch directory and the processes started, cleaned up at exit, and a
# three-node cluster or a single node on loopback, and the load on them.
BIN="${TASKSERVER_BIN:-$ROOT/target/release/taskserver}"
[[ -x $BIN ]] || { echo "build it first: cargo build --release -p taskserver" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 2; }
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
until_ok() {
    local until=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < until)) || { echo "timed out: $*" >&2; exit 1; }
        sleep 0.05
    done
}
leader_of() { curl -fsS --max-time 2 "$1/cluster" | python3 -c 'import json, sys; l = json.load(sys.stdin)["leader_id"]; print(l) if l else sys.exit(1)'; }

# start_cluster DIR: three nodes in $work/DIR (a snapshot every
# $snapshot_every entries, 10,000 unless set), once each knows the leader;
# sets urls and nodes (their pids, node 1 first).
start_cluster() {
    local ports=() i
    for i in 0 1 2; do ports+=("$(free_port)"); done
    local peers="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
    urls=()
    nodes=()
    for i in 1 2 3; do
        mkdir -p "$work/$1/node$i"
        RUST_LOG=warn TASKSERVER_RAFT_SNAPSHOT_EVERY="${snapshot_every:-10000}" \
            TASKSERVER_CLUSTER_SECRET=experiment-secret-0123456789 "$BIN" --node-id "$i" --peers "$peers" \
            --bind "127.0.0.1:${ports[i - 1]}" --data "$work/$1/node$i/tasks.json" 2>"$work/$1/node$i.log" &
        pids+=($!)
        nodes+=($!)
        disown
        urls+=("http://127.0.0.1:${ports[i - 1]}")
    done
    for u in "${urls[@]}"; do until_ok 60 leader_of "$u"; done
}

# start_single DIR: one taskserver in single-node mode, its file in
# $work/DIR, once it answers; sets single (its pid) and single_url.
start_single() {
    local port
    port="$(free_port)"
    mkdir -p "$work/$1"
    "$BIN" --bind "127.0.0.1:$port" --data "$work/$1/tasks.json" 2>"$work/$1.log" &
    single=$!
    pids+=("$single")
    disown
    single_url="http://127.0.0.1:$port"
    until_ok 30 curl -fsS "$single_url/health"
}

# start_load NAME URL...: bench/run's durable POSTs (bench/post.lua) for
# $SECS s, 64 connections (or $CONNECTIONS, at least one per URL) split over
# the URLs, one wrk each (-t2 for a lone URL), into $work/NAME-I.wrk; sets
# loads (their pids).
start_load() {
    local name="$1" i=0 n c="${CONNECTIONS:-64}"
    shift
    n=$#
    loads=()
    for url in "$@"; do
        wrk -t$((n == 1 && c > 1 ? 2 : 1)) -c$((c / n + (i < c % n ? 1 : 0))) -d"${SECS}s" --timeout 10s \
            -s "$ROOT/bench/post.lua" "$url/tareas" -- "$name-$i" >"$work/$name-$i.wrk" 2>&1 &
        loads+=($!)
        i=$((i + 1))
    done
}

# wrk_totals FILE...: of the wrk runs written to FILEs, the writes
# acknowledged, the requests/s and the slowest p99 (ms), on one line;
# fails on any non-2xx answer.
wrk_totals() {
    cat "$@" | sed -nE 's/^BENCH requests=([0-9]+) .* rps=([0-9.]+) non2xx=([0-9]+) .* p99_ms=([0-9.]+).*/\1 \2 \3 \4/p' |
        awk '{ n += $1; rps += $2; bad += $3; if ($4 > p99) p99 = $4 }
            END { if (bad) { print "non-2xx answers: " bad > "/dev/stderr"; exit 1 } printf "%d %.0f %.1f\n", n, rps, p99 }'
}
