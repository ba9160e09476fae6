//! Events: what a tenant is told about its bindings and calls. The JSON they
//! are rendered to lives with the webhook sender; here are only the names
//! and ids every layer shares.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// An event's id: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct EventId(pub u128);

/// The kinds of event. Names are part of the webhook contract.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum EventType {
    BindingCreated,
    BindingUpdated,
    BindingEnded,
    CallStarted,
    CallRinging,
    CallAnswered,
    CallEnded,
    CallRefused,
    CallRecorded,
    SmsRelayed,
    SmsHeld,
    SmsBlocked,
    SmsDelivered,
    SmsFailed,
}

impl EventType {
    pub const ALL: [EventType; 14] = [
        EventType::BindingCreated,
        EventType::BindingUpdated,
        EventType::BindingEnded,
        EventType::CallStarted,
        EventType::CallRinging,
        EventType::CallAnswered,
        EventType::CallEnded,
        EventType::CallRefused,
        EventType::CallRecorded,
        EventType::SmsRelayed,
        EventType::SmsHeld,
        EventType::SmsBlocked,
        EventType::SmsDelivered,
        EventType::SmsFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::BindingCreated => "binding.created",
            EventType::BindingUpdated => "binding.updated",
            EventType::BindingEnded => "binding.ended",
            EventType::CallStarted => "call.started",
            EventType::CallRinging => "call.ringing",
            EventType::CallAnswered => "call.answered",
            EventType::CallEnded => "call.ended",
            EventType::CallRefused => "call.refused",
            EventType::CallRecorded => "call.recorded",
            EventType::SmsRelayed => "sms.relayed",
            EventType::SmsHeld => "sms.held",
            EventType::SmsBlocked => "sms.blocked",
            EventType::SmsDelivered => "sms.delivered",
            EventType::SmsFailed => "sms.failed",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A subscription pattern: an exact type (`call.ended`), a family
/// (`call.*`) or everything (`*`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EventPattern(String);

impl EventPattern {
    pub fn matches(&self, t: EventType) -> bool {
        let p = self.0.as_str();
        p == "*"
            || p == t.as_str()
            || p.strip_suffix(".*").is_some_and(|family| {
                t.as_str()
                    .strip_prefix(family)
                    .is_some_and(|r| r.starts_with('.'))
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EventPattern {
    type Err = Error;

    /// Refuses a pattern that matches no type: a typo would otherwise
    /// silently subscribe to nothing.
    fn from_str(s: &str) -> Result<Self, Error> {
        let p = EventPattern(s.to_owned());
        if EventType::ALL.into_iter().any(|t| p.matches(t)) {
            Ok(p)
        } else {
            Err(Error::InvalidEventType)
        }
    }
}

/// Whether `t` is selected by `patterns` (an empty list selects every type).
pub fn selected(patterns: &[EventPattern], t: EventType) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(t))
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).hyphenated().fmt(f)
    }
}

impl FromStr for EventId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        crate::binding::parse_uuid(s).map(EventId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("call"), None);
    }

    #[test]
    fn patterns_select_exact_families_and_all() {
        let p = |s: &str| s.parse::<EventPattern>();
        let calls = p("call.*").unwrap();
        assert!(calls.matches(EventType::CallEnded));
        assert!(!calls.matches(EventType::BindingEnded));
        let ended = p("binding.ended").unwrap();
        assert!(ended.matches(EventType::BindingEnded));
        assert!(!ended.matches(EventType::BindingCreated));
        assert!(
            EventType::ALL
                .into_iter()
                .all(|t| p("*").unwrap().matches(t))
        );
        for bad in [
            "",
            "call",
            "calls.*",
            "call.",
            "binding.deleted",
            "*.ended",
            "cal.*",
        ] {
            assert_eq!(p(bad), Err(Error::InvalidEventType), "{bad:?}");
        }
        assert!(selected(&[], EventType::CallRinging));
        assert!(!selected(&[ended], EventType::CallRinging));
    }
}
