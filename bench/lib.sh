# Helpers shared by the bench scripts (sourced, not run). They read the
# caller's globals where noted: HOLD_MS (call_limit), BASE (scrape), DATA
# (children_cpu).

# A port free for both TCP and UDP on 127.0.0.1 (Maskline's SIP address
# takes both), not one handed out earlier in this run.
USED_PORTS=" "
free_port() {
  local p
  while :; do
    p=$(python3 -c '
import socket
t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p))
print(p)' 2>/dev/null) || continue
    [[ "$USED_PORTS" == *" $p "* ]] || break
  done
  USED_PORTS+="$p "
  echo "$p"
}

stop() { # pid: SIGTERM, up to 10 s, then SIGKILL
  local pid=$1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Calls a sipp may hold at once (-l) at RATE calls/s: twice what the rate
# keeps up, but below the open-file limit (sipp warns past it: it keeps room
# for a socket a call).
call_limit() {
  local want=$(( $1 * (HOLD_MS + 1000) / 1000 * 2 + 100 )) cap=$(( $(ulimit -n) - 1000 ))
  echo $(( want < cap ? want : cap ))
}

TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
scrape() { curl -fsS "$BASE/metrics" >"$1"; }

# Sets CHILD_CPU: CPU seconds (user + system) of this shell's children that
# have exited. `times` must run in this shell (not in a pipe or $(...)).
children_cpu() {
  times >"$DATA/times"
  CHILD_CPU=$(awk 'NR == 2 {
    n = split($0, f, " "); s = 0
    for (i = 1; i <= n; i++) { split(f[i], p, "m"); s += p[1] * 60 + p[2] }
    print s }' "$DATA/times")
}
