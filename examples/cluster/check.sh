#!/usr/bin/env bash
# Proves examples/cluster/kamailio.cfg on loopback, with sipp standing in for
# the trunk and for two Maskline nodes:
#   1. 200 calls are all set up and torn down, and spread over both nodes
#      (ACK and BYE reach the node through the proxy: Record-Route/Route);
#   2. node 1 is killed: 100 more calls all succeed (failover), node 1 is
#      marked down, and later calls skip it;
#   3. node 1 comes back refusing calls with 503 (as a draining node would
#      refuse INVITEs): the probes take it in again, and 50 calls all succeed
#      (5xx failover to node 2);
#   4. node 1 rings then fails with 500: those calls fail and are not tried
#      again on node 2 (no second dialling after the callee was alerted);
#   5. the trunk cancels calls while they ring: the CANCEL reaches the node,
#      the 487 comes back, and no other node is tried;
#   6. both nodes die: a call tries both and gets 503; once both are marked
#      down, calls and OPTIONS get 503 at once.
# Also checks that the proxy answers OPTIONS itself (200).
#
# Needs kamailio (with kamcmd) and sipp on PATH; installs nothing. Binds only
# 127.0.0.1, picks free ports, stops everything it started, and takes about
# 20 s (hard limit CHECK_TIME_LIMIT, 85 s). Exit status 0 = all checks
# passed. KEEP=1 keeps the work directory (logs, sipp message traces).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CFG=$HERE/kamailio.cfg
IP=127.0.0.1

for bin in kamailio kamcmd sipp; do
    command -v "$bin" >/dev/null || { echo "check.sh: $bin not on PATH" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/maskline-cluster.XXXXXX")
PIDS=()
WATCHDOG=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 20); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
        echo "check.sh: logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'echo "check.sh: over the time limit" >&2; exit 124' TERM
# The whole run is bounded: every wait below has its own timeout too.
# The watchdog stops this script's children (by parent pid) so that a hung
# foreground command cannot delay the cleanup.
(
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "${CHECK_TIME_LIMIT:-85}" & s=$!
    wait "$s"
    kill -TERM $$ 2>/dev/null
    pkill -TERM -P $$ 2>/dev/null
) &
WATCHDOG=$!

START=$SECONDS
PASSED=0
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { PASSED=$((PASSED + 1)); echo "ok: $*"; }

# --- free ports -------------------------------------------------------------
TAKEN=" "
free_port() {
    local p hex
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        hex=$(printf ':%04X ' "$p")
        case $TAKEN in *" $p "*) continue ;; esac
        if ! grep -qi "$hex" /proc/net/udp /proc/net/udp6 2>/dev/null; then
            TAKEN="$TAKEN$p "
            echo "$p"
            return 0
        fi
    done
    return 1
}
KPORT=$(free_port); N1PORT=$(free_port); N2PORT=$(free_port); UACPORT=$(free_port)
N1=sip:$IP:$N1PORT
N2=sip:$IP:$N2PORT

# --- sipp scenarios -------------------------------------------------------
# A node: like sipp's built-in uas, but it copies Record-Route into its
# responses (RFC 3261 12.1.1, as Maskline does) and requires the ACK. It
# rings for 100 ms first: 180 and 200 sent back to back can be reordered
# by the proxy's parallel workers, which sipp would count as a failure.
cat > "$WORK/node.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="node">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="100"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=node 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <timewait milliseconds="2000"/>
</scenario>
EOF

# A node that refuses every call at once with 503 (as a draining Maskline
# does), and one that rings then fails with 500 (a failure after alerting).
refusing_node() { # $1 = file, $2 = status line, $3 = 1 to ring first
    {
        echo '<?xml version="1.0" encoding="ISO-8859-1" ?>'
        echo '<scenario name="refusing-node">'
        echo '  <recv request="INVITE"/>'
        if [ "$3" = 1 ]; then
            cat <<'EOF'
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="100"/>
EOF
        fi
        cat <<EOF
  <send retrans="500">
    <![CDATA[
      SIP/2.0 $2
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Retry-After: 30
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
EOF
    } > "$1"
}
refusing_node "$WORK/node503.xml" "503 Service Unavailable" 0
refusing_node "$WORK/node-ring500.xml" "500 Server Internal Error" 1

# The trunk: like sipp's built-in uac, but it keeps the route set from the
# 200 (rrs) and sends ACK and BYE to the Contact through it, as a real UA.
cat > "$WORK/trunk.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="trunk">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=trunk 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true" rtd="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="200"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
EOF

# A node that rings until the call is cancelled, and a trunk that cancels
# after the 180 ([branch-N]: the INVITE's branch, as CANCEL and the ACK of
# the 487 need).
cat > "$WORK/node-ring.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="ringing-node">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <recv request="CANCEL"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: 1 INVITE
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
EOF
cat > "$WORK/trunk-cancel.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="trunk-cancel">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <send retrans="500">
    <![CDATA[
      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-6]
      From: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
</scenario>
EOF

# A trunk's call that must be refused with 503 (no node left).
cat > "$WORK/trunk-503.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="trunk-503">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="503"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
</scenario>
EOF

# A trunk's keepalive to the proxy, expecting status $2.
options() { # $1 = file, $2 = expected status
    cat > "$1" <<EOF
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="options">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="$2"/>
</scenario>
EOF
}
options "$WORK/options200.xml" 200
options "$WORK/options503.xml" 503

# --- processes ------------------------------------------------------------
# start_node VAR PORT SCENARIO LOG: a node answering OPTIONS probes with 200
# (-aa), as Maskline does; its pid goes into VAR.
start_node() {
    sipp -sf "$3" -i "$IP" -ci "$IP" -p "$2" -aa -nostdin -trace_msg -message_file "$4" \
        >"$4.out" 2>&1 &
    PIDS+=($!)
    printf -v "$1" '%s' "$!"
}
stop_pid() { # $1 = pid: SIGKILL, like a crash
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# requests METHOD LOG: distinct calls (Call-IDs) for which the node received
# a METHOD request.
requests() {
    [ -f "$2" ] || { echo 0; return; }
    awk -v m="$1" '
        /message received/ { getline; getline; meth = $1 }
        /^Call-ID:/ { if (meth == m) print $2; meth = "" }
    ' "$2" | sort -u | wc -l
}

# trunk_calls TAG COUNT RATE [SCENARIO]: runs COUNT calls; sets OK_CALLS and
# FAILED_CALLS.
trunk_calls() {
    local stf=$WORK/trunk-$1.csv
    timeout 40 sipp "$IP:$KPORT" -sf "$WORK/${4:-trunk}.xml" -i "$IP" -ci "$IP" -p "$UACPORT" \
        -m "$2" -r "$3" -nostdin -timeout 30s -timeout_error \
        -trace_stat -stf "$stf" -trace_err -error_file "$WORK/trunk-$1.err" \
        >"$WORK/trunk-$1.out" 2>&1 || true
    [ -f "$stf" ] || fail "$1: sipp wrote no statistics (see $WORK/trunk-$1.out)"
    read -r OK_CALLS FAILED_CALLS < <(awk -F';' '
        NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "SuccessfulCall(C)") s = i; if ($i == "FailedCall(C)") f = i } }
        END { print $s + 0, $f + 0 }' "$stf")
}

# options_check EXPECTED: one OPTIONS to the proxy, must get EXPECTED.
options_check() {
    timeout 10 sipp "$IP:$KPORT" -sf "$WORK/options$1.xml" -i "$IP" -ci "$IP" -p "$UACPORT" \
        -m 1 -nostdin -timeout 5s -timeout_error >"$WORK/options$1.out" 2>&1
}

# ds_flags URI: the node's state in the proxy (AP = active, IP = inactive,
# both probed).
ds_flags() {
    timeout 5 kamcmd -s "unix:$WORK/kamailio.ctl" dispatcher.list 2>/dev/null |
        awk -v u="$1" '/URI:/ { cur = $2 } /FLAGS:/ { if (cur == u) print $2 }'
}
wait_flags() { # URI REGEX SECONDS
    local deadline=$((SECONDS + $3))
    while [ "$SECONDS" -lt "$deadline" ]; do
        [[ "$(ds_flags "$1")" =~ $2 ]] && return 0
        sleep 0.2
    done
    return 1
}
failovers() { grep -c 'failover of' "$WORK/kamailio.log" || true; }
timeouts() { grep -c 'did not answer' "$WORK/kamailio.log" || true; }

# --- start ----------------------------------------------------------------
printf '1 %s\n1 %s\n' "$N1" "$N2" > "$WORK/dispatcher.list"
start_node NODE1 "$N1PORT" "$WORK/node.xml" "$WORK/node1.log"
start_node NODE2 "$N2PORT" "$WORK/node.xml" "$WORK/node2.log"

# -DD: stay in the foreground (no daemon), -E: log to stderr. Probes every
# second so that the checks below do not wait long.
KAMAILIO_CMD=(kamailio -f "$CFG" -DD -E -Y "$WORK" -m 64 -M 8
    -A "LISTEN=udp:$IP:$KPORT"
    -A "DS_LIST=\"$WORK/dispatcher.list\""
    -A "CTL_SOCKET=\"unix:$WORK/kamailio.ctl\""
    -A "PING_INTERVAL=1")
echo "kamailio: ${KAMAILIO_CMD[*]}"
timeout 10 "${KAMAILIO_CMD[@]}" -c >"$WORK/kamailio-c.log" 2>&1 ||
    fail "kamailio -c: bad configuration (see $WORK/kamailio-c.log)"
"${KAMAILIO_CMD[@]}" >"$WORK/kamailio.log" 2>&1 &
KAMAILIO=$!
PIDS+=("$KAMAILIO")

wait_flags "$N1" '^AP$' 10 && wait_flags "$N2" '^AP$' 10 ||
    fail "kamailio did not come up with both nodes active (see $WORK/kamailio.log)"
kill -0 "$KAMAILIO" 2>/dev/null || fail "kamailio exited (see $WORK/kamailio.log)"
ok "kamailio up on $IP:$KPORT, nodes $N1 and $N2 active and probed"

options_check 200 || fail "OPTIONS to the proxy did not get 200"
ok "the proxy answers OPTIONS itself (200)"

# --- 1: spread ------------------------------------------------------------
trunk_calls spread 200 50
[ "$OK_CALLS" = 200 ] && [ "$FAILED_CALLS" = 0 ] ||
    fail "spread: $OK_CALLS of 200 calls succeeded, $FAILED_CALLS failed"
a=$(requests INVITE "$WORK/node1.log"); b=$(requests INVITE "$WORK/node2.log")
ab=$(requests BYE "$WORK/node1.log"); bb=$(requests BYE "$WORK/node2.log")
ak=$(requests ACK "$WORK/node1.log"); bk=$(requests ACK "$WORK/node2.log")
[ $((a + b)) = 200 ] || fail "spread: nodes got $a + $b INVITEs, not 200"
[ "$a" -ge 80 ] && [ "$b" -ge 80 ] || fail "spread: uneven split $a / $b"
[ "$ak" = "$a" ] && [ "$bk" = "$b" ] && [ "$ab" = "$a" ] && [ "$bb" = "$b" ] ||
    fail "spread: ACK/BYE did not all reach the node of their call ($ak/$ab, $bk/$bb)"
ok "200/200 calls; node 1 took $a, node 2 took $b; every ACK and BYE reached its node"

# --- 2: a node dies ---------------------------------------------------------
stop_pid "$NODE1"
b0=$(requests INVITE "$WORK/node2.log"); f0=$(failovers)
trunk_calls dead 100 50
[ "$OK_CALLS" = 100 ] && [ "$FAILED_CALLS" = 0 ] ||
    fail "node 1 dead: $OK_CALLS of 100 calls succeeded, $FAILED_CALLS failed"
b1=$(requests INVITE "$WORK/node2.log")
[ $((b1 - b0)) = 100 ] || fail "node 1 dead: node 2 got $((b1 - b0)) of the 100 calls"
ok "node 1 killed: 100/100 calls via node 2 ($(( $(failovers) - f0 )) after a timeout on node 1)"
wait_flags "$N1" '^I' 10 || fail "node 1 not marked inactive (flags: $(ds_flags "$N1"))"
ok "node 1 marked inactive ($(ds_flags "$N1"))"
b0=$(requests INVITE "$WORK/node2.log"); f0=$(failovers)
trunk_calls skipped 20 50
b1=$(requests INVITE "$WORK/node2.log")
[ "$OK_CALLS" = 20 ] && [ $((b1 - b0)) = 20 ] && [ "$(failovers)" = "$f0" ] ||
    fail "node 1 down: $OK_CALLS of 20 calls succeeded, node 2 got $((b1 - b0)), $(( $(failovers) - f0 )) failovers"
ok "node 1 down: skipped, 20/20 calls straight to node 2 (no failover)"

# --- 3: it comes back, refusing calls with 503 ------------------------------
start_node NODE1 "$N1PORT" "$WORK/node503.xml" "$WORK/node1-503.log"
wait_flags "$N1" '^A' 10 || fail "node 1 not active again after answering probes"
ok "node 1 answers probes again: active ($(ds_flags "$N1"))"
b0=$(requests INVITE "$WORK/node2.log")
trunk_calls refused 50 50
[ "$OK_CALLS" = 50 ] && [ "$FAILED_CALLS" = 0 ] ||
    fail "node 1 refusing: $OK_CALLS of 50 calls succeeded, $FAILED_CALLS failed"
r=$(requests INVITE "$WORK/node1-503.log"); b1=$(requests INVITE "$WORK/node2.log")
[ "$r" -ge 1 ] || fail "node 1 refusing: it got no INVITE, nothing was failed over"
[ $((b1 - b0)) = 50 ] || fail "node 1 refusing: node 2 got $((b1 - b0)) of the 50 calls"
ok "node 1 refusing with 503: 50/50 calls succeeded, $r of them failed over to node 2"

# --- 4: it rings, then fails: no second attempt -------------------------------
stop_pid "$NODE1"
start_node NODE1 "$N1PORT" "$WORK/node-ring500.xml" "$WORK/node1-500.log"
wait_flags "$N1" '^A' 10 || fail "node 1 not active"
b0=$(requests INVITE "$WORK/node2.log")
trunk_calls rang 10 10
r=$(requests INVITE "$WORK/node1-500.log"); b1=$(requests INVITE "$WORK/node2.log")
[ "$r" -ge 1 ] || fail "ring then 500: node 1 got no INVITE"
[ "$FAILED_CALLS" = "$r" ] && [ "$OK_CALLS" = $((10 - r)) ] ||
    fail "ring then 500: $OK_CALLS succeeded, $FAILED_CALLS failed, node 1 got $r"
[ $((b1 - b0)) = $((10 - r)) ] ||
    fail "ring then 500: node 2 got $((b1 - b0)) calls, expected $((10 - r)) (a call was dialled twice)"
ok "node 1 ringing then 500: its $r calls failed to the trunk, none tried again on node 2"

# --- 5: the trunk cancels while ringing: no failover --------------------------
stop_pid "$NODE1"
stop_pid "$NODE2"
start_node NODE1 "$N1PORT" "$WORK/node-ring.xml" "$WORK/node1-ring.log"
start_node NODE2 "$N2PORT" "$WORK/node-ring.xml" "$WORK/node2-ring.log"
wait_flags "$N1" '^A' 10 && wait_flags "$N2" '^A' 10 || fail "nodes not active"
f0=$(failovers)
trunk_calls cancel 10 10 trunk-cancel
i=$(( $(requests INVITE "$WORK/node1-ring.log") + $(requests INVITE "$WORK/node2-ring.log") ))
c=$(( $(requests CANCEL "$WORK/node1-ring.log") + $(requests CANCEL "$WORK/node2-ring.log") ))
[ "$OK_CALLS" = 10 ] && [ "$i" = 10 ] && [ "$c" = 10 ] && [ "$(failovers)" = "$f0" ] ||
    fail "cancel: $OK_CALLS of 10 calls cancelled cleanly, nodes got $i INVITEs and $c CANCELs"
ok "10/10 calls cancelled while ringing: CANCEL reached the ringing node, 487 back, no failover"

# --- 6: no node left ----------------------------------------------------------
stop_pid "$NODE1"
stop_pid "$NODE2"
# At once, while both still count as up: both time out, then 503.
t0=$(timeouts)
trunk_calls gone 1 1 trunk-503
[ "$OK_CALLS" = 1 ] && [ $(( $(timeouts) - t0 )) = 2 ] ||
    fail "both nodes dead: the call did not get 503 after trying both ($(( $(timeouts) - t0 )) timeouts)"
ok "both nodes dead: a new call times out on each, then gets 503 (not 408)"
wait_flags "$N1" '^I' 15 && wait_flags "$N2" '^I' 15 ||
    fail "nodes not marked inactive ($(ds_flags "$N1") $(ds_flags "$N2"))"
trunk_calls none 1 1 trunk-503
[ "$OK_CALLS" = 1 ] || fail "no node up: the call did not get 503"
options_check 503 || fail "OPTIONS to the proxy with no node up did not get 503"
ok "no node up: both marked inactive, calls and OPTIONS get 503 at once"

kill -0 "$KAMAILIO" 2>/dev/null || fail "kamailio died"
errors=$(grep -c -E '(ERROR|CRITICAL|ALERT|BUG):' "$WORK/kamailio.log" || true)
[ "$errors" = 0 ] || fail "kamailio logged $errors errors (see $WORK/kamailio.log)"
ok "kamailio logged no errors"

echo "check.sh: $PASSED passed, 0 failed ($((SECONDS - START)) s)"
