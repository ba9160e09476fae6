//! Bindings: search by party, `external_ref` and status, newest first;
//! create, extend and end (operators and owners).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maskline_core::{Binding, BindingId, BindingStatus, Controls, Mode, Number, Region, UnixTime};
use maskline_engine::store::{BindingFilter, Page};
use maskline_engine::{BindingPatch, BindingSpec, Expiry};
use serde::Deserialize;

use super::{
    Chrome, CsrfForm, PAGE_ROWS, Peer, Scope, TenantOption, TenantParam, audit, failed, form, href,
    internal_error, more, not_found, party_filter, refusal, refusal_status, render, reveal,
    sealed_party, writer_scope,
};
use crate::ConsoleState;
use crate::auth::Session;
use crate::i18n::Lang;
use crate::pages::messages::masked_text;

/// Longest lifetime a form may give or add, in hours (180 days).
const MAX_HOURS: i64 = 4320;
/// As the API: an `external_ref` is 1 to 128 characters.
const MAX_EXTERNAL_REF: usize = 128;

struct BindingRow {
    id: String,
    x: String,
    extension: String,
    a: String,
    b: String,
    mode: &'static str,
    external_ref: String,
    status: &'static str,
    status_class: &'static str,
    created: String,
    expires: String,
    active: bool,
    /// The binding's calls and texts.
    calls_href: String,
    texts_href: String,
}

impl BindingRow {
    /// Party numbers masked: the page is the same for every role.
    fn new(
        b: &Binding,
        status: BindingStatus,
        lang: Lang,
        region: Region,
        scope: &Scope,
    ) -> BindingRow {
        let t = lang.text();
        let of = |path: &str| {
            href(
                path,
                &[("tenant", scope.param()), ("binding", b.id.to_string())],
            )
        };
        BindingRow {
            calls_href: of("/console/calls"),
            texts_href: of("/console/messages"),
            id: b.id.to_string(),
            x: b.x.to_string(),
            extension: b.extension.map(|e| e.to_string()).unwrap_or_default(),
            a: b.a.masked().to_string(),
            b: b.b
                .map_or_else(|| "—".to_owned(), |n| n.masked().to_string()),
            mode: b.mode.as_str(),
            // A platform may put a phone number in its reference.
            external_ref: b
                .external_ref
                .as_deref()
                .map(|r| masked_text(r, region))
                .unwrap_or_default(),
            status: match status {
                BindingStatus::Active => t.active,
                BindingStatus::Cooling => t.cooling,
                BindingStatus::Ended => t.ended,
            },
            status_class: status.as_str(),
            created: lang.time(b.created_at),
            expires: lang.time(b.ended_at.unwrap_or(b.expires_at)),
            active: status == BindingStatus::Active,
        }
    }
}

#[derive(Template)]
#[template(path = "bindings.html")]
struct BindingsPage {
    c: Chrome,
    tenants: Vec<TenantOption>,
    picked: bool,
    tenant_query: String,
    may_write: bool,
    notice: String,
    error: String,
    /// The party searched for, masked: the page never holds it whole.
    party_masked: String,
    q_ref: String,
    q_status: String,
    rows: Vec<BindingRow>,
    paged: bool,
    first_href: String,
    next_href: String,
}

#[derive(Deserialize, Default)]
pub struct BindingsQuery {
    #[serde(default)]
    tenant: Option<String>,
    /// A party number as typed (a link never carries one: see `pq`).
    #[serde(default)]
    party: String,
    /// A party number sealed for this session (`auth::seal_query`).
    #[serde(default)]
    pq: String,
    #[serde(default)]
    external_ref: String,
    #[serde(default)]
    status: String,
    /// The last id of the page before.
    #[serde(default)]
    after: String,
    /// What the redirect after a form says: `created`, `ended`, `extended`.
    #[serde(default)]
    done: String,
    #[serde(default)]
    id: String,
}

#[derive(Deserialize, Default)]
struct SearchForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    party: String,
    #[serde(default)]
    external_ref: String,
    #[serde(default)]
    status: String,
}

/// `POST /console/bindings/search`: the search form posts, so that a party
/// number typed in reaches no URL (history, proxies, access logs); the
/// answer sends to the list with the number sealed for this session.
pub async fn search_bindings(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
    body: Bytes,
) -> Response {
    let f: SearchForm = form(&body);
    if let Err(res) = session.check_csrf(f.csrf.as_deref()) {
        return res;
    }
    let scope = match Scope::of(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let query = BindingsQuery {
        external_ref: f.external_ref,
        status: f.status,
        ..BindingsQuery::default()
    };
    let party = match f.party.trim() {
        "" => None,
        p => match Number::parse(p, state.region) {
            Ok(n) => Some(n),
            Err(_) => {
                let error = session.lang.lang.text().invalid_number.to_owned();
                return bindings_page(
                    &state,
                    &session,
                    scope,
                    query,
                    error,
                    StatusCode::BAD_REQUEST,
                )
                .await;
            }
        },
    };
    Redirect::to(&list_href(&session, &scope, &query, party, None)).into_response()
}

pub async fn bindings(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<BindingsQuery>,
) -> Response {
    let scope = match Scope::of(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    bindings_page(&state, &session, scope, q, String::new(), StatusCode::OK).await
}

async fn bindings_page(
    state: &ConsoleState,
    session: &Session,
    scope: Scope,
    q: BindingsQuery,
    mut error: String,
    status: StatusCode,
) -> Response {
    let lang = session.lang.lang;
    let t = lang.text();
    let now = maskline_engine::now();
    let cooldown = state.engine.config().cooldown_secs;
    let mut rows = Vec::new();
    let mut next_href = String::new();
    let mut notice = String::new();
    let mut party_masked = String::new();
    let mut searched = None;
    if let Some(tenant) = scope.tenant {
        let (party, unreadable) = match party_filter(state, session, &q.pq, &q.party) {
            Ok(p) => (p, false),
            Err(()) => {
                error = t.invalid_number.into();
                (None, true)
            }
        };
        let status_filter = match q.status.as_str() {
            "active" => Some(BindingStatus::Active),
            "cooling" => Some(BindingStatus::Cooling),
            "ended" => Some(BindingStatus::Ended),
            _ => None,
        };
        let external_ref = Some(q.external_ref.trim())
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        let filter = BindingFilter {
            external_ref,
            party,
            status: status_filter.map(|s| (s, now, cooldown)),
            newest_first: true,
        };
        party_masked = party.map(|p| p.masked().to_string()).unwrap_or_default();
        searched = party;
        // An unreadable party matches nothing rather than everything.
        if !unreadable {
            let after = q.after.parse::<BindingId>().ok();
            let found = state
                .engine
                .bindings(
                    tenant,
                    &filter,
                    Page {
                        after,
                        limit: PAGE_ROWS + 1,
                    },
                )
                .await;
            let mut found = match found {
                Ok(f) => f,
                Err(e) => return failed(session, &e),
            };
            if let Some(last) = more(&mut found) {
                next_href = list_href(session, &scope, &q, party, Some(last.id));
            }
            rows = found
                .iter()
                .map(|b| BindingRow::new(b, b.status(now, cooldown), lang, state.region, &scope))
                .collect();
        }
        if let Ok(id) = q.id.parse::<BindingId>()
            && let Ok(b) = state.engine.binding(tenant, id).await
        {
            let what = match q.done.as_str() {
                "created" => t.binding_created,
                "ended" => t.binding_ended,
                "extended" => t.binding_extended,
                _ => "",
            };
            if !what.is_empty() {
                notice = format!("{what} {} ({})", b.x, b.a.masked());
            }
        }
    }
    let page = BindingsPage {
        c: Chrome::signed_in(session, "bindings", &scope),
        picked: scope.tenant.is_some(),
        tenant_query: scope.query(),
        may_write: session.may_write(),
        notice,
        error,
        first_href: list_href(session, &scope, &q, searched, None),
        paged: !q.after.is_empty(),
        next_href,
        party_masked,
        // Echoed only if it holds no phone number.
        q_ref: Some(q.external_ref)
            .filter(|r| masked_text(r, state.region) == *r)
            .unwrap_or_default(),
        q_status: q.status,
        rows,
        tenants: scope.options,
    };
    render(status, &page, session.lang, session.secure)
}

/// The list's URL with its filters, from `after` (the first page: none).
/// A party goes sealed for this session.
fn list_href(
    session: &Session,
    scope: &Scope,
    q: &BindingsQuery,
    party: Option<Number>,
    after: Option<BindingId>,
) -> String {
    href(
        "/console/bindings",
        &[
            ("tenant", scope.param()),
            ("pq", sealed_party(session, party)),
            ("external_ref", q.external_ref.trim().to_owned()),
            ("status", q.status.trim().to_owned()),
            ("after", after.map(|a| a.to_string()).unwrap_or_default()),
        ],
    )
}

/// A form's fields; absent ones are empty.
#[derive(Deserialize, Default)]
struct BindingForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    a: String,
    #[serde(default)]
    b: String,
    #[serde(default)]
    external_ref: String,
    #[serde(default)]
    hours: String,
}

/// The list again, saying why the engine refused (or the generic page for
/// a failure the user cannot act on).
async fn refused(
    state: &ConsoleState,
    session: &Session,
    scope: Scope,
    e: &maskline_engine::Error,
) -> Response {
    match refusal(session.lang.lang, e) {
        Some(error) => {
            let q = BindingsQuery::default();
            bindings_page(state, session, scope, q, error, refusal_status(e)).await
        }
        None => failed(session, e),
    }
}

fn hours(raw: &str) -> Option<i64> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|h| (1..=MAX_HOURS).contains(h))
}

fn done(scope: &Scope, what: &str, id: BindingId) -> Response {
    let mut params = vec![("done", what.to_owned()), ("id", id.to_string())];
    let tenant = scope.param();
    if !tenant.is_empty() {
        params.insert(0, ("tenant", tenant));
    }
    let query = serde_urlencoded::to_string(&params).unwrap_or_default();
    Redirect::to(&format!("/console/bindings?{query}")).into_response()
}

pub async fn create_binding(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: BindingForm = form(&body);
    let (scope, tenant) =
        match writer_scope(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let lang = session.lang.lang;
    let t = lang.text();
    let spec = (|| {
        let mode = match f.mode.as_str() {
            "axb" => Mode::Axb,
            "axn" => Mode::Axn,
            "axe" => Mode::Axe,
            _ => {
                return Err(format!(
                    "{} {}",
                    t.refused_other,
                    maskline_core::Error::InvalidMode
                ));
            }
        };
        let a = Number::parse(f.a.trim(), state.region).map_err(|_| t.invalid_number.to_owned())?;
        let b = match f.b.trim() {
            "" => None,
            b => Some(Number::parse(b, state.region).map_err(|_| t.invalid_number.to_owned())?),
        };
        maskline_core::validate_parties(mode, a, b)
            .map_err(|e| refusal(lang, &e.into()).unwrap_or_default())?;
        let hours = hours(&f.hours).ok_or_else(|| t.invalid_hours.to_owned())?;
        let external_ref = match f.external_ref.trim() {
            "" => None,
            r if r.chars().count() > MAX_EXTERNAL_REF => return Err(t.invalid_ref.to_owned()),
            r => Some(r.to_owned()),
        };
        Ok(BindingSpec {
            mode,
            a,
            b,
            expiry: Expiry::In(hours * 3600),
            area: None,
            area_match: Default::default(),
            external_ref,
            controls: Controls::default(),
        })
    })();
    let spec = match spec {
        Ok(s) => s,
        Err(error) => {
            return bindings_page(
                &state,
                &session,
                scope,
                BindingsQuery::default(),
                error,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let render_body = |_: &Binding| String::new();
    match state
        .engine
        .create_binding(tenant, spec, None, &render_body)
        .await
    {
        Ok(maskline_engine::Created::Fresh(b, _)) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/bindings",
                b.id.to_string(),
                StatusCode::CREATED,
                peer.0,
            );
            done(&scope, "created", b.id)
        }
        // No idempotency key was given: nothing to replay.
        Ok(maskline_engine::Created::Replayed { .. }) => internal_error(lang),
        Err(e) => refused(&state, &session, scope, &e).await,
    }
}

#[derive(Deserialize, Default)]
struct ChangeForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    hours: String,
}

pub async fn end_binding(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: ChangeForm = form(&body);
    let (scope, tenant) =
        match writer_scope(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let Ok(id) = id.parse::<BindingId>() else {
        return not_found(&session).await;
    };
    match state.engine.unbind(tenant, id).await {
        Ok(_) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/bindings/{id}/end",
                id.to_string(),
                StatusCode::OK,
                peer.0,
            );
            done(&scope, "ended", id)
        }
        Err(maskline_engine::Error::BindingNotFound) => not_found(&session).await,
        Err(e) => refused(&state, &session, scope, &e).await,
    }
}

pub async fn extend_binding(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: ChangeForm = form(&body);
    let (scope, tenant) =
        match writer_scope(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let lang = session.lang.lang;
    let Ok(id) = id.parse::<BindingId>() else {
        return not_found(&session).await;
    };
    let Some(hours) = hours(&f.hours) else {
        return bindings_page(
            &state,
            &session,
            scope,
            BindingsQuery::default(),
            lang.text().invalid_hours.into(),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let current = match state.engine.binding(tenant, id).await {
        Ok(b) => b,
        Err(maskline_engine::Error::BindingNotFound) => return not_found(&session).await,
        Err(e) => return failed(&session, &e),
    };
    let expires_at: UnixTime = current.expires_at + hours * 3600;
    let patch = BindingPatch {
        expires_at: Some(expires_at),
        ..BindingPatch::default()
    };
    match state.engine.update_binding(tenant, id, patch).await {
        Ok(_) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/bindings/{id}/extend",
                id.to_string(),
                StatusCode::OK,
                peer.0,
            );
            done(&scope, "extended", id)
        }
        Err(maskline_engine::Error::BindingNotFound) => not_found(&session).await,
        Err(e) => refused(&state, &session, scope, &e).await,
    }
}

/// `POST /console/bindings/{id}/reveal`: one binding's numbers, whole, for
/// an operator, an owner or an admin; audited.
pub async fn reveal_binding(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: CsrfForm = form(&body);
    // Who may change a record may see its numbers (not a viewer).
    let (scope, tenant) =
        match writer_scope(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let Ok(id) = id.parse::<BindingId>() else {
        return not_found(&session).await;
    };
    let b = match state.engine.binding(tenant, id).await {
        Ok(b) => b,
        Err(maskline_engine::Error::BindingNotFound) => return not_found(&session).await,
        Err(e) => return failed(&session, &e),
    };
    let t = session.lang.lang.text();
    let fields = vec![
        (t.binding_id, b.id.to_string()),
        (t.x, b.x.to_string()),
        (t.a, b.a.to_string()),
        (t.b, b.b.map_or_else(|| "—".to_owned(), |n| n.to_string())),
        (t.external_ref, b.external_ref.clone().unwrap_or_default()),
    ];
    let back = href("/console/bindings", &[("tenant", scope.param())]);
    reveal(
        &state,
        &session,
        &scope,
        tenant,
        "POST /console/bindings/{id}/reveal",
        id.to_string(),
        fields,
        back,
        peer.0,
    )
}
