-- wrk script for bench/sip_calls.sh: creates exactly TOTAL axb bindings with
-- parties no other binding uses, then stops.
--
-- wrk -t T -c C -d <upper bound> -s bench/sip_binds.lua URL -- <api key> <total> <T> <done prefix> [<offset>]
--   Thread t (1-based) creates bindings t, t + T, t + 2T, ... up to TOTAL:
--   binding i has A = +86138<i + OFFSET as 8 digits> and B = +86139<same>
--   (OFFSET, default 0, lets a second run use parties of its own).
--   Once its last binding is answered a thread creates the file
--   <done prefix><t> and stops (any request still to go out is a GET
--   /healthz). wrk itself runs until -d, or until SIGINT: send that once all
--   T files exist. Prints one RESULT line; non-201 responses are counted and
--   the first three per thread shown on stderr.

local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  key = args[1]
  total = tonumber(args[2])
  nthreads = tonumber(args[3]) -- wrk's -t: setup() ran in another Lua state
  nxt = tid
  quota = 0
  for i = tid, total, nthreads do
    quota = quota + 1
  end
  answered = 0
  created = 0
  non201 = 0
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
  health = wrk.format("GET", "/healthz")
  -- wrk calls request() once on the first thread's state to check the
  -- request parses, and never sends that one: give it a health check.
  verifying = tid == 1
  done_file = args[4] .. tid
  offset = tonumber(args[5] or "0")
  if quota == 0 then
    finish()
  end
end

function request()
  if verifying then
    verifying = false
    return health
  end
  if nxt > total then
    return health
  end
  local digits = string.format("%08d", nxt + offset)
  nxt = nxt + nthreads
  local body = '{"mode":"axb","a":"+86138' .. digits .. '","b":"+86139' .. digits .. '"}'
  return wrk.format("POST", "/v1/bindings", nil, body)
end

function response(status, headers, body)
  if status == 200 or answered >= quota then
    return -- a health check (a binding answers 201 or an error)
  end
  answered = answered + 1
  if status == 201 then
    created = created + 1
  else
    non201 = non201 + 1
    if non201 <= 3 then
      io.stderr:write("non-201 response " .. status .. ": " .. tostring(body) .. "\n")
    end
  end
  if answered >= quota then
    finish()
  end
end

function finish()
  io.open(done_file, "w"):close()
  wrk.thread:stop()
end

function done(summary, latency, requests)
  local created_all, non_all = 0, 0
  for _, t in ipairs(threads) do
    created_all = created_all + (t:get("created") or 0)
    non_all = non_all + (t:get("non201") or 0)
  end
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT created=%d non201=%d seconds=%.2f rps=%.0f socket_errors=%d\n",
    created_all, non_all, secs, created_all / secs,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout))
end
