//! Request and response bodies: the JSON contract. Domain types stay free of
//! serde; these types convert at the edge.

use maskline_core::{Controls, UnixMillis, UnixTime};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::problem::Problem;

pub use maskline_events::payload::{
    BindingView, CallView, ControlsView, MessageView, rfc3339, rfc3339_millis,
};

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
    /// The tenant's own API rate (requests a second, `0` for none); `null`:
    /// the server's (`MASKLINE_RATE_LIMIT`).
    pub rate_limit: Option<u32>,
}

/// What the admin changes of a tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenantRequest {
    /// Requests a second for this tenant's API calls (bursts of twice
    /// that), `0` for no limit, `null` for the server's default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub rate_limit: Option<Option<u32>>,
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
    #[serde(default)]
    pub prompts: Option<PromptsInput>,
    /// Seconds before `max_call_seconds` at which both parties hear
    /// `last_minute` (1 to 3600); `null` = no warning.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub warn_before_end_seconds: Option<Option<u32>>,
}

/// Prompts a binding's calls play (only the fields given change).
#[derive(Deserialize, ToSchema, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct PromptsInput {
    #[serde(default)]
    pub pre_connect: Option<bool>,
    #[serde(default)]
    pub callee_whisper: Option<bool>,
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

// === routing ===

#[derive(Deserialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChannelDto {
    #[default]
    Voice,
    Sms,
}

/// Whom a held text is for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The extension of an active binding on the text's X.
    pub extension: String,
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

// === webhooks and events ===

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// `http` or `https`; redirects are not followed.
    pub url: String,
    /// Types to deliver: exact (`call.ended`), a family (`call.*`) or `*`.
    /// Absent or empty: every type.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Asked before each call's outbound leg is placed.
    #[serde(default)]
    pub intercept: Option<InterceptInput>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterceptInput {
    pub url: String,
    /// Applied when the callback times out or fails: `allow` (default) or
    /// `deny`.
    #[serde(default)]
    pub fallback: Option<FallbackDto>,
    /// 50 to 10,000; default 800.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum FallbackDto {
    Allow,
    Deny,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub url: String,
    /// Empty: every type.
    pub events: Vec<String>,
    pub intercept: Option<InterceptView>,
    /// Only in the answers to `PUT /v1/webhook` and `rotate-secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct InterceptView {
    pub url: String,
    pub fallback: FallbackDto,
    pub timeout_ms: u32,
}

/// An event as delivered (`id`, `type`, `created_at`, `data`) plus where its
/// delivery stands.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub created_at: String,
    /// The binding (`binding.*`), the call so far (`call.started`,
    /// `.ringing`, `.answered`) or the CDR (`call.ended`, `.refused`).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub delivery: DeliveryView,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    /// `none` (no webhook wanted it), `pending`, `delivered` or `failed`.
    pub state: &'static str,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    /// The receiver's status in the last attempt.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

// === texts ===

/// A text an HTTP SMS gateway received for X.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundSmsRequest {
    /// The sender: a phone number, or a short code or name (`10690000123`,
    /// `FedEx`).
    pub from: String,
    /// The virtual number texted.
    pub to: String,
    pub text: String,
    /// Which gateway (1 to 64 letters, digits, `.`, `_`, `-`), kept with the
    /// text.
    #[serde(default)]
    pub gateway_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct InboundSmsResponse {
    pub message_id: String,
    /// `relayed`, `held` or `blocked`.
    pub status: &'static str,
    /// Why it was held or blocked.
    pub reason: Option<&'static str>,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
pub enum MarketingFilterDto {
    Off,
    #[default]
    Standard,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RuleActionDto {
    Block,
    Allow,
}

/// A tenant's rule: the first whose `match` (a regular expression, matched
/// case-insensitively) finds the text decides it.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDto {
    #[serde(rename = "match")]
    pub pattern: String,
    pub action: RuleActionDto,
}

/// `PUT /v1/settings/sms` replaces them all.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsSettingsRequest {
    /// Put before every relayed text (at most 32 characters).
    #[serde(default)]
    pub prefix: Option<String>,
    /// `standard` blocks bulk marketing to axn/axe numbers; `off` leaves it
    /// to the rules.
    #[serde(default)]
    pub marketing_filter: MarketingFilterDto,
    /// At most 100, tried in order before the standard filter.
    #[serde(default)]
    pub rules: Vec<RuleDto>,
}

#[derive(Serialize, ToSchema)]
pub struct SmsSettingsView {
    pub prefix: Option<String>,
    pub marketing_filter: MarketingFilterDto,
    pub rules: Vec<RuleDto>,
}

/// A tenant's call rules against toll fraud. `PUT /v1/settings/calls`
/// replaces them; until then a tenant's parties must be in the default
/// region's country, and premium-rate and satellite ranges are denied.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallRulesRequest {
    /// E.164 prefixes (`+` and digits) a party's number must start with:
    /// `["+86"]`. Empty: no party is allowed.
    pub allow_prefixes: Vec<String>,
    /// Prefixes no party's number may start with, even when allowed:
    /// `["+86170", "+881"]`.
    #[serde(default)]
    pub deny_prefixes: Vec<String>,
    /// Most calls of the tenant in progress at once, over every node;
    /// beyond it calls get `503`. Absent or `null`: no cap.
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
    /// Most calls of the tenant started in any one second, over every node;
    /// beyond it calls get `503`. Absent or `null`: no cap.
    #[serde(default)]
    pub max_calls_per_second: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct CallRulesView {
    pub allow_prefixes: Vec<String>,
    pub deny_prefixes: Vec<String>,
    pub max_concurrent_calls: Option<u32>,
    pub max_calls_per_second: Option<u32>,
    /// The tenant's calls through the trunk in progress now: this node's,
    /// and while any tenant has caps, the other nodes' as they last reported
    /// them (within 250 ms).
    pub calls_in_progress: u32,
    /// The tenant's calls started in the last second, likewise.
    pub calls_last_second: u32,
}

/// One of a party's live bindings: the numbers it can be reached on, and
/// the last four digits users look a pick-up code up by.
#[derive(Serialize, ToSchema)]
pub struct PartyBindingView {
    pub id: String,
    pub mode: &'static str,
    pub x: String,
    pub x_last4: String,
    pub extension: Option<String>,
    /// `a` or `b`: the party's place in the binding.
    pub role: &'static str,
    pub external_ref: Option<String>,
    pub expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the database is unreachable: the node still
    /// routes calls from memory, but changes cannot be made durable.
    pub status: &'static str,
    /// Why the node is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
            pre_connect: self
                .prompts
                .and_then(|p| p.pre_connect)
                .unwrap_or(base.pre_connect),
            callee_whisper: self
                .prompts
                .and_then(|p| p.callee_whisper)
                .unwrap_or(base.callee_whisper),
            warn_before_end_seconds: self
                .warn_before_end_seconds
                .unwrap_or(base.warn_before_end_seconds),
        }
    }
}

impl WebhookView {
    pub fn new(w: &maskline_engine::store::Webhook, with_secret: bool) -> WebhookView {
        WebhookView {
            url: w.url.clone(),
            events: w.events.iter().map(|p| p.as_str().to_owned()).collect(),
            intercept: w.intercept.as_ref().map(|i| InterceptView {
                url: i.url.clone(),
                fallback: match i.fallback {
                    maskline_engine::store::Fallback::Allow => FallbackDto::Allow,
                    maskline_engine::store::Fallback::Deny => FallbackDto::Deny,
                },
                timeout_ms: i.timeout_ms,
            }),
            secret: with_secret.then(|| w.secret.clone()),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

impl EventView {
    pub fn new(e: &maskline_engine::store::StoredEvent) -> EventView {
        // The stored document is what was (or will be) delivered; its
        // `data` is shown as is.
        let data = serde_json::from_str::<serde_json::Value>(&e.body)
            .ok()
            .and_then(|mut v| v.get_mut("data").map(serde_json::Value::take))
            .unwrap_or(serde_json::Value::Null);
        EventView {
            id: e.id.to_string(),
            kind: e.kind.as_str(),
            created_at: rfc3339_millis(e.created_at),
            data,
            delivery: DeliveryView {
                state: e.state.as_str(),
                attempts: e.attempts,
                next_attempt_at: e.next_attempt_at.map(rfc3339_millis),
                last_status: e.last_status,
                last_error: e.last_error.clone(),
                delivered_at: e.delivered_at.map(rfc3339_millis),
            },
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

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
