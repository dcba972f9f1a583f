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
    lines += [
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
