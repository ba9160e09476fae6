#!/usr/bin/env python3
"""Helpers of bench/sip_calls.sh (standard library only).

  setup BASE ADMIN_KEY NUMBERS
      Creates a tenant and imports NUMBERS virtual numbers (+86571xxxxxxxx);
      prints the tenant's API key.

  csv BASE API_KEY EXPECTED CSV
      Pages GET /v1/bindings and writes the sipp injection file CSV
      (SEQUENTIAL, "A;X;" per active binding, shuffled with a fixed seed).
      Exits 1 unless there are EXPECTED active bindings.

  hist BEFORE AFTER
      Two /metrics scrapes: prints "<calls> <p50 us> <p99 us>" for the
      setup-delay histogram between them (bucket-count differences, linear
      interpolation within a bucket; ">100000" when past the last bucket).

  outcomes BEFORE AFTER
      maskline_calls_total differences by outcome: "normal=1000 ...".

  sippstat STAT_CSV
      Last line of a sipp -trace_stat file: "<successful> <failed> <retrans>
      <outofcall> <deadcall> <watchdog minor> <watchdog major>" (cumulative).

  rtt RTT_CSV...
      sipp -trace_rtt files: "<count> <p50 ms> <p99 ms>" of response time 1.
"""

import http.client
import json
import os
import random
import re
import sys


def die(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def request(conn, method, path, key, body=None):
    headers = {"Authorization": "Bearer " + key}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def connect(base):
    host, port = base.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


def setup(base, admin, numbers):
    c = connect(base)
    status, body = request(c, "POST", "/v1/tenants", admin, {"name": "sip-bench"})
    if status not in (200, 201):
        die(f"tenant: {status} {body[:300]!r}")
    key = json.loads(body)["api_key"]
    for start in range(1, numbers + 1, 10_000):
        nums = [{"number": "+86571%08d" % i}
                for i in range(start, min(start + 10_000, numbers + 1))]
        status, body = request(c, "POST", "/v1/numbers", key, {"numbers": nums})
        if status not in (200, 201):
            die(f"numbers: {status} {body[:300]!r}")
    print(key)


def csv(base, key, expected, csv_path):
    c = connect(base)
    pairs, cursor = [], None
    while True:
        path = "/v1/bindings?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        status, body = request(c, "GET", path, key)
        if status != 200:
            die(f"list bindings: {status} {body[:300]!r}")
        page = json.loads(body)
        pairs += [(b["a"], b["x"]) for b in page["items"] if b["status"] == "active"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if len(pairs) != expected:
        die(f"{len(pairs)} active bindings listed, expected {expected}")
    random.Random(20240601).shuffle(pairs)
    with open(csv_path, "w") as f:
        f.write("SEQUENTIAL\n")
        for a, x in pairs:
            f.write(f"{a};{x};\n")
    xs = len({x for _, x in pairs})
    print(f"{len(pairs)} active bindings on {xs} distinct X")


BUCKET = re.compile(
    r'^maskline_sip_setup_delay_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$')


def buckets(path):
    out = {}
    for line in open(path):
        m = BUCKET.match(line.strip())
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            out[le] = float(m.group(2))
    return out


def hist(before_path, after_path):
    before, after = buckets(before_path), buckets(after_path)
    les = sorted(after)
    cum = [(le, after[le] - before.get(le, 0.0)) for le in les]
    total = cum[-1][1] if cum else 0.0

    def quantile(q):
        if total <= 0:
            return "-"
        rank = q * total
        lo, below = 0.0, 0.0
        for le, n in cum:
            if n >= rank:
                if le == float("inf"):
                    return ">%.0f" % (lo * 1e6)
                frac = (rank - below) / (n - below) if n > below else 1.0
                return "%.0f" % ((lo + (le - lo) * frac) * 1e6)
            lo, below = le, n
        return "-"

    print(int(total), quantile(0.50), quantile(0.99))


OUTCOME = re.compile(r'^maskline_calls_total\{outcome="([^"]+)"\} ([0-9.e+]+)$')


def outcomes(before_path, after_path):
    def read(path):
        out = {}
        for line in open(path):
            m = OUTCOME.match(line.strip())
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    before, after = read(before_path), read(after_path)
    diff = {k: int(v - before.get(k, 0.0)) for k, v in after.items()}
    print(" ".join(f"{k}={v}" for k, v in sorted(diff.items()) if v) or "none")


def sippstat(path):
    lines = [l.rstrip("\n") for l in open(path) if l.strip()]
    if len(lines) < 2:
        die(f"{path}: no statistics")
    head = lines[0].rstrip(";").split(";")
    last = lines[-1].rstrip(";").split(";")
    row = dict(zip(head, last))

    def get(name):
        return row.get(name, "?")

    print(get("SuccessfulCall(C)"), get("FailedCall(C)"),
          get("Retransmissions(C)"), get("OutOfCallMsgs(C)"),
          get("DeadCallMsgs(C)"), get("WatchdogMinor(C)"), get("WatchdogMajor(C)"))


def rtt(paths):
    vals = []
    for path in paths:
        if not os.path.exists(path):  # an unmatched glob: sipp stopped early
            continue
        for line in open(path):
            parts = line.strip().rstrip(";").split(";")
            # date_ms;response_time_ms;rtd_no
            if len(parts) >= 2:
                try:
                    vals.append(float(parts[1]))
                except ValueError:
                    pass
    if not vals:
        print(0, "-", "-")
        return
    vals.sort()

    def pct(q):
        return vals[min(len(vals) - 1, int(q * len(vals)))]

    print(len(vals), "%g" % pct(0.50), "%g" % pct(0.99))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "setup":
        setup(args[0], args[1], int(args[2]))
    elif cmd == "csv":
        csv(args[0], args[1], int(args[2]), args[3])
    elif cmd == "hist":
        hist(*args)
    elif cmd == "outcomes":
        outcomes(*args)
    elif cmd == "sippstat":
        sippstat(args[0])
    elif cmd == "rtt":
        rtt(args)
    else:
        die(__doc__)


if __name__ == "__main__":
    main()
