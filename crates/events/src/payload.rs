//! The JSON of events, and of the bindings and CDRs they carry (the API
//! renders bindings and CDRs with the same types, so a webhook and a `GET`
//! show one shape). Documented in the README; a stable contract.

use maskline_core::sms::Message;
use maskline_core::{
    Binding, BindingStatus, CallRecord, Direction, EventId, EventType, UnixMillis, UnixTime,
};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

/// What is POSTed to a webhook and listed by `GET /v1/events`.
#[derive(Serialize, ToSchema)]
pub struct Envelope<'a, T> {
    pub id: String,
    /// `binding.created`, `call.ended`, ...
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// RFC 3339 with milliseconds, UTC.
    pub created_at: String,
    pub data: &'a T,
}

/// Renders an event document: the bytes stored, signed and delivered.
pub fn render<T: Serialize>(
    id: EventId,
    kind: EventType,
    created_at: UnixMillis,
    data: &T,
) -> String {
    let envelope = Envelope {
        id: id.to_string(),
        kind: kind.as_str(),
        created_at: rfc3339_millis(created_at),
        data,
    };
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_string(&envelope).unwrap_or_default()
}

/// A `binding.*` event. `changed` lists the fields a `binding.updated`
/// changed (ignored for the other types).
pub fn binding_event(
    id: EventId,
    kind: EventType,
    created_at: UnixMillis,
    binding: &Binding,
    status: BindingStatus,
    changed: Vec<&'static str>,
) -> String {
    let view = BindingView::new(binding, status);
    if kind == EventType::BindingUpdated {
        render(
            id,
            kind,
            created_at,
            &BindingUpdatedView {
                binding: view,
                changed,
            },
        )
    } else {
        render(id, kind, created_at, &view)
    }
}

/// A `call.*` event: the call so far, or for `call.ended` and
/// `call.refused` its CDR.
pub fn call_event(
    id: EventId,
    kind: EventType,
    created_at: UnixMillis,
    call: &CallRecord,
) -> String {
    match kind {
        EventType::CallEnded | EventType::CallRefused => {
            render(id, kind, created_at, &CallView::new(call))
        }
        _ => render(id, kind, created_at, &CallProgressView::new(call)),
    }
}

/// `call.recorded`: the CDR with its recording.
pub fn recorded_event(
    id: EventId,
    created_at: UnixMillis,
    call: &CallRecord,
    duration_ms: u64,
) -> String {
    let mut view = CallView::new(call);
    view.recording = Some(RecordingView::new(&view.id, duration_ms));
    render(id, EventType::CallRecorded, created_at, &view)
}

/// An `sms.*` event: the text as the API lists it.
pub fn message_event(
    id: EventId,
    kind: EventType,
    created_at: UnixMillis,
    message: &Message,
) -> String {
    render(id, kind, created_at, &MessageView::new(message))
}

// === texts ===

/// A text to X and what became of it (`GET /v1/messages`, `sms.*` events).
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub binding_id: Option<String>,
    /// The virtual number texted.
    pub x: String,
    /// `a_to_b`, `b_to_a` or `n_to_a`, when a binding routed it.
    pub direction: Option<&'static str>,
    /// The sender.
    pub from: String,
    /// The party it was relayed to (null unless relayed).
    pub to: Option<String>,
    pub text: String,
    /// The parcel pick-up code found in the text.
    pub pickup_code: Option<String>,
    /// `relayed`, `held`, `blocked`, `delivered` or `failed`.
    pub status: &'static str,
    /// Why it was held, blocked or failed: `marketing`, `tenant_rule`,
    /// `sms_disabled`, `direction_forbidden`, `expired`, `no_binding`, `no_b`,
    /// `extension_unknown`, `undeliverable` or `submit_failed`.
    pub reason: Option<&'static str>,
    /// Parts it was sent in (0 unless relayed).
    pub parts: u8,
    pub created_at: String,
    pub updated_at: String,
}

impl MessageView {
    pub fn new(m: &Message) -> MessageView {
        MessageView {
            id: m.id.to_string(),
            binding_id: m.binding.map(|b| b.to_string()),
            x: m.x.to_string(),
            direction: m.direction.map(Direction::as_str),
            from: m.from.to_string(),
            to: m.to.map(|n| n.to_string()),
            text: m.text.clone(),
            pickup_code: m.pickup_code.clone(),
            status: m.status.as_str(),
            reason: m.reason.map(|r| r.as_str()),
            parts: m.parts,
            created_at: rfc3339_millis(m.created_at),
            updated_at: rfc3339_millis(m.updated_at),
        }
    }
}

// === bindings ===

#[derive(Serialize, ToSchema)]
pub struct ControlsView {
    pub a_to_b: bool,
    pub b_to_a: bool,
    pub max_call_seconds: Option<u32>,
    pub record: bool,
    pub sms: bool,
    pub prompts: PromptsView,
    /// Both parties hear `last_minute` this long before `max_call_seconds`.
    pub warn_before_end_seconds: Option<u32>,
}

/// Prompts a binding's calls play.
#[derive(Serialize, ToSchema)]
pub struct PromptsView {
    /// The caller hears `pre_connect` while the callee is called.
    pub pre_connect: bool,
    /// The callee hears `callee_whisper` as it answers.
    pub callee_whisper: bool,
}

#[derive(Serialize, ToSchema)]
pub struct BindingView {
    pub id: String,
    pub mode: &'static str,
    /// The virtual number.
    pub x: String,
    /// `axe` only.
    pub extension: Option<String>,
    pub a: String,
    pub b: Option<String>,
    /// `active`, `cooling` (ended; slots reserved, callers hear "expired") or `ended`.
    pub status: &'static str,
    /// Area of X.
    pub area: Option<String>,
    pub external_ref: Option<String>,
    pub controls: ControlsView,
    pub expires_at: String,
    pub created_at: String,
    pub updated_at: String,
    pub ended_at: Option<String>,
    /// `unbound` or `expired`.
    pub end_reason: Option<&'static str>,
}

impl BindingView {
    pub fn new(b: &Binding, status: BindingStatus) -> BindingView {
        BindingView {
            id: b.id.to_string(),
            mode: b.mode.as_str(),
            x: b.x.to_string(),
            extension: b.extension.map(|e| e.to_string()),
            a: b.a.to_string(),
            b: b.b.map(|n| n.to_string()),
            status: status.as_str(),
            area: b.area.as_ref().map(|a| a.to_string()),
            external_ref: b.external_ref.clone(),
            controls: ControlsView {
                a_to_b: b.controls.a_to_b,
                b_to_a: b.controls.b_to_a,
                max_call_seconds: b.controls.max_call_seconds,
                record: b.controls.record,
                sms: b.controls.sms,
                prompts: PromptsView {
                    pre_connect: b.controls.pre_connect,
                    callee_whisper: b.controls.callee_whisper,
                },
                warn_before_end_seconds: b.controls.warn_before_end_seconds,
            },
            expires_at: rfc3339(b.expires_at),
            created_at: rfc3339(b.created_at),
            updated_at: rfc3339(b.updated_at),
            ended_at: b.ended_at.map(rfc3339),
            end_reason: b.end_reason.map(|r| r.as_str()),
        }
    }
}

// === calls ===

/// A call detail record: one per inbound call attempt, whatever its outcome.
#[derive(Serialize, ToSchema)]
pub struct CallView {
    pub id: String,
    /// `null` when no binding matched.
    pub binding_id: Option<String>,
    /// `a_to_b`, `b_to_a` or `n_to_a`; set when the call was connected.
    pub direction: Option<&'static str>,
    /// The virtual number dialled.
    pub x: Option<String>,
    pub caller: Option<String>,
    /// The party Maskline called, when it placed an outbound leg.
    pub callee: Option<String>,
    /// RFC 3339 with milliseconds, UTC.
    pub invited_at: String,
    pub ringing_at: Option<String>,
    pub answered_at: Option<String>,
    pub ended_at: String,
    /// Talk time in whole seconds, rounded up (0 when never answered).
    pub duration_seconds: i64,
    pub duration_ms: i64,
    /// The final SIP status sent to the caller (200 for an answered call).
    pub final_status: u16,
    /// `caller`, `callee` or `system`.
    pub released_by: &'static str,
    /// `normal`, `cancelled`, `busy`, `declined`, `no_answer`, `not_found`,
    /// `failed`, `gateway_timeout`, `max_duration`, `peer_timeout`,
    /// `media_timeout`, `refused`, `shutdown` or `node_restart` (the node
    /// carrying the call stopped; the CDR ends at its last sign of life). Requests from untrusted sources are refused
    /// with 403 before any call exists, and leave no CDR.
    pub release_reason: &'static str,
    /// The ITU-T Q.850 cause of the release (16 normal clearing, 17 busy,
    /// 19 no answer, 21 call rejected, 22 number changed, 102 recovery on
    /// timer expiry, ...), as carriers' CDRs carry it.
    pub release_cause: u8,
    /// Set when `release_reason` is `refused`: `direction_forbidden`,
    /// `no_binding`, `expired`, `no_b`, `extension_required`,
    /// `invalid_number`, `no_gateway`, `intercepted`,
    /// `destination_not_allowed` or `call_limit`.
    pub refusal: Option<&'static str>,
    /// The call's recording, when it has one (`null` in `call.ended`: the
    /// recording is finished just after; `call.recorded` follows).
    pub recording: Option<RecordingView>,
}

/// A call's recording: `GET` its `url` for the two-channel WAV.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct RecordingView {
    /// `/v1/calls/{id}/recording`.
    pub url: String,
    pub duration_ms: u64,
}

impl RecordingView {
    pub fn new(call: &str, duration_ms: u64) -> RecordingView {
        RecordingView {
            url: format!("/v1/calls/{call}/recording"),
            duration_ms,
        }
    }
}

impl CallView {
    pub fn new(c: &CallRecord) -> CallView {
        CallView {
            id: c.id.to_string(),
            binding_id: c.binding.map(|b| b.to_string()),
            direction: c.direction.map(Direction::as_str),
            x: c.x.map(|n| n.to_string()),
            // An erased party shows as its mask.
            caller: c
                .caller
                .map(|n| n.to_string())
                .or_else(|| c.erased.caller.clone()),
            callee: c
                .callee
                .map(|n| n.to_string())
                .or_else(|| c.erased.callee.clone()),
            invited_at: rfc3339_millis(c.invited_at),
            ringing_at: c.ringing_at.map(rfc3339_millis),
            answered_at: c.answered_at.map(rfc3339_millis),
            ended_at: rfc3339_millis(c.ended_at),
            duration_seconds: c.duration_seconds(),
            duration_ms: c.duration_ms(),
            final_status: c.final_status,
            released_by: c.released_by.as_str(),
            release_reason: c.release_reason.as_str(),
            release_cause: c.release_cause(),
            refusal: c.refusal.map(|r| r.as_str()),
            recording: None,
        }
    }
}

/// `data` of `call.started`, `call.ringing` and `call.answered`: the call so
/// far. `call.ended` and `call.refused` carry the whole CDR ([`CallView`]).
#[derive(Serialize, ToSchema)]
pub struct CallProgressView {
    /// The call's id: its CDR will have the same.
    pub id: String,
    pub binding_id: Option<String>,
    pub direction: Option<&'static str>,
    pub x: Option<String>,
    pub caller: Option<String>,
    pub callee: Option<String>,
    pub invited_at: String,
    pub ringing_at: Option<String>,
    pub answered_at: Option<String>,
}

impl CallProgressView {
    pub fn new(c: &CallRecord) -> CallProgressView {
        CallProgressView {
            id: c.id.to_string(),
            binding_id: c.binding.map(|b| b.to_string()),
            direction: c.direction.map(Direction::as_str),
            x: c.x.map(|n| n.to_string()),
            caller: c.caller.map(|n| n.to_string()),
            callee: c.callee.map(|n| n.to_string()),
            invited_at: rfc3339_millis(c.invited_at),
            ringing_at: c.ringing_at.map(rfc3339_millis),
            answered_at: c.answered_at.map(rfc3339_millis),
        }
    }
}

/// `data` of `binding.updated`: the binding after the change, and which of
/// its fields changed.
#[derive(Serialize, ToSchema)]
pub struct BindingUpdatedView {
    #[serde(flatten)]
    pub binding: BindingView,
    /// Any of `b`, `expires_at`, `controls`.
    pub changed: Vec<&'static str>,
}

// === times ===

pub fn rfc3339(t: UnixTime) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// `2026-01-31T12:00:00.123Z`: CDR times need the milliseconds.
pub fn rfc3339_millis(t: UnixMillis) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
        .ok()
        .and_then(|d| d.format(FORMAT).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use maskline_core::{BindingId, CallId, Number, Refusal, ReleaseReason, ReleasedBy, TenantId};

    use super::*;

    fn answered() -> CallRecord {
        CallRecord {
            id: CallId(0x0190_0000_0000_7000_8000_0000_0000_0001),
            tenant: Some(TenantId(1)),
            binding: Some(BindingId(2)),
            direction: Some(Direction::BToA),
            x: Some(Number::from_e164("+8657100000001").unwrap()),
            caller: Some(Number::from_e164("+8613800000002").unwrap()),
            callee: Some(Number::from_e164("+8613800000001").unwrap()),
            invited_at: 1_769_860_800_005,
            ringing_at: Some(1_769_860_800_250),
            answered_at: Some(1_769_860_803_000),
            ended_at: 1_769_860_864_001,
            final_status: 200,
            released_by: ReleasedBy::Caller,
            release_reason: ReleaseReason::Normal,
            refusal: None,
            erased: Default::default(),
        }
    }

    #[test]
    fn call_view_renders_every_field() {
        let v = serde_json::to_value(CallView::new(&answered())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "01900000-0000-7000-8000-000000000001",
                "binding_id": BindingId(2).to_string(),
                "direction": "b_to_a",
                "x": "+8657100000001",
                "caller": "+8613800000002",
                "callee": "+8613800000001",
                "invited_at": "2026-01-31T12:00:00.005Z",
                "ringing_at": "2026-01-31T12:00:00.250Z",
                "answered_at": "2026-01-31T12:00:03.000Z",
                "ended_at": "2026-01-31T12:01:04.001Z",
                "duration_seconds": 62,
                "duration_ms": 61_001,
                "final_status": 200,
                "released_by": "caller",
                "release_reason": "normal",
                "release_cause": 16,
                "refusal": null,
                "recording": null,
            })
        );
    }

    #[test]
    fn refused_call_view_has_nulls_not_missing_fields() {
        let c = CallRecord {
            binding: None,
            direction: None,
            x: None,
            caller: None,
            callee: None,
            ringing_at: None,
            answered_at: None,
            final_status: 404,
            released_by: ReleasedBy::System,
            release_reason: ReleaseReason::Refused,
            refusal: Some(Refusal::NoBinding),
            ..answered()
        };
        let v = serde_json::to_value(CallView::new(&c)).unwrap();
        for field in [
            "binding_id",
            "direction",
            "x",
            "caller",
            "callee",
            "ringing_at",
            "answered_at",
        ] {
            assert_eq!(v[field], serde_json::Value::Null, "{field}");
            assert!(v.as_object().unwrap().contains_key(field), "{field}");
        }
        assert_eq!(
            (v["duration_seconds"].as_i64(), v["duration_ms"].as_i64()),
            (Some(0), Some(0))
        );
        assert_eq!(v["refusal"], "no_binding");
        assert_eq!(v["release_reason"], "refused");
    }

    #[test]
    fn envelope_has_id_type_time_and_data() {
        let c = answered();
        let body = render(
            EventId(7),
            EventType::CallAnswered,
            1_769_860_803_000,
            &CallProgressView::new(&c),
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["id"], EventId(7).to_string());
        assert_eq!(v["type"], "call.answered");
        assert_eq!(v["created_at"], "2026-01-31T12:00:03.000Z");
        assert_eq!(v["data"]["id"], c.id.to_string());
        assert_eq!(v["data"]["answered_at"], "2026-01-31T12:00:03.000Z");
        assert_eq!(v.as_object().unwrap().len(), 4);
    }
}
