//! The console's pages. Each handler reads through the engine with the
//! signed-in user's tenant (an admin picks one), renders a template, and
//! turns every refusal into a page in the user's language here.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maskline_core::{
    Binding, BindingId, BindingStatus, Controls, Mode, Number, TenantId, UnixTime,
};
use maskline_engine::store::{BindingFilter, Page};
use maskline_engine::{BindingPatch, BindingSpec, Expiry};
use maskline_store::{AuditEntry, Role};
use serde::Deserialize;

use crate::ConsoleState;
use crate::assets;
use crate::auth::{Language, Session, open_query, seal_query};
use crate::i18n::{Lang, Text};

/// Rows on one page of a list.
const PAGE_ROWS: u32 = 50;
/// Longest lifetime a form may give or add, in hours (180 days).
const MAX_HOURS: i64 = 4320;
/// As the API: an `external_ref` is 1 to 128 characters.
const MAX_EXTERNAL_REF: usize = 128;

/// What every page's frame shows.
pub struct Chrome {
    pub t: &'static Text,
    pub lang_code: &'static str,
    pub css: String,
    pub htmx: String,
    pub signed_in: bool,
    pub email: String,
    pub role: &'static str,
    pub csrf: String,
    pub section: &'static str,
    /// `?tenant=…` for an admin's links, else empty.
    pub tenant_query: String,
}

impl Chrome {
    pub fn anonymous(lang: Lang) -> Chrome {
        Chrome {
            t: lang.text(),
            lang_code: lang.code(),
            css: assets::url("console.css"),
            htmx: assets::url("htmx.js"),
            signed_in: false,
            email: String::new(),
            role: "",
            csrf: String::new(),
            section: "",
            tenant_query: String::new(),
        }
    }

    fn signed_in(session: &Session, section: &'static str, scope: &Scope) -> Chrome {
        Chrome {
            signed_in: true,
            email: session.user.email.clone(),
            role: session.role_label(),
            csrf: session.csrf.clone(),
            section,
            tenant_query: scope.query(),
            ..Chrome::anonymous(session.lang.lang)
        }
    }
}

/// A rendered page with its status; sets the language cookie when the
/// switch was used.
pub fn render(status: StatusCode, page: &impl Template, lang: Language, secure: bool) -> Response {
    match page.render() {
        Ok(html) => {
            let mut res = (status, Html(html)).into_response();
            if lang.switched
                && let Ok(v) = crate::auth::set_cookie(
                    crate::auth::LANG_COOKIE,
                    lang.lang.param(),
                    Some(365 * 86_400),
                    secure,
                )
                .parse()
            {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    c: Chrome,
    title: &'static str,
    message: String,
    kind: &'static str,
    back: &'static str,
}

fn message(status: StatusCode, lang: Lang, title: &'static str, text: String) -> Response {
    let page = MessagePage {
        c: Chrome::anonymous(lang),
        title,
        message: text,
        kind: "error",
        back: "/console",
    };
    let lang = Language {
        lang,
        switched: false,
    };
    render(status, &page, lang, false)
}

/// `403` for a form without this session's (or the sign-in page's) token.
pub fn csrf_refused(lang: Lang) -> Response {
    let t = lang.text();
    message(
        StatusCode::FORBIDDEN,
        lang,
        t.forbidden_title,
        t.csrf_refused.into(),
    )
}

pub fn internal_error(lang: Lang) -> Response {
    let t = lang.text();
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        lang,
        t.error_title,
        t.error_internal.into(),
    )
}

fn forbidden(lang: Lang, text: &str) -> Response {
    message(
        StatusCode::FORBIDDEN,
        lang,
        lang.text().forbidden_title,
        text.into(),
    )
}

pub async fn not_found(lang: Language) -> Response {
    let t = lang.lang.text();
    message(
        StatusCode::NOT_FOUND,
        lang.lang,
        t.not_found_title,
        t.not_found.into(),
    )
}

/// Logs a failure the user cannot act on and answers the generic page.
fn failed(lang: Lang, e: &maskline_engine::Error) -> Response {
    tracing::error!(error = %e, "console request failed");
    internal_error(lang)
}

// === tenant scope ===

pub struct TenantOption {
    id: String,
    name: String,
    selected: bool,
}

/// Whose data a page shows: the user's tenant, or for an admin the one
/// picked with `?tenant=` (none until picked).
pub struct Scope {
    tenant: Option<TenantId>,
    /// An admin's choice of tenants; empty for everyone else.
    options: Vec<TenantOption>,
    admin: bool,
}

impl Scope {
    async fn of(
        state: &ConsoleState,
        session: &Session,
        asked: Option<&str>,
    ) -> Result<Scope, Response> {
        if session.user.role != Role::Admin {
            return Ok(Scope {
                tenant: session.user.tenant,
                options: Vec::new(),
                admin: false,
            });
        }
        let tenants = state
            .engine
            .tenants()
            .await
            .map_err(|e| failed(session.lang.lang, &e))?;
        let asked: Option<TenantId> = asked.and_then(|s| s.parse().ok());
        let tenant = asked.filter(|id| tenants.iter().any(|t| t.id == *id));
        let options = tenants
            .into_iter()
            .map(|t| TenantOption {
                id: t.id.to_string(),
                name: t.name,
                selected: Some(t.id) == tenant,
            })
            .collect();
        Ok(Scope {
            tenant,
            options,
            admin: true,
        })
    }

    fn query(&self) -> String {
        match (self.admin, self.tenant) {
            (true, Some(t)) => format!("?tenant={t}"),
            _ => String::new(),
        }
    }

    fn param(&self) -> String {
        match (self.admin, self.tenant) {
            (true, Some(t)) => t.to_string(),
            _ => String::new(),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct TenantParam {
    #[serde(default)]
    tenant: Option<String>,
}

// === overview ===

struct PoolRow {
    area: String,
    in_use: String,
    total: String,
    percent: u64,
    /// Width of the bar, out of 200.
    bar: u64,
    y: usize,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    c: Chrome,
    tenants: Vec<TenantOption>,
    picked: bool,
    pools: Vec<PoolRow>,
    chart_height: usize,
}

pub async fn overview(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
) -> Response {
    let scope = match Scope::of(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let lang = session.lang.lang;
    let t = lang.text();
    let mut stats: Vec<_> = state
        .engine
        .pool_stats()
        .into_iter()
        .filter(|p| Some(p.tenant) == scope.tenant)
        .collect();
    stats.sort_by(|a, b| a.area.cmp(&b.area));
    let pools: Vec<PoolRow> = stats
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let percent = (p.in_use * 100).checked_div(p.total).unwrap_or(0);
            PoolRow {
                area: p
                    .area
                    .as_ref()
                    .map_or_else(|| t.no_area.to_owned(), ToString::to_string),
                in_use: lang.int(p.in_use),
                total: lang.int(p.total),
                percent,
                bar: (p.in_use * 200).checked_div(p.total).unwrap_or(0),
                y: i * 22,
            }
        })
        .collect();
    let page = OverviewPage {
        c: Chrome::signed_in(&session, "overview", &scope),
        picked: scope.tenant.is_some(),
        chart_height: pools.len() * 22,
        pools,
        tenants: scope.options,
    };
    render(StatusCode::OK, &page, session.lang, session.secure)
}

// === bindings ===

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
}

impl BindingRow {
    /// Party numbers masked: the page is the same for every role.
    fn new(b: &Binding, status: BindingStatus, lang: Lang) -> BindingRow {
        let t = lang.text();
        BindingRow {
            id: b.id.to_string(),
            x: b.x.to_string(),
            extension: b.extension.map(|e| e.to_string()).unwrap_or_default(),
            a: b.a.masked().to_string(),
            b: b.b
                .map_or_else(|| "—".to_owned(), |n| n.masked().to_string()),
            mode: b.mode.as_str(),
            external_ref: b.external_ref.clone().unwrap_or_default(),
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
    /// A party number sealed for this session ([`seal_query`]).
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

impl BindingsQuery {
    /// The party searched for: `Err` for a sealed one this session cannot
    /// open.
    fn party(&self, session: &Session) -> Result<Option<String>, ()> {
        if !self.pq.is_empty() {
            return open_query(&session.query_key, &self.pq).map(Some).ok_or(());
        }
        Ok(Some(self.party.trim().to_owned()).filter(|p| !p.is_empty()))
    }
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
    let mut party_filter = None;
    if let Some(tenant) = scope.tenant {
        let party = match q.party(session) {
            Ok(p) => p.and_then(|p| {
                Number::parse(&p, state.region).ok().or_else(|| {
                    error = t.invalid_number.into();
                    None
                })
            }),
            Err(()) => {
                error = t.invalid_number.into();
                None
            }
        };
        let unreadable = !error.is_empty() && party.is_none();
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
        };
        party_masked = party.map(|p| p.masked().to_string()).unwrap_or_default();
        party_filter = party;
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
                Err(e) => return failed(lang, &e),
            };
            if found.len() > PAGE_ROWS as usize {
                found.truncate(PAGE_ROWS as usize);
                if let Some(last) = found.last() {
                    next_href = list_href(session, &scope, &q, party, Some(last.id));
                }
            }
            rows = found
                .iter()
                .map(|b| BindingRow::new(b, b.status(now, cooldown), lang))
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
        first_href: list_href(session, &scope, &q, party_filter, None),
        paged: !q.after.is_empty(),
        next_href,
        party_masked,
        q_ref: q.external_ref,
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
    let mut params: Vec<(&str, String)> = Vec::new();
    let tenant = scope.param();
    if !tenant.is_empty() {
        params.push(("tenant", tenant));
    }
    if let Some(p) = party {
        params.push(("pq", seal_query(&session.query_key, &p.to_string())));
    }
    for (k, v) in [
        ("external_ref", q.external_ref.trim()),
        ("status", q.status.trim()),
    ] {
        if !v.is_empty() {
            params.push((k, v.to_owned()));
        }
    }
    if let Some(id) = after {
        params.push(("after", id.to_string()));
    }
    let query = serde_urlencoded::to_string(&params).unwrap_or_default();
    if query.is_empty() {
        "/console/bindings".into()
    } else {
        format!("/console/bindings?{query}")
    }
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

/// A form body; one that does not parse is a form without fields (so
/// without its CSRF token: `403`).
fn form<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> T {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// The checks every write makes before it reads anything: the form's token,
/// the user's role and tenant.
async fn writer_scope(
    state: &ConsoleState,
    session: &Session,
    csrf: Option<&str>,
    tenant: Option<&str>,
) -> Result<(Scope, TenantId), Response> {
    session.check_csrf(csrf)?;
    let lang = session.lang.lang;
    if !session.may_write() {
        return Err(forbidden(lang, lang.text().read_only));
    }
    let scope = Scope::of(state, session, tenant).await?;
    match scope.tenant {
        Some(t) => Ok((scope, t)),
        None => Err(forbidden(lang, lang.text().admin_pick_tenant)),
    }
}

fn hours(raw: &str) -> Option<i64> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|h| (1..=MAX_HOURS).contains(h))
}

/// Why the engine refused, in the user's language.
fn refusal(lang: Lang, e: &maskline_engine::Error) -> Option<String> {
    use maskline_core::Error as D;
    use maskline_engine::Error as E;
    let t = lang.text();
    let text = match e {
        E::Domain(D::InvalidNumber) => t.invalid_number,
        E::Domain(D::MissingB) => t.refused_missing_b,
        E::Domain(D::SameParty) => t.refused_same_party,
        E::Domain(D::PartyIsVirtual) => t.refused_party_virtual,
        E::Domain(D::DestinationNotAllowed) => t.refused_destination,
        E::Domain(D::PoolExhausted) => t.refused_pool_exhausted,
        E::Domain(D::PartyConflict) => t.refused_party_conflict,
        E::BindingNotActive => t.refused_not_active,
        E::ExpiryInPast | E::ExpiryTooFar { .. } => t.refused_expiry,
        E::BindingNotFound => t.not_found,
        E::Domain(d) => return Some(format!("{} {d}", t.refused_other)),
        E::Store(_) => return None,
        other => return Some(format!("{} {other}", t.refused_other)),
    };
    Some(text.to_owned())
}

/// `409` for a refusal because of what exists, `400` for what was asked.
fn refusal_status(e: &maskline_engine::Error) -> StatusCode {
    use maskline_core::Error as D;
    use maskline_engine::Error as E;
    match e {
        E::Domain(D::PoolExhausted | D::PartyConflict | D::NumberHeld | D::ExtensionTaken)
        | E::BindingNotActive => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The client's IP address, for the audit log.
pub struct Peer(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
        ))
    }
}

/// An audit entry for a change a console user made.
fn audit(
    state: &ConsoleState,
    session: &Session,
    tenant: TenantId,
    action: &str,
    object: String,
    status: StatusCode,
    source: Option<String>,
) {
    state.engine.record_audit(AuditEntry {
        tenant,
        key: None,
        user: Some(session.user.id),
        action: action.to_owned(),
        object,
        status: status.as_u16(),
        at: unix_ms(),
        source,
    });
}

fn unix_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
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
        Err(e) => match refusal(lang, &e) {
            Some(error) => {
                bindings_page(
                    &state,
                    &session,
                    scope,
                    BindingsQuery::default(),
                    error,
                    refusal_status(&e),
                )
                .await
            }
            None => failed(lang, &e),
        },
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
    let lang = session.lang.lang;
    let Ok(id) = id.parse::<BindingId>() else {
        return not_found(session.lang).await;
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
        Err(maskline_engine::Error::BindingNotFound) => not_found(session.lang).await,
        Err(e) => match refusal(lang, &e) {
            Some(error) => {
                bindings_page(
                    &state,
                    &session,
                    scope,
                    BindingsQuery::default(),
                    error,
                    refusal_status(&e),
                )
                .await
            }
            None => failed(lang, &e),
        },
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
        return not_found(session.lang).await;
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
        Err(maskline_engine::Error::BindingNotFound) => return not_found(session.lang).await,
        Err(e) => return failed(lang, &e),
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
        Err(maskline_engine::Error::BindingNotFound) => not_found(session.lang).await,
        Err(e) => match refusal(lang, &e) {
            Some(error) => {
                bindings_page(
                    &state,
                    &session,
                    scope,
                    BindingsQuery::default(),
                    error,
                    refusal_status(&e),
                )
                .await
            }
            None => failed(lang, &e),
        },
    }
}
