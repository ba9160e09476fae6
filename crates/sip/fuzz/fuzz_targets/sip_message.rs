//! A datagram from anyone: parsing never panics, and whatever parses can be
//! read and answered (what the B2BUA does with every request it refuses).
#![no_main]

use libfuzzer_sys::fuzz_target;
use maskline_sip::message::{Message, Name, response_to, uri_of, uri_user};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    for name in [Name::From, Name::To, Name::Contact, Name::ContentType, Name::ContentLength] {
        if let Some(value) = msg.header(name) {
            let uri = uri_of(value);
            let _ = uri_user(uri);
        }
    }
    if msg.method().is_some() {
        let out = response_to(&msg, 400, Some("fuzz")).finish(b"");
        // What we send must parse back.
        assert!(Message::parse(&out).is_ok(), "our own answer does not parse");
    }
});
