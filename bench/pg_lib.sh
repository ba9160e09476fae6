# PostgreSQL helpers of the bench scripts (sourced after bench/lib.sh, not
# run). Every run gets a schema of its own in one database, created here and
# dropped by the caller's cleanup (pg_drop_schema); the server reaches it
# through search_path in MASKLINE_DATABASE_URL.
#
# Settings (environment): PGHOST (127.0.0.1), PGPORT (5432), PGUSER
# (postgres), PGDATABASE (test). Trust or ~/.pgpass authentication: no
# password is passed here.

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
PGDATABASE=${PGDATABASE:-test}
export PGHOST PGPORT PGUSER PGDATABASE

# psql, quiet, unaligned, stopping at the first error. With PG_SCHEMA set,
# that schema comes first on the search path.
pg() {
  if [[ -n "${PG_SCHEMA:-}" ]]; then
    PGOPTIONS="-c search_path=${PG_SCHEMA},public" psql -X -v ON_ERROR_STOP=1 -Atq "$@"
  else
    psql -X -v ON_ERROR_STOP=1 -Atq "$@"
  fi
}

# Creates schema $1 (btree_gist, which the migration needs, lives in public).
pg_create_schema() {
  pg -c "CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public" 2>/dev/null
  pg -c "CREATE SCHEMA $1"
}

pg_drop_schema() { # name; quiet, never fails (runs from traps)
  [[ -n "${1:-}" ]] || return 0
  psql -X -Atq -c "DROP SCHEMA IF EXISTS $1 CASCADE" >/dev/null 2>&1 || true
}

# The URL a server uses for schema $1.
pg_url() {
  echo "postgres://${PGUSER}@${PGHOST}:${PGPORT}/${PGDATABASE}?options[search_path]=$1,public"
}

# A schema name of this run: bench_<what>_<pid>_<random>.
pg_schema_name() {
  echo "bench_$1_$$_$(python3 -c 'import secrets; print(secrets.token_hex(3))')"
}

# CPU ticks (user + system) of every process named postgres, plus the
# ticks of postgres children that exited and were reaped (cutime + cstime of
# the postmaster), so a backend that ends during the window still counts.
# Covers the whole cluster: other clients' work in the window counts too.
pg_cpu_ticks() {
  local sum=0 p comm
  for p in /proc/[0-9]*; do
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    [[ "$comm" == postgres ]] || continue
    sum=$(( sum + $(sed 's/.*) //' "$p/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}' || echo 0) ))
  done
  echo "$sum"
}

# "name=value" for the PostgreSQL settings the figures depend on.
pg_settings() {
  pg -F= -c "SELECT name, setting || COALESCE(unit, '') FROM pg_settings
             WHERE name IN ('server_version', 'shared_buffers', 'synchronous_commit', 'fsync',
                            'wal_level', 'max_connections', 'work_mem', 'max_wal_size',
                            'checkpoint_timeout', 'full_page_writes', 'wal_buffers',
                            'commit_delay', 'wal_sync_method', 'effective_io_concurrency',
                            'autovacuum', 'random_page_cost', 'huge_pages')
             ORDER BY name" | tr '\n' ' '
  echo
}

# Other sessions on the cluster right now (not this psql, not background
# workers): a figure taken while they work shares PostgreSQL with them.
pg_other_sessions() {
  pg -c "SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
           AND datname IS NOT NULL"
}

# start_node NAME URL [VAR=VALUE ...]: starts `maskline serve` on free
# loopback ports with MASKLINE_DATABASE_URL=URL (empty: the embedded store
# in $DATA/NAME.db), the admin key $ADMIN and the switch key $SWITCH, logging
# to $DATA/NAME.log, and waits (30 s at most) for /healthz. Sets NODE_PID and
# NODE_BASE; the caller keeps them and stops the node (stop PID).
start_node() {
  local name=$1 url=$2 http sip
  shift 2
  http=$(free_port)
  sip=$(free_port)
  NODE_BASE="http://127.0.0.1:${http}"
  if [[ -n "$url" ]]; then set -- MASKLINE_DATABASE_URL="$url" "$@"; fi
  env MASKLINE_DATA_DIR="$DATA/$name.db" MASKLINE_MASTER_KEY_FILE="$DATA/master.key" \
    MASKLINE_HTTP_LISTEN="127.0.0.1:${http}" \
    MASKLINE_SIP_LISTEN="127.0.0.1:${sip}" \
    MASKLINE_ADMIN_KEY="$ADMIN" \
    MASKLINE_RATE_LIMIT=0 \
    MASKLINE_SWITCH_KEY="$SWITCH" \
    MASKLINE_LOG="${MASKLINE_LOG:-warn}" \
    "$@" \
    target/release/maskline serve >"$DATA/$name.log" 2>&1 &
  NODE_PID=$!
  local i
  for i in $(seq 1 300); do
    curl -fsS "$NODE_BASE/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$NODE_PID" 2>/dev/null || { echo "$name exited:" >&2; tail -20 "$DATA/$name.log" >&2; return 1; }
    sleep 0.1
  done
  echo "$name not healthy after 30 s" >&2
  return 1
}

# POST with a bearer key and a JSON body; prints the body, fails unless the
# status is 200 or 201.
post_json() { # base path key body
  local code
  code=$(curl -sS -o "$DATA/post.out" -w '%{http_code}' -X POST "$1$2" \
    -H "Authorization: Bearer $3" -H 'Content-Type: application/json' -d "$4")
  [[ "$code" =~ ^20[01]$ ]] || { echo "POST $2 failed ($code): $(cat "$DATA/post.out")" >&2; return 1; }
  cat "$DATA/post.out"
}

# Creates a tenant through $1 and imports $2 numbers (+8657100000001 ...),
# 500 a request. Sets API_KEY.
tenant_with_numbers() {
  API_KEY=$(post_json "$1" /v1/tenants "$ADMIN" '{"name":"bench"}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')
  local body
  while read -r body; do
    post_json "$1" /v1/numbers "$API_KEY" "$body" >/dev/null
  done < <(python3 - "$2" <<'PY'
import json, sys
n = int(sys.argv[1])
for start in range(1, n + 1, 500):
    print(json.dumps({"numbers": [{"number": "+86571%08d" % i}
                                  for i in range(start, min(start + 500, n + 1))]}))
PY
)
}

# "<pid> <ticks>" for every postgres process (user + system, own only).
pg_proc_ticks() {
  local p comm
  for p in /proc/[0-9]*; do
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    [[ "$comm" == postgres ]] || continue
    printf '%s %s\n' "${p##*/}" "$(sed 's/.*) //' "$p/stat" 2>/dev/null | awk '{print $12 + $13}')"
  done
}

# The postgres processes that used at least 0.02 cores between two
# pg_proc_ticks snapshots (files), with what pg_stat_activity says of them
# (backend type, application, last query's first words).
pg_proc_cores() { # before after wall_seconds
  local rows
  rows=$(python3 -c '
import sys
before = {l.split()[0]: int(l.split()[1]) for l in open(sys.argv[1]) if l.strip()}
tick, wall = int(sys.argv[3]), float(sys.argv[4])
for l in open(sys.argv[2]):
    pid, ticks = l.split()
    cores = (int(ticks) - before.get(pid, 0)) / tick / wall
    if cores >= 0.02:
        print("%s %.2f" % (pid, cores))
' "$1" "$2" "$TICK" "$3" | sort -k2 -rn)
  local pid cores what
  while read -r pid cores; do
    [[ -n "$pid" ]] || continue
    what=$(pg -c "SELECT backend_type || ' ' || COALESCE(NULLIF(application_name, ''), '-') || ' ' || left(regexp_replace(query, '\s+', ' ', 'g'), 40)
                  FROM pg_stat_activity WHERE pid = $pid" 2>/dev/null)
    echo "   postgres[$pid]: $cores ${what:-(ended, or the postmaster)}"
  done <<<"$rows"
}

# Non-idle CPU ticks of the whole machine (/proc/stat: all but idle and
# iowait). Over a measurement, minus what the bench's own processes used,
# it shows whether something else was running.
machine_ticks() { awk 'NR == 1 {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# Cores busy over the next $1 seconds (1), whoever used them.
machine_busy() {
  local a b
  a=$(machine_ticks)
  sleep "${1:-1}"
  b=$(machine_ticks)
  python3 -c "print(f'{($b - $a) / $TICK / ${1:-1}:.2f}')"
}

# Two nodes on one fresh schema, and a tenant with NUMBERS numbers imported
# through node 1. Sets SCHEMA, URL, PID1/B1 and PID2/B2 (the caller's
# cleanup trap stops the nodes and drops the schema).
start_two_nodes() { # schema name prefix
  SCHEMA=$(pg_schema_name "$1")
  pg_create_schema "$SCHEMA"
  URL=$(pg_url "$SCHEMA")
  echo "== PostgreSQL: schema ${SCHEMA}; $(pg_settings)"
  echo "== other client sessions on the cluster now: $(pg_other_sessions)"
  start_node node1 "$URL"
  PID1=$NODE_PID
  B1=$NODE_BASE
  start_node node2 "$URL"
  PID2=$NODE_PID
  B2=$NODE_BASE
  echo "== node1 ${B1} (pid ${PID1}), node2 ${B2} (pid ${PID2}), one schema"
  tenant_with_numbers "$B1" "$NUMBERS"
  echo "== tenant created and ${NUMBERS} numbers imported through node1"
}
