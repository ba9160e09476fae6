#!/usr/bin/env bash
# Media relay: Maskline's RTP relay (maskline_media::relay::Relay) against
# rtpengine in userspace mode, the same G.711 load in the same run
# (BENCHMARKS.md §8).
#
# Builds the load tool (crates/media/examples/relay_load.rs, release) and runs
# a ladder of concurrent calls. For each step it runs every target in TARGETS
# one after the other (interleaved, so a change in the machine's background
# load hits them alike); each run is a fresh relay process:
#
#   maskline:W   `relay_load serve-maskline` with W worker threads: a Relay
#                with one session per call, both legs PCMU, bridged
#   rtpengine:T  `rtpengine --table=-1` (userspace only) with T threads, one
#                call per ng offer + answer
#   direct       no relay: the generator's sockets send to each other (what
#                the generator itself adds to delay and jitter)
#
# Each call is two G.711 streams (caller, callee), each 172-byte RTP (160
# bytes of PCMU) every 20 ms to the relay's port facing it: 100 packets/s a
# call. The generator uses a few UDP sockets on 127.0.0.1 for all calls
# (SOCKETS on each side, large receive buffers), sends with sendmmsg in
# slices of SLICE_US and receives with recvmmsg; the arrival time is the
# kernel's receive stamp (SO_TIMESTAMPNS); see relay_load.rs. A run sends for
# WARMUP + SECS seconds and measures the last SECS: loss (sent − received),
# where lost packets were dropped (the generator's sockets or the relay's, from
# /proc/net/udp), duplicates, reordering, packets on the wrong socket or from
# the wrong source, one-way delay and the jitter the path adds (|arrival
# interval − sending interval| of consecutive packets), the relay's CPU
# (/proc/PID/stat) and its RSS with no call and with the calls set up, and the
# generator's own CPU (it shares the cores).
#
#   bench/media_relay.sh                                   # the ladder, ~10 min
#   CALLS="500 2000" SECS=10 bench/media_relay.sh          # a quicker look
#   TARGETS="direct maskline:1" CALLS=1000 bench/media_relay.sh
#   GEN_CPUS=0 RELAY_CPUS=1 SENDERS=1 CALLS="250 500 750 1000 1250" \
#     TARGETS="direct maskline:1 rtpengine:1" bench/media_relay.sh   # one core each
#
# Settings (environment): CALLS ("250 500 1000 1500 2000 2500"); SECS (15);
# WARMUP (3); TARGETS ("direct maskline:1 maskline:2 rtpengine:2"); REPEAT (1:
# runs of each target per step); SENDERS (1) and RECEIVERS (1): the
# generator's threads; SOCKETS (2: the generator's sockets on each side);
# SLICE_US (100), TX_BATCH (16), RX_NAP_US (200): see relay_load.rs; PORTS
# (14000-25999: the relays' port range, 4 ports a call, below the ephemeral
# range the generator's sockets come from); WAIT_IDLE (600: seconds to wait
# before a run while a rustc, cc, ld, cargo or sipp is running, then until
# the machine has been idle for IDLE_SECS (5) in a row; 0: do not wait);
# MAX_OTHER (15) and
# RETRIES (3): a run during which other processes used more than MAX_OTHER %
# of a core (the machine's busy time from /proc/stat less the relay's and the
# generator's; the two accountings disagree by up to about 30 %, so this only
# tells quiet from busy) is run again after 20 s, up to RETRIES times, and the
# quietest attempt kept; OUT (a file to append every attempt's raw result
# line to); GEN_ARGS (more options for `relay_load drive`); GEN_CPUS and
# RELAY_CPUS (taskset -c lists pinning the generator and the relay);
# RT_PRIORITY (0: the relay's threads under SCHED_FIFO at this priority:
# Maskline's RTP workers as `MASKLINE_RTP_PRIORITY` sets them, rtpengine's
# with --scheduling=fifo --priority; needs root or CAP_SYS_NICE).
#
# Needs rtpengine (Debian's rtpengine-daemon: installed with apt-get when
# missing, which needs root), timeout (coreutils), cargo. Every process it
# starts is stopped at the end of its run (rtpengine also by `timeout`);
# traffic stays on 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
CALLS=${CALLS:-250 500 1000 1500 2000 2500}
SECS=${SECS:-15}
WARMUP=${WARMUP:-3}
TARGETS=${TARGETS:-direct maskline:1 maskline:2 rtpengine:2}
REPEAT=${REPEAT:-1}
SENDERS=${SENDERS:-1}
RECEIVERS=${RECEIVERS:-1}
SOCKETS=${SOCKETS:-2}
SLICE_US=${SLICE_US:-100}
TX_BATCH=${TX_BATCH:-16}
RX_NAP_US=${RX_NAP_US:-200}
PORTS=${PORTS:-14000-25999}
WAIT_IDLE=${WAIT_IDLE:-600}
IDLE_SECS=${IDLE_SECS:-5}
MAX_OTHER=${MAX_OTHER:-15}
RETRIES=${RETRIES:-3}
OUT=${OUT:-}
GEN_ARGS=${GEN_ARGS:-}
RELAY_CPUS=${RELAY_CPUS:-}
RT_PRIORITY=${RT_PRIORITY:-0}
GEN_CPUS=${GEN_CPUS:-}
PIN=()
[[ -n "$GEN_CPUS" ]] && PIN=(taskset -c "$GEN_CPUS")

if [[ " $TARGETS " == *" rtpengine"* ]] && ! command -v rtpengine >/dev/null; then
  echo "== rtpengine not found: installing Debian's rtpengine-daemon (apt-get install -y rtpengine-daemon)"
  if [[ $(id -u) -ne 0 ]]; then
    echo "needs root to install it; run: sudo apt-get install -y rtpengine-daemon" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y rtpengine-daemon >/dev/null \
    || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y rtpengine-daemon >/dev/null; } \
    || { echo "could not install rtpengine-daemon" >&2; exit 1; }
fi
command -v timeout >/dev/null || { echo "needs timeout (coreutils)" >&2; exit 1; }
if pgrep -x rtpengine >/dev/null; then
  echo "== note: an rtpengine is already running (pid $(pgrep -x rtpengine | tr '\n' ' ')); it is left alone" \
    "(ours listen on their own ports), but it shares the CPU if it has traffic"
fi

# Sockets: each relay 2 a call (Maskline) or 4 (rtpengine).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== building (cargo build --release -p maskline-media --example relay_load${CARGO_TARGET_DIR:+, CARGO_TARGET_DIR=$CARGO_TARGET_DIR})"
BIN=$(cargo build --release -p maskline-media --example relay_load --message-format=json-render-diagnostics \
  | grep -o '"executable":"[^"]*relay_load"' | tail -1 | cut -d'"' -f4)
[[ -x "$BIN" ]] || { echo "build failed" >&2; exit 1; }

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), Linux $(uname -r), $(rtpengine --version 2>&1 | grep -o 'Version: .*' || true)"
echo "== relay code: commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain crates/media/src 2>/dev/null | grep -q . && echo ', crates/media/src modified' || true)"
echo "== calls: $CALLS; targets: $TARGETS; ${WARMUP} s warm-up + ${SECS} s measured a run"

field() { # line key: the value of key=value in a result line
  tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}

BUILDERS="rustc cc ld cargo sipp"
builder_running() {
  local n
  for n in $BUILDERS; do pgrep -x "$n" >/dev/null && return 0; done
  return 1
}

# The machine's idle share over 1 s, in percent of all CPUs.
idle_pct() {
  local a b
  a=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); print int(100 * (y[1] - x[1]) / (y[2] - x[2] + 0.001)) }'
}

# Waits (up to WAIT_IDLE s) until no build or sipp runs and the machine has
# been at least 90 % idle for IDLE_SECS seconds in a row. BUSY says whether
# the wait gave up.
wait_idle() {
  local waited=0 quiet=0
  BUSY=-
  (( WAIT_IDLE == 0 )) && return
  while (( waited < WAIT_IDLE )); do
    if ! builder_running && (( $(idle_pct) >= 90 )); then
      quiet=$(( quiet + 1 ))
      (( quiet >= IDLE_SECS )) && return
    else
      (( quiet == 0 && waited == 0 )) && echo "   (the machine is busy: waiting up to ${WAIT_IDLE} s)"
      quiet=0
      sleep 2
      waited=$(( waited + 2 ))
    fi
    waited=$(( waited + 1 ))
  done
  BUSY=busy
}

RESULTS=$(mktemp /tmp/media-relay-bench.XXXXXX)
trap 'rm -f "$RESULTS"' EXIT

for calls in $CALLS; do
  for _ in $(seq 1 "$REPEAT"); do
    for t in $TARGETS; do
      name=${t%%:*}
      threads=${t#*:}
      [[ "$threads" == "$t" ]] && threads=1
      args=(drive --target "$name" --calls "$calls" --secs "$SECS" --warmup "$WARMUP"
            --senders "$SENDERS" --receivers "$RECEIVERS" --sockets "$SOCKETS"
            --slice-us "$SLICE_US" --tx-batch "$TX_BATCH" --rx-nap-us "$RX_NAP_US"
            --ports "$PORTS" --rt-priority "$RT_PRIORITY" $GEN_ARGS)
      [[ -n "$RELAY_CPUS" ]] && args+=(--relay-cpus "$RELAY_CPUS")
      case $name in
        maskline) args+=(--workers "$threads") ;;
        rtpengine) args+=(--rtpengine-threads "$threads") ;;
      esac
      echo "-- $calls calls, $t"
      best="" best_other=""
      for attempt in $(seq 1 "$RETRIES"); do
        wait_idle
        if ! line=$("${PIN[@]}" "$BIN" "${args[@]}" | grep '^result '); then
          echo "   run failed" >&2
          continue
        fi
        line+=" busy=$BUSY"
        [[ -n "$OUT" ]] && echo "$line" >>"$OUT"
        other=$(field "$line" other_cpu_pct)
        if [[ -z "$best" ]] || awk -v a="$other" -v b="$best_other" 'BEGIN { exit !(a < b) }'; then
          best=$line best_other=$other
        fi
        if awk -v a="$other" -v m="$MAX_OTHER" 'BEGIN { exit !(a <= m) }'; then
          break
        fi
        echo "   other processes used ${other} % of a core during the run (over ${MAX_OTHER} %): again in 20 s"
        sleep 20
      done
      [[ -n "$best" ]] && echo "$best" | tee -a "$RESULTS"
    done
  done
done

echo
echo "| calls | relay | packets/s sent | lost | dropped in relay / generator sockets | reord. | delay p50 / p99 | jitter p50 / p99 / max | relay CPU | µs CPU a packet | generator CPU | gen. µs a packet | other CPU | KB a call | late sends |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
awk '{
  delete f
  for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  relay = f["target"]
  if (f["workers"] != "-") relay = relay ":" f["workers"]
  printf "| %s | %s | %d | %s (%s %%) | %s / %s | %s | %s / %s µs | %s / %s / %s µs | %s %% | %s | %s %% | %s | %s %%%s | %s | %s |\n",
    f["calls"], relay, f["achieved_pps"], f["lost"], f["loss_pct"], f["relay_sock_drops"], f["gen_sock_drops"], f["reorders"],
    f["lat_p50_us"], f["lat_p99_us"], f["jit_p50_us"], f["jit_p99_us"], f["jit_max_us"],
    f["relay_cpu_pct"], f["relay_us_per_pkt"], f["gen_cpu_pct"], f["gen_us_per_pkt"], f["other_cpu_pct"],
    (f["busy"] == "-" ? "" : " (busy)"), f["kb_per_call"], f["late_sends"]
  if (f["dups"] + f["misrouted"] + f["foreign"] + f["send_errors"] + f["user_stamps"] > 0)
    printf "|   | (%s calls, %s: dups %s, wrong socket %s, wrong source %s, foreign %s, send errors %s, user stamps %s) |\n",
      f["calls"], relay, f["dups"], f["wrong_socket"], f["wrong_source"], f["foreign"], f["send_errors"], f["user_stamps"]
}' "$RESULTS"
echo
echo "Packets/s sent: the measured packets over the time the generator took to send them (the offered rate, 100 a call, unless it fell behind: see late sends)."
echo "CPU in % of one core (200 % = the machine). Jitter: |arrival interval − sending interval| of consecutive packets of a stream."
echo "Generator µs a packet: its CPU over the packets it sent and received. Dropped: full receive buffers, whole run (/proc/net/udp)."
