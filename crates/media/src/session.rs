//! One anchored call's media, sans I/O: two legs (A faces the caller, B
//! the callee), what arrives on each, and what goes out.
//!
//! A [`Session`] is fed packets with the leg and source they arrived from
//! and the time ([`Session::receive`]), and woken at least every frame
//! while [`Session::needs_ticks`] ([`Session::tick`]); it answers through
//! an [`Output`]: datagrams to send from a leg's socket, and
//! [`SessionEvent`]s. The relay that owns the sockets and threads drives
//! it; tests drive it with a fake clock.
//!
//! Choices:
//! - **Latching.** A leg sends to the address its SDP named until the
//!   first packet arrives on it; from then on to that packet's source (a
//!   party behind NAT sends from elsewhere than it says), and packets from
//!   any other source are dropped, so a stranger cannot take over a leg.
//! - **One stream per leg.** Everything sent on a leg, relayed audio and
//!   prompts alike, goes through that leg's [`StreamSplicer`]: one SSRC,
//!   sequence numbers without gaps, timestamps that follow media time.
//! - **A prompt outranks relayed audio** on the leg it plays to; relayed
//!   telephone-events and audio resume after it, with a marker.
//! - **No transcoding.** Both legs carry the same codec (the B2BUA offers
//!   the callee what the caller offered); only payload type numbers of
//!   telephone-event may differ, and are mapped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::dtmf::{Digit, DtmfReceiver};
use crate::player::{FRAME_DURATION, FRAME_SAMPLES, PACKET_LEN, Prompt, PromptPlayer};
use crate::rtp::{HEADER_LEN, RtpPacket, StreamSplicer};
use crate::tones::{DualTone, ToneDetector};
use crate::{Codec, SAMPLE_RATE};

/// A leg of an anchored call.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Leg {
    /// Faces the caller.
    A,
    /// Faces the callee.
    B,
}

impl Leg {
    pub const BOTH: [Leg; 2] = [Leg::A, Leg::B];

    pub fn index(self) -> usize {
        match self {
            Leg::A => 0,
            Leg::B => 1,
        }
    }

    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }
}

/// What was negotiated for a leg.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LegMedia {
    /// Where its SDP says to send (`None`: on hold with no address, or not
    /// known yet).
    pub remote: Option<SocketAddr>,
    pub codec: Codec,
    /// The payload type of the codec on this leg.
    pub audio_pt: u8,
    /// telephone-event's payload type in what we send on this leg (the
    /// party's SDP numbers it), if negotiated.
    pub event_pt: Option<u8>,
    /// telephone-event's payload type in what the party sends (our SDP to
    /// it numbers it: RFC 3264, a description names what its author
    /// receives).
    pub rx_event_pt: Option<u8>,
    /// Whether the party is to send at all (not holding the call): a leg
    /// that must not send is never reported silent.
    pub sends: bool,
}

/// What a session reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SessionEvent {
    /// A digit collected on a leg (RFC 4733 or in-band).
    Digit(Leg, Digit),
    /// The prompt playing to a leg has ended.
    PromptDone(Leg),
    /// Nothing has arrived on a leg for the RTP timeout.
    Silent(Leg),
}

/// Where a session's output goes.
pub trait Output {
    /// Send `packet` from `leg`'s socket to `to`.
    fn send(&mut self, leg: Leg, to: SocketAddr, packet: &[u8]);
    fn event(&mut self, event: SessionEvent);
}

/// Decoded audio of both legs, for a recording: pulled a frame at a time.
#[derive(Default, Debug)]
struct Mixer {
    /// Samples received from each leg, not yet written.
    pending: [Vec<i16>; 2],
}

/// Most audio a recording buffers per leg before dropping the oldest (one
/// second: a leg sending faster than real time cannot grow memory).
const MAX_PENDING: usize = SAMPLE_RATE as usize;

#[derive(Debug)]
struct LegState {
    media: Option<LegMedia>,
    latched: Option<SocketAddr>,
    /// The stream sent on this leg.
    stream: StreamSplicer,
    player: Option<Player>,
    collector: Option<Collector>,
    /// This leg's telephone-events, turned into tones for the other leg
    /// when that one did not negotiate events.
    regen: DtmfReceiver,
    last_heard: Instant,
    silent_reported: bool,
    received: u64,
    sent: u64,
    dropped: u64,
}

#[derive(Debug)]
struct Player {
    player: PromptPlayer,
    next_at: Instant,
    /// Its end is reported (`PromptDone`); a regenerated digit's is not.
    report: bool,
}

#[derive(Debug)]
struct Collector {
    events: DtmfReceiver,
    tones: ToneDetector,
}

impl LegState {
    fn new(now: Instant, ssrc: u32, sequence: u16, timestamp: u32) -> LegState {
        LegState {
            media: None,
            latched: None,
            stream: StreamSplicer::new(ssrc, sequence, timestamp, FRAME_SAMPLES as u32),
            player: None,
            collector: None,
            regen: DtmfReceiver::default(),
            last_heard: now,
            silent_reported: false,
            received: 0,
            sent: 0,
            dropped: 0,
        }
    }

    /// Where packets for this leg go.
    fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.media.and_then(|m| m.remote))
    }
}

/// Per-leg packet counts.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct LegStats {
    pub received: u64,
    pub sent: u64,
    /// From a source other than the latched one, of a payload type not
    /// negotiated, or not RTP at all.
    pub dropped: u64,
}

pub struct Session {
    legs: [LegState; 2],
    /// Audio and events cross between the legs.
    bridged: bool,
    recording: Option<Mixer>,
    rtp_timeout: Duration,
    /// Scratch space for a prompt's packets and decoded audio.
    packet: [u8; PACKET_LEN],
    pcm: [i16; 1024],
}

/// Random stream identifiers for a session (SSRC, first sequence number,
/// first timestamp per leg): RFC 3550 wants them unpredictable.
#[derive(Clone, Copy, Debug)]
pub struct StreamSeeds {
    pub ssrc: [u32; 2],
    pub sequence: [u16; 2],
    pub timestamp: [u32; 2],
}

impl Session {
    pub fn new(seeds: StreamSeeds, rtp_timeout: Duration, now: Instant) -> Session {
        let leg =
            |i: usize| LegState::new(now, seeds.ssrc[i], seeds.sequence[i], seeds.timestamp[i]);
        Session {
            legs: [leg(0), leg(1)],
            bridged: false,
            recording: None,
            rtp_timeout,
            packet: [0; PACKET_LEN],
            pcm: [0; 1024],
        }
    }

    /// Sets (or, on a re-INVITE, changes) what a leg negotiated. A new
    /// remote address unlatches the leg: the party moved.
    pub fn set_leg(&mut self, leg: Leg, media: LegMedia) {
        let state = &mut self.legs[leg.index()];
        if state.media.map(|m| m.remote) != Some(media.remote) {
            state.latched = None;
        }
        state.media = Some(media);
    }

    /// Starts or stops relaying between the legs.
    pub fn bridge(&mut self, on: bool) {
        self.bridged = on;
    }

    /// Counts silence from `now` on both legs (a call just answered: what
    /// was not heard while it rang does not count).
    pub fn watch_silence(&mut self, now: Instant) {
        for leg in &mut self.legs {
            leg.last_heard = now;
            leg.silent_reported = false;
        }
    }

    /// Plays `prompt` to `leg` `plays` times (a second apart), replacing
    /// what it was playing; relayed audio to the leg waits until it ends.
    pub fn play(&mut self, leg: Leg, prompt: Prompt, plays: u32, now: Instant) {
        let state = &mut self.legs[leg.index()];
        let Some(media) = state.media else {
            return;
        };
        let player = PromptPlayer::new(prompt, media.codec, media.audio_pt)
            .repeat(plays, Duration::from_secs(1));
        state.player = Some(Player {
            player,
            next_at: now,
            report: true,
        });
    }

    /// Stops a leg's prompt (no `PromptDone` follows).
    pub fn stop(&mut self, leg: Leg) {
        let state = &mut self.legs[leg.index()];
        if state.player.take().is_some() {
            state.stream.cut();
        }
    }

    /// Starts or stops collecting digits from a leg.
    pub fn collect(&mut self, leg: Leg, on: bool) {
        self.legs[leg.index()].collector = on.then(|| Collector {
            events: DtmfReceiver::default(),
            tones: ToneDetector::new(),
        });
    }

    /// Starts keeping both legs' audio for [`Session::record_frame`].
    pub fn record(&mut self, on: bool) {
        self.recording = on.then(Mixer::default);
    }

    pub fn stats(&self, leg: Leg) -> LegStats {
        let s = &self.legs[leg.index()];
        LegStats {
            received: s.received,
            sent: s.sent,
            dropped: s.dropped,
        }
    }

    /// Whether [`tick`](Self::tick) must run every frame (a prompt plays,
    /// digits are collected or audio recorded); otherwise once a second
    /// is enough, for the RTP timeout.
    pub fn needs_ticks(&self) -> bool {
        self.recording.is_some()
            || self
                .legs
                .iter()
                .any(|l| l.player.is_some() || l.collector.is_some())
    }

    /// A datagram that arrived on `leg`'s socket from `from` at `now`. It
    /// may be rewritten in place before it is relayed.
    pub fn receive(
        &mut self,
        leg: Leg,
        from: SocketAddr,
        packet: &mut [u8],
        now: Instant,
        out: &mut impl Output,
    ) {
        let i = leg.index();
        let state = &mut self.legs[i];
        let Some(media) = state.media else {
            state.dropped += 1;
            return;
        };
        let Ok(rtp) = RtpPacket::parse(packet) else {
            state.dropped += 1;
            return;
        };
        let header = rtp.header;
        let is_event = media.rx_event_pt == Some(header.payload_type);
        if !is_event && header.payload_type != media.audio_pt {
            state.dropped += 1;
            return;
        }
        // Only RTP of the call latches a leg, and the address the party's
        // SDP named takes it back from any other: a stray or spoofed
        // packet cannot steal a leg from its party.
        match state.latched {
            Some(source) if source == from => {}
            Some(_) if media.remote.is_some_and(|r| r.ip() == from.ip()) => {
                state.latched = Some(from);
            }
            Some(_) => {
                state.dropped += 1;
                return;
            }
            None => state.latched = Some(from),
        }
        state.received += 1;
        state.last_heard = now;
        state.silent_reported = false;
        let payload_len = rtp.payload.len();
        let payload_at = packet.len() - usize::from(rtp.padding) - payload_len;
        let payload = &packet[payload_at..payload_at + payload_len];
        if let Some(collector) = &mut state.collector {
            if is_event {
                if let Ok(digits) = collector.events.receive(&header, payload, now) {
                    for digit in digits {
                        out.event(SessionEvent::Digit(leg, digit));
                    }
                }
            } else {
                let n = payload_len.min(self.pcm.len());
                media.codec.decode_into(&payload[..n], &mut self.pcm[..n]);
                collector.tones.feed(&self.pcm[..n], |digit| {
                    out.event(SessionEvent::Digit(leg, digit))
                });
            }
        }
        if !is_event && let Some(mixer) = &mut self.recording {
            let n = payload_len.min(self.pcm.len());
            media.codec.decode_into(&payload[..n], &mut self.pcm[..n]);
            let pending = &mut mixer.pending[i];
            pending.extend_from_slice(&self.pcm[..n]);
            if pending.len() > MAX_PENDING {
                let excess = pending.len() - MAX_PENDING;
                pending.drain(..excess);
            }
        }
        if !self.bridged {
            return;
        }
        let other = &mut self.legs[leg.other().index()];
        let (Some(other_media), Some(to)) = (other.media, other.destination()) else {
            return;
        };
        if other.player.is_some() {
            return;
        }
        let payload_type = if is_event {
            match other_media.event_pt {
                Some(pt) => pt,
                // The other leg did not negotiate events: the digit is
                // regenerated there as its two tones.
                None => {
                    let this = &mut self.legs[i];
                    let digits = this.regen.receive(
                        &header,
                        &packet[payload_at..payload_at + payload_len],
                        now,
                    );
                    if let Ok(digits) = digits {
                        for digit in digits {
                            self.regenerate(leg.other(), digit, now);
                        }
                    }
                    return;
                }
            }
        } else {
            other_media.audio_pt
        };
        let Some(mut rewritten) = other.stream.splice(&header, now) else {
            // A duplicate or a packet from before the last one sent.
            return;
        };
        rewritten.payload_type = payload_type;
        // Only a fixed header of ours and the payload cross: a CSRC list or
        // a header extension (which can carry a CNAME naming a host) never
        // does, and padding is dropped.
        if payload_at != HEADER_LEN {
            packet.copy_within(payload_at..payload_at + payload_len, HEADER_LEN);
        }
        let packet = &mut packet[..HEADER_LEN + payload_len];
        packet[0] = 0x80;
        if let Ok(mut view) = crate::rtp::RtpPacketMut::new(packet) {
            view.set(&rewritten);
            other.sent += 1;
            out.send(leg.other(), to, packet);
        }
    }

    /// Plays `digit`'s tones on `leg` (100 ms, then 50 ms of silence), over
    /// whatever relayed audio, without a `PromptDone`.
    fn regenerate(&mut self, leg: Leg, digit: Digit, now: Instant) {
        let state = &mut self.legs[leg.index()];
        let Some(media) = state.media else {
            return;
        };
        let mut samples = vec![0i16; 1200];
        DualTone::dtmf(digit, -10.0).fill(&mut samples[..800]);
        let player = PromptPlayer::new(Prompt::new(samples), media.codec, media.audio_pt);
        state.player = Some(Player {
            player,
            next_at: now,
            report: false,
        });
    }

    /// Plays due prompt frames, reports digits whose end was lost and legs
    /// gone silent. Call every frame while [`needs_ticks`], else about once
    /// a second.
    ///
    /// [`needs_ticks`]: Self::needs_ticks
    pub fn tick(&mut self, now: Instant, out: &mut impl Output) {
        // Digits whose end packets were all lost are regenerated too.
        for leg in Leg::BOTH {
            if let Some(digit) = self.legs[leg.index()].regen.poll(now) {
                self.regenerate(leg.other(), digit, now);
            }
        }
        for leg in Leg::BOTH {
            let state = &mut self.legs[leg.index()];
            if let Some(collector) = &mut state.collector
                && let Some(digit) = collector.events.poll(now)
            {
                out.event(SessionEvent::Digit(leg, digit));
            }
            if state.media.is_some_and(|m| m.sends)
                && !state.silent_reported
                && now.saturating_duration_since(state.last_heard) >= self.rtp_timeout
            {
                state.silent_reported = true;
                out.event(SessionEvent::Silent(leg));
            }
            let destination = state.destination();
            let Some(playing) = &mut state.player else {
                continue;
            };
            let mut done = false;
            // Catch up frame by frame if the tick came late: a prompt keeps
            // its pace (and the far end's jitter buffer its fill).
            while playing.next_at <= now {
                match playing.player.next_frame(
                    &mut state.stream,
                    playing.next_at,
                    &mut self.packet,
                ) {
                    Ok(Some(len)) => {
                        if let Some(to) = destination {
                            state.sent += 1;
                            out.send(leg, to, &self.packet[..len]);
                        }
                        playing.next_at += FRAME_DURATION;
                    }
                    Ok(None) | Err(_) => {
                        done = true;
                        break;
                    }
                }
            }
            if done {
                let report = state.player.take().is_some_and(|p| p.report);
                state.stream.cut();
                if report {
                    out.event(SessionEvent::PromptDone(leg));
                }
            }
        }
    }

    /// Takes one frame of recorded audio of each leg (caller, callee),
    /// padded with silence where a leg sent less; `None` when not
    /// recording. Called once per frame by the recording's owner.
    pub fn record_frame(&mut self) -> Option<([i16; FRAME_SAMPLES], [i16; FRAME_SAMPLES])> {
        let mixer = self.recording.as_mut()?;
        let mut frames = [[0i16; FRAME_SAMPLES]; 2];
        for (frame, pending) in frames.iter_mut().zip(mixer.pending.iter_mut()) {
            let n = pending.len().min(FRAME_SAMPLES);
            frame[..n].copy_from_slice(&pending[..n]);
            pending.drain(..n);
        }
        let [a, b] = frames;
        Some((a, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::DtmfEncoder;
    use crate::rtp::{HEADER_LEN, RtpHeader};

    #[derive(Default)]
    struct Captured {
        sent: Vec<(Leg, SocketAddr, Vec<u8>)>,
        events: Vec<SessionEvent>,
    }

    impl Output for Captured {
        fn send(&mut self, leg: Leg, to: SocketAddr, packet: &[u8]) {
            self.sent.push((leg, to, packet.to_vec()));
        }
        fn event(&mut self, event: SessionEvent) {
            self.events.push(event);
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn session(now: Instant) -> Session {
        let mut s = Session::new(
            StreamSeeds {
                ssrc: [0xAAAA, 0xBBBB],
                sequence: [100, 200],
                timestamp: [1000, 2000],
            },
            Duration::from_secs(60),
            now,
        );
        s.set_leg(
            Leg::A,
            LegMedia {
                remote: Some(addr("10.0.0.1:4000")),
                codec: Codec::Pcmu,
                audio_pt: 0,
                event_pt: Some(101),
                rx_event_pt: Some(101),
                sends: true,
            },
        );
        s.set_leg(
            Leg::B,
            LegMedia {
                remote: Some(addr("10.0.0.2:5000")),
                codec: Codec::Pcmu,
                audio_pt: 0,
                event_pt: Some(96),
                rx_event_pt: Some(96),
                sends: true,
            },
        );
        s
    }

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + payload.len()];
        RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc,
        }
        .write(&mut p)
        .unwrap();
        p[HEADER_LEN..].copy_from_slice(payload);
        p
    }

    /// The caller keys `digit` as RFC 4733 events (payload type 101) at
    /// RTP time `timestamp`.
    fn key(s: &mut Session, digit: char, timestamp: u32, now: Instant, out: &mut Captured) {
        let encoder = DtmfEncoder::new(
            Digit::try_from(digit).unwrap(),
            Duration::from_millis(100),
            10,
        )
        .unwrap();
        for (i, ev) in encoder.enumerate() {
            let mut p = packet(101, 50 + i as u16, timestamp, 0x42, &ev.event.to_bytes());
            crate::rtp::RtpPacketMut::new(&mut p)
                .unwrap()
                .set_marker(ev.marker);
            s.receive(Leg::A, addr("10.0.0.1:4000"), &mut p, now, out);
        }
    }

    fn header(p: &[u8]) -> RtpHeader {
        RtpPacket::parse(p).unwrap().header
    }

    #[test]
    fn bridged_audio_crosses_under_the_other_legs_stream_and_latches_its_source() {
        let now = Instant::now();
        let mut s = session(now);
        s.bridge(true);
        let mut out = Captured::default();
        // The caller sends from behind NAT, not from its SDP address.
        let nat = addr("192.0.2.9:30000");
        for i in 0..3u16 {
            let mut p = packet(0, 7 + i, 160 * u32::from(i), 0x1234, &[0x55; 160]);
            s.receive(Leg::A, nat, &mut p, now, &mut out);
        }
        assert_eq!(out.sent.len(), 3);
        for (i, (leg, to, p)) in out.sent.iter().enumerate() {
            assert_eq!(*leg, Leg::B);
            assert_eq!(*to, addr("10.0.0.2:5000"));
            let h = header(p);
            assert_eq!(h.ssrc, 0xBBBB, "the callee sees the B leg's stream");
            assert_eq!(h.sequence, 200 + i as u16);
            assert_eq!(&p[HEADER_LEN..], &[0x55; 160]);
        }
        // Replies to the caller go to where it really sends from.
        let mut p = packet(0, 1, 0, 0x9999, &[0x11; 160]);
        s.receive(Leg::B, addr("10.0.0.2:5000"), &mut p, now, &mut out);
        assert_eq!(out.sent[3].1, nat);
        // A stranger cannot take over the latched leg.
        let mut p = packet(0, 10, 480, 0x1234, &[0x77; 160]);
        s.receive(Leg::A, addr("198.51.100.1:1"), &mut p, now, &mut out);
        assert_eq!(out.sent.len(), 4);
        assert_eq!(s.stats(Leg::A).dropped, 1);
    }

    #[test]
    fn the_sdp_address_takes_its_leg_back_from_a_stranger_who_sent_first() {
        let now = Instant::now();
        let mut s = session(now);
        s.bridge(true);
        let mut out = Captured::default();
        // A stranger's RTP arrives first and latches the caller's leg...
        let mut p = packet(0, 1, 0, 0x66, &[0x01; 160]);
        s.receive(Leg::A, addr("203.0.113.5:9999"), &mut p, now, &mut out);
        // ...but garbage and foreign payload types never latch.
        let mut junk = vec![0xFF; 40];
        s.receive(Leg::B, addr("203.0.113.5:9999"), &mut junk, now, &mut out);
        let mut p = packet(0, 1, 0, 0x77, &[0x02; 160]);
        s.receive(Leg::B, addr("10.0.0.2:5000"), &mut p, now, &mut out);
        assert_eq!(out.sent.last().unwrap().1, addr("203.0.113.5:9999"));
        // The caller's own address, as its SDP named it, takes the leg back.
        let mut p = packet(0, 2, 160, 0x11, &[0x03; 160]);
        s.receive(Leg::A, addr("10.0.0.1:4000"), &mut p, now, &mut out);
        let mut p = packet(0, 2, 160, 0x77, &[0x04; 160]);
        s.receive(Leg::B, addr("10.0.0.2:5000"), &mut p, now, &mut out);
        assert_eq!(out.sent.last().unwrap().1, addr("10.0.0.1:4000"));
        // And the stranger is dropped from then on.
        let before = out.sent.len();
        let mut p = packet(0, 3, 320, 0x66, &[0x05; 160]);
        s.receive(Leg::A, addr("203.0.113.5:9999"), &mut p, now, &mut out);
        assert_eq!(out.sent.len(), before);
    }

    #[test]
    fn csrcs_header_extensions_and_padding_never_cross() {
        let now = Instant::now();
        let mut s = session(now);
        s.bridge(true);
        let mut out = Captured::default();
        // V=2, P=1, X=1, CC=2; two CSRCs; an extension of one word that
        // could carry a CNAME; 160 bytes of payload; 4 bytes of padding.
        let mut p = vec![0xB2, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 9];
        p.extend_from_slice(&[0xAA; 8]);
        p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, b'h', b'o', b's', b't']);
        p.extend_from_slice(&[0x42; 160]);
        p.extend_from_slice(&[0, 0, 0, 4]);
        s.receive(Leg::A, addr("10.0.0.1:4000"), &mut p, now, &mut out);
        let (_, _, sent) = out.sent.last().unwrap();
        assert_eq!(sent.len(), HEADER_LEN + 160);
        assert_eq!(sent[0], 0x80, "no padding, extension or CSRCs");
        assert_eq!(&sent[HEADER_LEN..], &[0x42; 160]);
    }

    #[test]
    fn a_leg_on_hold_is_not_reported_silent() {
        let mut now = Instant::now();
        let mut s = session(now);
        s.set_leg(
            Leg::B,
            LegMedia {
                remote: None,
                codec: Codec::Pcmu,
                audio_pt: 0,
                event_pt: None,
                rx_event_pt: None,
                sends: false,
            },
        );
        let mut out = Captured::default();
        now += Duration::from_secs(61);
        s.tick(now, &mut out);
        assert_eq!(out.events, [SessionEvent::Silent(Leg::A)]);
    }

    #[test]
    fn unbridged_legs_relay_nothing_and_foreign_payload_types_are_dropped() {
        let now = Instant::now();
        let mut s = session(now);
        let mut out = Captured::default();
        let mut p = packet(0, 1, 0, 1, &[0; 160]);
        s.receive(Leg::A, addr("10.0.0.1:4000"), &mut p, now, &mut out);
        assert!(out.sent.is_empty());
        s.bridge(true);
        let mut p = packet(18, 2, 160, 1, &[0; 20]);
        s.receive(Leg::A, addr("10.0.0.1:4000"), &mut p, now, &mut out);
        assert!(out.sent.is_empty());
        assert_eq!(s.stats(Leg::A).dropped, 1);
        let mut garbage = vec![0xFFu8; 5];
        s.receive(Leg::A, addr("10.0.0.1:4000"), &mut garbage, now, &mut out);
        assert_eq!(s.stats(Leg::A).dropped, 2);
    }

    #[test]
    fn telephone_events_are_relayed_under_the_other_legs_payload_type_and_collected_once() {
        let now = Instant::now();
        let mut s = session(now);
        s.bridge(true);
        s.collect(Leg::A, true);
        let mut out = Captured::default();
        key(&mut s, '5', 8000, now, &mut out);
        let digits: Vec<_> = out
            .events
            .iter()
            .filter(|e| matches!(e, SessionEvent::Digit(Leg::A, _)))
            .collect();
        assert_eq!(digits.len(), 1);
        assert!(
            out.sent
                .iter()
                .all(|(_, _, p)| header(p).payload_type == 96)
        );
        assert!(!out.sent.is_empty());
    }

    #[test]
    fn a_digit_crosses_as_tones_to_a_leg_without_telephone_events() {
        let mut now = Instant::now();
        let mut s = session(now);
        s.set_leg(
            Leg::B,
            LegMedia {
                remote: Some(addr("10.0.0.2:5000")),
                codec: Codec::Pcmu,
                audio_pt: 0,
                event_pt: None,
                rx_event_pt: None,
                sends: true,
            },
        );
        s.bridge(true);
        let mut out = Captured::default();
        key(&mut s, '7', 4000, now, &mut out);
        for _ in 0..10 {
            s.tick(now, &mut out);
            now += FRAME_DURATION;
        }
        let mut detector = crate::tones::ToneDetector::new();
        let mut heard = Vec::new();
        for (leg, _, p) in &out.sent {
            assert_eq!(*leg, Leg::B);
            let rtp = RtpPacket::parse(p).unwrap();
            assert_eq!(rtp.header.payload_type, 0, "audio, not events");
            let pcm: Vec<i16> = rtp.payload.iter().map(|&c| Codec::Pcmu.decode(c)).collect();
            detector.feed(&pcm, |d| heard.push(d));
        }
        assert_eq!(heard, [Digit::try_from('7').unwrap()]);
        assert!(
            !out.events
                .iter()
                .any(|e| matches!(e, SessionEvent::PromptDone(_)))
        );
    }

    #[test]
    fn a_prompt_outranks_relayed_audio_and_the_stream_stays_continuous() {
        let mut now = Instant::now();
        let mut s = session(now);
        s.bridge(true);
        let mut out = Captured::default();
        // 60 ms of prompt to the caller.
        s.play(Leg::A, Prompt::new(vec![1000i16; 480]), 1, now);
        assert!(s.needs_ticks());
        for relayed_seq in 0..5u16 {
            s.tick(now, &mut out);
            let mut p = packet(
                0,
                relayed_seq,
                u32::from(relayed_seq) * 160,
                0x77,
                &[0x22; 160],
            );
            s.receive(Leg::B, addr("10.0.0.2:5000"), &mut p, now, &mut out);
            now += FRAME_DURATION;
        }
        assert!(out.events.contains(&SessionEvent::PromptDone(Leg::A)));
        let to_a: Vec<RtpHeader> = out
            .sent
            .iter()
            .filter(|(leg, _, _)| *leg == Leg::A)
            .map(|(_, _, p)| header(p))
            .collect();
        // Three prompt frames, then relayed audio (the first of it marked).
        assert_eq!(to_a.len(), 5, "{to_a:?}");
        assert!(to_a[0].marker);
        assert!(to_a[3].marker);
        for w in to_a.windows(2) {
            assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
            assert!(w[1].timestamp.wrapping_sub(w[0].timestamp) < 1 << 31);
            assert_eq!(w[1].ssrc, w[0].ssrc);
        }
    }

    #[test]
    fn a_silent_leg_is_reported_once_per_silence() {
        let mut now = Instant::now();
        let mut s = session(now);
        let mut out = Captured::default();
        now += Duration::from_secs(59);
        s.tick(now, &mut out);
        assert!(out.events.is_empty());
        now += Duration::from_secs(1);
        s.tick(now, &mut out);
        s.tick(now, &mut out);
        assert_eq!(
            out.events,
            [SessionEvent::Silent(Leg::A), SessionEvent::Silent(Leg::B)]
        );
    }

    #[test]
    fn recording_takes_both_legs_a_frame_at_a_time_padded_with_silence() {
        let now = Instant::now();
        let mut s = session(now);
        s.record(true);
        let mut out = Captured::default();
        let mut p = packet(0, 1, 0, 1, &[crate::g711::ulaw_encode(1000); 160]);
        s.receive(Leg::A, addr("10.0.0.1:4000"), &mut p, now, &mut out);
        let (a, b) = s.record_frame().unwrap();
        assert!(a.iter().all(|&x| (x - 1000).abs() < 40));
        assert!(b.iter().all(|&x| x == 0));
        let (a, _) = s.record_frame().unwrap();
        assert!(a.iter().all(|&x| x == 0));
    }
}
