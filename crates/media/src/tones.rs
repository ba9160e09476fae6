//! In-band DTMF: detecting digits in 8 kHz audio, and generating them.
//!
//! Some gateways send digits only as tones in the audio. The
//! [`ToneDetector`] runs eight Goertzel filters (one per DTMF frequency)
//! over windows of 102 samples (12.75 ms) of linear PCM, a new window every
//! 51 samples. A window holds a digit when one row and one column frequency
//! stand out:
//!
//! - each at least [`MIN_LEVEL_DBM0`];
//! - within the twist limits: the high (column) tone at most 4 dB above the
//!   low one (reverse twist), the low at most 8 dB above the high (normal
//!   twist);
//! - each 8 dB above the other frequencies of its group;
//! - together carrying most of the window's energy, which is what rejects
//!   speech and music: they spread their energy over many harmonics;
//! - steady: as much energy in the window's second half as in its first,
//!   within the beating of the pair.
//!
//! A window of 102 samples resolves frequencies about 78 Hz apart, the
//! closest the DTMF rows are; longer windows would resolve better but
//! blur short tones. At that resolution the second harmonic of 697 Hz
//! (1394 Hz) lies in the main lobe of 1336 Hz, so a second-harmonic test
//! would refuse a genuine "2" sent with the allowed frequency error and
//! twist; the energy-share test does that job instead.
//!
//! A digit is reported once, when four consecutive windows (32 ms of audio)
//! agree on it. Windows lying wholly inside a tone always agree, and a tone
//! of 40 ms holds four of them whatever its alignment; a window only partly
//! inside counts only when the tone fills three quarters of it (the
//! steadiness test), so a tone of 25 ms or less never reaches four. A new
//! digit is reported only after a gap, three windows without one, so a
//! short dropout inside a long tone does not split it in two, and a tone
//! changing straight into another without a pause (music, not dialling) is
//! not a second digit.
//!
//! Talk-off: voices up to 225 Hz are never taken for digits in the tests,
//! whatever the vowel. A higher voice sustaining a vowel whose formants sit
//! on a DTMF pair can put two lone harmonics there, and then looks like a
//! digit to any detector of this kind; in-band detection is meant for the
//! moments a prompt has asked for digits.

use std::f64::consts::TAU;

use crate::SAMPLE_RATE;
use crate::dtmf::Digit;

/// Low-group (row) frequencies, in Hz.
pub const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// High-group (column) frequencies, in Hz.
pub const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// Samples per analysis window.
pub const WINDOW: usize = 102;
/// Samples between the starts of consecutive windows.
pub const HOP: usize = WINDOW / 2;
/// The quietest tone (each of the pair) that counts, in dBm0. ITU-T Q.24
/// receivers must accept down to about -25 dBm0 per frequency; lines that
/// lose more than 10 dB beyond that are not worth decoding.
pub const MIN_LEVEL_DBM0: f32 = -35.0;

/// The keypad: row-major, as the frequencies are ordered.
const KEYPAD: [[Digit; 4]; 4] = [
    [Digit::One, Digit::Two, Digit::Three, Digit::A],
    [Digit::Four, Digit::Five, Digit::Six, Digit::B],
    [Digit::Seven, Digit::Eight, Digit::Nine, Digit::C],
    [Digit::Star, Digit::Zero, Digit::Pound, Digit::D],
];

/// The (low, high) frequencies of a digit, in Hz.
pub fn frequencies(digit: Digit) -> (f32, f32) {
    for (r, row) in KEYPAD.iter().enumerate() {
        for (c, key) in row.iter().enumerate() {
            if *key == digit {
                return (ROWS[r], COLUMNS[c]);
            }
        }
    }
    // Every digit is on the keypad; the compiler cannot see it.
    (ROWS[3], COLUMNS[1])
}

/// Peak amplitude, in 16-bit linear units, of a sine at `dbm0`. G.711's
/// digital milliwatt: full scale (32 124 after μ-law decoding) is +3.17 dBm0.
pub fn amplitude_at_dbm0(dbm0: f32) -> f32 {
    32_124.0 * 10f32.powf((dbm0 - 3.17) / 20.0)
}

/// A sine at `dbm0` has mean power A²/2, the unit window powers are kept in.
fn power_at_dbm0(dbm0: f32) -> f32 {
    let a = amplitude_at_dbm0(dbm0);
    a * a / 2.0
}

fn db(ratio_db: f32) -> f32 {
    10f32.powf(ratio_db / 10.0)
}

const REVERSE_TWIST_DB: f32 = 4.0;
const NORMAL_TWIST_DB: f32 = 8.0;
const RELATIVE_PEAK_DB: f32 = 8.0;
/// Share of the window's energy the two tones must carry. A genuine pair at
/// the ±1.5 % frequency tolerance and full twist still shows 73 % through
/// the filters; a sustained vowel rarely reaches 70 %.
const MIN_TONE_SHARE: f32 = 0.7;
/// Least ratio of the energies of a window's two halves. A steady pair
/// beats (its envelope swings at the difference of its frequencies), which
/// leaves genuine windows above 0.7; a tone filling less than three
/// quarters of the window falls below 0.5.
const MIN_BALANCE: f32 = 0.5;
/// Consecutive windows that must hold a digit before it is reported.
const DIGIT_WINDOWS: u8 = 4;
/// Consecutive windows without one that make a gap.
const GAP_WINDOWS: u8 = 3;

// === impl ToneDetector ===

/// Goertzel state of one analysis window.
#[derive(Clone, Debug)]
struct Window {
    /// s[n-1] and s[n-2] per frequency.
    s1: [f32; 8],
    s2: [f32; 8],
    energy: f32,
    /// Energy of the first half, to tell a steady tone from one that
    /// starts or stops inside the window.
    first_half: f32,
    filled: usize,
}

impl Window {
    fn starting_after(samples: usize) -> Window {
        Window {
            s1: [0.0; 8],
            s2: [0.0; 8],
            energy: 0.0,
            first_half: 0.0,
            // A window "started" before the stream holds silence there.
            filled: WINDOW - samples,
        }
    }
}

/// Finds DTMF digits in a stream of 8 kHz linear PCM, fed in chunks of any
/// length (a chunk boundary may fall anywhere, also inside a window).
#[derive(Clone, Debug)]
pub struct ToneDetector {
    coefficients: [f32; 8],
    /// Two windows half a window apart: one completes every [`HOP`] samples.
    windows: [Window; 2],
    /// What the latest windows saw and for how many windows running.
    seen: Option<Digit>,
    run: u8,
    /// The digit being heard (already reported), or `None` in a gap.
    current: Option<Digit>,
    min_power: f32,
}

impl Default for ToneDetector {
    fn default() -> ToneDetector {
        ToneDetector::new()
    }
}

impl ToneDetector {
    pub fn new() -> ToneDetector {
        let mut coefficients = [0.0; 8];
        for (c, f) in coefficients.iter_mut().zip(ROWS.iter().chain(&COLUMNS)) {
            *c = 2.0 * (std::f32::consts::TAU * f / SAMPLE_RATE as f32).cos();
        }
        ToneDetector {
            coefficients,
            windows: [Window::starting_after(WINDOW), Window::starting_after(HOP)],
            seen: None,
            run: GAP_WINDOWS,
            current: None,
            min_power: power_at_dbm0(MIN_LEVEL_DBM0),
        }
    }

    /// Analyses `pcm`, calling `on_digit` for each digit it completes.
    pub fn feed(&mut self, pcm: &[i16], mut on_digit: impl FnMut(Digit)) {
        for &sample in pcm {
            let x = sample as f32;
            for w in 0..2 {
                let window = &mut self.windows[w];
                window.energy += x * x;
                for i in 0..8 {
                    let s0 = x + self.coefficients[i] * window.s1[i] - window.s2[i];
                    window.s2[i] = window.s1[i];
                    window.s1[i] = s0;
                }
                window.filled += 1;
                if window.filled == HOP {
                    window.first_half = window.energy;
                }
                if window.filled == WINDOW {
                    let hit = self.classify(w);
                    self.windows[w] = Window::starting_after(WINDOW);
                    if let Some(digit) = self.confirm(hit) {
                        on_digit(digit);
                    }
                }
            }
        }
    }

    /// The digit window `w`, just completed, holds, if any.
    fn classify(&self, w: usize) -> Option<Digit> {
        let window = &self.windows[w];
        // |X(f)|² scaled by 2/N² is A²/2 for a sine of amplitude A, the same
        // unit as the window's mean power.
        let scale = 2.0 / (WINDOW * WINDOW) as f32;
        let mut power = [0.0f32; 8];
        for (i, p) in power.iter_mut().enumerate() {
            let (s1, s2) = (window.s1[i], window.s2[i]);
            *p = (s1 * s1 + s2 * s2 - self.coefficients[i] * s1 * s2) * scale;
        }
        let (rows, columns) = power.split_at(4);
        let (row, row_power) = strongest(rows);
        let (column, column_power) = strongest(columns);

        if row_power < self.min_power || column_power < self.min_power {
            return None;
        }
        let first_half = window.first_half;
        let second_half = window.energy - first_half;
        if first_half.min(second_half) < MIN_BALANCE * first_half.max(second_half) {
            return None;
        }
        if column_power > row_power * db(REVERSE_TWIST_DB)
            || row_power > column_power * db(NORMAL_TWIST_DB)
        {
            return None;
        }
        let stands_out = |group: &[f32], best: usize, best_power: f32| {
            group
                .iter()
                .enumerate()
                .all(|(i, &p)| i == best || p * db(RELATIVE_PEAK_DB) <= best_power)
        };
        if !stands_out(rows, row, row_power) || !stands_out(columns, column, column_power) {
            return None;
        }
        let mean_power = window.energy / WINDOW as f32;
        if row_power + column_power < MIN_TONE_SHARE * mean_power {
            return None;
        }
        Some(KEYPAD[row][column])
    }

    /// Debounces window results into reported digits.
    fn confirm(&mut self, hit: Option<Digit>) -> Option<Digit> {
        if hit == self.seen {
            self.run = self.run.saturating_add(1);
        } else {
            self.seen = hit;
            self.run = 1;
        }
        match hit {
            None if self.run == GAP_WINDOWS => {
                self.current = None;
                None
            }
            Some(digit) if self.run == DIGIT_WINDOWS && self.current.is_none() => {
                self.current = Some(digit);
                Some(digit)
            }
            _ => None,
        }
    }
}

fn strongest(group: &[f32]) -> (usize, f32) {
    group.iter().copied().enumerate().fold(
        (0, f32::MIN),
        |best, (i, p)| if p > best.1 { (i, p) } else { best },
    )
}

// === impl DualTone ===

/// A sum of two sines, for DTMF audio and for tests. Phase carries over
/// from one [`fill`](Self::fill) to the next, so a tone can be produced
/// frame by frame.
#[derive(Clone, Debug)]
pub struct DualTone {
    tones: [(f64, f64); 2], // (radians per sample, peak amplitude)
    phase: [f64; 2],
}

impl DualTone {
    /// Two sines of the given frequencies (Hz) and peak amplitudes (16-bit
    /// linear units).
    pub fn new(low_hz: f32, low_amplitude: f32, high_hz: f32, high_amplitude: f32) -> DualTone {
        let step = |hz: f32| TAU * hz as f64 / SAMPLE_RATE as f64;
        DualTone {
            tones: [
                (step(low_hz), low_amplitude as f64),
                (step(high_hz), high_amplitude as f64),
            ],
            phase: [0.0; 2],
        }
    }

    /// A digit's tone pair, each tone at `dbm0`.
    pub fn dtmf(digit: Digit, dbm0: f32) -> DualTone {
        let (low, high) = frequencies(digit);
        let amplitude = amplitude_at_dbm0(dbm0);
        DualTone::new(low, amplitude, high, amplitude)
    }

    /// Writes the next `out.len()` samples, clipped to 16 bits.
    pub fn fill(&mut self, out: &mut [i16]) {
        for sample in out {
            let mut value = 0.0;
            for (phase, (step, amplitude)) in self.phase.iter_mut().zip(self.tones) {
                value += amplitude * phase.sin();
                *phase = (*phase + step) % TAU;
            }
            *sample = value.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise: a 64-bit LCG, summed into a near-Gaussian.
    struct Noise(u64);

    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        }

        /// Unit-variance sample (12 uniforms have variance 1).
        fn gaussian(&mut self) -> f64 {
            (0..12).map(|_| self.uniform()).sum()
        }
    }

    fn tone(digit: Digit, dbm0: f32, millis: usize) -> Vec<i16> {
        let mut out = vec![0; millis * 8];
        DualTone::dtmf(digit, dbm0).fill(&mut out);
        out
    }

    fn silence(millis: usize) -> Vec<i16> {
        vec![0; millis * 8]
    }

    fn detect(pcm: &[i16]) -> String {
        let mut found = String::new();
        ToneDetector::new().feed(pcm, |d| found.push(d.as_char()));
        found
    }

    fn detect_in_chunks(pcm: &[i16], sizes: &[usize]) -> String {
        let mut found = String::new();
        let mut detector = ToneDetector::new();
        let mut rest = pcm;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            let (chunk, tail) = rest.split_at(n);
            detector.feed(chunk, |d| found.push(d.as_char()));
            rest = tail;
            i += 1;
        }
        found
    }

    /// Digits as keyed: `tone_ms` of each, `gap_ms` of silence after.
    fn dial(digits: &str, dbm0: f32, tone_ms: usize, gap_ms: usize) -> Vec<i16> {
        let mut pcm = silence(gap_ms);
        for c in digits.chars() {
            pcm.extend(tone(Digit::from_char(c).unwrap(), dbm0, tone_ms));
            pcm.extend(silence(gap_ms));
        }
        pcm
    }

    fn add_noise(pcm: &mut [i16], rms: f64, seed: u64) {
        let mut noise = Noise(seed);
        for s in pcm {
            let v = *s as f64 + noise.gaussian() * rms;
            *s = v.round().clamp(-32768.0, 32767.0) as i16;
        }
    }

    fn rms(pcm: &[i16]) -> f64 {
        (pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
    }

    /// Through the codec and back, as a gateway's tones reach us.
    fn through_g711(pcm: &[i16], codec: crate::Codec) -> Vec<i16> {
        pcm.iter().map(|&s| codec.decode(codec.encode(s))).collect()
    }

    #[test]
    fn every_digit_is_detected_at_every_usable_level() {
        for digit in Digit::ALL {
            for dbm0 in [-3.0, -10.0, -20.0, -30.0] {
                let mut pcm = silence(30);
                pcm.extend(tone(digit, dbm0, 100));
                pcm.extend(silence(30));
                assert_eq!(detect(&pcm), digit.to_string(), "{digit} at {dbm0} dBm0");
            }
        }
    }

    #[test]
    fn digits_survive_both_g711_laws() {
        for codec in [crate::Codec::Pcmu, crate::Codec::Pcma] {
            let pcm = through_g711(&dial("0123456789*#ABCD", -20.0, 60, 60), codec);
            assert_eq!(detect(&pcm), "0123456789*#ABCD", "{codec}");
        }
    }

    #[test]
    fn tones_below_the_level_floor_are_ignored() {
        assert_eq!(detect(&tone(Digit::Five, -40.0, 200)), "");
    }

    #[test]
    fn digits_are_detected_in_white_noise_at_20_db_snr() {
        for (seed, digit) in Digit::ALL.into_iter().enumerate() {
            let mut pcm = silence(40);
            pcm.extend(tone(digit, -15.0, 60));
            pcm.extend(silence(40));
            // SNR over the tone: the pair's power vs the noise's.
            let signal_rms = rms(&tone(digit, -15.0, 60));
            add_noise(&mut pcm, signal_rms / 10.0, seed as u64 + 1);
            assert_eq!(detect(&pcm), digit.to_string(), "{digit}");
        }
    }

    #[test]
    fn fifty_ms_tones_with_fifty_ms_gaps_are_dialled_digits() {
        let pcm = dial("1234#", -10.0, 50, 50);
        assert_eq!(detect(&pcm), "1234#");
        // Whatever the alignment of the tones with the blocks.
        for shift in [1, 17, 51, 101] {
            let mut shifted = silence(0);
            shifted.extend(std::iter::repeat_n(0, shift));
            shifted.extend(&pcm);
            assert_eq!(detect(&shifted), "1234#", "shifted by {shift}");
        }
    }

    #[test]
    fn forty_ms_tones_with_forty_ms_gaps_are_detected_at_any_alignment() {
        for shift in 0..WINDOW {
            let mut pcm = vec![0; shift];
            pcm.extend(dial("159D", -12.0, 40, 40));
            assert_eq!(detect(&pcm), "159D", "shifted by {shift}");
        }
    }

    #[test]
    fn the_same_digit_repeated_after_gaps_is_reported_each_time() {
        assert_eq!(detect(&dial("555", -10.0, 60, 60)), "555");
    }

    #[test]
    fn tones_of_25_ms_or_less_are_ignored_at_any_alignment() {
        for millis in [10, 20, 25] {
            for shift in 0..HOP {
                let mut pcm = vec![0; shift];
                pcm.extend(dial("3", -10.0, millis, 60));
                assert_eq!(detect(&pcm), "", "{millis} ms shifted by {shift}");
            }
        }
    }

    #[test]
    fn a_long_tone_is_one_digit() {
        assert_eq!(detect(&dial("7", -10.0, 2000, 50)), "7");
    }

    #[test]
    fn a_dropout_inside_a_tone_does_not_split_it() {
        let mut pcm = tone(Digit::Six, -10.0, 100);
        pcm.extend(silence(8));
        pcm.extend(tone(Digit::Six, -10.0, 100));
        pcm.extend(silence(50));
        assert_eq!(detect(&pcm), "6");
    }

    #[test]
    fn a_tone_switching_to_another_without_a_gap_is_one_digit() {
        let mut pcm = tone(Digit::One, -10.0, 100);
        pcm.extend(tone(Digit::Two, -10.0, 100));
        pcm.extend(silence(100));
        pcm.extend(tone(Digit::Three, -10.0, 100));
        assert_eq!(detect(&pcm), "13");
    }

    #[test]
    fn digits_split_across_any_chunking_are_found() {
        let pcm = dial("90*#AB", -15.0, 50, 50);
        for sizes in [&[1][..], &[7], &[160], &[101, 103], &[3, 250, 17, 1000]] {
            assert_eq!(detect_in_chunks(&pcm, sizes), "90*#AB", "chunks {sizes:?}");
        }
    }

    #[test]
    fn twist_within_limits_is_accepted_and_beyond_refused() {
        let (low, high) = frequencies(Digit::Eight);
        let at = |low_db: f32, high_db: f32| {
            let mut pcm = vec![0; 800];
            DualTone::new(
                low,
                amplitude_at_dbm0(low_db),
                high,
                amplitude_at_dbm0(high_db),
            )
            .fill(&mut pcm);
            detect(&pcm)
        };
        assert_eq!(at(-10.0, -10.0), "8");
        assert_eq!(at(-10.0, -6.5), "8", "high group 3.5 dB up");
        assert_eq!(at(-10.0, -17.5), "8", "low group 7.5 dB up");
        assert_eq!(at(-10.0, -5.0), "", "high group 5 dB up");
        assert_eq!(at(-10.0, -19.0), "", "low group 9 dB up");
    }

    #[test]
    fn frequencies_within_tolerance_are_accepted() {
        for digit in Digit::ALL {
            let (low, high) = frequencies(digit);
            for (dl, dh) in [
                (1.015, 1.015),
                (0.985, 0.985),
                (1.015, 0.985),
                (0.985, 1.015),
            ] {
                let a = amplitude_at_dbm0(-10.0);
                let mut pcm = vec![0; 800];
                DualTone::new(low * dl, a, high * dh, a).fill(&mut pcm);
                assert_eq!(detect(&pcm), digit.to_string(), "{digit} off by {dl}/{dh}");
            }
        }
    }

    #[test]
    fn silence_is_not_a_digit() {
        assert_eq!(detect(&silence(5000)), "");
    }

    #[test]
    fn white_noise_is_not_a_digit() {
        for (seed, level) in [(1, 30.0), (2, 1000.0), (3, 8000.0)] {
            let mut pcm = silence(10_000);
            add_noise(&mut pcm, level, seed);
            assert_eq!(detect(&pcm), "", "noise rms {level}");
        }
    }

    #[test]
    fn a_single_sine_is_not_a_digit() {
        for hz in ROWS
            .iter()
            .chain(&COLUMNS)
            .copied()
            .chain([440.0, 1000.0, 2000.0])
        {
            let mut pcm = vec![0; 8000];
            DualTone::new(hz, amplitude_at_dbm0(-5.0), hz, 0.0).fill(&mut pcm);
            assert_eq!(detect(&pcm), "", "{hz} Hz");
        }
    }

    /// A voiced vowel: harmonics of a 100-200 Hz voice shaped by two
    /// formants, the pitch gliding as in speech.
    fn vowel(pitch: f64, formants: (f64, f64), millis: usize) -> Vec<i16> {
        let n = millis * 8;
        let mut out = vec![0i16; n];
        let mut phases = [0.0f64; 30];
        for (i, s) in out.iter_mut().enumerate() {
            let glide = pitch * (1.0 + 0.08 * (i as f64 / n as f64 - 0.5));
            let mut v = 0.0;
            for (k, phase) in phases.iter_mut().enumerate() {
                let f = glide * (k + 1) as f64;
                if f >= 3800.0 {
                    break;
                }
                let resonance = |centre: f64| 1.0 / (1.0 + ((f - centre) / 120.0).powi(2));
                let gain = (resonance(formants.0) + 0.7 * resonance(formants.1)) / (k + 1) as f64;
                v += gain * phase.sin();
                *phase = (*phase + TAU * f / 8000.0) % TAU;
            }
            *s = (v * 6000.0).clamp(-32768.0, 32767.0) as i16;
        }
        out
    }

    #[test]
    fn voices_are_not_digits() {
        // Vowels of every voice from 85 to 225 Hz: common ones, and ones
        // whose formants sit right on DTMF rows and columns, the hardest.
        for pitch in (85..=225).step_by(5) {
            let mut pcm = Vec::new();
            for formants in [
                (730.0, 1090.0),
                (700.0, 1220.0),
                (850.0, 1220.0),
                (850.0, 1340.0),
                (940.0, 1480.0),
                (770.0, 1630.0),
                (660.0, 1720.0),
                (400.0, 2000.0),
                (300.0, 2300.0),
                (300.0, 870.0),
            ] {
                pcm.extend(vowel(pitch as f64, formants, 300));
            }
            assert_eq!(detect(&pcm), "", "{pitch} Hz voice");
        }
    }

    #[test]
    fn a_120_hz_voice_with_all_its_harmonics_is_not_a_digit() {
        let mut pcm = vec![0i16; 16_000];
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = i as f64 / 8000.0;
            let v: f64 = (1..=30)
                .map(|k| (TAU * 120.0 * k as f64 * t).sin() / k as f64)
                .sum();
            *s = (v * 5000.0) as i16;
        }
        assert_eq!(detect(&pcm), "");
    }

    #[test]
    fn the_generator_keeps_phase_across_frames() {
        let mut whole = vec![0; 480];
        DualTone::dtmf(Digit::Six, -10.0).fill(&mut whole);
        let mut framed = vec![0; 480];
        let mut generator = DualTone::dtmf(Digit::Six, -10.0);
        for frame in framed.chunks_mut(160) {
            generator.fill(frame);
        }
        let worst = whole
            .iter()
            .zip(&framed)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max();
        assert!(worst <= Some(1), "{worst:?}");
    }

    #[test]
    fn levels_follow_the_digital_milliwatt() {
        assert!((amplitude_at_dbm0(3.17) - 32_124.0).abs() < 1.0);
        let zero = amplitude_at_dbm0(0.0);
        assert!((22_200.0..22_400.0).contains(&zero), "{zero}");
        assert_eq!(frequencies(Digit::Pound), (941.0, 1477.0));
        assert_eq!(frequencies(Digit::A), (697.0, 1633.0));
    }
}
