#!/usr/bin/env bash
# Where PostgreSQL spends a bind: the cost of inserting bindings rows, with
# the schema's constraints and trigger taken away one at a time.
#
# Creates a schema of its own (bench_inscost_<pid>_<random>), runs
# `maskline migrate`, fills it with ROWS live axb bindings (1,000 numbers,
# ROWS / 1,000 on each, through the real trigger and constraints), then
# times, RUNS times per step, one INSERT of BATCH bindings (spread over the
# numbers, new parties) inside a transaction that is rolled back, with
# EXPLAIN ANALYZE (its "Execution Time", which includes triggers and
# constraint checks, not parsing or the round trip). Steps, each on top of
# the previous one:
#   1. the schema as migrated (the trigger takes the number's hold and the
#      parties' slots, 0002_slots.sql);
#   2. without that trigger (disabled);
#   3. also without the secondary indexes of bindings (only the primary key
#      and the partial external_ref index remain).
# Then the same for one INSERT of BATCH events (600-byte bodies, as a
# binding.created event), the other row every bind writes.
# Prints the median and the range per step, in ms per BATCH rows and µs per
# binding. The schema is dropped at the end.
#
#   bench/pg_insert_cost.sh
#   ROWS=1000000 BATCH=200 bench/pg_insert_cost.sh
#
# Settings (environment): ROWS (100000), BATCH (100), RUNS (5);
# PGHOST/PGPORT/PGUSER/PGDATABASE as in bench/pg_lib.sh. Needs psql, python3.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/pg_lib.sh
ROWS=${ROWS:-100000}
BATCH=${BATCH:-100}
RUNS=${RUNS:-5}

echo "== building (cargo build --release -p maskline)"
cargo build --release -p maskline 2>&1 | tail -1

SCHEMA=""
trap 'pg_drop_schema "$SCHEMA"' EXIT
SCHEMA=$(pg_schema_name inscost)
pg_create_schema "$SCHEMA"
MASKLINE_DATABASE_URL=$(pg_url "$SCHEMA") MASKLINE_LOG=warn target/release/maskline migrate >/dev/null
export PG_SCHEMA=$SCHEMA
echo "== PostgreSQL: schema ${SCHEMA}; $(pg_settings)"
echo "== machine busy now (anything): $(machine_busy 1) of $(nproc) cores"

NOW=$(date +%s)
T="0190a000-0000-7000-8000-000000000001"
pg <<EOF
INSERT INTO tenants VALUES ('$T', 'bench', decode(repeat('ab', 32), 'hex'), $NOW);
INSERT INTO numbers (number, tenant_id, area, created_at)
  SELECT '+86571' || lpad(n::text, 8, '0'), '$T', '0571', $NOW FROM generate_series(1, 1000) n;
INSERT INTO bindings (id, tenant_id, mode, x, a, b, area, a_to_b, b_to_a, record, sms,
                      created_at, updated_at, expires_at, ends_at, live_until)
SELECT gen_random_uuid(), '$T', 'axb', '+86571' || lpad((i % 1000 + 1)::text, 8, '0'),
       '+86138' || lpad(i::text, 8, '0'), '+86139' || lpad(i::text, 8, '0'), '0571',
       true, true, false, true, $NOW, $NOW, $NOW + 86400, $NOW + 86400, $NOW + 90000
FROM generate_series(0, $(( ROWS - 1 ))) i;
ANALYZE;
EOF
echo "== filled: $(pg -c "SELECT count(*) FROM bindings") bindings, $(pg -c "SELECT count(*) FROM slots") slots"

cat >"/tmp/maskline-inscost-$$.sql" <<EOF
BEGIN;
EXPLAIN (ANALYZE) INSERT INTO bindings (id, tenant_id, mode, x, a, b, area, a_to_b, b_to_a, record, sms,
                                        created_at, updated_at, expires_at, ends_at, live_until)
SELECT gen_random_uuid(), '$T', 'axb', '+86571' || lpad((i % 1000 + 1)::text, 8, '0'),
       '+86137' || lpad(i::text, 8, '0'), '+86136' || lpad(i::text, 8, '0'), '0571',
       true, true, false, true, $NOW + 1, $NOW + 1, $NOW + 86401, $NOW + 86401, $NOW + 90001
FROM generate_series(1, $BATCH) i;
ROLLBACK;
EOF
trap 'pg_drop_schema "$SCHEMA"; rm -f "/tmp/maskline-inscost-$$.sql"' EXIT

step() { # label
  local times
  times=$(for _ in $(seq 1 "$RUNS"); do
    pg -f "/tmp/maskline-inscost-$$.sql" | awk '/Execution Time/ {print $3}'
  done | sort -n | tr '\n' ' ')
  python3 - "$1" "$BATCH" $times <<'PY'
import sys
label, batch, t = sys.argv[1], int(sys.argv[2]), sorted(map(float, sys.argv[3:]))
med = t[len(t) // 2]
print("   %-72s median %6.2f ms per %d (%.0f µs per binding), range %.2f-%.2f" % (label, med, batch, med * 1000 / batch, t[0], t[-1]))
PY
}

echo "== one INSERT of ${BATCH} bindings, ${RUNS} runs per step, EXPLAIN ANALYZE execution time:"
step "1. as migrated (trigger: number hold, slots)"
pg -c "ALTER TABLE bindings DISABLE TRIGGER bindings_hold_on_insert"
step "2. without the trigger"
pg -c "DROP INDEX bindings_by_a, bindings_by_b, bindings_by_update, bindings_by_end, bindings_by_tenant, bindings_by_x"
step "3. no trigger, no secondary indexes"

cat >"/tmp/maskline-inscost-$$.sql" <<EOF
BEGIN;
EXPLAIN (ANALYZE) INSERT INTO events (id, tenant_id, type, subject, created_at, body, state, next_attempt_at, retry_from)
SELECT gen_random_uuid(), '$T', 'binding.created', gen_random_uuid(), $NOW, repeat('x', 600), 'pending', $NOW, $NOW
FROM generate_series(1, $BATCH) i;
ROLLBACK;
EOF
step "events: one INSERT of ${BATCH} (5 indexes)"
