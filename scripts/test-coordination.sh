#!/usr/bin/env bash
# The coordination crate's tests against a real ZooKeeper ensemble (the part
# of scripts/test that needs ZooKeeper), then the compose demo end to end.
#
#   scripts/test-coordination.sh            ZooKeeper tests, then scripts/e2e-zookeeper.sh
#   scripts/test-coordination.sh --no-e2e   the ZooKeeper tests only
#
# 1. scripts/install-zookeeper.sh installs Debian's zookeeper and a JRE when
#    they are missing (root, as CI runs); without them the tests fail loudly.
# 2. The tests marked `#[ignore = "needs ZooKeeper..."]` in coordination/tests
#    run one at a time (each starts its own three-server ensemble on free
#    loopback ports, in a temporary folder, and stops it), printing what each
#    checked. One of them cuts a contender off in a network namespace of its
#    own, which needs root.
# 3. scripts/e2e-zookeeper.sh: docker-compose.zookeeper.yml on the Docker
#    Engine (skipped loudly when Docker does not answer, as scripts/test does).
set -euo pipefail
cd "$(dirname "$0")/.."

e2e=true
[[ "${1:-}" == --no-e2e ]] && e2e=false

scripts/install-zookeeper.sh
started=$SECONDS
# --include-ignored: the ZooKeeper tests and the few that need nothing.
cargo test -p coordination --locked --tests -- --include-ignored --test-threads=1 --nocapture
echo "coordination: ZooKeeper tests took $((SECONDS - started)) s"
if $e2e; then
    scripts/e2e-zookeeper.sh
fi
