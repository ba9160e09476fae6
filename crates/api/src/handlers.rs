//! One function per endpoint; each parses, calls the engine, renders.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use maskline_callbacks::Refused;
use maskline_core::sms::{
    Filter, FilterMode, MAX_PREFIX_CHARS, Rule, RuleAction, Sender, SenderId,
};
use maskline_core::{
    AreaMatch, BindingId, BindingStatus, CallId, Channel, Controls, Decision, EventId,
    EventPattern, EventType, Extension, Inbound, Mode, Number,
};
use maskline_core::{MessageId, MessageStatus};
use maskline_engine::store::{BindingFilter, CallFilter, Fallback, Intercept, MessageFilter, Page};
use maskline_engine::{
    BindingPatch, BindingSpec, ControlsPatch, Created, DEFAULT_INTERCEPT_TIMEOUT_MS, Expiry,
    INTERCEPT_TIMEOUT_MS, IdempotencyKey, IncomingText, MAX_EVENT_PATTERNS, MAX_RATE_LIMIT,
    MAX_TENANT_NAME_CHARS, NumberEntry, WebhookSpec,
};
use serde::Deserialize;

use crate::AppState;
use crate::extract::{
    AdminAuth, JsonBody, MetricsAuth, PathParam, QueryParams, SwitchAuth, TenantAuth,
};
use crate::problem::{Problem, ProblemBody};
use crate::types::*;

/// Largest number import accepted in one request.
pub const MAX_IMPORT: usize = 10_000;
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
const MAX_EXTERNAL_REF: usize = 128;

type ApiResult<T> = Result<T, Problem>;

// === paging ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub(crate) cursor: Option<String>,
    pub(crate) limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingListParams {
    cursor: Option<String>,
    limit: Option<u32>,
    external_ref: Option<String>,
    party: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageListParams {
    cursor: Option<String>,
    limit: Option<u32>,
    binding_id: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingMessageListParams {
    cursor: Option<String>,
    limit: Option<u32>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallListParams {
    cursor: Option<String>,
    limit: Option<u32>,
    binding_id: Option<String>,
    party: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

pub(crate) fn limit(limit: Option<u32>) -> ApiResult<u32> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        l @ 1..=MAX_LIMIT => Ok(l),
        _ => Err(Problem::bad_request(
            "invalid_parameter",
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

pub(crate) fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

pub(crate) fn decode_cursor<T>(
    cursor: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
) -> ApiResult<Option<T>> {
    let Some(c) = cursor else { return Ok(None) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| parse(&s))
        .map(Some)
        .ok_or_else(|| Problem::bad_request("invalid_parameter", "cursor", "unknown cursor"))
}

/// Cuts the extra item fetched to detect a next page; the cursor is the
/// last item's `key`, encoded.
pub(crate) fn page_of<T, V>(
    rows: Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> String,
    view: impl Fn(&T) -> V,
) -> ListPage<V> {
    page_with(rows, limit, |r| encode_cursor(&key(r)), view)
}

/// One page of a list the engine gives whole because it is short (tenants,
/// a tenant's keys, console users), in id order: ids are UUIDv7, so that is
/// oldest first, and the cursor is the last id seen, which stays valid when
/// an item is removed between pages.
pub(crate) fn page_whole<T, V>(
    mut rows: Vec<T>,
    params: &ListParams,
    id: impl Fn(&T) -> u128,
    view: impl Fn(&T) -> V,
) -> ApiResult<ListPage<V>> {
    let limit = limit(params.limit)?;
    let after = decode_cursor(params.cursor.as_deref(), |s| {
        uuid::Uuid::try_parse(s).ok().map(|u| u.as_u128())
    })?;
    rows.sort_by_key(|r| id(r));
    if let Some(after) = after {
        rows.retain(|r| id(r) > after);
    }
    rows.truncate(limit as usize + 1);
    Ok(page_of(
        rows,
        limit,
        |r| uuid::Uuid::from_u128(id(r)).to_string(),
        view,
    ))
}

/// [`page_of`] with the cursor as `cursor` writes it.
pub(crate) fn page_with<T, V>(
    mut rows: Vec<T>,
    limit: u32,
    cursor: impl Fn(&T) -> String,
    view: impl Fn(&T) -> V,
) -> ListPage<V> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    ListPage {
        next_cursor: if more { rows.last().map(cursor) } else { None },
        items: rows.iter().map(view).collect(),
    }
}

pub(crate) fn number(state: &AppState, s: &str, field: &str) -> ApiResult<Number> {
    Number::parse(s, state.region).map_err(|_| Problem::invalid_number(field))
}

// === tenants ===

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants",
    request_body = CreateTenantRequest,
    responses(
        (status = 201, description = "Created; the API key is shown only here", body = TenantCreated),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("admin_key" = [])))]
pub async fn create_tenant(
    State(state): State<AppState>,
    _: AdminAuth,
    body: JsonBody<CreateTenantRequest>,
) -> ApiResult<(StatusCode, Json<TenantCreated>)> {
    let name = body.value.name.trim();
    if name.is_empty() || name.chars().count() > MAX_TENANT_NAME_CHARS {
        return Err(Problem::bad_request(
            "invalid_field",
            "name",
            format!("name must be 1 to {MAX_TENANT_NAME_CHARS} characters"),
        ));
    }
    let (tenant, api_key) = state.engine.create_tenant(name).await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            id: tenant.id.to_string(),
            name: tenant.name,
            api_key,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    params(("cursor" = Option<String>, Query,), ("limit" = Option<u32>, Query, description = "1 to 1000, default 100")),
    responses(
        (status = 200, body = ListPage<TenantView>),
        (status = 401, body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("admin_key" = [])))]
pub async fn list_tenants(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<Json<ListPage<TenantView>>> {
    let tenants = state.engine.tenants().await?;
    Ok(Json(page_whole(
        tenants,
        &q,
        |t| t.id.0,
        |t| tenant_view(&state, t),
    )?))
}

fn tenant_view(state: &AppState, t: &maskline_engine::store::Tenant) -> TenantView {
    TenantView {
        id: t.id.to_string(),
        rate_limit: state.engine.rate_limit(t.id),
        name: t.name.clone(),
        created_at: rfc3339(t.created_at),
    }
}

#[utoipa::path(patch, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path)),
    request_body = PatchTenantRequest,
    responses(
        (status = 200, description = "Applied on every node", body = TenantView),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("admin_key" = [])))]
pub async fn patch_tenant(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(raw): PathParam,
    body: JsonBody<PatchTenantRequest>,
) -> ApiResult<Json<TenantView>> {
    let id: maskline_core::TenantId = raw.parse().map_err(|_| Problem::not_found("tenant"))?;
    let tenant = state
        .engine
        .tenants()
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| Problem::not_found("tenant"))?;
    if let Some(rate_limit) = body.value.rate_limit {
        if rate_limit.is_some_and(|r| r > MAX_RATE_LIMIT) {
            return Err(Problem::bad_request(
                "invalid_field",
                "rate_limit",
                format!("rate_limit must be 0 to {MAX_RATE_LIMIT}, or null"),
            ));
        }
        state.engine.set_rate_limit(id, rate_limit).await?;
    }
    Ok(Json(tenant_view(&state, &tenant)))
}

// === numbers ===

#[utoipa::path(post, path = "/v1/numbers", tag = "numbers",
    request_body = ImportNumbersRequest,
    responses(
        (status = 201, description = "Imported (200 when every number was already in the pool)", body = ImportNumbersResponse),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "A number belongs to another pool (code `number_taken`); nothing imported", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn import_numbers(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    body: JsonBody<ImportNumbersRequest>,
) -> ApiResult<(StatusCode, Json<ImportNumbersResponse>)> {
    let entries = body.value.numbers;
    if entries.is_empty() || entries.len() > MAX_IMPORT {
        return Err(Problem::bad_request(
            "invalid_field",
            "numbers",
            format!("send 1 to {MAX_IMPORT} numbers per request"),
        ));
    }
    let mut parsed = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let n = number(&state, &e.number, &format!("numbers[{i}].number"))?;
        let area = e
            .area
            .as_deref()
            .map(maskline_core::Area::new)
            .transpose()
            .map_err(|err| {
                Problem::bad_request(
                    "invalid_field",
                    &format!("numbers[{i}].area"),
                    err.to_string(),
                )
            })?;
        parsed.push(NumberEntry { number: n, area });
    }
    let outcome = state.engine.import_numbers(tenant, parsed).await?;
    let status = if outcome.imported > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(ImportNumbersResponse {
            imported: outcome.imported,
            existing: outcome.existing,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/numbers", tag = "numbers",
    params(("cursor" = Option<String>, Query,), ("limit" = Option<u32>, Query, description = "1 to 1000, default 100")),
    responses(
        (status = 200, body = ListPage<NumberView>),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn list_numbers(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<Json<ListPage<NumberView>>> {
    let limit = limit(q.limit)?;
    let after = decode_cursor(q.cursor.as_deref(), |s| Number::from_e164(s).ok())?;
    let rows = state
        .engine
        .numbers(
            tenant,
            Page {
                after,
                limit: limit + 1,
            },
        )
        .await?;
    Ok(Json(page_of(
        rows,
        limit,
        |(n, _)| n.number.to_string(),
        |(n, usage)| NumberView {
            number: n.number.to_string(),
            area: n.area.as_ref().map(|a| a.to_string()),
            status: if usage.bindings > 0 { "in_use" } else { "idle" },
            mode: usage.mode.map(Mode::as_str),
            bindings: usage.bindings,
            created_at: rfc3339(n.created_at),
        },
    )))
}

#[utoipa::path(delete, path = "/v1/numbers/{number}", tag = "numbers",
    params(("number" = String, Path, description = "E.164")),
    responses(
        (status = 204, description = "Retired"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Still used by a binding (code `number_in_use`)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn retire_number(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
) -> ApiResult<StatusCode> {
    // A number that cannot even be parsed is simply not in the pool.
    let n = Number::parse(&raw, state.region).map_err(|_| Problem::not_found("number"))?;
    state.engine.retire_number(tenant, n).await?;
    Ok(StatusCode::NO_CONTENT)
}

// === bindings ===

fn idempotency_key(headers: &HeaderMap, raw_body: &[u8]) -> ApiResult<Option<IdempotencyKey>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_header",
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?;
    // Hash the canonical form (sorted keys, no whitespace), so that a client
    // re-serialising the same request is still recognised.
    let canonical = serde_json::from_slice::<serde_json::Value>(raw_body)
        .map(|v| v.to_string().into_bytes())
        .unwrap_or_else(|_| raw_body.to_vec());
    Ok(Some(IdempotencyKey {
        key: key.to_owned(),
        request_hash: crate::sha256(&canonical),
    }))
}

fn binding_spec(state: &AppState, req: &CreateBindingRequest) -> ApiResult<BindingSpec> {
    let mode = match req.mode {
        ModeDto::Axb => Mode::Axb,
        ModeDto::Axn => Mode::Axn,
        ModeDto::Axe => Mode::Axe,
    };
    let a = number(state, &req.a, "a")?;
    let b = req
        .b
        .as_deref()
        .map(|s| number(state, s, "b"))
        .transpose()?;
    maskline_core::validate_parties(mode, a, b)?;
    let expiry = match (req.expires_in, &req.expires_at) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad_request(
                "invalid_field",
                "expires_in",
                "give expires_in or expires_at, not both",
            ));
        }
        (Some(secs), None) if secs <= 0 => {
            return Err(Problem::bad_request(
                "invalid_field",
                "expires_in",
                "expires_in must be a positive number of seconds",
            ));
        }
        (Some(secs), None) => Expiry::In(secs),
        (None, Some(at)) => Expiry::At(parse_rfc3339(at, "expires_at")?),
        (None, None) => Expiry::Default,
    };
    let area = req
        .area
        .as_deref()
        .map(maskline_core::Area::new)
        .transpose()
        .map_err(|e| Problem::bad_request("invalid_field", "area", e.to_string()))?;
    if let Some(r) = &req.external_ref
        && (r.is_empty() || r.chars().count() > MAX_EXTERNAL_REF)
    {
        return Err(Problem::bad_request(
            "invalid_field",
            "external_ref",
            format!("external_ref must be 1 to {MAX_EXTERNAL_REF} characters"),
        ));
    }
    let controls = req
        .controls
        .as_ref()
        .map_or_else(Controls::default, |c| c.apply(Controls::default()));
    check_controls(&controls)?;
    Ok(BindingSpec {
        mode,
        a,
        b,
        expiry,
        area,
        area_match: match req.area_match.unwrap_or_default() {
            AreaMatchDto::Strict => AreaMatch::Strict,
            AreaMatchDto::Fallback => AreaMatch::Fallback,
        },
        external_ref: req.external_ref.clone(),
        controls,
    })
}

fn check_controls(c: &Controls) -> ApiResult<()> {
    if c.max_call_seconds == Some(0) {
        return Err(Problem::bad_request(
            "invalid_field",
            "controls.max_call_seconds",
            "max_call_seconds must be positive (or null for no limit)",
        ));
    }
    check_warning(c.warn_before_end_seconds)
}

fn check_warning(warn: Option<u32>) -> ApiResult<()> {
    if warn.is_some_and(|w| w == 0 || w > maskline_core::MAX_WARN_BEFORE_END_SECS) {
        return Err(Problem::bad_request(
            "invalid_field",
            "controls.warn_before_end_seconds",
            format!(
                "warn_before_end_seconds must be 1 to {} (or null for no warning)",
                maskline_core::MAX_WARN_BEFORE_END_SECS
            ),
        ));
    }
    Ok(())
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

#[utoipa::path(post, path = "/v1/bindings", tag = "bindings",
    request_body = CreateBindingRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key and body replay the first response (24 h); same key with another body is 422")),
    responses(
        (status = 201, description = "Created and durable", body = BindingView),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "`pool_exhausted`, or `idempotency_in_progress`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency_key_reused`", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn create_binding(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    headers: HeaderMap,
    body: JsonBody<CreateBindingRequest>,
) -> ApiResult<Response> {
    let idem = idempotency_key(&headers, &body.raw)?;
    let spec = binding_spec(&state, &body.value)?;
    let mode = spec.mode;
    let render = |b: &maskline_core::Binding| {
        serde_json::to_string(&BindingView::new(b, BindingStatus::Active)).unwrap_or_default()
    };
    match state
        .engine
        .create_binding(tenant, spec, idem, &render)
        .await
    {
        Ok(Created::Fresh(binding, body)) => {
            metrics::counter!("maskline_bindings_created_total", "mode" => mode.as_str())
                .increment(1);
            let mut res = json_response(StatusCode::CREATED, body);
            if let Ok(loc) = HeaderValue::from_str(&format!("/v1/bindings/{}", binding.id)) {
                res.headers_mut().insert(header::LOCATION, loc);
            }
            Ok(res)
        }
        Ok(Created::Replayed { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
            let mut res = json_response(status, body);
            res.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(res)
        }
        Err(maskline_engine::Error::Domain(maskline_core::Error::PoolExhausted)) => {
            metrics::counter!("maskline_pool_exhausted_total", "mode" => mode.as_str())
                .increment(1);
            Err(maskline_core::Error::PoolExhausted.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn binding_id(raw: &str) -> ApiResult<BindingId> {
    raw.parse().map_err(|_| Problem::not_found("binding"))
}

#[utoipa::path(get, path = "/v1/bindings/{id}", tag = "bindings",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = BindingView),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn get_binding(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
) -> ApiResult<Json<BindingView>> {
    let b = state.engine.binding(tenant, binding_id(&raw)?).await?;
    Ok(Json(BindingView::new(&b, state.engine.status_of(&b))))
}

#[utoipa::path(get, path = "/v1/bindings", tag = "bindings",
    params(
        ("external_ref" = Option<String>, Query,),
        ("party" = Option<String>, Query, description = "A or B"),
        ("status" = Option<String>, Query, description = "active, cooling or ended"),
        ("cursor" = Option<String>, Query,),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, body = ListPage<BindingView>),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn list_bindings(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    QueryParams(q): QueryParams<BindingListParams>,
) -> ApiResult<Json<ListPage<BindingView>>> {
    let limit = limit(q.limit)?;
    let after = decode_cursor(q.cursor.as_deref(), |s| s.parse::<BindingId>().ok())?;
    let party = q
        .party
        .as_deref()
        .map(|p| number(&state, p, "party"))
        .transpose()?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<BindingStatus>().map_err(|_| {
                Problem::bad_request(
                    "invalid_parameter",
                    "status",
                    "status must be active, cooling or ended",
                )
            })
        })
        .transpose()?;
    let now = maskline_engine::now();
    let filter = BindingFilter {
        external_ref: q.external_ref,
        party,
        status: status.map(|s| (s, now, state.engine.config().cooldown_secs)),
        newest_first: false,
    };
    let rows = state
        .engine
        .bindings(
            tenant,
            &filter,
            Page {
                after,
                limit: limit + 1,
            },
        )
        .await?;
    let cooldown = state.engine.config().cooldown_secs;
    Ok(Json(page_of(
        rows,
        limit,
        |b| b.id.to_string(),
        |b| BindingView::new(b, b.status(now, cooldown)),
    )))
}

#[utoipa::path(patch, path = "/v1/bindings/{id}", tag = "bindings",
    params(("id" = String, Path)),
    request_body = PatchBindingRequest,
    responses(
        (status = 200, body = BindingView),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "`binding_not_active` or `party_conflict`", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn patch_binding(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
    body: JsonBody<PatchBindingRequest>,
) -> ApiResult<Json<BindingView>> {
    let id = binding_id(&raw)?;
    let req = body.value;
    let b = match req.b {
        None => None,
        Some(None) => Some(None),
        Some(Some(s)) => Some(Some(number(&state, &s, "b")?)),
    };
    let expires_at = req
        .expires_at
        .as_deref()
        .map(|s| parse_rfc3339(s, "expires_at"))
        .transpose()?;
    let controls = req.controls.as_ref().map(|c| ControlsPatch {
        a_to_b: c.a_to_b,
        b_to_a: c.b_to_a,
        max_call_seconds: c.max_call_seconds,
        record: c.record,
        sms: c.sms,
        pre_connect: c.prompts.and_then(|p| p.pre_connect),
        callee_whisper: c.prompts.and_then(|p| p.callee_whisper),
        warn_before_end_seconds: c.warn_before_end_seconds,
    });
    if let Some(Some(warn)) = controls.and_then(|c| c.warn_before_end_seconds) {
        check_warning(Some(warn))?;
    }
    if controls.is_some_and(|c| c.max_call_seconds == Some(Some(0))) {
        return Err(Problem::bad_request(
            "invalid_field",
            "controls.max_call_seconds",
            "max_call_seconds must be positive (or null for no limit)",
        ));
    }
    let updated = state
        .engine
        .update_binding(
            tenant,
            id,
            BindingPatch {
                b,
                expires_at,
                controls,
            },
        )
        .await?;
    Ok(Json(BindingView::new(
        &updated,
        state.engine.status_of(&updated),
    )))
}

#[utoipa::path(delete, path = "/v1/bindings/{id}", tag = "bindings",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Unbound: the binding is now cooling (unchanged if it had already ended)", body = BindingView),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn delete_binding(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
) -> ApiResult<Json<BindingView>> {
    let b = state.engine.unbind(tenant, binding_id(&raw)?).await?;
    Ok(Json(BindingView::new(&b, state.engine.status_of(&b))))
}

// === calls ===

#[utoipa::path(get, path = "/v1/calls", tag = "calls",
    params(
        ("binding_id" = Option<String>, Query,),
        ("party" = Option<String>, Query, description = "Calls from or to this real number (encode `+` as %2B)"),
        ("since" = Option<String>, Query, description = "RFC 3339; calls invited at or after it (encode `+` as %2B)"),
        ("until" = Option<String>, Query, description = "RFC 3339; calls invited before it"),
        ("cursor" = Option<String>, Query,),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "Oldest first", body = ListPage<CallView>),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn list_calls(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    QueryParams(q): QueryParams<CallListParams>,
) -> ApiResult<Json<ListPage<CallView>>> {
    let limit = limit(q.limit)?;
    let after = decode_cursor(q.cursor.as_deref(), |s| s.parse::<CallId>().ok())?;
    let binding = binding_param(q.binding_id.as_deref())?;
    let since = q
        .since
        .as_deref()
        .map(|s| parse_rfc3339_millis(s, "since"))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .map(|s| parse_rfc3339_millis(s, "until"))
        .transpose()?;
    if let (Some(since), Some(until)) = (since, until)
        && until < since
    {
        return Err(Problem::bad_request(
            "invalid_parameter",
            "until",
            "until must not be before since",
        ));
    }
    let party = q
        .party
        .as_deref()
        .map(|p| number(&state, p, "party"))
        .transpose()?;
    let filter = CallFilter {
        binding,
        party,
        since,
        until,
        newest_first: false,
    };
    let rows = state
        .engine
        .calls(
            tenant,
            &filter,
            Page {
                after,
                limit: limit + 1,
            },
        )
        .await?;
    let mut page = page_of(rows, limit, |c| c.id.to_string(), CallView::new);
    crate::recordings::attach(&state, tenant, &mut page.items).await;
    Ok(Json(page))
}

// === texts ===

/// Longest text an HTTP gateway may push, in characters (more than 255
/// concatenated parts hold).
const MAX_TEXT_CHARS: usize = 20_000;

#[utoipa::path(post, path = "/v1/sms/inbound", tag = "sms",
    request_body = InboundSmsRequest,
    responses(
        (status = 200, description = "Decided and kept: relayed, held or blocked", body = InboundSmsResponse),
        (status = 400, description = "`invalid_number` (to), `invalid_sender` (from), `invalid_field`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "`switch_disabled` when MASKLINE_SWITCH_KEY is unset", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`: not kept; push it again", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("switch_key" = [])))]
pub async fn sms_inbound(
    State(state): State<AppState>,
    _: SwitchAuth,
    body: JsonBody<InboundSmsRequest>,
) -> ApiResult<Json<InboundSmsResponse>> {
    let req = body.value;
    let to = number(&state, &req.to, "to")?;
    let from = match Number::parse(&req.from, state.region) {
        Ok(n) => Sender::Number(n),
        Err(_) => Sender::Id(
            SenderId::new(req.from.trim())
                .map_err(|e| Problem::bad_request("invalid_sender", "from", e.to_string()))?,
        ),
    };
    if req.text.chars().count() > MAX_TEXT_CHARS {
        return Err(Problem::bad_request(
            "invalid_field",
            "text",
            format!("text must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    let gateway = match req.gateway_id.as_deref() {
        None => "gateway".to_owned(),
        Some(g)
            if (1..=64).contains(&g.len())
                && g.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            g.to_owned()
        }
        Some(_) => {
            return Err(Problem::bad_request(
                "invalid_field",
                "gateway_id",
                "gateway_id is 1 to 64 letters, digits, '.', '_' or '-'",
            ));
        }
    };
    let accepted = state
        .engine
        .accept_text(IncomingText {
            from,
            to,
            text: req.text,
            ingress: format!("http:{gateway}"),
            assembled_from: None,
        })
        .await?;
    Ok(Json(InboundSmsResponse {
        message_id: accepted.id.to_string(),
        status: accepted.status.as_str(),
        reason: accepted.reason.map(|r| r.as_str()),
    }))
}

/// The `binding_id` query parameter of a list.
fn binding_param(raw: Option<&str>) -> ApiResult<Option<BindingId>> {
    raw.map(|b| {
        b.parse::<BindingId>().map_err(|_| {
            Problem::bad_request(
                "invalid_parameter",
                "binding_id",
                "binding_id must be a binding id",
            )
        })
    })
    .transpose()
}

fn message_status(raw: Option<&str>) -> ApiResult<Option<MessageStatus>> {
    raw.map(|s| {
        MessageStatus::parse(s).ok_or_else(|| {
            Problem::bad_request(
                "invalid_parameter",
                "status",
                "status must be one of relayed, held, blocked, delivered, failed",
            )
        })
    })
    .transpose()
}

async fn message_page(
    state: &AppState,
    tenant: maskline_core::TenantId,
    filter: MessageFilter,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> ApiResult<ListPage<MessageView>> {
    let limit = self::limit(limit)?;
    let after = decode_cursor(cursor, |s| s.parse::<MessageId>().ok())?;
    let rows = state
        .engine
        .messages(
            tenant,
            &filter,
            Page {
                after,
                limit: limit + 1,
            },
        )
        .await?;
    Ok(page_of(rows, limit, |m| m.id.to_string(), MessageView::new))
}

#[utoipa::path(get, path = "/v1/messages", tag = "sms",
    params(
        ("binding_id" = Option<String>, Query,),
        ("status" = Option<String>, Query, description = "relayed, held, blocked, delivered or failed"),
        ("cursor" = Option<String>, Query,),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "Oldest first; kept for their binding's life and cool-down", body = ListPage<MessageView>),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn list_messages(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    QueryParams(q): QueryParams<MessageListParams>,
) -> ApiResult<Json<ListPage<MessageView>>> {
    let binding = binding_param(q.binding_id.as_deref())?;
    let filter = MessageFilter {
        binding,
        status: message_status(q.status.as_deref())?,
        ..MessageFilter::default()
    };
    Ok(Json(
        message_page(&state, tenant, filter, q.cursor.as_deref(), q.limit).await?,
    ))
}

#[utoipa::path(post, path = "/v1/messages/{id}/release", tag = "sms",
    params(("id" = String, Path)),
    request_body = ReleaseRequest,
    responses(
        (status = 200, description = "Relayed to the binding with that extension, from X, with `sms.relayed`", body = MessageView),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "`message_not_held`: relayed, blocked or released already", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "`unknown_extension` (no active binding on X has it) or `release_blocked` (the tenant's SMS rules or the binding's controls would block it); the text stays held", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn release_message(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
    body: JsonBody<ReleaseRequest>,
) -> ApiResult<Json<MessageView>> {
    let id: MessageId = raw.parse().map_err(|_| Problem::not_found("message"))?;
    let extension = body.value.extension.parse::<Extension>().map_err(|_| {
        Problem::bad_request(
            "invalid_field",
            "extension",
            "extension must be 1 to 8 digits",
        )
    })?;
    let m = state.engine.release_text(tenant, id, extension).await?;
    Ok(Json(MessageView::new(&m)))
}

#[utoipa::path(get, path = "/v1/bindings/{id}/messages", tag = "sms",
    params(
        ("id" = String, Path),
        ("status" = Option<String>, Query, description = "relayed, held, blocked, delivered or failed"),
        ("cursor" = Option<String>, Query,),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "The binding's texts, oldest first: the pick-up-code inbox", body = ListPage<MessageView>),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn list_binding_messages(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
    QueryParams(q): QueryParams<BindingMessageListParams>,
) -> ApiResult<Json<ListPage<MessageView>>> {
    let id = binding_id(&raw)?;
    // Another tenant's binding, or none: 404 either way.
    state.engine.binding(tenant, id).await?;
    let filter = MessageFilter {
        binding: Some(id),
        status: message_status(q.status.as_deref())?,
        ..MessageFilter::default()
    };
    Ok(Json(
        message_page(&state, tenant, filter, q.cursor.as_deref(), q.limit).await?,
    ))
}

#[utoipa::path(get, path = "/v1/parties/{number}/bindings", tag = "sms",
    params(
        ("number" = String, Path, description = "The party's real number"),
        ("cursor" = Option<String>, Query,),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "The party's active bindings with X and its last four digits", body = ListPage<PartyBindingView>),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn list_party_bindings(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<Json<ListPage<PartyBindingView>>> {
    let party = number(&state, &raw, "number")?;
    let limit = limit(q.limit)?;
    let after = decode_cursor(q.cursor.as_deref(), |s| s.parse::<BindingId>().ok())?;
    let rows = state
        .engine
        .party_bindings(
            tenant,
            party,
            Page {
                after,
                limit: limit + 1,
            },
        )
        .await?;
    Ok(Json(page_of(
        rows,
        limit,
        |b| b.id.to_string(),
        |b| {
            let x = b.x.to_string();
            PartyBindingView {
                id: b.id.to_string(),
                mode: b.mode.as_str(),
                x_last4: x[x.len().saturating_sub(4)..].to_owned(),
                x,
                extension: b.extension.map(|e| e.to_string()),
                role: if b.a == party { "a" } else { "b" },
                external_ref: b.external_ref.clone(),
                expires_at: rfc3339(b.expires_at),
            }
        },
    )))
}

fn sms_settings_view(s: &maskline_core::sms::Settings) -> SmsSettingsView {
    SmsSettingsView {
        prefix: s.prefix.clone(),
        marketing_filter: match s.filter.mode {
            FilterMode::Off => MarketingFilterDto::Off,
            FilterMode::Standard => MarketingFilterDto::Standard,
        },
        rules: s
            .filter
            .rules
            .iter()
            .map(|r| RuleDto {
                pattern: r.pattern().to_owned(),
                action: match r.action {
                    RuleAction::Block => RuleActionDto::Block,
                    RuleAction::Allow => RuleActionDto::Allow,
                },
            })
            .collect(),
    }
}

#[utoipa::path(put, path = "/v1/settings/sms", tag = "sms",
    request_body = SmsSettingsRequest,
    responses(
        (status = 200, body = SmsSettingsView),
        (status = 400, description = "`invalid_rule` (a `match` that is no regular expression), `invalid_field`", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn put_sms_settings(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    body: JsonBody<SmsSettingsRequest>,
) -> ApiResult<Json<SmsSettingsView>> {
    let req = body.value;
    let prefix = req.prefix.filter(|p| !p.is_empty());
    if prefix
        .as_ref()
        .is_some_and(|p| p.chars().count() > MAX_PREFIX_CHARS)
    {
        return Err(Problem::bad_request(
            "invalid_field",
            "prefix",
            format!("prefix must be at most {MAX_PREFIX_CHARS} characters"),
        ));
    }
    if req.rules.len() > maskline_core::sms::filter::MAX_RULES {
        return Err(Problem::bad_request(
            "invalid_field",
            "rules",
            format!("at most {} rules", maskline_core::sms::filter::MAX_RULES),
        ));
    }
    let rules = req
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let action = match r.action {
                RuleActionDto::Block => RuleAction::Block,
                RuleActionDto::Allow => RuleAction::Allow,
            };
            Rule::new(&r.pattern, action).map_err(|e| {
                Problem::bad_request("invalid_rule", &format!("rules[{i}].match"), e.to_string())
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let settings = maskline_core::sms::Settings {
        prefix,
        filter: Filter {
            mode: match req.marketing_filter {
                MarketingFilterDto::Off => FilterMode::Off,
                MarketingFilterDto::Standard => FilterMode::Standard,
            },
            rules,
        },
    };
    let view = sms_settings_view(&settings);
    state.engine.put_sms_settings(tenant, settings).await?;
    Ok(Json(view))
}

#[utoipa::path(get, path = "/v1/settings/sms", tag = "sms",
    responses((status = 200, description = "The standard filter and no rules until set", body = SmsSettingsView)),
    security(("tenant_key" = [])))]
pub async fn get_sms_settings(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Json<SmsSettingsView> {
    Json(sms_settings_view(&state.engine.sms_settings(tenant)))
}

/// A call cap: at least one call, at most a million.
const CALL_CAP_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;

fn call_rules_view(r: &maskline_core::CallRules, load: maskline_core::TenantLoad) -> CallRulesView {
    let list = |l: &[maskline_core::Prefix]| l.iter().map(|p| p.as_str().to_owned()).collect();
    CallRulesView {
        calls_in_progress: load.active,
        calls_last_second: load.per_second,
        allow_prefixes: list(&r.allow_prefixes),
        deny_prefixes: list(&r.deny_prefixes),
        max_concurrent_calls: r.caps.max_concurrent_calls,
        max_calls_per_second: r.caps.max_calls_per_second,
    }
}

#[utoipa::path(put, path = "/v1/settings/calls", tag = "calls",
    request_body = CallRulesRequest,
    responses(
        (status = 200, body = CallRulesView),
        (status = 400, description = "`invalid_field`: a prefix that is not `+` and 1 to 15 digits, more than 256 in a list, or a cap outside 1 to 1,000,000", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn put_call_rules(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    body: JsonBody<CallRulesRequest>,
) -> ApiResult<Json<CallRulesView>> {
    let req = body.value;
    let rules =
        maskline_core::CallRules::new(&req.allow_prefixes, &req.deny_prefixes).map_err(|e| {
            let field = if req.allow_prefixes.len() > maskline_core::call_rules::MAX_PREFIXES
                || req
                    .allow_prefixes
                    .iter()
                    .any(|p| maskline_core::Prefix::parse(p).is_err())
            {
                "allow_prefixes"
            } else {
                "deny_prefixes"
            };
            Problem::bad_request("invalid_field", field, e.to_string())
        })?;
    for (value, field) in [
        (req.max_concurrent_calls, "max_concurrent_calls"),
        (req.max_calls_per_second, "max_calls_per_second"),
    ] {
        if !value.is_none_or(|v| CALL_CAP_RANGE.contains(&v)) {
            return Err(Problem::bad_request(
                "invalid_field",
                field,
                format!(
                    "`{field}` is {} to {}, or null for no cap",
                    CALL_CAP_RANGE.start(),
                    CALL_CAP_RANGE.end()
                ),
            ));
        }
    }
    let rules = rules.with_caps(maskline_core::CallCaps {
        max_concurrent_calls: req.max_concurrent_calls,
        max_calls_per_second: req.max_calls_per_second,
    });
    let view = call_rules_view(&rules, state.engine.call_load(tenant));
    state.engine.put_call_rules(tenant, rules).await?;
    Ok(Json(view))
}

#[utoipa::path(get, path = "/v1/settings/calls", tag = "calls",
    responses((status = 200, description = "The tenant's rules, or the defaults until set", body = CallRulesView)),
    security(("tenant_key" = [])))]
pub async fn get_call_rules(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Json<CallRulesView> {
    Json(call_rules_view(
        &state.engine.call_rules(tenant),
        state.engine.call_load(tenant),
    ))
}

// === webhooks and events ===

/// A webhook or intercept URL: well formed, and pointing at a public
/// address unless the node allows private ones.
async fn callback_url(state: &AppState, raw: &str, field: &str) -> ApiResult<String> {
    state.callbacks.accept(raw).await.map_err(|e| match e {
        Refused::Invalid(e) => {
            Problem::bad_request("invalid_field", field, format!("`{field}`: {e}"))
        }
        Refused::NotAllowed(e) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "url_not_allowed",
            format!("`{field}`: {e}"),
        )
        .field(field),
    })
}

/// `code` is `invalid_field` for a body, `invalid_parameter` for a query.
fn patterns(list: &[String], field: &str, code: &'static str) -> ApiResult<Vec<EventPattern>> {
    if list.len() > MAX_EVENT_PATTERNS {
        return Err(Problem::bad_request(
            code,
            field,
            format!("at most {MAX_EVENT_PATTERNS} patterns"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            p.parse::<EventPattern>().map_err(|_| {
                Problem::bad_request(
                    code,
                    &format!("{field}[{i}]"),
                    "unknown event type: use a type such as `call.ended`, a family such as `call.*`, or `*`",
                )
            })
        })
        .collect()
}

#[utoipa::path(put, path = "/v1/webhook", tag = "events",
    request_body = WebhookRequest,
    responses(
        (status = 200, description = "Set; the answer carries the signing secret (kept across PUTs, replaced by rotate-secret)", body = WebhookView),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "`url_not_allowed`: the URL's host is, or resolves to, a loopback, private, link-local or otherwise non-public address", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn put_webhook(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    body: JsonBody<WebhookRequest>,
) -> ApiResult<Json<WebhookView>> {
    let req = body.value;
    let url = callback_url(&state, &req.url, "url").await?;
    let events = patterns(
        req.events.as_deref().unwrap_or_default(),
        "events",
        "invalid_field",
    )?;
    let intercept = match req.intercept {
        None => None,
        Some(i) => {
            let timeout_ms = i.timeout_ms.unwrap_or(DEFAULT_INTERCEPT_TIMEOUT_MS);
            if !INTERCEPT_TIMEOUT_MS.contains(&timeout_ms) {
                return Err(Problem::bad_request(
                    "invalid_field",
                    "intercept.timeout_ms",
                    "timeout_ms must be between 50 and 10000",
                ));
            }
            Some(Intercept {
                url: callback_url(&state, &i.url, "intercept.url").await?,
                fallback: match i.fallback.unwrap_or(FallbackDto::Allow) {
                    FallbackDto::Allow => Fallback::Allow,
                    FallbackDto::Deny => Fallback::Deny,
                },
                timeout_ms,
            })
        }
    };
    let w = state
        .engine
        .put_webhook(
            tenant,
            WebhookSpec {
                url,
                events,
                intercept,
            },
        )
        .await?;
    Ok(Json(WebhookView::new(&w, true)))
}

#[utoipa::path(get, path = "/v1/webhook", tag = "events",
    responses(
        (status = 200, description = "Without the secret", body = WebhookView),
        (status = 404, description = "`webhook_not_set`", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn get_webhook(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> ApiResult<Json<WebhookView>> {
    let w = state
        .engine
        .webhook(tenant)
        .ok_or(maskline_engine::Error::WebhookNotSet)?;
    Ok(Json(WebhookView::new(&w, false)))
}

#[utoipa::path(delete, path = "/v1/webhook", tag = "events",
    responses(
        (status = 204, description = "Removed: no more deliveries or intercepts (events are still recorded)"),
        (status = 404, description = "`webhook_not_set`", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> ApiResult<StatusCode> {
    state.engine.delete_webhook(tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/webhook/rotate-secret", tag = "events",
    responses(
        (status = 200, description = "The new secret signs every delivery from now on", body = WebhookView),
        (status = 404, description = "`webhook_not_set`", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> ApiResult<Json<WebhookView>> {
    let w = state.engine.rotate_webhook_secret(tenant).await?;
    Ok(Json(WebhookView::new(&w, true)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventListParams {
    /// An event id: list the events after it.
    after: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn event_id(raw: &str) -> ApiResult<EventId> {
    raw.parse().map_err(|_| Problem::not_found("event"))
}

#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        ("after" = Option<String>, Query, description = "An event id: the events that happened after it (poll with the last id you processed)"),
        ("type" = Option<String>, Query, description = "Comma-separated types or families: `call.ended`, `binding.*`"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page (same as `after`)"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "In the order they happened", body = ListPage<EventView>),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn list_events(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    QueryParams(q): QueryParams<EventListParams>,
) -> ApiResult<Json<ListPage<EventView>>> {
    let limit = limit(q.limit)?;
    let (param, after) = match (q.after.as_deref(), q.cursor.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad_request(
                "invalid_parameter",
                "cursor",
                "give `after` or `cursor`, not both",
            ));
        }
        (Some(a), None) => ("after", Some(a)),
        (None, c) => ("cursor", c),
    };
    let after = match after {
        None => None,
        Some(raw) => {
            let unknown = || {
                Problem::bad_request(
                    "invalid_parameter",
                    param,
                    format!("`{param}` must be the id of one of your events"),
                )
            };
            let id = raw.parse::<EventId>().map_err(|_| unknown())?;
            match state.engine.event(tenant, id).await {
                Ok(e) => Some(e.seq),
                Err(maskline_engine::Error::EventNotFound) => return Err(unknown()),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let mut types = Vec::new();
    if let Some(list) = q.kind.as_deref() {
        let list: Vec<String> = list.split(',').map(|t| t.trim().to_owned()).collect();
        let pats = patterns(&list, "type", "invalid_parameter").map_err(|p| p.field("type"))?;
        types = EventType::ALL
            .into_iter()
            .filter(|t| pats.iter().any(|p| p.matches(*t)))
            .collect();
    }
    let rows = state
        .engine
        .events(
            tenant,
            &types,
            Page {
                after,
                limit: limit + 1,
            },
        )
        .await?;
    // The cursor is an event id, as `after` takes it.
    Ok(Json(page_with(
        rows,
        limit,
        |e| e.id.to_string(),
        EventView::new,
    )))
}

#[utoipa::path(get, path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = EventView),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn get_event(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
) -> ApiResult<Json<EventView>> {
    let e = state.engine.event(tenant, event_id(&raw)?).await?;
    Ok(Json(EventView::new(&e)))
}

#[utoipa::path(post, path = "/v1/events/{id}/redeliver", tag = "events",
    params(("id" = String, Path)),
    responses(
        (status = 202, description = "Queued for delivery again, whatever became of it, with a fresh retry window", body = EventView),
        (status = 404, description = "`not_found` or `webhook_not_set`", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn redeliver_event(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
) -> ApiResult<(StatusCode, Json<EventView>)> {
    let e = state.engine.redeliver(tenant, event_id(&raw)?).await?;
    Ok((StatusCode::ACCEPTED, Json(EventView::new(&e))))
}

// === routing ===

#[utoipa::path(post, path = "/v1/route", tag = "routing",
    request_body = RouteRequest,
    responses(
        (status = 200, body = RouteResponse),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "`switch_disabled` when MASKLINE_SWITCH_KEY is unset", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("switch_key" = [])))]
pub async fn route(
    State(state): State<AppState>,
    _: SwitchAuth,
    body: JsonBody<RouteRequest>,
) -> ApiResult<Json<RouteResponse>> {
    let req = body.value;
    let inbound = Inbound {
        caller: number(&state, &req.caller, "caller")?,
        called: number(&state, &req.called, "called")?,
        extension: req
            .extension
            .as_deref()
            .map(|e| {
                e.parse::<Extension>().map_err(|_| {
                    Problem::bad_request(
                        "invalid_field",
                        "extension",
                        "extension must be 1 to 8 digits",
                    )
                })
            })
            .transpose()?,
        channel: match req.channel {
            ChannelDto::Voice => Channel::Voice,
            ChannelDto::Sms => Channel::Sms,
        },
    };
    let decision = state.engine.decide(&inbound);
    let response = match decision {
        Decision::Connect(c) => RouteResponse::Connect {
            to: c.to.to_string(),
            caller_id: c.caller_id.to_string(),
            binding_id: c.binding.to_string(),
            mode: c.mode.as_str(),
            direction: c.direction.as_str(),
            max_call_seconds: c.max_call_seconds,
            record: c.record,
        },
        Decision::CollectExtension { .. } => RouteResponse::CollectExtension {
            extension_length: state.engine.config().extension_len,
        },
        Decision::Announce {
            prompt, binding, ..
        } => RouteResponse::Announce {
            prompt: prompt.as_str(),
            binding_id: binding.map(|b| b.to_string()),
        },
        Decision::Reject {
            reason, binding, ..
        } => RouteResponse::Reject {
            reason: reason.as_str(),
            sip_code: reason.sip_code(),
            binding_id: binding.to_string(),
        },
    };
    let action = match &response {
        RouteResponse::Connect { .. } => "connect",
        RouteResponse::CollectExtension { .. } => "collect_extension",
        RouteResponse::Announce { .. } => "announce",
        RouteResponse::Reject { .. } => "reject",
    };
    metrics::counter!("maskline_route_decisions_total", "action" => action).increment(1);
    tracing::debug!(caller = %inbound.caller.masked(), called = %inbound.called.masked(), action, "route decision");
    Ok(Json(response))
}

// === operations ===

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    // Always 200: a degraded node still routes from memory, and a liveness
    // probe that restarted it would take that away too.
    Json(match state.engine.degraded() {
        None => Health {
            status: "ok",
            reason: None,
        },
        Some(reason) => Health {
            status: "degraded",
            reason: Some(reason),
        },
    })
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, description = "`MASKLINE_METRICS_KEY` is set and was not given as bearer", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn metrics(State(state): State<AppState>, _auth: MetricsAuth) -> Response {
    crate::metrics::refresh_gauges(&state);
    let body = state
        .prometheus
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}
