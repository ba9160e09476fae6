//! Events: the tenant's events newest first with their delivery to the
//! webhook (state, attempts, the last answer), and redelivery.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maskline_core::EventId;
use maskline_store::{DeliveryState, StoredEvent};
use serde::Deserialize;

use super::{
    Chrome, CsrfForm, PAGE_ROWS, Peer, Scope, TenantOption, TenantParam, audit, failed, form, href,
    more, not_found, render, time_ms, writer_scope,
};
use crate::ConsoleState;
use crate::auth::Session;
use crate::i18n::{Lang, Text};

struct EventRow {
    id: String,
    time: String,
    kind: &'static str,
    subject: String,
    state: &'static str,
    state_class: &'static str,
    attempts: u32,
    last: String,
    /// Whether it can be sent again (a webhook wanted it).
    redeliverable: bool,
}

fn state_label(t: &Text, s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::None => t.delivery_none,
        DeliveryState::Pending => t.delivery_pending,
        DeliveryState::Delivered => t.delivery_delivered,
        DeliveryState::Failed => t.delivery_failed,
    }
}

impl EventRow {
    fn new(e: &StoredEvent, lang: Lang) -> EventRow {
        let t = lang.text();
        let last = match (e.last_status, &e.last_error) {
            (Some(status), _) => format!("HTTP {status}"),
            (None, Some(error)) => error.clone(),
            (None, None) => String::new(),
        };
        EventRow {
            id: e.id.to_string(),
            time: time_ms(lang, e.created_at),
            kind: e.kind.as_str(),
            subject: uuid::Uuid::from_u128(e.subject).to_string(),
            state: state_label(t, e.state),
            state_class: match e.state {
                DeliveryState::Delivered => "active",
                DeliveryState::Pending => "cooling",
                DeliveryState::Failed | DeliveryState::None => "ended",
            },
            attempts: e.attempts,
            last,
            redeliverable: e.state != DeliveryState::None,
        }
    }
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    c: Chrome,
    tenants: Vec<TenantOption>,
    picked: bool,
    tenant_query: String,
    may_write: bool,
    notice: String,
    error: String,
    rows: Vec<EventRow>,
    paged: bool,
    first_href: String,
    next_href: String,
}

#[derive(Deserialize, Default)]
pub struct EventsQuery {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    before: String,
    /// Set by the redirect after a redelivery.
    #[serde(default)]
    redelivered: String,
}

pub async fn events(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<EventsQuery>,
) -> Response {
    let scope = match Scope::of(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let notice = if q.redelivered.is_empty() {
        String::new()
    } else {
        session.lang.lang.text().event_redelivered.to_owned()
    };
    events_page(
        &state,
        &session,
        scope,
        &q.before,
        notice,
        String::new(),
        StatusCode::OK,
    )
    .await
}

async fn events_page(
    state: &ConsoleState,
    session: &Session,
    scope: Scope,
    before: &str,
    notice: String,
    error: String,
    status: StatusCode,
) -> Response {
    let lang = session.lang.lang;
    let mut rows = Vec::new();
    let mut next_href = String::new();
    if let Some(tenant) = scope.tenant {
        let cursor = before.parse::<i64>().ok();
        let found = state
            .engine
            .recent_events(tenant, cursor, PAGE_ROWS + 1)
            .await;
        let mut found = match found {
            Ok(f) => f,
            Err(e) => return failed(session, &e),
        };
        if let Some(last) = more(&mut found) {
            next_href = href(
                "/console/events",
                &[("tenant", scope.param()), ("before", last.seq.to_string())],
            );
        }
        rows = found.iter().map(|e| EventRow::new(e, lang)).collect();
    }
    let page = EventsPage {
        c: Chrome::signed_in(session, "events", &scope),
        picked: scope.tenant.is_some(),
        tenant_query: scope.query(),
        may_write: session.may_write(),
        notice,
        error,
        paged: !before.is_empty(),
        first_href: href("/console/events", &[("tenant", scope.param())]),
        next_href,
        rows,
        tenants: scope.options,
    };
    render(status, &page, session.lang, session.secure)
}

/// `POST /console/events/{id}/redeliver`: queued again with a fresh retry
/// window, as `POST /v1/events/{id}/redeliver`.
pub async fn redeliver(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: CsrfForm = form(&body);
    let (scope, tenant) =
        match writer_scope(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
        return not_found(&session).await;
    };
    let event = EventId(uuid.as_u128());
    match state.engine.redeliver(tenant, event).await {
        Ok(_) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/events/{id}/redeliver",
                event.to_string(),
                StatusCode::OK,
                peer.0,
            );
            Redirect::to(&href(
                "/console/events",
                &[("tenant", scope.param()), ("redelivered", "1".to_owned())],
            ))
            .into_response()
        }
        Err(maskline_engine::Error::EventNotFound) => not_found(&session).await,
        Err(maskline_engine::Error::WebhookNotSet) => {
            let error = session.lang.lang.text().no_webhook.to_owned();
            events_page(
                &state,
                &session,
                scope,
                "",
                String::new(),
                error,
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => failed(&session, &e),
    }
}
