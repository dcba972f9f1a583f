#!/usr/bin/env bash
# The live page (GET /) in a real browser: headless Chromium (Debian's
# `chromium`, installed here when missing, as root) loads the page of a
# running taskserver, and of each node of a three-node cluster, runs its
# script against the server, and the test compares what is on screen with
# the server's own numbers (GET /health, GET /cluster):
#   - single server: the task count, the tasks per client, the mode;
#   - cluster: every node's row (role, answering), the leader marked; then
#     the leader is killed (kill -9) and a survivor's page shows the new
#     leader and the old one as not answering.
# And the emulator's report as a picture: `clientemulator --json --html`
# against the single server, against the unsafe mode (lost tasks: the page
# in red), and against the cluster with its leader dead (errors, a node
# that cannot be read back); Chromium opens each HTML file
# from disk and the test compares what it drew with the --json report of
# the same run: counts, verdict, verification, statuses, percentiles, and
# one bar or point per interval of the timeline.
# Screenshots go to target/page/ (single.png, cluster.png, after-kill.png,
# report.png, report-racy.png, report-cluster.png).
#
#   scripts/test-page.sh            # uses target/debug/{taskserver,clientemulator} (built if missing)
#   TASKSERVER_BIN=... CLIENTEMULATOR_BIN=... scripts/test-page.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
say() { echo "test-page: $*"; }

if ! command -v chromium >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing chromium (Debian's package) for the browser test"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        say "ERROR: chromium is not installed (apt-get install chromium)"
        exit 1
    fi
fi
BIN="${TASKSERVER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/taskserver}"
EMULATOR="${CLIENTEMULATOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/clientemulator}"
[[ -x $BIN ]] || cargo build --locked --quiet -p taskserver
[[ -x $EMULATOR ]] || cargo build --locked --quiet -p clientemulator
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/page"
mkdir -p "$OUT"
work="$(mktemp -d)"
pids=()
cleanup() {
    local status=$?
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

passed=0
ok() { passed=$((passed + 1)); echo "  ok    $*"; }
fail() { echo "  FAIL  $*"; exit 1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# until_ok SECS COMMAND...: polls COMMAND every 50 ms.
until_ok() {
    local until=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < until)) || return 1
        sleep 0.05
    done
}

# browser URL NAME [WIDTH,HEIGHT]: the page after its script ran a few
# seconds (virtual time), as the DOM ($work/NAME.html) and as a picture
# ($OUT/NAME.png, 1200x820 unless told).
browser() {
    local flags=(--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars
        --no-first-run --user-data-dir="$work/chromium" --virtual-time-budget=3000)
    timeout 60 chromium "${flags[@]}" --dump-dom "$1" >"$work/$2.html" 2>"$work/$2.err" ||
        { tail -n 5 "$work/$2.err"; fail "chromium could not load $1"; }
    timeout 60 chromium "${flags[@]}" --window-size="${3:-1200,820}" --screenshot="$OUT/$2.png" "$1" >/dev/null 2>&1 ||
        fail "chromium could not take a screenshot of $1"
}

# page NAME EXPR: evaluates a Python expression over the DOM's elements:
# text(id), rows(table_id) -> [(data-*, [cell texts])], updates.
page() {
    python3 - "$work/$1.html" "$2" <<'PY'
import html.parser, sys
class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.text, self.rows, self.attrs_of = [], {}, {}, {}
        self.table, self.row = None, None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.attrs_of["body"] = a
        if tag == "table":
            self.table = a.get("id")
        if tag == "tr" and self.table:
            self.row = ({k: v for k, v in a.items() if k.startswith("data-")}, [])
        if tag == "td" and self.row is not None:
            self.row[1].append("")
        self.stack.append((tag, a.get("id")))
    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break
        if tag == "tr" and self.row is not None:
            if self.row[1]:
                self.rows.setdefault(self.table, []).append(self.row)
            self.row = None
        if tag == "table":
            self.table = None
    def handle_data(self, data):
        for _, i in self.stack:
            if i:
                self.text[i] = self.text.get(i, "") + data
        if self.row is not None and self.row[1]:
            self.row[1][-1] += data
dom = Dom()
dom.feed(open(sys.argv[1]).read())
text = lambda i: dom.text.get(i, "").strip()
rows = lambda t: dom.rows.get(t, [])
updates = int(dom.attrs_of.get("body", {}).get("data-updates", "0"))
print(eval(sys.argv[2]))
PY
}
# report NAME: checks the HTML report $work/NAME.html, as Chromium drew it
# (browser file://... NAME-drawn), against the --json report $work/NAME.json.
report() {
    python3 - "$work/$1-drawn.html" "$work/$1.json" <<'PY'
import html.parser, json, sys
class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.fields, self.rows, self.shapes = [], {}, {}, {}
        self.table = self.row = self.chart = None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.drawn = a.get("data-drawn")
        if tag == "svg":
            self.chart = a.get("id")
        elif self.chart:
            self.shapes.setdefault(self.chart, []).append(tag)
        if tag == "table":
            self.table = a.get("id")
        if tag == "tbody":
            self.body = True
        if tag == "tr" and self.table and getattr(self, "body", False):
            self.row = (a.get("data-key"), [])
        if tag in ("td", "th") and self.row is not None:
            self.row[1].append("")
        self.stack.append((tag, a.get("data-field")))
    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass
        if tag == "svg":
            self.chart = None
        if tag == "tr" and self.row is not None:
            if self.row[1]:
                self.rows.setdefault(self.table, []).append(self.row)
            self.row = None
        if tag == "tbody":
            self.body = False
        if tag == "table":
            self.table = None
    def handle_data(self, data):
        for _, f in self.stack:
            if f:
                self.fields[f] = self.fields.get(f, "") + data
        if self.row is not None and self.row[1]:
            self.row[1][-1] += data
dom = Dom()
dom.feed(open(sys.argv[1]).read())
r = json.load(open(sys.argv[2]))
problems = []
def same(what, shown, want):
    if shown != want:
        problems.append(f"{what}: the page shows {shown!r}, the --json report says {want!r}")
def near(what, shown, want, within):
    try:
        if abs(float(shown.replace(",", "")) - want) <= within:
            return
    except ValueError:
        pass
    problems.append(f"{what}: the page shows {shown!r}, the --json report says {want}")
field = lambda f: dom.fields.get(f, "").strip()
same("drawn by its script", getattr(dom, "drawn", None), "1")
for f in ("sent", "acknowledged", "failed", "retries"):
    same(f, field(f), f"{r[f]:,}")
near("acknowledged per second", field("throughput_per_second"), r["throughput_per_second"], 0.051)
near("sending time", field("elapsed_seconds"), r["elapsed_seconds"], 0.0051)
same("verdict", field("verdict")[2:], r["verdict"])
same("verdict mark", field("verdict")[:1], "✔" if r["success"] else "✘")
rows = {k: cells for k, cells in dom.rows.get("verification", [])}
for name in ("verified", "lost", "duplicated", "unknown", "stored_unacknowledged", "unexpected"):
    same(f"verification: {name}", rows.get(name, ["", "?"])[1], f"{r[name]:,}" if r[name] is not None else "not checked")
answers = {k: cells[1] for k, cells in dom.rows.get("statuses", [])}
want = {**{s: f"{n:,}" for s, n in r["status_counts"].items()}, **{k: f"{n:,}" for k, n in r["errors"].items()}}
same("statuses and errors", answers, want)
nodes = [cells for _, cells in dom.rows.get("nodes", [])]
same("servers read back", [c[0] for c in nodes], [n["url"] for n in r.get("nodes", [])])
cells = dom.rows.get("percentiles", [(None, [])])[0][1]
if r["latency_ms"]["count"]:
    for i, p in enumerate(("min", "mean", "p50", "p90", "p99", "p999", "max")):
        near(f"latency {p}", cells[i] if i < len(cells) else "", r["latency_ms"][p], 0.0051)
intervals = r["timeline"]["intervals"]
bars = sum(1 for i in intervals if i["acknowledged"]) + sum(1 for i in intervals if i["errors"])
same("bars over time (one per interval with acknowledgements, one per interval with errors)",
     dom.shapes.get("throughput", []).count("rect"), bars)
same("latency lines over time (p50, p99, max)", dom.shapes.get("latency", []).count("path"), 3 if r["acknowledged"] else 0)
same("histogram bars", dom.shapes.get("histogram", []).count("rect"), sum(1 for b in r["latency_distribution"] if b["count"]))
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f'{r["acknowledged"]:,} acknowledged, {r["verdict"]!r}, {len(answers)} kinds of answer, {len(intervals)} intervals of {r["timeline"]["interval_seconds"] * 1000:g} ms')
PY
}
json_of() { curl -fsS --max-time 3 "$1" | python3 -c "import json,sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))" "$2"; }
post() { curl -fsS --max-time 10 -o /dev/null -H 'Content-Type: application/json' -d "{\"titulo\":\"$2\",\"cliente\":\"$3\"}" "$1/tareas"; }

say "--- a single server"
port="$(free_port)"
"$BIN" --bind "127.0.0.1:$port" --data "$work/tasks.json" 2>"$work/single.log" &
pids+=($!)
disown # killed on purpose below: no "Killed" line
url="http://127.0.0.1:$port"
until_ok 30 curl -fsS "$url/health" || fail "the server did not start"
for i in $(seq 1 30); do post "$url" "alice $i" alice & done
for i in $(seq 1 12); do post "$url" "bob $i" bob & done
wait_posts() { local p; for p in $(jobs -p); do [[ " ${pids[*]} " == *" $p "* ]] || wait "$p"; done; }
wait_posts
browser "$url/" single
tareas="$(json_of "$url/health" 'd["tareas"]')"
shown="$(page single 'text("tareas")')"
[[ "$shown" == "$tareas" ]] && ok "the page shows $shown tasks, as /health says" || fail "the page shows '$shown' tasks, /health says $tareas"
clients="$(page single 'sorted((c[0], c[1]) for _, c in rows("clients"))')"
[[ "$clients" == "[('alice', '30'), ('bob', '12')]" ]] && ok "tasks per client: $clients" || fail "tasks per client on the page: $clients"
updates="$(page single 'updates')"
((updates >= 2)) && ok "the page updated itself $updates times" || fail "the page updated $updates times"
mode="$(page single 'text("mode")')"
[[ "$mode" == single ]] && ok "mode: $mode" || fail "mode on the page: $mode"

say "--- the emulator's HTML report of a run against it"
"$EMULATOR" --url "$url" -n 2000 -c 16 --client-id carol --json --html "$work/report.html" >"$work/report.json" ||
    fail "clientemulator failed against a healthy server: $(cat "$work/report.json")"
browser "file://$work/report.html" report-drawn 1200,1240
cp "$OUT/report-drawn.png" "$OUT/report.png" && rm "$OUT/report-drawn.png"
checked="$(report report)" && ok "the HTML report shows what --json says: $checked" || fail "the HTML report: $checked"
kill -9 "${pids[0]}"

say "--- the HTML report of a run against the unsafe mode (--unsafe-no-locking), which loses tasks"
port="$(free_port)"
"$BIN" --unsafe-no-locking --bind "127.0.0.1:$port" --data "$work/racy.json" 2>"$work/racy.log" &
pids+=($!)
disown
until_ok 30 curl -fsS "http://127.0.0.1:$port/health" || fail "the unsafe server did not start"
status=0
"$EMULATOR" --url "http://127.0.0.1:$port" -n 400 -c 50 --client-id erin --json --html "$work/report-racy.html" \
    >"$work/report-racy.json" || status=$?
((status <= 1)) || fail "clientemulator exited $status against the unsafe server"
browser "file://$work/report-racy.html" report-racy-drawn 1200,1240
cp "$OUT/report-racy-drawn.png" "$OUT/report-racy.png" && rm "$OUT/report-racy-drawn.png"
checked="$(report report-racy)" && ok "the HTML report shows what --json says (exit $status): $checked" || fail "the HTML report: $checked"
kill -9 "${pids[-1]}"

say "--- a three-node cluster"
ports=() urls=() node_pids=()
for i in 1 2 3; do ports+=("$(free_port)"); done
peers="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
for i in 1 2 3; do
    mkdir -p "$work/node$i"
    TASKSERVER_CLUSTER_SECRET=test-page-secret-0123456789 "$BIN" --node-id "$i" --peers "$peers" \
        --bind "127.0.0.1:${ports[i - 1]}" --data "$work/node$i/tasks.json" 2>"$work/node$i.log" &
    disown
    node_pids+=($!)
    pids+=($!)
    urls+=("http://127.0.0.1:${ports[i - 1]}")
done
has_leader() { [[ "$(json_of "$1/cluster" 'd["leader_id"]')" =~ ^[0-9]+$ ]]; }
for u in "${urls[@]}"; do until_ok 60 has_leader "$u" || fail "no leader seen by $u"; done
leader="$(json_of "${urls[0]}/cluster" 'd["leader_id"]')"
for i in $(seq 1 20); do post "${urls[i % 3]}" "cluster $i" student; done
viewer=$((leader % 3 + 1)) # a node that is not the leader
browser "${urls[viewer - 1]}/" cluster
for n in 1 2 3; do
    want="$(json_of "${urls[n - 1]}/cluster" 'd["role"]')"
    got="$(page cluster "[r for r, _ in rows('nodes') if r.get('data-node') == '$n'][0].get('data-role')")"
    [[ "$got" == "$want" ]] && ok "node $n's row says $got, as its /cluster does" || fail "node $n's row says $got, its /cluster says $want"
done
note="$(page cluster 'text("cluster-note")')"
[[ "$note" == "leader: node $leader" ]] && ok "the page marks node $leader as the leader" || fail "the page says '$note'; the leader is $leader"

say "--- the leader killed"
kill -9 "${node_pids[leader - 1]}"
new_leader_seen() { local l; l="$(json_of "${urls[viewer - 1]}/cluster" 'd["leader_id"]')"; [[ "$l" =~ ^[0-9]+$ && "$l" != "$leader" ]]; }
until_ok 30 new_leader_seen || fail "no new leader after the kill"
new="$(json_of "${urls[viewer - 1]}/cluster" 'd["leader_id"]')"
browser "${urls[viewer - 1]}/" after-kill
got="$(page after-kill "[r for r, _ in rows('nodes') if r.get('data-node') == '$leader'][0].get('data-role')")"
[[ "$got" == down ]] && ok "the killed node $leader shows as not answering" || fail "the killed node's row says $got"
got="$(page after-kill "[r for r, _ in rows('nodes') if r.get('data-node') == '$new'][0].get('data-role')")"
[[ "$got" == leader ]] && ok "node $new shows as the new leader" || fail "node $new's row says $got"

say "--- the emulator's HTML report of a run over all three nodes, one of them dead"
all="$(IFS=,; echo "${urls[*]}")"
"$EMULATOR" --url "$all" -n 300 -c 8 --wait 0 --client-id dave --json --html "$work/report-cluster.html" \
    >"$work/report-cluster.json" || fail "clientemulator failed on the two live nodes: $(cat "$work/report-cluster.json")"
dead="$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["errors"].get("connect", 0), [n["url"] for n in r["nodes"] if n["error"]])' "$work/report-cluster.json")"
[[ "$dead" =~ ^[1-9][0-9]*\ \[\'http://127.0.0.1:${ports[leader - 1]}/\'\]$ ]] &&
    ok "refused connections went on to the next node, and dead node $leader was not read back: $dead" ||
    fail "the run over a dead node: connect errors and unread nodes: $dead"
browser "file://$work/report-cluster.html" report-cluster-drawn 1200,1240
cp "$OUT/report-cluster-drawn.png" "$OUT/report-cluster.png" && rm "$OUT/report-cluster-drawn.png"
checked="$(report report-cluster)" && ok "the HTML report shows what --json says: $checked" || fail "the HTML report: $checked"
echo
say "screenshots: ${OUT#"$ROOT"/}/single.png, cluster.png, after-kill.png, report.png, report-racy.png, report-cluster.png"
say "$passed passed, 0 failed"
