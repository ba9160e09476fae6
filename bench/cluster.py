#!/usr/bin/env python3
"""Helpers of the PostgreSQL / multi-node bench scripts (standard library only).

  hist BEFORE AFTER METRIC
      A histogram between two /metrics scrapes (bucket differences): prints
      "count=.. mean_ms=.. p50_ms=.. p90_ms=.. p99_ms=.. max_bucket=.." with
      each quantile interpolated linearly inside its bucket and the bucket
      it falls in ("p50_in=(0.5,1] ms"), then the non-empty buckets.

  pace BASE API_KEY RATE SECS CONNS OFFSET
      Open-loop binds on one node: request j is due at start + j / RATE, on
      connection j mod CONNS (one thread and one keep-alive http.client
      connection each); a late connection sends at once. Parties
      A = +86135<8 digits>, B = +86134<8 digits>, digits = OFFSET + j. Prints
      "RESULT sent=.. seconds=.. rps=.. non201=.. p50_ms=.. p99_ms=.. max_ms=..
      late_p99_ms=.." (latency: send to response read; late: send - due).

  probe BASE1 BASE2 API_KEY SWITCH_KEY N OFFSET [GAP_MS] [TIMEOUT_S]
      N times, one after the other: POST /v1/bindings (axb,
      A = +86137<8 digits>, B = +86136<8 digits>, digits = OFFSET + i) to
      node 1; as soon as its 201 is read, POST /v1/route {"caller": A,
      "called": X} to node 2 over and over (no pause) until its action is
      "connect" (at most TIMEOUT_S, 5 s, per binding); then GAP_MS (0) of
      sleep. Per binding: seen = first connect response read on node 2 minus
      the 201 read on node 1 (an upper bound: it includes that route
      request's round trip) and sent = when that route request was sent
      minus the 201 (a lower bound). Prints both distributions, the route
      round trip, the polls per binding, and writes the samples to
      $PROBE_OUT if set.
"""

import http.client
import json
import math
import os
import re
import sys
import threading
import time


def die(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def split(url):
    m = re.match(r"^http://([^:/]+):(\d+)/?$", url)
    if not m:
        die("bad base URL %r (want http://HOST:PORT)" % url)
    return m.group(1), int(m.group(2))


def conn(base):
    host, port = split(base)
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.connect()
    return c


def post(c, path, key, body):
    data = json.dumps(body).encode()
    c.request("POST", path, body=data, headers={
        "Authorization": "Bearer " + key,
        "Content-Type": "application/json",
    })
    r = c.getresponse()
    return r.status, r.read()


def pct(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[i]


# === hist ===

def buckets(path, name):
    pat = re.compile(r"^" + re.escape(name) + r'_bucket\{le="([^"]+)"\} ([0-9.e+]+)$')
    out, total, count = {}, 0.0, 0.0
    for line in open(path):
        line = line.strip()
        m = pat.match(line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            out[le] = float(m.group(2))
        elif line.startswith(name + "_sum "):
            total = float(line.split()[1])
        elif line.startswith(name + "_count "):
            count = float(line.split()[1])
    return out, total, count


def hist(before_path, after_path, name):
    (before, s0, c0), (after, s1, c1) = buckets(before_path, name), buckets(after_path, name)
    les = sorted(after)
    cum = [(le, after[le] - before.get(le, 0.0)) for le in les]
    total = cum[-1][1] if cum else 0.0
    if total <= 0:
        print("count=0")
        return

    def ms(v):
        return "+Inf" if v == float("inf") else "%g" % (v * 1e3)

    def quantile(q):
        rank = q * total
        lo, below = 0.0, 0.0
        for le, n in cum:
            if n >= rank:
                where = "(%s,%s] ms" % (ms(lo), ms(le))
                if le == float("inf"):
                    return ">%s" % ms(lo), where
                frac = (rank - below) / (n - below) if n > below else 1.0
                return "%.3f" % ((lo + (le - lo) * frac) * 1e3), where
            lo, below = le, n
        return "-", "-"

    parts = ["count=%d" % total, "mean_ms=%.3f" % ((s1 - s0) / (c1 - c0) * 1e3 if c1 > c0 else float("nan"))]
    for q, label in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        v, where = quantile(q)
        parts.append("%s_ms=%s %s_in=%s" % (label, v, label, where.replace(" ", "")))
    top = max((le for le, n in cum if n > 0), default=0.0)
    lo = 0.0
    for le, n in cum:
        if n >= total:
            top = le
            break
        lo = le
    parts.append("max_in=(%s,%s]ms" % (ms(lo), ms(top)))
    print(" ".join(parts))
    lo, below = 0.0, 0.0
    rows = []
    for le, n in cum:
        if n - below > 0:
            rows.append("(%s,%s]:%d" % (ms(lo), ms(le), n - below))
        lo, below = le, n
    print("buckets_ms " + " ".join(rows))


# === pace ===

def pace(base, key, rate, secs, conns, offset):
    rate, secs, conns, offset = float(rate), float(secs), int(conns), int(offset)
    total = int(rate * secs)
    start = time.monotonic() + 0.2
    lock = threading.Lock()
    lat, late, non201, codes = [], [], [0], {}
    deadline = start + secs + 30  # bound: never run past this

    def worker(k):
        c = conn(base)
        my_lat, my_late = [], []
        for j in range(k, total, conns):
            due = start + j / rate
            now = time.monotonic()
            if now > deadline:
                break
            if due > now:
                time.sleep(due - now)
            digits = "%08d" % (offset + j)
            body = {"mode": "axb", "a": "+86135" + digits, "b": "+86134" + digits, "expires_in": 3600}
            t0 = time.monotonic()
            try:
                status, _ = post(c, "/v1/bindings", key, body)
            except Exception as e:  # count it, reconnect
                status = "exc:" + type(e).__name__
                c.close()
                c = conn(base)
            t1 = time.monotonic()
            my_lat.append(t1 - t0)
            my_late.append(max(0.0, t0 - due))
            if status != 201:
                with lock:
                    non201[0] += 1
                    codes[status] = codes.get(status, 0) + 1
        with lock:
            lat.extend(my_lat)
            late.extend(my_late)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    lat.sort()
    late.sort()
    print("RESULT sent=%d seconds=%.2f rps=%.0f non201=%d codes=%s p50_ms=%.3f p99_ms=%.3f max_ms=%.3f late_p99_ms=%.3f"
          % (len(lat), elapsed, len(lat) / elapsed, non201[0],
             ",".join("%s=%d" % kv for kv in codes.items()),
             pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3, lat[-1] * 1e3 if lat else float("nan"),
             pct(late, 0.99) * 1e3))


# === probe ===

def probe(base1, base2, key, switch, n, offset, gap_ms=0, timeout_s=5):
    n, offset, gap, timeout_s = int(n), int(offset), float(gap_ms) / 1e3, float(timeout_s)
    c1, c2 = conn(base1), conn(base2)
    seen, sent, rtts, polls, timeouts, errors = [], [], [], [], 0, 0
    samples = []
    for i in range(n):
        digits = "%08d" % (offset + i)
        a, b = "+86137" + digits, "+86136" + digits
        status, body = post(c1, "/v1/bindings", key,
                            {"mode": "axb", "a": a, "b": b, "expires_in": 3600})
        t201 = time.perf_counter()
        if status != 201:
            errors += 1
            print("bind %d: %s %s" % (i, status, body[:200]), file=sys.stderr)
            continue
        x = json.loads(body)["x"]
        k = 0
        while True:
            ts = time.perf_counter()
            status, rbody = post(c2, "/v1/route", switch, {"caller": a, "called": x})
            tr = time.perf_counter()
            k += 1
            rtts.append(tr - ts)
            if status != 200:
                errors += 1
                print("route %d: %s %s" % (i, status, rbody[:200]), file=sys.stderr)
                break
            if json.loads(rbody).get("action") == "connect":
                seen.append(tr - t201)
                sent.append(ts - t201)
                polls.append(k)
                samples.append((i, tr - t201, ts - t201, k))
                break
            if tr - t201 > timeout_s:
                timeouts += 1
                break
        if gap:
            time.sleep(gap)
    if os.environ.get("PROBE_OUT"):
        with open(os.environ["PROBE_OUT"], "w") as f:
            for s in samples:
                f.write("%d %.6f %.6f %d\n" % s)
    for v in (seen, sent, rtts, polls):
        v.sort()

    def line(label, v):
        return "%s: p50=%.3f p90=%.3f p99=%.3f max=%.3f ms" % (
            label, pct(v, 0.5) * 1e3, pct(v, 0.9) * 1e3, pct(v, 0.99) * 1e3, v[-1] * 1e3 if v else float("nan"))

    print("RESULT samples=%d timeouts=%d errors=%d" % (len(seen), timeouts, errors))
    print(line("seen (201 on node 1 -> first connect read on node 2, upper bound)", seen))
    print(line("sent (201 on node 1 -> that route request sent, lower bound)", sent))
    print(line("route round trip on node 2 (all polls)", rtts))
    print("polls per binding: p50=%d p99=%d max=%d; connect on the first poll: %d of %d"
          % (pct(polls, 0.5), pct(polls, 0.99), polls[-1] if polls else 0,
             sum(1 for p in polls if p == 1), len(polls)))


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "hist" and len(args) == 3:
        hist(*args)
    elif cmd == "pace" and len(args) == 6:
        pace(*args)
    elif cmd == "probe" and 6 <= len(args) <= 8:
        probe(*args)
    else:
        die(__doc__)


if __name__ == "__main__":
    main()
