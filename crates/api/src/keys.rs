//! A tenant's API keys: several at once, so that one can be rotated without
//! downtime (create the new one, deploy it, revoke the old one). `POST
//! /v1/keys` shows a key once; lists show its first characters only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use maskline_engine::store::{ApiKey, KeyId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::audit::AuditObject;
use crate::extract::{PathParam, QueryParams, TenantAuth};
use crate::handlers::{ListParams, page_whole};
use crate::problem::{Problem, ProblemBody};
use crate::types::{ListPage, rfc3339};

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_at: String,
    /// `null` while the key works.
    pub revoked_at: Option<String>,
}

impl KeyView {
    fn new(k: &ApiKey) -> KeyView {
        KeyView {
            id: k.id.to_string(),
            prefix: k.prefix.clone(),
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyCreated {
    pub id: String,
    /// Shown once: only its hash is stored. It works on every node from
    /// this answer on.
    pub key: String,
    pub prefix: String,
    pub created_at: String,
}

#[utoipa::path(post, path = "/v1/keys", tag = "tenants",
    responses(
        (status = 201, description = "Created; the key is shown only here", body = KeyCreated),
        (status = 401, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<(StatusCode, Extension<AuditObject>, Json<KeyCreated>), Problem> {
    let (key, secret) = state.engine.create_key(tenant).await?;
    Ok((
        StatusCode::CREATED,
        Extension(AuditObject(format!("/v1/keys/{}", key.id))),
        Json(KeyCreated {
            id: key.id.to_string(),
            key: secret,
            prefix: key.prefix,
            created_at: rfc3339(key.created_at),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/keys", tag = "tenants",
    params(("cursor" = Option<String>, Query,), ("limit" = Option<u32>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "The tenant's keys, revoked ones included, oldest first", body = ListPage<KeyView>)),
    security(("tenant_key" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    QueryParams(q): QueryParams<ListParams>,
) -> Result<Json<ListPage<KeyView>>, Problem> {
    let keys = state.engine.keys(tenant).await?;
    Ok(Json(page_whole(keys, &q, |k| k.id.0, KeyView::new)?))
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "tenants",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked on every node"),
        (status = 404, description = "`key_not_found`: no working key of this tenant has that id", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("tenant_key" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    PathParam(raw): PathParam,
) -> Result<StatusCode, Problem> {
    let not_found = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "key_not_found",
            "no working key of this tenant has that id",
        )
    };
    let id: KeyId = raw.parse().map_err(|_| not_found())?;
    if state.engine.revoke_key(tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
