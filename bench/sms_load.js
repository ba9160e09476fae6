// The SMSC side of bench/sms_relay.sh: waits for Maskline to bind, then
// delivers texts A -> X (deliver_sm, GSM 7-bit, one part) keeping WINDOW of
// them unanswered at a time, answers every submit_sm at once, and measures,
// per text, the time from its deliver_sm being written to its relay
// (submit_sm) arriving: the latency Maskline adds, durable write included.
//
//   node bench/sms_load.js PORT PAIRS_FILE WINDOW SECONDS WARMUP_SECONDS [RATE]
//
// Without RATE the SMSC sends as fast as the window lets it (closed loop:
// the throughput, and latency that includes waiting in the window); with
// RATE it sends that many texts a second, on a 1 ms clock, never more than
// WINDOW unanswered (open loop: the latency a relay adds at that load).
// PAIRS_FILE: one "A X B" a line (digits, no +). Prints one JSON line of
// figures. Needs the npm smpp package (NODE_PATH is set by the script).
'use strict';

const smpp = require('smpp');
const fs = require('fs');

const [port, pairsFile, windowArg, secondsArg, warmupArg, rateArg] = process.argv.slice(2);
const RATE = Number(rateArg || 0);
let credit = 0;
const WINDOW = Number(windowArg);
const SECONDS = Number(secondsArg);
const WARMUP = Number(warmupArg);
const pairs = fs.readFileSync(pairsFile, 'utf8').trim().split('\n').map((l) => l.split(' '));

let session = null;
let next = 0;
let inFlight = 0;
let start = 0;
let measuring = false;
let stopping = false;
const sentAt = new Map();
const latencies = [];
let relayed = 0;
let accepted = 0;
let refused = 0;
let msgId = 0;

function now() {
    const [s, ns] = process.hrtime();
    return s * 1e3 + ns / 1e6;
}

function pump() {
    while (session && !stopping && inFlight < WINDOW && (RATE === 0 || credit >= 1)) {
        credit -= 1;
        const id = next++;
        const [a, x] = pairs[id % pairs.length];
        const pdu = new smpp.PDU('deliver_sm', {
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: a,
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            destination_addr: x,
            data_coding: 0,
            short_message: Buffer.from('bench ' + id + ' your code is 482913', 'latin1'),
        });
        inFlight++;
        sentAt.set(id, now());
        session.send(pdu, function (resp) {
            inFlight--;
            if (resp.command_status === 0) {
                accepted++;
            } else {
                refused++;
            }
            setImmediate(pump);
        });
    }
}

const server = smpp.createServer(function (s) {
    // As SMSCs do: no Nagle delay on small PDUs.
    s.socket.setNoDelay(true);
    s.on('bind_transceiver', function (pdu) {
        s.send(pdu.response({ system_id: 'bench' }));
        session = s;
        start = now();
        setTimeout(function () {
            measuring = true;
            relayed = 0;
            latencies.length = 0;
            start = now();
        }, WARMUP * 1000);
        setTimeout(finish, (WARMUP + SECONDS) * 1000);
        if (RATE > 0) {
            let last = now();
            setInterval(function () {
                const t = now();
                // At most a window's worth of credit: a stall is not made up
                // with a burst.
                credit = Math.min(credit + ((t - last) * RATE) / 1000, WINDOW);
                last = t;
                pump();
            }, 1);
        }
        pump();
    });
    s.on('submit_sm', function (pdu) {
        s.send(pdu.response({ message_id: 'B' + (msgId++).toString(16) }));
        const text = (pdu.short_message && pdu.short_message.message) || '';
        const m = /bench (\d+)/.exec(String(text));
        if (!m) {
            return;
        }
        const id = Number(m[1]);
        const t = sentAt.get(id);
        sentAt.delete(id);
        if (measuring && t !== undefined) {
            relayed++;
            latencies.push(now() - t);
        }
    });
    s.on('enquire_link', function (pdu) {
        s.send(pdu.response());
    });
    s.on('error', function () {});
});

function finish() {
    stopping = true;
    const elapsed = (now() - start) / 1000;
    latencies.sort((a, b) => a - b);
    const q = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null);
    process.stdout.write(JSON.stringify({
        window: WINDOW,
        rate: RATE || null,
        seconds: Number(elapsed.toFixed(2)),
        relayed,
        relayed_per_sec: Math.round(relayed / elapsed),
        latency_ms_p50: q(0.5) && Number(q(0.5).toFixed(2)),
        latency_ms_p99: q(0.99) && Number(q(0.99).toFixed(2)),
        latency_ms_max: latencies.length ? Number(latencies[latencies.length - 1].toFixed(2)) : null,
        delivered_accepted: accepted,
        delivered_refused: refused,
    }) + '\n');
    process.exit(0);
}

server.listen(Number(port), '127.0.0.1');
