//! Request and response bodies: the JSON contract. Domain types stay free of
//! serde; these types convert at the edge.

use maskline_core::{
    Binding, BindingStatus, CallRecord, Controls, Direction, UnixMillis, UnixTime,
};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::problem::Problem;

/// Lists: one page of items and the cursor of the next page.
#[derive(Serialize, ToSchema)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    /// Pass as `cursor=` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

// === tenants ===

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// 1 to 200 characters.
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TenantCreated {
    pub id: String,
    pub name: String,
    /// Shown once: only its hash is stored.
    pub api_key: String,
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

// === numbers ===

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportNumbersRequest {
    /// 1 to 10,000 entries; all are imported or none.
    pub numbers: Vec<ImportNumberEntry>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportNumberEntry {
    /// E.164 or national form.
    pub number: String,
    /// Derived from the number when possible (Chinese fixed lines).
    #[serde(default)]
    pub area: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportNumbersResponse {
    pub imported: usize,
    /// Already in this pool; unchanged.
    pub existing: usize,
}

#[derive(Serialize, ToSchema)]
pub struct NumberView {
    pub number: String,
    pub area: Option<String>,
    /// `idle` (serves no binding) or `in_use`.
    pub status: &'static str,
    /// The mode it serves while in use.
    pub mode: Option<&'static str>,
    /// Bindings holding it (active or cooling).
    pub bindings: u32,
    pub created_at: String,
}

// === bindings ===

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum ModeDto {
    Axb,
    Axn,
    Axe,
}

#[derive(Deserialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum AreaMatchDto {
    /// Only the requested area (`409 pool_exhausted` otherwise).
    Strict,
    /// The requested area first, then any (default).
    #[default]
    Fallback,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBindingRequest {
    pub mode: ModeDto,
    pub a: String,
    /// Required for `axb`; optional for `axn` and `axe`.
    #[serde(default)]
    pub b: Option<String>,
    /// Seconds from now. At most one of `expires_in` and `expires_at`.
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// RFC 3339.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Preferred area of X.
    #[serde(default)]
    pub area: Option<String>,
    #[serde(default)]
    pub area_match: Option<AreaMatchDto>,
    /// The platform's own reference (order id), up to 128 characters.
    #[serde(default)]
    pub external_ref: Option<String>,
    #[serde(default)]
    pub controls: Option<ControlsInput>,
}

/// Call rules. In `axn`/`axe`, `a_to_b` governs A's calls to B and `b_to_a`
/// every call that reaches A.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ControlsInput {
    #[serde(default)]
    pub a_to_b: Option<bool>,
    #[serde(default)]
    pub b_to_a: Option<bool>,
    /// `null` = no limit.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub max_call_seconds: Option<Option<u32>>,
    #[serde(default)]
    pub record: Option<bool>,
    #[serde(default)]
    pub sms: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBindingRequest {
    /// New B; `null` removes it (`axn`, `axe`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub b: Option<Option<String>>,
    /// RFC 3339, in the future.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Only the fields given change.
    #[serde(default)]
    pub controls: Option<ControlsInput>,
}

#[derive(Serialize, ToSchema)]
pub struct ControlsView {
    pub a_to_b: bool,
    pub b_to_a: bool,
    pub max_call_seconds: Option<u32>,
    pub record: bool,
    pub sms: bool,
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

// === routing ===

#[derive(Deserialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChannelDto {
    #[default]
    Voice,
    Sms,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    pub caller: String,
    /// The virtual number dialled.
    pub called: String,
    /// Digits collected after X (`axe`).
    #[serde(default)]
    pub extension: Option<String>,
    #[serde(default)]
    pub channel: ChannelDto,
}

/// One of four actions; the other fields depend on it.
#[derive(Serialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RouteResponse {
    Connect {
        /// The real number to call.
        to: String,
        /// What the called party must see: X.
        caller_id: String,
        binding_id: String,
        mode: &'static str,
        direction: &'static str,
        max_call_seconds: Option<u32>,
        record: bool,
    },
    CollectExtension {
        /// Digits to collect.
        extension_length: u8,
    },
    Announce {
        /// `expired`, `no_binding` or `no_b`.
        prompt: &'static str,
        binding_id: Option<String>,
    },
    Reject {
        /// `direction_forbidden` or `sms_disabled`.
        reason: &'static str,
        sip_code: u16,
        binding_id: String,
    },
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
    /// `refused` or `shutdown`. Requests from untrusted sources are refused
    /// with 403 before any call exists, and leave no CDR.
    pub release_reason: &'static str,
    /// Set when `release_reason` is `refused`: `direction_forbidden`,
    /// `no_binding`, `expired`, `no_b`, `extension_required`,
    /// `invalid_number` or `no_gateway`.
    pub refusal: Option<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

// === conversions ===

/// Distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`).
fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

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

/// An RFC 3339 query parameter, in Unix milliseconds (fractions below a
/// millisecond are dropped).
pub fn parse_rfc3339_millis(s: &str, param: &str) -> Result<UnixMillis, Problem> {
    // An unencoded `+` in a query string arrives as a space; RFC 3339 has
    // no spaces, so read it back as the offset sign the client meant.
    let parsed = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|e| OffsetDateTime::parse(&s.replace(' ', "+"), &Rfc3339).map_err(|_| e));
    parsed
        .ok()
        .and_then(|d| i64::try_from(d.unix_timestamp_nanos().div_euclid(1_000_000)).ok())
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_parameter",
                param,
                format!(
                    "`{param}` must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z or 2026-01-31T20:00:00.250%2B08:00"
                ),
            )
        })
}

pub fn parse_rfc3339(s: &str, field: &str) -> Result<UnixTime, Problem> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|d| d.unix_timestamp())
        .map_err(|_| {
            Problem::bad_request(
                "invalid_field",
                field,
                format!("`{field}` must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z"),
            )
        })
}

impl ControlsInput {
    pub fn apply(&self, base: Controls) -> Controls {
        Controls {
            a_to_b: self.a_to_b.unwrap_or(base.a_to_b),
            b_to_a: self.b_to_a.unwrap_or(base.b_to_a),
            max_call_seconds: self.max_call_seconds.unwrap_or(base.max_call_seconds),
            record: self.record.unwrap_or(base.record),
            sms: self.sms.unwrap_or(base.sms),
        }
    }
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
            },
            expires_at: rfc3339(b.expires_at),
            created_at: rfc3339(b.created_at),
            updated_at: rfc3339(b.updated_at),
            ended_at: b.ended_at.map(rfc3339),
            end_reason: b.end_reason.map(|r| r.as_str()),
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
            caller: c.caller.map(|n| n.to_string()),
            callee: c.callee.map(|n| n.to_string()),
            invited_at: rfc3339_millis(c.invited_at),
            ringing_at: c.ringing_at.map(rfc3339_millis),
            answered_at: c.answered_at.map(rfc3339_millis),
            ended_at: rfc3339_millis(c.ended_at),
            duration_seconds: c.duration_seconds(),
            duration_ms: c.duration_ms(),
            final_status: c.final_status,
            released_by: c.released_by.as_str(),
            release_reason: c.release_reason.as_str(),
            refusal: c.refusal.map(|r| r.as_str()),
        }
    }
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
                "refusal": null,
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
    fn query_times_parse_to_millis() {
        for (s, ms) in [
            ("2026-01-31T12:00:00Z", 1_769_860_800_000),
            ("2026-01-31T12:00:00.25Z", 1_769_860_800_250),
            ("2026-01-31T20:00:00.250+08:00", 1_769_860_800_250),
            // `+` sent unencoded arrives as a space.
            ("2026-01-31T20:00:00 08:00", 1_769_860_800_000),
            ("2026-01-31T12:00:00.0009Z", 1_769_860_800_000),
            ("1969-12-31T23:59:59.9995Z", -1),
        ] {
            assert_eq!(parse_rfc3339_millis(s, "since").unwrap(), ms, "{s}");
        }
        for bad in [
            "",
            "yesterday",
            "2026-01-31",
            "1769860800",
            "2026-01-31T12:00:00",
        ] {
            let p = parse_rfc3339_millis(bad, "until").unwrap_err();
            assert_eq!(
                (p.code, p.field.as_deref()),
                ("invalid_parameter", Some("until")),
                "{bad}"
            );
        }
    }

    #[test]
    fn millis_render_round_trips() {
        for ms in [0, 1, 999, 1_769_860_800_250, -1] {
            assert_eq!(parse_rfc3339_millis(&rfc3339_millis(ms), "t").unwrap(), ms);
        }
    }
}
