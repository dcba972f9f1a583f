#!/usr/bin/env bash
# Install what the coordination tests and benchmark need, from Debian's
# packages, when it is missing (idempotent: nothing happens when all is there).
#
#   scripts/install-zookeeper.sh            ZooKeeper and a headless JRE
#   scripts/install-zookeeper.sh --etcd     also etcd-server and etcd-client (bench anchor)
#
# - zookeeper: Debian's ZooKeeper 3.8 server jars (/usr/share/zookeeper), with
#   zkCli.sh under /usr/share/zookeeper/bin. The tests do not use its init
#   script or /etc/zookeeper: they start their own servers with their own
#   configuration on free loopback ports (coordination/tests/common).
# - default-jre-headless: the Java runtime ZooKeeper runs on (the zookeeper
#   package itself also pulls in Debian's default-jre).
# - iptables, iproute2: the partition test cuts a contender off inside a
#   network namespace of its own.
#
# Needs root for apt-get (CI runs as root); without root it only says what to
# install. Installing the zookeeper package does not start a server (Debian
# leaves the service to the zookeeperd package, which this does not install).
set -euo pipefail

say() { echo "install-zookeeper: $*" >&2; }

packages=()
[[ -f /usr/share/java/zookeeper.jar ]] || packages+=(zookeeper)
command -v java >/dev/null || packages+=(default-jre-headless)
command -v iptables >/dev/null || packages+=(iptables)
command -v ip >/dev/null || packages+=(iproute2)
if [[ "${1:-}" == --etcd ]]; then
    command -v etcd >/dev/null || packages+=(etcd-server)
    command -v etcdctl >/dev/null || packages+=(etcd-client)
fi

if ((${#packages[@]} == 0)); then
    exit 0
fi
if [[ $(id -u) != 0 ]]; then
    say "ERROR: missing ${packages[*]}; install them with: sudo apt-get install ${packages[*]}"
    exit 1
fi
say "apt-get install ${packages[*]}"
apt-get update -qq
# --no-install-recommends: no zookeeperd service, no desktop Java bits.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
[[ -f /usr/share/java/zookeeper.jar ]] || { say "ERROR: the zookeeper package did not install /usr/share/java/zookeeper.jar"; exit 1; }
say "installed ${packages[*]}"
