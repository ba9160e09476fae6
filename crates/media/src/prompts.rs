//! The prompts a call can hear, by name, and the built-in recordings of
//! each in Mandarin and English (`prompts/`, made by `scripts/make-prompts`,
//! embedded in the binary).

use std::fmt;
use std::sync::OnceLock;

use crate::player::Prompt;

/// A prompt's name, as the API and the contract spell it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum PromptName {
    EnterExtension,
    InvalidExtension,
    Expired,
    NoBinding,
    Forbidden,
    PreConnect,
    CalleeWhisper,
    LastMinute,
    RecordingNotice,
}

impl PromptName {
    pub const ALL: [PromptName; 9] = [
        PromptName::EnterExtension,
        PromptName::InvalidExtension,
        PromptName::Expired,
        PromptName::NoBinding,
        PromptName::Forbidden,
        PromptName::PreConnect,
        PromptName::CalleeWhisper,
        PromptName::LastMinute,
        PromptName::RecordingNotice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PromptName::EnterExtension => "enter_extension",
            PromptName::InvalidExtension => "invalid_extension",
            PromptName::Expired => "expired",
            PromptName::NoBinding => "no_binding",
            PromptName::Forbidden => "forbidden",
            PromptName::PreConnect => "pre_connect",
            PromptName::CalleeWhisper => "callee_whisper",
            PromptName::LastMinute => "last_minute",
            PromptName::RecordingNotice => "recording_notice",
        }
    }

    pub fn parse(s: &str) -> Option<PromptName> {
        PromptName::ALL.into_iter().find(|n| n.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for PromptName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The language of the built-in prompts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Language {
    /// Mandarin.
    Zh,
    En,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Language> {
        match s {
            "zh" => Some(Language::Zh),
            "en" => Some(Language::En),
            _ => None,
        }
    }
}

macro_rules! wavs {
    ($lang:literal) => {
        [
            include_bytes!(concat!("../prompts/", $lang, "/enter_extension.wav")).as_slice(),
            include_bytes!(concat!("../prompts/", $lang, "/invalid_extension.wav")).as_slice(),
            include_bytes!(concat!("../prompts/", $lang, "/expired.wav")).as_slice(),
            include_bytes!(concat!("../prompts/", $lang, "/no_binding.wav")).as_slice(),
            include_bytes!(concat!("../prompts/", $lang, "/forbidden.wav")).as_slice(),
            include_bytes!(concat!("../prompts/", $lang, "/pre_connect.wav")).as_slice(),
            include_bytes!(concat!("../prompts/", $lang, "/callee_whisper.wav")).as_slice(),
            include_bytes!(concat!("../prompts/", $lang, "/last_minute.wav")).as_slice(),
            include_bytes!(concat!("../prompts/", $lang, "/recording_notice.wav")).as_slice(),
        ]
    };
}

const ZH: [&[u8]; 9] = wavs!("zh");
const EN: [&[u8]; 9] = wavs!("en");

/// The built-in recording of `name` in `language` as the WAV file that
/// ships with the binary, for someone to listen to.
pub fn builtin_wav(name: PromptName, language: Language) -> &'static [u8] {
    match language {
        Language::Zh => ZH[name.index()],
        Language::En => EN[name.index()],
    }
}

/// The built-in recording of `name` in `language`. Decoded once; a file
/// that does not decode (it is checked by this crate's tests) plays as
/// silence rather than failing a call.
pub fn builtin(name: PromptName, language: Language) -> Prompt {
    static DECODED: OnceLock<[Vec<Prompt>; 2]> = OnceLock::new();
    let decoded = DECODED.get_or_init(|| {
        let decode = |files: &[&[u8]; 9]| {
            files
                .iter()
                .map(|bytes| {
                    Prompt::from_wav(*bytes).unwrap_or_else(|_| Prompt::new(vec![0i16; 160]))
                })
                .collect()
        };
        [decode(&ZH), decode(&EN)]
    });
    let table = match language {
        Language::Zh => &decoded[0],
        Language::En => &decoded[1],
    };
    table
        .get(name.index())
        .cloned()
        .unwrap_or_else(|| Prompt::new(vec![0i16; 160]))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_builtin_prompt_decodes_and_is_speech_length() {
        for files in [&ZH, &EN] {
            for bytes in files.iter() {
                let prompt = Prompt::from_wav(*bytes).unwrap();
                assert!(prompt.duration() > Duration::from_millis(800));
                assert!(prompt.duration() < Duration::from_secs(8));
                let peak = prompt.samples().iter().map(|s| s.unsigned_abs()).max();
                assert!(peak.unwrap() > 8_000, "not silence");
            }
        }
    }

    #[test]
    fn names_round_trip_and_index_their_files() {
        for (i, name) in PromptName::ALL.into_iter().enumerate() {
            assert_eq!(PromptName::parse(name.as_str()), Some(name));
            assert_eq!(name.index(), i);
        }
        assert_eq!(PromptName::parse("hello"), None);
        assert_ne!(
            builtin(PromptName::Expired, Language::Zh),
            builtin(PromptName::Expired, Language::En)
        );
    }
}
