#!/usr/bin/env python3
"""Webhook and intercept receiver of bench/events.sh (standard library only).

  events_receiver.py PORT [INTERCEPT_DELAY_MS]

An asyncio HTTP/1.1 keep-alive server on 127.0.0.1:PORT (never another
address). It parses requests itself (Content-Length bodies, no pipelining
needed: Maskline's client sends one request at a time per connection), so
that one Python core keeps up with tens of thousands of requests a second.

  POST /hook        a webhook delivery: counted (all requests, distinct
                    Maskline-Event-Id values, and by the event's "type"),
                    answered 200 with an empty body, or held unanswered
                    while the receiver is in hold mode.
  POST /intercept   an intercept callback: answered 200
                    {"action":"allow"} after INTERCEPT_DELAY_MS (default 1).
  GET  /stats       JSON: requests, distinct, by_type, held, intercepts,
                    first_at / last_at (wall-clock Unix seconds of the first
                    and the latest counted delivery), intercept_hold_ms
                    (p50/p99/max of the time from an intercept request's
                    arrival to its answer being written, i.e. the sleep as
                    this event loop really did it).
  GET  /arrivals    every counted delivery's event id, in arrival order, one
                    a line (duplicates included).
  POST /hold        from now on, hold deliveries unanswered (counted only
                    once answered).
  POST /release     answer the held deliveries (200) and stop holding.

Signatures are not checked: the bench counts deliveries, the e2e tests check
what they carry.
"""

import asyncio
import json
import re
import sys
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
ALLOW_BODY = b'{"action":"allow"}'
ALLOW = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
         + str(len(ALLOW_BODY)).encode() + b"\r\n\r\n" + ALLOW_BODY)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
TYPE = re.compile(rb'"type":"([a-z_.]+)"')


class State:
    def __init__(self, delay_ms):
        self.delay = delay_ms / 1000.0
        self.requests = 0
        self.ids = set()
        self.by_type = {}
        self.hold = False
        self.held = []  # (protocol, event id, type)
        self.intercepts = 0
        self.holds = []  # seconds from an intercept's arrival to its answer
        self.order = []  # event ids in arrival order
        self.first_at = None
        self.last_at = None

    def count(self, event_id, kind):
        now = time.time()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.requests += 1
        self.order.append(event_id)
        if event_id not in self.ids:
            self.ids.add(event_id)
            self.by_type[kind] = self.by_type.get(kind, 0) + 1

    def stats(self):
        holds = sorted(self.holds)

        def q(x):
            return round(holds[min(len(holds) - 1, int(x * len(holds)))] * 1000, 3) if holds else None

        return json.dumps({
            "requests": self.requests,
            "distinct": len(self.ids),
            "by_type": self.by_type,
            "held": len(self.held),
            "hold": self.hold,
            "intercepts": self.intercepts,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "intercept_hold_ms": {"p50": q(0.5), "p99": q(0.99),
                                  "max": q(1.0), "n": len(holds)},
        }).encode()


class Http(asyncio.Protocol):
    state = None  # set in main()

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            lower = head.lower()
            length = 0
            i = lower.find(b"\r\ncontent-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i + 2)
                length = int(lower[i + 17:j if j >= 0 else len(lower)].strip())
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            self.handle(head, lower, body)

    def handle(self, head, lower, body):
        st = self.state
        line = head[:head.find(b"\r\n")] if b"\r\n" in head else head
        parts = line.split(b" ")
        path = parts[1] if len(parts) > 1 else b"/"
        if path.startswith(b"/hook"):
            i = lower.find(b"\r\nmaskline-event-id:")
            if i >= 0:
                j = lower.find(b"\r\n", i + 2)
                event_id = head[i + 20:j if j >= 0 else len(head)].strip()
            else:
                event_id = body[:64]
            m = TYPE.search(body, 0, 400)
            kind = m.group(1).decode() if m else "?"
            if st.hold:
                st.held.append((self, event_id, kind))
                return
            st.count(event_id, kind)
            self.transport.write(OK)
        elif path.startswith(b"/intercept"):
            st.intercepts += 1
            if st.delay > 0:
                asyncio.get_running_loop().call_later(
                    st.delay, self.allow, time.perf_counter())
            else:
                self.allow(time.perf_counter())
        elif path.startswith(b"/arrivals"):
            self.reply_json(b"\n".join(st.order) + b"\n")
        elif path.startswith(b"/stats"):
            self.reply_json(st.stats())
        elif path.startswith(b"/hold"):
            st.hold = True
            self.reply_json(b'{"hold":true}')
        elif path.startswith(b"/release"):
            st.hold = False
            held, st.held = st.held, []
            for proto, event_id, kind in held:
                if not proto.transport.is_closing():  # its sender gave up
                    st.count(event_id, kind)
                    proto.reply(OK)
            self.reply_json(json.dumps({"released": len(held)}).encode())
        else:
            self.reply(NOT_FOUND)

    def allow(self, arrived):
        self.reply(ALLOW)
        self.state.holds.append(time.perf_counter() - arrived)

    def reply(self, data):
        if not self.transport.is_closing():
            self.transport.write(data)

    def reply_json(self, body):
        self.reply(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                   + str(len(body)).encode() + b"\r\n\r\n" + body)


async def main():
    port = int(sys.argv[1])
    delay_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    Http.state = State(delay_ms)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
