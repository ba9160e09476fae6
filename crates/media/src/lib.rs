//! Media for Maskline: everything a media-anchored call needs between the SIP
//! layer and the sockets, and nothing of either.
//!
//! Every module but [`relay`] is pure (sans I/O): no socket, thread, timer or
//! clock. Callers feed bytes and the current [`Instant`](std::time::Instant),
//! and get bytes, digits or decisions back; [`relay`] owns the sockets and
//! threads. The per-packet paths ([`session`], [`rtp`], [`dtmf`], [`tones`],
//! [`g711`], [`player`]) do not allocate.
//!
//! - [`sdp`]: parse a party's offer or answer ([`sdp::Sdp`]), pick the codecs
//!   we share with it ([`sdp::Sdp::negotiate`]) and render ours
//!   ([`sdp::LocalSdp`]) from typed values only — an allow-list, so no byte of
//!   a party's description (address, port, origin, session name, ICE, crypto)
//!   can reach the other leg.
//! - [`rtp`]: RFC 3550 headers, parsed and rewritten in place, and the
//!   [`rtp::StreamSplicer`] that keeps one outgoing stream continuous (one
//!   SSRC, sequence +1, timestamps that follow media time) while its source
//!   switches between prompts and the relayed party.
//! - [`g711`]: μ-law and A-law ([`g711::Codec`]), table-driven.
//! - [`dtmf`]: RFC 4733 telephone-events: the [`dtmf::Digit`]s, the payload,
//!   a [`dtmf::DtmfReceiver`] that yields each digit once however the packets
//!   arrive, and the [`dtmf::DtmfEncoder`] that produces a digit's packets.
//! - [`tones`]: in-band DTMF ([`tones::ToneDetector`], Goertzel) and a
//!   dual-tone generator ([`tones::DualTone`]).
//! - [`wav`]: prompts read and validated from WAV ([`wav::read_prompt`]) and
//!   two-channel call recordings written crash-safely
//!   ([`wav::RecordingWriter`]).
//! - [`player`]: a [`player::PromptPlayer`] turns a [`player::Prompt`] into
//!   20 ms G.711 RTP packets.
//! - [`prompts`]: prompt names and the built-in Mandarin and English
//!   recordings ([`prompts::builtin`]).
//! - [`recordings`]: where recordings are kept ([`recordings::Recordings`];
//!   files under the data directory: [`recordings::DirRecordings`]).
//! - [`session`]: one anchored call's two legs ([`session::Session`]):
//!   latching, relaying under one stream per leg, prompts, digit
//!   collection, silence, the audio of a recording.
//! - [`relay`]: the sockets and worker threads that run sessions
//!   ([`relay::Relay`]), the port pool, and [`relay::RecordingSink`].
//!
//! Errors: one [`Error`] for the crate. The edges map it once: the SIP layer
//! answers [`Error::NotAcceptable`] with 488 and [`Error::MalformedSdp`] /
//! [`Error::SdpTooLarge`] with 400; the HTTP API answers [`Error::Wav`] with
//! 422 and the fault's text.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dtmf;
pub mod g711;
pub mod player;
pub mod prompts;
pub mod recordings;
pub mod relay;
pub mod rtp;
pub mod sdp;
pub mod sealed;
pub mod session;
pub mod tones;
pub mod wav;

pub use g711::Codec;

/// The sample clock of every codec Maskline speaks (PCMU, PCMA and
/// telephone-event at 8000 Hz), in samples per second.
pub const SAMPLE_RATE: u32 = 8000;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SDP of {len} bytes is over the {limit}-byte limit")]
    SdpTooLarge { len: usize, limit: usize },
    #[error("malformed SDP{}: {fault}", at_line(*line))]
    MalformedSdp {
        /// 1-based line of the fault, `None` when the description as a
        /// whole is at fault (a mandatory line is missing).
        line: Option<usize>,
        fault: sdp::SdpFault,
    },
    #[error("SDP not acceptable: {0}")]
    NotAcceptable(sdp::Unacceptable),
    #[error("malformed RTP packet: {0}")]
    MalformedRtp(rtp::RtpFault),
    #[error("telephone-event payload of {len} bytes, 4 needed")]
    ShortTelephoneEvent { len: usize },
    #[error("{0:?} is not a DTMF digit")]
    NotADigit(char),
    #[error("a DTMF event of {millis} ms is outside 1 to 8191 ms")]
    EventDuration { millis: u128 },
    #[error("buffer of {available} bytes, {needed} needed")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("unusable WAV: {0}")]
    Wav(wav::WavFault),
    #[error("recording over the 4 GiB a WAV file can hold")]
    RecordingTooLong,
    #[error("no RTP ports left in the configured range")]
    PortsExhausted,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

impl Error {
    fn sdp(line: usize, fault: sdp::SdpFault) -> Error {
        Error::MalformedSdp {
            line: Some(line),
            fault,
        }
    }
}
