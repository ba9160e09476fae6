//! The route decision for a text: the call decision (`Index::decide` with
//! `Channel::Sms`), a shared number's extension found in the text or in the
//! sender's last call, and the marketing filter for texts to axn and axe
//! owners.

use super::filter::{Filter, Verdict};
use super::{MessageReason, Sender, leading_extension};
use crate::{
    BindingId, Channel, Connect, Decision, Direction, Extension, Inbound, Index, Mode, Number,
    Prompt, RejectReason, TenantId, UnixTime,
};

/// One text arriving at X.
#[derive(Clone, Copy, Debug)]
pub struct InboundText<'a> {
    pub from: &'a Sender,
    pub to: Number,
    pub text: &'a str,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TextDecision {
    /// Send it to `connect.to`, from X.
    Relay(Connect),
    /// Keep it unsent: X is shared and the extension is unknown.
    Hold { tenant: TenantId },
    /// Do not send it.
    Block {
        tenant: Option<TenantId>,
        binding: Option<BindingId>,
        reason: MessageReason,
    },
    /// X is shared and the text names no extension: decide again with the
    /// extension this sender last reached on X by voice, if any.
    NeedAffinity,
}

/// Decides a text. `affinity` is `None` until the caller has looked up the
/// sender's last call (only asked for by [`TextDecision::NeedAffinity`]);
/// `filter` is the tenant's marketing filter.
pub fn decide_text<'f>(
    index: &Index,
    text: &InboundText<'_>,
    extension_len: u8,
    affinity: Option<Option<Extension>>,
    filter: impl Fn(TenantId) -> Option<&'f Filter>,
    now: UnixTime,
) -> TextDecision {
    let decide = |extension| match text.from {
        Sender::Number(caller) => index.decide(
            &Inbound {
                caller: *caller,
                called: text.to,
                extension,
                channel: Channel::Sms,
            },
            now,
        ),
        Sender::Id(_) => index.decide_stranger(text.to, extension, Channel::Sms, now),
    };
    let unknown = |d: &Decision| {
        matches!(
            d,
            Decision::Announce {
                prompt: Prompt::NoBinding,
                ..
            }
        )
    };
    let mut decision = decide(None);
    if let Decision::CollectExtension { tenant } = decision {
        let named = leading_extension(text.text, extension_len)
            .map(|e| decide(Some(e)))
            .filter(|d| !unknown(d));
        decision = match (named, affinity) {
            (Some(d), _) => d,
            (None, None) => return TextDecision::NeedAffinity,
            (None, Some(None)) => return TextDecision::Hold { tenant },
            (None, Some(Some(e))) => match decide(Some(e)) {
                d if unknown(&d) => return TextDecision::Hold { tenant },
                d => d,
            },
        };
    }
    outcome(decision, text, filter)
}

/// Decides a held text again with the extension someone chose for it (a
/// console user, `POST /v1/messages/{id}/release`): only that extension,
/// never one the text names, and the tenant's filter as for any text.
/// [`TextDecision::Hold`] if no live binding on X has it.
pub fn decide_release<'f>(
    index: &Index,
    text: &InboundText<'_>,
    extension: Extension,
    filter: impl Fn(TenantId) -> Option<&'f Filter>,
    now: UnixTime,
) -> TextDecision {
    let decision = match text.from {
        Sender::Number(caller) => index.decide(
            &Inbound {
                caller: *caller,
                called: text.to,
                extension: Some(extension),
                channel: Channel::Sms,
            },
            now,
        ),
        Sender::Id(_) => index.decide_stranger(text.to, Some(extension), Channel::Sms, now),
    };
    match decision {
        Decision::Announce {
            prompt: Prompt::NoBinding,
            tenant: Some(tenant),
            ..
        }
        | Decision::CollectExtension { tenant } => TextDecision::Hold { tenant },
        d => outcome(d, text, filter),
    }
}

/// What a call decision means for a text.
fn outcome<'f>(
    decision: Decision,
    text: &InboundText<'_>,
    filter: impl Fn(TenantId) -> Option<&'f Filter>,
) -> TextDecision {
    match decision {
        Decision::Connect(c) => {
            let to_owner = c.direction != Direction::AToB;
            let filtered = matches!(c.mode, Mode::Axn | Mode::Axe) && to_owner;
            let verdict = match filter(c.tenant) {
                Some(f) if filtered => f.classify(text.text),
                _ => Verdict::Pass,
            };
            match verdict {
                Verdict::Pass => TextDecision::Relay(c),
                Verdict::Marketing => {
                    block(Some(c.tenant), Some(c.binding), MessageReason::Marketing)
                }
                Verdict::Rule(_) => {
                    block(Some(c.tenant), Some(c.binding), MessageReason::TenantRule)
                }
            }
        }
        // An extension was asked for again: cannot happen with one given.
        Decision::CollectExtension { tenant } => TextDecision::Hold { tenant },
        Decision::Announce {
            prompt,
            binding,
            tenant,
        } => {
            let reason = match prompt {
                Prompt::Expired => MessageReason::Expired,
                Prompt::NoBinding => MessageReason::NoBinding,
                Prompt::NoB => MessageReason::NoB,
            };
            block(tenant, binding, reason)
        }
        Decision::Reject {
            reason,
            binding,
            tenant,
        } => {
            let reason = match reason {
                RejectReason::DirectionForbidden => MessageReason::DirectionForbidden,
                RejectReason::SmsDisabled => MessageReason::SmsDisabled,
            };
            block(Some(tenant), Some(binding), reason)
        }
    }
}

fn block(
    tenant: Option<TenantId>,
    binding: Option<BindingId>,
    reason: MessageReason,
) -> TextDecision {
    TextDecision::Block {
        tenant,
        binding,
        reason,
    }
}
