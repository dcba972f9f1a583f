-- wrk script: etcd's durable put through its JSON gateway (POST /v3/kv/put),
-- the anchor of the cluster benchmark. Each request puts a new key with a
-- value about the size of a task; etcd answers once the put is committed by
-- a majority (each member fsyncs its WAL). Keys and values are base64, as
-- the gateway wants. Pass a name per wrk process (`-- NAME`) so that keys of
-- processes run side by side differ. Prints the same BENCH line as post.lua.

local counter = 0
local prefix = "etcd"

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    -- 3 bytes make 4 characters; 2 bytes 3 and "=", 1 byte 2 and "==".
    local chars = math.min(#s - i + 1, 3) + 1
    for j = 1, 4 do
      if j <= chars then
        local k = math.floor(n / 64 ^ (4 - j)) % 64
        out[#out + 1] = alphabet:sub(k + 1, k + 1)
      else
        out[#out + 1] = "="
      end
    end
  end
  return table.concat(out)
end

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + id)
  prefix = string.format("bench/%s%d-%08x/", args[1] and (args[1] .. "-") or "", id,
    math.random(0, 0x7fffffff))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local value = '{"titulo":"Tarea ' .. counter .. ' de wrk","descripcion":"benchmark task '
    .. prefix .. counter .. '","cliente":"wrk"}'
  local body = '{"key":"' .. base64(prefix .. counter) .. '","value":"' .. base64(value) .. '"}'
  return wrk.format(nil, nil, nil, body)
end

-- The BENCH line, from bench_line.lua next to this script.
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench_line.lua")
