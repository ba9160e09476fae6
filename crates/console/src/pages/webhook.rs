//! The webhook, in an owner's settings: where events are sent, which types,
//! the call intercept; a new signing secret; removal. The same checks and
//! engine calls as `PUT`/`DELETE /v1/webhook` and its rotate-secret: a URL
//! on a private or local network is refused unless the operator allows it.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maskline_callbacks::Refused;
use maskline_core::{EventPattern, TenantId};
use maskline_engine::{
    DEFAULT_INTERCEPT_TIMEOUT_MS, INTERCEPT_TIMEOUT_MS, MAX_EVENT_PATTERNS, WebhookSpec,
};
use maskline_store::{Fallback, Intercept, Webhook};
use serde::Deserialize;

use super::settings::{Said, settings_page};
use super::{CsrfForm, Peer, TenantParam, audit, failed, form, manager_write};
use crate::ConsoleState;
use crate::auth::Session;
use crate::i18n::Text;

/// The webhook's form as shown: the stored one, or what was posted.
#[derive(Default)]
pub struct WebhookShown {
    pub set: bool,
    pub url: String,
    pub events: String,
    pub intercept_url: String,
    pub deny_on_failure: bool,
    pub timeout_ms: String,
    /// A signing secret just made: shown this once.
    pub secret: String,
}

impl WebhookShown {
    pub fn stored(state: &ConsoleState, tenant: Option<TenantId>) -> WebhookShown {
        let Some(w) = tenant.and_then(|t| state.engine.webhook(t)) else {
            return WebhookShown {
                timeout_ms: DEFAULT_INTERCEPT_TIMEOUT_MS.to_string(),
                ..WebhookShown::default()
            };
        };
        WebhookShown {
            set: true,
            url: w.url.clone(),
            events: w
                .events
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect::<Vec<_>>()
                .join(" "),
            intercept_url: w
                .intercept
                .as_ref()
                .map(|i| i.url.clone())
                .unwrap_or_default(),
            deny_on_failure: w
                .intercept
                .as_ref()
                .is_some_and(|i| i.fallback == Fallback::Deny),
            timeout_ms: w
                .intercept
                .as_ref()
                .map_or(DEFAULT_INTERCEPT_TIMEOUT_MS, |i| i.timeout_ms)
                .to_string(),
            secret: String::new(),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct WebhookForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    url: String,
    #[serde(default)]
    events: String,
    #[serde(default)]
    intercept_url: String,
    /// `deny` or `allow`.
    #[serde(default)]
    intercept_fallback: String,
    #[serde(default)]
    intercept_timeout_ms: String,
}

/// A callback URL through the same check as the API's.
async fn checked_url(state: &ConsoleState, t: &Text, raw: &str) -> Result<String, String> {
    state.callbacks.accept(raw).await.map_err(|e| match e {
        Refused::Invalid(_) => t.invalid_url.to_owned(),
        Refused::NotAllowed(_) => t.url_not_allowed.to_owned(),
    })
}

/// Event types as typed: separated by spaces or commas.
fn patterns(raw: &str) -> Result<Vec<EventPattern>, ()> {
    let list: Vec<&str> = raw
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .collect();
    if list.len() > MAX_EVENT_PATTERNS {
        return Err(());
    }
    list.iter().map(|p| p.parse().map_err(|_| ())).collect()
}

/// The form's webhook; what reads without the network first, so that a
/// form refused for a typo never looks a name up.
async fn spec(state: &ConsoleState, t: &Text, f: &WebhookForm) -> Result<WebhookSpec, String> {
    let events = patterns(&f.events).map_err(|()| t.invalid_patterns.to_owned())?;
    let timeout_ms = match f.intercept_timeout_ms.trim() {
        "" => DEFAULT_INTERCEPT_TIMEOUT_MS,
        v => v
            .parse::<u32>()
            .ok()
            .filter(|ms| INTERCEPT_TIMEOUT_MS.contains(ms))
            .ok_or_else(|| t.invalid_timeout.to_owned())?,
    };
    let url = checked_url(state, t, &f.url).await?;
    let intercept = if f.intercept_url.trim().is_empty() {
        None
    } else {
        Some(Intercept {
            url: checked_url(state, t, &f.intercept_url).await?,
            fallback: if f.intercept_fallback == "deny" {
                Fallback::Deny
            } else {
                Fallback::Allow
            },
            timeout_ms,
        })
    };
    Ok(WebhookSpec {
        url,
        events,
        intercept,
    })
}

fn with_secret(state: &ConsoleState, tenant: TenantId, w: &Webhook) -> WebhookShown {
    WebhookShown {
        secret: w.secret.clone(),
        ..WebhookShown::stored(state, Some(tenant))
    }
}

/// `POST /console/settings/webhook`: sets the webhook, as
/// `PUT /v1/webhook`; a first one's signing secret is shown once.
pub async fn save_webhook(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: WebhookForm = form(&body);
    let (scope, tenant) =
        match manager_write(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let lang = session.lang.lang;
    let t = lang.text();
    let spec = match spec(&state, t, &f).await {
        Ok(s) => s,
        Err(error) => {
            let posted = WebhookShown {
                set: state.engine.webhook(tenant).is_some(),
                url: f.url.clone(),
                events: f.events.clone(),
                intercept_url: f.intercept_url.clone(),
                deny_on_failure: f.intercept_fallback == "deny",
                timeout_ms: f.intercept_timeout_ms.clone(),
                secret: String::new(),
            };
            let said = Said::error(error).with_webhook(posted);
            return settings_page(&state, &session, scope, said, StatusCode::BAD_REQUEST);
        }
    };
    let first = state.engine.webhook(tenant).is_none();
    match state.engine.put_webhook(tenant, spec).await {
        Ok(w) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/settings/webhook",
                "webhook".to_owned(),
                StatusCode::OK,
                peer.0,
            );
            let mut said = Said::notice(t.webhook_saved.to_owned());
            if first {
                said = said.with_webhook(with_secret(&state, tenant, &w));
            }
            settings_page(&state, &session, scope, said, StatusCode::OK)
        }
        Err(e) => failed(&session, &e),
    }
}

/// `POST /console/settings/webhook/rotate`: a new signing secret, shown
/// once; deliveries from now on are signed with it.
pub async fn rotate_secret(
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
    let lang = session.lang.lang;
    let t = lang.text();
    match state.engine.rotate_webhook_secret(tenant).await {
        Ok(w) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/settings/webhook/rotate",
                "webhook".to_owned(),
                StatusCode::OK,
                peer.0,
            );
            let said = Said::notice(t.secret_rotated.to_owned())
                .with_webhook(with_secret(&state, tenant, &w));
            settings_page(&state, &session, scope, said, StatusCode::OK)
        }
        Err(maskline_engine::Error::WebhookNotSet) => {
            let said = Said::error(t.no_webhook.to_owned());
            settings_page(&state, &session, scope, said, StatusCode::CONFLICT)
        }
        Err(e) => failed(&session, &e),
    }
}

/// `POST /console/settings/webhook/delete`: no more deliveries (events are
/// still kept and listed).
pub async fn delete_webhook(
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
    let lang = session.lang.lang;
    let t = lang.text();
    match state.engine.delete_webhook(tenant).await {
        Ok(()) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/settings/webhook/delete",
                "webhook".to_owned(),
                StatusCode::OK,
                peer.0,
            );
            let said = Said::notice(t.webhook_removed.to_owned());
            settings_page(&state, &session, scope, said, StatusCode::OK)
        }
        // Removed already: what was asked holds.
        Err(maskline_engine::Error::WebhookNotSet) => {
            let said = Said::notice(t.webhook_removed.to_owned());
            settings_page(&state, &session, scope, said, StatusCode::OK)
        }
        Err(e) => failed(&session, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_read_as_typed() {
        let p = patterns(" call.ended, sms.*\n*").unwrap();
        let shown: Vec<&str> = p.iter().map(EventPattern::as_str).collect();
        assert_eq!(shown, vec!["call.ended", "sms.*", "*"]);
        assert!(patterns("").unwrap().is_empty());
        assert_eq!(patterns("call.ended call.exploded"), Err(()));
        assert_eq!(patterns(&"* ".repeat(MAX_EVENT_PATTERNS + 1)), Err(()));
    }
}
