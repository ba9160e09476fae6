//! Maskline's domain core: phone numbers, bindings, the allocator and route
//! decisions.
//!
//! Pure by design: no I/O, no async, no serde, no clock. Time comes in as a
//! parameter ([`UnixTime`]) and randomness as an `Rng`, so every behaviour is
//! a function that tests can drive directly.
//!
//! - [`number`]: E.164 parsing and validation, masking for logs, areas.
//! - [`binding`]: ids, modes, controls, extensions, lifecycle status.
//! - [`index`]: the in-memory [`Index`] that allocates X for new bindings and
//!   answers route decisions.
//! - [`route`]: the [`Decision`] values.
//! - [`call`], [`event`]: CDRs and the names of events.
//! - [`sms`]: texts: statuses, extensions in texts, pick-up and verification
//!   codes, the marketing filter.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod binding;
pub mod call;
pub mod call_load;
pub mod call_rules;
pub mod event;
pub mod index;
pub mod number;
pub mod route;
pub mod sms;

pub use binding::{
    Binding, BindingId, BindingStatus, Controls, EndReason, Extension, MAX_EXTENSION_LEN,
    MAX_WARN_BEFORE_END_SECS, Mode, TenantId, UnixTime,
};
pub use call::{
    CallId, CallRecord, Erased, Refusal, ReleaseReason, ReleasedBy, UnixMillis, q850_text,
};
pub use call_load::{CallLoad, OverCap, TenantLoad};
pub use call_rules::{CallCaps, CallRules, Prefix};
pub use event::{EventId, EventPattern, EventType, selected};
pub use index::{
    AllocRequest, Allocation, AreaMatch, Census, Index, NewBinding, NumberUsage, PoolStat,
    SweepReport, validate_parties,
};
pub use number::{Area, Masked, Number, Region};
pub use route::{Channel, Connect, Decision, Direction, Inbound, Prompt, RejectReason};
pub use sms::{MessageId, MessageReason, MessageStatus};

/// Everything the core refuses. Each variant is one stable reason that the
/// edges map to their protocol (HTTP problem codes, SIP statuses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not a valid phone number")]
    InvalidNumber,
    #[error("unknown region code {0:?}")]
    InvalidRegion(String),
    #[error("an area is 1 to 16 letters, digits or '-'")]
    InvalidArea,
    #[error("an extension is 1 to 8 digits")]
    InvalidExtension,
    #[error("not a valid id")]
    InvalidId,
    #[error("mode must be one of axb, axn, axe")]
    InvalidMode,
    #[error("status must be one of active, cooling, ended")]
    InvalidStatus,
    #[error("unknown event type")]
    InvalidEventType,
    #[error("unknown end reason")]
    InvalidEndReason,
    #[error("mode axb needs both a and b")]
    MissingB,
    #[error("a and b must be different numbers")]
    SameParty,
    #[error("a party is a virtual number of a pool")]
    PartyIsVirtual,
    #[error(
        "a party's number is outside the tenant's allowed destinations (PUT /v1/settings/calls)"
    )]
    DestinationNotAllowed,
    #[error("a prefix is `+` and 1 to 15 digits, at most 256 in a list")]
    InvalidPrefix,
    #[error("no number in the pool can serve this binding")]
    PoolExhausted,
    #[error("the number belongs to another pool")]
    NumberTaken,
    #[error("the number is not in this pool")]
    NumberNotFound,
    #[error("the number is still used by a binding")]
    NumberInUse,
    #[error("the number serves another mode")]
    ModeConflict,
    #[error("the axn number is held by another binding")]
    NumberHeld,
    #[error("a party already has a binding on this number")]
    PartyConflict,
    #[error("the extension is taken on this number")]
    ExtensionTaken,
    #[error("binding not found")]
    BindingNotFound,
    #[error("a binding with this id exists")]
    DuplicateBinding,
    #[error("the index is full")]
    CapacityExceeded,
    #[error("a rule is a regular expression of 1 to 512 characters")]
    InvalidRule,
    #[error("a sender is a phone number, or 1 to 20 letters, digits, spaces or ._-&")]
    InvalidSender,
}
