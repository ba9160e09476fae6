#!/usr/bin/env bash
# Start-up with a large store: how long `maskline serve` takes to load
# BINDINGS live bindings into its route index, and the memory it then holds,
# on PostgreSQL and (BACKENDS=pg,sqlite) on the embedded SQLite store.
#
# The store is filled directly (SQL / Python's sqlite3), not through the API:
# one tenant, NUMBERS numbers (+8657100000001 ...), PER_NUMBER axb bindings on
# each, every party distinct (A = +86138<8 digits>, B = +86139<8 digits>),
# created now and expiring in a day; ids time-ordered like the server's UUID
# v7s, so the table is in id order as a server-written one is.
#
# PostgreSQL: a schema of its own (bench_load_<pid>_<random>), created by
# `maskline migrate`. To make the fill take minutes rather than hours, the
# trigger that takes numbers' holds and parties' slots is dropped in that
# schema before the insert (a node does not read them at start-up; `slots`
# and `number_holds` stay empty). Then VACUUM ANALYZE, as on a database
# autovacuum has been through. The schema is dropped at the end.
#
# SQLite: a temporary data directory; the server creates the schema on a
# first start, the fill runs with the server stopped (one transaction per
# million rows, synchronous=OFF for the fill only), then the server starts
# again on it. Removed at the end.
#
# For each back end, the script starts the server once on the empty store
# (baseline RSS), fills it, starts it again and reports: the seconds from the
# process start to its "maskline ready" log line (its own timestamps, and the
# wall clock seen from here), the "route index loaded" line (scanned, live,
# refused), VmRSS and VmHWM after ready, (RSS - baseline) / live bindings,
# and the CPU seconds of the server and of all postgres processes over the
# load. It then checks one route decision.
#
#   bench/index_load.sh                        # PostgreSQL, 10M bindings
#   BACKENDS=pg,sqlite bench/index_load.sh     # both, one after the other
#   NUMBERS=10000 bench/index_load.sh          # 1M bindings
#   ROUTE=1 ...                                # then route decisions/s on each
#                                              # loaded node: bench/route_backends.sh
#
# Settings (environment): BACKENDS (pg), NUMBERS (100000), PER_NUMBER (100),
# READY_TIMEOUT (1200 s per start), KEEP=1 keeps the work directory (logs);
# PGHOST/PGPORT/PGUSER/PGDATABASE as in bench/pg_lib.sh.
#
# Needs curl, psql and python3. Disk: about 5 GB for PostgreSQL (table,
# indexes, WAL) and 3 GB for SQLite at 10M. Only 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/pg_lib.sh
BACKENDS=${BACKENDS:-pg}
NUMBERS=${NUMBERS:-100000}
PER_NUMBER=${PER_NUMBER:-100}
READY_TIMEOUT=${READY_TIMEOUT:-1200}
N=$(( NUMBERS * PER_NUMBER ))
(( N <= 100000000 )) || { echo "at most 100M bindings (8-digit parties)" >&2; exit 1; }

for tool in curl psql python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done

echo "== building (cargo build --release -p maskline)"
cargo build --release -p maskline 2>&1 | tail -1

DATA=$(mktemp -d /tmp/maskline-bench-load.XXXXXX)
ADMIN="bench-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
SWITCH="bench-switch-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
TENANT_KEY="bench-tenant-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
KEY_HASH=$(python3 -c "import hashlib, sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())" "$TENANT_KEY")
TENANT_ID="0190a000-0000-7000-8000-000000000001"
NOW=$(date +%s)
SCHEMA=""
NODE_PID=""

cleanup() {
  stop "$NODE_PID"
  pg_drop_schema "$SCHEMA"
  if [[ "${KEEP:-0}" == 1 ]]; then echo "== kept $DATA"; else rm -rf "$DATA"; fi
}
trap cleanup EXIT

# Starts the node (start_node's settings, MASKLINE_LOG=info, plus the
# VAR=VALUE words in EXTRA_ENV) and waits for "maskline ready"
# (READY_TIMEOUT). Sets NODE_PID, NODE_BASE, READY_WALL (seconds from the
# exec to the ready line, seen from here). Returns 1 if the server exits
# first (its log's tail printed).
EXTRA_ENV=()
start_and_wait_ready() { # name url
  local name=$1 url=$2 http sip t0 i
  http=$(free_port)
  sip=$(free_port)
  NODE_BASE="http://127.0.0.1:${http}"
  local env=(MASKLINE_DATA_DIR="$DATA/$name.db" MASKLINE_MASTER_KEY_FILE="$DATA/master.key"
    MASKLINE_HTTP_LISTEN="127.0.0.1:${http}"
    MASKLINE_SIP_LISTEN="127.0.0.1:${sip}" MASKLINE_ADMIN_KEY="$ADMIN" MASKLINE_RATE_LIMIT=0
    MASKLINE_SWITCH_KEY="$SWITCH" MASKLINE_LOG=info)
  [[ -n "$url" ]] && env+=(MASKLINE_DATABASE_URL="$url")
  env+=("${EXTRA_ENV[@]}")
  t0=$(date +%s.%N)
  env "${env[@]}" target/release/maskline serve >"$DATA/$name.log" 2>&1 &
  NODE_PID=$!
  for i in $(seq 1 $(( READY_TIMEOUT * 10 ))); do
    grep -q 'maskline ready' "$DATA/$name.log" && break
    if ! kill -0 "$NODE_PID" 2>/dev/null; then
      wait "$NODE_PID" 2>/dev/null || true
      NODE_PID=""
      echo "== $name exited after $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s; its log's last lines:"
      tail -3 "$DATA/$name.log" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-600 | sed 's/^/   /'
      return 1
    fi
    sleep 0.1
  done
  grep -q 'maskline ready' "$DATA/$name.log" || { echo "$name not ready after ${READY_TIMEOUT} s" >&2; exit 1; }
  READY_WALL=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
}

# The server's own timestamps (RFC 3339, in its text log) of "starting",
# "route index loaded" and "maskline ready", and the loaded line's counts.
log_report() { # log
  python3 - "$1" <<'EOF'
import re, sys, datetime
text = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[1]).read())
def at(what):
    for line in text.splitlines():
        if what in line:
            ts = line.split()[0]
            return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp(), line
    return None, None
s, _ = at(" starting")
l, loaded = at("route index loaded")
r, _ = at("maskline ready")
counts = " ".join(re.findall(r"(?:scanned|live|refused)=\d+", loaded or ""))
print("start -> index loaded %.1f s, -> ready %.1f s (server's timestamps); %s" % (l - s, r - s, counts))
EOF
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# Reports on a node that just became ready, then stops it.
report_loaded() { # name baseline_rss_kb pg(0|1) pg_ticks_before
  local name=$1 base=$2 pgb=$4 rss hwm ticks pga=0 live
  sleep 2 # let the first sweep and scrape-free settling happen
  rss=$(rss_kb "$NODE_PID")
  hwm=$(hwm_kb "$NODE_PID")
  ticks=$(cpu_ticks "$NODE_PID")
  [[ "$3" == 1 ]] && pga=$(pg_cpu_ticks)
  echo "== $name: ready after ${READY_WALL} s (wall, from exec); $(log_report "$DATA/$name.log")"
  live=$(python3 - "$DATA/$name.log" <<'EOF'
import re, sys
text = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[1]).read())
m = re.search(r"route index loaded.*?live=(\d+)", text)
print(m.group(1) if m else 0)
EOF
)
  python3 - "$rss" "$hwm" "$base" "$live" "$ticks" "$TICK" "$pga" "$pgb" "$3" <<'EOF'
import sys
rss, hwm, base, live, ticks, tick, pga, pgb, pg = map(int, sys.argv[1:])
print("   VmRSS %.1f MiB, VmHWM %.1f MiB, baseline (empty store) %.1f MiB" % (rss / 1024, hwm / 1024, base / 1024))
if live:
    print("   per live binding: RSS %.1f B, (RSS - baseline) %.1f B, VmHWM %.1f B"
          % (rss * 1024 / live, (rss - base) * 1024 / live, hwm * 1024 / live))
print("   server CPU from exec to now: %.1f s" % (ticks / tick))
if pg:
    print("   postgres CPU (all processes) from the start to now: %.1f s" % ((pga - pgb) / tick))
EOF
  # One decision for a binding in the middle of the store.
  local i=$(( N / 2 + 123 ))
  local a b x
  a=$(printf '+86138%08d' "$i")
  b=$(printf '+86139%08d' "$i")
  x=$(printf '+86571%08d' $(( i / PER_NUMBER + 1 )))
  echo "   route $a -> $x: $(curl -sS -X POST "$NODE_BASE/v1/route" -H "Authorization: Bearer $SWITCH" \
    -H 'Content-Type: application/json' -d "{\"caller\":\"$a\",\"called\":\"$x\"}" \
    | python3 -c "import json, sys; d = json.load(sys.stdin); print(d['action'], d.get('to'), '(expected connect $b)')")"
  grep -iE ' (WARN|ERROR) ' <(sed 's/\x1b\[[0-9;]*m//g' "$DATA/$name.log") | head -5 | cut -c1-300 || true
  [[ "${ROUTE:-0}" == 1 ]] && route_load "$name"
  stop "$NODE_PID"
  NODE_PID=""
}

# ROUTE=1 (bench/route_backends.sh): route decisions/s on the loaded node,
# wrk -c ROUTE_CONNS -t ROUTE_THREADS -d ROUTE_DURATION with bench/route.lua
# after a ROUTE_WARMUP, with the server's CPU and that of all postgres
# processes over the measurement.
route_load() { # name
  local conns=${ROUTE_CONNS:-64} threads=${ROUTE_THREADS:-2} dur=${ROUTE_DURATION:-20s}
  command -v wrk >/dev/null || { echo "ROUTE=1 needs wrk" >&2; exit 1; }
  wrk -c "$conns" -t "$threads" -d "${ROUTE_WARMUP:-3s}" -s bench/route.lua "$NODE_BASE" \
    -- "$SWITCH" "$N" "$PER_NUMBER" | grep '^RESULT' | sed 's/^/   warm-up /' || true
  local sb pb t0 t1 sa pa mb ma
  sb=$(cpu_ticks "$NODE_PID")
  pb=$(pg_cpu_ticks)
  mb=$(machine_ticks)
  t0=$(date +%s.%N)
  /usr/bin/time -f 'user=%U sys=%S wall=%e' -o "$DATA/route-$1.time" \
    wrk -c "$conns" -t "$threads" -d "$dur" --latency -s bench/route.lua "$NODE_BASE" \
    -- "$SWITCH" "$N" "$PER_NUMBER" >"$DATA/route-$1.out" 2>&1
  t1=$(date +%s.%N)
  sa=$(cpu_ticks "$NODE_PID")
  pa=$(pg_cpu_ticks)
  ma=$(machine_ticks)
  echo "== $1: route decisions, wrk -c $conns -t $threads -d $dur --latency -s bench/route.lua"
  grep -E '^RESULT|unexpected' "$DATA/route-$1.out" | sed 's/^/   /'
  python3 - "$DATA/route-$1.time" "$t0" "$t1" "$sb" "$sa" "$pb" "$pa" "$TICK" "$mb" "$ma" <<'EOF'
import sys
t = dict(kv.split("=") for kv in open(sys.argv[1]).read().split())
t0, t1 = float(sys.argv[2]), float(sys.argv[3])
sb, sa, pb, pa, tick, mb, ma = map(int, sys.argv[4:11])
wall = t1 - t0
server, pg, wrk = (sa - sb) / tick / wall, (pa - pb) / tick / wall, (float(t["user"]) + float(t["sys"])) / float(t["wall"])
machine = (ma - mb) / tick / wall
print("   CPU: server %.2f cores, postgres (all processes) %.2f, wrk %.2f; machine %.2f busy, %.2f of it none of these (kernel loopback work included)"
      % (server, pg, wrk, machine, machine - server - pg - wrk))
EOF
}

run_pg() {
  SCHEMA=$(pg_schema_name load)
  pg_create_schema "$SCHEMA"
  local url
  url=$(pg_url "$SCHEMA")
  echo "== PostgreSQL: schema ${SCHEMA}; $(pg_settings)"
  echo "== other client sessions on the cluster now: $(pg_other_sessions)"
  MASKLINE_DATABASE_URL="$url" MASKLINE_LOG=warn target/release/maskline migrate >/dev/null
  start_and_wait_ready pg-empty "$url"
  sleep 1
  local base
  base=$(rss_kb "$NODE_PID")
  stop "$NODE_PID"
  NODE_PID=""
  echo "== baseline: empty schema, ready after ${READY_WALL} s, VmRSS $(( base / 1024 )) MiB"

  echo "== filling: 1 tenant, ${NUMBERS} numbers, ${N} bindings (slot trigger dropped in ${SCHEMA})"
  local t0
  t0=$(date +%s.%N)
  PG_SCHEMA=$SCHEMA pg <<EOF
DROP TRIGGER bindings_hold_on_insert ON bindings;
INSERT INTO tenants (id, name, api_key_hash, created_at)
  VALUES ('$TENANT_ID', 'bench', decode('$KEY_HASH', 'hex'), $NOW);
INSERT INTO numbers (number, tenant_id, area, created_at)
  SELECT '+86571' || lpad(n::text, 8, '0'), '$TENANT_ID', '0571', $NOW
  FROM generate_series(1, $NUMBERS) n ORDER BY n;
EOF
  local lo hi
  for (( lo = 0; lo < N; lo += 1000000 )); do
    hi=$(( lo + 1000000 < N ? lo + 1000000 : N ))
    PG_SCHEMA=$SCHEMA pg <<EOF
INSERT INTO bindings (id, tenant_id, mode, x, a, b, area, a_to_b, b_to_a, record, sms,
                      created_at, updated_at, expires_at, ends_at, live_until)
SELECT (lpad(to_hex(${NOW}000::bigint + i / 1000), 12, '0') || '7' || lpad(to_hex(i % 4096), 3, '0')
        || '8' || lpad(to_hex(i), 15, '0'))::uuid,
       '$TENANT_ID', 'axb', '+86571' || lpad((i / $PER_NUMBER + 1)::text, 8, '0'),
       '+86138' || lpad(i::text, 8, '0'), '+86139' || lpad(i::text, 8, '0'), '0571',
       true, true, false, true, $NOW, $NOW, $NOW + 86400, $NOW + 86400, $NOW + 86400 + 3600
FROM generate_series($lo, $(( hi - 1 ))) i;
EOF
    printf '   %d rows (%.0f s)\n' "$hi" "$(python3 -c "import time; print(time.time() - $t0)")"
  done
  PG_SCHEMA=$SCHEMA pg -c "VACUUM ANALYZE bindings" -c "VACUUM ANALYZE numbers" -c "VACUUM ANALYZE tenants"
  echo "== filled and vacuumed in $(python3 -c "import time; print(f'{time.time() - $t0:.0f}')") s; bindings table $(PG_SCHEMA=$SCHEMA pg -c "SELECT pg_size_pretty(pg_relation_size('bindings')) || ' + indexes ' || pg_size_pretty(pg_indexes_size('bindings'))")"
  echo "== plan of the start-up scan: $(PG_SCHEMA=$SCHEMA pg -c "EXPLAIN SELECT id FROM bindings WHERE ends_at >= 0 ORDER BY id" | head -2 | tr '\n' ' ')"
  sync
  echo "== machine busy before the start (anything): $(machine_busy 1) of $(nproc) cores"
  local pgb
  pgb=$(pg_cpu_ticks)
  if ! start_and_wait_ready pg-loaded "$url"; then
    # The start-up scan is one statement: with the default statement timeout
    # (MASKLINE_DATABASE_STATEMENT_TIMEOUT_MS, 10 s) a large store cannot
    # be read in time. Again without a limit, to measure the load itself.
    grep -q 'statement timeout' "$DATA/pg-loaded.log" || exit 1
    echo "== the start-up scan hit the statement timeout: again with MASKLINE_DATABASE_STATEMENT_TIMEOUT_MS=0 (no limit)"
    cp "$DATA/pg-loaded.log" "$DATA/pg-loaded-timeout.log"
    EXTRA_ENV=(MASKLINE_DATABASE_STATEMENT_TIMEOUT_MS=0)
    pgb=$(pg_cpu_ticks)
    start_and_wait_ready pg-loaded "$url" || exit 1
    EXTRA_ENV=()
  fi
  report_loaded pg-loaded "$base" 1 "$pgb"
  pg_drop_schema "$SCHEMA"
  SCHEMA=""
}

run_sqlite() {
  echo "== SQLite: ${DATA}/sqlite.db"
  start_and_wait_ready sqlite ""
  sleep 1
  local base
  base=$(rss_kb "$NODE_PID")
  stop "$NODE_PID"
  NODE_PID=""
  echo "== baseline: empty store, ready after ${READY_WALL} s, VmRSS $(( base / 1024 )) MiB"
  echo "== filling: 1 tenant, ${NUMBERS} numbers, ${N} bindings (server stopped)"
  local t0
  t0=$(date +%s.%N)
  python3 - "$DATA/sqlite.db/maskline.db" "$NUMBERS" "$PER_NUMBER" "$NOW" "$KEY_HASH" "$TENANT_ID" <<'EOF'
import sqlite3, sys, time, uuid
path, numbers, per, now, key_hash, tenant = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA synchronous=OFF")
db.execute("PRAGMA cache_size=-262144")
t = uuid.UUID(tenant).bytes
db.execute("BEGIN")
db.execute("INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES (?, 'bench', ?, ?)",
           (t, bytes.fromhex(key_hash), now))
db.executemany("INSERT INTO numbers (number, tenant_id, area, created_at) VALUES (?, ?, '0571', ?)",
               (("+86571%08d" % n, t, now) for n in range(1, numbers + 1)))
db.execute("COMMIT")
n = numbers * per
t0 = time.time()
def rows(lo, hi):
    for i in range(lo, hi):
        h = "%012x7%03x8%015x" % (now * 1000 + i // 1000, i % 4096, i)
        yield (bytes.fromhex(h), t, "+86571%08d" % (i // per + 1), "+86138%08d" % i, "+86139%08d" % i,
               now, now, now + 86400, now + 86400)
for lo in range(0, n, 1000000):
    hi = min(lo + 1000000, n)
    db.execute("BEGIN")
    db.executemany("INSERT INTO bindings (id, tenant_id, mode, x, a, b, area, a_to_b, b_to_a, record, sms, "
                   "created_at, updated_at, expires_at, ends_at) "
                   "VALUES (?, ?, 'axb', ?, ?, ?, '0571', 1, 1, 0, 1, ?, ?, ?, ?)", rows(lo, hi))
    db.execute("COMMIT")
    print("   %d rows (%.0f s)" % (hi, time.time() - t0), flush=True)
db.execute("ANALYZE")
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
EOF
  echo "== filled in $(python3 -c "import time; print(f'{time.time() - $t0:.0f}')") s; $(du -sh "$DATA/sqlite.db" | cut -f1) on disk"
  sync
  echo "== machine busy before the start (anything): $(machine_busy 1) of $(nproc) cores"
  start_and_wait_ready sqlite "" # same data directory
  report_loaded sqlite "$base" 0 0
}

IFS=, read -ra which <<<"$BACKENDS"
for b in "${which[@]}"; do
  case "$b" in
    pg) run_pg ;;
    sqlite) run_sqlite ;;
    *) echo "unknown back end $b (pg, sqlite)" >&2; exit 1 ;;
  esac
done
