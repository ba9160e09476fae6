//! Text in SMS bytes, both ways: the GSM 03.38 default alphabet (one
//! septet an octet, "unpacked", as SMPP carries it), UCS-2/UTF-16 big
//! endian (Chinese, and emoji as surrogate pairs), Latin-1 and IA5.
//!
//! Sending uses rusmpp's multipart builder; for UTF-16 it gets our
//! [`Utf16`] encoder, since rusmpp's UCS-2 one refuses characters outside
//! the Basic Multilingual Plane (an emoji in a text would fail it).

use rusmpp::extra::concatenation::{Concatenation, Concatenator};
use rusmpp::values::DataCoding;

/// The default alphabet, by septet.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

const ESCAPE: u8 = 0x1b;

/// The extension table (after an escape): septet and character.
const EXTENDED: [(u8, char); 10] = [
    (0x0a, '\u{c}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2f, '\\'),
    (0x3c, '['),
    (0x3d, '~'),
    (0x3e, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// How a `data_coding` says the bytes are written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Alphabet {
    Gsm7,
    Ucs2,
    Latin1,
    /// 8-bit data: not text. Shown as Latin-1 rather than lost.
    Binary,
}

/// Reads SMPP's `data_coding` (SMPP 3.4 §5.2.19 and GSM 03.38 §4's
/// coding groups).
pub fn alphabet(coding: u8) -> Alphabet {
    match coding {
        0x00 => Alphabet::Gsm7,
        0x01 | 0x03 => Alphabet::Latin1,
        0x08 => Alphabet::Ucs2,
        0x02 | 0x04 => Alphabet::Binary,
        // General data coding with a message class or compression flag:
        // bits 3-2 name the alphabet.
        0x10..=0x3f => match (coding >> 2) & 0x03 {
            0 => Alphabet::Gsm7,
            1 => Alphabet::Binary,
            _ => Alphabet::Ucs2,
        },
        // Message waiting groups: 0xc0-0xdf GSM 7-bit, 0xe0-0xef UCS-2.
        0xc0..=0xdf => Alphabet::Gsm7,
        0xe0..=0xef => Alphabet::Ucs2,
        // Data coding/message class: bit 2 is 8-bit data.
        0xf0..=0xff if coding & 0x04 != 0 => Alphabet::Binary,
        0xf0..=0xff => Alphabet::Gsm7,
        _ => Alphabet::Latin1,
    }
}

/// Text from the bytes of a short message (a whole one, or all its parts
/// put together). Never fails: a byte that means nothing becomes U+FFFD.
pub fn decode(coding: u8, bytes: &[u8]) -> String {
    match alphabet(coding) {
        Alphabet::Gsm7 => decode_gsm7(bytes),
        Alphabet::Ucs2 => {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        Alphabet::Latin1 | Alphabet::Binary => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

fn decode_gsm7(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut escaped = false;
    for &b in bytes {
        let septet = b & 0x7f;
        if escaped {
            escaped = false;
            out.push(
                EXTENDED
                    .iter()
                    .find(|(s, _)| *s == septet)
                    .map_or(char::REPLACEMENT_CHARACTER, |(_, c)| *c),
            );
        } else if septet == ESCAPE {
            escaped = true;
        } else {
            out.push(BASIC[usize::from(septet)]);
        }
    }
    out
}

/// Whether every character of `text` is in the default alphabet (its
/// extension table included) and may be sent as GSM 7-bit. Form feed is
/// left out: the encoder we send with has no escape for it, and phones
/// show it as a page break at best; such a text goes as UCS-2.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| {
        (c != '\u{1b}' && BASIC.contains(&c))
            || (c != '\u{c}' && EXTENDED.iter().any(|(_, e)| *e == c))
    })
}

/// UTF-16 big endian, data coding 8: what phones send and show for UCS-2,
/// surrogate pairs included. Parts never split a character; a single part
/// holds 140 octets, a concatenated one 140 less its header.
#[derive(Debug, Default)]
pub struct Utf16;

/// Octets in one short message on the air interface.
pub const MAX_OCTETS: usize = 140;

#[derive(Debug, thiserror::Error)]
#[error("a text cannot be cut into parts this small")]
pub struct Utf16Error;

impl Concatenator for Utf16 {
    type Error = Utf16Error;

    fn concatenate(
        &self,
        message: &str,
        max_message_size: usize,
        part_header_size: usize,
    ) -> Result<(Concatenation, DataCoding), Utf16Error> {
        let max = max_message_size.min(MAX_OCTETS);
        let bytes = |chars: &[char]| -> Vec<u8> {
            let mut buf = [0u16; 2];
            chars
                .iter()
                .flat_map(|c| c.encode_utf16(&mut buf).to_vec())
                .flat_map(u16::to_be_bytes)
                .collect()
        };
        let chars: Vec<char> = message.chars().collect();
        let whole = bytes(&chars);
        if whole.len() <= max {
            return Ok((Concatenation::Single(whole), DataCoding::Ucs2));
        }
        let room = max.saturating_sub(part_header_size);
        let mut parts = Vec::new();
        let mut part: Vec<u8> = Vec::with_capacity(room);
        for c in chars {
            let mut buf = [0u16; 2];
            let units = c.encode_utf16(&mut buf);
            if units.len() * 2 > room {
                return Err(Utf16Error);
            }
            if part.len() + units.len() * 2 > room {
                parts.push(std::mem::take(&mut part));
            }
            part.extend(units.iter().flat_map(|u| u.to_be_bytes()));
        }
        if !part.is_empty() {
            parts.push(part);
        }
        Ok((Concatenation::Concatenated(parts), DataCoding::Ucs2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_round_trips_through_the_default_alphabet() {
        let text = "Hello @ £5 {ok} [x] ~ € ü ß Δ";
        assert!(is_gsm7(text));
        let mut bytes = Vec::new();
        for c in text.chars() {
            if let Some((s, _)) = EXTENDED.iter().find(|(_, e)| *e == c) {
                bytes.extend([ESCAPE, *s]);
            } else {
                bytes.push(BASIC.iter().position(|b| *b == c).unwrap() as u8);
            }
        }
        assert_eq!(decode(0, &bytes), text);
        assert!(!is_gsm7("取件码"));
        assert!(!is_gsm7("ok 😊"));
        assert!(!is_gsm7("page\u{c}break"));
    }

    #[test]
    fn ucs2_reads_chinese_and_surrogate_pairs() {
        let text = "取件码12-3-4567 😊";
        let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(decode(8, &bytes), text);
        // A lone surrogate (a pair cut by a careless sender) is replaced.
        assert_eq!(decode(8, &[0xd8, 0x3d]), "\u{fffd}");
        // An odd byte count does not panic.
        assert_eq!(decode(8, &[0x00]), "\u{0}");
    }

    #[test]
    fn coding_groups() {
        assert_eq!(alphabet(0x00), Alphabet::Gsm7);
        assert_eq!(alphabet(0x08), Alphabet::Ucs2);
        assert_eq!(alphabet(0x18), Alphabet::Ucs2);
        assert_eq!(alphabet(0xf0), Alphabet::Gsm7);
        assert_eq!(alphabet(0xf4), Alphabet::Binary);
        assert_eq!(alphabet(0x03), Alphabet::Latin1);
        assert_eq!(decode(0x03, b"caf\xe9"), "café");
    }

    #[test]
    fn utf16_parts_never_split_a_character() {
        let text = "😊".repeat(40) + &"中".repeat(40);
        let (c, coding) = Utf16.concatenate(&text, 160, 6).unwrap();
        assert_eq!(coding, DataCoding::Ucs2);
        let Concatenation::Concatenated(parts) = c else {
            panic!("one part")
        };
        assert!(parts.iter().all(|p| p.len() <= 134 && p.len() % 2 == 0));
        let back: Vec<u8> = parts.concat();
        assert_eq!(decode(8, &back), text);
        for p in &parts {
            // Each part decodes alone: no pair is cut.
            assert!(!decode(8, p).contains('\u{fffd}'));
        }
        let (single, _) = Utf16.concatenate(&"中".repeat(70), 160, 6).unwrap();
        assert!(matches!(single, Concatenation::Single(b) if b.len() == 140));
    }
}
