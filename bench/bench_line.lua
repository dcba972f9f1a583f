-- What every wrk script of the benchmark prints at the end, the one line
-- bench/run reads:
--   BENCH requests=N seconds=S rps=R non2xx=N errors=N p50_ms=X p99_ms=Y
-- Loaded by the scripts next to it (post.lua, get.lua, put.lua, viewer.lua)
-- as their `done`.

return function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d seconds=%.3f rps=%.1f non2xx=%d errors=%d p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
