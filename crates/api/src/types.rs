//! Request and response bodies: the JSON contract. Domain types stay free of
//! serde; these types convert at the edge.

use maskline_core::{Binding, BindingStatus, Controls, UnixTime};
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
