#!/usr/bin/env python3
"""Helpers of bench/events.sh (standard library only).

  webhook BASE API_KEY JSON
      PUT /v1/webhook with the JSON body; exits 1 unless 200.

  recv RECV_URL
      The receiver's /stats as "<distinct> <requests> <held> <last_at>".

  sample BASE RECV_URL OUT [INTERVAL]
      Until killed: every INTERVAL seconds (1) appends to OUT the line
      "<wall> <backlog> <delivered> <retry> <failed> <recv distinct>":
      the maskline_webhook_backlog gauge, maskline_webhook_deliveries_total
      by outcome, and the receiver's count of distinct events.

  wait-recv RECV_URL TARGET TIMEOUT
      Polls the receiver every 50 ms until it has TARGET distinct events.
      Prints "<ok|timeout> <distinct> <receiver's last_at then> <requests>".

  wait-gauge BASE TIMEOUT
      Polls /metrics every 100 ms until maskline_webhook_backlog reads 0
      (the server refreshes it every ~2 s). Prints "<wall when it read 0,
      or -> <last value>".

  metric FILE NAME [OUTCOME]
      A value from a /metrics scrape (0 if absent); with OUTCOME, the
      series NAME{outcome="OUTCOME"}.

  hist BEFORE AFTER METRIC [ms]
      "<count> <p50> <p99>" of histogram METRIC between two scrapes, in µs
      (in ms with "ms"; bucket differences, linear interpolation within a
      bucket; ">N" when past the last bucket).

  series SAMPLES T0 T1
      From a sample file: "<max backlog> <its wall> <backlog column, one
      value per sample, comma-separated>" for samples with T0 <= wall <= T1.
"""

import http.client
import json
import re
import sys
import time


def die(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def split(url):
    rest = url.removeprefix("http://")
    hostport = rest.split("/", 1)[0]
    host, port = hostport.split(":")
    return host, int(port)


class Client:
    """One keep-alive connection, reopened after an error."""

    def __init__(self, url):
        self.host, self.port = split(url)
        self.conn = None

    def get(self, path, method="GET", body=None, headers=None):
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


LINE = re.compile(r'^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+|NaN|\+Inf)$')


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def value(metrics, name, outcome=None):
    labels = f'{{outcome="{outcome}"}}' if outcome else ""
    return metrics.get((name, labels), 0.0)


def scrape(client):
    status, body = client.get("/metrics")
    if status != 200:
        raise OSError(f"/metrics: {status}")
    return parse_metrics(body.decode())


def stats(client):
    status, body = client.get("/stats")
    if status != 200:
        raise OSError(f"/stats: {status}")
    return json.loads(body)


def webhook(base, key, body):
    c = Client(base)
    status, answer = c.get("/v1/webhook", "PUT", body.encode(), {
        "Authorization": "Bearer " + key, "Content-Type": "application/json"})
    if status != 200:
        die(f"PUT /v1/webhook: {status} {answer[:300]!r}")


def recv(url):
    s = stats(Client(url))
    print(s["distinct"], s["requests"], s["held"], s["last_at"] or 0)


def sample(base, url, out, interval):
    m, r = Client(base), Client(url)
    with open(out, "a", buffering=1) as f:
        nxt = time.time()
        while True:
            try:
                metrics = scrape(m)
                s = stats(r)
                f.write("%.3f %d %d %d %d %d\n" % (
                    time.time(),
                    value(metrics, "maskline_webhook_backlog"),
                    value(metrics, "maskline_webhook_deliveries_total", "delivered"),
                    value(metrics, "maskline_webhook_deliveries_total", "retry"),
                    value(metrics, "maskline_webhook_deliveries_total", "failed"),
                    s["distinct"]))
            except (OSError, http.client.HTTPException, ValueError) as e:
                f.write("# %.3f %s\n" % (time.time(), e))
            nxt += interval
            time.sleep(max(0.0, nxt - time.time()))


def wait_recv(url, target, timeout):
    r = Client(url)
    deadline = time.time() + timeout
    s = stats(r)
    while s["distinct"] < target and time.time() < deadline:
        time.sleep(0.05)
        s = stats(r)
    status = "ok" if s["distinct"] >= target else "timeout"
    print(status, s["distinct"], s["last_at"] or 0, s["requests"])


def wait_gauge(base, timeout):
    m = Client(base)
    deadline = time.time() + timeout
    backlog = value(scrape(m), "maskline_webhook_backlog")
    while backlog != 0 and time.time() < deadline:
        time.sleep(0.1)
        backlog = value(scrape(m), "maskline_webhook_backlog")
    print("%.3f" % time.time() if backlog == 0 else "-", int(backlog))


def metric(path, name, outcome=None):
    v = value(parse_metrics(open(path).read()), name, outcome)
    print("%d" % v if v == int(v) else "%g" % v)


def buckets(path, name):
    pat = re.compile(r'^' + re.escape(name) + r'_bucket\{le="([^"]+)"\} ([0-9.e+]+)$')
    out = {}
    for line in open(path):
        mm = pat.match(line.strip())
        if mm:
            le = float("inf") if mm.group(1) == "+Inf" else float(mm.group(1))
            out[le] = float(mm.group(2))
    return out


def hist(before_path, after_path, name, unit="us"):
    scale = 1e3 if unit == "ms" else 1e6
    before, after = buckets(before_path, name), buckets(after_path, name)
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
                    return ">%.0f" % (lo * scale)
                frac = (rank - below) / (n - below) if n > below else 1.0
                return "%.0f" % ((lo + (le - lo) * frac) * scale)
            lo, below = le, n
        return "-"

    print(int(total), quantile(0.50), quantile(0.99))


def series(path, t0, t1):
    rows = []
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        f = line.split()
        wall = float(f[0])
        if t0 <= wall <= t1:
            rows.append((wall, int(f[1])))
    if not rows:
        print("- - -")
        return
    top = max(rows, key=lambda r: r[1])
    print(top[1], "%.3f" % top[0], ",".join(str(b) for _, b in rows))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "webhook":
        webhook(args[0], args[1], args[2])
    elif cmd == "recv":
        recv(args[0])
    elif cmd == "sample":
        sample(args[0], args[1], args[2], float(args[3]) if len(args) > 3 else 1.0)
    elif cmd == "wait-recv":
        wait_recv(args[0], int(args[1]), float(args[2]))
    elif cmd == "wait-gauge":
        wait_gauge(args[0], float(args[1]))
    elif cmd == "metric":
        metric(*args)
    elif cmd == "hist":
        hist(*args)
    elif cmd == "series":
        series(args[0], float(args[1]), float(args[2]))
    else:
        die(__doc__)


if __name__ == "__main__":
    main()
