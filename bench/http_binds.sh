#!/usr/bin/env bash
# Figure 2 of BENCHMARKS.md: durable binds per second over HTTP.
#
# Builds the release binary, starts `maskline serve` on 127.0.0.1 with a
# fresh data directory, creates a tenant, imports NUMBERS virtual numbers,
# then drives POST /v1/bindings (axb, parties never reused) with wrk from a
# separate process: CONNS connections, THREADS threads, DURATION. Prints
# requests/s, p50/p99, the non-201 count and the CPU the server and wrk used.
# The server is stopped (SIGTERM) and the data directory removed at the end.
#
#   bench/http_binds.sh                       # 64 connections, 2 threads, 20 s
#   CONNS=64 THREADS=1 DURATION=20s bench/http_binds.sh
#
#   PERF=1 bench/http_binds.sh                # also samples the server with
#                                             # perf (flat profile, top symbols)
#   PERF=dwarf bench/http_binds.sh            # same with call graphs (callers)
#
#   PG=1 bench/http_binds.sh                  # the server on PostgreSQL instead
#                                             # of the embedded SQLite store
#   SERIES=1 bench/http_binds.sh              # also binds/s second by second
#                                             # (the server's counter, scraped)
#   MASKLINE_BIN=/path/maskline bench/http_binds.sh   # that binary, unbuilt
#   PARTIES=scattered bench/http_binds.sh     # party numbers spread over their
#                                             # range as real ones are (default
#                                             # sequential: each thread's follow
#                                             # one another; see bench/binds.lua)
#
# PG=1: a schema of its own (bench_binds_<pid>_<random>) in the database that
# PGHOST/PGPORT/PGUSER/PGDATABASE name (127.0.0.1, 5432, postgres, test),
# passed to the server as MASKLINE_DATABASE_URL with search_path; dropped at
# the end. It also prints the CPU of all postgres processes over the
# measurement (the whole cluster: other clients' work counts too) and the
# settings durability depends on. MASKLINE_DATABASE_POOL_SIZE and
# MASKLINE_DATABASE_STATEMENT_TIMEOUT_MS pass through to the server.
#
# Needs wrk (apt-get install -y wrk), curl and python3 (PG=1: psql). Only
# 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PARTIES=${PARTIES:-sequential}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
NUMBERS=${NUMBERS:-1000}
PG=${PG:-0}
SERIES=${SERIES:-0}

[[ "$PG" == 1 ]] && . bench/pg_lib.sh
for tool in wrk curl python3 $([[ "$PG" == 1 ]] && echo psql); do
  command -v "$tool" >/dev/null || { echo "needs $tool (wrk: apt-get install -y wrk)" >&2; exit 1; }
done

# MASKLINE_BIN: a binary built elsewhere (bench/sealing.sh runs an older
# build beside this one); unset, the release binary is built here.
if [[ -z "${MASKLINE_BIN:-}" ]]; then
  echo "== building (cargo build --release -p maskline)"
  cargo build --release -p maskline 2>&1 | tail -1
  MASKLINE_BIN=target/release/maskline
fi

HTTP_PORT=$(free_port)
SIP_PORT=$(free_port)
BASE="http://127.0.0.1:${HTTP_PORT}"
DATA=$(mktemp -d /tmp/maskline-bench.XXXXXX)
ADMIN="bench-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
SERVER_PID=""
SCHEMA=""
SERIES_PID=""

cleanup() {
  [[ -n "$SERIES_PID" ]] && kill "$SERIES_PID" 2>/dev/null || true
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  [[ -n "$SCHEMA" ]] && pg_drop_schema "$SCHEMA"
  rm -rf "$DATA"
}
trap cleanup EXIT

DB_URL=""
if [[ "$PG" == 1 ]]; then
  SCHEMA=$(pg_schema_name binds)
  pg_create_schema "$SCHEMA"
  DB_URL=$(pg_url "$SCHEMA")
  echo "== PostgreSQL: schema ${SCHEMA}; $(pg_settings)"
  echo "== other client sessions on the cluster now: $(pg_other_sessions)"
fi

echo "== starting maskline serve on 127.0.0.1:${HTTP_PORT} (data ${DATA}${SCHEMA:+, PostgreSQL schema $SCHEMA})"
if [[ -n "$DB_URL" ]]; then export MASKLINE_DATABASE_URL="$DB_URL"; fi
MASKLINE_DATA_DIR="$DATA/db" \
MASKLINE_HTTP_LISTEN="127.0.0.1:${HTTP_PORT}" \
MASKLINE_SIP_LISTEN="127.0.0.1:${SIP_PORT}" \
MASKLINE_ADMIN_KEY="$ADMIN" \
MASKLINE_RATE_LIMIT=0 \
MASKLINE_LOG="${MASKLINE_LOG:-warn}" \
  "$MASKLINE_BIN" serve >"$DATA/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 300); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited:" >&2; cat "$DATA/server.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$BASE/healthz" >/dev/null || { echo "server not healthy after 30 s" >&2; exit 1; }

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

API_KEY=$(curl -fsS -X POST "$BASE/v1/tenants" \
  -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"name":"bench"}' | json '["api_key"]')

# +8657100000001 ...: Hangzhou fixed lines, 500 per request.
python3 - "$NUMBERS" >"$DATA/numbers.txt" <<'EOF'
import json, sys
n = int(sys.argv[1])
for start in range(1, n + 1, 500):
    nums = [{"number": "+86571%08d" % i} for i in range(start, min(start + 500, n + 1))]
    print(json.dumps({"numbers": nums}))
EOF
while read -r body; do
  code=$(curl -sS -o "$DATA/import.json" -w '%{http_code}' -X POST "$BASE/v1/numbers" \
    -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' -d "$body")
  [[ "$code" =~ ^20[01]$ ]] || { echo "number import failed ($code):" >&2; cat "$DATA/import.json" >&2; exit 1; }
done <"$DATA/numbers.txt"
echo "== tenant created, ${NUMBERS} numbers imported"

# One binding by hand: the request the load repeats must succeed.
code=$(curl -sS -o "$DATA/one.json" -w '%{http_code}' -X POST "$BASE/v1/bindings" \
  -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \
  -d '{"mode":"axb","a":"+8613799999999","b":"+8613699999999","expires_in":3600}')
[[ "$code" == 201 ]] || { echo "sample binding failed ($code):" >&2; cat "$DATA/one.json" >&2; exit 1; }

# "<tid> <comm> <utime+stime>" for each thread of the server.
thread_ticks() {
  for t in /proc/"$1"/task/*; do
    printf '%s %s %s\n' "${t##*/}" "$(tr ' ' '_' <"$t/comm")" \
      "$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
  done
}
# Threads that used at least 0.02 cores between two thread_ticks snapshots.
thread_cores() {
  python3 -c '
import sys
before = {l.split()[0]: int(l.split()[2]) for l in open(sys.argv[1]) if l.strip()}
tick, wall = int(sys.argv[3]), float(sys.argv[4])
rows = []
for l in open(sys.argv[2]):
    tid, name, ticks = l.split()
    cores = (int(ticks) - before.get(tid, 0)) / tick / wall
    if cores >= 0.02:
        rows.append((cores, name + "[" + tid + "]"))
for cores, name in sorted(rows, reverse=True):
    print("   %s: %.2f" % (name, cores))
' "$@"
}

[[ "$PG" == 1 ]] && echo "== machine busy before the run (anything): $(machine_busy 1) of $(nproc) cores"
echo "== warm-up: wrk -c ${CONNS} -t ${THREADS} -d ${WARMUP}"
wrk -c "$CONNS" -t "$THREADS" -d "$WARMUP" -s bench/binds.lua "$BASE" -- "$API_KEY" 0 "$PARTIES" \
  | grep '^RESULT' || true

echo "== measuring: wrk -c ${CONNS} -t ${THREADS} -d ${DURATION} --latency (parties ${PARTIES})"
PERF_PID=""
case "${PERF:-0}" in
  1) perf record -F 999 -p "$SERVER_PID" -o "$DATA/perf.data" -- sleep "${DURATION%s}" \
       >"$DATA/perf.log" 2>&1 &
     PERF_PID=$! ;;
  dwarf) perf record -F 99 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$DATA/perf.data" \
       -- sleep "${DURATION%s}" >"$DATA/perf.log" 2>&1 &
     PERF_PID=$! ;;
esac
if [[ "$SERIES" == 1 ]]; then
  # Every second, for as long as wrk runs (bounded): the server's counter.
  ( for _ in $(seq 1 $(( ${DURATION%s} + 5 ))); do
      printf '%s %s\n' "$(date +%s.%N)" \
        "$(curl -fsS "$BASE/metrics" | awk '/^maskline_bindings_created_total/ {s += $2} END {print s + 0}')"
      sleep 1
    done ) >"$DATA/series" 2>/dev/null &
  SERIES_PID=$!
fi
pg_before=0
if [[ "$PG" == 1 ]]; then pg_before=$(pg_cpu_ticks); pg_proc_ticks >"$DATA/pg.before"; m_before=$(machine_ticks); fi
# "<commits> <seconds in commits> <writes committed>": the store writer's
# histograms, so the group commits of the measurement alone can be told.
commit_stats() {
  curl -fsS "$BASE/metrics" | awk '
    /^maskline_store_commit_seconds_count/ {c = $2}
    /^maskline_store_commit_seconds_sum/ {s = $2}
    /^maskline_store_commit_writes_sum/ {w = $2}
    END {print c + 0, s + 0, w + 0}'
}
commits_before=$(commit_stats)
before=$(cpu_ticks "$SERVER_PID")
thread_ticks "$SERVER_PID" >"$DATA/threads.before"
t0=$(date +%s.%N)
/usr/bin/time -f 'WRK_CPU user=%U sys=%S wall=%e' -o "$DATA/wrk.time" \
  wrk -c "$CONNS" -t "$THREADS" -d "$DURATION" --latency -s bench/binds.lua "$BASE" \
  -- "$API_KEY" 50000000 "$PARTIES" | tee "$DATA/wrk.out"
t1=$(date +%s.%N)
after=$(cpu_ticks "$SERVER_PID")
thread_ticks "$SERVER_PID" >"$DATA/threads.after"
pg_after=0
if [[ "$PG" == 1 ]]; then pg_after=$(pg_cpu_ticks); pg_proc_ticks >"$DATA/pg.after"; m_after=$(machine_ticks); fi
if [[ -n "$SERIES_PID" ]]; then
  kill "$SERIES_PID" 2>/dev/null || true
  wait "$SERIES_PID" 2>/dev/null || true
  SERIES_PID=""
fi

if [[ -n "$PERF_PID" ]]; then
  wait "$PERF_PID" || true
  if [[ "$PERF" == dwarf ]]; then
    echo "== perf: inclusive time (children) by symbol"
    perf report -i "$DATA/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
      | grep -v "^#" | grep -v "^$" | cut -c1-160 | head -150
    perf report -i "$DATA/perf.data" --no-children --sort symbol --stdio -g caller,0.5,callee \
      2>/dev/null | cut -c1-160 > "${PERF_REPORT:-/tmp/maskline-binds-perf.txt}"
    echo "== perf: callers of each symbol in ${PERF_REPORT:-/tmp/maskline-binds-perf.txt}"
  else
    echo "== perf: server's top symbols (self time)"
    perf report -i "$DATA/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | cut -c1-150 | head -40
  fi
  echo "== perf: by shared object"
  perf report -i "$DATA/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | cut -c1-100 | head -8
fi
server_cpu=$(python3 -c "print(f'{($after - $before) / $TICK:.1f}')")
wall=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
echo "== server CPU: ${server_cpu} s over ${wall} s wall = $(python3 -c "print(f'{($after - $before) / $TICK / ($t1 - $t0):.2f}')") cores"
echo "== server threads using >= 0.02 cores:"
thread_cores "$DATA/threads.before" "$DATA/threads.after" "$TICK" "$wall"
echo "== $(cat "$DATA/wrk.time") (wrk shares the machine's $(nproc) cores with the server)"
if [[ "$PG" == 1 ]]; then
  echo "== PostgreSQL CPU (all postgres processes): $(python3 -c "print(f'{($pg_after - $pg_before) / $TICK:.1f} s = {($pg_after - $pg_before) / $TICK / ($t1 - $t0):.2f} cores')")"
  wrk_cpu=$(awk '{split($2, u, "="); split($3, s, "="); print u[2] + s[2]}' "$DATA/wrk.time")
  echo "== machine: $(python3 -c "print(f'{($m_after - $m_before) / $TICK / ($t1 - $t0):.2f}')") cores busy, of which not the server, postgres or wrk: $(python3 -c "print(f'{(($m_after - $m_before) - ($after - $before) - ($pg_after - $pg_before)) / $TICK / ($t1 - $t0) - $wrk_cpu / ($t1 - $t0):.2f}')") (kernel work for loopback counts there too)"
  echo "== postgres processes using >= 0.02 cores:"
  pg_proc_cores "$DATA/pg.before" "$DATA/pg.after" "$wall"
  echo "== PostgreSQL rows: $(PG_SCHEMA=$SCHEMA pg -c "SELECT 'bindings=' || (SELECT count(*) FROM bindings) || ' slots=' || (SELECT count(*) FROM slots) || ' events=' || (SELECT count(*) FROM events)")"
fi
if [[ "$SERIES" == 1 && -s "$DATA/series" ]]; then
  echo "== binds/s, second by second (server counter; warm-up included in the first value's base):"
  awk 'NR > 1 && $1 > pt { printf "%.0f ", ($2 - pv) / ($1 - pt) } { pt = $1; pv = $2 } END { print "" }' "$DATA/series"
fi
echo "== server RSS: $(awk '/VmRSS/ {print $2, $3}' "/proc/$SERVER_PID/status")"
python3 -c '
import sys
c0, s0, w0 = map(float, sys.argv[1].split()); c1, s1, w1 = map(float, sys.argv[2].split())
wall = float(sys.argv[3]); n = c1 - c0
if n > 0:
    print("== group commits: %.0f/s, %.1f writes each, %.2f ms each, writer in a commit %.0f%% of the time"
          % (n / wall, (w1 - w0) / n, (s1 - s0) / n * 1e3, (s1 - s0) / wall * 100))
' "$commits_before" "$(commit_stats)" "$wall"
echo "== server metrics (bindings created, pool exhausted):"
curl -fsS "$BASE/metrics" | grep -E '^maskline_(bindings_created_total|pool_exhausted_total)' || true
if grep -q 'non201=0 ' "$DATA/wrk.out"; then
  echo "== every response was 201"
else
  echo "== NON-201 RESPONSES: see the RESULT line above; server log tail:" >&2
  tail -5 "$DATA/server.log" >&2
  exit 1
fi
