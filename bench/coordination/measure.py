"""ZooKeeper recipes (the coordination crate) side by side with etcd's
`etcdctl lock` / `etcdctl elect`, each on a three-member cluster on loopback.
Run by bench/coordination/run, which installs and builds what this needs.

Measured, for both systems the same way:
  lock_cli       `coordination lock L -- true` / `etcdctl lock L true`: the
                 whole command (connect, session, acquire, run, release, exit)
  handoff_cli    a holder's command writes the time and exits; the waiter
                 (queued behind it) writes the time as its command starts
  failover       kill -9 of the leader to the other contender's announcement,
                 with the session timeout / lease TTL given: `coordination
                 elect` for ZooKeeper; for etcd a leader latch made of
                 `etcdctl lock --ttl`, since etcd 3.4's `etcdctl elect` has no
                 TTL flag (its session TTL is fixed at 60 s)
  elect_60s      etcd only, a few trials: `etcdctl elect` as it is, 60 s TTL
and, for ZooKeeper only, through the library on live sessions:
  lock_lib       acquire + release, no other contender
  handoff_lib    from the holder starting its release to the waiter holding it
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ZOOKEEPER_CP = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, timeout, condition, poll=0.02):
    """Polls condition() until it is true; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"bench: waited {timeout} s for {what}, in vain")
        time.sleep(poll)


def percentile(values, p):
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(values_ms):
    return {
        "n": len(values_ms),
        "p50_ms": round(percentile(values_ms, 50), 2),
        "p99_ms": round(percentile(values_ms, 99), 2),
        "min_ms": round(min(values_ms), 2),
        "max_ms": round(max(values_ms), 2),
    }


class Cluster:
    """Processes started here, stopped at the end."""

    def __init__(self, root):
        self.root = root
        self.procs = []

    def spawn(self, name, args, env=None):
        log = open(os.path.join(self.root, f"{name}.log"), "ab")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()


def four_letter(port, word):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(word.encode())
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks).decode()
    except OSError:
        return ""


def start_zookeeper(cluster, tick_ms, prefix="zk"):
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    peers = "".join(f"server.{i + 1}=127.0.0.1:{q}:{e}\n" for i, (_, q, e) in enumerate(ports))
    for i, (client, _, _) in enumerate(ports):
        d = os.path.join(cluster.root, f"{prefix}{i + 1}")
        os.makedirs(os.path.join(d, "data"))
        with open(os.path.join(d, "data", "myid"), "w") as f:
            f.write(f"{i + 1}\n")
        with open(os.path.join(d, "zoo.cfg"), "w") as f:
            f.write(
                f"tickTime={tick_ms}\ninitLimit=10\nsyncLimit=5\ndataDir={d}/data\n"
                f"clientPort={client}\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n"
                "admin.enableServer=false\n4lw.commands.whitelist=*\nstandaloneEnabled=false\n" + peers
            )
        cluster.spawn(f"{prefix}{i + 1}", ["java", "-Xmx256m", "-cp", ZOOKEEPER_CP,
                                     "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                                     os.path.join(d, "zoo.cfg")])
    clients = [p[0] for p in ports]
    for port in clients:
        wait(f"ZooKeeper on {port} to serve", 90, lambda port=port: "Mode:" in four_letter(port, "srvr"))
    return clients


def start_etcd(cluster):
    members = [(f"m{i + 1}", free_port(), free_port()) for i in range(3)]
    initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, _, p in members)
    for name, client, peer in members:
        cluster.spawn(f"etcd-{name}", [
            "etcd", "--name", name, "--data-dir", os.path.join(cluster.root, f"etcd-{name}"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", "bench"])
    endpoints = ",".join(f"127.0.0.1:{c}" for _, c, _ in members)
    wait("etcd to be healthy", 60, lambda: subprocess.run(
        ["etcdctl", f"--endpoints={endpoints}", "endpoint", "health"],
        capture_output=True).returncode == 0, poll=0.2)
    return endpoints


class System:
    """How to drive one of the two systems from the command line."""

    def __init__(self, name, lock, elect, in_line):
        self.name, self.lock, self.elect, self.in_line = name, lock, elect, in_line


def zookeeper_system(binary, servers, clients, session_timeout):
    env = dict(os.environ, ZOOKEEPER=servers, ZOOKEEPER_SESSION_TIMEOUT=str(session_timeout), RUST_LOG="error")

    def watches():
        total = 0
        for port in clients:
            for line in four_letter(port, "mntr").splitlines():
                if line.startswith("zk_watch_count\t"):
                    total += int(line.split("\t")[1])
        return total

    return System(
        "ZooKeeper",
        lock=lambda name, cmd: ([binary, "lock", name, "--"] + cmd, env),
        elect=lambda name, me: ([binary, "elect", name, me], env, f"leader {me}"),
        # A waiter watches the node ahead of it: the ensemble counts one watch.
        in_line=lambda name, n: watches() >= n - 1,
    )


def etcd_system(endpoints, ttl):
    env = dict(os.environ, ETCDCTL_API="3")
    base = ["etcdctl", f"--endpoints={endpoints}"]

    def keys(name):
        out = subprocess.run(base + ["get", "--prefix", "--keys-only", name + "/"],
                             capture_output=True, text=True, env=env).stdout
        return len([line for line in out.splitlines() if line.strip()])

    return System(
        "etcd",
        lock=lambda name, cmd: (base + ["lock", f"--ttl={ttl}", name, "--"] + cmd, env),
        # A latch: holding the lock is leading; the command says so.
        elect=lambda name, me: (base + ["lock", f"--ttl={ttl}", name, "--", "sh", "-c",
                                        f"echo elected {me}; exec sleep 100000"], env, f"elected {me}"),
        in_line=lambda name, n: keys(name) >= n,
    )


def lock_cli(system, trials):
    times = []
    for _ in range(trials):
        args, env = system.lock("bench-lock", ["true"])
        started = time.perf_counter()
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - started) * 1000)
    return times


def handoff_cli(system, trials, scratch):
    times = []
    for t in range(trials):
        go, end, start = (os.path.join(scratch, f"{system.name}-{t}-{x}") for x in ("go", "end", "start"))
        holder_args, env = system.lock(f"bench-handoff", [
            "sh", "-c", f"touch {go}.held; while [ ! -e {go} ]; do sleep 0.005; done; date +%s%N > {end}"])
        holder = subprocess.Popen(holder_args, env=env, stdout=subprocess.DEVNULL)
        wait("the holder to hold", 30, lambda: os.path.exists(go + ".held"))
        waiter_args, _ = system.lock("bench-handoff", ["sh", "-c", f"date +%s%N > {start}"])
        waiter = subprocess.Popen(waiter_args, env=env, stdout=subprocess.DEVNULL)
        wait("the waiter to be in line", 30, lambda: system.in_line("bench-handoff", 2))
        open(go, "w").close()
        holder.wait()
        waiter.wait()
        times.append((int(open(start).read()) - int(open(end).read())) / 1e6)
    return times


class Contender:
    def __init__(self, system, me, elect=None):
        args, env, self.announcement = (elect or system.elect)("bench-office", me)
        self.me = me
        # A process group of its own: kill -9 takes its children too.
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, start_new_session=True)
        self.elected_at = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.strip() == self.announcement and self.elected_at is None:
                self.elected_at = time.perf_counter()

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def failover(system, trials, timeout, elect=None):
    times = []
    leader = Contender(system, "a", elect)
    wait(f"{system.name}: the first leader", 30, lambda: leader.elected_at is not None)
    names = iter(f"c{i}" for i in range(10 * trials + 10))
    follower = Contender(system, next(names), elect)
    for _ in range(trials):
        wait(f"{system.name}: the follower in line", 30, lambda: system.in_line("bench-office", 2))
        killed = time.perf_counter()
        leader.kill()
        wait(f"{system.name}: a new leader", 10 * timeout + 30, lambda: follower.elected_at is not None, poll=0.005)
        times.append((follower.elected_at - killed) * 1000)
        leader, follower = follower, Contender(system, next(names), elect)
    leader.kill()
    follower.kill()
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--latency", required=True, help="the latency example binary")
    parser.add_argument("--out", required=True)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--failovers", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=4, help="session timeout = lease TTL, seconds")
    parser.add_argument("--tick", type=int, default=2000, help="ZooKeeper tickTime, ms")
    parser.add_argument("--elect-60s", type=int, default=0, help="trials of etcdctl elect as it is")
    parser.add_argument("--fine-tick", type=int, default=0,
                        help="also time ZooKeeper failover on a second ensemble with this tickTime, ms")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="coordination-bench.")
    cluster = Cluster(root)
    results = {"timeout_s": args.timeout, "tick_ms": args.tick, "trials": args.trials, "failovers": args.failovers}
    try:
        print(f"bench: starting ZooKeeper (tickTime {args.tick} ms) and etcd, three members each", file=sys.stderr)
        clients = start_zookeeper(cluster, args.tick)
        servers = ",".join(f"127.0.0.1:{p}" for p in clients)
        endpoints = start_etcd(cluster)
        systems = [zookeeper_system(args.binary, servers, clients, args.timeout),
                   etcd_system(endpoints, int(args.timeout))]

        lib = json.loads(subprocess.run([args.latency, servers, str(args.trials * 4)],
                                        check=True, capture_output=True, text=True).stdout)
        results["ZooKeeper.lock_lib"] = summary([us / 1000 for us in lib["uncontended_us"]])
        results["ZooKeeper.handoff_lib"] = summary([us / 1000 for us in lib["handoff_us"]])
        # Interleaved: the machine's speed drifts, and each pair is taken close together.
        for measure, run in [("lock_cli", lambda s: lock_cli(s, args.trials)),
                             ("handoff_cli", lambda s: handoff_cli(s, max(2, args.trials // 2), root)),
                             ("failover", lambda s: failover(s, args.failovers, args.timeout))]:
            for system in systems:
                print(f"bench: {system.name} {measure}", file=sys.stderr)
                results[f"{system.name}.{measure}"] = summary(run(system))
                print(f"bench:   {results[f'{system.name}.{measure}']}", file=sys.stderr)
        if args.fine_tick:
            # ZooKeeper expires sessions in buckets of one tick: how much of the
            # failover is the tick, the session timeout staying the same.
            print(f"bench: ZooKeeper failover_tick{args.fine_tick} (tickTime {args.fine_tick} ms)", file=sys.stderr)
            fine = start_zookeeper(cluster, args.fine_tick, "fine")
            system = zookeeper_system(args.binary, ",".join(f"127.0.0.1:{p}" for p in fine), fine, args.timeout)
            results["ZooKeeper.failover_fine_tick"] = summary(failover(system, args.failovers, args.timeout))
            results["fine_tick_ms"] = args.fine_tick
            print(f"bench:   {results['ZooKeeper.failover_fine_tick']}", file=sys.stderr)
        if args.elect_60s:
            print("bench: etcd elect_60s (etcdctl elect, its fixed 60 s session TTL)", file=sys.stderr)
            etcdctl = ["etcdctl", f"--endpoints={endpoints}"]
            # etcdctl elect prints the election key, then the proposal, once elected.
            native = lambda name, me: (etcdctl + ["elect", name, me], dict(os.environ, ETCDCTL_API="3"), me)
            results["etcd.elect_60s"] = summary(failover(systems[1], args.elect_60s, 60, native))
            print(f"bench:   {results['etcd.elect_60s']}", file=sys.stderr)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
