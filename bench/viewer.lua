-- wrk script: a browser with the live page open, polling GET /live twice a
-- second as the page does. Each connection waits 500 ms between requests, so
-- `-c N` is N viewers. Prints a BENCH line as post.lua does.

function delay()
  return 500
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d seconds=%.3f rps=%.1f non2xx=%d errors=%d p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
