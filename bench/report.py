"""Turns the numbers bench/run measured into the tables of RESULTS.md.

    python report.py --results results.tsv --out DIR --report RESULTS.md ...

`results.tsv` holds one `KEY<TAB>VALUE` line per measurement, the key naming
the peer, the file size or round, and the quantity (`ts-0-2.rps`: taskserver,
empty file, round 2, requests per second). Every ratio is taken within one
round, then the median over the rounds is shown: the disk's fsync time drifts
between rounds, and a ratio from the same minute is the fair comparison.

The part of an existing report after the NOTES_MARKER line is kept: it holds
the hand-written reading of the numbers and of the profile.
"""

import argparse
import datetime
import os
import re
import statistics
import sys

NOTES_MARKER = "<!-- Notes below this line are written by hand and kept by bench/run. -->"


def load(path):
    values = {}
    with open(path) as f:
        for line in f:
            key, value = line.rstrip("\n").split("\t")
            values[key] = float(value)
    return values


def histogram(path, name):
    """Count, mean and median (bucket bound) of a Prometheus histogram."""
    buckets, total, count = [], 0.0, 0
    with open(path) as f:
        for line in f:
            if line.startswith(name + "_sum"):
                total = float(line.split()[-1])
            elif line.startswith(name + "_count"):
                count = int(float(line.split()[-1]))
            elif line.startswith(name + "_bucket"):
                bound = re.search(r'le="([^"]+)"', line).group(1)
                buckets.append((float("inf") if bound == "+Inf" else float(bound), int(float(line.split()[-1]))))
    median = None
    for bound, cumulative in sorted(buckets):
        if count and cumulative >= count / 2:
            median = bound
            break
    return count, (total / count if count else 0.0), median


def fmt(x, digits=None):
    if x is None:
        return "n/a"
    if digits is not None:
        return f"{x:,.{digits}f}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:,.1f}"
    return f"{x:,.2f}"


class Numbers:
    def __init__(self, values, rounds):
        self.v = values
        self.rounds = rounds

    def get(self, key):
        return self.v.get(key)

    def per_round(self, key):
        """[value of round 1, round 2, ...] for a key with {r} in it."""
        return [self.v.get(key.format(r=r)) for r in range(1, self.rounds + 1)]

    def median(self, key):
        values = [x for x in self.per_round(key) if x is not None]
        return statistics.median(values) if values else None

    def ratio(self, top, bottom):
        """Median over rounds of top/bottom, both from the same round."""
        ratios = [a / b for a, b in zip(self.per_round(top), self.per_round(bottom)) if a is not None and b]
        return statistics.median(ratios) if ratios else None

    def spread(self, key):
        values = [x for x in self.per_round(key) if x is not None]
        return " / ".join(fmt(x) for x in values)


def main():
    p = argparse.ArgumentParser()
    for name in ["results", "out", "report", "mode", "command", "seconds", "rounds", "sizes",
                 "connections", "burst", "duration", "load-before", "load-after", "versions", "machine", "oha"]:
        p.add_argument("--" + name, required=True)
    a = p.parse_args()
    rounds = int(a.rounds)
    n = Numbers(load(a.results), rounds)
    sizes = [int(s) for s in a.sizes.split()]
    largest = sizes[-1]
    label = {s: f"{s:,}" for s in sizes}

    out = []
    w = out.append
    title = "Benchmark results" if a.mode == "full" else "Benchmark smoke run (tiny sizes: checks the harness, not the speed)"
    w(f"# {title}\n")
    w(f"Measured by `{a.command}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
      f"in {a.duration} s. {rounds} round(s); each load lasts {a.seconds} s with "
      f"{a.connections} concurrent connections on 127.0.0.1. Numbers are the median of the rounds; "
      "each ratio is the median of the ratios taken within one round.\n")
    w("- Machine: " + "; ".join(a.machine.splitlines()) + ".")
    w(f"- Load average (1, 5, 15 min) before the run: {a.load_before}; after: {a.load_after}. "
      "Other work on the machine during the run lowers and scatters every number.")
    w("- Versions: " + "; ".join(a.versions.splitlines()) + ".\n")

    # --- durable appends -----------------------------------------------------
    w("## Durable appends, side by side\n")
    w("| peer | what a request does | requests/s (median) | per round | p99 latency (ms) |")
    w("|---|---|---:|---|---:|")
    rows = [
        ("taskserver", "`POST /tareas`, 201 after `fdatasync` (group commit), wrk", "ts-0-{r}"),
        ("Redis 7, `appendfsync always`", "`RPUSH` of 200 bytes, redis-benchmark", "redis-{r}"),
        ("course design (Flask)", "`POST /tareas`: flock, read all, append, rewrite, fsync", "flask-0-{r}"),
        ("HTTP ceiling", "taskserver's HTTP stack, nothing stored, wrk", "ceiling-{r}"),
        ("taskserver on tmpfs", "the same as taskserver, file in /dev/shm: fsync costs nothing", "tmpfs-{r}"),
    ]
    for name, what, key in rows:
        p99 = n.median(key + ".p99_ms")
        w(f"| {name} | {what} | {fmt(n.median(key + '.rps'))} | {n.spread(key + '.rps')} | {fmt(p99)} |")
    w("")

    # --- fsync and batches -----------------------------------------------------
    w("### What taskserver's commits did (from its `/metrics`)\n")
    w("| run | requests/s | fsyncs | mean fsync (ms) | median fsync (ms, bucket bound) | mean tasks per fsync |")
    w("|---|---:|---:|---:|---:|---:|")
    runs = [f"ts-0-{r}" for r in range(1, rounds + 1)] + [f"tmpfs-{r}" for r in range(1, rounds + 1)]
    runs += [f"ts-{s}-{r}" for s in sizes[1:] for r in range(1, rounds + 1)]
    if os.path.exists(os.path.join(a.out, "metrics", "profile.txt")):
        runs.append("profile")
    for run in runs:
        path = os.path.join(a.out, "metrics", run + ".txt")
        if not os.path.exists(path):
            continue
        fsyncs, mean_fsync, median_fsync = histogram(path, "taskserver_fsync_seconds")
        _, mean_batch, _ = histogram(path, "taskserver_commit_batch_size")
        w(f"| {run} | {fmt(n.get(run + '.rps'))} | {fsyncs:,} | {mean_fsync * 1000:.3f} | "
          f"{'n/a' if median_fsync is None else f'{median_fsync * 1000:.3f}'} | {mean_batch:.1f} |")
    w("")

    # --- scaling -----------------------------------------------------------------
    w("## Scaling with the file\n")
    w("| tasks already in the file | taskserver requests/s | start-up (s) | resident memory after start-up (MB) | peak resident memory (MB) | `GET /tareas` (s) | course design requests/s | taskserver / course design |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        ts = n.median(f"ts-{s}-{{r}}.rps")
        flask = n.median(f"flask-{s}-{{r}}.rps") if s == 0 else n.get(f"flask-{s}-1.rps")
        ratio = n.ratio("ts-0-{r}.rps", "flask-0-{r}.rps") if s == 0 else (ts / flask if ts and flask else None)
        get_all = n.median(f"ts-{s}-{{r}}.get_all_s")
        get_mb = n.median(f"ts-{s}-{{r}}.get_all_mb")
        get_text = "" if get_all is None else f"{get_all:.3f} ({fmt(get_mb, 0)} MB)"
        w(f"| {label[s]} | {fmt(ts)} | {fmt(n.median(f'ts-{s}-{{r}}.startup_s'), 3)} | "
          f"{fmt(n.median(f'ts-{s}-{{r}}.rss_start_mb'), 0)} | {fmt(n.median(f'ts-{s}-{{r}}.rss_peak_mb'), 0)} | "
          f"{get_text} | {fmt(flask)} | {fmt(ratio)} |")
    w("")
    w("The course design's numbers on the non-empty files come from one run (it is slow: "
      "every request rereads and rewrites the whole file); on the largest file of the full run, "
      "from two POSTs one after the other, which its flock serialises anyway.\n")

    # --- load tools ---------------------------------------------------------------
    w("## The load generators against the ceiling\n")
    w("| tool | requests/s (median) | per round | peak resident memory (MB) |")
    w("|---|---:|---|---:|")
    w(f"| wrk (C, Lua script) | {fmt(n.median('ceiling-{r}.rps'))} | {n.spread('ceiling-{r}.rps')} | |")
    if a.oha == "yes":
        w(f"| oha | {fmt(n.median('oha-{r}.rps'))} | {n.spread('oha-{r}.rps')} | {fmt(n.median('oha-{r}.rss_mb'), 0)} |")
    else:
        w("| oha | skipped: not installed (the full run installs it) | | |")
    w(f"| clientemulator | {fmt(n.median('emulator-{r}.rps'))} | {n.spread('emulator-{r}.rps')} | {fmt(n.median('emulator-{r}.rss_mb'), 0)} |")
    w(f"| clientemulator, a 3x longer run | {fmt(n.get('emulator-long.rps'))} | | {fmt(n.get('emulator-long.rss_mb'), 0)} |")
    w("")

    # --- reads under writes -----------------------------------------------------------
    w("## Reads while tasks are written\n")
    w("`GET /tareas/1` over 8 connections (wrk), first on an idle server, then while 64 other "
      f"connections post durable tasks, {a.seconds} s each. Reads are answered from memory and "
      "never wait for a commit's `fdatasync`; the fsync column is the same run's median "
      "`fdatasync` from `/metrics`, for scale.\n")
    w("| round | idle p50 (ms) | idle p99 (ms) | under writes p50 (ms) | under writes p99 (ms) | reads/s under writes | writes/s meanwhile | median fsync (ms) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in range(1, rounds + 1):
        path = os.path.join(a.out, "metrics", f"reads-{r}.txt")
        median_fsync = histogram(path, "taskserver_fsync_seconds")[2] if os.path.exists(path) else None
        w(f"| {r} | {fmt(n.get(f'reads-idle-{r}.p50_ms'), 3)} | {fmt(n.get(f'reads-idle-{r}.p99_ms'), 3)} | "
          f"{fmt(n.get(f'reads-busy-{r}.p50_ms'), 3)} | {fmt(n.get(f'reads-busy-{r}.p99_ms'), 3)} | "
          f"{fmt(n.get(f'reads-busy-{r}.rps'))} | {fmt(n.get(f'reads-busy-{r}.post_rps'))} | "
          f"{'n/a' if median_fsync is None else f'{median_fsync * 1000:.3f}'} |")
    w("")

    # --- the burst -------------------------------------------------------------------
    burst = int(a.burst)
    w("## A burst of connections\n")
    w(f"Two clientemulators against a fresh taskserver, each sending {burst:,} tasks over {burst:,} "
      f"connections opened at the same moment (the course's compose run sends 100 each). "
      "A connection the listen backlog cannot queue waits 1 s for a SYN retransmission.\n")
    w("| | per round (ms) |")
    w("|---|---|")
    w(f"| slowest request | {n.spread('burst-{r}.max_ms')} |")
    w(f"| p99 (the worse of the two clients) | {n.spread('burst-{r}.p99_ms')} |")
    w("")

    # --- the live page ------------------------------------------------------------------
    w("## What an open live page costs\n")
    w(f"The same durable `POST` load ({a.connections} connections, wrk) on one taskserver three "
      "times in a row: alone, then while 1 and while 50 viewers of the live page poll `GET /live` "
      "twice a second (bench/viewer.lua: each wrk connection waits 500 ms between requests).\n")
    w("| | POSTs/s (median) | per round | / alone | `GET /live` answered per second |")
    w("|---|---:|---|---:|---:|")
    for viewers in (0, 1, 50):
        key = f"page-{viewers}-{{r}}"
        rel = "" if viewers == 0 else fmt(n.ratio(key + ".rps", "page-0-{r}.rps"))
        live = "" if viewers == 0 else fmt(n.median(key + ".live_rps"))
        name = "alone" if viewers == 0 else f"{viewers} viewer{'s' if viewers > 1 else ''}"
        w(f"| {name} | {fmt(n.median(key + '.rps'))} | {n.spread(key + '.rps')} | {rel} | {live} |")
    w("")

    # --- cluster mode ------------------------------------------------------------------
    w("## Cluster mode: three nodes\n")
    w(f"Three taskserver nodes in cluster mode on loopback, each with its own directory, "
      f"{a.connections} connections split over them (one `wrk -t1` per node, bench/post.lua): "
      "a `201` means in the Raft log of a majority, each fsynced, and applied. Beside it, in "
      "the same round: the single node (`wrk -t2`, all connections to it), and etcd with "
      "three members on loopback, durable puts of a task-sized value through its JSON "
      "gateway `POST /v3/kv/put` (bench/put.lua), the same split. p50 and p99 are the "
      "slowest of the three wrk processes'. After each load a `GET /tareas` through every "
      "node (or a count of etcd's keys) must hold every acknowledged request.\n")
    w("| peer | requests/s (median) | per round | p50 (ms) | p99 (ms) |")
    w("|---|---:|---|---:|---:|")
    for name, key in [("taskserver, 3 nodes", "cluster-{r}"), ("taskserver, single node", "ts-0-{r}"),
                      ("etcd 3.4, 3 members", "etcd-{r}")]:
        w(f"| {name} | {fmt(n.median(key + '.rps'))} | {n.spread(key + '.rps')} | "
          f"{fmt(n.median(key + '.p50_ms'))} | {fmt(n.median(key + '.p99_ms'))} |")
    w("")
    w(f"Failover: `kill -9` of the leader while {16} writers post over the three nodes "
      f"(a refused or failed request goes to the next node with the same key), "
      f"{fmt(n.get('failover.kills'), 0)} times; from the kill to the first acknowledgement "
      "of a request begun after it. The killed node is started again and catches up before "
      "the next kill. Catch-up: a follower stopped while the other two store "
      f"{fmt(n.get('catchup.behind'), 0)} tasks, then started; then the same node wiped and "
      "started empty; each from its start to having applied everything committed "
      "(bench/cluster, `cluster-bench`). Both end by checking the nodes' files are "
      "byte-identical and hold every acknowledged task once.\n")
    w("| | value |")
    w("|---|---:|")
    w(f"| failover, median (ms) | {fmt(n.get('failover.median_ms'))} |")
    w(f"| failover, best / worst (ms) | {fmt(n.get('failover.min_ms'))} / {fmt(n.get('failover.max_ms'))} |")
    w(f"| tasks acknowledged during the kills | {fmt(n.get('failover.acked'), 0)} |")
    snap = n.get("catchup.from_snapshot")
    how = "" if snap is None else (" (from a snapshot and the log's tail)" if snap else " (from the log)")
    w(f"| catch-up of a node {fmt(n.get('catchup.behind'), 0)} tasks behind (s){how} | {fmt(n.get('catchup.behind_s'), 2)} |")
    w(f"| catch-up of a wiped node (s) | {fmt(n.get('catchup.wiped_s'), 2)} |")
    w(f"| writes/s while the node was down (2 nodes, {64} writers) | {fmt(n.get('catchup.write_rps'))} |")
    w("")

    # --- ratios and targets -----------------------------------------------------------
    w("## Ratios and targets\n")
    w("| ratio | measured | target | met? |")
    w("|---|---:|---|---|")

    def target(name, value, goal, ok, text=None):
        if a.mode != "full":
            met = "not judged: smoke run"
        else:
            met = "n/a" if value is None else ("**yes**" if ok(value) else "**no**")
        w(f"| {name} | {text if text is not None else fmt(value)} | {goal} | {met} |")

    worst = max((x for x in n.per_round("burst-{r}.max_ms") if x is not None), default=None)
    target(f"slowest request of a 2 x {burst:,} burst, worst round (ms)", worst, "<= 500 ms", lambda x: x <= 500)
    target("taskserver / Redis (`appendfsync always`)", n.ratio("ts-0-{r}.rps", "redis-{r}.rps"), ">= 0.9 (aim >= 1.0)", lambda x: x >= 0.9)
    flask_ratios = []
    for s in sizes:
        ts = n.median(f"ts-{s}-{{r}}.rps")
        flask = n.median(f"flask-{s}-{{r}}.rps") if s == 0 else n.get(f"flask-{s}-1.rps")
        r = n.ratio("ts-0-{r}.rps", "flask-0-{r}.rps") if s == 0 else (ts / flask if ts and flask else None)
        flask_ratios.append(r)
    target("taskserver / course design, empty file", flask_ratios[0], ">= 100", lambda x: x >= 100)
    growing = all(b is not None and a_ is not None and b > a_ for a_, b in zip(flask_ratios, flask_ratios[1:]))
    target("... and with the file (" + ", ".join(label[s] for s in sizes) + " tasks)", flask_ratios[0],
           "grows with the file", lambda _: growing, " → ".join(fmt(x) for x in flask_ratios))
    target("taskserver / HTTP ceiling", n.ratio("ts-0-{r}.rps", "ceiling-{r}.rps"), ">= 0.8", lambda x: x >= 0.8)
    target("taskserver on tmpfs / HTTP ceiling (the store without the disk)", n.ratio("tmpfs-{r}.rps", "ceiling-{r}.rps"), "(diagnostic)", lambda x: True)
    target(f"throughput at {label[largest]} / at 0", n.ratio(f"ts-{largest}-{{r}}.rps", "ts-0-{r}.rps"), ">= 0.9", lambda x: x >= 0.9)
    target(f"start-up at {label[largest]} tasks (s)", n.median(f"ts-{largest}-{{r}}.startup_s"), "<= 2 s", lambda x: x <= 2)
    target(f"resident memory at {label[largest]} tasks, once started (MB)", n.median(f"ts-{largest}-{{r}}.rss_start_mb"), "<= 400 MB", lambda x: x <= 400)
    target(f"resident memory at {label[largest]} tasks, peak of the run, start-up included (MB)", n.median(f"ts-{largest}-{{r}}.rss_peak_mb"), "<= 400 MB", lambda x: x <= 400)
    target(f"`GET /tareas` at {label[largest]} tasks (s)", n.median(f"ts-{largest}-{{r}}.get_all_s"), "<= 2 s", lambda x: x <= 2)
    if a.oha == "yes":
        target("clientemulator / oha", n.ratio("emulator-{r}.rps", "oha-{r}.rps"), ">= 0.9", lambda x: x >= 0.9)
    else:
        target("clientemulator / oha", None, ">= 0.9", lambda x: False, "oha skipped")
    target("clientemulator / wrk (diagnostic)", n.ratio("emulator-{r}.rps", "ceiling-{r}.rps"), "(diagnostic)", lambda x: True)
    target("POSTs with 1 live-page viewer / alone", n.ratio("page-1-{r}.rps", "page-0-{r}.rps"), ">= 0.95", lambda x: x >= 0.95)
    target("POSTs with 50 live-page viewers / alone", n.ratio("page-50-{r}.rps", "page-0-{r}.rps"), ">= 0.95", lambda x: x >= 0.95)
    target("3 nodes / single node, committed writes", n.ratio("cluster-{r}.rps", "ts-0-{r}.rps"), ">= 0.5", lambda x: x >= 0.5)
    target("3 nodes / etcd 3 members, committed writes", n.ratio("cluster-{r}.rps", "etcd-{r}.rps"), ">= 1.0", lambda x: x >= 1.0)
    target("3 nodes p99 / etcd p99", n.ratio("cluster-{r}.p99_ms", "etcd-{r}.p99_ms"), "<= 1.0 (no worse)", lambda x: x <= 1.0)
    target("failover, median of the kills (ms)", n.get("failover.median_ms"), "< 1,000 ms", lambda x: x < 1000)
    target("failover, worst of the kills (ms)", n.get("failover.max_ms"), "< 3,000 ms", lambda x: x < 3000)
    long_rss, short_rss = n.get("emulator-long.rss_mb"), n.median("emulator-{r}.rss_mb")
    growth = long_rss / short_rss if long_rss and short_rss else None
    target("clientemulator memory, 3x longer run / normal run", growth, "flat (<= 1.2)", lambda x: x <= 1.2)
    w("")

    # --- profile ---------------------------------------------------------------------
    self_path = os.path.join(a.out, "profile-self.txt")
    if os.path.exists(self_path) and os.path.getsize(self_path):
        w("## Profile of taskserver under the durable load\n")
        w(f"`perf record -e cpu-clock -F 999 -g --call-graph dwarf` on taskserver during a {a.seconds} s "
          f"wrk load on an empty file ({fmt(n.get('profile.rps'))} requests/s while profiled). "
          "Shares are of the CPU time spent in the taskserver process (kernel time on its behalf included).\n")
        for name, caption in [
            ("profile-threads.txt", "By thread:"),
            ("profile-self.txt", "Self time by function, top entries:"),
            ("profile-inclusive.txt", "Time including callees, for the store, its system calls, the allocator and the network (children, self):"),
        ]:
            path = os.path.join(a.out, name)
            if os.path.exists(path) and os.path.getsize(path):
                w(caption + "\n")
                w("```")
                with open(path) as f:
                    w(f.read().rstrip())
                w("```\n")

    startup_path = os.path.join(a.out, "profile-startup.txt")
    if os.path.exists(startup_path) and os.path.getsize(startup_path):
        w(f"### Profile of taskserver's start-up on the {label[largest]}-task file\n")
        w("`perf record -e cpu-clock -F 999` from exec until `GET /health` answers; self time by function:\n")
        w("```")
        with open(startup_path) as f:
            w(f.read().rstrip())
        w("```\n")

    w("## Reproduce\n")
    w("```sh\nbench/run           # this report (installs wrk, redis-server, etcd-server, Flask in bench/.venv, oha when missing)\n"
      "bench/run --smoke   # seconds: checks that the harness works; CI runs it\n"
      "bench/ab PATCH...   # a store change against HEAD, interleaved (see bench/experiments)\n```\n")

    notes = ""
    if os.path.exists(a.report):
        with open(a.report) as f:
            old = f.read()
        if NOTES_MARKER in old:
            notes = old.split(NOTES_MARKER, 1)[1]
    w(NOTES_MARKER)
    text = "\n".join(out) + (notes if notes else "\n")
    with open(a.report, "w") as f:
        f.write(text)
    # The tables on the terminal too.
    sys.stdout.write(text.split(NOTES_MARKER)[0])


if __name__ == "__main__":
    main()
