#!/usr/bin/env bash
# Cross-node propagation: how long after node 1 answers 201 to a bind the
# binding routes on node 2, two nodes on one PostgreSQL schema.
#
# Builds the release binary, creates a schema of its own
# (bench_prop_<pid>_<random>), starts two `maskline serve` processes on it
# (127.0.0.1, free ports, MASKLINE_SWITCH_KEY set), creates a tenant and
# imports NUMBERS numbers through node 1, then:
#
#  (1) idle: bench/cluster.py probe, SAMPLES bindings one after the other:
#      POST /v1/bindings to node 1; from its 201, POST /v1/route
#      {"caller": A, "called": X} to node 2 in a tight loop (one keep-alive
#      connection each) until the action is "connect". Reports p50/p90/p99/max
#      of (first connect read on node 2 - 201 read on node 1), and the same
#      from when that route request was sent (a lower bound).
#  (2) moderate load: bench/cluster.py pace sends RATE binds/s to node 1
#      (open loop, PACE_CONNS keep-alive connections) for SECS seconds, twice:
#      (2a) alone, (2b) with the same probe running meanwhile (GAP_MS between
#      samples, so they spread over the window; the probe's tight polling of
#      node 2 takes up to a core itself). Node 2's
#      maskline_cluster_propagation_seconds is scraped before and after each:
#      its quantiles over the window, interpolated in the server's buckets
#      (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50 ... ms; the commit time in a
#      notification is in whole milliseconds, taken before the commit).
#  (3) FULL=1 (off by default: it is heavy, and a probe that polls node 2 in a
#      tight loop takes CPU the load also wants): wrk -c FULL_CONNS on each
#      node for FULL_SECS (bench/binds.lua) with the probe running on the
#      side; reports the probe and node 2's histogram. bench/cluster_binds.sh
#      gives the histogram under full load without the probe.
#
#   bench/cluster_propagation.sh
#   SAMPLES=1000 RATE=2000 bench/cluster_propagation.sh
#   FULL=1 bench/cluster_propagation.sh
#
# Settings (environment): SAMPLES (500), RATE (1000), SECS (15), PACE_CONNS
# (8), GAP_MS (15, phase 2 only), NUMBERS (1000), FULL (0), FULL_CONNS (32),
# FULL_SECS (15), KEEP=1 keeps the work directory (logs, scrapes, per-sample
# files probe*.txt: "<i> <seen s> <sent s> <polls>");
# PGHOST/PGPORT/PGUSER/PGDATABASE as in bench/pg_lib.sh.
#
# Needs curl, psql, python3 (and wrk for FULL=1). Only 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/pg_lib.sh
SAMPLES=${SAMPLES:-500}
RATE=${RATE:-1000}
SECS=${SECS:-15}
PACE_CONNS=${PACE_CONNS:-8}
GAP_MS=${GAP_MS:-15}
NUMBERS=${NUMBERS:-1000}
FULL=${FULL:-0}
FULL_CONNS=${FULL_CONNS:-32}
FULL_SECS=${FULL_SECS:-15}

for tool in curl psql python3 $([[ "$FULL" == 1 ]] && echo wrk); do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done

echo "== building (cargo build --release -p maskline)"
cargo build --release -p maskline 2>&1 | tail -1

DATA=$(mktemp -d /tmp/maskline-bench-prop.XXXXXX)
ADMIN="bench-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
SWITCH="bench-switch-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
SCHEMA=""
PID1=""
PID2=""
BG=()

cleanup() {
  for p in "${BG[@]}"; do kill "$p" 2>/dev/null || true; done
  stop "$PID1"
  stop "$PID2"
  pg_drop_schema "$SCHEMA"
  if [[ "${KEEP:-0}" == 1 ]]; then echo "== kept $DATA"; else rm -rf "$DATA"; fi
}
trap cleanup EXIT

start_two_nodes prop

# Node 2 must know the tenant's numbers before a probe means anything: wait
# (10 s at most) until it routes a binding made on node 1.
ok=""
for i in $(seq 1 100); do
  x=$(post_json "$B1" /v1/bindings "$API_KEY" \
    "{\"mode\":\"axb\",\"a\":\"+86133999$(printf '%05d' "$i")\",\"b\":\"+86133888$(printf '%05d' "$i")\",\"expires_in\":3600}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["x"])')
  sleep 0.1
  act=$(post_json "$B2" /v1/route "$SWITCH" "{\"caller\":\"+86133999$(printf '%05d' "$i")\",\"called\":\"$x\"}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["action"])')
  [[ "$act" == connect ]] && { ok=1; break; }
done
[[ -n "$ok" ]] || { echo "node2 never routed a binding made on node1" >&2; tail -5 "$DATA/node2.log" >&2; exit 1; }
echo "== node2 routes node1's bindings"
echo "== machine busy now (anything): $(machine_busy 1) of $(nproc) cores"

hist2() { # before after
  python3 bench/cluster.py hist "$1" "$2" maskline_cluster_propagation_seconds | sed 's/^/   /'
}

echo
echo "== (1) idle cluster: ${SAMPLES} bindings, probe only"
BASE=$B2 scrape "$DATA/p1.before"
PROBE_OUT="$DATA/probe1.txt" timeout 300 \
  python3 bench/cluster.py probe "$B1" "$B2" "$API_KEY" "$SWITCH" "$SAMPLES" 0 0 5 | sed 's/^/   /'
sleep 0.5
BASE=$B2 scrape "$DATA/p1.after"
echo "   node2 histogram over (1) (the probe's own binds):"
hist2 "$DATA/p1.before" "$DATA/p1.after"

echo
for phase in 2a 2b; do
  echo
  if [[ "$phase" == 2a ]]; then
    echo "== (2a) moderate load: ${RATE} binds/s on node1 for ${SECS} s (${PACE_CONNS} connections), no probe"
  else
    echo "== (2b) moderate load: ${RATE} binds/s on node1 for ${SECS} s (${PACE_CONNS} connections), probe alongside (gap ${GAP_MS} ms)"
  fi
  off=$([[ "$phase" == 2a ]] && echo 0 || echo 50000000)
  BASE=$B2 scrape "$DATA/p$phase.before"
  pg_before=$(pg_cpu_ticks)
  c1_before=$(cpu_ticks "$PID1")
  c2_before=$(cpu_ticks "$PID2")
  t0=$(date +%s.%N)
  timeout $(( SECS + 60 )) python3 bench/cluster.py pace "$B1" "$API_KEY" "$RATE" "$SECS" "$PACE_CONNS" "$off" \
    >"$DATA/pace$phase.out" 2>&1 &
  PACE_PID=$!
  BG+=($PACE_PID)
  if [[ "$phase" == 2b ]]; then
    sleep 1
    PROBE_OUT="$DATA/probe2.txt" timeout $(( SECS + 60 )) \
      python3 bench/cluster.py probe "$B1" "$B2" "$API_KEY" "$SWITCH" "$SAMPLES" 1000000 "$GAP_MS" 5 \
      >"$DATA/probe2.out" 2>&1 || true
    probe_end=$(date +%s.%N)
  fi
  wait "$PACE_PID" || true
  t1=$(date +%s.%N)
  c1_after=$(cpu_ticks "$PID1")
  c2_after=$(cpu_ticks "$PID2")
  pg_after=$(pg_cpu_ticks)
  sleep 0.5
  BASE=$B2 scrape "$DATA/p$phase.after"
  echo "   pacer: $(cat "$DATA/pace$phase.out")"
  if [[ "$phase" == 2b ]]; then
    echo "   probe (ran $(python3 -c "print(f'{$probe_end - $t0 - 1:.1f}')") s of the ${SECS} s window):"
    sed 's/^/     /' "$DATA/probe2.out"
  fi
  echo "   node2 histogram over ($phase) (node1's commits):"
  hist2 "$DATA/p$phase.before" "$DATA/p$phase.after"
  echo "   CPU over $(python3 -c "print(f'{$t1 - $t0:.1f}')") s: node1 $(python3 -c "print(f'{($c1_after - $c1_before) / $TICK / ($t1 - $t0):.2f}')") cores, node2 $(python3 -c "print(f'{($c2_after - $c2_before) / $TICK / ($t1 - $t0):.2f}')"), postgres $(python3 -c "print(f'{($pg_after - $pg_before) / $TICK / ($t1 - $t0):.2f}')")"
  echo "   autovacuum/autoanalyze runs so far (bindings, events): $(PG_SCHEMA=$SCHEMA pg -c "SELECT string_agg(relname || ' ' || autovacuum_count || '/' || autoanalyze_count, ', ' ORDER BY relname) FROM pg_stat_user_tables WHERE schemaname = '$SCHEMA' AND relname IN ('bindings', 'events')")"
done

if [[ "$FULL" == 1 ]]; then
  echo
  echo "== (3) full load: wrk -c ${FULL_CONNS} -t 1 -d ${FULL_SECS}s on each node, probe alongside"
  BASE=$B2 scrape "$DATA/p3.before"
  wrk -c "$FULL_CONNS" -t 1 -d "${FULL_SECS}s" --latency -s bench/binds.lua "$B1" -- "$API_KEY" 40000000 \
    >"$DATA/wrk1.out" 2>&1 &
  W1=$!
  BG+=($W1)
  wrk -c "$FULL_CONNS" -t 1 -d "${FULL_SECS}s" --latency -s bench/binds.lua "$B2" -- "$API_KEY" 70000000 \
    >"$DATA/wrk2.out" 2>&1 &
  W2=$!
  BG+=($W2)
  sleep 2
  p3_t0=$(date +%s.%N)
  PROBE_OUT="$DATA/probe3.txt" timeout $(( FULL_SECS + 60 )) \
    python3 bench/cluster.py probe "$B1" "$B2" "$API_KEY" "$SWITCH" "$SAMPLES" 2000000 0 5 \
    >"$DATA/probe3.out" 2>&1 || true
  p3_t1=$(date +%s.%N)
  wait "$W1" || true
  wait "$W2" || true
  sleep 0.5
  BASE=$B2 scrape "$DATA/p3.after"
  echo "   wrk node1: $(grep '^RESULT' "$DATA/wrk1.out")"
  echo "   wrk node2: $(grep '^RESULT' "$DATA/wrk2.out")"
  echo "   probe: started 2 s into the load, ran $(python3 -c "print(f'{$p3_t1 - $p3_t0:.1f}')") s (the load lasted ${FULL_SECS} s: samples past $(( FULL_SECS - 2 )) s were taken after it):"
  sed 's/^/     /' "$DATA/probe3.out"
  echo "   node2 histogram over (3):"
  hist2 "$DATA/p3.before" "$DATA/p3.after"
fi

for n in 1 2; do
  if grep -qiE 'error|warn|panic' "$DATA/node${n}.log"; then
    echo "== node${n} log (warnings/errors, first 10):"
    grep -iE 'error|warn|panic' "$DATA/node${n}.log" | head -10 | cut -c1-300
  fi
done
