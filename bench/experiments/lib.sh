# What the experiments' scripts share (sourced, after `cd` to the
# repository's root and setting ROOT): the release binary and wrk checked,
# a scratch directory and the processes started, cleaned up at exit, and a
# three-node cluster on loopback.
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
