"""Writes COORDINATION.md from bench/coordination/measure.py's results."""

import argparse
import json

ROWS = [
    ("lock_cli", "lock + release, whole command (`coordination lock L -- true` / `etcdctl lock L true`)"),
    ("handoff_cli", "hand-off between two commands (holder's command ends -> waiter's command starts)"),
    ("failover", "leader failover: kill -9 of the leader -> the other contender's announcement"),
]


def cell(s):
    return f"{s['p50_ms']:,.1f} / {s['p99_ms']:,.1f}"


def main():
    p = argparse.ArgumentParser()
    for flag in ("results", "report", "mode", "command", "duration", "load", "versions", "machine"):
        p.add_argument(f"--{flag}", required=True)
    a = p.parse_args()
    r = json.load(open(a.results))
    t = r["timeout_s"]
    lines = [
        "# Coordination: ZooKeeper recipes vs etcd, measured",
        "",
        f"Made by `{a.command}` ({a.mode} run, {a.duration} s; load {a.load}). Every figure is",
        "p50 / p99 in milliseconds over the trials given; both clusters have three members on",
        f"127.0.0.1 of one machine, started by the benchmark. Session timeout (ZooKeeper) = lease",
        f"TTL (etcd) = {t:g} s; ZooKeeper's tickTime {r['tick_ms']} ms.",
        "",
        "| measure | ZooKeeper (`coordination`) | etcd (`etcdctl`) | trials |",
        "|---|---|---|---|",
    ]
    for key, label in ROWS:
        z, e = r[f"ZooKeeper.{key}"], r[f"etcd.{key}"]
        lines.append(f"| {label} | {cell(z)} | {cell(e)} | {z['n']} / {e['n']} |")
    if "etcd.elect_60s" in r:
        e = r["etcd.elect_60s"]
        lines.append(f"| failover with `etcdctl elect` itself (its session TTL is fixed at 60 s) | | {cell(e)} | {e['n']} |")
    if "ZooKeeper.failover_fine_tick" in r:
        z = r["ZooKeeper.failover_fine_tick"]
        lines.append(f"| the same ZooKeeper failover with tickTime {r['fine_tick_ms']} ms (session timeout unchanged) | {cell(z)} | | {z['n']} |")
    lines += [
        f"| lock + release through the library, on a live session | {cell(r['ZooKeeper.lock_lib'])} | (not measured) | {r['ZooKeeper.lock_lib']['n']} |",
        f"| hand-off through the library (release starts -> the waiter holds it) | {cell(r['ZooKeeper.handoff_lib'])} | (not measured) | {r['ZooKeeper.handoff_lib']['n']} |",
        "",
        "Minimum and maximum of each, for the spread:",
        "",
        "| measure | ZooKeeper min / max | etcd min / max |",
        "|---|---|---|",
    ]
    for key, _ in ROWS:
        z, e = r[f"ZooKeeper.{key}"], r[f"etcd.{key}"]
        lines.append(f"| {key} | {z['min_ms']:,.1f} / {z['max_ms']:,.1f} | {e['min_ms']:,.1f} / {e['max_ms']:,.1f} |")
    fine = r.get("fine_tick_ms")
    lines += [
        "",
        "## How to read it",
        "",
        "- **Whole command**: both programs connect, open a session (ZooKeeper) or grant a lease",
        "  (etcd), take the lock, run `true`, release it and close the session or revoke the lease,",
        "  then exit: four replicated, fsynced writes each, plus starting a process.",
        "- **Hand-off**: from the last instant of the holder's command to the first of the waiter's:",
        "  the holder's release, the one notification the waiter gets, its look at the line, and",
        "  the start of its command.",
        "- **Failover** is how long the cluster waits before it declares the dead leader's session",
        "  or lease over, and little else. ZooKeeper checks expiry in buckets of one tick, so a",
        f"  session dies up to one tick after its timeout: with the default {r['tick_ms']} ms tick the",
        f"  failover is about {t:g} s + a tick"
        + (f"; with {fine} ms it matches etcd's" if fine else "") + ". etcd ends a lease one TTL",
        "  after the last keep-alive (sent every TTL/3), checking every 500 ms.",
        "- etcd 3.4's `etcdctl elect` has no TTL flag: its session TTL is 60 s, and so is its",
        "  failover. The 20 etcd failover trials therefore use a leader latch made of",
        f"  `etcdctl lock --ttl {t:g}` (the leader is whoever holds the lock; etcd's election uses the",
        "  same lease and queue of keys).",
        "- The library rows (ZooKeeper only) leave out process start and session set-up: lock +",
        "  release is one create, one getChildren and one delete; the hand-off is the delete, the",
        "  notification and the waiter's getChildren.",
        "- The machine is shared and its disk's fsync time varies: p99s move between runs; the",
        "  load averages above say how busy it was.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "bench/coordination/run            # this report (about 7 minutes); installs zookeeper, etcd-server, etcd-client if missing",
        "bench/coordination/run --smoke    # seconds, 3 trials each, debug binary (part of bench/run --smoke)",
        "BENCH_TRIALS=100 BENCH_FAILOVERS=30 BENCH_TIMEOUT=6 BENCH_TICK=2000 bench/coordination/run",
        "```",
        "",
        "The raw figures are in `target/bench/coordination/results.json`.",
        "",
        "## Versions and machine",
        "",
        f"- {a.versions}",
        f"- {a.machine}",
        "",
    ]
    open(a.report, "w").write("\n".join(lines))


if __name__ == "__main__":
    main()
