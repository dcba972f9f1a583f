#!/bin/bash
# One contender of the demo's election (docker-compose.zookeeper.yml):
#
#   contender.sh ID
#
# runs `coordination elect demo ID`, shows its `leader ID` / `follower ID`
# lines as they come, and notes each one, with the time, in /journal/ID.log
# for the verdict. /journal/ID.alive holds the time of its last heartbeat
# (every 0.2 s), so that the verdict knows until when a contender that was
# killed (`docker kill`) could still have been acting as the leader.
# The journal's lines: "<unix time> leader ID", "<unix time> follower ID",
# "<unix time> died" (written when a killed contender is started again).
set -uo pipefail
id="$1"
journal="/journal/$id.log"

now() { date +%s.%N; }

# Started again after a `docker kill`: the last heartbeat of the killed run
# is when that one stopped.
if [[ -f "/journal/$id.alive" ]]; then
    echo "$(cat "/journal/$id.alive") died" >>"$journal"
fi

(
    while :; do
        now >"/journal/$id.alive.tmp" && mv "/journal/$id.alive.tmp" "/journal/$id.alive"
        sleep 0.2
    done
) &
heartbeat=$!

fifo="$(mktemp -u)"
mkfifo "$fifo"
coordination elect demo "$id" >"$fifo" &
elect=$!
# `docker stop` sends SIGTERM to this script (PID 1): pass it on, so that the
# contender resigns (and says `follower ID`) before the container stops.
trap 'kill -TERM "$elect" 2>/dev/null' TERM INT

while IFS= read -r line; do
    echo "$(now) $line" >>"$journal"
    echo "$line"
done <"$fifo"
wait "$elect"
status=$?
kill "$heartbeat" 2>/dev/null
rm -f "$fifo"
exit "$status"
