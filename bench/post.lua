-- wrk script: one new task per request, as a real client sends it.
--
-- Each request is a POST /tareas with a JSON task and its own
-- Idempotency-Key (what clientemulator sends, so the server does the same
-- work as in a real run). At the end it prints one line the harness reads:
--   BENCH requests=N seconds=S rps=R non2xx=N errors=N p50_ms=X p99_ms=Y

local counter = 0
local prefix = "wrk"
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  -- One prefix per thread and run: keys never repeat across threads or runs;
  -- wrk processes run side by side pass a name of their own (`-- NAME`).
  math.randomseed(os.time() * 1000 + id)
  prefix = string.format("wrk-%s%d-%08x", args[1] and (args[1] .. "-") or "", id,
    math.random(0, 0x7fffffff))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = '{"titulo":"Tarea ' .. counter .. ' de wrk","descripcion":"benchmark task '
    .. prefix .. '-' .. counter .. '","cliente":"wrk"}'
  wrk.headers["Idempotency-Key"] = prefix .. "-" .. counter
  return wrk.format(nil, nil, nil, body)
end

-- The BENCH line, from bench_line.lua next to this script.
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench_line.lua")
