#!/usr/bin/env bash
# Calls per second through the SIP B2BUA: sipp UAC -> Maskline -> sipp UAS,
# all on 127.0.0.1 over UDP.
#
# Builds the release binary, starts `maskline serve` on free loopback ports
# with a fresh data directory and MASKLINE_SIP_OUTBOUND pointing at a sipp
# UAS (bench/sipp/uas_bench.xml: 180, 200, waits for the BYE). Creates a
# tenant, NUMBERS virtual numbers and BINDINGS axb bindings with all-distinct
# parties, and writes them as a sipp injection file (A;X). Then, for each rate
# in RATES, a sipp UAC (bench/sipp/uac_bench.xml) places RATE * SECS calls at
# RATE calls/s, each held HOLD_MS before the caller hangs up, one binding per
# call in turn. After each step it prints the calls sipp counted as failed,
# Maskline's CPU, and the p50/p99 of Maskline's own setup-delay histogram
# (maskline_sip_setup_delay_seconds: INVITE in -> INVITE out), taken from the
# difference of two /metrics scrapes. It stops after the first step with a
# failed call and reports the highest rate with none.
#
#   bench/sip_calls.sh                          # 1000..5000 calls/s, 20 s each
#   RATES="100 200" SECS=5 bench/sip_calls.sh   # a quick functional check
#
# Settings (environment): RATES ("1000 2000 3000 4000 5000"), SECS (20),
# HOLD_MS (1000), BINDINGS (100000), NUMBERS (1000), CONNS (32: wrk's HTTP
# connections creating the bindings), RECV_TIMEOUT_MS (5000: a call
# that waits longer for a message fails), KEEP=1 keeps the work directory
# (sipp statistics, error logs, the server log), MASKLINE_BIN (a maskline
# binary to run instead of building this tree's, e.g. one built from an
# older commit in a worktree), MASKLINE_RTP_PORTS (passed to the server: the
# relay's port range, 2 ports a call; the default 20000-29999 holds about
# 2,500 calls at once, too few for a 1 s hold at 3,000 calls/s and more;
# the relay skips a port another program holds). The scenario sends no RTP:
# each call still binds its 2 ports and its relay session (anchoring).
#
# Needs sipp (3.6: apt-get install -y sip-tester), wrk, curl and python3. Every
# process it starts is stopped on exit. Only 127.0.0.1 (sipp also binds its
# UDP control port, given with -cp, on all addresses: it has no option to
# bind that one to 127.0.0.1).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/lib.sh
RATES=${RATES:-1000 2000 3000 4000 5000}
SECS=${SECS:-20}
HOLD_MS=${HOLD_MS:-1000}
BINDINGS=${BINDINGS:-100000}
NUMBERS=${NUMBERS:-1000}
CONNS=${CONNS:-32}
RECV_TIMEOUT_MS=${RECV_TIMEOUT_MS:-5000}

for tool in sipp wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y sip-tester wrk)" >&2; exit 1; }
done

if [[ -n "${MASKLINE_BIN:-}" ]]; then
  BIN=$MASKLINE_BIN
  [[ -x "$BIN" ]] || { echo "MASKLINE_BIN=$BIN is not an executable" >&2; exit 1; }
  echo "== using $BIN (not built here)"
else
  echo "== building (cargo build --release -p maskline)"
  cargo build --release -p maskline 2>&1 | tail -1
  BIN=${CARGO_TARGET_DIR:-target}/release/maskline
fi

HTTP_PORT=$(free_port)
SIP_PORT=$(free_port)
UAS_PORT=$(free_port)
UAS_CTRL=$(free_port)
UAC_PORT=$(free_port)
UAC_CTRL=$(free_port)
BASE="http://127.0.0.1:${HTTP_PORT}"
DATA=$(mktemp -d /tmp/maskline-sip-bench.XXXXXX)
ADMIN="bench-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
SERVER_PID=""
UAS_PID=""
UAC_PID=""
WRK_PID=""

cleanup() {
  stop "$WRK_PID"
  stop "$UAC_PID"
  stop "$UAS_PID"
  stop "$SERVER_PID"
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "== work directory kept: $DATA"
  else
    rm -rf "$DATA"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1)"

# The largest rate, which sets both sipps' call limit (-l).
MAX_RATE=$(printf '%s\n' $RATES | sort -n | tail -1)

# The UAS: the outbound gateway, answering every call.
mkdir -p "$DATA/uas"
(cd "$DATA/uas" && exec sipp -sf "$ROOT/bench/sipp/uas_bench.xml" \
  -i 127.0.0.1 -bind_local -p "$UAS_PORT" -t u1 -cp "$UAS_CTRL" -nostdin \
  -l "$(call_limit "$MAX_RATE")" -buff_size 4194304 \
  -trace_stat -stf "$DATA/uas/stat.csv" -fd 1 \
  -trace_err -error_file "$DATA/uas/errors.log" >/dev/null 2>"$DATA/uas/stderr.log") &
UAS_PID=$!

echo "== relay ports (MASKLINE_RTP_PORTS; ignored by a build without media anchoring): ${MASKLINE_RTP_PORTS:-20000-29999}"
echo "== starting maskline serve: HTTP 127.0.0.1:${HTTP_PORT}, SIP 127.0.0.1:${SIP_PORT}, outbound (sipp UAS) 127.0.0.1:${UAS_PORT}"
MASKLINE_DATA_DIR="$DATA/db" \
MASKLINE_HTTP_LISTEN="127.0.0.1:${HTTP_PORT}" \
MASKLINE_SIP_LISTEN="127.0.0.1:${SIP_PORT}" \
MASKLINE_SIP_OUTBOUND="127.0.0.1:${UAS_PORT}" \
MASKLINE_SIP_TRUSTED="127.0.0.1/32" \
MASKLINE_ADMIN_KEY="$ADMIN" \
MASKLINE_RATE_LIMIT=0 \
MASKLINE_LOG="${MASKLINE_LOG:-warn}" \
MASKLINE_RTP_PORTS="${MASKLINE_RTP_PORTS:-20000-29999}" \
  "$BIN" serve >"$DATA/server.log" 2>&1 &
SERVER_PID=$!

# `maskline ready` is logged at info, below MASKLINE_LOG=warn: poll /healthz
# (served once SIP is bound too).
for _ in $(seq 1 300); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited:" >&2; cat "$DATA/server.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$BASE/healthz" >/dev/null || { echo "server not healthy after 30 s:" >&2; cat "$DATA/server.log" >&2; exit 1; }
kill -0 "$UAS_PID" 2>/dev/null || { echo "sipp UAS exited:" >&2; cat "$DATA/uas/stderr.log" >&2; exit 1; }

echo "== provisioning: 1 tenant, ${NUMBERS} numbers, ${BINDINGS} axb bindings (wrk, ${CONNS} connections)"
API_KEY=$(python3 bench/sip_calls.py setup "$BASE" "$ADMIN" "$NUMBERS")
# wrk runs for its -d unless interrupted: SIGINT once both threads are done.
wrk -t 2 -c "$CONNS" -d 120s -s bench/sip_binds.lua "$BASE" \
  -- "$API_KEY" "$BINDINGS" 2 "$DATA/binds.done." >"$DATA/binds.out" 2>"$DATA/binds.err" &
WRK_PID=$!
while kill -0 "$WRK_PID" 2>/dev/null; do
  [[ -e "$DATA/binds.done.1" && -e "$DATA/binds.done.2" ]] && kill -INT "$WRK_PID" 2>/dev/null
  sleep 0.2
done
wait "$WRK_PID" || { cat "$DATA/binds.out" "$DATA/binds.err" >&2; exit 1; }
WRK_PID=""
grep '^RESULT' "$DATA/binds.out"
grep -q "^RESULT created=${BINDINGS} non201=0 " "$DATA/binds.out" \
  || { echo "binding creation failed:" >&2; cat "$DATA/binds.err" >&2; exit 1; }
SPREAD=$(python3 bench/sip_calls.py csv "$BASE" "$API_KEY" "$BINDINGS" "$DATA/calls.csv")
echo "$SPREAD"

# run_uac NAME RATE CALLS HOLD_MS: one sipp UAC run in $DATA/NAME; sets
# UAC_RC, UAC_CPU (its CPU seconds) and UAC_WALL. The UAC's call limit (-l)
# leaves room for twice the calls RATE * (HOLD + 1 s) keeps up at once, so it
# never holds the rate back.
run_uac() {
  local name=$1 rate=$2 calls=$3 hold=$4 dir="$DATA/$1"
  local limit
  limit=$(call_limit "$rate")
  local timeout=$(( calls / rate + hold / 1000 + RECV_TIMEOUT_MS / 1000 + 20 ))
  mkdir -p "$dir"
  local t0 t1 c0
  children_cpu
  c0=$CHILD_CPU
  t0=$(date +%s.%N)
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
  t1=$(date +%s.%N)
  children_cpu
  UAC_CPU=$(python3 -c "print($CHILD_CPU - $c0)")
  UAC_WALL=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
}

show_failure() { # dir
  echo "-- sipp exit code ${UAC_RC}; stderr:"
  tail -5 "$1/stderr.log" 2>/dev/null || true
  echo "-- sipp errors (first 10 lines):"
  head -10 "$1/errors.log" 2>/dev/null || true
  echo "-- sipp final screen:"
  grep -v '^\s*$' "$1/screen.log" 2>/dev/null | tail -40 || true
  echo "-- maskline log (tail):"
  tail -10 "$DATA/server.log"
}

# One call first: the path works before anything is measured.
run_uac smoke 10 10 0
read -r ok failed _ <<<"$(python3 bench/sip_calls.py sippstat "$DATA/smoke/stat.csv")"
if [[ "$UAC_RC" != 0 || "$failed" != 0 || "$ok" != 10 ]]; then
  echo "== smoke test (10 calls at 10/s) failed: ${ok} successful, ${failed} failed" >&2
  show_failure "$DATA/smoke" >&2
  exit 1
fi
echo "== smoke test: 10 calls bridged"

ROWS=()
BEST=""
BEST_P99=""
STOPPED=""
for rate in $RATES; do
  calls=$(( rate * SECS ))
  echo "== step: ${rate} calls/s, ${calls} calls, hold ${HOLD_MS} ms"
  scrape "$DATA/m.before"
  cpu0=$(cpu_ticks "$SERVER_PID"); uas0=$(cpu_ticks "$UAS_PID")
  t0=$(date +%s.%N)
  run_uac "rate-$rate" "$rate" "$calls" "$HOLD_MS"
  t1=$(date +%s.%N)
  cpu1=$(cpu_ticks "$SERVER_PID"); uas1=$(cpu_ticks "$UAS_PID")
  sleep 0.5 # CDRs of the last calls
  scrape "$DATA/m.after"
  dir="$DATA/rate-$rate"
  read -r ok failed retrans ooc dead wdminor wdmajor <<<"$(python3 bench/sip_calls.py sippstat "$dir/stat.csv")"
  read -r hcount p50 p99 <<<"$(python3 bench/sip_calls.py hist "$DATA/m.before" "$DATA/m.after")"
  read -r _ rtt50 rtt99 <<<"$(python3 bench/sip_calls.py rtt "$dir"/*_rtt.csv)"
  outcomes=$(python3 bench/sip_calls.py outcomes "$DATA/m.before" "$DATA/m.after")
  wall=$(python3 -c "print($t1 - $t0)")
  mcpu=$(python3 -c "print(f'{($cpu1 - $cpu0) / $TICK / $wall * 100:.0f}')")
  scpu=$(python3 -c "print(f'{(($uas1 - $uas0) / $TICK + $UAC_CPU) / $wall * 100:.0f}')")
  achieved=$(python3 -c "print(f'{$ok / max($UAC_WALL - $HOLD_MS / 1000, 0.001):.0f}')")
  echo "   sipp UAC: exit ${UAC_RC}, ${ok} successful, ${failed} failed, ${retrans} retransmissions, ${ooc} out-of-call and ${dead} dead-call messages, watchdog trips ${wdminor} minor / ${wdmajor} major, ${UAC_WALL} s"
  echo "   maskline: ${hcount} INVITEs bridged, calls ended by outcome: ${outcomes}"
  ROWS+=("| ${rate} | ${calls} | ${ok} | ${failed} | ${retrans} | ${achieved} | ${mcpu} % | ${scpu} % | ${p50} | ${p99} | ${rtt50} | ${rtt99} |")
  if [[ "$UAC_RC" != 0 || "$failed" != 0 || "$ok" != "$calls" ]]; then
    STOPPED=$rate
    show_failure "$dir"
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || { STOPPED=$rate; echo "   MASKLINE EXITED during the step"; }
  kill -0 "$UAS_PID" 2>/dev/null || { STOPPED=$rate; echo "   THE SIPP UAS EXITED during the step"; }
  [[ -z "$STOPPED" ]] || break
  BEST=$rate
  BEST_P99=$p99
  sleep 1
done

echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); sipp UAC, Maskline and sipp UAS share them."
echo "${SPREAD} (of ${NUMBERS} numbers); hold ${HOLD_MS} ms; ${SECS} s per step; UDP on 127.0.0.1."
echo
echo "| calls/s | calls | successful | failed | retrans | achieved calls/s | Maskline CPU | sipp CPU (UAC+UAS) | setup delay p50 (µs) | p99 (µs) | sipp INVITE→200 p50 (ms) | p99 (ms) |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${ROWS[@]}"
echo
echo "CPU is percent of one core (200 % = both cores). Setup delay is Maskline's histogram"
echo "maskline_sip_setup_delay_seconds (INVITE in -> INVITE out), interpolated within buckets."
echo "sipp INVITE->200 is end to end through Maskline and the UAS, on sipp's 1 ms clock."
echo "== server RSS: $(awk '/VmRSS/ {print $2, $3}' "/proc/$SERVER_PID/status" 2>/dev/null)"
sleep 1 # the UAS dumps its statistics every second
read -r uok ufailed uretrans uooc udead _ <<<"$(python3 bench/sip_calls.py sippstat "$DATA/uas/stat.csv")"
echo "== sipp UAS, whole run: ${uok} successful, ${ufailed} failed, ${uretrans} retransmissions, ${uooc} out-of-call and ${udead} dead-call messages"
if [[ -n "$STOPPED" ]]; then
  echo "== stopped at ${STOPPED} calls/s: failed calls (see above)"
fi
if [[ -n "$BEST" ]]; then
  echo "== highest rate with zero failed calls: ${BEST} calls/s (setup delay p99 there: ${BEST_P99} µs)"
  if (( BEST >= 3000 )) && [[ "$BEST_P99" =~ ^[0-9]+$ ]] && (( BEST_P99 <= 1000 )); then
    echo "== target (>= 3,000 calls/s with zero failed calls, p99 <= 1 ms): met"
  else
    echo "== target (>= 3,000 calls/s with zero failed calls, p99 <= 1 ms): not met in this run"
  fi
else
  echo "== no step completed without failed calls" >&2
  exit 1
fi
