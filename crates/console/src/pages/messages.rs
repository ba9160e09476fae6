//! Texts: the tenant's inbox, newest first, with pick-up codes, and why a
//! text was held, blocked or failed; a held text released to the extension
//! it is for; one text's numbers and words shown whole.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maskline_core::sms::{Message, MessageReason, MessageStatus, Sender};
use maskline_core::{BindingId, Extension, MessageId, Number, Region};
use maskline_engine::store::{MessageFilter, Page};
use serde::Deserialize;

use super::{
    Chrome, CsrfForm, PAGE_ROWS, Peer, Scope, TenantOption, TenantParam, audit, day_end_cursor,
    day_start, failed, form, href, more, not_found, refusal, refusal_status, render, reveal, shown,
    time_ms, writer_scope,
};
use crate::ConsoleState;
use crate::auth::Session;
use crate::i18n::{Lang, Text};

struct MessageRow {
    id: String,
    time: String,
    x: String,
    from: String,
    to: String,
    pickup_code: String,
    text: String,
    status: &'static str,
    status_class: &'static str,
    reason: &'static str,
    held: bool,
}

fn status_label(t: &Text, s: MessageStatus) -> &'static str {
    match s {
        MessageStatus::Relayed => t.msg_relayed,
        MessageStatus::Held => t.msg_held,
        MessageStatus::Blocked => t.msg_blocked,
        MessageStatus::Delivered => t.msg_delivered,
        MessageStatus::Failed => t.msg_failed,
    }
}

fn status_class(s: MessageStatus) -> &'static str {
    match s {
        MessageStatus::Relayed | MessageStatus::Delivered => "active",
        MessageStatus::Held => "cooling",
        MessageStatus::Blocked | MessageStatus::Failed => "ended",
    }
}

pub fn reason_label(t: &Text, r: MessageReason) -> &'static str {
    match r {
        MessageReason::Marketing => t.why_marketing,
        MessageReason::TenantRule => t.why_tenant_rule,
        MessageReason::SmsDisabled => t.why_sms_disabled,
        MessageReason::DirectionForbidden => t.why_direction_forbidden,
        MessageReason::Expired => t.why_expired,
        MessageReason::NoBinding => t.why_no_binding,
        MessageReason::NoB => t.why_no_b,
        MessageReason::ExtensionUnknown => t.why_extension_unknown,
        MessageReason::Undeliverable => t.why_undeliverable,
        MessageReason::SubmitFailed => t.why_submit_failed,
    }
}

/// A text as a page may show it: every run of digits that reads as a
/// phone number masked (a party may type its own, or another's, number;
/// pick-up and verification codes are too short to read as one).
pub fn masked_text(text: &str, region: Region) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit() || c == '+') {
        out.push_str(&rest[..start]);
        let run = &rest[start..];
        let len = run
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '+')))
            .map_or(run.len(), |(i, _)| i);
        let token = &run[..len];
        let digits = token.trim_start_matches('+').len();
        match Number::parse(token, region) {
            Ok(n) if digits >= 7 => out.push_str(&n.masked().to_string()),
            _ => out.push_str(token),
        }
        rest = &run[len.max(1)..];
    }
    out.push_str(rest);
    out
}

impl MessageRow {
    fn new(m: &Message, lang: Lang, region: Region) -> MessageRow {
        let t = lang.text();
        MessageRow {
            id: m.id.to_string(),
            time: time_ms(lang, m.created_at),
            x: m.x.to_string(),
            from: match &m.from {
                Sender::Number(n) => n.masked().to_string(),
                Sender::Id(id) => id.as_str().to_owned(),
            },
            to: shown(m.to, None),
            pickup_code: m.pickup_code.clone().unwrap_or_default(),
            text: masked_text(&m.text, region),
            status: status_label(t, m.status),
            status_class: status_class(m.status),
            reason: m.reason.map_or("", |r| reason_label(t, r)),
            held: m.status == MessageStatus::Held,
        }
    }
}

#[derive(Template)]
#[template(path = "messages.html")]
struct MessagesPage {
    c: Chrome,
    tenants: Vec<TenantOption>,
    picked: bool,
    tenant_param: String,
    tenant_query: String,
    /// The one binding whose texts are listed; empty for all.
    binding: String,
    /// The days the list starts and ends (UTC); empty for no bound.
    from: String,
    until: String,
    all_href: String,
    may_write: bool,
    notice: String,
    error: String,
    q_status: String,
    statuses: Vec<(&'static str, &'static str)>,
    rows: Vec<MessageRow>,
    paged: bool,
    first_href: String,
    next_href: String,
}

#[derive(Deserialize, Default)]
pub struct MessagesQuery {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    status: String,
    #[serde(default)]
    after: String,
    /// A text just released: its notice.
    #[serde(default)]
    released: String,
    /// One binding's texts.
    #[serde(default)]
    binding: String,
    /// Texts on or after this day (UTC).
    #[serde(default)]
    from: String,
    /// Texts on or before this day (UTC).
    #[serde(default)]
    until: String,
}

pub async fn messages(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<MessagesQuery>,
) -> Response {
    let scope = match Scope::of(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    messages_page(&state, &session, scope, q, String::new(), StatusCode::OK).await
}

async fn messages_page(
    state: &ConsoleState,
    session: &Session,
    scope: Scope,
    q: MessagesQuery,
    mut error: String,
    mut code: StatusCode,
) -> Response {
    let lang = session.lang.lang;
    let t = lang.text();
    let status = MessageStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == q.status);
    let binding = q.binding.parse::<BindingId>().ok();
    let from = day_start(&q.from);
    let until = day_end_cursor(&q.until);
    if (until.is_err() || from.is_err()) && error.is_empty() {
        error = t.invalid_date.to_owned();
        code = StatusCode::BAD_REQUEST;
    }
    let from_shown = if from.is_ok() { q.from.trim() } else { "" };
    let until_shown = if until.is_ok() { q.until.trim() } else { "" };
    let list = |binding: Option<BindingId>, after: Option<MessageId>| {
        href(
            "/console/messages",
            &[
                ("tenant", scope.param()),
                (
                    "binding",
                    binding.map(|b| b.to_string()).unwrap_or_default(),
                ),
                (
                    "status",
                    status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                ),
                ("from", from_shown.to_owned()),
                ("until", until_shown.to_owned()),
                ("after", after.map(|a| a.to_string()).unwrap_or_default()),
            ],
        )
    };
    let mut rows = Vec::new();
    let mut next_href = String::new();
    let mut notice = String::new();
    if let Some(tenant) = scope.tenant
        && from.is_ok()
        && until.is_ok()
    {
        let filter = MessageFilter {
            status,
            binding,
            since: from.ok().flatten(),
            newest_first: true,
        };
        let page = Page {
            after: q
                .after
                .parse::<MessageId>()
                .ok()
                .or(until.ok().flatten().map(MessageId)),
            limit: PAGE_ROWS + 1,
        };
        let mut found = match state.engine.messages(tenant, &filter, page).await {
            Ok(f) => f,
            Err(e) => return failed(session, &e),
        };
        if let Some(last) = more(&mut found) {
            next_href = list(binding, Some(last.id));
        }
        rows = found
            .iter()
            .map(|m| MessageRow::new(m, lang, state.region))
            .collect();
        if let Ok(id) = q.released.parse::<MessageId>()
            && let Ok(m) = state.engine.message(tenant, id).await
        {
            notice = format!("{} {}", t.text_released, shown(m.to, None));
        }
    }
    let page = MessagesPage {
        c: Chrome::signed_in(session, "messages", &scope),
        picked: scope.tenant.is_some(),
        tenant_param: scope.param(),
        tenant_query: scope.query(),
        may_write: session.may_write(),
        notice,
        error,
        q_status: status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        statuses: MessageStatus::ALL
            .iter()
            .map(|&s| (s.as_str(), status_label(t, s)))
            .collect(),
        paged: !q.after.is_empty(),
        first_href: list(binding, None),
        binding: binding.map(|b| b.to_string()).unwrap_or_default(),
        from: from_shown.to_owned(),
        until: until_shown.to_owned(),
        all_href: list(None, None),
        next_href,
        rows,
        tenants: scope.options,
    };
    render(code, &page, session.lang, session.secure)
}

#[derive(Deserialize, Default)]
pub struct ReleaseForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    extension: String,
}

/// `POST /console/messages/{id}/release`: a held text relayed to the
/// binding on its X with the extension typed (an operator read it and
/// knows whom it is for). The same engine call as the API's; audited.
pub async fn release_message(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: ReleaseForm = form(&body);
    let (scope, tenant) =
        match writer_scope(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let lang = session.lang.lang;
    let Ok(id) = id.parse::<MessageId>() else {
        return not_found(&session).await;
    };
    let again = |scope, error: String, code| {
        messages_page(
            &state,
            &session,
            scope,
            MessagesQuery::default(),
            error,
            code,
        )
    };
    let Ok(extension) = f.extension.trim().parse::<Extension>() else {
        let error = lang.text().invalid_extension.to_owned();
        return again(scope, error, StatusCode::BAD_REQUEST).await;
    };
    match state.engine.release_text(tenant, id, extension).await {
        Ok(m) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/messages/{id}/release",
                m.id.to_string(),
                StatusCode::OK,
                peer.0,
            );
            let to = href(
                "/console/messages",
                &[("tenant", scope.param()), ("released", m.id.to_string())],
            );
            Redirect::to(&to).into_response()
        }
        Err(maskline_engine::Error::MessageNotFound) => not_found(&session).await,
        Err(e) => match refusal(lang, &e) {
            Some(error) => again(scope, error, refusal_status(&e)).await,
            None => failed(&session, &e),
        },
    }
}

/// `POST /console/messages/{id}/reveal`: one text's parties and words,
/// whole, for an operator, an owner or an admin; audited.
pub async fn reveal_message(
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
    let Ok(id) = id.parse::<MessageId>() else {
        return not_found(&session).await;
    };
    let m = match state.engine.message(tenant, id).await {
        Ok(m) => m,
        Err(maskline_engine::Error::MessageNotFound) => return not_found(&session).await,
        Err(e) => return failed(&session, &e),
    };
    let lang = session.lang.lang;
    let t = lang.text();
    let fields = vec![
        (t.message_id, m.id.to_string()),
        (t.time, time_ms(lang, m.created_at)),
        (t.x, m.x.to_string()),
        (t.from, m.from.to_string()),
        (t.to, m.to.map_or_else(|| "—".to_owned(), |n| n.to_string())),
        (t.text, m.text),
    ];
    let back = href("/console/messages", &[("tenant", scope.param())]);
    reveal(
        &state,
        &session,
        &scope,
        tenant,
        "POST /console/messages/{id}/reveal",
        id.to_string(),
        fields,
        back,
        peer.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_a_text_are_masked_and_codes_are_not() {
        let cn: Region = "CN".parse().unwrap();
        let cases = [
            (
                "取件码 8-2-3401，请到驿站取件",
                "取件码 8-2-3401，请到驿站取件",
            ),
            ("验证码 483920", "验证码 483920"),
            (
                "call me on 13812345678 now",
                "call me on +86138****5678 now",
            ),
            ("+8613812345678!", "+86138****5678!"),
            (
                "号码13812345678和13987654321",
                "号码+86138****5678和+86139****4321",
            ),
            ("code 12345678 ok", "code 12345678 ok"),
            ("", ""),
            ("+", "+"),
            ("++1", "++1"),
            ("电话：０１３８", "电话：０１３８"),
        ];
        for (text, want) in cases {
            assert_eq!(masked_text(text, cn), want, "{text:?}");
        }
    }
}
