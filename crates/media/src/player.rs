//! Prompts played into a call as RTP: 20 ms of G.711 per packet.
//!
//! A [`Prompt`] is loaded once (from a tenant's WAV or a built-in one) and
//! shared by every call that plays it; each call's [`PromptPlayer`] only
//! holds a position in it. The player writes whole packets through the
//! leg's [`StreamSplicer`], so the prompt is one more source of the leg's
//! single continuous stream: the relay calls
//! [`next_frame`](PromptPlayer::next_frame) every 20 ms while the prompt
//! plays and relays the other party again when it returns `None`.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rtp::{HEADER_LEN, RtpHeader, StreamSplicer};
use crate::{Codec, Error, Result, SAMPLE_RATE, wav};

/// Samples per packet: 20 ms at 8 kHz, the usual `ptime`.
pub const FRAME_SAMPLES: usize = 160;
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Bytes of a prompt packet: the fixed RTP header and one frame of G.711.
pub const PACKET_LEN: usize = HEADER_LEN + FRAME_SAMPLES;

/// The prompt's own numbering as a source, before the splicer renumbers
/// it. The SSRC is arbitrary: a prompt always starts a new segment.
const SOURCE_SSRC: u32 = 0x4D41_534B;

/// Audio to play: 8 kHz mono linear PCM, shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    samples: Arc<[i16]>,
}

impl Prompt {
    pub fn new(samples: impl Into<Arc<[i16]>>) -> Prompt {
        Prompt {
            samples: samples.into(),
        }
    }

    /// Reads and validates a WAV (see [`wav::read_prompt`]).
    pub fn from_wav(reader: impl Read) -> Result<Prompt> {
        Ok(Prompt::new(wav::read_prompt(reader)?))
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples.len() as u64 * 1_000_000 / SAMPLE_RATE as u64)
    }

    /// Packets one play takes: the last frame is padded with silence.
    pub fn frames(&self) -> usize {
        self.samples.len().div_ceil(FRAME_SAMPLES)
    }
}

/// One call's playing of a prompt, once or several times with silence in
/// between.
#[derive(Clone, Debug)]
pub struct PromptPlayer {
    prompt: Prompt,
    codec: Codec,
    payload_type: u8,
    plays: u32,
    gap_frames: u32,
    /// Plays completed.
    played: u32,
    /// Next sample of the current play.
    position: usize,
    /// Silent frames still to send before the next play.
    gap_left: u32,
    started: bool,
    sequence: u16,
    timestamp: u32,
}

impl PromptPlayer {
    /// Plays `prompt` once in `codec`, under the payload type negotiated for
    /// it (normally [`Codec::payload_type`]).
    pub fn new(prompt: Prompt, codec: Codec, payload_type: u8) -> PromptPlayer {
        PromptPlayer {
            prompt,
            codec,
            payload_type,
            plays: 1,
            gap_frames: 0,
            played: 0,
            position: 0,
            gap_left: 0,
            started: false,
            sequence: 0,
            timestamp: 0,
        }
    }

    /// Plays it `plays` times in all (at least once), with `gap` of silence
    /// (rounded up to whole frames) between plays. Silence is sent, not
    /// skipped, so that the far end's jitter buffer and media timeout see a
    /// steady stream.
    pub fn repeat(mut self, plays: u32, gap: Duration) -> PromptPlayer {
        self.plays = plays.max(1);
        self.gap_frames = gap.as_micros().div_ceil(FRAME_DURATION.as_micros()) as u32;
        self
    }

    /// Whether every play has been sent.
    pub fn is_done(&self) -> bool {
        self.played >= self.plays
    }

    /// Writes the next packet (header and payload) into `packet`, numbered
    /// by `stream` as made at `now`, and returns its length — or `None` once
    /// the prompt is over. The first packet starts a new segment of the
    /// stream, so it carries the marker bit.
    pub fn next_frame(
        &mut self,
        stream: &mut StreamSplicer,
        now: Instant,
        packet: &mut [u8],
    ) -> Result<Option<usize>> {
        if self.is_done() {
            return Ok(None);
        }
        let available = packet.len();
        let Some(buf) = packet.get_mut(..PACKET_LEN) else {
            return Err(Error::BufferTooSmall {
                needed: PACKET_LEN,
                available,
            });
        };
        if self.prompt.samples.is_empty() {
            self.played = self.plays;
            return Ok(None);
        }

        let (head, payload) = buf.split_at_mut(HEADER_LEN);
        self.fill(payload);

        if !self.started {
            stream.cut();
        }
        let source = RtpHeader {
            marker: !self.started,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: SOURCE_SSRC,
        };
        self.started = true;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        // Our own numbering only moves forward, so the splicer drops nothing
        // unless the caller fed it our SSRC from elsewhere; then start over.
        let header = match stream.splice(&source, now) {
            Some(header) => header,
            None => {
                stream.cut();
                match stream.splice(&source, now) {
                    Some(header) => header,
                    None => return Ok(None),
                }
            }
        };
        header.write(head)?;
        Ok(Some(PACKET_LEN))
    }

    /// The next 20 ms of the prompt (or of the gap) as G.711.
    fn fill(&mut self, payload: &mut [u8]) {
        let silence = self.codec.silence();
        if self.gap_left > 0 {
            self.gap_left -= 1;
            payload.fill(silence);
            return;
        }
        let samples = &self.prompt.samples;
        let end = (self.position + FRAME_SAMPLES).min(samples.len());
        let frame = samples.get(self.position..end).unwrap_or_default();
        self.codec.encode_into(frame, payload);
        if let Some(rest) = payload.get_mut(frame.len()..) {
            rest.fill(silence);
        }
        self.position = end;
        if self.position >= samples.len() {
            self.position = 0;
            self.played += 1;
            if !self.is_done() {
                self.gap_left = self.gap_frames;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpPacket;
    use proptest::prelude::*;

    fn ramp(n: usize) -> Prompt {
        Prompt::new(
            (0..n)
                .map(|i| (i as i32 * 37 % 20_000 - 10_000) as i16)
                .collect::<Vec<_>>(),
        )
    }

    /// Plays to the end, a packet every 20 ms from `t0`.
    fn play_all(
        player: &mut PromptPlayer,
        splicer: &mut StreamSplicer,
        t0: Instant,
    ) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut buf = [0u8; 1500];
        let mut now = t0;
        while let Some(len) = player.next_frame(splicer, now, &mut buf).unwrap() {
            packets.push(buf[..len].to_vec());
            now += FRAME_DURATION;
        }
        assert!(player.is_done());
        packets
    }

    #[test]
    fn a_prompt_is_one_packet_per_started_20_ms() {
        for (samples, packets) in [(1, 1), (159, 1), (160, 1), (161, 2), (8000, 50), (8001, 51)] {
            let prompt = ramp(samples);
            assert_eq!(prompt.frames(), packets);
            let mut player = PromptPlayer::new(prompt, Codec::Pcmu, 0);
            let mut splicer = StreamSplicer::new(1, 0, 0, 160);
            let got = play_all(&mut player, &mut splicer, Instant::now());
            assert_eq!(got.len(), packets, "{samples} samples");
            assert!(got.iter().all(|p| p.len() == PACKET_LEN));
        }
        assert_eq!(ramp(8000).duration(), Duration::from_secs(1));
    }

    #[test]
    fn packets_are_numbered_continuously_and_the_first_is_marked() {
        let mut player = PromptPlayer::new(ramp(1000), Codec::Pcma, 8);
        let mut splicer = StreamSplicer::new(0xCAFE, u16::MAX - 2, u32::MAX - 200, 160);
        let packets = play_all(&mut player, &mut splicer, Instant::now());
        let headers: Vec<RtpHeader> = packets
            .iter()
            .map(|p| RtpPacket::parse(p).unwrap().header)
            .collect();
        for (i, h) in headers.iter().enumerate() {
            assert_eq!(h.ssrc, 0xCAFE);
            assert_eq!(h.payload_type, 8);
            assert_eq!(h.sequence, (u16::MAX - 2).wrapping_add(i as u16));
            assert_eq!(h.timestamp, (u32::MAX - 200).wrapping_add(160 * i as u32));
            assert_eq!(h.marker, i == 0);
        }
    }

    #[test]
    fn the_payload_decodes_to_the_quantised_prompt_then_silence() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let prompt = ramp(500);
            let mut player = PromptPlayer::new(prompt.clone(), codec, codec.payload_type());
            let mut splicer = StreamSplicer::new(1, 0, 0, 160);
            let packets = play_all(&mut player, &mut splicer, Instant::now());
            let decoded: Vec<i16> = packets
                .iter()
                .flat_map(|p| RtpPacket::parse(p).unwrap().payload.to_vec())
                .map(|c| codec.decode(c))
                .collect();
            let expected: Vec<i16> = prompt
                .samples()
                .iter()
                .map(|&s| codec.decode(codec.encode(s)))
                .chain(std::iter::repeat_n(
                    codec.decode(codec.silence()),
                    640 - 500,
                ))
                .collect();
            assert_eq!(decoded, expected, "{codec}");
        }
    }

    #[test]
    fn a_repeated_prompt_has_silent_gaps_and_one_marker() {
        let prompt = ramp(320); // two frames
        let mut player =
            PromptPlayer::new(prompt, Codec::Pcmu, 0).repeat(3, Duration::from_millis(50));
        let mut splicer = StreamSplicer::new(1, 0, 0, 160);
        let packets = play_all(&mut player, &mut splicer, Instant::now());
        // 3 plays of 2 frames, 2 gaps of ceil(50/20) = 3 frames.
        assert_eq!(packets.len(), 3 * 2 + 2 * 3);
        let silent: Vec<bool> = packets
            .iter()
            .map(|p| {
                RtpPacket::parse(p)
                    .unwrap()
                    .payload
                    .iter()
                    .all(|&b| b == 0xFF)
            })
            .collect();
        assert_eq!(
            silent,
            [
                false, false, true, true, true, false, false, true, true, true, false, false
            ]
        );
        let markers = packets
            .iter()
            .filter(|p| RtpPacket::parse(p).unwrap().header.marker)
            .count();
        assert_eq!(markers, 1);
    }

    #[test]
    fn an_empty_prompt_is_done_at_once() {
        let mut player =
            PromptPlayer::new(Prompt::new(Vec::new()), Codec::Pcmu, 0).repeat(3, Duration::ZERO);
        let mut splicer = StreamSplicer::new(1, 0, 0, 160);
        assert_eq!(play_all(&mut player, &mut splicer, Instant::now()).len(), 0);
    }

    #[test]
    fn a_small_buffer_is_refused_without_losing_the_frame() {
        let mut player = PromptPlayer::new(ramp(160), Codec::Pcmu, 0);
        let mut splicer = StreamSplicer::new(1, 0, 0, 160);
        let mut small = [0u8; PACKET_LEN - 1];
        assert!(matches!(
            player.next_frame(&mut splicer, Instant::now(), &mut small),
            Err(Error::BufferTooSmall {
                needed: 172,
                available: 171
            })
        ));
        let packets = play_all(&mut player, &mut splicer, Instant::now());
        assert_eq!(packets.len(), 1);
    }

    #[test]
    fn a_prompt_between_relayed_audio_keeps_the_leg_continuous() {
        let t0 = Instant::now();
        let mut splicer = StreamSplicer::new(9, 100, 1000, 160);
        let mut out = Vec::new();
        let mut now = t0;
        let peer = |seq: u16| RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: 50_000 + seq as u32 * 160,
            ssrc: 77,
        };
        for seq in 0..3 {
            out.push(splicer.splice(&peer(seq), now).unwrap());
            now += FRAME_DURATION;
        }
        let mut player = PromptPlayer::new(ramp(480), Codec::Pcmu, 0);
        let mut buf = [0u8; PACKET_LEN];
        while let Some(len) = player.next_frame(&mut splicer, now, &mut buf).unwrap() {
            out.push(RtpPacket::parse(&buf[..len]).unwrap().header);
            now += FRAME_DURATION;
        }
        splicer.cut();
        for seq in 3..6 {
            out.push(splicer.splice(&peer(seq), now).unwrap());
            now += FRAME_DURATION;
        }
        let seqs: Vec<u16> = out.iter().map(|h| h.sequence).collect();
        assert_eq!(seqs, (100..109).collect::<Vec<_>>());
        let ts: Vec<u32> = out.iter().map(|h| h.timestamp).collect();
        assert_eq!(ts, (0..9).map(|i| 1000 + 160 * i).collect::<Vec<_>>());
        let markers: Vec<bool> = out.iter().map(|h| h.marker).collect();
        assert_eq!(
            markers,
            [true, false, false, true, false, false, true, false, false]
        );
    }

    #[test]
    fn prompts_load_from_wav() {
        let mut file = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data\x04\0\0\0".to_vec();
        file.extend_from_slice(&[1, 0, 2, 0]);
        assert_eq!(Prompt::from_wav(&file[..]).unwrap().samples(), [1, 2]);
        assert!(matches!(Prompt::from_wav(&b"nope"[..]), Err(Error::Wav(_))));
    }

    proptest! {
        #[test]
        fn any_prompt_plays_whole_and_continuous(
            samples in prop::collection::vec(any::<i16>(), 0..2000),
            plays in 1u32..4,
            gap_ms in 0u64..100,
            pcma: bool,
        ) {
            let codec = if pcma { Codec::Pcma } else { Codec::Pcmu };
            let prompt = Prompt::new(samples.clone());
            let mut player = PromptPlayer::new(prompt.clone(), codec, codec.payload_type())
                .repeat(plays, Duration::from_millis(gap_ms));
            let mut splicer = StreamSplicer::new(3, 0, 0, 160);
            let packets = play_all(&mut player, &mut splicer, Instant::now());
            let gap_frames = gap_ms.div_ceil(20) as usize;
            let expected = if samples.is_empty() {
                0
            } else {
                plays as usize * prompt.frames() + (plays as usize - 1) * gap_frames
            };
            prop_assert_eq!(packets.len(), expected);
            for (i, p) in packets.iter().enumerate() {
                let h = RtpPacket::parse(p).unwrap().header;
                prop_assert_eq!(h.sequence, i as u16);
                prop_assert_eq!(h.timestamp, 160 * i as u32);
            }
        }
    }
}
