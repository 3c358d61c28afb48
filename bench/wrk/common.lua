-- common.lua: shared by the wrk scripts in bench/wrk/ (loaded with dofile).
--
-- Every script POSTs pre-built protobuf bodies, picked at random per request,
-- with the KV Connect data path headers, checks EVERY response (HTTP status
-- 200 and a body that decodes to success), and prints one machine-readable
-- line at the end:
--
--   RESULT name=... requests=N seconds=S rps=R p50_us=... p99_us=...
--          mean_us=... non2xx=N bad=N connect_err=N read_err=N
--          write_err=N timeouts=N
--
-- "bad" counts responses that were not 200 or whose body failed the check;
-- bench/run.sh refuses any run where it, non2xx or a socket error is not 0.
--
-- Environment (read with os.getenv in every wrk thread):
--   BENCH_BODIES        file of request bodies, one hex-encoded body per
--                       line (bench/out/kvbody writes them)
--   DENOKV_TOKEN        bearer token for the data path
--   DENOKV_DATABASE_ID  databaseId from the metadata exchange
--   DENOKV_VERSION      KV Connect protocol version header (default 3)
--   BENCH_NAME          name printed in the RESULT line

local M = {}

local function hex_to_bin(h)
  return (h:gsub("%x%x", function(c) return string.char(tonumber(c, 16)) end))
end

local function to_hex(s, max)
  s = s or ""
  if max and #s > max then s = s:sub(1, max) end
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function M.load_bodies()
  local path = os.getenv("BENCH_BODIES")
  local bodies = {}
  if not path or path == "" then
    error("BENCH_BODIES is not set (a file of hex-encoded request bodies)")
  end
  local f, err = io.open(path, "r")
  if not f then error("cannot open BENCH_BODIES: " .. tostring(err)) end
  for line in f:lines() do
    line = line:gsub("%s+$", "")
    if #line > 0 then bodies[#bodies + 1] = hex_to_bin(line) end
  end
  f:close()
  if #bodies == 0 then error("no bodies in " .. path) end
  return bodies
end

function M.headers()
  return {
    ["Authorization"] = "Bearer " .. (os.getenv("DENOKV_TOKEN") or "none"),
    ["x-denokv-version"] = os.getenv("DENOKV_VERSION") or "3",
    ["x-denokv-database-id"] = os.getenv("DENOKV_DATABASE_ID") or
      "00000000-0000-0000-0000-000000000000",
    ["Content-Type"] = "application/x-protobuf",
    ["User-Agent"] = "denokv-fcgi-bench/wrk",
  }
end

-- Minimal protobuf reader ---------------------------------------------------

local function varint(s, pos)
  local result, mul = 0, 1
  while true do
    local b = s:byte(pos)
    if not b then return nil end
    pos = pos + 1
    result = result + (b % 128) * mul
    if b < 128 then return result, pos end
    mul = mul * 128
    if mul > 2 ^ 63 then return nil end
  end
end

-- Calls fn(field, value) for varint fields and fn(field, nil, first, last)
-- for length-delimited ones, over s[i..j]. False if malformed.
local function fields(s, i, j, fn)
  local pos = i
  while pos <= j do
    local key
    key, pos = varint(s, pos)
    if not key then return false end
    local field, wt = math.floor(key / 8), key % 8
    if wt == 0 then
      local v
      v, pos = varint(s, pos)
      if not v then return false end
      fn(field, v)
    elseif wt == 2 then
      local len
      len, pos = varint(s, pos)
      if not len or pos + len - 1 > j then return false end
      fn(field, nil, pos, pos + len - 1)
      pos = pos + len
    elseif wt == 1 then
      pos = pos + 8
    elseif wt == 5 then
      pos = pos + 4
    else
      return false
    end
  end
  return pos == j + 1
end

-- SnapshotReadOutput with exactly one range holding exactly one entry, not
-- read-disabled, status SR_SUCCESS (or unset, as proto3 allows).
function M.read_ok(body)
  if not body then return false end
  local ranges, entries, status, disabled = 0, 0, 0, 0
  local ok = fields(body, 1, #body, function(f, v, a, b)
    if f == 1 and a then
      ranges = ranges + 1
      if not fields(body, a, b, function(f2, _, a2)
        if f2 == 1 and a2 then entries = entries + 1 end
      end) then entries = -1000 end
    elseif f == 2 and v then
      disabled = v
    elseif f == 8 and v then
      status = v
    end
  end)
  return ok and ranges == 1 and entries == 1 and disabled == 0 and
    (status == 1 or status == 0)
end

-- AtomicWriteOutput with status AW_SUCCESS and a 10-byte versionstamp.
function M.write_ok(body)
  if not body then return false end
  local status, vslen = 0, -1
  local ok = fields(body, 1, #body, function(f, v, a, b)
    if f == 1 and v then status = v
    elseif f == 2 and a then vslen = b - a + 1 end
  end)
  return ok and status == 1 and vslen == 10
end

function M.text_ok(expected)
  return function(body) return body == expected end
end

-- Defines wrk's globals for one benchmark. opts.validate(body) -> bool.
function M.install(opts)
  local threads, counter = {}, 0

  function setup(thread)
    counter = counter + 1
    thread:set("thread_id", counter)
    table.insert(threads, thread)
  end

  function init(args)
    local seed = os.time() * 1000 + (thread_id or 0) * 7919
    math.randomseed(seed)
    local headers = M.headers()
    requests_pre = {}
    for i, body in ipairs(M.load_bodies()) do
      requests_pre[i] = wrk.format("POST", nil, headers, body)
    end
    n_pre = #requests_pre
    bad, bad_sample = 0, nil
  end

  function request()
    return requests_pre[math.random(n_pre)]
  end

  function response(status, headers, body)
    if status ~= 200 or not opts.validate(body) then
      bad = bad + 1
      if not bad_sample then
        bad_sample = "status " .. tostring(status) .. " body(hex) " ..
          to_hex(body, 96)
      end
    end
  end

  function done(summary, latency, requests)
    local nbad, sample = 0, nil
    for _, t in ipairs(threads) do
      nbad = nbad + (t:get("bad") or 0)
      sample = sample or t:get("bad_sample")
    end
    local e = summary.errors
    local secs = summary.duration / 1e6
    if sample then
      io.write("BAD_SAMPLE ", sample, "\n")
    end
    io.write(string.format(
      "RESULT name=%s requests=%d seconds=%.3f rps=%.1f p50_us=%d " ..
      "p99_us=%d mean_us=%.1f non2xx=%d bad=%d connect_err=%d " ..
      "read_err=%d write_err=%d timeouts=%d\n",
      os.getenv("BENCH_NAME") or opts.name, summary.requests, secs,
      summary.requests / secs, latency:percentile(50),
      latency:percentile(99), latency.mean, e.status, nbad, e.connect,
      e.read, e.write, e.timeout))
  end
end

return M
