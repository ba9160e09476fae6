#!/usr/bin/env bash
# BENCHMARKS.md §7: relayed texts per second end to end through a local SMSC,
# and the latency a relay adds.
#
# Builds the release binary, starts the load SMSC (bench/sms_load.js: the npm
# smpp package in server mode) and `maskline serve` bound to it over SMPP on
# 127.0.0.1 with a fresh data directory, creates a tenant with PAIRS axb
# bindings, then the SMSC delivers texts A -> X keeping WINDOW unanswered and
# Maskline's submit window is WINDOW too; the SMSC answers every submit_sm at
# once and times each text from its deliver_sm to its submit_sm. Prints the
# SMSC's figures and the CPU Maskline and the SMSC used.
#
#   bench/sms_relay.sh                       # window 10, 20 s after 3 s warm-up
#   WINDOW=100 bench/sms_relay.sh
#   RATE=2000 WINDOW=100 bench/sms_relay.sh  # open loop: 2,000 texts a second
#   PG=1 bench/sms_relay.sh                  # on PostgreSQL (see http_binds.sh)
#   MASKLINE_BIN=/tmp/maskline-old bench/sms_relay.sh   # another build, A/B
#
# Needs node (with the test SMSC's npm packages: scripts/test installs them),
# curl and python3. Only 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
WINDOW=${WINDOW:-10}
SECONDS_RUN=${DURATION:-20}
WARMUP=${WARMUP:-3}
PAIRS=${PAIRS:-200}
RATE=${RATE:-0}
PG=${PG:-0}
[[ "$PG" == 1 ]] && . bench/pg_lib.sh
export NODE_PATH="$PWD/crates/maskline/tests/smsc/node_modules"
[[ -d "$NODE_PATH/smpp" ]] || (cd crates/maskline/tests/smsc && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# MASKLINE_BIN: an A/B run against another build (not rebuilt here).
BIN=${MASKLINE_BIN:-target/release/maskline}
if [[ -z "${MASKLINE_BIN:-}" ]]; then
  echo "== building (cargo build --release -p maskline)"
  cargo build --release -p maskline 2>&1 | tail -1
fi

HTTP_PORT=$(free_port)
SIP_PORT=$(free_port)
SMPP_PORT=$(free_port)
BASE="http://127.0.0.1:${HTTP_PORT}"
DATA=$(mktemp -d /tmp/maskline-bench.XXXXXX)
ADMIN="bench-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
SERVER_PID=""
SMSC_PID=""
SCHEMA=""
cleanup() {
  stop "$SERVER_PID"
  stop "$SMSC_PID"
  [[ -n "$SCHEMA" ]] && pg_drop_schema "$SCHEMA"
  rm -rf "$DATA"
}
trap cleanup EXIT

# The pairs the SMSC will text through: A, X, B (digits).
python3 - "$PAIRS" >"$DATA/pairs.json" <<'EOF'
import json, sys
n = int(sys.argv[1])
print(json.dumps([{"a": f"+86139{i:08d}", "b": f"+86137{i:08d}", "x": f"+86571{i:08d}"} for i in range(n)]))
EOF

DB_ENV=()
if [[ "$PG" == 1 ]]; then
  SCHEMA=$(pg_schema_name sms)
  pg_create_schema "$SCHEMA"
  DB_ENV=(MASKLINE_DATABASE_URL="$(pg_url "$SCHEMA")")
fi

env "${DB_ENV[@]}" MASKLINE_DATA_DIR="$DATA/data" MASKLINE_HTTP_LISTEN="127.0.0.1:$HTTP_PORT" \
  MASKLINE_SIP_LISTEN="127.0.0.1:$SIP_PORT" MASKLINE_ADMIN_KEY="$ADMIN" MASKLINE_RATE_LIMIT=0 \
  MASKLINE_LOG=warn MASKLINE_SMPP_WINDOW="$WINDOW" \
  MASKLINE_SMPP="smpp://maskline:secret@127.0.0.1:$SMPP_PORT" \
  "$BIN" serve >"$DATA/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

KEY=$(curl -fsS -X POST "$BASE/v1/tenants" -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' -d '{"name":"bench"}' | python3 -c 'import sys, json; print(json.load(sys.stdin)["api_key"])')
python3 - "$BASE" "$KEY" "$DATA/pairs.json" "$DATA/pairs.txt" <<'EOF'
import json, sys, urllib.request
base, key, src, dst = sys.argv[1:]
pairs = json.load(open(src))
def call(method, path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), method=method,
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
call("POST", "/v1/numbers", {"numbers": [{"number": p["x"]} for p in pairs]})
with open(dst, "w") as out:
    for p in pairs:
        b = call("POST", "/v1/bindings", {"mode": "axb", "a": p["a"], "b": p["b"], "expires_in": 3600})
        out.write(f'{p["a"][1:]} {b["x"][1:]} {p["b"][1:]}\n')
EOF

echo "== $PAIRS axb bindings; window $WINDOW; rate ${RATE/#0/as fast as the window allows}; ${WARMUP} s warm-up, ${SECONDS_RUN} s measured; store: $([[ "$PG" == 1 ]] && echo PostgreSQL || echo embedded)"
stop "$SERVER_PID"
# The SMSC first (it starts delivering on the bind), then Maskline again.
node bench/sms_load.js "$SMPP_PORT" "$DATA/pairs.txt" "$WINDOW" "$SECONDS_RUN" "$WARMUP" "$RATE" >"$DATA/load.json" &
SMSC_PID=$!
sleep 0.5
env "${DB_ENV[@]}" MASKLINE_DATA_DIR="$DATA/data" MASKLINE_HTTP_LISTEN="127.0.0.1:$HTTP_PORT" \
  MASKLINE_SIP_LISTEN="127.0.0.1:$SIP_PORT" MASKLINE_ADMIN_KEY="$ADMIN" MASKLINE_RATE_LIMIT=0 \
  MASKLINE_LOG=warn MASKLINE_SMPP_WINDOW="$WINDOW" \
  MASKLINE_SMPP="smpp://maskline:secret@127.0.0.1:$SMPP_PORT" \
  "$BIN" serve >>"$DATA/server.log" 2>&1 &
SERVER_PID=$!
S0=$(cpu_ticks "$SERVER_PID")
wait "$SMSC_PID" || true
S1=$(cpu_ticks "$SERVER_PID")
SMSC_PID=""
cat "$DATA/load.json"
python3 - "$DATA/load.json" "$S0" "$S1" "$TICK" "$WARMUP" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s0, s1, tick, warm = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
cores = (s1 - s0) / tick / (r["seconds"] + warm)
print(f"maskline: {cores:.2f} cores on average; {cores * 1e6 / max(1, r['relayed_per_sec']):.0f} µs of CPU a relayed text")
EOF
if grep -qiE "error|panic" "$DATA/server.log"; then
  echo "== server errors:"; grep -iE "error|panic" "$DATA/server.log" | head -5
fi
