-- wrk script for bench/http_binds.sh: POST /v1/bindings (axb) with parties
-- that no other request uses, counting every response that is not 201.
--
-- wrk -s bench/binds.lua URL -- <api key> <party offset> [sequential|scattered]
--   Thread t's k-th request binds A = +86138<8 digits> and B = +86139<8 digits>
--   with n = offset + t * 10,000,000 + k, so runs with different offsets
--   (warm-up, measurement) never reuse a party. `sequential` (the default):
--   digits = n, so each thread's parties follow one another and land at the
--   end of every index on them. `scattered`: digits = n * 73,939,133 mod 10^8
--   (a bijection: the factor is prime to 10^8), parties spread over the whole
--   range as real callers' numbers are.

local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  key = args[1]
  offset = tonumber(args[2] or "0")
  scattered = args[3] == "scattered"
  base = offset + (tid - 1) * 10000000
  k = 0
  non201 = 0
  codes = ""
  seen = {}
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end

function request()
  k = k + 1
  local n = base + k
  if scattered then
    -- Exact in a double: n * factor < 2^53.
    n = (n * 73939133) % 100000000
  end
  local digits = string.format("%08d", n)
  local body = '{"mode":"axb","a":"+86138' .. digits .. '","b":"+86139' .. digits
    .. '","expires_in":3600}'
  return wrk.format(nil, "/v1/bindings", nil, body)
end

function response(status, headers, body)
  if status ~= 201 then
    non201 = non201 + 1
    seen[status] = (seen[status] or 0) + 1
    local parts = {}
    for s, n in pairs(seen) do
      table.insert(parts, s .. "=" .. n)
    end
    codes = table.concat(parts, ",")
    if non201 <= 3 then
      io.stderr:write("non-201 response " .. status .. ": " .. tostring(body) .. "\n")
    end
  end
end

function done(summary, latency, requests)
  local non, codes_all = 0, {}
  for _, t in ipairs(threads) do
    non = non + (t:get("non201") or 0)
    local c = t:get("codes")
    if c and c ~= "" then
      table.insert(codes_all, c)
    end
  end
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT requests=%d seconds=%.2f rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non201=%d codes=%s socket_errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    non, table.concat(codes_all, ";"),
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout))
end
