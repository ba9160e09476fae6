//! Texts through X: what becomes of one (`MessageStatus`, `MessageReason`),
//! the extension a text to a shared number names, pick-up and verification
//! codes ([`pickup`]) and the marketing filter ([`filter`]).

mod decide;
pub mod filter;
pub mod pickup;
pub mod text;

use std::fmt;
use std::str::FromStr;

use crate::{BindingId, Direction, Error, Extension, Number, TenantId, UnixMillis, UnixTime};

pub use decide::{InboundText, TextDecision, decide_release, decide_text};
pub use filter::{Filter, FilterMode, Rule, RuleAction, Verdict};

/// Who sent a text: a phone number, or what carriers show for senders that
/// have none (a short code such as `10690000123`, a name such as `FedEx`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Sender {
    Number(Number),
    Id(SenderId),
}

/// A sender id: 1 to 20 characters of ASCII letters, digits, space, `.`,
/// `_`, `-` and `&`, not starting with `+` (that is a number's form).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SenderId(String);

impl SenderId {
    pub fn new(s: &str) -> Result<SenderId, Error> {
        let ok = (1..=20).contains(&s.len())
            && !s.starts_with([' ', '+'])
            && !s.ends_with(' ')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" ._-&".contains(&b));
        if ok {
            Ok(SenderId(s.to_owned()))
        } else {
            Err(Error::InvalidSender)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Sender {
    /// Stored form: E.164 (`+8613…`) for a number, the id as it is.
    pub fn parse_stored(s: &str) -> Result<Sender, Error> {
        if s.starts_with('+') {
            Number::from_e164(s).map(Sender::Number)
        } else {
            SenderId::new(s).map(Sender::Id)
        }
    }

    pub fn number(&self) -> Option<Number> {
        match self {
            Sender::Number(n) => Some(*n),
            Sender::Id(_) => None,
        }
    }
}

/// E.164 for a number (`Display` shows it whole, for the API), the id as it
/// is; `Debug` of a number is masked.
impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sender::Number(n) => n.fmt(f),
            Sender::Id(id) => f.write_str(&id.0),
        }
    }
}

/// One text to X and what became of it. Kept for its binding's lifetime and
/// cool-down.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    pub id: MessageId,
    /// `None` when X is in no pool: kept, never listed.
    pub tenant: Option<TenantId>,
    pub binding: Option<BindingId>,
    pub direction: Option<Direction>,
    /// The number texted.
    pub x: Number,
    /// Who sent it.
    pub from: Sender,
    /// The party it was relayed to.
    pub to: Option<Number>,
    pub text: String,
    pub pickup_code: Option<String>,
    pub status: MessageStatus,
    pub reason: Option<MessageReason>,
    /// Parts a carrier took it in; 0 until then.
    pub parts: u8,
    /// Where it came from: `smpp:<link>` or `http:<gateway id>`.
    pub ingress: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// When its binding ends (its creation, without one): it is kept until
    /// a cool-down after this.
    pub ends_at: UnixTime,
}

/// A tenant's SMS settings.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Put before every relayed text (`【平台】`).
    pub prefix: Option<String>,
    pub filter: Filter,
}

/// Longest tenant prefix, in characters.
pub const MAX_PREFIX_CHARS: usize = 32;

/// A message's id: a UUID v7, so ids sort by arrival.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MessageId(pub u128);

/// Where a text stands. Names are part of the API.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MessageStatus {
    /// Accepted for the bound party and being sent.
    Relayed,
    /// Kept, not sent: the shared number's extension is not known.
    Held,
    /// Not sent (see the reason).
    Blocked,
    /// The carrier reported it delivered.
    Delivered,
    /// Sending or delivery failed.
    Failed,
}

/// Why a text was held, blocked or failed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MessageReason {
    /// Bulk marketing, by the standard filter.
    Marketing,
    /// One of the tenant's rules.
    TenantRule,
    /// The binding's `controls.sms` is off.
    SmsDisabled,
    /// The binding forbids this direction.
    DirectionForbidden,
    /// The binding ended and is cooling down.
    Expired,
    /// Nothing is bound for this sender on X (or X is not ours).
    NoBinding,
    /// A texted its own axn/axe number and no B is set.
    NoB,
    /// A text to a shared number named no extension, and its sender has not
    /// called one lately.
    ExtensionUnknown,
    /// The carrier reported it undeliverable, expired or rejected.
    Undeliverable,
    /// No carrier link accepted it.
    SubmitFailed,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 5] = [
        MessageStatus::Relayed,
        MessageStatus::Held,
        MessageStatus::Blocked,
        MessageStatus::Delivered,
        MessageStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Relayed => "relayed",
            MessageStatus::Held => "held",
            MessageStatus::Blocked => "blocked",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl MessageReason {
    pub const ALL: [MessageReason; 10] = [
        MessageReason::Marketing,
        MessageReason::TenantRule,
        MessageReason::SmsDisabled,
        MessageReason::DirectionForbidden,
        MessageReason::Expired,
        MessageReason::NoBinding,
        MessageReason::NoB,
        MessageReason::ExtensionUnknown,
        MessageReason::Undeliverable,
        MessageReason::SubmitFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageReason::Marketing => "marketing",
            MessageReason::TenantRule => "tenant_rule",
            MessageReason::SmsDisabled => "sms_disabled",
            MessageReason::DirectionForbidden => "direction_forbidden",
            MessageReason::Expired => "expired",
            MessageReason::NoBinding => "no_binding",
            MessageReason::NoB => "no_b",
            MessageReason::ExtensionUnknown => "extension_unknown",
            MessageReason::Undeliverable => "undeliverable",
            MessageReason::SubmitFailed => "submit_failed",
        }
    }

    pub fn parse(s: &str) -> Option<MessageReason> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// The extension a text to a shared (axe) number starts with: `1234 …`,
/// `#1234 …` or `1234# …`, exactly `len` digits (full-width too) followed
/// by the end, a space, a `#` or punctuation.
pub fn leading_extension(text: &str, len: u8) -> Option<Extension> {
    let folded = text::fold(text);
    let rest = folded
        .trim_start()
        .strip_prefix('#')
        .unwrap_or(folded.trim_start());
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits != usize::from(len) {
        return None;
    }
    let after = rest[digits..].chars().next();
    let ends = match after {
        None => true,
        Some(c) => c == '#' || c.is_whitespace() || (!c.is_alphanumeric() && c != '-' && c != '.'),
    };
    if !ends {
        return None;
    }
    rest[..digits]
        .parse()
        .ok()
        .and_then(|v| Extension::new(v, len).ok())
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).hyphenated().fmt(f)
    }
}

impl FromStr for MessageId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        crate::binding::parse_uuid(s).map(MessageId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
        }
        for r in MessageReason::ALL {
            assert_eq!(MessageReason::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn extensions_at_the_start_of_a_text() {
        let ext = |t: &str| leading_extension(t, 4).map(|e| e.to_string());
        assert_eq!(ext("1234 您的外卖到了").as_deref(), Some("1234"));
        assert_eq!(ext("#1234 hello").as_deref(), Some("1234"));
        assert_eq!(ext("  1234#hello").as_deref(), Some("1234"));
        assert_eq!(ext("０１２３，到了").as_deref(), Some("0123"));
        assert_eq!(ext("1234").as_deref(), Some("1234"));
        for no in [
            "12345 hello",
            "123 hello",
            "1234abc",
            "1234-5678",
            "hello 1234",
            "12.34",
        ] {
            assert_eq!(ext(no), None, "{no}");
        }
        assert_eq!(
            leading_extension("12 hi", 2)
                .map(|e| e.to_string())
                .as_deref(),
            Some("12")
        );
    }
}
