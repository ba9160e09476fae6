// The SMSC Maskline's SMS tests bind to: the npm `smpp` package in server
// mode, driven by the test over stdin and reporting over stdout, one JSON
// object a line each way.
//
//   node smsc.js --port 2775 --system-id maskline --password secret
//     [--throttle N]       answer the first N submit_sm with ESME_RTHROTTLED
//     [--hold-submits]     never answer submit_sm (to test timeouts)
//     [--receipt-first]    send each submit's DELIVRD receipt before its
//                          submit_sm_resp (as some SMSCs may)
//
// Commands (stdin):
//   {"cmd": "deliver", "id": "t1", "from": "+8613...", "to": "+8657...",
//    "text": "...", "encoding": "gsm" | "ucs2", "parts": true?, "ton": 1?}
//        one deliver_sm, or (parts) as many concatenated ones as the text
//        needs, each with an 8-bit reference UDH
//   {"cmd": "part", "id": "t2", "from", "to", "hex": "...", "udh": "050003..",
//    "data_coding": 8}   one deliver_sm with exactly these bytes
//   {"cmd": "receipt", "id": "r1", "from", "to", "message_id": "...",
//    "stat": "DELIVRD"}
//   {"cmd": "raw", "hex": "..."}   bytes written as they are (malformed PDUs)
//   {"cmd": "unbind"}
// Events (stdout):
//   {"event": "listening"} {"event": "bound", "system_id"} {"event": "bind_refused"}
//   {"event": "submit", "message_id", "source", "dest", "source_ton",
//    "dest_ton", "data_coding", "esm_class", "udh": "hex"|null,
//    "message": "decoded text", "registered_delivery", "status"}
//   {"event": "deliver_resp", "id", "seq", "status"}
//   {"event": "pdu", "command", "status", "seq"}   anything else received
//   {"event": "closed"}
'use strict';

const smpp = require('smpp');
const defs = require('smpp/lib/defs');
const readline = require('readline');

const args = {};
for (let i = 2; i < process.argv.length; i++) {
    const a = process.argv[i];
    if (a.startsWith('--')) {
        const next = process.argv[i + 1];
        if (next === undefined || next.startsWith('--')) {
            args[a.slice(2)] = true;
        } else {
            args[a.slice(2)] = next;
            i++;
        }
    }
}
const port = Number(args.port || 2775);
let throttle = Number(args.throttle || 0);
const holdSubmits = !!args['hold-submits'];
const receiptFirst = !!args['receipt-first'];

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

let session = null;
let nextMessageId = 1;
let nextRef = 1;

const server = smpp.createServer(function (s) {
    // As SMSCs do: no Nagle delay on small PDUs.
    s.socket.setNoDelay(true);
    s.on('bind_transceiver', function (pdu) {
        if (pdu.system_id !== args['system-id'] || pdu.password !== args.password) {
            s.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
            emit({ event: 'bind_refused', system_id: pdu.system_id });
            s.close();
            return;
        }
        s.send(pdu.response({ system_id: 'test-smsc' }));
        session = s;
        emit({ event: 'bound', system_id: pdu.system_id, interface_version: pdu.interface_version });
    });
    s.on('submit_sm', function (pdu) {
        if (holdSubmits) {
            return;
        }
        const sm = pdu.short_message || {};
        const base = {
            event: 'submit',
            source: pdu.source_addr,
            dest: pdu.destination_addr,
            source_ton: pdu.source_addr_ton,
            dest_ton: pdu.dest_addr_ton,
            data_coding: pdu.data_coding,
            esm_class: pdu.esm_class,
            registered_delivery: pdu.registered_delivery,
            udh: sm.udh && sm.udh.length ? Buffer.concat(sm.udh).toString('hex') : null,
            message: typeof sm.message === 'string' ? sm.message : String(sm.message || ''),
        };
        if (throttle > 0) {
            throttle--;
            s.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
            emit(Object.assign(base, { status: smpp.ESME_RTHROTTLED, message_id: null }));
            return;
        }
        const id = 'M' + (nextMessageId++).toString(16).padStart(8, '0');
        // Recorded as it is answered: what the test counts is what this
        // SMSC accepted.
        emit(Object.assign(base, { status: 0, message_id: id }));
        if (receiptFirst) {
            receipt({ id: 'early-' + id, from: pdu.destination_addr, to: pdu.source_addr, message_id: id, stat: 'DELIVRD' });
        }
        s.send(pdu.response({ message_id: id }));
    });
    s.on('enquire_link', function (pdu) {
        s.send(pdu.response());
    });
    s.on('unbind', function (pdu) {
        s.send(pdu.response());
        s.close();
    });
    s.on('pdu', function (pdu) {
        if (['submit_sm', 'bind_transceiver', 'enquire_link', 'unbind'].indexOf(pdu.command) < 0) {
            emit({ event: 'pdu', command: pdu.command, status: pdu.command_status, seq: pdu.sequence_number });
        }
    });
    s.on('error', function () {});
    s.on('close', function () {
        if (session === s) {
            session = null;
        }
        emit({ event: 'closed' });
    });
});

server.listen(port, '127.0.0.1', function () {
    emit({ event: 'listening', port: port });
});

function addr(n) {
    return String(n).replace(/^\+/, '');
}

function ucs2(text) {
    const le = Buffer.from(text, 'utf16le');
    const be = Buffer.alloc(le.length);
    for (let i = 0; i < le.length; i += 2) {
        be[i] = le[i + 1];
        be[i + 1] = le[i];
    }
    return be;
}

function encode(text, encoding) {
    return encoding === 'ucs2' ? ucs2(text) : defs.gsmCoder.encode(text, 0x00);
}

// Cuts encoded bytes into parts of at most `room` bytes without splitting
// a UCS-2 surrogate pair or a GSM escape.
function cut(bytes, encoding, room) {
    const parts = [];
    let at = 0;
    while (at < bytes.length) {
        let end = Math.min(at + room, bytes.length);
        if (encoding === 'ucs2') {
            end -= (end - at) % 2;
            if (end < bytes.length && bytes[end - 2] >= 0xd8 && bytes[end - 2] <= 0xdb) {
                end -= 2;
            }
        } else if (end < bytes.length && bytes[end - 1] === 0x1b) {
            end -= 1;
        }
        parts.push(bytes.slice(at, end));
        at = end;
    }
    return parts;
}

function deliver(c, shortMessage, dataCoding, esmClass, seqNote) {
    if (!session) {
        emit({ event: 'deliver_resp', id: c.id, status: -1, error: 'not bound' });
        return;
    }
    const pdu = new smpp.PDU('deliver_sm', {
        source_addr_ton: c.ton === undefined ? 1 : c.ton,
        source_addr_npi: 1,
        source_addr: c.ton === 5 ? c.from : addr(c.from),
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: addr(c.to),
        esm_class: esmClass,
        data_coding: dataCoding,
        short_message: shortMessage,
    });
    session.send(pdu, function (resp) {
        emit({ event: 'deliver_resp', id: c.id, part: seqNote, seq: resp.sequence_number, status: resp.command_status });
    });
}

function receipt(c) {
    const text = 'id:' + c.message_id + ' sub:001 dlvrd:001 submit date:2612061200 done date:2612061201 stat:' + c.stat + ' err:000 text:';
    deliver(c, Buffer.from(text, 'latin1'), 0, 0x04, 1);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', function (line) {
    let c;
    try {
        c = JSON.parse(line);
    } catch (e) {
        return;
    }
    if (c.cmd === 'deliver') {
        const encoding = c.encoding || 'gsm';
        const coding = encoding === 'ucs2' ? 8 : 0;
        const bytes = encode(c.text, encoding);
        if (!c.parts) {
            deliver(c, bytes, coding, 0, 1);
            return;
        }
        const ref = nextRef++ & 0xff;
        const parts = cut(bytes, encoding, encoding === 'ucs2' ? 134 : 153);
        const order = c.reverse ? parts.map((_, i) => parts.length - 1 - i) : parts.map((_, i) => i);
        for (const i of order) {
            const udh = Buffer.from([5, 0, 3, ref, parts.length, i + 1]);
            deliver(c, Buffer.concat([udh, parts[i]]), coding, 0x40, i + 1);
        }
    } else if (c.cmd === 'part') {
        const body = Buffer.from(c.hex, 'hex');
        const udh = c.udh ? Buffer.from(c.udh, 'hex') : Buffer.alloc(0);
        deliver(c, Buffer.concat([udh, body]), c.data_coding || 0, udh.length ? 0x40 : 0, c.seq || 1);
    } else if (c.cmd === 'receipt') {
        receipt(c);
    } else if (c.cmd === 'raw') {
        if (session) {
            session.socket.write(Buffer.from(c.hex, 'hex'));
        }
    } else if (c.cmd === 'unbind') {
        if (session) {
            session.unbind();
        }
    } else if (c.cmd === 'quit') {
        process.exit(0);
    }
});
rl.on('close', function () {
    process.exit(0);
});
