#!/usr/bin/env bash
# Figure 11 of BENCHMARKS.md: the console's pages at ROWS bindings, ROWS
# CDRs, ROWS texts, ROWS events and ROWS audit entries, and the weight of
# its embedded assets.
#
# Builds the release binary and the seeding example, starts `maskline serve`
# on 127.0.0.1 with a fresh data directory, creates a tenant, its pool of
# POOL numbers and a console user over the API, stops it, fills its store
# with the example (ended bindings, CDRs, texts, events and audit entries
# over 180 days, sealed as the server writes them), starts it again and signs
# in as the tenant's owner. Then each page is
# fetched SAMPLES times over one keep-alive connection and the time to its
# last byte on loopback (an upper bound of the server's time) is reported as
# p50/p99: the first page of each list, a page deep in it, a search by
# `external_ref`, by party (sealed in the link), by binding, held texts, the
# overview, the numbers, events, audit log and settings.
# The server is stopped and the data directory removed at the end.
#
#   bench/console_pages.sh                     # 1,000,000 rows, 200 samples
#   ROWS=100000 SAMPLES=100 bench/console_pages.sh
#   MASKLINE_BIN=/path/maskline SEED_BIN=/path/seed_console bench/console_pages.sh
#
# Needs curl and python3. Only 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

ROWS=${ROWS:-1000000}
SAMPLES=${SAMPLES:-200}
POOL=${POOL:-10000}
ADMIN=bench-admin-key-0123456789
PASSWORD=bench-console-passphrase

if [[ -z "${MASKLINE_BIN:-}" || -z "${SEED_BIN:-}" ]]; then
  cargo build --release --locked -p maskline --bin maskline --example seed_console >&2
  target=${CARGO_TARGET_DIR:-target}
  MASKLINE_BIN=${MASKLINE_BIN:-$target/release/maskline}
  SEED_BIN=${SEED_BIN:-$target/release/examples/seed_console}
fi

DATA=$(mktemp -d)
PORT=$(free_port)
SIP=$(free_port)
BASE=http://127.0.0.1:$PORT
PID=
trap 'stop "$PID"; rm -rf "$DATA"' EXIT

serve() {
  MASKLINE_DATA_DIR=$DATA/store MASKLINE_HTTP_LISTEN=127.0.0.1:$PORT \
    MASKLINE_SIP_LISTEN=127.0.0.1:$SIP MASKLINE_ADMIN_KEY=$ADMIN \
    MASKLINE_RATE_LIMIT=0 "$MASKLINE_BIN" serve >"$DATA/log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do
    curl -fsS "$BASE/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$PID" 2>/dev/null || { cat "$DATA/log" >&2; exit 1; }
    sleep 0.1
  done
  echo "the server did not start" >&2
  exit 1
}

serve
TENANT_JSON=$(curl -fsS -X POST "$BASE/v1/tenants" -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' -d '{"name": "bench"}')
TENANT=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$TENANT_JSON")
KEY=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])' <<<"$TENANT_JSON")
python3 -c "
import json
print(json.dumps({'numbers': [{'number': '+86571%08d' % i} for i in range(1, $POOL + 1)]}))
" >"$DATA/numbers.json"
curl -fsS -X POST "$BASE/v1/numbers" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' --data-binary @"$DATA/numbers.json" >/dev/null
curl -fsS -X POST "$BASE/v1/users" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"email\": \"ops@bench.example\", \"password\": \"$PASSWORD\", \"role\": \"owner\"}" >/dev/null
stop "$PID"

echo "== seeding $ROWS bindings, CDRs and texts" >&2
"$SEED_BIN" "$DATA/store" "$TENANT" "$ROWS" "$POOL"
serve
echo "== store: $(du -sh "$DATA/store" | cut -f1) on disk" >&2

python3 - "$BASE" "$PASSWORD" "$SAMPLES" <<'EOF'
import http.client, re, statistics, sys, time, urllib.parse

base, password, samples = sys.argv[1], sys.argv[2], int(sys.argv[3])
host = urllib.parse.urlparse(base).netloc
conn = http.client.HTTPConnection(host)
cookies = {}

def request(method, path, body=None):
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urllib.parse.urlencode(body)
    start = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    res = conn.getresponse()
    html = res.read().decode()
    took = time.perf_counter() - start
    for k, v in res.getheaders():
        if k.lower() == "set-cookie":
            name, value = v.split(";")[0].split("=", 1)
            cookies[name] = value
    return res.status, res.getheader("location"), html, took

def csrf(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)

_, _, html, _ = request("GET", "/console/login")
status, _, _, _ = request("POST", "/console/login",
                          {"csrf": csrf(html), "email": "ops@bench.example", "password": password})
assert status == 303, status
_, _, html, _ = request("GET", "/console/bindings")
token = csrf(html)

def next_link(path):
    _, _, html, _ = request("GET", path)
    m = re.search(r'href="([^"]+)" rel="next"', html)
    return m.group(1).replace("&amp;", "&")

def deep(path, pages=20):
    for _ in range(pages):
        path = next_link(path)
    return path

def sealed(path, party):
    status, location, _, _ = request("POST", path + "/search", {"csrf": token, "party": party})
    assert status == 303, status
    return location

def by_binding(path):
    # The binding of a row in the middle of the list.
    _, _, html, _ = request("GET", deep("/console/bindings", 10))
    binding = re.search(r'href="/console/calls\?binding=([0-9a-f-]+)"', html).group(1)
    return f"{path}?binding={binding}"

pages = [
    ("overview (charts, pool)", "/console"),
    ("bindings, first page", "/console/bindings"),
    ("bindings, 21st page", deep("/console/bindings")),
    ("bindings by external_ref", "/console/bindings?external_ref=order-500000"),
    ("bindings by party", sealed("/console/bindings", "+8613800500000")),
    ("calls, first page", "/console/calls"),
    ("calls, 21st page", deep("/console/calls")),
    ("calls by party", sealed("/console/calls", "+8613800500000")),
    ("texts, first page", "/console/messages"),
    ("texts, 21st page", deep("/console/messages")),
    ("texts held", "/console/messages?status=held"),
    ("calls of one binding", by_binding("/console/calls")),
    ("texts of one binding", by_binding("/console/messages")),
    ("numbers, first page", "/console/numbers"),
    ("numbers, 21st page", deep("/console/numbers")),
    ("events, first page", "/console/events"),
    ("events, 21st page", deep("/console/events")),
    ("audit log, first page", "/console/audit"),
    ("audit log, 21st page", deep("/console/audit")),
    ("settings (with prompts)", "/console/settings"),
]
print(f"{'page':28} {'p50 ms':>8} {'p99 ms':>8} {'rows':>5}")
for name, path in pages:
    times = []
    for _ in range(samples):
        status, _, html, took = request("GET", path)
        assert status == 200, (name, status)
        times.append(took * 1000)
    rows = html.count("<tr id=") or html.count("<tr>") - 1
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"{name:28} {statistics.median(times):8.2f} {p99:8.2f} {rows:5}")
EOF

echo
echo "== embedded assets (bytes, gzip -9)"
total=0
for f in crates/console/assets/console.css crates/console/assets/console.js crates/console/assets/htmx-*.min.js; do
  raw=$(wc -c <"$f")
  gz=$(gzip -9c "$f" | wc -c)
  total=$((total + gz))
  printf '%-45s %8d %8d\n' "$f" "$raw" "$gz"
done
printf '%-45s %8s %8d\n' "total" "" "$total"
