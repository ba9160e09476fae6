//! Console accounts over the API (`POST`/`GET /v1/users`): the admin key
//! creates any account, a tenant's key only its own tenant's, never an
//! admin. Passwords go in and never come out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::{Extension, Json, extract::FromRequestParts};
use maskline_engine::core::TenantId;
use maskline_engine::store::{Role, User, UserId};
use maskline_engine::{NewUser, Principal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::audit::AuditObject;
use crate::extract::{Actor, JsonBody, QueryParams};
use crate::handlers::{ListParams, page_whole};
use crate::problem::{Problem, ProblemBody};
use crate::types::{ListPage, rfc3339};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// The sign-in name (kept lower-cased; one account per email).
    pub email: String,
    /// At least 12 characters; kept only as its Argon2id hash.
    pub password: String,
    /// `admin`, `owner`, `operator` or `viewer`.
    pub role: String,
    /// Required with the admin key for every role but `admin`; with a
    /// tenant's key, omitted or that tenant.
    pub tenant_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub role: String,
    pub tenant_id: Option<String>,
    pub created_at: String,
    /// Set while ten failed sign-ins keep the account locked.
    pub locked_until: Option<String>,
}

impl UserView {
    fn new(u: &User) -> UserView {
        UserView {
            id: u.id.to_string(),
            email: u.email.clone(),
            role: u.role.as_str().to_owned(),
            tenant_id: u.tenant.map(|t| t.to_string()),
            created_at: rfc3339(u.created_at),
            locked_until: u
                .locked_until
                .filter(|&until| until > maskline_engine::now())
                .map(rfc3339),
        }
    }
}

/// The admin key, or a tenant's own key (recorded for the audit log).
pub struct KeyAuth(pub Principal);

impl FromRequestParts<AppState> for KeyAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let key = crate::extract::bearer(parts).ok_or_else(Problem::unauthorized)?;
        let caller = state
            .engine
            .authenticate_fresh(key)
            .await
            .ok_or_else(Problem::unauthorized)?;
        if let Principal::Tenant(tenant) = caller.principal {
            state
                .rate_limits
                .check(tenant, state.engine.rate_limit(tenant))?;
            if let Some(slot) = parts.extensions.get::<crate::audit::ActorSlot>() {
                *slot.0.lock() = Some(Actor {
                    tenant,
                    key: caller.key,
                });
            }
        }
        Ok(KeyAuth(caller.principal))
    }
}

#[utoipa::path(post, path = "/v1/users", tag = "console",
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "`invalid_field`: email, password, role or tenant_id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "A tenant's key asked for an admin or another tenant's user", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []), ("tenant_key" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    KeyAuth(principal): KeyAuth,
    slot: Option<Extension<crate::audit::ActorSlot>>,
    body: JsonBody<CreateUserRequest>,
) -> Result<(StatusCode, Extension<AuditObject>, Json<UserView>), Problem> {
    let req = body.value;
    let role = Role::parse(&req.role).ok_or_else(|| {
        Problem::bad_request(
            "invalid_field",
            "role",
            "role must be admin, owner, operator or viewer",
        )
    })?;
    let named = req
        .tenant_id
        .as_deref()
        .map(|t| {
            t.parse::<TenantId>().map_err(|_| {
                Problem::bad_request(
                    "invalid_field",
                    "tenant_id",
                    "tenant_id must be a tenant id",
                )
            })
        })
        .transpose()?;
    let tenant = match principal {
        Principal::Admin => {
            // The admin acting for a tenant is in that tenant's audit log,
            // as with `Maskline-Tenant` (no key id).
            if let (Some(t), Some(Extension(slot))) = (named, slot) {
                *slot.0.lock() = Some(Actor {
                    tenant: t,
                    key: None,
                });
            }
            named
        }
        Principal::Tenant(own) => {
            if role == Role::Admin {
                return Err(Problem::forbidden("only the admin key creates admins"));
            }
            if named.is_some_and(|t| t != own) {
                return Err(Problem::forbidden(
                    "a tenant's key creates its own users only",
                ));
            }
            Some(own)
        }
    };
    let user = state
        .engine
        .create_user(NewUser {
            email: req.email,
            password: req.password,
            role,
            tenant,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Extension(AuditObject(format!("/v1/users/{}", user.id))),
        Json(UserView::new(&user)),
    ))
}

#[utoipa::path(get, path = "/v1/users", tag = "console",
    params(("cursor" = Option<String>, Query,), ("limit" = Option<u32>, Query, description = "1 to 1000, default 100")),
    responses(
        (status = 200, description = "Console accounts, oldest first: the tenant's; with the admin key every one, or one tenant's with `Maskline-Tenant`", body = ListPage<UserView>),
        (status = 401, body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []), ("tenant_key" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    KeyAuth(principal): KeyAuth,
    headers: axum::http::HeaderMap,
    QueryParams(q): QueryParams<ListParams>,
) -> Result<Json<ListPage<UserView>>, Problem> {
    let tenant = match principal {
        // The admin key lists every account, or one tenant's with
        // `Maskline-Tenant`.
        Principal::Admin => crate::extract::tenant_header(&headers)?,
        Principal::Tenant(t) => Some(t),
    };
    let users = state.engine.users(tenant).await?;
    Ok(Json(page_whole(users, &q, |u| u.id.0, UserView::new)?))
}

#[utoipa::path(delete, path = "/v1/users/{id}", tag = "console",
    params(("id" = String, Path)),
    responses(
        (status = 204, description = "Removed; its console sessions end on every node at once"),
        (status = 401, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such user (a tenant's key sees only its own)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []), ("tenant_key" = [])))]
pub async fn delete_user(
    State(state): State<AppState>,
    KeyAuth(principal): KeyAuth,
    slot: Option<Extension<crate::audit::ActorSlot>>,
    crate::extract::PathParam(raw): crate::extract::PathParam,
) -> Result<(StatusCode, Extension<AuditObject>), Problem> {
    let id = uuid::Uuid::try_parse(&raw)
        .map(|u| UserId(u.as_u128()))
        .map_err(|_| Problem::not_found("user"))?;
    let scope = match principal {
        Principal::Admin => {
            // In the audit log of the tenant whose user it was.
            let owner = state
                .engine
                .users(None)
                .await?
                .into_iter()
                .find(|u| u.id == id)
                .and_then(|u| u.tenant);
            if let (Some(t), Some(Extension(slot))) = (owner, slot) {
                *slot.0.lock() = Some(Actor {
                    tenant: t,
                    key: None,
                });
            }
            None
        }
        Principal::Tenant(t) => Some(t),
    };
    state.engine.delete_user(scope, id).await?;
    Ok((
        StatusCode::NO_CONTENT,
        Extension(AuditObject(format!("/v1/users/{id}"))),
    ))
}
