//! Tenants' prompts: `PUT /v1/prompts/{name}` replaces a built-in prompt
//! with the tenant's WAV, `DELETE` brings the built-in one back, `GET
//! /v1/prompts` lists what every name plays.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use maskline_engine::PromptInfo;
use maskline_media::prompts::PromptName;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{PathParam, TenantAuth, WavBody};
use crate::problem::{Problem, ProblemBody};
use crate::types::{ListPage, rfc3339};

/// What one prompt name plays for the tenant.
#[derive(Serialize, ToSchema)]
pub struct PromptView {
    /// `enter_extension`, `invalid_extension`, `expired`, `no_binding`,
    /// `forbidden`, `pre_connect`, `callee_whisper`, `last_minute` or
    /// `recording_notice`.
    pub name: &'static str,
    /// `tenant` (the tenant's own recording) or `builtin`.
    pub source: &'static str,
    /// A built-in prompt's is its Mandarin recording's.
    pub duration_ms: u64,
    /// When the tenant's recording was put; `null` for a built-in one.
    pub updated_at: Option<String>,
}

impl PromptView {
    fn new(p: &PromptInfo) -> PromptView {
        PromptView {
            name: p.name.as_str(),
            source: p.source.as_str(),
            duration_ms: p.duration_ms,
            updated_at: p.updated_at.map(rfc3339),
        }
    }
}

/// The `{name}` of a prompt path: one of the contract's names, or 404.
pub struct PromptPath(pub PromptName);

impl<S: Send + Sync> FromRequestParts<S> for PromptPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let PathParam(raw) = PathParam::from_request_parts(parts, state).await?;
        PromptName::parse(&raw).map(PromptPath).ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "unknown_prompt",
                "no prompt has that name; GET /v1/prompts lists them",
            )
        })
    }
}

#[utoipa::path(put, path = "/v1/prompts/{name}", tag = "prompts",
    params(("name" = String, Path, description = "The prompt replaced, e.g. `expired`")),
    request_body(
        description = "A WAV file, 8 kHz mono: PCM 16-bit, A-law or mu-law; at most 2 MiB",
        content(("audio/wav"), ("audio/x-wav"), ("audio/wave")),
    ),
    responses(
        (status = 200, description = "Calls of this tenant hear it from now on", body = PromptView),
        (status = 404, description = "`unknown_prompt`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_wav`: `detail` says what is wrong with the file", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn put_prompt(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PromptPath(name): PromptPath,
    WavBody(wav): WavBody,
) -> Result<Json<PromptView>, Problem> {
    let info = state.engine.put_prompt(tenant, name, &wav).await?;
    Ok(Json(PromptView::new(&info)))
}

#[utoipa::path(delete, path = "/v1/prompts/{name}", tag = "prompts",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "The built-in prompt plays again"),
        (status = 404, description = "`unknown_prompt`, or `prompt_not_set` (the built-in one plays already)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn delete_prompt(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PromptPath(name): PromptPath,
) -> Result<StatusCode, Problem> {
    if state.engine.delete_prompt(tenant, name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::new(
            StatusCode::NOT_FOUND,
            "prompt_not_set",
            format!("no recording of `{name}` was put; the built-in one plays"),
        ))
    }
}

#[utoipa::path(get, path = "/v1/prompts", tag = "prompts",
    responses((status = 200, description = "Every prompt name, with what it plays for this tenant", body = ListPage<PromptView>)),
    security(("tenant_key" = [])))]
pub async fn list_prompts(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Json<ListPage<PromptView>> {
    Json(ListPage {
        items: state
            .engine
            .prompts(tenant)
            .iter()
            .map(PromptView::new)
            .collect(),
        next_cursor: None,
    })
}
