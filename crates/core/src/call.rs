//! Call detail records: one per inbound call attempt, whatever its outcome.

use std::fmt;
use std::str::FromStr;

use crate::{BindingId, Direction, Error, Number, TenantId};

/// Unix time in milliseconds: call progress needs finer times than bindings.
pub type UnixMillis = i64;

/// A CDR's id: a UUID v7, so ids sort by the time the INVITE arrived.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CallId(pub u128);

/// Which side ended the call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReleasedBy {
    /// The party who dialled X (BYE or CANCEL from the inbound leg).
    Caller,
    /// The party Maskline called (BYE or a failure from the outbound leg).
    Callee,
    /// Maskline itself: a refusal, a limit, a timeout or shutdown.
    System,
}

/// Why the call ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReleaseReason {
    /// An answered call ended with BYE.
    Normal,
    /// The caller cancelled before the answer.
    Cancelled,
    /// The callee was busy (486, 600).
    Busy,
    /// The callee declined (603).
    Declined,
    /// Nobody answered: the callee's 480/408, or the ring timeout.
    NoAnswer,
    /// The callee's number could not be reached (404, 484, 604).
    NotFound,
    /// The gateway or the callee failed (other 4xx–6xx).
    Failed,
    /// The outbound leg never answered at all (transaction timeout).
    GatewayTimeout,
    /// `max_call_seconds` was reached.
    MaxDuration,
    /// A leg stopped answering in-dialog requests.
    PeerTimeout,
    /// No RTP arrived from a leg for the RTP timeout.
    MediaTimeout,
    /// The route decision refused the call (see [`CallRecord::refusal`]).
    Refused,
    /// Maskline was shutting down.
    Shutdown,
    /// The node carrying the call stopped without ending it (a crash, a
    /// kill): the CDR was written from the node's open-call journal when it
    /// started again, ending at its last sign of life.
    NodeRestart,
}

/// A refusal's treatment, as recorded in the CDR.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refusal {
    DirectionForbidden,
    /// No binding for this caller on X (or X is not ours).
    NoBinding,
    /// The binding ended and is cooling down.
    Expired,
    /// A dialled its own axn/axe number and no B is set.
    NoB,
    /// An `axe` number reached without extension digits.
    ExtensionRequired,
    /// The caller or the called number is not a phone number.
    InvalidNumber,
    /// No outbound gateway is configured.
    NoGateway,
    /// The tenant's intercept callback denied the call (or failed, with a
    /// `deny` fallback).
    Intercepted,
    /// The callee is outside the tenant's call rules as they are now (the
    /// rules changed after the binding was made).
    DestinationNotAllowed,
    /// The tenant's `max_concurrent_calls` or `max_calls_per_second`.
    CallLimit,
}

/// One inbound INVITE and what became of it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CallRecord {
    pub id: CallId,
    /// `None` when X is not in any pool.
    pub tenant: Option<TenantId>,
    pub binding: Option<BindingId>,
    /// Set when the call was connected (an outbound leg was placed).
    pub direction: Option<Direction>,
    /// The virtual number dialled; `None` when the Request-URI was not a number.
    pub x: Option<Number>,
    pub caller: Option<Number>,
    /// The party Maskline called, when it placed an outbound leg.
    pub callee: Option<Number>,
    pub invited_at: UnixMillis,
    pub ringing_at: Option<UnixMillis>,
    pub answered_at: Option<UnixMillis>,
    pub ended_at: UnixMillis,
    /// The final status sent on the inbound leg (200 for an answered call).
    pub final_status: u16,
    pub released_by: ReleasedBy,
    pub release_reason: ReleaseReason,
    pub refusal: Option<Refusal>,
    /// What is left of a party erased from the record (`DELETE
    /// /v1/parties/{number}`): its masked number, the number itself gone.
    pub erased: Erased,
}

/// The masked numbers of a CDR's erased parties (`+86138****0000`).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Erased {
    pub caller: Option<String>,
    pub callee: Option<String>,
}

impl CallRecord {
    /// The ITU-T Q.850 cause of the call's release, as carriers' CDRs
    /// carry it (SIP statuses mapped as RFC 3398 does).
    pub fn release_cause(&self) -> u8 {
        match self.release_reason {
            ReleaseReason::Normal | ReleaseReason::MaxDuration | ReleaseReason::Cancelled => 16,
            ReleaseReason::Busy => 17,
            ReleaseReason::Declined => 21,
            ReleaseReason::NoAnswer => 19,
            ReleaseReason::NotFound => 1,
            ReleaseReason::Failed => match self.final_status {
                400 => 95,
                488 => 88,
                503 => 34,
                _ => 41,
            },
            ReleaseReason::GatewayTimeout
            | ReleaseReason::PeerTimeout
            | ReleaseReason::MediaTimeout => 102,
            ReleaseReason::Refused => self.refusal.map_or(21, Refusal::q850),
            ReleaseReason::Shutdown => 41,
            ReleaseReason::NodeRestart => 38,
        }
    }

    /// Talk time in milliseconds (0 when never answered).
    pub fn duration_ms(&self) -> i64 {
        self.answered_at
            .map_or(0, |answered| (self.ended_at - answered).max(0))
    }

    /// Talk time in whole seconds, rounded up as carriers bill it.
    pub fn duration_seconds(&self) -> i64 {
        (self.duration_ms() + 999) / 1000
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).hyphenated().fmt(f)
    }
}

impl FromStr for CallId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        crate::binding::parse_uuid(s).map(CallId)
    }
}

impl ReleasedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleasedBy::Caller => "caller",
            ReleasedBy::Callee => "callee",
            ReleasedBy::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<ReleasedBy> {
        [ReleasedBy::Caller, ReleasedBy::Callee, ReleasedBy::System]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl ReleaseReason {
    pub const ALL: [ReleaseReason; 14] = [
        ReleaseReason::Normal,
        ReleaseReason::Cancelled,
        ReleaseReason::Busy,
        ReleaseReason::Declined,
        ReleaseReason::NoAnswer,
        ReleaseReason::NotFound,
        ReleaseReason::Failed,
        ReleaseReason::GatewayTimeout,
        ReleaseReason::MaxDuration,
        ReleaseReason::PeerTimeout,
        ReleaseReason::MediaTimeout,
        ReleaseReason::Refused,
        ReleaseReason::Shutdown,
        ReleaseReason::NodeRestart,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Normal => "normal",
            ReleaseReason::Cancelled => "cancelled",
            ReleaseReason::Busy => "busy",
            ReleaseReason::Declined => "declined",
            ReleaseReason::NoAnswer => "no_answer",
            ReleaseReason::NotFound => "not_found",
            ReleaseReason::Failed => "failed",
            ReleaseReason::GatewayTimeout => "gateway_timeout",
            ReleaseReason::MaxDuration => "max_duration",
            ReleaseReason::PeerTimeout => "peer_timeout",
            ReleaseReason::MediaTimeout => "media_timeout",
            ReleaseReason::Refused => "refused",
            ReleaseReason::Shutdown => "shutdown",
            ReleaseReason::NodeRestart => "node_restart",
        }
    }

    pub fn parse(s: &str) -> Option<ReleaseReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The name ITU-T Q.850 gives a cause (those Maskline uses).
pub fn q850_text(cause: u8) -> &'static str {
    match cause {
        1 => "unallocated number",
        16 => "normal call clearing",
        17 => "user busy",
        19 => "no answer from user",
        21 => "call rejected",
        22 => "number changed",
        28 => "invalid number format",
        34 => "no circuit available",
        38 => "network out of order",
        41 => "temporary failure",
        88 => "incompatible destination",
        95 => "invalid message",
        102 => "recovery on timer expiry",
        _ => "unspecified",
    }
}

impl Refusal {
    /// The Q.850 cause of this refusal (RFC 3398: 1 unallocated number,
    /// 21 call rejected, 22 number changed, 28 invalid number format, 34 no
    /// circuit available, 38 network out of order).
    pub fn q850(self) -> u8 {
        match self {
            Refusal::DirectionForbidden | Refusal::Intercepted | Refusal::DestinationNotAllowed => {
                21
            }
            Refusal::NoBinding | Refusal::NoB => 1,
            Refusal::Expired => 22,
            Refusal::ExtensionRequired | Refusal::InvalidNumber => 28,
            Refusal::NoGateway => 38,
            Refusal::CallLimit => 34,
        }
    }

    pub const ALL: [Refusal; 10] = [
        Refusal::DirectionForbidden,
        Refusal::NoBinding,
        Refusal::Expired,
        Refusal::NoB,
        Refusal::ExtensionRequired,
        Refusal::InvalidNumber,
        Refusal::NoGateway,
        Refusal::Intercepted,
        Refusal::DestinationNotAllowed,
        Refusal::CallLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::DirectionForbidden => "direction_forbidden",
            Refusal::NoBinding => "no_binding",
            Refusal::Expired => "expired",
            Refusal::NoB => "no_b",
            Refusal::ExtensionRequired => "extension_required",
            Refusal::InvalidNumber => "invalid_number",
            Refusal::NoGateway => "no_gateway",
            Refusal::Intercepted => "intercepted",
            Refusal::DestinationNotAllowed => "destination_not_allowed",
            Refusal::CallLimit => "call_limit",
        }
    }

    pub fn parse(s: &str) -> Option<Refusal> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl Direction {
    pub fn parse(s: &str) -> Option<Direction> {
        [Direction::AToB, Direction::BToA, Direction::NToA]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in ReleaseReason::ALL {
            assert_eq!(ReleaseReason::parse(r.as_str()), Some(r));
        }
        for r in Refusal::ALL {
            assert_eq!(Refusal::parse(r.as_str()), Some(r));
        }
        for r in [ReleasedBy::Caller, ReleasedBy::Callee, ReleasedBy::System] {
            assert_eq!(ReleasedBy::parse(r.as_str()), Some(r));
        }
        for d in [Direction::AToB, Direction::BToA, Direction::NToA] {
            assert_eq!(Direction::parse(d.as_str()), Some(d));
        }
        assert_eq!(ReleaseReason::parse("nope"), None);
    }

    /// A refused attempt: no binding.
    fn refused() -> CallRecord {
        CallRecord {
            id: CallId(1),
            tenant: None,
            binding: None,
            direction: None,
            x: None,
            caller: None,
            callee: None,
            invited_at: 1_000,
            ringing_at: None,
            answered_at: None,
            ended_at: 9_000,
            final_status: 404,
            released_by: ReleasedBy::System,
            release_reason: ReleaseReason::Refused,
            refusal: Some(Refusal::NoBinding),
            erased: Default::default(),
        }
    }

    #[test]
    fn duration_rounds_up_and_is_zero_unanswered() {
        let mut r = refused();
        assert_eq!(r.duration_seconds(), 0);
        r.answered_at = Some(2_000);
        r.ended_at = 4_001;
        assert_eq!(r.duration_ms(), 2_001);
        assert_eq!(r.duration_seconds(), 3);
    }

    #[test]
    fn release_causes_follow_q850() {
        let mut r = CallRecord {
            final_status: 410,
            refusal: Some(Refusal::Expired),
            ..refused()
        };
        assert_eq!(r.release_cause(), 22);
        r.refusal = Some(Refusal::NoBinding);
        assert_eq!(r.release_cause(), 1);
        for (reason, status, cause) in [
            (ReleaseReason::Normal, 200, 16),
            (ReleaseReason::Busy, 486, 17),
            (ReleaseReason::NoAnswer, 480, 19),
            (ReleaseReason::Declined, 603, 21),
            (ReleaseReason::MediaTimeout, 200, 102),
            (ReleaseReason::Failed, 488, 88),
            (ReleaseReason::Failed, 503, 34),
            (ReleaseReason::Failed, 500, 41),
        ] {
            r.release_reason = reason;
            r.final_status = status;
            assert_eq!(r.release_cause(), cause, "{reason:?} {status}");
            assert_ne!(q850_text(cause), "unspecified");
        }
    }
}
