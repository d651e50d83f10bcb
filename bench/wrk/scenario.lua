-- One Conduit scenario for wrk, chosen by the SCENARIO environment variable.
--
-- Data comes from the files the driver wrote while seeding (BENCH_DATA: a
-- directory with tokens.txt, slugs.txt, logins.txt, or kv_keys.txt for the
-- key-value scenarios), so every request picks a random seeded user, article,
-- login or key, like many different clients would.
-- Statuses are counted per thread and summed in done(), which writes one JSON
-- object to BENCH_OUT: wrk's own summary treats every non-2xx/3xx alike, and
-- the report must tell nginx's 429 and the host's 503 apart from failures.

local scenario = os.getenv("SCENARIO") or "tags"
local data_dir = os.getenv("BENCH_DATA") or "."
local out_path = os.getenv("BENCH_OUT") or "wrk-result.json"

local function read_lines(name)
  local lines = {}
  local file = io.open(data_dir .. "/" .. name, "r")
  if file == nil then
    return lines
  end
  for line in file:lines() do
    if line ~= "" then
      lines[#lines + 1] = line
    end
  end
  file:close()
  return lines
end

local tokens = read_lines("tokens.txt")
local slugs = read_lines("slugs.txt")
local logins = read_lines("logins.txt")
local kv_keys = read_lines("kv_keys.txt")

-- The key-value scenarios: a store's route (BENCH_PATH, e.g. /kv/default/)
-- and, for kv_set, a value of BENCH_KV_VALUE_BYTES bytes, the size the keys
-- were seeded with.
local kv_prefix = os.getenv("BENCH_PATH") or "/kv/default/"
local kv_value = string.rep("v", tonumber(os.getenv("BENCH_KV_VALUE_BYTES") or "128"))

local threads = {}
local thread_number = 0

function setup(thread)
  thread_number = thread_number + 1
  thread:set("thread_id", thread_number)
  threads[#threads + 1] = thread
end

-- Per-thread state (each wrk thread has its own Lua interpreter).
local counter = 0

function init(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0))
  ok_2xx, status_429, status_503, other_status = 0, 0, 0, 0
end

local function pick(list)
  return list[math.random(#list)]
end

local function auth_headers()
  return {
    ["Authorization"] = "Token " .. pick(tokens),
    ["Content-Type"] = "application/json",
  }
end

local json_headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  if scenario == "list_anon" then
    return wrk.format("GET", "/api/articles")
  elseif scenario == "list_auth" then
    return wrk.format("GET", "/api/articles", auth_headers())
  elseif scenario == "article" then
    return wrk.format("GET", "/api/articles/" .. pick(slugs))
  elseif scenario == "feed" then
    return wrk.format("GET", "/api/articles/feed", auth_headers())
  elseif scenario == "tags" then
    return wrk.format("GET", "/api/tags")
  elseif scenario == "create_article" then
    local title = string.format("Load article %d %d %d", thread_id or 0, counter, math.random(1e9))
    local body = string.format(
      '{"article":{"title":"%s","description":"Written by the load test",' ..
      '"body":"A body long enough to look like a short post, written while measuring throughput.",' ..
      '"tagList":["bench","load"]}}', title)
    return wrk.format("POST", "/api/articles", auth_headers(), body)
  elseif scenario == "favorite" then
    return wrk.format("POST", "/api/articles/" .. pick(slugs) .. "/favorite", auth_headers(), "")
  elseif scenario == "comment" then
    local body = string.format('{"comment":{"body":"Load comment %d %d"}}', thread_id or 0, counter)
    return wrk.format("POST", "/api/articles/" .. pick(slugs) .. "/comments", auth_headers(), body)
  elseif scenario == "login" then
    local email, password = string.match(pick(logins), "^([^\t]+)\t(.+)$")
    local body = string.format('{"user":{"email":"%s","password":"%s"}}', email, password)
    return wrk.format("POST", "/api/users/login", json_headers, body)
  elseif scenario == "kv_get" then
    return wrk.format("GET", kv_prefix .. pick(kv_keys))
  elseif scenario == "kv_set" then
    -- Overwrites a seeded key, so the store holds the same keys throughout.
    return wrk.format("PUT", kv_prefix .. pick(kv_keys), nil, kv_value)
  elseif scenario == "hello" then
    return wrk.format("GET", os.getenv("BENCH_PATH") or "/hello")
  end
  error("unknown SCENARIO " .. scenario)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok_2xx = ok_2xx + 1
  elseif status == 429 then
    status_429 = status_429 + 1
  elseif status == 503 then
    status_503 = status_503 + 1
  else
    other_status = other_status + 1
  end
end

function done(summary, latency, requests)
  local totals = { ok_2xx = 0, status_429 = 0, status_503 = 0, other_status = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
  end
  local e = summary.errors
  local out = io.open(out_path, "w")
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
    '"statuses":{"2xx":%d,"429":%d,"503":%d,"other":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    totals.ok_2xx, totals.status_429, totals.status_503, totals.other_status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
  out:close()
end
