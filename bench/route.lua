-- wrk script for bench/route_backends.sh: POST /v1/route (switch key) for
-- random known bindings of the store bench/index_load.sh fills, counting
-- every response that is not a 200 "connect".
--
-- wrk -s bench/route.lua URL -- <switch key> <bindings> <per number>
--   Each request picks i in [0, bindings) at random and asks for
--   caller = A of binding i = +86138<i, 8 digits>, called = its X =
--   +86571<i / per number + 1, 8 digits>: a hit, the answer is "connect".

local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  key = args[1]
  n = tonumber(args[2])
  per = tonumber(args[3])
  math.randomseed(os.time() * 100 + tid)
  bad = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end

function request()
  local i = math.random(0, n - 1)
  local body = string.format('{"caller":"+86138%08d","called":"+86571%08d"}', i, math.floor(i / per) + 1)
  return wrk.format(nil, "/v1/route", nil, body)
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"action":"connect"', 1, true) then
    bad = bad + 1
    if bad <= 3 then
      io.stderr:write("unexpected response " .. status .. ": " .. tostring(body) .. "\n")
    end
  end
end

function done(summary, latency, requests)
  local bad_all = 0
  for _, t in ipairs(threads) do
    bad_all = bad_all + (t:get("bad") or 0)
  end
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT requests=%d seconds=%.2f rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f not_connect=%d socket_errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, bad_all,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout))
end
