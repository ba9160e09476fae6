//! Bytes from an SMSC on a bound link: the session never panics, whatever
//! PDUs (or garbage) arrive, and what it answers is well framed.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use maskline_sms::SessionConfig;
use maskline_sms::session::Session;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::default(), now);
    // The bind we sent, answered: bind_transceiver_resp with its sequence
    // number and an empty system_id.
    let bind = session.take_output();
    if bind.len() < 16 {
        return;
    }
    let mut resp = vec![0, 0, 0, 17, 0x80, 0, 0, 0x09, 0, 0, 0, 0];
    resp.extend_from_slice(&bind[12..16]);
    resp.push(0);
    session.receive(&resp, now);
    while session.poll_event().is_some() {}
    session.receive(data, now);
    while session.poll_event().is_some() {}
    let mut out = &session.take_output()[..];
    while out.len() >= 4 {
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert!((16..=out.len()).contains(&len), "an answer badly framed");
        out = &out[len..];
    }
    assert!(out.is_empty());
});
