//! The console's pages. Each handler reads through the engine with the
//! signed-in user's tenant (an admin picks one), renders a template, and
//! turns every refusal into a page in the user's language here.
//!
//! - [`overview`]: calls and texts per minute, the webhook backlog, pool use.
//! - [`numbers`]: the pool; an owner's CSV import and retirement.
//! - [`bindings`]: search, create, extend, end.
//! - [`calls`]: CDRs by party, recordings played in the page.
//! - [`messages`]: the texts, pick-up codes, why one was held or blocked.
//! - [`events`]: events and their webhook delivery; redelivery.
//! - [`settings`]: an owner's SMS settings (prefix, filter, rules).
//! - [`admin`]: an owner's keys, users and audit log.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maskline_core::TenantId;
use maskline_store::{AuditEntry, Role};
use serde::Deserialize;

use crate::ConsoleState;
use crate::assets;
use crate::auth::{Language, Session};
use crate::i18n::{Lang, Text};

pub mod admin;
pub mod bindings;
pub mod calls;
pub mod events;
pub mod messages;
pub mod numbers;
pub mod overview;
pub mod prompts;
pub mod settings;
pub mod tenants;
pub mod webhook;

pub use admin::{audit_log, create_key, create_user, keys, remove_user, revoke_key, users};
pub use bindings::{
    bindings, create_binding, end_binding, extend_binding, reveal_binding, search_bindings,
};
pub use calls::{calls, recording, reveal_call, search_calls};
pub use events::{events, redeliver};
pub use messages::{messages, release_message, reveal_message};
pub use numbers::{import as import_numbers, numbers, retire as retire_number};
pub use overview::overview;
pub use prompts::{play_prompt, put_prompt, revert_prompt};
pub use settings::{save_call_rules, save_settings, settings};
pub use tenants::{create_tenant, set_rate, tenants};
pub use webhook::{delete_webhook, rotate_secret, save_webhook};

/// Rows on one page of a list.
const PAGE_ROWS: u32 = 50;

/// What every page's frame shows.
pub struct Chrome {
    pub t: &'static Text,
    pub lang_code: &'static str,
    pub css: String,
    pub htmx: String,
    pub js: String,
    pub signed_in: bool,
    pub email: String,
    pub role: &'static str,
    pub csrf: String,
    pub section: &'static str,
    /// Keys, users and the audit log are in the menu.
    pub manager: bool,
    /// Tenants are in the menu.
    pub admin: bool,
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
            js: assets::url("console.js"),
            signed_in: false,
            email: String::new(),
            role: "",
            csrf: String::new(),
            section: "",
            manager: false,
            admin: false,
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
            manager: session.may_manage(),
            admin: session.user.role == Role::Admin,
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

/// An error page for a signed-in user: with the menu, so that the way on
/// is one click.
fn signed_in_message(
    session: &Session,
    status: StatusCode,
    title: &'static str,
    text: String,
) -> Response {
    let scope = Scope {
        tenant: session.user.tenant,
        options: Vec::new(),
        admin: session.user.role == Role::Admin,
    };
    let page = MessagePage {
        c: Chrome::signed_in(session, "", &scope),
        title,
        message: text,
        kind: "error",
        back: "/console",
    };
    render(status, &page, session.lang, session.secure)
}

fn forbidden(session: &Session, text: &str) -> Response {
    let t = session.lang.lang.text();
    signed_in_message(
        session,
        StatusCode::FORBIDDEN,
        t.forbidden_title,
        text.into(),
    )
}

/// `429` with `Retry-After`: the tenant is over its request rate.
pub fn rate_limited(session: &Session, secs: u64) -> Response {
    let t = session.lang.lang.text();
    let mut res = signed_in_message(
        session,
        StatusCode::TOO_MANY_REQUESTS,
        t.rate_limited_title,
        t.rate_limited.replace("{}", &secs.to_string()),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// Any other path under `/console`: `404`, with the menu when signed in.
pub async fn unknown_path(lang: Language, session: Result<Session, Response>) -> Response {
    match session {
        Ok(session) => not_found(&session).await,
        Err(_) => {
            let t = lang.lang.text();
            message(
                StatusCode::NOT_FOUND,
                lang.lang,
                t.not_found_title,
                t.not_found.into(),
            )
        }
    }
}

pub async fn not_found(session: &Session) -> Response {
    let t = session.lang.lang.text();
    signed_in_message(
        session,
        StatusCode::NOT_FOUND,
        t.not_found_title,
        t.not_found.into(),
    )
}

/// Logs a failure the user cannot act on and answers the generic page,
/// with the menu.
fn failed(session: &Session, e: &maskline_engine::Error) -> Response {
    tracing::error!(error = %e, "console request failed");
    let t = session.lang.lang.text();
    signed_in_message(
        session,
        StatusCode::INTERNAL_SERVER_ERROR,
        t.error_title,
        t.error_internal.into(),
    )
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
            .map_err(|e| failed(session, &e))?;
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

/// A form with nothing but its token.
#[derive(Deserialize, Default)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: Option<String>,
}

/// A form body; one that does not parse is a form without fields (so
/// without its CSRF token: `403`).
fn form<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> T {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// A multipart form of a file and its CSRF token (`csrf`, `file`).
#[derive(Default)]
struct Upload {
    csrf: Option<String>,
    file: Option<Bytes>,
    /// The body was cut off at the size limit: there is no file.
    too_large: bool,
}

type MultipartBody = Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>;

/// Reads an upload. A body that is not multipart, or breaks off, is a form
/// without its token (unless the token came first).
async fn upload(multipart: MultipartBody) -> Upload {
    let mut up = Upload::default();
    let Ok(mut multipart) = multipart else {
        return up;
    };
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or("").to_owned();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => {
                up.too_large = e.status() == StatusCode::PAYLOAD_TOO_LARGE;
                break;
            }
        };
        match name.as_str() {
            "csrf" => up.csrf = String::from_utf8(bytes.to_vec()).ok(),
            "file" => up.file = Some(bytes),
            _ => {}
        }
    }
    up
}

/// The checks every post makes before it reads anything, in order: the
/// form's token, the user's role (`allowed`, else `refused` is the page's
/// text), the tenant.
async fn post_scope(
    state: &ConsoleState,
    session: &Session,
    csrf: Option<&str>,
    tenant: Option<&str>,
    allowed: bool,
    refused: &'static str,
) -> Result<(Scope, TenantId), Response> {
    session.check_csrf(csrf)?;
    if !allowed {
        return Err(forbidden(session, refused));
    }
    let scope = Scope::of(state, session, tenant).await?;
    match scope.tenant {
        Some(t) => Ok((scope, t)),
        None => Err(forbidden(
            session,
            session.lang.lang.text().admin_pick_tenant,
        )),
    }
}

/// [`post_scope`] for a change to a tenant's records (not a viewer's).
async fn writer_scope(
    state: &ConsoleState,
    session: &Session,
    csrf: Option<&str>,
    tenant: Option<&str>,
) -> Result<(Scope, TenantId), Response> {
    let refused = session.lang.lang.text().read_only;
    post_scope(state, session, csrf, tenant, session.may_write(), refused).await
}

/// [`post_scope`] for what a tenant's manager (owner or admin) changes.
async fn manager_write(
    state: &ConsoleState,
    session: &Session,
    csrf: Option<&str>,
    tenant: Option<&str>,
) -> Result<(Scope, TenantId), Response> {
    let refused = session.lang.lang.text().owners_only;
    post_scope(state, session, csrf, tenant, session.may_manage(), refused).await
}

/// The scope of a page only a manager (owner or admin) sees, or the
/// refusal.
async fn manager_scope(
    state: &ConsoleState,
    session: &Session,
    tenant: Option<&str>,
) -> Result<Scope, Response> {
    if !session.may_manage() {
        return Err(forbidden(session, session.lang.lang.text().owners_only));
    }
    Scope::of(state, session, tenant).await
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
        E::Domain(D::ModeConflict) => t.refused_mode_conflict,
        E::Domain(D::NumberHeld) => t.refused_number_held,
        E::Domain(D::ExtensionTaken) => t.refused_extension_taken,
        E::Domain(D::CapacityExceeded) => t.refused_capacity,
        E::Domain(D::NumberNotFound) => t.refused_number_not_found,
        E::Domain(D::InvalidArea) => t.invalid_area,
        E::BindingNotActive => t.refused_not_active,
        E::ExpiryInPast | E::ExpiryTooFar { .. } => t.refused_expiry,
        E::BindingNotFound => t.not_found,
        E::UnknownExtension => t.refused_unknown_extension,
        E::MessageNotHeld => t.refused_not_held,
        E::ReleaseBlocked(r) => {
            let why = messages::reason_label(t, *r);
            return Some(format!("{} ({why})", t.refused_release_blocked));
        }
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
        E::Domain(
            D::PoolExhausted
            | D::PartyConflict
            | D::NumberHeld
            | D::ExtensionTaken
            | D::ModeConflict
            | D::CapacityExceeded,
        )
        | E::BindingNotActive
        | E::MessageNotHeld => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

#[derive(Template)]
#[template(path = "reveal.html")]
struct RevealPage {
    c: Chrome,
    fields: Vec<(&'static str, String)>,
    back: String,
}

/// A record's numbers, whole, after its audit entry was queued. Answered to
/// the form's post only: never at an address that could be kept or shared.
#[allow(clippy::too_many_arguments)]
fn reveal(
    state: &ConsoleState,
    session: &Session,
    scope: &Scope,
    tenant: TenantId,
    action: &str,
    object: String,
    fields: Vec<(&'static str, String)>,
    back: String,
    source: Option<String>,
) -> Response {
    audit(
        state,
        session,
        tenant,
        action,
        object,
        StatusCode::OK,
        source,
    );
    let page = RevealPage {
        c: Chrome::signed_in(session, "", scope),
        fields,
        back,
    };
    render(StatusCode::OK, &page, session.lang, session.secure)
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

/// A list's address: `path` with the non-empty `params`.
fn href(path: &str, params: &[(&str, String)]) -> String {
    let params: Vec<_> = params.iter().filter(|(_, v)| !v.is_empty()).collect();
    match serde_urlencoded::to_string(&params) {
        Ok(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_owned(),
    }
}

/// The party a list is filtered by: sealed in a link (`pq`), or as typed
/// (`party`). `Err` for one that does not read as a number, or a seal of
/// another session: the list then shows nothing.
fn party_filter(
    state: &ConsoleState,
    session: &Session,
    pq: &str,
    party: &str,
) -> Result<Option<maskline_core::Number>, ()> {
    let raw = if pq.is_empty() {
        party.trim().to_owned()
    } else {
        crate::auth::open_query(&session.query_key, pq).ok_or(())?
    };
    if raw.is_empty() {
        return Ok(None);
    }
    maskline_core::Number::parse(&raw, state.region)
        .map(Some)
        .map_err(|_| ())
}

/// A party for a link: sealed for this session (empty for none).
fn sealed_party(session: &Session, party: Option<maskline_core::Number>) -> String {
    party.map_or_else(String::new, |p| {
        crate::auth::seal_query(&session.query_key, &p.to_string())
    })
}

/// A list read with one row more than a page: cuts it to the page and
/// returns its last row when there is a next page to link to.
fn more<T>(found: &mut Vec<T>) -> Option<&T> {
    if found.len() <= PAGE_ROWS as usize {
        return None;
    }
    found.truncate(PAGE_ROWS as usize);
    found.last()
}

/// The cursor that starts a newest-first list at the end of a day (UTC,
/// `YYYY-MM-DD` as a date input sends it): ids are UUIDv7, so every id
/// below it was made before the next day began. `Ok(None)` for no date;
/// `Err` for one that does not read.
fn day_end_cursor(date: &str) -> Result<Option<u128>, ()> {
    let Some(day) = day(date)? else {
        return Ok(None);
    };
    let ms = day_start_ms(day.next_day().ok_or(())?)?;
    Ok(Some(maskline_engine::store::first_id_at(ms)))
}

/// The start of a `YYYY-MM-DD` day (UTC) in milliseconds: where a list
/// that begins on that day starts. Empty input is no bound.
fn day_start(date: &str) -> Result<Option<i64>, ()> {
    day(date)?.map(day_start_ms).transpose()
}

fn day(date: &str) -> Result<Option<time::Date>, ()> {
    let date = date.trim();
    if date.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(date, &format).map(Some).map_err(|_| ())
}

fn day_start_ms(day: time::Date) -> Result<i64, ()> {
    let secs = day.midnight().assume_utc().unix_timestamp();
    if secs < 0 {
        return Err(());
    }
    secs.checked_mul(1000).ok_or(())
}

/// A time in milliseconds, for the page's language.
fn time_ms(lang: Lang, ms: i64) -> String {
    lang.time(ms.div_euclid(1000))
}

/// A party as a page may show it: masked, or what erasure left of it.
fn shown(n: Option<maskline_core::Number>, erased: Option<&String>) -> String {
    match (n, erased) {
        (Some(n), _) => n.masked().to_string(),
        (None, Some(mask)) => mask.clone(),
        (None, None) => "—".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_ends_where_the_next_days_ids_begin() {
        assert_eq!(day_end_cursor(""), Ok(None));
        assert_eq!(day_end_cursor("  "), Ok(None));
        // 2026-12-08T00:00:00Z is 1,796,688,000 s after the epoch.
        let end = day_end_cursor("2026-12-07").unwrap().unwrap();
        assert_eq!(end >> 80, 1_796_688_000_000);
        let last_of_day = (1_796_687_999_999u128 << 80) | (0x7 << 76) | 0xffff;
        let first_of_next = 1_796_688_000_000u128 << 80 | (0x7 << 76);
        assert!(last_of_day < end && first_of_next >= end);
        for bad in ["2026-13-01", "07/12/2026", "yesterday", "2026-02-30"] {
            assert_eq!(day_end_cursor(bad), Err(()), "{bad}");
        }
    }

    #[test]
    fn a_day_starts_at_its_utc_midnight() {
        assert_eq!(day_start(""), Ok(None));
        assert_eq!(day_start("2026-12-08"), Ok(Some(1_796_688_000_000)));
        assert_eq!(day_start(" 1970-01-01 "), Ok(Some(0)));
        for bad in ["1969-12-31", "2026-13-01", "8.12.2026", "2026-02-30"] {
            assert_eq!(day_start(bad), Err(()), "{bad}");
        }
    }
}
