//! WAV files: prompts read and validated ([`read_prompt`]), call recordings
//! written ([`RecordingWriter`]) and read back ([`read_recording`]).
//!
//! Prompts come from tenants over HTTP, so the reader trusts nothing: every
//! size is checked against what follows and against a limit before anything
//! is allocated, and each refusal names its reason ([`WavFault`]), which the
//! API returns with its 422.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::{Error, Result, SAMPLE_RATE, g711};

/// The largest prompt accepted: 10 minutes of 8 kHz PCM16 (20 of G.711).
pub const MAX_PROMPT_BYTES: u32 = 10 * 60 * SAMPLE_RATE * 2;
/// The most bytes of other chunks (metadata) read past before the audio.
const MAX_SKIPPED_BYTES: u64 = 1 << 20;

const FORMAT_PCM: u16 = 1;
const FORMAT_ALAW: u16 = 6;
const FORMAT_MULAW: u16 = 7;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Why a WAV file is refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WavFault {
    /// The file does not start with a RIFF header.
    NotRiff,
    /// A RIFF file, but not of form WAVE.
    NotWave,
    /// The file ends inside the named chunk (or its header).
    Truncated { chunk: [u8; 4] },
    /// No `fmt ` chunk before the `data` chunk.
    MissingFormat,
    /// No `data` chunk.
    MissingData,
    /// A `fmt ` chunk too short to describe the audio, or absurdly long.
    FormatChunkSize(u32),
    /// An encoding other than PCM (1), A-law (6) or μ-law (7).
    UnsupportedFormat(u16),
    /// Sample rate other than 8000 Hz.
    UnsupportedSampleRate(u32),
    /// Channel count other than the one expected.
    UnsupportedChannels(u16),
    /// Bits per sample that do not fit the encoding (16 for PCM, 8 for G.711).
    UnsupportedBitsPerSample { format: u16, bits: u16 },
    /// Block alignment or byte rate that contradict the rest of the format.
    InconsistentFormat,
    /// Audio data larger than the limit.
    TooLarge { bytes: u32, limit: u32 },
    /// Metadata chunks before the audio larger than the limit.
    TooMuchMetadata,
    /// A data length that is not a whole number of sample frames.
    PartialFrame { bytes: u32 },
    /// No audio at all.
    Empty,
}

impl fmt::Display for WavFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WavFault::NotRiff => f.write_str("not a RIFF file"),
            WavFault::NotWave => f.write_str("a RIFF file but not WAVE"),
            WavFault::Truncated { chunk } => {
                write!(f, "truncated in the '{}' chunk", chunk.escape_ascii())
            }
            WavFault::MissingFormat => f.write_str("no 'fmt ' chunk before the audio"),
            WavFault::MissingData => f.write_str("no 'data' chunk"),
            WavFault::FormatChunkSize(n) => {
                write!(f, "'fmt ' chunk of {n} bytes, 16 to 1024 expected")
            }
            WavFault::UnsupportedFormat(tag) => write!(
                f,
                "encoding {tag} is not supported: use PCM (1), A-law (6) or mu-law (7)"
            ),
            WavFault::UnsupportedSampleRate(rate) => {
                write!(f, "sample rate {rate} Hz, 8000 Hz needed")
            }
            WavFault::UnsupportedChannels(n) => write!(f, "{n} channels, not supported here"),
            WavFault::UnsupportedBitsPerSample { format, bits } => write!(
                f,
                "{bits} bits per sample with encoding {format}: PCM needs 16, A-law and mu-law 8"
            ),
            WavFault::InconsistentFormat => {
                f.write_str("block alignment or byte rate contradict the format")
            }
            WavFault::TooLarge { bytes, limit } => {
                write!(f, "{bytes} bytes of audio, over the {limit}-byte limit")
            }
            WavFault::TooMuchMetadata => f.write_str("over 1 MiB of chunks before the audio"),
            WavFault::PartialFrame { bytes } => {
                write!(f, "{bytes} bytes of audio is not a whole number of samples")
            }
            WavFault::Empty => f.write_str("no audio samples"),
        }
    }
}

fn fault(f: WavFault) -> Error {
    Error::Wav(f)
}

/// How the samples of a file are encoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Encoding {
    Pcm16,
    Alaw,
    Mulaw,
}

impl Encoding {
    fn bytes_per_sample(self) -> u16 {
        match self {
            Encoding::Pcm16 => 2,
            Encoding::Alaw | Encoding::Mulaw => 1,
        }
    }
}

/// A prompt's samples: 8 kHz mono, PCM16, A-law or μ-law (G.711 decoded to
/// linear). Chunks other than `fmt ` and `data` are skipped; anything after
/// the audio is not read.
pub fn read_prompt(reader: impl Read) -> Result<Vec<i16>> {
    let (_, samples) = read(reader, 1, MAX_PROMPT_BYTES)?;
    if samples.is_empty() {
        return Err(fault(WavFault::Empty));
    }
    Ok(samples)
}

/// A call recording as [`RecordingWriter`] leaves it: 8 kHz, two channels,
/// `(caller, callee)` per sample. Only what the header counts is read, so a
/// recording cut short after a [`flush`](RecordingWriter::flush) reads as it
/// was then.
pub fn read_recording(reader: impl Read, max_bytes: u32) -> Result<Vec<[i16; 2]>> {
    let (_, samples) = read(reader, 2, max_bytes)?;
    Ok(samples
        .chunks_exact(2)
        .map(|frame| [frame[0], frame[1]])
        .collect())
}

/// Reads the format and the audio, interleaved as stored, decoded to linear.
fn read(mut reader: impl Read, channels: u16, max_bytes: u32) -> Result<(Encoding, Vec<i16>)> {
    let mut riff = [0u8; 12];
    read_exact(&mut reader, &mut riff, *b"RIFF")?;
    if &riff[0..4] != b"RIFF" {
        return Err(fault(WavFault::NotRiff));
    }
    if &riff[8..12] != b"WAVE" {
        return Err(fault(WavFault::NotWave));
    }

    let mut encoding = None;
    let mut skipped: u64 = 0;
    loop {
        let mut head = [0u8; 8];
        match read_exact(&mut reader, &mut head, *b"    ") {
            Err(Error::Wav(WavFault::Truncated { .. })) => {
                return Err(fault(if encoding.is_some() {
                    WavFault::MissingData
                } else {
                    WavFault::MissingFormat
                }));
            }
            other => other?,
        }
        let id = [head[0], head[1], head[2], head[3]];
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        match &id {
            b"fmt " => {
                encoding = Some(read_format(&mut reader, size, channels)?);
            }
            b"data" => {
                let encoding = encoding.ok_or(fault(WavFault::MissingFormat))?;
                let samples = read_data(&mut reader, size, encoding, channels, max_bytes)?;
                return Ok((encoding, samples));
            }
            _ => {
                // Chunks are padded to an even length.
                let padded = size as u64 + (size as u64 & 1);
                skipped += padded + 8;
                if skipped > MAX_SKIPPED_BYTES {
                    return Err(fault(WavFault::TooMuchMetadata));
                }
                let copied = io::copy(&mut (&mut reader).take(padded), &mut io::sink())?;
                if copied != padded {
                    return Err(fault(WavFault::Truncated { chunk: id }));
                }
            }
        }
    }
}

fn read_format(reader: &mut impl Read, size: u32, channels: u16) -> Result<Encoding> {
    // 16 bytes of WAVEFORMAT, up to 40 with WAVEFORMATEXTENSIBLE; anything
    // beyond is not ours to interpret.
    if !(16..=1024).contains(&size) {
        return Err(fault(WavFault::FormatChunkSize(size)));
    }
    let padded = size as usize + (size as usize & 1);
    let mut body = [0u8; 1024 + 1];
    let body = &mut body[..padded];
    read_exact(reader, body, *b"fmt ")?;
    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);

    let mut tag = u16_at(0);
    if tag == FORMAT_EXTENSIBLE {
        // The real tag is the first two bytes of the sub-format GUID, at 24
        // (after cbSize, valid bits and the channel mask).
        if size < 40 {
            return Err(fault(WavFault::FormatChunkSize(size)));
        }
        tag = u16_at(24);
    }
    let file_channels = u16_at(2);
    let rate = u32_at(4);
    let byte_rate = u32_at(8);
    let block_align = u16_at(12);
    let bits = u16_at(14);

    let encoding = match tag {
        FORMAT_PCM => Encoding::Pcm16,
        FORMAT_ALAW => Encoding::Alaw,
        FORMAT_MULAW => Encoding::Mulaw,
        other => return Err(fault(WavFault::UnsupportedFormat(other))),
    };
    if rate != SAMPLE_RATE {
        return Err(fault(WavFault::UnsupportedSampleRate(rate)));
    }
    if file_channels != channels {
        return Err(fault(WavFault::UnsupportedChannels(file_channels)));
    }
    if bits != encoding.bytes_per_sample() * 8 {
        return Err(fault(WavFault::UnsupportedBitsPerSample {
            format: tag,
            bits,
        }));
    }
    let frame = encoding.bytes_per_sample() * channels;
    if block_align != frame || byte_rate != SAMPLE_RATE * frame as u32 {
        return Err(fault(WavFault::InconsistentFormat));
    }
    Ok(encoding)
}

fn read_data(
    reader: &mut impl Read,
    size: u32,
    encoding: Encoding,
    channels: u16,
    max_bytes: u32,
) -> Result<Vec<i16>> {
    if size > max_bytes {
        return Err(fault(WavFault::TooLarge {
            bytes: size,
            limit: max_bytes,
        }));
    }
    let frame = (encoding.bytes_per_sample() * channels) as u32;
    if !size.is_multiple_of(frame) {
        return Err(fault(WavFault::PartialFrame { bytes: size }));
    }
    let mut bytes = vec![0u8; size as usize];
    read_exact(reader, &mut bytes, *b"data")?;
    Ok(match encoding {
        Encoding::Pcm16 => bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
        Encoding::Alaw => bytes.iter().map(|&b| g711::alaw_decode(b)).collect(),
        Encoding::Mulaw => bytes.iter().map(|&b| g711::ulaw_decode(b)).collect(),
    })
}

/// `read_exact`, with running out of bytes reported as a truncated chunk.
fn read_exact(reader: &mut impl Read, buf: &mut [u8], chunk: [u8; 4]) -> Result<()> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => fault(WavFault::Truncated { chunk }),
        _ => Error::Io(e),
    })
}

// === impl RecordingWriter ===

const HEADER_LEN: u64 = 44;
const RECORDING_CHANNELS: u16 = 2;
const RECORDING_FRAME: u32 = 2 * RECORDING_CHANNELS as u32;

/// A two-channel 8 kHz PCM16 WAV file written as the call goes: caller on the
/// left, callee on the right.
///
/// The header is written first, with sizes for no audio; each
/// [`flush`](Self::flush) writes them for the audio so far, so a file whose
/// writer died (the process crashed, the disk filled) is still a valid WAV
/// holding the call up to the last flush. Bytes written after it are beyond
/// the counted data and ignored by readers.
#[derive(Debug)]
pub struct RecordingWriter<W: Write + Seek> {
    out: W,
    data_len: u32,
    /// Interleaving buffer, kept between frames.
    frame: Vec<u8>,
}

impl<W: Write + Seek> RecordingWriter<W> {
    /// Writes the header at the start of `out`.
    pub fn new(mut out: W) -> Result<RecordingWriter<W>> {
        out.seek(SeekFrom::Start(0))?;
        out.write_all(&header(0))?;
        Ok(RecordingWriter {
            out,
            data_len: 0,
            frame: Vec::new(),
        })
    }

    /// Appends one stretch of audio from both legs. A leg that sent less
    /// (or nothing: a lost packet) is padded with silence to the longer.
    pub fn write_frame(&mut self, caller: &[i16], callee: &[i16]) -> Result<()> {
        let samples = caller.len().max(callee.len());
        let added = u32::try_from(samples)
            .ok()
            .and_then(|n| n.checked_mul(RECORDING_FRAME))
            .ok_or(Error::RecordingTooLong)?;
        let data_len = self
            .data_len
            .checked_add(added)
            .filter(|&n| n as u64 + HEADER_LEN - 8 <= u32::MAX as u64)
            .ok_or(Error::RecordingTooLong)?;
        self.frame.clear();
        interleave(caller, callee, &mut self.frame);
        if let Err(e) = self.out.write_all(&self.frame) {
            // Part of the frame may be written: go back to the last whole
            // frame, so that what follows keeps the channels in step.
            let _ = self
                .out
                .seek(SeekFrom::Start(HEADER_LEN + self.data_len as u64));
            return Err(e.into());
        }
        self.data_len = data_len;
        Ok(())
    }

    /// Audio written so far, in sample frames (one per 1/8000 s).
    pub fn frames(&self) -> u32 {
        self.data_len / RECORDING_FRAME
    }

    /// Makes the file valid up to here: the audio first, then the sizes
    /// that count it, each pushed to the underlying writer. (Durability
    /// beyond that, `fsync`, is the owner of the file's to ask for.)
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        let riff_len = self.data_len + (HEADER_LEN as u32 - 8);
        self.out.seek(SeekFrom::Start(4))?;
        self.out.write_all(&riff_len.to_le_bytes())?;
        self.out.seek(SeekFrom::Start(HEADER_LEN - 4))?;
        self.out.write_all(&self.data_len.to_le_bytes())?;
        self.out
            .seek(SeekFrom::Start(HEADER_LEN + self.data_len as u64))?;
        self.out.flush()?;
        Ok(())
    }

    /// Flushes and hands the writer back.
    pub fn finish(mut self) -> Result<W> {
        self.flush()?;
        Ok(self.out)
    }
}

/// Appends one stretch of both legs to `out` as a recording's audio: frames
/// of (caller, callee) PCM16 little-endian, the shorter leg padded with
/// silence.
pub(crate) fn interleave(caller: &[i16], callee: &[i16], out: &mut Vec<u8>) {
    for i in 0..caller.len().max(callee.len()) {
        let left = caller.get(i).copied().unwrap_or(0);
        let right = callee.get(i).copied().unwrap_or(0);
        out.extend_from_slice(&left.to_le_bytes());
        out.extend_from_slice(&right.to_le_bytes());
    }
}

/// The canonical 44-byte header of a recording holding `data_len` bytes.
pub(crate) fn header(data_len: u32) -> [u8; HEADER_LEN as usize] {
    pcm_header(RECORDING_CHANNELS, data_len)
}

/// A prompt's samples as a WAV file (8 kHz mono PCM16), for someone to
/// listen to; [`read_prompt`] reads it back as it was.
pub fn prompt_wav(samples: &[i16]) -> Vec<u8> {
    // A prompt in memory was read within MAX_PROMPT_BYTES; the clamp only
    // keeps the header's count honest for anything larger.
    let samples = &samples[..samples.len().min(MAX_PROMPT_BYTES as usize / 2)];
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(HEADER_LEN as usize + samples.len() * 2);
    out.extend_from_slice(&pcm_header(1, data_len));
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn pcm_header(channels: u16, data_len: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    let block_align = 2 * channels;
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(data_len + HEADER_LEN as u32 - 8).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&FORMAT_PCM.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(SAMPLE_RATE * u32::from(block_align)).to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    proptest! {
        #[test]
        fn a_prompt_written_as_wav_reads_back_the_same(
            samples in proptest::collection::vec(any::<i16>(), 1..4000),
        ) {
            let wav = prompt_wav(&samples);
            prop_assert_eq!(wav.len(), 44 + 2 * samples.len());
            prop_assert_eq!(read_prompt(wav.as_slice()).unwrap(), samples);
        }
    }

    /// A WAV file: RIFF header, then the given chunks.
    fn wav(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut body = b"WAVE".to_vec();
        for (id, data) in chunks {
            body.extend_from_slice(*id);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend(body);
        file
    }

    fn fmt(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let align = channels * bits / 8;
        let mut f = Vec::new();
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&channels.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&(rate * align as u32).to_le_bytes());
        f.extend_from_slice(&align.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f
    }

    fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn prompt_fault(bytes: &[u8]) -> WavFault {
        match read_prompt(bytes) {
            Err(Error::Wav(f)) => f,
            other => panic!("expected a WAV fault, got {other:?}"),
        }
    }

    #[test]
    fn pcm16_mono_8k_is_read() {
        let samples = [0i16, 1, -1, 32767, -32768, 1234];
        let file = wav(&[
            (b"fmt ", fmt(1, 1, 8000, 16)),
            (b"data", pcm_bytes(&samples)),
        ]);
        assert_eq!(read_prompt(&file[..]).unwrap(), samples);
    }

    #[test]
    fn g711_files_are_decoded_to_linear() {
        let codes = vec![0xFFu8, 0x80, 0x00, 0x7E];
        let ulaw = wav(&[(b"fmt ", fmt(7, 1, 8000, 8)), (b"data", codes.clone())]);
        assert_eq!(read_prompt(&ulaw[..]).unwrap(), [0, 32124, -32124, -8]);
        let alaw = wav(&[(b"fmt ", fmt(6, 1, 8000, 8)), (b"data", codes)]);
        let expected: Vec<i16> = [0xFFu8, 0x80, 0x00, 0x7E]
            .iter()
            .map(|&c| g711::alaw_decode(c))
            .collect();
        assert_eq!(read_prompt(&alaw[..]).unwrap(), expected);
    }

    #[test]
    fn unknown_chunks_are_skipped_odd_sizes_included() {
        let file = wav(&[
            (b"LIST", b"INFOISFT\x05\x00\x00\x00sox\x00\x00".to_vec()),
            (b"fmt ", fmt(1, 1, 8000, 16)),
            (b"fact", vec![1, 2, 3]),
            (b"data", pcm_bytes(&[5, 6])),
            (b"LIST", vec![0; 10]),
        ]);
        assert_eq!(read_prompt(&file[..]).unwrap(), [5, 6]);
    }

    #[test]
    fn the_extensible_format_is_read_by_its_sub_format() {
        let mut f = fmt(0xFFFE, 1, 8000, 16);
        f.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        f.extend_from_slice(&16u16.to_le_bytes()); // valid bits
        f.extend_from_slice(&4u32.to_le_bytes()); // channel mask
        f.extend_from_slice(&[
            1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
        ]);
        let file = wav(&[(b"fmt ", f), (b"data", pcm_bytes(&[9]))]);
        assert_eq!(read_prompt(&file[..]).unwrap(), [9]);
    }

    #[test]
    fn wrong_formats_are_refused_by_name() {
        let data = || (b"data", pcm_bytes(&[1, 2]));
        let cases = [
            (
                fmt(1, 1, 16_000, 16),
                WavFault::UnsupportedSampleRate(16_000),
            ),
            (
                fmt(1, 1, 44_100, 16),
                WavFault::UnsupportedSampleRate(44_100),
            ),
            (fmt(1, 2, 8000, 16), WavFault::UnsupportedChannels(2)),
            (fmt(3, 1, 8000, 32), WavFault::UnsupportedFormat(3)),
            (fmt(2, 1, 8000, 4), WavFault::UnsupportedFormat(2)),
            (fmt(0x55, 1, 8000, 0), WavFault::UnsupportedFormat(0x55)),
            (
                fmt(1, 1, 8000, 8),
                WavFault::UnsupportedBitsPerSample { format: 1, bits: 8 },
            ),
            (
                fmt(7, 1, 8000, 16),
                WavFault::UnsupportedBitsPerSample {
                    format: 7,
                    bits: 16,
                },
            ),
        ];
        for (format, expected) in cases {
            let file = wav(&[(b"fmt ", format), data()]);
            assert_eq!(prompt_fault(&file), expected);
        }
        let mut lying = fmt(1, 1, 8000, 16);
        lying[8..12].copy_from_slice(&8000u32.to_le_bytes()); // byte rate of 8-bit
        assert_eq!(
            prompt_fault(&wav(&[(b"fmt ", lying), data()])),
            WavFault::InconsistentFormat
        );
    }

    #[test]
    fn garbled_and_truncated_files_are_refused_by_name() {
        let good = wav(&[
            (b"fmt ", fmt(1, 1, 8000, 16)),
            (b"data", pcm_bytes(&[1, 2, 3])),
        ]);
        assert_eq!(prompt_fault(b"RIFX\0\0\0\0WAVE"), WavFault::NotRiff);
        assert_eq!(prompt_fault(b"ID3\x03\0\0\0\0\0\0\0\0"), WavFault::NotRiff);
        assert_eq!(prompt_fault(b"RIFF\0\0\0\0AVI "), WavFault::NotWave);
        assert_eq!(
            prompt_fault(b"RIFF"),
            WavFault::Truncated { chunk: *b"RIFF" }
        );
        assert_eq!(
            prompt_fault(&good[..30]),
            WavFault::Truncated { chunk: *b"fmt " }
        );
        assert_eq!(
            prompt_fault(&good[..good.len() - 1]),
            WavFault::Truncated { chunk: *b"data" }
        );
        assert_eq!(prompt_fault(&good[..12]), WavFault::MissingFormat);
        assert_eq!(prompt_fault(&good[..36]), WavFault::MissingData);
        let data_first = wav(&[(b"data", pcm_bytes(&[1])), (b"fmt ", fmt(1, 1, 8000, 16))]);
        assert_eq!(prompt_fault(&data_first), WavFault::MissingFormat);
        let short_fmt = wav(&[(b"fmt ", vec![1, 0, 1, 0]), (b"data", vec![])]);
        assert_eq!(prompt_fault(&short_fmt), WavFault::FormatChunkSize(4));
        let odd = wav(&[(b"fmt ", fmt(1, 1, 8000, 16)), (b"data", vec![1, 2, 3])]);
        assert_eq!(prompt_fault(&odd), WavFault::PartialFrame { bytes: 3 });
        let empty = wav(&[(b"fmt ", fmt(1, 1, 8000, 16)), (b"data", vec![])]);
        assert_eq!(prompt_fault(&empty), WavFault::Empty);
        let skipped = wav(&[(b"fmt ", fmt(1, 1, 8000, 16)), (b"junk", vec![0; 7])]);
        assert_eq!(
            prompt_fault(&skipped[..skipped.len() - 3]),
            WavFault::Truncated { chunk: *b"junk" }
        );
    }

    #[test]
    fn absurd_sizes_are_refused_before_allocating() {
        let mut file = wav(&[(b"fmt ", fmt(1, 1, 8000, 16)), (b"data", vec![])]);
        let n = file.len();
        file[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            prompt_fault(&file),
            WavFault::TooLarge {
                bytes: u32::MAX,
                limit: MAX_PROMPT_BYTES
            }
        );
        let mut meta = wav(&[(b"LIST", vec![])]);
        meta[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(prompt_fault(&meta), WavFault::TooMuchMetadata);
    }

    #[test]
    fn faults_read_as_sentences() {
        let e = Error::Wav(WavFault::UnsupportedSampleRate(44_100));
        assert_eq!(
            e.to_string(),
            "unusable WAV: sample rate 44100 Hz, 8000 Hz needed"
        );
        assert_eq!(
            WavFault::Truncated { chunk: *b"da\0a" }.to_string(),
            "truncated in the 'da\\x00a' chunk"
        );
    }

    #[test]
    fn a_finished_recording_holds_both_legs() {
        let mut writer = RecordingWriter::new(Cursor::new(Vec::new())).unwrap();
        writer.write_frame(&[1, 2, 3], &[-1, -2, -3]).unwrap();
        writer.write_frame(&[4], &[]).unwrap(); // the callee's packet was lost
        assert_eq!(writer.frames(), 4);
        let bytes = writer.finish().unwrap().into_inner();
        assert_eq!(bytes.len(), 44 + 16);
        assert_eq!(&bytes[..44], &header(16));
        let frames = read_recording(&bytes[..], u32::MAX).unwrap();
        assert_eq!(frames, [[1, -1], [2, -2], [3, -3], [4, 0]]);
        // A recording is no prompt.
        assert_eq!(prompt_fault(&bytes), WavFault::UnsupportedChannels(2));
    }

    #[test]
    fn an_unfinished_recording_reads_up_to_its_last_flush() {
        let mut writer = RecordingWriter::new(Cursor::new(Vec::new())).unwrap();
        let second = vec![100i16; 8000];
        for _ in 0..3 {
            writer.write_frame(&second, &second).unwrap();
        }
        writer.flush().unwrap();
        writer.write_frame(&second, &second).unwrap(); // never flushed
        // The writer is dropped without finish(): what a crash leaves.
        let bytes = writer.out.into_inner();
        assert_eq!(bytes.len(), 44 + 4 * 8000 * 4);
        let frames = read_recording(&bytes[..], u32::MAX).unwrap();
        assert_eq!(frames.len() as u32 / SAMPLE_RATE, 3, "three seconds");
        assert_eq!(frames.len(), 3 * 8000);
    }

    #[test]
    fn a_recording_never_flushed_is_valid_and_empty() {
        let writer = RecordingWriter::new(Cursor::new(Vec::new())).unwrap();
        let bytes = writer.out.into_inner();
        assert_eq!(
            read_recording(&bytes[..], u32::MAX).unwrap(),
            Vec::<[i16; 2]>::new()
        );
    }

    /// A file that fails one write half-way, as a full disk does.
    struct FailingOnce {
        inner: Cursor<Vec<u8>>,
        fail_at_write: usize,
        writes: usize,
    }

    impl Write for FailingOnce {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            if self.writes == self.fail_at_write {
                // Half of it goes through, then the error.
                let half = buf.len() / 2;
                self.inner.write_all(&buf[..half])?;
                return Err(io::Error::other("disk full"));
            }
            self.inner.write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for FailingOnce {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn a_failed_write_leaves_the_channels_in_step() {
        let file = FailingOnce {
            inner: Cursor::new(Vec::new()),
            fail_at_write: 3, // header, first frame, then this one
            writes: 0,
        };
        let mut writer = RecordingWriter::new(file).unwrap();
        writer.write_frame(&[1, 2], &[-1, -2]).unwrap();
        assert!(matches!(
            writer.write_frame(&[3, 4], &[-3, -4]),
            Err(Error::Io(_))
        ));
        writer.write_frame(&[5], &[-5]).unwrap();
        let bytes = writer.finish().unwrap().inner.into_inner();
        assert_eq!(
            read_recording(&bytes[..], u32::MAX).unwrap(),
            [[1, -1], [2, -2], [5, -5]]
        );
    }

    #[test]
    fn writing_continues_where_it_left_off_after_a_flush() {
        let mut writer = RecordingWriter::new(Cursor::new(Vec::new())).unwrap();
        writer.write_frame(&[1], &[2]).unwrap();
        writer.flush().unwrap();
        writer.write_frame(&[3], &[4]).unwrap();
        let bytes = writer.finish().unwrap().into_inner();
        assert_eq!(
            read_recording(&bytes[..], u32::MAX).unwrap(),
            [[1, 2], [3, 4]]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_prompt(&bytes[..]);
        }

        #[test]
        fn corrupted_files_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut file = wav(&[
                (b"LIST", vec![7; 5]),
                (b"fmt ", fmt(1, 1, 8000, 16)),
                (b"data", pcm_bytes(&[1, 2, 3, 4])),
            ]);
            for (at, byte) in flips {
                let i = at.index(file.len());
                file[i] = byte;
            }
            let len = cut.index(file.len() + 1);
            if let Ok(samples) = read_prompt(&file[..len]) {
                prop_assert!(samples.len() * 2 <= len);
            }
        }

        #[test]
        fn recordings_round_trip(frames in prop::collection::vec(
            (prop::collection::vec(any::<i16>(), 0..40), prop::collection::vec(any::<i16>(), 0..40)),
            0..20,
        )) {
            let mut writer = RecordingWriter::new(Cursor::new(Vec::new())).unwrap();
            let mut expected = Vec::new();
            for (left, right) in &frames {
                writer.write_frame(left, right).unwrap();
                for i in 0..left.len().max(right.len()) {
                    expected.push([left.get(i).copied().unwrap_or(0), right.get(i).copied().unwrap_or(0)]);
                }
            }
            let bytes = writer.finish().unwrap().into_inner();
            prop_assert_eq!(read_recording(&bytes[..], u32::MAX).unwrap(), expected);
        }
    }
}
