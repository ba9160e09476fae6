//! G.711 (ITU-T): μ-law (PCMU) and A-law (PCMA) between 8-bit codes and
//! 16-bit linear PCM.
//!
//! Both directions are table lookups. The tables are computed at compile time
//! from the reference algorithms (the segment/quantisation formulation of the
//! ITU-T G.191 software tools), so the code holds one definition of each law
//! and no hand-typed table can drift from it. Encoding sees only the top 14
//! (μ-law) or 13 (A-law) bits of a sample, which is what the laws quantise
//! anyway, so an encode table is 16 KiB (μ) or 8 KiB (A).

use std::fmt;

/// One of the two G.711 laws, as negotiated in SDP.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Codec {
    /// μ-law, RTP payload type 0 (North America, Japan).
    Pcmu,
    /// A-law, RTP payload type 8 (most of the rest of the world).
    Pcma,
}

impl Codec {
    /// The static payload type RFC 3551 assigns.
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name in `a=rtpmap` (matched case-insensitively).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The code for linear zero: what padding and gaps are filled with.
    pub const fn silence(self) -> u8 {
        match self {
            Codec::Pcmu => ULAW_SILENCE,
            Codec::Pcma => ALAW_SILENCE,
        }
    }

    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => ulaw_encode(sample),
            Codec::Pcma => alaw_encode(sample),
        }
    }

    pub fn decode(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => ulaw_decode(code),
            Codec::Pcma => alaw_decode(code),
        }
    }

    /// Encodes as many samples as both slices hold (the shorter decides).
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) {
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = self.encode(s);
        }
    }

    /// Decodes as many codes as both slices hold (the shorter decides).
    pub fn decode_into(self, codes: &[u8], out: &mut [i16]) {
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = self.decode(c);
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encoding_name())
    }
}

// === μ-law ===

/// μ-law code of linear 0 (positive zero).
pub const ULAW_SILENCE: u8 = 0xFF;

const ULAW_BIAS: i32 = 0x84;
/// Largest 14-bit magnitude that still fits the top segment once biased.
const ULAW_CLIP: i32 = 8159;

static ULAW_DECODE: [i16; 256] = ulaw_decode_table();
static ULAW_ENCODE: [u8; 1 << 14] = ulaw_encode_table();

pub fn ulaw_encode(sample: i16) -> u8 {
    // The 14-bit value, offset to a table index: -8192..=8191 -> 0..=16383.
    ULAW_ENCODE[((sample >> 2) as i32 + 8192) as usize]
}

pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// G.191's `ulaw_compress` on a 14-bit sample.
const fn ulaw_compress(sample14: i32) -> u8 {
    let (magnitude, mask) = if sample14 < 0 {
        (-sample14, 0x7F)
    } else {
        (sample14, 0xFF)
    };
    let magnitude = if magnitude > ULAW_CLIP {
        ULAW_CLIP
    } else {
        magnitude
    };
    let biased = magnitude + (ULAW_BIAS >> 2);
    // Segment s holds magnitudes below 64 << s.
    let mut segment = 0;
    while segment < 8 && biased >= (0x40 << segment) {
        segment += 1;
    }
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    let code = ((segment << 4) | ((biased >> (segment + 1)) & 0xF)) as u8;
    code ^ mask
}

const fn ulaw_expand(code: u8) -> i16 {
    let code = !code;
    let mut t = (((code & 0x0F) as i32) << 3) + ULAW_BIAS;
    t <<= ((code & 0x70) >> 4) as i32;
    let value = if code & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    };
    value as i16
}

const fn ulaw_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = ulaw_expand(code as u8);
        code += 1;
    }
    table
}

const fn ulaw_encode_table() -> [u8; 1 << 14] {
    let mut table = [0u8; 1 << 14];
    let mut index = 0;
    while index < (1 << 14) {
        table[index] = ulaw_compress(index as i32 - 8192);
        index += 1;
    }
    table
}

// === A-law ===

/// A-law code of the smallest positive level (A-law has no exact zero).
pub const ALAW_SILENCE: u8 = 0xD5;

static ALAW_DECODE: [i16; 256] = alaw_decode_table();
static ALAW_ENCODE: [u8; 1 << 13] = alaw_encode_table();

pub fn alaw_encode(sample: i16) -> u8 {
    // The 13-bit value, offset to a table index: -4096..=4095 -> 0..=8191.
    ALAW_ENCODE[((sample >> 3) as i32 + 4096) as usize]
}

pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// G.191's `alaw_compress` on a 13-bit sample.
const fn alaw_compress(sample13: i32) -> u8 {
    let (magnitude, mask) = if sample13 >= 0 {
        (sample13, 0xD5)
    } else {
        // One's complement: -1 maps onto the lowest negative level.
        (-sample13 - 1, 0x55)
    };
    // Segment s holds magnitudes below 32 << s.
    let mut segment = 0;
    while segment < 8 && magnitude >= (0x20 << segment) {
        segment += 1;
    }
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    let step = if segment < 2 { 1 } else { segment };
    let code = ((segment << 4) | ((magnitude >> step) & 0xF)) as u8;
    code ^ mask
}

const fn alaw_expand(code: u8) -> i16 {
    let code = code ^ 0x55;
    let mut t = ((code & 0x0F) as i32) << 4;
    let segment = ((code & 0x70) >> 4) as i32;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= segment - 1;
        }
    }
    let value = if code & 0x80 != 0 { t } else { -t };
    value as i16
}

const fn alaw_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = alaw_expand(code as u8);
        code += 1;
    }
    table
}

const fn alaw_encode_table() -> [u8; 1 << 13] {
    let mut table = [0u8; 1 << 13];
    let mut index = 0;
    while index < (1 << 13) {
        table[index] = alaw_compress(index as i32 - 4096);
        index += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BOTH: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    // Expected values below come from an independent implementation of the
    // reference algorithm (CPython's `audioop`, derived from Sun's g711.c),
    // not from this file.

    #[test]
    fn mu_law_reference_values() {
        for (code, linear) in [
            (0xFF, 0),
            (0x7F, 0),
            (0x80, 32124),
            (0x00, -32124),
            (0xFE, 8),
            (0x7E, -8),
            (0xF0, 120),
            (0xEF, 132),
            (0xDF, 396),
            (0x8F, 16764),
        ] {
            assert_eq!(ulaw_decode(code), linear, "code {code:#04x}");
        }
        for (linear, code) in [
            (0, 0xff),
            (-1, 0x7e),
            (1, 0xff),
            (7, 0xfe),
            (8, 0xfe),
            (-9, 0x7d),
            (100, 0xf2),
            (-100, 0x72),
            (1000, 0xce),
            (-1000, 0x4e),
            (4000, 0xaf),
            (-4000, 0x2f),
            (12345, 0x97),
            (-12345, 0x17),
            (32767, 0x80),
            (-32768, 0x0),
            (30000, 0x82),
            (-30000, 0x2),
        ] {
            assert_eq!(ulaw_encode(linear), code, "sample {linear}");
        }
    }

    #[test]
    fn a_law_reference_values() {
        for (code, linear) in [
            (0xD5, 8),
            (0x55, -8),
            (0xAA, 32256),
            (0x2A, -32256),
            (0xD4, 24),
            (0xC5, 264),
            (0xF5, 528),
        ] {
            assert_eq!(alaw_decode(code), linear, "code {code:#04x}");
        }
        for (linear, code) in [
            (0, 0xd5),
            (-1, 0x55),
            (1, 0xd5),
            (7, 0xd5),
            (8, 0xd5),
            (-9, 0x55),
            (100, 0xd3),
            (-100, 0x53),
            (1000, 0xfa),
            (-1000, 0x7a),
            (4000, 0x9a),
            (-4000, 0x1a),
            (12345, 0xbd),
            (-12345, 0x3d),
            (32767, 0xaa),
            (-32768, 0x2a),
            (30000, 0xa8),
            (-30000, 0x28),
        ] {
            assert_eq!(alaw_encode(linear), code, "sample {linear}");
        }
    }

    /// Whole-table cross-checks: position-weighted sums of every decode and
    /// every encode, as the reference implementation computes them.
    #[test]
    fn whole_tables_match_the_reference() {
        let decode_sum = |codec: Codec| -> i64 {
            (0..=255u8)
                .map(|c| codec.decode(c) as i64 * (c as i64 + 1))
                .sum()
        };
        let encode_sum = |codec: Codec| -> i64 {
            (i16::MIN..=i16::MAX)
                .map(|x| codec.encode(x) as i64 * ((x as i64 + 32768) % 997 + 1))
                .sum()
        };
        assert_eq!(decode_sum(Codec::Pcmu), 98_107_392);
        assert_eq!(decode_sum(Codec::Pcma), 100_139_008);
        assert_eq!(encode_sum(Codec::Pcmu), 2_837_536_478);
        assert_eq!(encode_sum(Codec::Pcma), 3_471_906_535);
    }

    #[test]
    fn silence_decodes_to_the_smallest_level() {
        assert_eq!(Codec::Pcmu.decode(Codec::Pcmu.silence()), 0);
        assert_eq!(Codec::Pcma.decode(Codec::Pcma.silence()), 8);
        assert_eq!(Codec::Pcmu.encode(0), Codec::Pcmu.silence());
        assert_eq!(Codec::Pcma.encode(0), Codec::Pcma.silence());
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            // μ-law's negative zero (0x7F) re-encodes as positive zero.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(ulaw_encode(ulaw_decode(code)), expected, "μ {code:#04x}");
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A {code:#04x}");
        }
    }

    #[test]
    fn decoding_is_monotonic_in_the_level() {
        for codec in BOTH {
            let mut levels: Vec<i16> = (0..=255u8).map(|c| codec.decode(c)).collect();
            levels.sort_unstable();
            levels.dedup();
            // μ-law has two zeros; A-law has 256 distinct levels.
            let expected = if codec == Codec::Pcmu { 255 } else { 256 };
            assert_eq!(levels.len(), expected, "{codec}");
        }
    }

    /// The laws' quantisation error, over every 16-bit sample: steps double
    /// with each segment, so the error stays within a sixteenth of the level
    /// plus the smallest step (beyond the top level, clipping adds to it).
    #[test]
    fn every_sample_is_quantised_within_its_segment_step() {
        for codec in BOTH {
            for sample in i16::MIN..=i16::MAX {
                let s = sample as i32;
                let got = codec.decode(codec.encode(sample)) as i32;
                let bound = s.abs() / 16 + 16 + if s.abs() > 32124 { 700 } else { 0 };
                assert!((got - s).abs() <= bound, "{codec} {sample}: got {got}");
                // Quantisation never flips the sign of a clear sample.
                if s.abs() > 16 {
                    assert_eq!(got.signum(), s.signum(), "{codec} {sample}");
                }
            }
        }
    }

    #[test]
    fn slices_encode_and_decode_up_to_the_shorter() {
        let pcm = [0i16, 1000, -1000, 32000];
        let mut codes = [0u8; 3];
        Codec::Pcmu.encode_into(&pcm, &mut codes);
        assert_eq!(codes, [0xFF, 0xCE, 0x4E]);
        let mut back = [7i16; 4];
        Codec::Pcmu.decode_into(&codes, &mut back);
        assert_eq!(back[3], 7);
        assert_eq!(back[0], 0);
    }

    proptest! {
        #[test]
        fn re_encoding_a_decoded_sample_is_stable(sample: i16, pcma: bool) {
            let codec = if pcma { Codec::Pcma } else { Codec::Pcmu };
            let once = codec.decode(codec.encode(sample));
            let twice = codec.decode(codec.encode(once));
            prop_assert_eq!(once, twice);
        }
    }
}
