-- wrk script: a browser with the live page open, polling GET /live twice a
-- second as the page does. Each connection waits 500 ms between requests, so
-- `-c N` is N viewers. Prints a BENCH line as post.lua does.

function delay()
  return 500
end

-- The BENCH line, from bench_line.lua next to this script.
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench_line.lua")
