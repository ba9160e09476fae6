//! The intercept callback's contract: what the tenant is asked before a
//! call's outbound leg is placed, and how its answer reads. The request is
//! sent by `maskline-callbacks`.

use serde::{Deserialize, Serialize};

/// What the tenant is asked about, POSTed as JSON and signed like a webhook.
#[derive(Serialize, Clone, Debug)]
pub struct InterceptRequest {
    /// The call's id: its events and CDR carry the same.
    pub call_id: String,
    pub binding_id: String,
    /// `a_to_b`, `b_to_a` or `n_to_a`.
    pub direction: &'static str,
    pub x: String,
    pub caller: String,
    /// Who would be called.
    pub callee: String,
    /// RFC 3339 with milliseconds.
    pub invited_at: String,
}

/// The decision that applies.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Verdict {
    Allow,
    Deny { reason: Option<String> },
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
enum Answer {
    Allow,
    Deny {
        #[serde(default)]
        reason: Option<String>,
    },
}

/// Longest deny reason kept (it reaches the call's events).
pub const MAX_REASON_CHARS: usize = 200;

/// Most bytes of an answer read: it is a one-line JSON object.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The tenant's answer, `{"action": "allow"}` or `{"action": "deny",
/// "reason": "..."}`, as a verdict; `None` for anything else.
pub fn read_answer(body: &[u8]) -> Option<Verdict> {
    match serde_json::from_slice::<Answer>(body).ok()? {
        Answer::Allow => Some(Verdict::Allow),
        Answer::Deny { reason } => Some(Verdict::Deny {
            reason: reason.map(|r| r.chars().take(MAX_REASON_CHARS).collect()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_and_reasons_bounded() {
        assert_eq!(read_answer(br#"{"action":"allow"}"#), Some(Verdict::Allow));
        assert_eq!(
            read_answer(br#"{"action":"deny"}"#),
            Some(Verdict::Deny { reason: None })
        );
        let long = format!(r#"{{"action":"deny","reason":"{}"}}"#, "x".repeat(500));
        let Some(Verdict::Deny { reason: Some(r) }) = read_answer(long.as_bytes()) else {
            panic!("a deny with a reason");
        };
        assert_eq!(r.chars().count(), MAX_REASON_CHARS);
        for bad in [&b""[..], b"{}", br#"{"action":"maybe"}"#, b"allow", b"[1]"] {
            assert_eq!(read_answer(bad), None);
        }
    }
}
