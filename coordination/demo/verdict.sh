#!/bin/bash
# The demo's verdict (docker-compose.zookeeper.yml), once the workers are done:
#
#   1. the shared counter holds exactly what the workers added: the total is
#      the sum of the workers' own counts, each of them ADDS per run of the
#      demo (`coordination counter demo`);
#   2. at every moment at most one contender said it was the leader: from the
#      contenders' journals (/journal/ID.log), a term runs from a `leader ID`
#      line to the next `follower ID` line, or, for a contender that was
#      killed, to its last heartbeat; no two terms may overlap;
#   3. somebody leads now (`coordination leader demo`).
#
# Exit 0 when all three hold. Run it again at any time (after a `docker kill`,
# say) with `docker compose -f docker-compose.zookeeper.yml run --rm --no-deps verdict`.
set -uo pipefail
workers=(${WORKERS:-w1 w2 w3})
adds="${ADDS:-1000}"
failed=0

say() { echo "verdict: $*"; }

# 1. The counter.
if ! tally="$(coordination counter demo)"; then
    say "FAIL: cannot read the counter"
    exit 1
fi
total="$(awk '$1 == "total" { print $2 }' <<<"$tally")"
expected=0
runs=""
for worker in "${workers[@]}"; do
    got="$(awk -v w="$worker" '$1 == w { print $2 }' <<<"$tally")"
    got="${got:-0}"
    expected=$((expected + got))
    # Each run of the demo adds ADDS per worker (a second `up` adds as many again).
    if ((got == 0 || got % adds != 0)) || [[ -n "$runs" && $((got / adds)) != "$runs" ]]; then
        say "FAIL: worker $worker's count is $got, not the same multiple of $adds as the others'"
        failed=1
    fi
    runs="${runs:-$((got / adds))}"
done
if [[ "$total" == "$expected" ]] && ((failed == 0)); then
    say "OK: the counter is $total = ${#workers[@]} workers x $((expected / ${#workers[@]})), the sum of their additions, each made under the mutex"
else
    say "FAIL: the counter is ${total:-?}; the workers' own counts add up to $expected"
    failed=1
fi

# 2. The terms of office.
now="$(date +%s.%N)"
shopt -s nullglob
journals=(/journal/*.log)
if ((${#journals[@]} == 0)); then
    say "FAIL: no contender wrote a journal in /journal"
    failed=1
fi
terms="$(
    for journal in "${journals[@]}"; do
        id="$(basename "$journal" .log)"
        alive="$(cat "/journal/$id.alive" 2>/dev/null || echo 0)"
        awk -v id="$id" -v alive="$alive" -v now="$now" '
            $2 == "leader" { from = $1; open = 1 }
            $2 == "follower" && open { print from, $1, id, "stepped down"; open = 0 }
            $2 == "died" && open { print from, $1, id, "was killed"; open = 0 }
            END {
                if (open) {
                    # Still leading, or killed while leading: its heartbeat says which.
                    if (now - alive < 2) print from, now, id, "leads now"
                    else print from, alive, id, "was killed"
                }
            }' "$journal"
    done | sort -n
)"
if [[ -z "$terms" ]]; then
    say "FAIL: no contender ever said it was the leader"
    failed=1
else
    overlaps="$(awk '
        NR > 1 && $1 < until { printf "%s became leader %.3f s before %s stopped\n", $3, until - $1, who }
        $2 > until { until = $2; who = $3 }' <<<"$terms")"
    if [[ -n "$overlaps" ]]; then
        say "FAIL: two leaders at once:"
        sed 's/^/verdict:   /' <<<"$overlaps"
        failed=1
    else
        say "OK: $(wc -l <<<"$terms") term(s) of office, never two leaders at once:"
        awk '{ why = $4; for (i = 5; i <= NF; i++) why = why " " $i
               printf "verdict:   %s led for %.1f s (%s)\n", $3, $2 - $1, why }' <<<"$terms"
    fi
fi

# 3. Somebody leads now.
if leader="$(coordination leader demo 2>/dev/null)"; then
    say "OK: $leader leads now"
else
    say "FAIL: nobody leads now"
    failed=1
fi

if ((failed)); then
    say "FAILED"
    exit 1
fi
say "PASSED"
