//! A TCP stream from anyone: framing by Content-Length and parsing each
//! frame never panic and always make progress.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maskline_sip::message::{Message, frame};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((skip, len))) = frame(rest) {
        assert!(len > 0 && skip + len <= rest.len(), "a frame outside the input");
        let _ = Message::parse(&rest[skip..skip + len]);
        rest = &rest[skip + len..];
    }
});
