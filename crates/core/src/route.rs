//! Route decisions: what to do with one call or message to X.

use crate::{BindingId, Extension, Mode, Number, TenantId};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Channel {
    Voice,
    Sms,
}

/// One call or message arriving at X.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Inbound {
    pub caller: Number,
    pub called: Number,
    pub extension: Option<Extension>,
    pub channel: Channel,
}

/// Which way a connected call goes, as recorded in CDRs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    AToB,
    BToA,
    /// Anyone other than the bound parties reaching A (axn, axe).
    NToA,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Prompt {
    /// The binding ended and is cooling down.
    Expired,
    /// Nothing is bound for this caller on X.
    NoBinding,
    /// A dialled its own axn/axe number and no B is set.
    NoB,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RejectReason {
    DirectionForbidden,
    SmsDisabled,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Connect {
    pub binding: BindingId,
    pub tenant: TenantId,
    pub mode: Mode,
    pub direction: Direction,
    /// The real number to call.
    pub to: Number,
    /// What the called party sees: always X.
    pub caller_id: Number,
    pub max_call_seconds: Option<u32>,
    pub record: bool,
    pub pre_connect: bool,
    pub callee_whisper: bool,
    pub warn_before_end_seconds: Option<u32>,
}

/// The outcome of [`crate::Index::decide`]. A refusal is a value, not an
/// error: every inbound gets exactly one decision.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision {
    Connect(Connect),
    /// X is an `axe` number and no extension was given yet.
    CollectExtension {
        tenant: TenantId,
    },
    Announce {
        prompt: Prompt,
        binding: Option<BindingId>,
        tenant: Option<TenantId>,
    },
    Reject {
        reason: RejectReason,
        binding: BindingId,
        tenant: TenantId,
    },
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::AToB => "a_to_b",
            Direction::BToA => "b_to_a",
            Direction::NToA => "n_to_a",
        }
    }
}

impl Prompt {
    pub fn as_str(self) -> &'static str {
        match self {
            Prompt::Expired => "expired",
            Prompt::NoBinding => "no_binding",
            Prompt::NoB => "no_b",
        }
    }
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::DirectionForbidden => "direction_forbidden",
            RejectReason::SmsDisabled => "sms_disabled",
        }
    }

    /// The SIP final response a switch should send for this refusal.
    pub fn sip_code(self) -> u16 {
        match self {
            RejectReason::DirectionForbidden | RejectReason::SmsDisabled => 403,
        }
    }
}
