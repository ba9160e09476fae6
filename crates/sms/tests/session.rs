//! The SMPP session in-process, with a fake clock and no socket: what it
//! sends, how it answers the SMSC (well-formed or not), its window,
//! throttling, probing and timeouts.

use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use maskline_sms::session::{CloseReason, Event, Session, SessionConfig};
use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::{Encode, Length};
use rusmpp::pdus::{BindTransceiverResp, DeliverSm, SubmitSm, SubmitSmResp};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};

fn cfg() -> SessionConfig {
    SessionConfig {
        system_id: "maskline".to_owned(),
        password: "secret".to_owned(),
        window: 3,
        enquire_interval: Duration::from_secs(30),
        response_timeout: Duration::from_secs(10),
        throttle_min: Duration::from_millis(200),
        throttle_max: Duration::from_secs(2),
        ..SessionConfig::default()
    }
}

fn encode(cmd: &Command) -> Vec<u8> {
    let len = 4 + cmd.length();
    let mut out = vec![0u8; len];
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    cmd.encode(&mut out[4..]);
    out
}

/// Every PDU in `bytes` (what the session sent).
fn decode_all(mut bytes: &[u8]) -> Vec<Command> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let mut body = BytesMut::from(&bytes[4..len]);
        out.push(Command::decode(&mut body, len - 4).unwrap().0);
        bytes = &bytes[len..];
    }
    out
}

fn sent(s: &mut Session) -> Vec<Command> {
    decode_all(&s.take_output())
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A session the SMSC has bound.
fn bound(t0: Instant) -> Session {
    let mut s = Session::new(cfg(), t0);
    let bind = sent(&mut s);
    assert_eq!(bind.len(), 1);
    assert_eq!(bind[0].id(), CommandId::BindTransceiver);
    let Some(Pdu::BindTransceiver(b)) = bind[0].pdu() else {
        panic!()
    };
    assert_eq!(b.system_id.as_str(), "maskline");
    assert_eq!(b.password.as_str(), "secret");
    let resp = Command::new(
        CommandStatus::EsmeRok,
        bind[0].sequence_number(),
        Pdu::BindTransceiverResp(BindTransceiverResp::builder().build()),
    );
    s.receive(&encode(&resp), t0);
    assert!(matches!(events(&mut s).as_slice(), [Event::Bound]));
    assert!(s.is_bound());
    s
}

fn submit_sm() -> SubmitSm {
    SubmitSm::builder()
        .source_addr(COctetString::from_str("8657100000001").unwrap())
        .destination_addr(COctetString::from_str("8613800000001").unwrap())
        .short_message(OctetString::from_str("hi").unwrap())
        .build()
}

fn deliver(seq: u32) -> Vec<u8> {
    let sm = DeliverSm::builder()
        .source_addr(COctetString::from_str("8613900000009").unwrap())
        .destination_addr(COctetString::from_str("8657100000001").unwrap())
        .short_message(OctetString::from_str("hello").unwrap())
        .build();
    encode(&Command::new(
        CommandStatus::EsmeRok,
        seq,
        Pdu::DeliverSm(sm),
    ))
}

fn submit_resp(seq: u32, status: CommandStatus, id: &str) -> Vec<u8> {
    let resp = SubmitSmResp::builder()
        .message_id(COctetString::from_str(id).unwrap())
        .build();
    encode(&Command::new(status, seq, Pdu::SubmitSmResp(resp)))
}

#[test]
fn a_refused_bind_ends_the_session() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), t0);
    let bind = sent(&mut s);
    let resp = Command::new(
        CommandStatus::EsmeRinvpaswd,
        bind[0].sequence_number(),
        Pdu::BindTransceiverResp(BindTransceiverResp::builder().build()),
    );
    s.receive(&encode(&resp), t0);
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Closed {
            reason: CloseReason::BindRefused(CommandStatus::EsmeRinvpaswd),
            ..
        }]
    ));
    assert!(s.is_closed());
}

#[test]
fn deliveries_are_answered_when_the_driver_says() {
    let t0 = Instant::now();
    let mut s = bound(t0);
    // Two PDUs in one read, the second split across reads.
    let (one, two) = (deliver(7), deliver(8));
    let mut bytes = one.clone();
    bytes.extend_from_slice(&two[..5]);
    s.receive(&bytes, t0);
    s.receive(&two[5..], t0);
    let got: Vec<u32> = events(&mut s)
        .into_iter()
        .map(|e| match e {
            Event::Deliver { seq, sm } => {
                assert_eq!(sm.source_addr.as_str(), "8613900000009");
                seq
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, vec![7, 8]);
    assert!(
        sent(&mut s).is_empty(),
        "nothing is answered before the driver says"
    );
    s.respond(8, CommandStatus::EsmeRok);
    s.respond(7, CommandStatus::EsmeRxTAppn);
    let answers: Vec<(CommandId, u32, CommandStatus)> = sent(&mut s)
        .iter()
        .map(|c| (c.id(), c.sequence_number(), c.status()))
        .collect();
    assert_eq!(
        answers,
        vec![
            (CommandId::DeliverSmResp, 8, CommandStatus::EsmeRok),
            (CommandId::DeliverSmResp, 7, CommandStatus::EsmeRxTAppn)
        ]
    );
}

#[test]
fn the_window_bounds_submits_in_flight() {
    let t0 = Instant::now();
    let mut s = bound(t0);
    for tag in 0..3 {
        assert!(s.submit(tag, submit_sm(), t0));
    }
    assert_eq!(s.room(t0), 0);
    assert!(!s.submit(3, submit_sm(), t0));
    let seqs: Vec<u32> = sent(&mut s).iter().map(|c| c.sequence_number()).collect();
    assert_eq!(seqs.len(), 3);
    s.receive(&submit_resp(seqs[1], CommandStatus::EsmeRok, "abc"), t0);
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Submitted { tag: 1, smsc_id }] if smsc_id == "abc"
    ));
    assert_eq!(s.room(t0), 1);
}

#[test]
fn throttling_pauses_submits_and_the_pause_grows() {
    let t0 = Instant::now();
    let mut s = bound(t0);
    assert!(s.submit(1, submit_sm(), t0));
    let seq = sent(&mut s)[0].sequence_number();
    s.receive(&submit_resp(seq, CommandStatus::EsmeRthrottled, ""), t0);
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::SubmitRefused {
            tag: 1,
            retry: true,
            ..
        }]
    ));
    assert_eq!(s.room(t0), 0, "paused");
    assert_eq!(s.room(t0 + Duration::from_millis(199)), 0);
    let t1 = t0 + Duration::from_millis(200);
    s.tick(t1);
    assert_eq!(s.room(t1), 3);
    // Still full: the next pause is twice as long.
    assert!(s.submit(1, submit_sm(), t1));
    let seq = sent(&mut s)[0].sequence_number();
    s.receive(&submit_resp(seq, CommandStatus::EsmeRmsgqful, ""), t1);
    events(&mut s);
    assert_eq!(s.room(t1 + Duration::from_millis(399)), 0);
    assert_eq!(s.room(t1 + Duration::from_millis(400)), 3);
    // A success resets it.
    let t2 = t1 + Duration::from_millis(400);
    assert!(s.submit(1, submit_sm(), t2));
    let seq = sent(&mut s)[0].sequence_number();
    s.receive(&submit_resp(seq, CommandStatus::EsmeRok, "x"), t2);
    assert!(s.submit(2, submit_sm(), t2));
    let seq = sent(&mut s)[0].sequence_number();
    s.receive(&submit_resp(seq, CommandStatus::EsmeRthrottled, ""), t2);
    assert_eq!(s.room(t2 + Duration::from_millis(200)), 3);
}

#[test]
fn a_permanent_refusal_is_not_retried() {
    let t0 = Instant::now();
    let mut s = bound(t0);
    assert!(s.submit(9, submit_sm(), t0));
    let seq = sent(&mut s)[0].sequence_number();
    s.receive(&submit_resp(seq, CommandStatus::EsmeRinvdstadr, ""), t0);
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::SubmitRefused {
            tag: 9,
            status: CommandStatus::EsmeRinvdstadr,
            retry: false
        }]
    ));
    assert_eq!(s.room(t0), 3);
}

#[test]
fn a_quiet_link_is_probed_and_an_unanswered_request_ends_it() {
    let t0 = Instant::now();
    let mut s = bound(t0);
    assert!(s.submit(5, submit_sm(), t0));
    let seq = sent(&mut s)[0].sequence_number();
    s.receive(&submit_resp(seq, CommandStatus::EsmeRok, "a"), t0);
    events(&mut s);
    let t1 = t0 + Duration::from_secs(29);
    s.tick(t1);
    assert!(sent(&mut s).is_empty());
    let t2 = t0 + Duration::from_secs(30);
    assert_eq!(s.deadline(), t2);
    s.tick(t2);
    let probe = sent(&mut s);
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0].id(), CommandId::EnquireLink);
    // While the probe awaits its answer, the next thing to do is give up on
    // it (not probe again, which a driver would wake for at once).
    assert_eq!(s.deadline(), t2 + Duration::from_secs(10));
    // An enquire_link_resp with another request's sequence number settles
    // neither.
    assert!(s.submit(6, submit_sm(), t2));
    let submit_seq = sent(&mut s)[0].sequence_number();
    s.receive(
        &encode(&Command::new(
            CommandStatus::EsmeRok,
            submit_seq,
            Pdu::EnquireLinkResp,
        )),
        t2,
    );
    assert_eq!(s.in_flight(), 1);
    // No answer: after the response timeout the session is over, and the
    // submit still in flight is reported unanswered.
    s.tick(t2 + Duration::from_secs(10));
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Closed { reason: CloseReason::Timeout, unanswered }] if unanswered == &[6]
    ));
}

#[test]
fn the_smscs_enquire_link_and_unbind_are_answered() {
    let t0 = Instant::now();
    let mut s = bound(t0);
    s.receive(
        &encode(&Command::new(CommandStatus::EsmeRok, 41, Pdu::EnquireLink)),
        t0,
    );
    let answer = sent(&mut s);
    assert_eq!(
        (answer[0].id(), answer[0].sequence_number()),
        (CommandId::EnquireLinkResp, 41)
    );
    s.receive(
        &encode(&Command::new(CommandStatus::EsmeRok, 42, Pdu::Unbind)),
        t0,
    );
    let answer = sent(&mut s);
    assert_eq!(
        (answer[0].id(), answer[0].sequence_number()),
        (CommandId::UnbindResp, 42)
    );
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Closed {
            reason: CloseReason::PeerUnbound,
            ..
        }]
    ));
}

#[test]
fn malformed_pdus_get_precise_refusals_and_the_session_survives() {
    let t0 = Instant::now();
    let mut s = bound(t0);
    // deliver_sm whose source_addr has no NUL before the field's limit.
    let mut bad_source = Vec::new();
    bad_source.extend_from_slice(&0x0000_0005u32.to_be_bytes());
    bad_source.extend_from_slice(&0u32.to_be_bytes());
    bad_source.extend_from_slice(&77u32.to_be_bytes());
    bad_source.extend_from_slice(b"\0\x01\x01");
    bad_source.extend_from_slice(&[b'9'; 40]);
    let mut frame = ((bad_source.len() + 4) as u32).to_be_bytes().to_vec();
    frame.extend(bad_source);
    // A command id nobody defined.
    let mut unknown = 16u32.to_be_bytes().to_vec();
    unknown.extend_from_slice(&0x0000_0099u32.to_be_bytes());
    unknown.extend_from_slice(&0u32.to_be_bytes());
    unknown.extend_from_slice(&78u32.to_be_bytes());
    // A deliver_sm whose sm_length runs past the PDU.
    let mut short = deliver(79);
    let len = short.len();
    short.truncate(len - 3);
    short[..4].copy_from_slice(&((len - 3) as u32).to_be_bytes());
    for bytes in [&frame, &unknown, &short] {
        s.receive(bytes, t0);
    }
    let answers: Vec<(CommandId, u32, CommandStatus)> = sent(&mut s)
        .iter()
        .map(|c| (c.id(), c.sequence_number(), c.status()))
        .collect();
    assert_eq!(
        answers,
        vec![
            (CommandId::DeliverSmResp, 77, CommandStatus::EsmeRinvsrcadr),
            (CommandId::GenericNack, 78, CommandStatus::EsmeRinvcmdid),
            (CommandId::DeliverSmResp, 79, CommandStatus::EsmeRinvmsglen),
        ]
    );
    assert!(events(&mut s).is_empty());
    // Still bound: the next good PDU is served.
    s.receive(&deliver(80), t0);
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Deliver { seq: 80, .. }]
    ));
    assert!(s.is_bound());
}

#[test]
fn an_impossible_length_ends_the_session() {
    let t0 = Instant::now();
    let mut s = bound(t0);
    let mut bytes = 8u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 12]);
    s.receive(&bytes, t0);
    let answer = sent(&mut s);
    assert_eq!(
        (answer[0].id(), answer[0].status()),
        (CommandId::GenericNack, CommandStatus::EsmeRinvcmdlen)
    );
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Closed {
            reason: CloseReason::Framing,
            ..
        }]
    ));
}

#[test]
fn deliveries_before_the_bind_are_refused() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(), t0);
    sent(&mut s);
    s.receive(&deliver(5), t0);
    let answer = sent(&mut s);
    assert_eq!(
        (answer[0].sequence_number(), answer[0].status()),
        (5, CommandStatus::EsmeRinvbndsts)
    );
    assert!(events(&mut s).is_empty());
}

#[test]
fn unbinding_waits_for_the_answer() {
    let t0 = Instant::now();
    let mut s = bound(t0);
    s.unbind(t0);
    let unbind = sent(&mut s);
    assert_eq!(unbind[0].id(), CommandId::Unbind);
    assert_eq!(s.room(t0), 0);
    s.receive(
        &encode(&Command::new(
            CommandStatus::EsmeRok,
            unbind[0].sequence_number(),
            Pdu::UnbindResp,
        )),
        t0,
    );
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Closed {
            reason: CloseReason::Unbound,
            ..
        }]
    ));
}
