//! The SDP parser on arbitrary bytes: it must never panic, and whatever it
//! accepts must negotiate and render without panicking, and what we render
//! must parse back. Seeds: `corpus/sdp/` (real offers: sipp, baresip,
//! Linphone-like, IPv6, hold forms).
#![no_main]

use libfuzzer_sys::fuzz_target;
use maskline_media::sdp::{LocalSdp, Sdp};

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = Sdp::parse(data) else {
        return;
    };
    let _ = sdp.has_other_media();
    let Ok(negotiated) = sdp.negotiate() else {
        return;
    };
    let ours = LocalSdp::answer(
        1,
        1,
        [127, 0, 0, 1].into(),
        &sdp,
        &negotiated,
        negotiated.answer_audio(20_000),
    );
    let text = ours.render();
    assert!(
        Sdp::parse(text.as_bytes()).is_ok(),
        "our own answer must parse: {text}"
    );
});
