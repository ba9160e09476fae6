#!/usr/bin/env bash
# Two nodes on one PostgreSQL: durable binds per second with the load split
# across them, and how long a commit on one node takes to become routable on
# the other under that load.
#
# Builds the release binary, creates a schema of its own
# (bench_cluster_<pid>_<random>), starts two `maskline serve` processes on it
# (127.0.0.1, free ports), creates a tenant and imports NUMBERS numbers
# through node 1, checks that node 2 has heard of them (one bind on each node
# returns 201), warms up both for WARMUP, then runs two wrk processes at once
# for DURATION, one per node (bench/binds.lua, CONNS_PER_NODE connections,
# THREADS_PER_NODE threads each, parties never reused across them). Prints
# binds/s and latency per node and in total, the non-201 count, the CPU of
# each node, of all postgres processes and of both wrks, and each node's
# maskline_cluster_propagation_seconds over the measurement (commits of the
# other node -> applied in this node's route index; /metrics scraped before
# and after, quantiles interpolated in the server's buckets: 0.1, 0.25, 0.5,
# 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000 ms).
#
#   bench/cluster_binds.sh                          # 2 x 32 connections, 20 s
#   CONNS_PER_NODE=64 DURATION=10s bench/cluster_binds.sh
#
# Both nodes, both wrks and PostgreSQL share this machine's cores: the total
# is what one machine does, not what two would.
#
# With WAITS=1 (the default) a sampler also reads pg_stat_activity every
# 0.5 s during the measurement (one psql each time) and prints what the
# nodes' connections were doing or waiting for (wait_event_type/wait_event,
# or the statement when running): the writers of both nodes waiting on the
# events advisory lock shows as "Lock/advisory". WAITS=0 turns it off.
#
# Settings (environment): CONNS_PER_NODE (32), THREADS_PER_NODE (1),
# DURATION (20s), WARMUP (3s), NUMBERS (1000), WAITS (1), KEEP=1 keeps the work
# directory (logs, scrapes, wrk output); PGHOST/PGPORT/PGUSER/PGDATABASE as
# in bench/pg_lib.sh. MASKLINE_DATABASE_POOL_SIZE and
# MASKLINE_DATABASE_STATEMENT_TIMEOUT_MS pass through to the nodes.
#
# Needs wrk, curl, psql and python3. Only 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/pg_lib.sh
CONNS_PER_NODE=${CONNS_PER_NODE:-32}
THREADS_PER_NODE=${THREADS_PER_NODE:-1}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
NUMBERS=${NUMBERS:-1000}
WAITS=${WAITS:-1}

for tool in wrk curl psql python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done

echo "== building (cargo build --release -p maskline)"
cargo build --release -p maskline 2>&1 | tail -1

DATA=$(mktemp -d /tmp/maskline-bench-cluster.XXXXXX)
ADMIN="bench-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
SWITCH="bench-switch-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
SCHEMA=""
PID1=""
PID2=""
WRK1=""
WRK2=""
WAITS_PID=""

cleanup() {
  for p in "$WRK1" "$WRK2" "$WAITS_PID"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  stop "$PID1"
  stop "$PID2"
  pg_drop_schema "$SCHEMA"
  if [[ "${KEEP:-0}" == 1 ]]; then echo "== kept $DATA"; else rm -rf "$DATA"; fi
}
trap cleanup EXIT

start_two_nodes cluster

# Node 2 learns the tenant and its numbers from node 1's notifications:
# wait (10 s at most) until a bind there succeeds.
ok=""
for i in $(seq 1 100); do
  code=$(curl -sS -o "$DATA/one2.json" -w '%{http_code}' -X POST "$B2/v1/bindings" \
    -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \
    -d "{\"mode\":\"axb\",\"a\":\"+86133999$(printf '%05d' "$i")\",\"b\":\"+86133888$(printf '%05d' "$i")\",\"expires_in\":3600}")
  [[ "$code" == 201 ]] && { ok=1; break; }
  sleep 0.1
done
[[ -n "$ok" ]] || { echo "node2 never accepted a bind (last: $code $(cat "$DATA/one2.json"))" >&2; exit 1; }
post_json "$B1" /v1/bindings "$API_KEY" \
  '{"mode":"axb","a":"+8613799999999","b":"+8613699999999","expires_in":3600}' >/dev/null
echo "== one bind on each node: 201"

echo "== machine busy before the warm-up (anything): $(machine_busy 1) of $(nproc) cores"
echo "== warm-up: both nodes, wrk -c ${CONNS_PER_NODE} -t ${THREADS_PER_NODE} -d ${WARMUP} each"
wrk -c "$CONNS_PER_NODE" -t "$THREADS_PER_NODE" -d "$WARMUP" -s bench/binds.lua "$B1" -- "$API_KEY" 0 \
  >"$DATA/warm1.out" 2>&1 &
WRK1=$!
wrk -c "$CONNS_PER_NODE" -t "$THREADS_PER_NODE" -d "$WARMUP" -s bench/binds.lua "$B2" -- "$API_KEY" 20000000 \
  >"$DATA/warm2.out" 2>&1 &
WRK2=$!
wait "$WRK1" || true
wait "$WRK2" || true
WRK1=""
WRK2=""
grep -h '^RESULT' "$DATA/warm1.out" "$DATA/warm2.out" | sed 's/^/   warm-up /' || true
sleep 1

echo "== measuring: both nodes at once, wrk -c ${CONNS_PER_NODE} -t ${THREADS_PER_NODE} -d ${DURATION} --latency each"
BASE=$B1 scrape "$DATA/m1.before"
BASE=$B2 scrape "$DATA/m2.before"
pg_before=$(pg_cpu_ticks)
pg_proc_ticks >"$DATA/pg.before"
m_before=$(machine_ticks)
if [[ "$WAITS" == 1 ]]; then
  ( for _ in $(seq 1 $(( ${DURATION%s} * 2 ))); do
      pg -c "SELECT pid, CASE WHEN state = 'idle in transaction' THEN 'in transaction, waiting for the node, after '
                              WHEN wait_event IS NOT NULL THEN 'waiting ' || wait_event_type || '/' || wait_event || ' in '
                              ELSE 'running ' END
                         || split_part(ltrim(query), ' ', 1) || ' ' || split_part(ltrim(query), ' ', 2) || ' ' || split_part(ltrim(query), ' ', 3)
             FROM pg_stat_activity
             WHERE application_name = 'maskline' AND state NOT IN ('idle')" 2>/dev/null
      echo "--"
      sleep 0.5
    done ) >"$DATA/waits" &
  WAITS_PID=$!
fi
c1_before=$(cpu_ticks "$PID1")
c2_before=$(cpu_ticks "$PID2")
t0=$(date +%s.%N)
/usr/bin/time -f 'user=%U sys=%S wall=%e' -o "$DATA/wrk1.time" \
  wrk -c "$CONNS_PER_NODE" -t "$THREADS_PER_NODE" -d "$DURATION" --latency -s bench/binds.lua "$B1" \
  -- "$API_KEY" 40000000 >"$DATA/wrk1.out" 2>&1 &
WRK1=$!
/usr/bin/time -f 'user=%U sys=%S wall=%e' -o "$DATA/wrk2.time" \
  wrk -c "$CONNS_PER_NODE" -t "$THREADS_PER_NODE" -d "$DURATION" --latency -s bench/binds.lua "$B2" \
  -- "$API_KEY" 70000000 >"$DATA/wrk2.out" 2>&1 &
WRK2=$!
wait "$WRK1" || true
wait "$WRK2" || true
WRK1=""
WRK2=""
t1=$(date +%s.%N)
c1_after=$(cpu_ticks "$PID1")
c2_after=$(cpu_ticks "$PID2")
pg_after=$(pg_cpu_ticks)
pg_proc_ticks >"$DATA/pg.after"
m_after=$(machine_ticks)
if [[ -n "$WAITS_PID" ]]; then kill "$WAITS_PID" 2>/dev/null || true; wait "$WAITS_PID" 2>/dev/null || true; WAITS_PID=""; fi
sleep 1 # let the last notifications land
BASE=$B1 scrape "$DATA/m1.after"
BASE=$B2 scrape "$DATA/m2.after"

for n in 1 2; do
  echo "-- node${n}:"
  grep -E 'Latency|Req/Sec|requests in|Non-2xx|Socket' "$DATA/wrk${n}.out" | sed 's/^/   /'
  grep '^RESULT' "$DATA/wrk${n}.out" | sed 's/^/   /'
  grep 'non-201' "$DATA/wrk${n}.out" | head -3 | sed 's/^/   /' || true
done

python3 - "$DATA" "$t0" "$t1" "$TICK" "$c1_before" "$c1_after" "$c2_before" "$c2_after" "$pg_before" "$pg_after" "$m_before" "$m_after" <<'EOF'
import re, sys
data, t0, t1, tick = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
c1b, c1a, c2b, c2a, pb, pa, mb, ma = map(int, sys.argv[5:13])
wall = t1 - t0
res = []
for n in (1, 2):
    line = [l for l in open(f"{data}/wrk{n}.out") if l.startswith("RESULT")][0]
    res.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    t = open(f"{data}/wrk{n}.time").read().split()
    res[-1]["cpu"] = (float(t[0].split("=")[1]) + float(t[1].split("=")[1])) / float(t[2].split("=")[1])
total = sum(float(r["rps"]) for r in res)
print("== total: %.0f binds/s (node1 %s + node2 %s), non-201 %d"
      % (total, res[0]["rps"], res[1]["rps"], sum(int(r["non201"]) for r in res)))
print("== latency p50/p90/p99/max: node1 %s/%s/%s/%s ms, node2 %s/%s/%s/%s ms"
      % (tuple(res[0][k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))
         + tuple(res[1][k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))))
print("== CPU over %.1f s: node1 %.2f cores, node2 %.2f, postgres (all processes) %.2f, wrk1 %.2f, wrk2 %.2f"
      % (wall, (c1a - c1b) / tick / wall, (c2a - c2b) / tick / wall, (pa - pb) / tick / wall,
         res[0]["cpu"], res[1]["cpu"]))
ours = ((c1a - c1b) + (c2a - c2b) + (pa - pb)) / tick / wall + res[0]["cpu"] + res[1]["cpu"]
print("== machine: %.2f cores busy, of which not the nodes, postgres or the wrks: %.2f (kernel work for loopback counts there too)"
      % ((ma - mb) / tick / wall, (ma - mb) / tick / wall - ours))
EOF

echo "== postgres processes using >= 0.02 cores:"
pg_proc_cores "$DATA/pg.before" "$DATA/pg.after" "$(python3 -c "print($t1 - $t0)")"
if [[ "$WAITS" == 1 && -s "$DATA/waits" ]]; then
  echo "== nodes' connections not idle, $(grep -c '^--' "$DATA/waits") samples of pg_stat_activity (count: state):"
  grep -v '^--' "$DATA/waits" | cut -d'|' -f2 | sed 's/\$[0-9]*//g' | sort | uniq -c | sort -rn | head -12
fi
for n in 1 2; do
  other=$(( 3 - n ))
  echo "== node${n}: maskline_cluster_propagation_seconds (node${other}'s commits -> node${n}'s index) over the measurement:"
  python3 bench/cluster.py hist "$DATA/m${n}.before" "$DATA/m${n}.after" maskline_cluster_propagation_seconds | sed 's/^/   /'
  echo "   bindings applied from the other node: $(( $(awk '/^maskline_cluster_bindings_applied_total/ {s += $2} END {print s + 0}' "$DATA/m${n}.after") - $(awk '/^maskline_cluster_bindings_applied_total/ {s += $2} END {print s + 0}' "$DATA/m${n}.before") ))"
  echo "   feed interruptions: $(awk '/^maskline_cluster_interruptions_total/ {s += $2} END {print s + 0}' "$DATA/m${n}.after")"
done
echo "== rows: $(PG_SCHEMA=$SCHEMA pg -c "SELECT 'bindings=' || (SELECT count(*) FROM bindings) || ' events=' || (SELECT count(*) FROM events)")"
for n in 1 2; do
  if grep -qiE 'error|warn|panic' "$DATA/node${n}.log"; then
    echo "== node${n} log (warnings/errors, first 10):"
    grep -iE 'error|warn|panic' "$DATA/node${n}.log" | head -10 | cut -c1-300
  fi
done
if grep -q 'non201=0 ' "$DATA/wrk1.out" && grep -q 'non201=0 ' "$DATA/wrk2.out"; then
  echo "== every response was 201"
else
  echo "== NON-201 RESPONSES: see the RESULT lines above" >&2
  exit 1
fi
