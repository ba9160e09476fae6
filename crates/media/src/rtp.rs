//! RTP (RFC 3550): headers read and rewritten in place, and the
//! [`StreamSplicer`] that keeps an outgoing stream continuous across changes of
//! its source.
//!
//! The relay forwards a party's packets to the other leg without copying
//! them: it parses the header ([`RtpPacket::parse`]), asks the leg's splicer
//! for the outgoing header fields ([`StreamSplicer::splice`]) and writes them
//! over the received ones ([`RtpPacketMut`]). Nothing here allocates.

use std::fmt;
use std::time::{Duration, Instant};

use crate::{Error, Result, SAMPLE_RATE};

/// The fixed header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
pub const HEADER_LEN: usize = 12;
const VERSION: u8 = 2;

/// What is wrong with a datagram that was expected to be RTP.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RtpFault {
    /// Fewer bytes than the fixed header.
    Short { len: usize },
    /// Not version 2 (STUN, DTLS or garbage on the RTP port).
    Version(u8),
    /// The CSRC list runs past the end of the datagram.
    CsrcOverrun { count: u8, len: usize },
    /// The header extension runs past the end of the datagram.
    ExtensionOverrun { words: u16, len: usize },
    /// The padding count is zero or larger than what follows the header.
    Padding { count: u8, available: usize },
}

impl fmt::Display for RtpFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RtpFault::Short { len } => {
                write!(f, "{len} bytes, shorter than the {HEADER_LEN}-byte header")
            }
            RtpFault::Version(v) => write!(f, "version {v}, not 2"),
            RtpFault::CsrcOverrun { count, len } => {
                write!(f, "{count} CSRCs do not fit in {len} bytes")
            }
            RtpFault::ExtensionOverrun { words, len } => {
                write!(
                    f,
                    "a header extension of {words} words does not fit in {len} bytes"
                )
            }
            RtpFault::Padding { count, available } => write!(
                f,
                "padding count {count} with {available} bytes after the header"
            ),
        }
    }
}

/// The header fields the relay reads and rewrites.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Writes a fixed header (no padding, extension or CSRCs) at the start
    /// of `buf` and returns its length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize> {
        let available = buf.len();
        let head = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall {
            needed: HEADER_LEN,
            available,
        })?;
        head[0] = VERSION << 6;
        head[1] = 0;
        let mut view = RtpPacketMut { buf: head };
        view.set(self);
        Ok(HEADER_LEN)
    }
}

/// A parsed packet borrowing the datagram.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub csrc_count: u8,
    /// The header extension's profile-defined word and its data.
    pub extension: Option<(u16, &'a [u8])>,
    /// What follows the header, padding removed.
    pub payload: &'a [u8],
    /// Padding bytes at the end of the datagram (0 when the P bit is clear).
    pub padding: u8,
}

impl<'a> RtpPacket<'a> {
    pub fn parse(packet: &'a [u8]) -> Result<RtpPacket<'a>> {
        let len = packet.len();
        let fault = |f| Error::MalformedRtp(f);
        let fixed: &[u8; HEADER_LEN] =
            packet.first_chunk().ok_or(fault(RtpFault::Short { len }))?;
        let version = fixed[0] >> 6;
        if version != VERSION {
            return Err(fault(RtpFault::Version(version)));
        }
        let has_padding = fixed[0] & 0x20 != 0;
        let has_extension = fixed[0] & 0x10 != 0;
        let csrc_count = fixed[0] & 0x0F;
        let header = read_header(fixed);

        let mut offset = HEADER_LEN + 4 * csrc_count as usize;
        if offset > len {
            return Err(fault(RtpFault::CsrcOverrun {
                count: csrc_count,
                len,
            }));
        }
        let extension = if has_extension {
            let ext = packet
                .get(offset..offset + 4)
                .ok_or(fault(RtpFault::ExtensionOverrun { words: 0, len }))?;
            let profile = u16::from_be_bytes([ext[0], ext[1]]);
            let words = u16::from_be_bytes([ext[2], ext[3]]);
            let start = offset + 4;
            let end = start + 4 * words as usize;
            let data = packet
                .get(start..end)
                .ok_or(fault(RtpFault::ExtensionOverrun { words, len }))?;
            offset = end;
            Some((profile, data))
        } else {
            None
        };

        let rest = packet.get(offset..).unwrap_or_default();
        let padding = if has_padding {
            // The last byte counts the padding, itself included.
            let count = rest.last().copied().unwrap_or(0);
            if count == 0 || count as usize > rest.len() {
                return Err(fault(RtpFault::Padding {
                    count,
                    available: rest.len(),
                }));
            }
            count
        } else {
            0
        };
        let payload = rest
            .get(..rest.len() - padding as usize)
            .unwrap_or_default();
        Ok(RtpPacket {
            header,
            csrc_count,
            extension,
            payload,
            padding,
        })
    }
}

fn read_header(fixed: &[u8; HEADER_LEN]) -> RtpHeader {
    RtpHeader {
        marker: fixed[1] & 0x80 != 0,
        payload_type: fixed[1] & 0x7F,
        sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
        timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
    }
}

/// A received datagram whose fixed header is rewritten in place; the CSRC
/// list, extension, payload and padding are left as they are.
#[derive(Debug)]
pub struct RtpPacketMut<'a> {
    buf: &'a mut [u8],
}

impl<'a> RtpPacketMut<'a> {
    /// Checks what rewriting needs: a version-2 fixed header.
    pub fn new(packet: &'a mut [u8]) -> Result<RtpPacketMut<'a>> {
        let len = packet.len();
        if len < HEADER_LEN {
            return Err(Error::MalformedRtp(RtpFault::Short { len }));
        }
        let version = packet[0] >> 6;
        if version != VERSION {
            return Err(Error::MalformedRtp(RtpFault::Version(version)));
        }
        Ok(RtpPacketMut { buf: packet })
    }

    pub fn header(&self) -> RtpHeader {
        let mut fixed = [0u8; HEADER_LEN];
        fixed.copy_from_slice(&self.buf[..HEADER_LEN]);
        read_header(&fixed)
    }

    /// Writes all the fields of `header` over the packet's.
    pub fn set(&mut self, header: &RtpHeader) {
        self.set_marker(header.marker);
        self.set_payload_type(header.payload_type);
        self.set_sequence(header.sequence);
        self.set_timestamp(header.timestamp);
        self.set_ssrc(header.ssrc);
    }

    pub fn set_marker(&mut self, marker: bool) {
        self.buf[1] = (self.buf[1] & 0x7F) | if marker { 0x80 } else { 0 };
    }

    /// Only the low 7 bits are kept: a payload type is 0..=127.
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.buf[1] = (self.buf[1] & 0x80) | (payload_type & 0x7F);
    }

    pub fn set_sequence(&mut self, sequence: u16) {
        self.buf[2..4].copy_from_slice(&sequence.to_be_bytes());
    }

    pub fn set_timestamp(&mut self, timestamp: u32) {
        self.buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
    }

    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
}

// === impl StreamSplicer ===

/// Sequence jumps beyond this are a restart of the source, not loss
/// (RFC 3550 A.1's `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;
/// Packets this far behind the newest are late (or duplicates) and are
/// dropped; farther behind is a restart (RFC 3550 A.1's `MAX_MISORDER`).
const MAX_MISORDER: u16 = 100;
/// Packets behind the newest, each newer than the one before, that mean
/// the source restarted its numbering just behind where it was (a reordered
/// burst is rarely that long); the last of them starts a new segment.
const RESTART_RUN: u8 = 3;
/// Bound on how far one switch may move the timestamp, so that comparisons
/// modulo 2^32 stay meaningful (2^30 samples is 37 hours at 8 kHz).
const MAX_ADVANCE: u64 = 1 << 30;

/// One outgoing RTP stream of a call leg, fed by sources that come and go:
/// a prompt, then the other party's relayed packets, then a prompt again.
///
/// The receiver sees one stream whatever the sources do: one SSRC for the
/// whole leg, a sequence number one above the previous packet's for every
/// packet sent, and timestamps that never go backwards. Within a *segment*
/// (a run of packets from one source) the source's timestamp spacing is kept
/// exactly, so its silence suppression and losses show as they are. A new
/// segment starts when the caller says so ([`StreamSplicer::cut`]), when the
/// source's SSRC changes, or when its sequence jumps by more than a loss
/// could explain; its first packet carries the marker bit and a timestamp
/// that has advanced by the wall-clock time since the last packet sent (at
/// least one frame, so that segments never overlap).
///
/// A packet the source sent before one already forwarded (reordered) or
/// twice (duplicated) is dropped: with the sequence renumbered the receiver
/// could not put it back in place, and playing it late would be worse than
/// the gap. (A source that restarts its numbering just behind where it was
/// looks late at first: its third packet in a row starts a new segment.)
#[derive(Clone, Debug)]
pub struct StreamSplicer {
    ssrc: u32,
    next_sequence: u16,
    first_timestamp: u32,
    frame_samples: u32,
    last: Option<Sent>,
    segment: Option<Segment>,
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    timestamp: u32,
    at: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    source_ssrc: u32,
    newest_sequence: u16,
    /// Added to the source's timestamp to get ours.
    timestamp_offset: u32,
    /// The newest packet dropped as late, and how many such packets came
    /// each newer than the one before.
    late_run: Option<(u16, u8)>,
}

impl StreamSplicer {
    /// `ssrc`, `first_sequence` and `first_timestamp` should be random
    /// (RFC 3550 §5.1); the caller draws them. `frame_samples` is the
    /// packetisation interval in samples (160 for 20 ms), the least a new
    /// segment advances the timestamp.
    pub fn new(
        ssrc: u32,
        first_sequence: u16,
        first_timestamp: u32,
        frame_samples: u32,
    ) -> StreamSplicer {
        StreamSplicer {
            ssrc,
            next_sequence: first_sequence,
            first_timestamp,
            frame_samples: frame_samples.max(1),
            last: None,
            segment: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The source is about to change: the next packet starts a new segment
    /// whatever its SSRC.
    pub fn cut(&mut self) {
        self.segment = None;
    }

    /// The outgoing header for a source packet that arrived (or was made) at
    /// `now`, or `None` when it must not be sent (a duplicate, or older than
    /// one already sent). The payload type is the source's.
    pub fn splice(&mut self, source: &RtpHeader, now: Instant) -> Option<RtpHeader> {
        let mut continued = None;
        if let Some(segment) = &mut self.segment
            && segment.source_ssrc == source.ssrc
        {
            let ahead = source.sequence.wrapping_sub(segment.newest_sequence);
            let late = ahead == 0 || ahead > u16::MAX - MAX_MISORDER;
            let restarted = late && {
                // Duplicates and older packets in between neither count nor
                // break the run.
                let run = match segment.late_run {
                    None => Some(1),
                    Some((previous, run)) => {
                        let step = source.sequence.wrapping_sub(previous);
                        (step != 0 && step < MAX_DROPOUT).then_some(run + 1)
                    }
                };
                if let Some(run) = run {
                    segment.late_run = Some((source.sequence, run));
                }
                run.is_some_and(|run| run >= RESTART_RUN)
            };
            if late && !restarted {
                return None;
            }
            if !late && ahead < MAX_DROPOUT {
                let timestamp = source.timestamp.wrapping_add(segment.timestamp_offset);
                // A source whose clock steps back is restarted rather than
                // followed backwards.
                let backwards = self
                    .last
                    .is_some_and(|last| is_before(timestamp, last.timestamp));
                if !backwards {
                    continued = Some(timestamp);
                }
            }
        }

        let (timestamp, marker) = match continued {
            Some(timestamp) => {
                if let Some(segment) = &mut self.segment {
                    segment.newest_sequence = source.sequence;
                    segment.late_run = None;
                }
                (timestamp, source.marker)
            }
            None => {
                let timestamp = match self.last {
                    None => self.first_timestamp,
                    Some(last) => last.timestamp.wrapping_add(self.advance(last.at, now)),
                };
                self.segment = Some(Segment {
                    source_ssrc: source.ssrc,
                    newest_sequence: source.sequence,
                    timestamp_offset: timestamp.wrapping_sub(source.timestamp),
                    late_run: None,
                });
                (timestamp, true)
            }
        };

        self.last = Some(Sent { timestamp, at: now });
        let sequence = self.next_sequence;
        self.next_sequence = sequence.wrapping_add(1);
        Some(RtpHeader {
            marker,
            payload_type: source.payload_type,
            sequence,
            timestamp,
            ssrc: self.ssrc,
        })
    }

    /// [`splice`](Self::splice) on a received datagram, rewritten in place.
    /// `Ok(false)`: drop it.
    pub fn forward(&mut self, packet: &mut [u8], now: Instant) -> Result<bool> {
        let mut view = RtpPacketMut::new(packet)?;
        match self.splice(&view.header(), now) {
            Some(header) => {
                view.set(&header);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Samples to advance across a switch: the media time that passed since
    /// the last packet, and at least one frame.
    fn advance(&self, since: Instant, now: Instant) -> u32 {
        let elapsed = samples_in(now.saturating_duration_since(since));
        elapsed.clamp(self.frame_samples as u64, MAX_ADVANCE) as u32
    }
}

fn samples_in(elapsed: Duration) -> u64 {
    (elapsed.as_nanos() * SAMPLE_RATE as u128 / 1_000_000_000).min(u64::MAX as u128) as u64
}

/// `a` comes before `b` modulo 2^32 (RFC 3550 timestamps wrap).
fn is_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(header: RtpHeader, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN + payload.len()];
        header.write(&mut buf).unwrap();
        buf[HEADER_LEN..].copy_from_slice(payload);
        buf
    }

    fn source(ssrc: u32, sequence: u16, timestamp: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence,
            timestamp,
            ssrc,
        }
    }

    const HEADER: RtpHeader = RtpHeader {
        marker: true,
        payload_type: 101,
        sequence: 0xBEEF,
        timestamp: 0xDEAD_BEEF,
        ssrc: 0x0102_0304,
    };

    #[test]
    fn a_written_header_parses_back() {
        let buf = packet(HEADER, b"abc");
        assert_eq!(
            &buf[..HEADER_LEN],
            &[0x80, 0xE5, 0xBE, 0xEF, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4]
        );
        let parsed = RtpPacket::parse(&buf).unwrap();
        assert_eq!(parsed.header, HEADER);
        assert_eq!(parsed.payload, b"abc");
        assert_eq!(parsed.csrc_count, 0);
        assert_eq!(parsed.extension, None);
        assert_eq!(parsed.padding, 0);
    }

    #[test]
    fn csrcs_extension_and_padding_are_stepped_over() {
        let mut buf = packet(HEADER, &[]);
        buf[0] |= 0x20 | 0x10 | 2; // P, X, CC=2
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        buf.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // one-word extension
        buf.extend_from_slice(b"payload");
        buf.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let parsed = RtpPacket::parse(&buf).unwrap();
        assert_eq!(parsed.csrc_count, 2);
        assert_eq!(parsed.extension, Some((0xBEDE, &[9u8, 9, 9, 9][..])));
        assert_eq!(parsed.payload, b"payload");
        assert_eq!(parsed.padding, 3);
        assert_eq!(parsed.header, HEADER);
    }

    #[test]
    fn malformed_packets_are_named() {
        let good = packet(HEADER, b"xy");
        let cases: Vec<(Vec<u8>, RtpFault)> = vec![
            (good[..11].to_vec(), RtpFault::Short { len: 11 }),
            (
                {
                    let mut b = good.clone();
                    b[0] = 0x40;
                    b
                },
                RtpFault::Version(1),
            ),
            (
                {
                    let mut b = good.clone();
                    b[0] |= 3;
                    b
                },
                RtpFault::CsrcOverrun { count: 3, len: 14 },
            ),
            (
                {
                    let mut b = good.clone();
                    b[0] |= 0x10;
                    b
                },
                RtpFault::ExtensionOverrun { words: 0, len: 14 },
            ),
            (
                {
                    let mut b = good.clone();
                    b[0] |= 0x10;
                    b.extend_from_slice(&[0, 0]);
                    b[14] = 0;
                    b[15] = 5;
                    b
                },
                RtpFault::ExtensionOverrun { words: 5, len: 16 },
            ),
            (
                {
                    let mut b = good.clone();
                    b[0] |= 0x20;
                    b[13] = 0;
                    b
                },
                RtpFault::Padding {
                    count: 0,
                    available: 2,
                },
            ),
            (
                {
                    let mut b = good.clone();
                    b[0] |= 0x20;
                    b[13] = 3;
                    b
                },
                RtpFault::Padding {
                    count: 3,
                    available: 2,
                },
            ),
        ];
        for (bytes, fault) in cases {
            match RtpPacket::parse(&bytes) {
                Err(Error::MalformedRtp(got)) => assert_eq!(got, fault),
                other => panic!("{bytes:?}: expected {fault:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_header_needs_twelve_bytes_of_buffer() {
        let mut small = [0u8; 11];
        assert!(matches!(
            HEADER.write(&mut small),
            Err(Error::BufferTooSmall {
                needed: 12,
                available: 11
            })
        ));
    }

    #[test]
    fn fields_are_rewritten_in_place_and_the_rest_kept() {
        let mut buf = packet(HEADER, b"audio");
        buf[0] |= 0x20; // padding bit, must survive
        buf.push(1);
        let mut view = RtpPacketMut::new(&mut buf).unwrap();
        let new = RtpHeader {
            marker: false,
            payload_type: 0xFF, // only 7 bits can be written
            sequence: 1,
            timestamp: 2,
            ssrc: 3,
        };
        view.set(&new);
        assert_eq!(
            view.header(),
            RtpHeader {
                payload_type: 0x7F,
                ..new
            }
        );
        let parsed = RtpPacket::parse(&buf).unwrap();
        assert_eq!(parsed.payload, b"audio");
        assert_eq!(parsed.padding, 1);
    }

    #[test]
    fn rewriting_refuses_what_is_not_rtp() {
        assert!(RtpPacketMut::new(&mut [0x80; 11]).is_err());
        assert!(RtpPacketMut::new(&mut [0x00; 12]).is_err());
    }

    // --- splicing ---

    const FRAME: u32 = 160;
    const MS20: Duration = Duration::from_millis(20);

    #[test]
    fn one_source_keeps_its_spacing_under_our_numbering() {
        let t0 = Instant::now();
        let mut splicer = StreamSplicer::new(77, 65534, u32::MAX - 100, FRAME);
        let mut out = Vec::new();
        for i in 0..4u16 {
            let src = source(5, 1000 + i, 40_000 + FRAME * i as u32);
            out.push(splicer.splice(&src, t0 + MS20 * i as u32).unwrap());
        }
        assert_eq!(
            out.iter().map(|h| h.sequence).collect::<Vec<_>>(),
            [65534, 65535, 0, 1]
        );
        assert_eq!(
            out.iter().map(|h| h.timestamp).collect::<Vec<_>>(),
            [u32::MAX - 100, 59, 219, 379]
        );
        assert!(out.iter().all(|h| h.ssrc == 77));
        assert_eq!(
            out.iter().map(|h| h.marker).collect::<Vec<_>>(),
            [true, false, false, false]
        );
    }

    #[test]
    fn a_switch_advances_by_the_elapsed_media_time_and_marks_the_packet() {
        let t0 = Instant::now();
        let mut splicer = StreamSplicer::new(1, 0, 1000, FRAME);
        splicer.splice(&source(5, 10, 0), t0).unwrap();
        splicer.splice(&source(5, 11, 160), t0 + MS20).unwrap();
        // The prompt ends; the relayed party starts 500 ms later.
        let peer = splicer
            .splice(
                &source(9, 40_000, 3_000_000),
                t0 + MS20 + Duration::from_millis(500),
            )
            .unwrap();
        assert_eq!(peer.timestamp, 1000 + 160 + 4000);
        assert!(peer.marker);
        assert_eq!(peer.sequence, 2);
        // And its own spacing from then on.
        let next = splicer
            .splice(
                &source(9, 40_001, 3_000_160),
                t0 + Duration::from_millis(540),
            )
            .unwrap();
        assert_eq!(next.timestamp, 1000 + 160 + 4000 + 160);
        assert!(!next.marker);
    }

    #[test]
    fn a_switch_never_overlaps_the_previous_frame() {
        let t0 = Instant::now();
        let mut splicer = StreamSplicer::new(1, 0, 0, FRAME);
        splicer.splice(&source(5, 10, 0), t0).unwrap();
        splicer.cut();
        // Same source, same instant: still one whole frame later.
        let next = splicer.splice(&source(5, 11, 160), t0).unwrap();
        assert_eq!(next.timestamp, FRAME);
        assert!(next.marker);
    }

    #[test]
    fn duplicates_and_late_packets_are_dropped() {
        let t0 = Instant::now();
        let mut splicer = StreamSplicer::new(1, 0, 0, FRAME);
        splicer.splice(&source(5, 10, 0), t0).unwrap();
        splicer.splice(&source(5, 12, 320), t0).unwrap();
        assert_eq!(splicer.splice(&source(5, 12, 320), t0), None);
        assert_eq!(splicer.splice(&source(5, 11, 160), t0), None);
        let next = splicer.splice(&source(5, 13, 480), t0).unwrap();
        assert_eq!((next.sequence, next.timestamp), (2, 480));
    }

    #[test]
    fn a_restarted_source_is_a_new_segment() {
        let t0 = Instant::now();
        let mut splicer = StreamSplicer::new(1, 0, 0, FRAME);
        splicer.splice(&source(5, 10, 5000), t0).unwrap();
        // Sequence far ahead: a restart, re-anchored on the wall clock.
        let jumped = splicer.splice(&source(5, 20_000, 9), t0 + MS20).unwrap();
        assert_eq!(jumped.timestamp, FRAME);
        assert!(jumped.marker);
        // Timestamp stepping back with the sequence moving on: a restart too.
        let back = splicer
            .splice(&source(5, 20_001, 1), t0 + MS20 * 2)
            .unwrap();
        assert_eq!(back.timestamp, 2 * FRAME);
        assert!(back.marker);
    }

    #[test]
    fn a_source_restarting_just_behind_itself_is_followed_after_three_packets() {
        let t0 = Instant::now();
        let mut splicer = StreamSplicer::new(1, 0, 0, FRAME);
        splicer.splice(&source(5, 500, 0), t0).unwrap();
        // Numbering restarts 50 behind: looks late, twice.
        assert_eq!(splicer.splice(&source(5, 450, 9000), t0 + MS20), None);
        assert_eq!(splicer.splice(&source(5, 450, 9000), t0 + MS20), None); // duplicate
        assert_eq!(splicer.splice(&source(5, 451, 9160), t0 + MS20 * 2), None);
        let third = splicer
            .splice(&source(5, 452, 9320), t0 + MS20 * 3)
            .unwrap();
        assert!(third.marker);
        assert_eq!(third.timestamp, 3 * FRAME);
        let fourth = splicer
            .splice(&source(5, 453, 9480), t0 + MS20 * 4)
            .unwrap();
        assert_eq!((fourth.timestamp, fourth.marker), (4 * FRAME, false));
        // A reordered pair is still just late.
        assert_eq!(splicer.splice(&source(5, 451, 9160), t0), None);
        assert_eq!(splicer.splice(&source(5, 452, 9320), t0), None);
    }

    #[test]
    fn forwarding_rewrites_the_datagram() {
        let t0 = Instant::now();
        let mut splicer = StreamSplicer::new(0xAAAA, 7, 9, FRAME);
        let mut buf = packet(source(5, 100, 1234), b"pcm");
        assert!(splicer.forward(&mut buf, t0).unwrap());
        let parsed = RtpPacket::parse(&buf).unwrap();
        assert_eq!(
            parsed.header,
            RtpHeader {
                marker: true,
                payload_type: 0,
                sequence: 7,
                timestamp: 9,
                ssrc: 0xAAAA
            }
        );
        assert_eq!(parsed.payload, b"pcm");
        let mut again = packet(source(5, 100, 1234), b"pcm");
        assert!(!splicer.forward(&mut again, t0).unwrap());
        assert!(splicer.forward(&mut [0u8; 3], t0).is_err());
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// The source sends its next packet, `lost` packets after the last.
        Next { lost: u8, millis: u8 },
        /// One of the source's earlier packets arrives again (late or duplicated).
        Old { back: u8 },
        /// The caller switches sources.
        Cut { millis: u16 },
        /// The source changes SSRC without telling.
        NewSsrc,
        /// The source restarts its numbering.
        Restart { sequence: u16, timestamp: u32 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0u8..5, 0u8..60).prop_map(|(lost, millis)| Step::Next { lost, millis }),
            2 => (0u8..120).prop_map(|back| Step::Old { back }),
            1 => (0u16..3000).prop_map(|millis| Step::Cut { millis }),
            1 => Just(Step::NewSsrc),
            1 => (any::<u16>(), any::<u32>())
                .prop_map(|(sequence, timestamp)| Step::Restart { sequence, timestamp }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn output_is_continuous_whatever_the_sources_do(
            steps in prop::collection::vec(step(), 1..200),
            first in (any::<u32>(), any::<u16>(), any::<u32>()),
            src_start in (any::<u32>(), any::<u16>(), any::<u32>()),
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut splicer = StreamSplicer::new(first.0, first.1, first.2, FRAME);
            let (mut ssrc, mut seq, mut ts) = src_start;
            let mut sent: Vec<(u16, u32)> = Vec::new(); // the source's (seq, ts) so far
            let mut cut_pending = true;
            let mut restarted = false;
            let mut previous: Option<(RtpHeader, Instant)> = None;
            for step in steps {
                let (src, fresh) = match step {
                    Step::Next { lost, millis } => {
                        seq = seq.wrapping_add(1 + lost as u16);
                        ts = ts.wrapping_add(FRAME * (1 + lost as u32));
                        now += Duration::from_millis(millis as u64);
                        sent.push((seq, ts));
                        (source(ssrc, seq, ts), true)
                    }
                    Step::Old { back } => {
                        let Some(&(s, t)) = sent.iter().rev().nth(back as usize) else { continue };
                        (source(ssrc, s, t), false)
                    }
                    Step::Cut { millis } => {
                        now += Duration::from_millis(millis as u64);
                        splicer.cut();
                        cut_pending = true;
                        continue;
                    }
                    Step::NewSsrc => {
                        ssrc = ssrc.wrapping_add(1);
                        sent.clear();
                        continue;
                    }
                    Step::Restart { sequence, timestamp } => {
                        seq = sequence;
                        ts = timestamp;
                        sent.clear();
                        restarted = true;
                        continue;
                    }
                };
                let Some(header) = splicer.splice(&src, now) else {
                    // Only what the source sent before is dropped, or the
                    // first packets of a restart that looks like them.
                    let restarting = restarted && sent.len() < RESTART_RUN as usize;
                    prop_assert!(!fresh || restarting, "a new packet was dropped");
                    continue;
                };
                match previous {
                    Some((prev, at)) => {
                        prop_assert_eq!(header.sequence, prev.sequence.wrapping_add(1));
                        prop_assert!(!is_before(header.timestamp, prev.timestamp),
                            "timestamp went back: {} after {}", header.timestamp, prev.timestamp);
                        if cut_pending {
                            // Across a switch, media time follows the wall clock.
                            let elapsed = samples_in(now - at).max(FRAME as u64) as u32;
                            prop_assert_eq!(header.timestamp.wrapping_sub(prev.timestamp), elapsed);
                        }
                    }
                    None => {
                        prop_assert_eq!(header.sequence, first.1);
                        prop_assert_eq!(header.timestamp, first.2);
                    }
                }
                prop_assert_eq!(header.ssrc, first.0);
                if cut_pending {
                    prop_assert!(header.marker, "first packet after a switch is marked");
                }
                cut_pending = false;
                previous = Some((header, now));
            }
        }

        #[test]
        fn within_a_segment_source_spacing_is_kept(
            gaps in prop::collection::vec(1u32..2000, 1..50),
            start in any::<u32>(),
        ) {
            let t0 = Instant::now();
            let mut splicer = StreamSplicer::new(1, 0, 0, FRAME);
            let mut ts = start;
            let first = splicer.splice(&source(5, 0, ts), t0).unwrap();
            for (i, gap) in gaps.iter().enumerate() {
                ts = ts.wrapping_add(*gap);
                let header = splicer.splice(&source(5, i as u16 + 1, ts), t0).unwrap();
                prop_assert_eq!(header.timestamp.wrapping_sub(first.timestamp), ts.wrapping_sub(start));
                prop_assert!(!header.marker);
            }
        }

        #[test]
        fn parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = RtpPacket::parse(&bytes) {
                prop_assert!(packet.payload.len() + HEADER_LEN <= bytes.len());
            }
        }
    }
}
