//! Tenants, for an admin: every tenant with its API rate; a new tenant
//! (its first API key shown once); a tenant's own rate, as
//! `POST /v1/tenants` and `PATCH /v1/tenants/{id}` do.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maskline_core::TenantId;
use maskline_engine::{MAX_RATE_LIMIT, MAX_TENANT_NAME_CHARS};
use maskline_store::Role;
use serde::Deserialize;

use super::{Chrome, Peer, Scope, audit, failed, forbidden, form, not_found, render};
use crate::ConsoleState;
use crate::auth::Session;

struct TenantRow {
    id: String,
    name: String,
    created: String,
    /// The tenant's own rate as typed in its form; empty: the server's.
    own: String,
    /// What applies, in words.
    applies: String,
}

#[derive(Template)]
#[template(path = "tenants.html")]
struct TenantsPage {
    c: Chrome,
    rows: Vec<TenantRow>,
    notice: String,
    error: String,
    /// A tenant just made: its first key, shown this once.
    new_key: String,
    name: String,
}

/// What a tenants page says above its list.
#[derive(Default)]
struct Said {
    notice: String,
    error: String,
    new_key: String,
    name: String,
}

/// The checks before an admin's page or post: the role, then (for a post)
/// the form's token.
fn admin_only(session: &Session, csrf: Option<Option<&str>>) -> Result<(), Response> {
    if let Some(given) = csrf {
        session.check_csrf(given)?;
    }
    if session.user.role != Role::Admin {
        return Err(forbidden(session, session.lang.lang.text().admins_only));
    }
    Ok(())
}

async fn tenants_page(
    state: &ConsoleState,
    session: &Session,
    said: Said,
    status: StatusCode,
) -> Response {
    let lang = session.lang.lang;
    let t = lang.text();
    // The menu's scope: no tenant picked (the list is every tenant's).
    let scope = Scope {
        tenant: None,
        options: Vec::new(),
        admin: true,
    };
    let tenants = match state.engine.tenants().await {
        Ok(list) => list,
        Err(e) => return failed(session, &e),
    };
    let rate = |r: u32| match r {
        0 => t.rate_unlimited.to_owned(),
        r => format!("{} {}", lang.int(u64::from(r)), t.per_second),
    };
    let rows = tenants
        .into_iter()
        .rev()
        .map(|tenant| {
            let own = state.engine.rate_limit(tenant.id);
            TenantRow {
                id: tenant.id.to_string(),
                name: tenant.name,
                created: lang.time(tenant.created_at),
                own: own.map(|r| r.to_string()).unwrap_or_default(),
                applies: match own {
                    Some(r) => rate(r),
                    None => format!("{} ({})", rate(state.default_rate_limit), t.server_default),
                },
            }
        })
        .collect();
    let page = TenantsPage {
        c: Chrome::signed_in(session, "tenants", &scope),
        rows,
        notice: said.notice,
        error: said.error,
        new_key: said.new_key,
        name: said.name,
    };
    render(status, &page, session.lang, session.secure)
}

pub async fn tenants(State(state): State<ConsoleState>, session: Session) -> Response {
    if let Err(res) = admin_only(&session, None) {
        return res;
    }
    tenants_page(&state, &session, Said::default(), StatusCode::OK).await
}

#[derive(Deserialize, Default)]
pub struct TenantForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
}

/// `POST /console/tenants`: a new tenant; its first API key is shown once.
pub async fn create_tenant(
    State(state): State<ConsoleState>,
    session: Session,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: TenantForm = form(&body);
    if let Err(res) = admin_only(&session, Some(f.csrf.as_deref())) {
        return res;
    }
    let lang = session.lang.lang;
    let t = lang.text();
    let name = f.name.trim();
    if name.is_empty() || name.chars().count() > MAX_TENANT_NAME_CHARS {
        let said = Said {
            error: t.invalid_tenant_name.to_owned(),
            name: f.name.clone(),
            ..Said::default()
        };
        return tenants_page(&state, &session, said, StatusCode::BAD_REQUEST).await;
    }
    match state.engine.create_tenant(name).await {
        Ok((tenant, key)) => {
            audit(
                &state,
                &session,
                tenant.id,
                "POST /console/tenants",
                tenant.id.to_string(),
                StatusCode::CREATED,
                peer.0,
            );
            let said = Said {
                notice: format!("{} {}", t.tenant_created, tenant.name),
                new_key: key,
                ..Said::default()
            };
            tenants_page(&state, &session, said, StatusCode::CREATED).await
        }
        Err(e) => failed(&session, &e),
    }
}

#[derive(Deserialize, Default)]
pub struct RateForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    rate_limit: String,
}

/// A rate as typed: empty for the server's, else 0 to the most.
fn rate(raw: &str) -> Result<Option<u32>, ()> {
    match raw.trim() {
        "" => Ok(None),
        v => v
            .parse::<u32>()
            .ok()
            .filter(|r| *r <= MAX_RATE_LIMIT)
            .map(Some)
            .ok_or(()),
    }
}

/// `POST /console/tenants/{id}/rate`: the tenant's own API rate, or the
/// server's again.
pub async fn set_rate(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: RateForm = form(&body);
    if let Err(res) = admin_only(&session, Some(f.csrf.as_deref())) {
        return res;
    }
    let lang = session.lang.lang;
    let t = lang.text();
    let Some(tenant) = id
        .parse::<TenantId>()
        .ok()
        .filter(|t| state.engine.tenant_exists(*t))
    else {
        return not_found(&session).await;
    };
    let Ok(rate) = rate(&f.rate_limit) else {
        let said = Said {
            error: t.invalid_rate.to_owned(),
            ..Said::default()
        };
        return tenants_page(&state, &session, said, StatusCode::BAD_REQUEST).await;
    };
    match state.engine.set_rate_limit(tenant, rate).await {
        Ok(()) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/tenants/{id}/rate",
                tenant.to_string(),
                StatusCode::OK,
                peer.0,
            );
            let said = Said {
                notice: t.settings_saved.to_owned(),
                ..Said::default()
            };
            tenants_page(&state, &session, said, StatusCode::OK).await
        }
        Err(maskline_engine::Error::TenantNotFound) => not_found(&session).await,
        Err(e) => failed(&session, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_typed() {
        assert_eq!(rate(""), Ok(None));
        assert_eq!(rate(" 0 "), Ok(Some(0)));
        assert_eq!(rate("250"), Ok(Some(250)));
        assert_eq!(rate("10000000"), Ok(Some(10_000_000)));
        assert_eq!(rate("10000001"), Err(()));
        assert_eq!(rate("-1"), Err(()));
        assert_eq!(rate("fast"), Err(()));
    }
}
