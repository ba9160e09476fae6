//! What an owner (or an admin, for the tenant picked) manages: API keys,
//! console users, and the audit log of every change.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maskline_engine::NewUser;
use maskline_store::{KeyId, Role, User};
use serde::Deserialize;

use super::{
    Chrome, CsrfForm, PAGE_ROWS, Peer, Scope, TenantOption, TenantParam, audit, failed, form, href,
    manager_scope, manager_write, more, not_found, render, time_ms,
};
use crate::ConsoleState;
use crate::auth::Session;
use crate::i18n::Lang;

fn role_label(lang: Lang, role: Role) -> &'static str {
    let t = lang.text();
    match role {
        Role::Admin => t.role_admin,
        Role::Owner => t.role_owner,
        Role::Operator => t.role_operator,
        Role::Viewer => t.role_viewer,
    }
}

// === keys ===

struct KeyRow {
    id: String,
    prefix: String,
    created: String,
    revoked: String,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    c: Chrome,
    tenants: Vec<TenantOption>,
    picked: bool,
    tenant_query: String,
    rows: Vec<KeyRow>,
    /// A key just made: shown this once.
    new_key: String,
    notice: String,
}

async fn keys_page(
    state: &ConsoleState,
    session: &Session,
    scope: Scope,
    new_key: String,
    notice: String,
    status: StatusCode,
) -> Response {
    let lang = session.lang.lang;
    let mut rows = Vec::new();
    if let Some(tenant) = scope.tenant {
        let keys = match state.engine.keys(tenant).await {
            Ok(k) => k,
            Err(e) => return failed(session, &e),
        };
        rows = keys
            .iter()
            .rev()
            .map(|k| KeyRow {
                id: k.id.to_string(),
                prefix: k.prefix.clone(),
                created: lang.time(k.created_at),
                revoked: k.revoked_at.map(|t| lang.time(t)).unwrap_or_default(),
            })
            .collect();
    }
    let page = KeysPage {
        c: Chrome::signed_in(session, "keys", &scope),
        picked: scope.tenant.is_some(),
        tenant_query: scope.query(),
        rows,
        new_key,
        notice,
        tenants: scope.options,
    };
    render(status, &page, session.lang, session.secure)
}

pub async fn keys(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
) -> Response {
    match manager_scope(&state, &session, q.tenant.as_deref()).await {
        Ok(scope) => {
            keys_page(
                &state,
                &session,
                scope,
                String::new(),
                String::new(),
                StatusCode::OK,
            )
            .await
        }
        Err(res) => res,
    }
}

pub async fn create_key(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: CsrfForm = form(&body);
    let (scope, tenant) =
        match manager_write(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    match state.engine.create_key(tenant).await {
        Ok((key, secret)) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/keys",
                key.id.to_string(),
                StatusCode::CREATED,
                peer.0,
            );
            let lang = session.lang.lang;
            let notice = lang.text().key_created.to_owned();
            // Shown once, in this answer only; never in a URL.
            keys_page(&state, &session, scope, secret, notice, StatusCode::CREATED).await
        }
        Err(e) => failed(&session, &e),
    }
}

pub async fn revoke_key(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: CsrfForm = form(&body);
    let (scope, tenant) =
        match manager_write(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
        return not_found(&session).await;
    };
    let key = KeyId(uuid.as_u128());
    match state.engine.revoke_key(tenant, key).await {
        Ok(true) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/keys/{id}/revoke",
                key.to_string(),
                StatusCode::OK,
                peer.0,
            );
            Redirect::to(&href("/console/keys", &[("tenant", scope.param())])).into_response()
        }
        Ok(false) => not_found(&session).await,
        Err(e) => failed(&session, &e),
    }
}

// === users ===

struct UserRow {
    id: String,
    email: String,
    role: &'static str,
    created: String,
    locked: String,
    /// The user looking: not removable from here.
    me: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    c: Chrome,
    tenants: Vec<TenantOption>,
    picked: bool,
    tenant_query: String,
    rows: Vec<UserRow>,
    roles: Vec<(&'static str, &'static str)>,
    notice: String,
    error: String,
    email: String,
}

async fn users_page(
    state: &ConsoleState,
    session: &Session,
    scope: Scope,
    notice: String,
    error: String,
    email: String,
    status: StatusCode,
) -> Response {
    let lang = session.lang.lang;
    let now = maskline_engine::now();
    let mut rows = Vec::new();
    if let Some(tenant) = scope.tenant {
        let users: Vec<User> = match state.engine.users(Some(tenant)).await {
            Ok(u) => u,
            Err(e) => return failed(session, &e),
        };
        rows = users
            .iter()
            .map(|u| UserRow {
                id: u.id.to_string(),
                me: u.id == session.user.id,
                email: u.email.clone(),
                role: role_label(lang, u.role),
                created: lang.time(u.created_at),
                locked: u
                    .locked_until
                    .filter(|&until| until > now)
                    .map(|t| lang.time(t))
                    .unwrap_or_default(),
            })
            .collect();
    }
    let page = UsersPage {
        c: Chrome::signed_in(session, "users", &scope),
        picked: scope.tenant.is_some(),
        tenant_query: scope.query(),
        rows,
        roles: [Role::Viewer, Role::Operator, Role::Owner]
            .into_iter()
            .map(|r| (r.as_str(), role_label(lang, r)))
            .collect(),
        notice,
        error,
        email,
        tenants: scope.options,
    };
    render(status, &page, session.lang, session.secure)
}

pub async fn users(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
) -> Response {
    match manager_scope(&state, &session, q.tenant.as_deref()).await {
        Ok(scope) => {
            users_page(
                &state,
                &session,
                scope,
                String::new(),
                String::new(),
                String::new(),
                StatusCode::OK,
            )
            .await
        }
        Err(res) => res,
    }
}

#[derive(Deserialize, Default)]
struct UserForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

pub async fn create_user(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: UserForm = form(&body);
    let (scope, tenant) =
        match manager_write(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let lang = session.lang.lang;
    let t = lang.text();
    // A tenant's users are never admins.
    let role = Role::parse(&f.role).filter(|r| *r != Role::Admin);
    let result = match role {
        None => Err(t.invalid_role.to_owned()),
        Some(role) => state
            .engine
            .create_user(NewUser {
                email: f.email.clone(),
                password: f.password,
                role,
                tenant: Some(tenant),
            })
            .await
            .map_err(|e| match e {
                maskline_engine::Error::EmailTaken => t.email_taken.to_owned(),
                maskline_engine::Error::InvalidUser { field: "email", .. } => {
                    t.invalid_email.to_owned()
                }
                maskline_engine::Error::InvalidUser {
                    field: "password", ..
                } => t.invalid_password.to_owned(),
                other => {
                    tracing::error!(error = %other, "console user not created");
                    t.error_internal.to_owned()
                }
            }),
    };
    match result {
        Ok(user) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/users",
                user.id.to_string(),
                StatusCode::CREATED,
                peer.0,
            );
            let notice = format!("{} {}", t.user_created, user.email);
            users_page(
                &state,
                &session,
                scope,
                notice,
                String::new(),
                String::new(),
                StatusCode::CREATED,
            )
            .await
        }
        Err(error) => {
            users_page(
                &state,
                &session,
                scope,
                String::new(),
                error,
                f.email,
                StatusCode::BAD_REQUEST,
            )
            .await
        }
    }
}

/// `POST /console/users/{id}/remove`: the account and its sessions go,
/// on every node (not one's own: an owner would lock the tenant out).
pub async fn remove_user(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: CsrfForm = form(&body);
    let (scope, tenant) =
        match manager_write(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let lang = session.lang.lang;
    let t = lang.text();
    let Some(user) = uuid::Uuid::try_parse(&id)
        .ok()
        .map(|u| maskline_store::UserId(u.as_u128()))
    else {
        return not_found(&session).await;
    };
    if user == session.user.id {
        let error = t.cannot_remove_self.to_owned();
        return users_page(
            &state,
            &session,
            scope,
            String::new(),
            error,
            String::new(),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    match state.engine.delete_user(Some(tenant), user).await {
        Ok(()) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/users/{id}/remove",
                user.to_string(),
                StatusCode::OK,
                peer.0,
            );
            users_page(
                &state,
                &session,
                scope,
                t.user_removed.to_owned(),
                String::new(),
                String::new(),
                StatusCode::OK,
            )
            .await
        }
        Err(maskline_engine::Error::UserNotFound) => not_found(&session).await,
        Err(e) => failed(&session, &e),
    }
}

// === audit ===

struct AuditRow {
    time: String,
    who: String,
    action: String,
    object: String,
    source: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    c: Chrome,
    tenants: Vec<TenantOption>,
    picked: bool,
    rows: Vec<AuditRow>,
    paged: bool,
    first_href: String,
    next_href: String,
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    before: String,
}

pub async fn audit_log(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<AuditQuery>,
) -> Response {
    let scope = match manager_scope(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let lang = session.lang.lang;
    let t = lang.text();
    let mut rows = Vec::new();
    let mut next_href = String::new();
    if let Some(tenant) = scope.tenant {
        let before = q.before.parse::<i64>().ok();
        let mut found = match state.engine.audit(tenant, before, PAGE_ROWS + 1).await {
            Ok(f) => f,
            Err(e) => return failed(&session, &e),
        };
        if let Some((seq, _)) = more(&mut found) {
            next_href = href(
                "/console/audit",
                &[("tenant", scope.param()), ("before", seq.to_string())],
            );
        }
        // Emails of the tenant's users, to name who acted.
        let users = state.engine.users(Some(tenant)).await.unwrap_or_default();
        rows = found
            .iter()
            .map(|(_, e)| AuditRow {
                time: time_ms(lang, e.at),
                who: match (e.user, e.key) {
                    (Some(u), _) => users
                        .iter()
                        .find(|x| x.id == u)
                        .map_or_else(|| u.to_string(), |x| x.email.clone()),
                    (None, Some(k)) => format!("{} {k}", t.api_key),
                    (None, None) => t.admin_key.to_owned(),
                },
                action: e.action.clone(),
                object: e.object.clone(),
                source: e.source.clone().unwrap_or_default(),
            })
            .collect();
    }
    let page = AuditPage {
        c: Chrome::signed_in(&session, "audit", &scope),
        picked: scope.tenant.is_some(),
        paged: !q.before.is_empty(),
        first_href: href("/console/audit", &[("tenant", scope.param())]),
        next_href,
        rows,
        tenants: scope.options,
    };
    render(StatusCode::OK, &page, session.lang, session.secure)
}
