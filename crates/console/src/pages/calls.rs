//! Calls: the tenant's CDRs, newest first, by party; each with its
//! recording to play when the call was recorded.

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maskline_core::{BindingId, CallId, CallRecord, Direction, ReleaseReason};
use maskline_engine::store::{CallFilter, Page};
use serde::Deserialize;

use super::{
    Chrome, CsrfForm, PAGE_ROWS, Peer, Scope, TenantOption, TenantParam, day_end_cursor, day_start,
    failed, form, href, more, not_found, party_filter, render, reveal, sealed_party, shown,
    time_ms, writer_scope,
};
use crate::ConsoleState;
use crate::auth::Session;
use crate::i18n::{Lang, Text};

struct CallRow {
    id: String,
    time: String,
    x: String,
    caller: String,
    callee: String,
    direction: &'static str,
    duration: String,
    outcome: &'static str,
    answered: bool,
    /// How long the recording is; empty without one.
    recording: String,
}

pub fn direction_label(t: &Text, d: Option<Direction>) -> &'static str {
    match d {
        Some(Direction::AToB) => t.dir_a_to_b,
        Some(Direction::BToA) => t.dir_b_to_a,
        Some(Direction::NToA) => t.dir_n_to_a,
        None => "—",
    }
}

pub fn reason_label(t: &Text, r: ReleaseReason) -> &'static str {
    match r {
        ReleaseReason::Normal => t.reason_normal,
        ReleaseReason::Cancelled => t.reason_cancelled,
        ReleaseReason::Busy => t.reason_busy,
        ReleaseReason::Declined => t.reason_declined,
        ReleaseReason::NoAnswer => t.reason_no_answer,
        ReleaseReason::NotFound => t.reason_not_found,
        ReleaseReason::Failed => t.reason_failed,
        ReleaseReason::GatewayTimeout => t.reason_gateway_timeout,
        ReleaseReason::MaxDuration => t.reason_max_duration,
        ReleaseReason::PeerTimeout => t.reason_peer_timeout,
        ReleaseReason::MediaTimeout => t.reason_media_timeout,
        ReleaseReason::Refused => t.reason_refused,
        ReleaseReason::Shutdown => t.reason_shutdown,
        ReleaseReason::NodeRestart => t.reason_node_restart,
    }
}

impl CallRow {
    fn new(c: &CallRecord, recording_ms: Option<u64>, lang: Lang) -> CallRow {
        let t = lang.text();
        let talk = c
            .answered_at
            .map(|a| (c.ended_at - a).max(0) / 1000)
            .unwrap_or(0);
        CallRow {
            id: c.id.to_string(),
            time: time_ms(lang, c.invited_at),
            x: c.x.map_or_else(|| "—".to_owned(), |x| x.to_string()),
            caller: shown(c.caller, c.erased.caller.as_ref()),
            callee: shown(c.callee, c.erased.callee.as_ref()),
            direction: direction_label(t, c.direction),
            duration: if c.answered_at.is_some() {
                lang.duration(talk)
            } else {
                "—".to_owned()
            },
            outcome: reason_label(t, c.release_reason),
            answered: c.answered_at.is_some(),
            recording: recording_ms
                .map(|ms| lang.duration(i64::try_from(ms / 1000).unwrap_or(i64::MAX)))
                .unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "calls.html")]
struct CallsPage {
    c: Chrome,
    tenants: Vec<TenantOption>,
    picked: bool,
    tenant_query: String,
    party_masked: String,
    /// The one binding whose calls are listed; empty for all.
    binding: String,
    /// The days the list starts and ends (UTC); empty for no bound.
    from: String,
    until: String,
    all_href: String,
    error: String,
    may_reveal: bool,
    rows: Vec<CallRow>,
    paged: bool,
    first_href: String,
    next_href: String,
}

#[derive(Deserialize, Default)]
pub struct CallsQuery {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    party: String,
    #[serde(default)]
    pq: String,
    #[serde(default)]
    after: String,
    /// One binding's calls.
    #[serde(default)]
    binding: String,
    /// Calls on or after this day (UTC).
    #[serde(default)]
    from: String,
    /// Calls on or before this day (UTC).
    #[serde(default)]
    until: String,
}

pub async fn calls(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<CallsQuery>,
) -> Response {
    let scope = match Scope::of(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let lang = session.lang.lang;
    let t = lang.text();
    let mut rows = Vec::new();
    let mut error = String::new();
    let mut next_href = String::new();
    let mut party = None;
    let binding = q.binding.parse::<BindingId>().ok();
    let from = day_start(&q.from);
    let until = day_end_cursor(&q.until);
    let shown = Shown {
        binding,
        from: if from.is_ok() { q.from.trim() } else { "" },
        until: if until.is_ok() { q.until.trim() } else { "" },
    };
    if let Some(tenant) = scope.tenant {
        match party_filter(&state, &session, &q.pq, &q.party) {
            Ok(p) => party = p,
            Err(()) => error = t.invalid_number.to_owned(),
        }
        if until.is_err() || from.is_err() {
            error = t.invalid_date.to_owned();
        }
        if error.is_empty() {
            let filter = CallFilter {
                party,
                binding,
                since: from.ok().flatten(),
                newest_first: true,
                ..CallFilter::default()
            };
            let page = Page {
                after: q
                    .after
                    .parse::<CallId>()
                    .ok()
                    .or(until.ok().flatten().map(CallId)),
                limit: PAGE_ROWS + 1,
            };
            let mut found = match state.engine.calls(tenant, &filter, page).await {
                Ok(f) => f,
                Err(e) => return failed(&session, &e),
            };
            if let Some(last) = more(&mut found) {
                next_href = list_href(&session, &scope, party, &shown, Some(last.id));
            }
            let ids: Vec<CallId> = found.iter().map(|c| c.id).collect();
            let recordings = state.engine.recording_durations(tenant, &ids).await;
            rows = found
                .iter()
                .zip(recordings)
                .map(|(c, r)| CallRow::new(c, r, lang))
                .collect();
        }
    }
    let page = CallsPage {
        c: Chrome::signed_in(&session, "calls", &scope),
        picked: scope.tenant.is_some(),
        tenant_query: scope.query(),
        party_masked: party.map(|p| p.masked().to_string()).unwrap_or_default(),
        binding: binding.map(|b| b.to_string()).unwrap_or_default(),
        from: shown.from.to_owned(),
        until: shown.until.to_owned(),
        all_href: list_href(&session, &scope, party, &Shown::default(), None),
        error,
        may_reveal: session.may_write(),
        paged: !q.after.is_empty(),
        first_href: list_href(&session, &scope, party, &shown, None),
        next_href,
        rows,
        tenants: scope.options,
    };
    render(StatusCode::OK, &page, session.lang, session.secure)
}

/// The list's filters other than the party, as its links carry them.
#[derive(Default)]
struct Shown<'a> {
    binding: Option<BindingId>,
    /// Days that read, or empty.
    from: &'a str,
    until: &'a str,
}

fn list_href(
    session: &Session,
    scope: &Scope,
    party: Option<maskline_core::Number>,
    shown: &Shown<'_>,
    after: Option<CallId>,
) -> String {
    href(
        "/console/calls",
        &[
            ("tenant", scope.param()),
            (
                "binding",
                shown.binding.map(|b| b.to_string()).unwrap_or_default(),
            ),
            ("from", shown.from.to_owned()),
            ("until", shown.until.to_owned()),
            ("pq", sealed_party(session, party)),
            ("after", after.map(|a| a.to_string()).unwrap_or_default()),
        ],
    )
}

#[derive(Deserialize, Default)]
struct SearchForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    party: String,
    #[serde(default)]
    binding: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
}

/// `POST /console/calls/search`: as the bindings' search, the number goes
/// in a body and comes back sealed.
pub async fn search_calls(
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
    let party = party_filter(&state, &session, "", &f.party).ok().flatten();
    // As typed: the list says so of a party or a day that does not read.
    let shown = Shown {
        binding: f.binding.parse::<BindingId>().ok(),
        from: f.from.trim(),
        until: f.until.trim(),
    };
    if party.is_none() && !f.party.trim().is_empty() {
        let pq = crate::auth::seal_query(&session.query_key, f.party.trim());
        let to = list_href(&session, &scope, None, &shown, None);
        let sep = if to.contains('?') { '&' } else { '?' };
        return Redirect::to(&format!("{to}{sep}pq={pq}")).into_response();
    }
    Redirect::to(&list_href(&session, &scope, party, &shown, None)).into_response()
}

/// `GET /console/calls/{id}/recording`: the WAV, streamed, for `<audio>`.
pub async fn recording(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<TenantParam>,
) -> Response {
    let scope = match Scope::of(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let (Some(tenant), Ok(call)) = (scope.tenant, id.parse::<CallId>()) else {
        return not_found(&session).await;
    };
    let stream = match state.engine.recording(tenant, call).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_found(&session).await,
        Err(e) => return failed(&session, &e),
    };
    let (len, mut chunks) = (stream.len, stream.chunks);
    let body = futures_util::stream::poll_fn(move |cx| {
        chunks.poll_recv(cx).map(|c| c.map(|c| c.map(Bytes::from)))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// `POST /console/calls/{id}/reveal`: one CDR's numbers, whole, for an
/// operator, an owner or an admin; audited.
pub async fn reveal_call(
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
    let Ok(id) = id.parse::<CallId>() else {
        return not_found(&session).await;
    };
    // The one CDR whose id follows the one before it, in the tenant's list.
    let page = Page {
        after: id.0.checked_sub(1).map(CallId),
        limit: 1,
    };
    let call = match state
        .engine
        .calls(tenant, &CallFilter::default(), page)
        .await
    {
        Ok(found) => found.into_iter().find(|c| c.id == id),
        Err(e) => return failed(&session, &e),
    };
    let Some(c) = call else {
        return not_found(&session).await;
    };
    let lang = session.lang.lang;
    let t = lang.text();
    let whole = |n: Option<maskline_core::Number>, erased: Option<&String>| match n {
        Some(n) => n.to_string(),
        None => shown(None, erased),
    };
    let fields = vec![
        (t.call_id, c.id.to_string()),
        (t.time, time_ms(lang, c.invited_at)),
        (t.x, c.x.map_or_else(|| "—".to_owned(), |x| x.to_string())),
        (t.caller, whole(c.caller, c.erased.caller.as_ref())),
        (t.callee, whole(c.callee, c.erased.callee.as_ref())),
    ];
    let back = href("/console/calls", &[("tenant", scope.param())]);
    reveal(
        &state,
        &session,
        &scope,
        tenant,
        "POST /console/calls/{id}/reveal",
        id.to_string(),
        fields,
        back,
        peer.0,
    )
}
