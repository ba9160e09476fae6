//! RFC 4733 telephone-events: DTMF digits sent as RTP packets beside the
//! audio.
//!
//! A key press is one *event*: every packet describing it carries the RTP
//! timestamp of its start, a duration that grows with each update, and, at
//! the end, the E bit (the end packet is usually sent three times). The
//! [`DtmfReceiver`] turns such packets — duplicated, reordered or partly
//! lost — into each digit exactly once; the [`DtmfEncoder`] produces them.

use std::fmt;
use std::time::{Duration, Instant};

use crate::rtp::RtpHeader;
use crate::{Error, Result, SAMPLE_RATE};

/// A DTMF key. The discriminant is the RFC 4733 event code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Digit {
    Zero = 0,
    One = 1,
    Two = 2,
    Three = 3,
    Four = 4,
    Five = 5,
    Six = 6,
    Seven = 7,
    Eight = 8,
    Nine = 9,
    Star = 10,
    Pound = 11,
    A = 12,
    B = 13,
    C = 14,
    D = 15,
}

impl Digit {
    pub const ALL: [Digit; 16] = [
        Digit::Zero,
        Digit::One,
        Digit::Two,
        Digit::Three,
        Digit::Four,
        Digit::Five,
        Digit::Six,
        Digit::Seven,
        Digit::Eight,
        Digit::Nine,
        Digit::Star,
        Digit::Pound,
        Digit::A,
        Digit::B,
        Digit::C,
        Digit::D,
    ];

    /// The digit an event code stands for; codes above 15 are other tones
    /// and signals (flash, fax, modem), not digits.
    pub fn from_event(code: u8) -> Option<Digit> {
        Digit::ALL.get(code as usize).copied()
    }

    pub fn event(self) -> u8 {
        self as u8
    }

    pub fn as_char(self) -> char {
        b"0123456789*#ABCD"[self as usize] as char
    }

    /// Digits as they appear in a dial string: `0-9 * # A-D` (and `a-d`).
    pub fn from_char(c: char) -> Option<Digit> {
        let code = match c {
            '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => c as u8 - b'A' + 12,
            'a'..='d' => c as u8 - b'a' + 12,
            _ => return None,
        };
        Digit::from_event(code)
    }
}

impl TryFrom<char> for Digit {
    type Error = Error;

    fn try_from(c: char) -> Result<Digit> {
        Digit::from_char(c).ok_or(Error::NotADigit(c))
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// The 4-byte telephone-event payload (RFC 4733 §2.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TelephoneEvent {
    pub event: u8,
    /// The E bit: this packet reports the end of the event.
    pub end: bool,
    /// Power level, in -dBm0 (0 to 63).
    pub volume: u8,
    /// Since the event's timestamp, in timestamp units (samples at 8 kHz).
    pub duration: u16,
}

impl TelephoneEvent {
    pub const LEN: usize = 4;

    /// Reads the first event of a payload. (More than four bytes are only
    /// seen with RFC 2198 redundancy, under a payload type of its own.)
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent> {
        let &[event, flags, hi, lo] = payload
            .first_chunk::<4>()
            .ok_or(Error::ShortTelephoneEvent { len: payload.len() })?;
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([hi, lo]),
        })
    }

    pub fn to_bytes(&self) -> [u8; 4] {
        let [hi, lo] = self.duration.to_be_bytes();
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3F);
        [self.event, flags, hi, lo]
    }
}

// === impl DtmfReceiver ===

/// Up to two digits that one packet completed: the event it interrupted and
/// itself.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Digits {
    first: Option<Digit>,
    second: Option<Digit>,
}

impl Digits {
    fn push(&mut self, digit: Option<Digit>) {
        if self.first.is_none() {
            self.first = digit;
        } else if self.second.is_none() {
            self.second = digit;
        }
    }
}

impl Iterator for Digits {
    type Item = Digit;

    fn next(&mut self) -> Option<Digit> {
        self.first.take().or_else(|| self.second.take())
    }
}

/// The event being heard and not yet reported.
#[derive(Clone, Copy, Debug)]
struct Current {
    /// `None` for events that are not digits: they still interrupt one.
    digit: Option<Digit>,
    event: u8,
    /// Timestamp of the current segment (a long event has several).
    timestamp: u32,
    duration: u16,
    heard_at: Instant,
}

/// Turns the telephone-event packets of one stream into digits, each
/// exactly once.
///
/// A digit is reported when its event ends: at the first packet with the E
/// bit, or — when every end packet was lost — when a packet of a newer event
/// arrives or when [`poll`](Self::poll) finds nothing heard of it for the
/// timeout. Every packet with the timestamp of an event already reported (the
/// retransmitted end packets), or an older one (reordered), is ignored.
#[derive(Clone, Debug)]
pub struct DtmfReceiver {
    timeout: Duration,
    current: Option<Current>,
    /// Timestamp of the last event reported or abandoned.
    done: Option<u32>,
}

/// Long events are cut into segments of at most this duration (RFC 4733
/// §2.5.1.3); the next segment starts this much later, without a marker.
const MAX_SEGMENT: u32 = 0xFFFF;
/// How far short of the maximum the last update of a segment we heard may
/// be (two seconds of lost updates).
const SEGMENT_SLACK: u32 = 2 * SAMPLE_RATE;

impl DtmfReceiver {
    /// Five update intervals of silence: well past jitter, short enough for
    /// an IVR to act on the digit without a noticeable pause.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    pub fn new(timeout: Duration) -> DtmfReceiver {
        DtmfReceiver {
            timeout,
            current: None,
            done: None,
        }
    }

    /// One telephone-event packet of the stream, received at `now`.
    pub fn receive(&mut self, header: &RtpHeader, payload: &[u8], now: Instant) -> Result<Digits> {
        let event = TelephoneEvent::parse(payload)?;
        Ok(self.receive_event(header.timestamp, header.marker, &event, now))
    }

    /// [`receive`](Self::receive) for an already parsed payload.
    pub fn receive_event(
        &mut self,
        timestamp: u32,
        marker: bool,
        event: &TelephoneEvent,
        now: Instant,
    ) -> Digits {
        let mut digits = Digits::default();
        if self.done.is_some_and(|done| !is_after(timestamp, done)) {
            return digits;
        }
        if let Some(current) = &mut self.current {
            let same_segment = timestamp == current.timestamp;
            if same_segment || is_continuation(current, timestamp, marker, event) {
                // Updates may arrive out of order: keep the longest.
                current.duration = if same_segment {
                    current.duration.max(event.duration)
                } else {
                    event.duration
                };
                current.timestamp = timestamp;
                current.heard_at = now;
                if event.end {
                    digits.push(self.finish());
                }
                return digits;
            }
            if !is_after(timestamp, current.timestamp) {
                return digits;
            }
            // A newer event: the current one's end packets were all lost.
            digits.push(self.finish());
        }
        self.current = Some(Current {
            digit: Digit::from_event(event.event),
            event: event.event,
            timestamp,
            duration: event.duration,
            heard_at: now,
        });
        if event.end {
            digits.push(self.finish());
        }
        digits
    }

    /// Reports the current event if nothing was heard of it for the timeout.
    pub fn poll(&mut self, now: Instant) -> Option<Digit> {
        let current = self.current?;
        if now.saturating_duration_since(current.heard_at) >= self.timeout {
            self.finish()
        } else {
            None
        }
    }

    /// When [`poll`](Self::poll) next needs calling, if an event is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.current.map(|c| c.heard_at + self.timeout)
    }

    fn finish(&mut self) -> Option<Digit> {
        let current = self.current.take()?;
        self.done = Some(current.timestamp);
        current.digit
    }
}

impl Default for DtmfReceiver {
    fn default() -> DtmfReceiver {
        DtmfReceiver::new(DtmfReceiver::DEFAULT_TIMEOUT)
    }
}

/// The next segment of a long event: same event, no marker, and starting
/// where a segment that had (nearly) reached the maximum duration ends.
fn is_continuation(
    current: &Current,
    timestamp: u32,
    marker: bool,
    event: &TelephoneEvent,
) -> bool {
    let ahead = timestamp.wrapping_sub(current.timestamp);
    !marker
        && event.event == current.event
        && current.duration as u32 + SEGMENT_SLACK >= MAX_SEGMENT
        && (current.duration as u32..=MAX_SEGMENT + 1).contains(&ahead)
}

/// `a` is later than `b` modulo 2^32.
fn is_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

// === impl DtmfEncoder ===

/// One packet of an event: its payload, its marker bit, and when to send
/// it, counted from the start of the event. All packets of an event share
/// the event's RTP timestamp.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EventPacket {
    pub send_after: Duration,
    pub marker: bool,
    pub event: TelephoneEvent,
}

/// The packets for one key press: an update every 50 ms of duration (the
/// first with the marker bit), then the end packet three times.
#[derive(Clone, Debug)]
pub struct DtmfEncoder {
    digit: Digit,
    volume: u8,
    duration: u16,
    sent: u32,
}

impl DtmfEncoder {
    pub const UPDATE_INTERVAL: Duration = Duration::from_millis(50);
    pub const END_REPEATS: u32 = 3;
    const UPDATE_SAMPLES: u32 = SAMPLE_RATE / 20;

    /// `duration` from 1 ms to 8191 ms (the 16-bit duration field; longer
    /// presses would need segments, which no IVR needs). `volume` in -dBm0;
    /// 10 is typical.
    pub fn new(digit: Digit, duration: Duration, volume: u8) -> Result<DtmfEncoder> {
        let samples = duration.as_micros() * SAMPLE_RATE as u128 / 1_000_000;
        let duration_samples = u16::try_from(samples)
            .ok()
            .filter(|&s| s > 0 && duration >= Duration::from_millis(1))
            .ok_or(Error::EventDuration {
                millis: duration.as_millis(),
            })?;
        Ok(DtmfEncoder {
            digit,
            volume: volume.min(63),
            duration: duration_samples,
            sent: 0,
        })
    }

    fn updates(&self) -> u32 {
        // Updates strictly before the end: 400, 800, ... < duration.
        (self.duration as u32 - 1) / Self::UPDATE_SAMPLES
    }
}

impl Iterator for DtmfEncoder {
    type Item = EventPacket;

    fn next(&mut self) -> Option<EventPacket> {
        let updates = self.updates();
        let index = self.sent;
        if index >= updates + Self::END_REPEATS {
            return None;
        }
        self.sent += 1;
        let (elapsed, end) = if index < updates {
            ((index + 1) * Self::UPDATE_SAMPLES, false)
        } else {
            (self.duration as u32, true)
        };
        let duration = elapsed.min(u16::MAX as u32) as u16;
        Some(EventPacket {
            send_after: Duration::from_micros(elapsed as u64 * 1_000_000 / SAMPLE_RATE as u64),
            marker: index == 0,
            event: TelephoneEvent {
                event: self.digit.event(),
                end,
                volume: self.volume,
                duration,
            },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.updates() + Self::END_REPEATS).saturating_sub(self.sent) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for DtmfEncoder {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn packets(digit: Digit, millis: u64) -> Vec<EventPacket> {
        DtmfEncoder::new(digit, ms(millis), 10).unwrap().collect()
    }

    /// Feeds `(timestamp, packet)` pairs at 10 ms intervals, then polls well
    /// past the timeout.
    fn receive_all(stream: &[(u32, EventPacket)]) -> String {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        let mut out = String::new();
        let mut now = t0;
        for (ts, p) in stream {
            now += ms(10);
            out.extend(
                rx.receive_event(*ts, p.marker, &p.event, now)
                    .map(|d| d.as_char()),
            );
        }
        out.extend(rx.poll(now + ms(10_000)).map(|d| d.as_char()));
        out
    }

    fn stream(digits: &str, millis: u64, start: u32) -> Vec<(u32, EventPacket)> {
        let mut ts = start;
        let mut out = Vec::new();
        for c in digits.chars() {
            let digit = Digit::from_char(c).unwrap();
            out.extend(packets(digit, millis).into_iter().map(|p| (ts, p)));
            ts = ts.wrapping_add((millis as u32 + 50) * 8);
        }
        out
    }

    #[test]
    fn digits_map_to_event_codes() {
        let all: String = Digit::ALL.iter().map(|d| d.as_char()).collect();
        assert_eq!(all, "0123456789*#ABCD");
        for (code, digit) in Digit::ALL.iter().enumerate() {
            assert_eq!(digit.event() as usize, code);
            assert_eq!(Digit::from_event(code as u8), Some(*digit));
            assert_eq!(Digit::from_char(digit.as_char()), Some(*digit));
        }
        assert_eq!(Digit::from_event(16), None); // flash
        assert_eq!(Digit::from_char('d'), Some(Digit::D));
        assert!(matches!(Digit::try_from('E'), Err(Error::NotADigit('E'))));
        assert_eq!(Digit::Pound.to_string(), "#");
    }

    #[test]
    fn payload_fields_are_read_and_written() {
        let bytes = [11, 0x80 | 0x40 | 10, 0x03, 0x20];
        let event = TelephoneEvent::parse(&bytes).unwrap();
        assert_eq!(
            event,
            TelephoneEvent {
                event: 11,
                end: true,
                volume: 10, // the reserved bit is not volume
                duration: 800,
            }
        );
        assert_eq!(event.to_bytes(), [11, 0x80 | 10, 0x03, 0x20]);
        assert!(matches!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(Error::ShortTelephoneEvent { len: 3 })
        ));
    }

    #[test]
    fn a_press_is_updates_every_50_ms_then_three_ends() {
        let p = packets(Digit::Five, 120);
        let summary: Vec<_> = p
            .iter()
            .map(|p| {
                (
                    p.send_after.as_millis(),
                    p.marker,
                    p.event.end,
                    p.event.duration,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (50, true, false, 400),
                (100, false, false, 800),
                (120, false, true, 960),
                (120, false, true, 960),
                (120, false, true, 960),
            ]
        );
        assert!(p.iter().all(|p| p.event.event == 5 && p.event.volume == 10));
        // A press no longer than one interval is just its end packets.
        let short = packets(Digit::Star, 50);
        assert_eq!(short.len(), 3);
        assert!(short[0].marker && short.iter().all(|p| p.event.end && p.event.duration == 400));
        assert_eq!(DtmfEncoder::new(Digit::One, ms(120), 10).unwrap().len(), 5);
    }

    #[test]
    fn durations_outside_the_field_are_refused() {
        assert!(DtmfEncoder::new(Digit::One, Duration::ZERO, 10).is_err());
        assert!(DtmfEncoder::new(Digit::One, Duration::from_micros(100), 10).is_err());
        assert!(DtmfEncoder::new(Digit::One, ms(8191), 10).is_ok());
        assert!(matches!(
            DtmfEncoder::new(Digit::One, ms(8192), 10),
            Err(Error::EventDuration { millis: 8192 })
        ));
    }

    #[test]
    fn retransmitted_end_packets_give_one_digit() {
        assert_eq!(receive_all(&stream("1", 100, 0)), "1");
        assert_eq!(receive_all(&stream("1234#", 100, 1000)), "1234#");
    }

    #[test]
    fn the_same_digit_twice_is_two_digits() {
        assert_eq!(receive_all(&stream("55", 80, 0)), "55");
    }

    #[test]
    fn a_digit_is_reported_at_its_end_not_its_start() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        let p = packets(Digit::Seven, 200);
        let (updates, ends) = p.split_at(p.len() - 3);
        for u in updates {
            assert_eq!(rx.receive_event(9, u.marker, &u.event, t0).next(), None);
        }
        assert_eq!(
            rx.receive_event(9, false, &ends[0].event, t0)
                .collect::<Vec<_>>(),
            [Digit::Seven]
        );
        assert_eq!(rx.receive_event(9, false, &ends[1].event, t0).next(), None);
    }

    #[test]
    fn lost_end_packets_yield_the_digit_at_the_next_event() {
        let mut s = stream("12", 100, 0);
        s.retain(|(ts, p)| !(*ts == 0 && p.event.end));
        assert_eq!(receive_all(&s), "12");
    }

    #[test]
    fn lost_end_packets_yield_the_digit_after_the_timeout() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        for p in packets(Digit::Nine, 150).iter().filter(|p| !p.event.end) {
            assert_eq!(rx.receive_event(0, p.marker, &p.event, t0).next(), None);
        }
        assert_eq!(rx.deadline(), Some(t0 + DtmfReceiver::DEFAULT_TIMEOUT));
        assert_eq!(rx.poll(t0 + ms(249)), None);
        assert_eq!(rx.poll(t0 + ms(250)), Some(Digit::Nine));
        assert_eq!(rx.poll(t0 + ms(500)), None);
        assert_eq!(rx.deadline(), None);
        // The late end packets of that event are not a second digit.
        let end = TelephoneEvent {
            event: 9,
            end: true,
            volume: 10,
            duration: 1200,
        };
        assert_eq!(rx.receive_event(0, false, &end, t0 + ms(600)).next(), None);
    }

    #[test]
    fn a_long_press_is_one_digit() {
        let p = packets(Digit::Zero, 5000);
        assert_eq!(p.len(), 99 + 3);
        let s: Vec<_> = p.into_iter().map(|p| (77, p)).collect();
        assert_eq!(receive_all(&s), "0");
    }

    #[test]
    fn a_press_longer_than_a_segment_is_one_digit() {
        // RFC 4733 §2.5.1.3: the second segment starts at ts + 0xFFFF with
        // no marker and its duration counted afresh.
        let event = |duration, end| TelephoneEvent {
            event: 3,
            end,
            volume: 10,
            duration,
        };
        let base = u32::MAX - 1000;
        let second = base.wrapping_add(0xFFFF);
        let third = second.wrapping_add(0xFFFF);
        let s = [
            (base, true, event(400, false)),
            (base, false, event(65_000, false)),
            (base, false, event(0xFFFF, false)),
            (second, false, event(400, false)),
            // The last update of this segment is lost.
            (second, false, event(0xFE70, false)),
            (third, false, event(400, false)),
            (third, false, event(800, true)),
            (third, false, event(800, true)),
        ];
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        let got: Vec<Digit> = s
            .iter()
            .flat_map(|(ts, m, e)| rx.receive_event(*ts, *m, e, t0))
            .collect();
        assert_eq!(got, [Digit::Three]);
    }

    #[test]
    fn a_new_press_that_lost_its_marker_is_not_a_continuation() {
        let event = |duration, end| TelephoneEvent {
            event: 5,
            end,
            volume: 10,
            duration,
        };
        // The first press's end packets and the second's first packet are
        // lost.
        let s = [
            (0, true, event(400, false)),
            (0, false, event(800, false)),
            (1200, false, event(800, false)),
            (1200, false, event(960, true)),
        ];
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        let got: Vec<Digit> = s
            .iter()
            .flat_map(|(ts, m, e)| rx.receive_event(*ts, *m, e, t0))
            .collect();
        assert_eq!(got, [Digit::Five, Digit::Five]);
    }

    #[test]
    fn events_that_are_not_digits_end_a_digit_but_are_not_reported() {
        let flash = TelephoneEvent {
            event: 16,
            end: true,
            volume: 10,
            duration: 800,
        };
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        let first = packets(Digit::Four, 100)[0];
        assert_eq!(rx.receive_event(0, true, &first.event, t0).next(), None);
        let got: Vec<_> = rx.receive_event(2000, true, &flash, t0).collect();
        assert_eq!(got, [Digit::Four]);
        assert_eq!(rx.poll(t0 + ms(10_000)), None);
    }

    #[test]
    fn whole_packets_are_parsed_from_the_payload() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        let header = RtpHeader {
            marker: true,
            payload_type: 101,
            sequence: 1,
            timestamp: 5,
            ssrc: 1,
        };
        let end = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 400,
        };
        let got: Vec<_> = rx.receive(&header, &end.to_bytes(), t0).unwrap().collect();
        assert_eq!(got, [Digit::Pound]);
        assert!(rx.receive(&header, &[0, 1], t0).is_err());
    }

    fn digit_strategy() -> impl Strategy<Value = Digit> {
        (0u8..16).prop_map(|c| Digit::from_event(c).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Jitter (each packet may slip up to two places, fewer than any
        /// press has packets) and duplicates arriving any time after their
        /// original change nothing.
        #[test]
        fn reordering_and_duplication_yield_each_digit_once_in_order(
            presses in prop::collection::vec((digit_strategy(), 1u64..400, 0u32..2000), 1..12),
            start in any::<u32>(),
            slips in prop::collection::vec(0usize..3, 200),
            duplicates in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..20),
        ) {
            let mut ts = start;
            let mut original = Vec::new();
            for (digit, millis, gap) in &presses {
                for p in packets(*digit, *millis) {
                    original.push((ts, p));
                }
                ts = ts.wrapping_add(*millis as u32 * 8 + gap);
            }
            let mut keyed: Vec<(usize, (u32, EventPacket))> = original
                .iter()
                .enumerate()
                .map(|(i, p)| (i + slips[i % slips.len()], *p))
                .collect();
            keyed.sort_by_key(|(k, _)| *k);
            let mut arrived: Vec<(u32, EventPacket)> = keyed.into_iter().map(|(_, p)| p).collect();
            for (which, at) in duplicates {
                let from = which.index(arrived.len());
                let copy = arrived[from];
                let to = from + 1 + at.index(arrived.len() - from);
                arrived.insert(to, copy);
            }
            let expected: String = presses.iter().map(|(d, _, _)| d.as_char()).collect();
            prop_assert_eq!(receive_all(&arrived), expected);
        }

        #[test]
        fn any_payload_parses_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..8)) {
            match TelephoneEvent::parse(&bytes) {
                Ok(e) => prop_assert_eq!(&e.to_bytes()[..], &[bytes[0], bytes[1] & 0xBF, bytes[2], bytes[3]][..]),
                Err(_) => prop_assert!(bytes.len() < 4),
            }
        }

        /// Whatever arrives, an event timestamp yields at most one digit.
        #[test]
        fn arbitrary_packets_never_report_more_digits_than_events(
            packets in prop::collection::vec((0u32..6, any::<bool>(), 0u8..20, any::<bool>(), any::<u16>()), 0..60),
        ) {
            let t0 = Instant::now();
            let mut rx = DtmfReceiver::default();
            let mut digits = 0;
            let mut timestamps = std::collections::HashSet::new();
            for (i, (ts_step, marker, event, end, duration)) in packets.into_iter().enumerate() {
                let ts = ts_step * 1000;
                timestamps.insert(ts);
                let e = TelephoneEvent { event, end, volume: 10, duration };
                let now = t0 + ms(i as u64 * 20);
                digits += rx.receive_event(ts, marker, &e, now).count();
                digits += rx.poll(now).into_iter().count();
            }
            digits += rx.poll(t0 + ms(100_000)).into_iter().count();
            prop_assert!(digits <= timestamps.len());
        }
    }
}
