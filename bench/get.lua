-- wrk script: GET of the URL given to wrk, with the BENCH line the harness
-- reads at the end:
--   BENCH requests=N seconds=S rps=R non2xx=N errors=N p50_ms=X p99_ms=Y

-- The BENCH line, from bench_line.lua next to this script.
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench_line.lua")
