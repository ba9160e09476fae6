#!/usr/bin/env bash
# Events and signed webhooks: how fast Maskline delivers events to a local
# receiver, how large the webhook backlog grows under SIP load and how fast it
# drains, and what an intercept callback adds to call setup. Everything on
# 127.0.0.1.
#
# Builds the release binary and starts `maskline serve` on free loopback ports
# with a fresh data directory (as bench/sip_calls.sh does), a sipp UAS as the
# outbound gateway, and bench/events_receiver.py (asyncio, raw HTTP/1.1
# keep-alive, answers 200 and counts distinct Maskline-Event-Id values by
# event type) as the tenant's webhook. One tenant, NUMBERS numbers; the
# webhook takes every event type; default sender settings (16 requests in
# flight per tenant) except MASKLINE_WEBHOOK_TIMEOUT_MS=60000 (see a2).
#
#  (a1) Sustained: wrk (bench/sip_binds.lua, CONNS connections) creates BINDS
#       axb bindings, each with a binding.created event, while the receiver
#       answers at once. Reports binds/s and the events delivered per second
#       over the same window (receiver counts at its start and end), then the
#       time until the receiver has them all.
#  (a2) Drain of a backlog: the receiver holds every request unanswered (the
#       sender's 16 slots fill and stay busy, so no attempt fails and no
#       retry backoff is involved: the backlog is BINDS events never tried,
#       16 of them in flight). BINDS more bindings are created; once the
#       maskline_webhook_backlog gauge shows them all, the receiver answers
#       the held requests and everything after. Reports BINDS / (time of the
#       receiver's last delivery - release). This is the sender's full speed
#       from a cold start on a deep outbox, not a retry storm: a backlog left
#       by a failing receiver would also wait out its retry backoff
#       (MASKLINE_WEBHOOK_FIRST_RETRY_MS, 2 s doubling).
#  (b)  SIP load: sipp places RATE calls/s for SECS s (HOLD_MS hold), one
#       binding per call over the 2 * BINDS bindings above; 4 events per call
#       (call.started, .ringing, .answered, .ended), on subjects (bindings)
#       whose binding.created was delivered before. A sampler reads the gauge
#       (refreshed by the server every ~2 s) every second. Reports its max,
#       and the time from sipp's exit (the last call's BYE) until the
#       receiver holds every event so far and the gauge reads 0.
#  (c)  Intercept: IC_RATE calls/s for IC_SECS s twice, with the same
#       webhook, first without an intercept, then with one whose receiver (a
#       second bench/events_receiver.py, so that deliveries do not queue in
#       front of it) answers {"action":"allow"} after sleeping
#       INTERCEPT_DELAY_MS. Reports p50/p99 of maskline_sip_setup_delay_seconds
#       (INVITE in -> outbound INVITE out; it includes the intercept's round
#       trip) from the difference of two /metrics scrapes, for both runs and
#       the difference, plus sipp's INVITE -> 200.
# Every phase also reports deliveries the receiver got twice (an event id it
# already had), and the end checks the receiver holds exactly the events
# expected, by type.
#
#   bench/events.sh                                  # the figures (about 80 s after the build)
#   BINDS=5000 SECS=5 IC_SECS=3 bench/events.sh      # a quick functional check
#
# Settings (environment): BINDS (50000 per batch; 2 batches), NUMBERS (1000),
# CONNS (32), RATE (1000), SECS (20), IC_RATE (200), IC_SECS (10), HOLD_MS
# (1000), INTERCEPT_DELAY_MS (1), DRAIN_TIMEOUT (120 s per wait),
# RECV_TIMEOUT_MS (5000, sipp), MASKLINE_WEBHOOK_CONCURRENCY (server
# default 16), KEEP=1 keeps the work directory (server log, samples, sipp
# files).
#
# Needs sipp (3.6), wrk, curl and python3 (standard library only). Every
# process it starts is stopped on exit. Only 127.0.0.1 (sipp also binds its
# UDP control port, given with -cp, on all addresses: it has no option to
# bind that one to 127.0.0.1).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/lib.sh
BINDS=${BINDS:-50000}
NUMBERS=${NUMBERS:-1000}
CONNS=${CONNS:-32}
RATE=${RATE:-1000}
SECS=${SECS:-20}
IC_RATE=${IC_RATE:-200}
IC_SECS=${IC_SECS:-10}
HOLD_MS=${HOLD_MS:-1000}
INTERCEPT_DELAY_MS=${INTERCEPT_DELAY_MS:-1}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-120}
RECV_TIMEOUT_MS=${RECV_TIMEOUT_MS:-5000}

for tool in sipp wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y sip-tester wrk)" >&2; exit 1; }
done

echo "== building (cargo build --release -p maskline)"
cargo build --release -p maskline 2>&1 | tail -1

HTTP_PORT=$(free_port)
SIP_PORT=$(free_port)
UAS_PORT=$(free_port)
UAS_CTRL=$(free_port)
UAC_PORT=$(free_port)
UAC_CTRL=$(free_port)
RECV_PORT=$(free_port)
ICPT_PORT=$(free_port)
BASE="http://127.0.0.1:${HTTP_PORT}"
RECV="http://127.0.0.1:${RECV_PORT}"
ICPT="http://127.0.0.1:${ICPT_PORT}"
DATA=$(mktemp -d /tmp/maskline-events-bench.XXXXXX)
ADMIN="bench-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
SERVER_PID=""
UAS_PID=""
UAC_PID=""
WRK_PID=""
RECV_PID=""
ICPT_PID=""
SAMPLER_PID=""

cleanup() {
  if [[ "${KEEP:-0}" == 1 && -n "$RECV_PID" ]]; then
    curl -fsS "$RECV/arrivals" >"$DATA/arrivals" 2>/dev/null || true
  fi
  stop "$SAMPLER_PID"
  stop "$WRK_PID"
  stop "$UAC_PID"
  stop "$UAS_PID"
  stop "$SERVER_PID"
  stop "$RECV_PID"
  stop "$ICPT_PID"
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "== work directory kept: $DATA"
  else
    rm -rf "$DATA"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1)"

now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
# since T1 T0 [DIGITS]: T1 - T0 in seconds, or - if either is -.
since() {
  [[ "$1" == - || "$2" == - ]] && { echo -; return; }
  calc "f'{$1 - $2:.${3:-2}f}'"
}
pct() { # ticks0 ticks1 wall: percent of one core
  calc "f'{($2 - $1) / $TICK / $3 * 100:.0f}'"
}
metric() { python3 bench/events.py metric "$@"; }
wait_http() { # url pid name
  for _ in $(seq 1 300); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited" >&2; return 1; }
    sleep 0.1
  done
  echo "$3 not answering after 30 s" >&2
  return 1
}

MAX_RATE=$(( RATE > IC_RATE ? RATE : IC_RATE ))

# The receivers: webhook deliveries, and the intercept callback.
python3 bench/events_receiver.py "$RECV_PORT" 0 >"$DATA/recv.log" 2>&1 &
RECV_PID=$!
python3 bench/events_receiver.py "$ICPT_PORT" "$INTERCEPT_DELAY_MS" >"$DATA/icpt.log" 2>&1 &
ICPT_PID=$!
wait_http "$RECV/stats" "$RECV_PID" "the webhook receiver"
wait_http "$ICPT/stats" "$ICPT_PID" "the intercept receiver"

# The UAS: the outbound gateway, answering every call.
mkdir -p "$DATA/uas"
(cd "$DATA/uas" && exec sipp -sf "$ROOT/bench/sipp/uas_bench.xml" \
  -i 127.0.0.1 -bind_local -p "$UAS_PORT" -t u1 -cp "$UAS_CTRL" -nostdin \
  -l "$(call_limit "$MAX_RATE")" -buff_size 4194304 \
  -trace_stat -stf "$DATA/uas/stat.csv" -fd 1 \
  -trace_err -error_file "$DATA/uas/errors.log" >/dev/null 2>"$DATA/uas/stderr.log") &
UAS_PID=$!

echo "== starting maskline serve: HTTP 127.0.0.1:${HTTP_PORT}, SIP 127.0.0.1:${SIP_PORT}, outbound (sipp UAS) 127.0.0.1:${UAS_PORT}, webhook receiver 127.0.0.1:${RECV_PORT}, intercept receiver 127.0.0.1:${ICPT_PORT}"
MASKLINE_DATA_DIR="$DATA/db" \
MASKLINE_HTTP_LISTEN="127.0.0.1:${HTTP_PORT}" \
MASKLINE_SIP_LISTEN="127.0.0.1:${SIP_PORT}" \
MASKLINE_SIP_OUTBOUND="127.0.0.1:${UAS_PORT}" \
MASKLINE_SIP_TRUSTED="127.0.0.1/32" \
MASKLINE_ADMIN_KEY="$ADMIN" \
MASKLINE_RATE_LIMIT=0 \
MASKLINE_WEBHOOK_ALLOW_PRIVATE=true \
MASKLINE_WEBHOOK_TIMEOUT_MS=60000 \
MASKLINE_LOG="${MASKLINE_LOG:-warn}" \
  target/release/maskline serve >"$DATA/server.log" 2>&1 &
SERVER_PID=$!
wait_http "$BASE/healthz" "$SERVER_PID" "maskline" || { cat "$DATA/server.log" >&2; exit 1; }
kill -0 "$UAS_PID" 2>/dev/null || { echo "sipp UAS exited:" >&2; cat "$DATA/uas/stderr.log" >&2; exit 1; }

echo "== provisioning: 1 tenant, ${NUMBERS} numbers, webhook -> ${RECV}/hook (every event type)"
API_KEY=$(python3 bench/sip_calls.py setup "$BASE" "$ADMIN" "$NUMBERS")
WEBHOOK="{\"url\":\"${RECV}/hook\"}"
python3 bench/events.py webhook "$BASE" "$API_KEY" "$WEBHOOK"

# Every second, for the whole run: the backlog gauge, the delivery counters
# and the receiver's count.
python3 bench/events.py sample "$BASE" "$RECV" "$DATA/samples" 1 2>"$DATA/sampler.err" &
SAMPLER_PID=$!

# Events the receiver must end up with (each distinct once), and the calls
# sipp counted as successful.
EXPECTED=0
CALLS_OK=0

# make_binds NAME COUNT OFFSET: COUNT bindings with wrk; sets BIND_T0,
# BIND_T1 (wall clock around the run) and prints wrk's RESULT line.
make_binds() {
  local name=$1 count=$2 offset=$3
  BIND_T0=$(now)
  wrk -t 2 -c "$CONNS" -d 120s -s bench/sip_binds.lua "$BASE" \
    -- "$API_KEY" "$count" 2 "$DATA/$name.done." "$offset" >"$DATA/$name.out" 2>"$DATA/$name.err" &
  WRK_PID=$!
  while kill -0 "$WRK_PID" 2>/dev/null; do
    if [[ -e "$DATA/$name.done.1" && -e "$DATA/$name.done.2" ]]; then
      [[ -n "${BIND_T1:-}" ]] || BIND_T1=$(now)
      kill -INT "$WRK_PID" 2>/dev/null
    fi
    sleep 0.05
  done
  wait "$WRK_PID" || { cat "$DATA/$name.out" "$DATA/$name.err" >&2; exit 1; }
  WRK_PID=""
  [[ -n "${BIND_T1:-}" ]] || BIND_T1=$(now)
  grep -q "^RESULT created=${count} non201=0 " "$DATA/$name.out" \
    || { echo "binding creation failed:" >&2; cat "$DATA/$name.out" "$DATA/$name.err" >&2; exit 1; }
  EXPECTED=$(( EXPECTED + count ))
}

# drain LABEL: waits up to DRAIN_TIMEOUT for EXPECTED distinct events at the
# receiver, then up to 5 s for the backlog gauge (refreshed every ~2 s) to
# read 0. Sets DRAIN_LAST (wall clock of the receiver's last delivery when
# the count was reached, or -), DRAIN_SEEN (when that was seen), DRAIN_CPU_S
# and DRAIN_CPU_R (server and receiver CPU ticks then), DRAIN_ZERO (wall
# clock the gauge read 0, or -) and DRAIN_OK (1 if both held).
drain() {
  local status distinct last requests zero backlog
  read -r status distinct last requests \
    <<<"$(python3 bench/events.py wait-recv "$RECV" "$EXPECTED" "$DRAIN_TIMEOUT")"
  DRAIN_SEEN=$(now)
  DRAIN_CPU_S=$(cpu_ticks "$SERVER_PID"); DRAIN_CPU_R=$(cpu_ticks "$RECV_PID")
  read -r zero backlog <<<"$(python3 bench/events.py wait-gauge "$BASE" 5)"
  DRAIN_ZERO=$zero
  if [[ "$status" == ok ]]; then
    DRAIN_LAST=$last
  else
    DRAIN_LAST=-
    echo "   NOT DRAINED ($1): the receiver has ${distinct} of ${EXPECTED} events after ${DRAIN_TIMEOUT} s; backlog gauge ${backlog}"
  fi
  if [[ "$status" == ok && "$zero" != - ]]; then
    DRAIN_OK=1
  else
    DRAIN_OK=0
    [[ "$status" != ok ]] || echo "   ($1) every event arrived but the backlog gauge still reads ${backlog} after 5 s"
  fi
}

# Sets DUPS: deliveries the receiver got again (an event id it already
# had) since the last call.
DUPS_SEEN=0
dups() {
  local d
  d=$(python3 bench/events.py recv "$RECV" | awk '{print $2 - $1}')
  DUPS=$(( d - DUPS_SEEN ))
  DUPS_SEEN=$d
}

recv_distinct() { python3 bench/events.py recv "$RECV" | awk '{print $1}'; }

# --- (a1) sustained delivery while bindings are created -------------------
echo "== (a1) ${BINDS} bindings (wrk, ${CONNS} connections), the receiver answering at once"
d0=$(recv_distinct)
cpu0=$(cpu_ticks "$SERVER_PID"); rcpu0=$(cpu_ticks "$RECV_PID")
BIND_T1=""
make_binds a1 "$BINDS" 0
d1=$(recv_distinct)
cpu1=$(cpu_ticks "$SERVER_PID"); rcpu1=$(cpu_ticks "$RECV_PID")
grep '^RESULT' "$DATA/a1.out" | sed 's/^/   wrk: /'
drain a1
A1_WIN=$(calc "$BIND_T1 - $BIND_T0")
A1_BINDS=$(calc "f'{$BINDS / $A1_WIN:.0f}'")
A1_RATE=$(calc "f'{($d1 - $d0) / $A1_WIN:.0f}'")
A1_AT_END=$(( d1 - d0 ))
A1_TAIL=$(since "$DRAIN_LAST" "$BIND_T1")
A1_TOTAL=$( [[ "$DRAIN_LAST" != - ]] && calc "f'{$BINDS / ($DRAIN_LAST - $BIND_T0):.0f}'" || echo -)
A1_MCPU=$(pct "$cpu0" "$cpu1" "$A1_WIN"); A1_RCPU=$(pct "$rcpu0" "$rcpu1" "$A1_WIN")
dups; A1_DUPS=$DUPS
echo "   ${BINDS} binds in $(calc "f'{$A1_WIN:.2f}'") s = ${A1_BINDS} binds/s; delivered meanwhile: ${A1_AT_END} = ${A1_RATE} events/s;"
echo "   all delivered ${A1_TAIL} s after the last bind (${A1_TOTAL} events/s from the first bind to the last delivery); sent twice: ${A1_DUPS}"
echo "   while binding: Maskline CPU ${A1_MCPU} %, receiver CPU ${A1_RCPU} % (wrk's not counted)"

# --- (a2) drain of a pre-built backlog ------------------------------------
echo "== (a2) backlog: the receiver holds every request; ${BINDS} more bindings"
curl -fsS -X POST "$RECV/hold" >/dev/null
BIND_T1=""
make_binds a2 "$BINDS" "$BINDS"
grep '^RESULT' "$DATA/a2.out" | sed 's/^/   wrk: /'
backlog=0
for _ in $(seq 1 100); do
  scrape "$DATA/m.a2"
  backlog=$(metric "$DATA/m.a2" maskline_webhook_backlog)
  (( backlog >= BINDS )) && break
  sleep 0.1
done
read -r _ _ held _ <<<"$(python3 bench/events.py recv "$RECV")"
retry0=$(metric "$DATA/m.a2" maskline_webhook_deliveries_total retry)
echo "   backlog gauge ${backlog}, ${held} requests held by the receiver; releasing"
cpu0=$(cpu_ticks "$SERVER_PID"); rcpu0=$(cpu_ticks "$RECV_PID")
A2_T0=$(now)
curl -fsS -X POST "$RECV/release" >/dev/null
drain a2
A2_T1=$DRAIN_SEEN
cpu1=$DRAIN_CPU_S; rcpu1=$DRAIN_CPU_R
scrape "$DATA/m.a2.after"
retry1=$(metric "$DATA/m.a2.after" maskline_webhook_deliveries_total retry)
A2_SECS=$(since "$DRAIN_LAST" "$A2_T0")
A2_RATE=$( [[ "$DRAIN_LAST" != - ]] && calc "f'{$BINDS / ($DRAIN_LAST - $A2_T0):.0f}'" || echo -)
A2_BACKLOG=$backlog
A2_MCPU=$(pct "$cpu0" "$cpu1" "$(calc "$A2_T1 - $A2_T0")"); A2_RCPU=$(pct "$rcpu0" "$rcpu1" "$(calc "$A2_T1 - $A2_T0")")
A2_GAUGE0=$(since "$DRAIN_ZERO" "$A2_T0" 1)
dups; A2_DUPS=$DUPS
echo "   ${BINDS} events delivered in ${A2_SECS} s = ${A2_RATE} events/s (gauge read 0 after ${A2_GAUGE0} s); retries meanwhile: $(( retry1 - retry0 )); sent twice: ${A2_DUPS}; Maskline CPU ${A2_MCPU} %, receiver CPU ${A2_RCPU} %"

# --- SIP -------------------------------------------------------------------
TOTAL_BINDS=$(( 2 * BINDS ))
SPREAD=$(python3 bench/sip_calls.py csv "$BASE" "$API_KEY" "$TOTAL_BINDS" "$DATA/calls.csv")
echo "== ${SPREAD}"

# run_uac NAME RATE CALLS HOLD_MS: as in bench/sip_calls.sh; sets UAC_RC,
# UAC_WALL, UAC_OK, UAC_FAILED, UAC_RETRANS, and adds 4 events per
# successful call to EXPECTED.
run_uac() {
  local name=$1 rate=$2 calls=$3 hold=$4 dir="$DATA/$1"
  local limit t0 t1
  limit=$(call_limit "$rate")
  local timeout=$(( calls / rate + hold / 1000 + RECV_TIMEOUT_MS / 1000 + 20 ))
  mkdir -p "$dir"
  t0=$(now)
  set +e
  (cd "$dir" && exec sipp "127.0.0.1:${SIP_PORT}" -sf "$ROOT/bench/sipp/uac_bench.xml" \
    -inf "$DATA/calls.csv" \
    -i 127.0.0.1 -bind_local -p "$UAC_PORT" -t u1 -cp "$UAC_CTRL" -nostdin \
    -r "$rate" -rp 1000 -m "$calls" -d "$hold" -l "$limit" \
    -recv_timeout "$RECV_TIMEOUT_MS" -timeout "${timeout}s" -timeout_error \
    -buff_size 4194304 -max_recv_loops 10000 -max_sched_loops 10000 \
    -trace_stat -stf "$dir/stat.csv" -fd 1 \
    -trace_rtt -rtt_freq "$calls" \
    -trace_err -error_file "$dir/errors.log" \
    -trace_screen -screen_file "$dir/screen.log" \
    >/dev/null 2>"$dir/stderr.log") &
  UAC_PID=$!
  wait "$UAC_PID"
  UAC_RC=$?
  set -e
  UAC_PID=""
  t1=$(now)
  UAC_WALL=$(calc "f'{$t1 - $t0:.2f}'")
  read -r UAC_OK UAC_FAILED UAC_RETRANS _ <<<"$(python3 bench/sip_calls.py sippstat "$dir/stat.csv")"
  EXPECTED=$(( EXPECTED + 4 * UAC_OK ))
  CALLS_OK=$(( CALLS_OK + UAC_OK ))
  if [[ "$UAC_RC" != 0 || "$UAC_FAILED" != 0 || "$UAC_OK" != "$calls" ]]; then
    echo "   sipp ${name}: exit ${UAC_RC}, ${UAC_OK} of ${calls} successful, ${UAC_FAILED} failed; errors:"
    head -5 "$dir/errors.log" 2>/dev/null | sed 's/^/     /' || true
    tail -5 "$DATA/server.log" | sed 's/^/     server: /'
  fi
}

run_uac smoke 10 10 0
[[ "$UAC_OK" == 10 ]] || { echo "== smoke test (10 calls) failed" >&2; exit 1; }
drain smoke
[[ "$DRAIN_LAST" != - ]] || { echo "== smoke test: the 40 events of 10 calls were not delivered" >&2; exit 1; }
dups
echo "== smoke test: 10 calls bridged, their 40 events delivered"

# --- (b) backlog under SIP load -------------------------------------------
CALLS=$(( RATE * SECS ))
echo "== (b) ${RATE} calls/s for ${SECS} s (${CALLS} calls, hold ${HOLD_MS} ms): 4 events a call"
scrape "$DATA/m.b.before"
d0=$(recv_distinct)
cpu0=$(cpu_ticks "$SERVER_PID"); rcpu0=$(cpu_ticks "$RECV_PID")
B_T0=$(now)
run_uac b "$RATE" "$CALLS" "$HOLD_MS"
B_T1=$(now)
d1=$(recv_distinct)
cpu1=$(cpu_ticks "$SERVER_PID"); rcpu1=$(cpu_ticks "$RECV_PID")
B_OK=$UAC_OK; B_FAILED=$UAC_FAILED; B_RETRANS=$UAC_RETRANS
drain b
B_DRAINED=$DRAIN_OK
sleep 1.1 # one more sample after the drain
scrape "$DATA/m.b.after"
B_WIN=$(calc "$B_T1 - $B_T0")
read -r B_MAX B_MAX_AT B_SERIES <<<"$(python3 bench/events.py series "$DATA/samples" "$B_T0" "$(now)")"
B_MAX_AT=$(since "$B_MAX_AT" "$B_T0" 0)
B_DRAIN=$(since "$DRAIN_LAST" "$B_T1")
B_GAUGE0=$(since "$DRAIN_ZERO" "$B_T1" 1)
B_DURING=$(calc "f'{($d1 - $d0) / $B_WIN:.0f}'")
B_MCPU=$(pct "$cpu0" "$cpu1" "$B_WIN"); B_RCPU=$(pct "$rcpu0" "$rcpu1" "$B_WIN")
read -r _ B_P50 B_P99 <<<"$(python3 bench/events.py hist "$DATA/m.b.before" "$DATA/m.b.after" maskline_sip_setup_delay_seconds)"
read -r _ B_RTT50 B_RTT99 <<<"$(python3 bench/sip_calls.py rtt "$DATA/b"/*_rtt.csv)"
read -r _ B_LAG50 B_LAG99 <<<"$(python3 bench/events.py hist "$DATA/m.b.before" "$DATA/m.b.after" maskline_event_delivery_lag_seconds ms)"
echo "   sipp: ${B_OK} successful, ${B_FAILED} failed, ${B_RETRANS} retransmissions in ${UAC_WALL} s; setup delay p50/p99 ${B_P50}/${B_P99} µs; sipp INVITE->200 p50/p99 ${B_RTT50}/${B_RTT99} ms"
dups; B_DUPS=$DUPS
echo "   at sipp's exit the receiver had $(( d1 - d0 )) of the $(( 4 * B_OK )) call events (${B_DURING}/s over sipp's ${UAC_WALL} s); sent twice: ${B_DUPS}; Maskline CPU ${B_MCPU} %, receiver CPU ${B_RCPU} %"
echo "   backlog gauge each second from the start: ${B_SERIES}"
echo "   backlog max ${B_MAX} (${B_MAX_AT} s after the start); the last call event delivered ${B_DRAIN} s after sipp's exit (negative: before it), gauge 0 seen ${B_GAUGE0} s after it"
echo "   delivery lag (event created -> delivered) p50/p99: ${B_LAG50}/${B_LAG99} ms (buckets up to 1 s: '>1000' is past the last)"

# --- (c) intercept ---------------------------------------------------------
IC_CALLS=$(( IC_RATE * IC_SECS ))
ic_run() { # NAME: one run of (c); sets IC_P50, IC_P99, IC_N, IC_RTT50, IC_RTT99
  scrape "$DATA/m.$1.before"
  run_uac "$1" "$IC_RATE" "$IC_CALLS" "$HOLD_MS"
  sleep 0.5
  scrape "$DATA/m.$1.after"
  IC_OK=$UAC_OK; IC_FAILED=$UAC_FAILED
  read -r IC_N IC_P50 IC_P99 <<<"$(python3 bench/events.py hist "$DATA/m.$1.before" "$DATA/m.$1.after" maskline_sip_setup_delay_seconds)"
  read -r _ IC_RTT50 IC_RTT99 <<<"$(python3 bench/sip_calls.py rtt "$DATA/$1"/*_rtt.csv)"
  drain "$1"
}
echo "== (c) ${IC_RATE} calls/s for ${IC_SECS} s (${IC_CALLS} calls), without and then with an intercept answered after ${INTERCEPT_DELAY_MS} ms"
ic_run c-off
C0=("$IC_OK" "$IC_FAILED" "$IC_N" "$IC_P50" "$IC_P99" "$IC_RTT50" "$IC_RTT99")
echo "   without: ${IC_OK} successful, ${IC_FAILED} failed; setup delay p50/p99 ${IC_P50}/${IC_P99} µs; sipp INVITE->200 p50/p99 ${IC_RTT50}/${IC_RTT99} ms"
python3 bench/events.py webhook "$BASE" "$API_KEY" \
  "{\"url\":\"${RECV}/hook\",\"intercept\":{\"url\":\"${ICPT}/intercept\",\"fallback\":\"allow\",\"timeout_ms\":800}}"
ic_run c-on
# The intercept receiver served only this run: its count and how long it
# really held each answer (asyncio's 1 ms sleep).
read -r ICPT_N ICPT_H50 ICPT_H99 ICPT_HMAX <<<"$(curl -fsS "$ICPT/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin); h = s["intercept_hold_ms"]
print(s["intercepts"], h["p50"], h["p99"], h["max"])')"
C1=("$IC_OK" "$IC_FAILED" "$IC_N" "$IC_P50" "$IC_P99" "$IC_RTT50" "$IC_RTT99")
read -r ICN ICP50 ICP99 <<<"$(python3 bench/events.py hist "$DATA/m.c-on.before" "$DATA/m.c-on.after" maskline_intercept_seconds)"
echo "   with:    ${IC_OK} successful, ${IC_FAILED} failed; setup delay p50/p99 ${IC_P50}/${IC_P99} µs; sipp INVITE->200 p50/p99 ${IC_RTT50}/${IC_RTT99} ms"
echo "   the intercept receiver answered ${ICPT_N} callbacks, holding each p50/p99/max ${ICPT_H50}/${ICPT_H99}/${ICPT_HMAX} ms; maskline_intercept_seconds: ${ICN} asked, p50/p99 ${ICP50}/${ICP99} µs (coarse buckets: 0.5, 1, 2.5, 5 ms)"
grep '^maskline_intercepts_total' "$DATA/m.c-on.after" | sed 's/^/   /' || true
diff_us() { [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]] && echo $(( $2 - $1 )) || echo -; }

# --- summary ----------------------------------------------------------------
read -r uok ufailed _ <<<"$(python3 bench/sip_calls.py sippstat "$DATA/uas/stat.csv")"
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); Maskline, wrk or sipp, and the Python receivers share them."
echo "One tenant, webhook on every event type, ${MASKLINE_WEBHOOK_CONCURRENCY:-16} deliveries in flight; ${SPREAD}."
echo
echo "| figure | result |"
echo "| --- | --- |"
echo "| (a1) events delivered/s while ${BINDS} bindings are created | ${A1_RATE}/s (binds: ${A1_BINDS}/s; all delivered ${A1_TAIL} s after the last bind; ${A1_DUPS} sent twice) |"
echo "| (a2) drain of a ${A2_BACKLOG}-event backlog | ${A2_RATE} events/s (${A2_SECS} s; ${A2_DUPS} sent twice) |"
echo "| (b) backlog max at ${RATE} calls/s for ${SECS} s | ${B_MAX} (${B_OK} calls, ${B_FAILED} failed; receiver had $(( d1 - d0 )) of $(( 4 * B_OK )) call events at sipp's exit; lag p50/p99 ${B_LAG50}/${B_LAG99} ms; ${B_DUPS} sent twice) |"
echo "| (b) drain after sipp's exit | last event ${B_DRAIN} s after it; gauge 0 seen after ${B_GAUGE0} s |"
echo "| (c) setup delay p50 / p99 without intercept | ${C0[3]} / ${C0[4]} µs (${C0[2]} calls) |"
echo "| (c) setup delay p50 / p99 with intercept (${INTERCEPT_DELAY_MS} ms) | ${C1[3]} / ${C1[4]} µs (${C1[2]} calls) |"
echo "| (c) added by the intercept, p50 / p99 | $(diff_us "${C0[3]}" "${C1[3]}") / $(diff_us "${C0[4]}" "${C1[4]}") µs (of which the receiver's sleep: p50 ${ICPT_H50} ms, p99 ${ICPT_H99} ms) |"
echo "| (c) sipp INVITE->200 p50 / p99, without / with | ${C0[5]} / ${C0[6]} ms, ${C1[5]} / ${C1[6]} ms |"
echo
echo "== server RSS: $(awk '/VmRSS/ {print $2, $3}' "/proc/$SERVER_PID/status" 2>/dev/null); sipp UAS whole run: ${uok} successful, ${ufailed} failed"
python3 - "$RECV" "$(( 2 * BINDS ))" "$CALLS_OK" <<'PY'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/stats"))
binds, calls = int(sys.argv[2]), int(sys.argv[3])
want = {"binding.created": binds, "call.started": calls, "call.ringing": calls,
        "call.answered": calls, "call.ended": calls}
got = s["by_type"]
verdict = "as expected" if got == want else "NOT as expected: wanted %s" % want
print("== receiver: %d distinct events %s (%s), %d requests (%d duplicates)" % (
    s["distinct"], json.dumps(got, sort_keys=True), verdict, s["requests"],
    s["requests"] - s["distinct"]))
PY
{ grep -c . "$DATA/server.log" || true; } | sed 's/^/== server log lines (warn and above): /'
grep -m5 -i 'warn\|error' "$DATA/server.log" | sed 's/^/   /' || true
if [[ "$B_DRAINED" != 1 ]]; then
  echo "== the backlog of (b) did not drain within ${DRAIN_TIMEOUT} s" >&2
  exit 1
fi
