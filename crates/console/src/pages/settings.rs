//! Settings an owner keeps: the texts' prefix, the marketing filter and
//! the tenant's own rules; the call rules (destinations, caps); the voice
//! prompts (`prompts.rs`).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maskline_core::sms::filter::{Filter, FilterMode, MAX_RULES, Rule, RuleAction};
use maskline_core::sms::{MAX_PREFIX_CHARS, Settings};
use serde::Deserialize;

use super::webhook::WebhookShown;
use super::{
    Chrome, Peer, Scope, TenantOption, TenantParam, audit, failed, form, manager_scope,
    manager_write, render,
};
use crate::ConsoleState;
use crate::auth::Session;
use crate::i18n::Text;

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    c: Chrome,
    tenants: Vec<TenantOption>,
    picked: bool,
    tenant_query: String,
    notice: String,
    error: String,
    prefix: String,
    filter_on: bool,
    rules: String,
    calls: CallsShown,
    webhook: WebhookShown,
    prompts: Vec<super::prompts::PromptRow>,
}

/// The call rules' form as shown.
struct CallsShown {
    allow: String,
    deny: String,
    max_concurrent: String,
    max_per_second: String,
    /// The tenant's calls now, over every node.
    in_progress: String,
    last_second: String,
}

/// Caps a form may set (as the API).
const CALL_CAP_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;

fn calls_shown(state: &ConsoleState, tenant: Option<maskline_core::TenantId>) -> CallsShown {
    let Some(tenant) = tenant else {
        return CallsShown {
            allow: String::new(),
            deny: String::new(),
            max_concurrent: String::new(),
            max_per_second: String::new(),
            in_progress: String::new(),
            last_second: String::new(),
        };
    };
    let rules = state.engine.call_rules(tenant);
    let load = state.engine.call_load(tenant);
    let list = |l: &[maskline_core::Prefix]| {
        l.iter()
            .map(|p| p.as_str().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let cap = |c: Option<u32>| c.map(|c| c.to_string()).unwrap_or_default();
    CallsShown {
        allow: list(&rules.allow_prefixes),
        deny: list(&rules.deny_prefixes),
        max_concurrent: cap(rules.caps.max_concurrent_calls),
        max_per_second: cap(rules.caps.max_calls_per_second),
        in_progress: load.active.to_string(),
        last_second: load.per_second.to_string(),
    }
}

/// The rules as the form shows them: `block <pattern>` or `allow
/// <pattern>`, one a line.
fn rules_text(filter: &Filter) -> String {
    filter
        .rules
        .iter()
        .map(|r| format!("{} {}", r.action.as_str(), r.pattern()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rules of the form's text, or the line (from 1) that does not read.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, usize> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (word, pattern) = line.split_once(char::is_whitespace).ok_or(i + 1)?;
        let action = match word {
            "block" => RuleAction::Block,
            "allow" => RuleAction::Allow,
            _ => return Err(i + 1),
        };
        rules.push(Rule::new(pattern.trim(), action).map_err(|_| i + 1)?);
    }
    Ok(rules)
}

struct Shown {
    notice: String,
    error: String,
    /// What the form holds: the stored settings, or what was posted.
    prefix: String,
    filter_on: bool,
    rules: String,
    calls: CallsShown,
    webhook: WebhookShown,
}

/// What a page says above its forms (and the webhook's form, when it is
/// not the stored one: as posted, or with a secret to show once).
pub struct Said {
    notice: String,
    error: String,
    webhook: Option<WebhookShown>,
}

impl Said {
    pub fn notice(notice: String) -> Said {
        Said {
            notice,
            error: String::new(),
            webhook: None,
        }
    }

    pub fn error(error: String) -> Said {
        Said {
            notice: String::new(),
            error,
            webhook: None,
        }
    }

    pub fn with_webhook(self, webhook: WebhookShown) -> Said {
        Said {
            webhook: Some(webhook),
            ..self
        }
    }
}

/// The settings as stored, under what a change just said.
pub fn settings_page(
    state: &ConsoleState,
    session: &Session,
    scope: Scope,
    said: Said,
    status: StatusCode,
) -> Response {
    let mut shown = Shown {
        notice: said.notice,
        error: said.error,
        ..stored(state, &scope)
    };
    if let Some(w) = said.webhook {
        shown.webhook = w;
    }
    page(state, session, scope, shown, status)
}

fn page(
    state: &ConsoleState,
    session: &Session,
    scope: Scope,
    shown: Shown,
    status: StatusCode,
) -> Response {
    let prompts = scope.tenant.map_or_else(Vec::new, |t| {
        super::prompts::rows(state, t, &scope.param(), session.lang.lang)
    });
    let page = SettingsPage {
        c: Chrome::signed_in(session, "settings", &scope),
        picked: scope.tenant.is_some(),
        tenant_query: scope.query(),
        notice: shown.notice,
        error: shown.error,
        prefix: shown.prefix,
        filter_on: shown.filter_on,
        rules: shown.rules,
        calls: shown.calls,
        webhook: shown.webhook,
        prompts,
        tenants: scope.options,
    };
    render(status, &page, session.lang, session.secure)
}

fn stored(state: &ConsoleState, scope: &Scope) -> Shown {
    let settings = scope
        .tenant
        .map(|t| state.engine.sms_settings(t))
        .unwrap_or_default();
    Shown {
        notice: String::new(),
        error: String::new(),
        prefix: settings.prefix.clone().unwrap_or_default(),
        filter_on: settings.filter.mode == FilterMode::Standard,
        rules: rules_text(&settings.filter),
        calls: calls_shown(state, scope.tenant),
        webhook: WebhookShown::stored(state, scope.tenant),
    }
}

pub async fn settings(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
) -> Response {
    match manager_scope(&state, &session, q.tenant.as_deref()).await {
        Ok(scope) => {
            let shown = stored(&state, &scope);
            page(&state, &session, scope, shown, StatusCode::OK)
        }
        Err(res) => res,
    }
}

#[derive(Deserialize, Default)]
struct SmsForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    prefix: String,
    /// The checkbox: present when on.
    #[serde(default)]
    marketing_filter: Option<String>,
    #[serde(default)]
    rules: String,
}

fn refused(t: &Text, prefix: &str, rules: &str) -> Option<String> {
    if prefix.chars().count() > MAX_PREFIX_CHARS {
        return Some(t.prefix_too_long.to_owned());
    }
    match parse_rules(rules) {
        Err(line) => Some(t.rule_line.replace("{}", &line.to_string())),
        Ok(r) if r.len() > MAX_RULES => Some(t.too_many_rules.to_owned()),
        Ok(_) => None,
    }
}

/// `POST /console/settings`: the SMS settings, as `PUT /v1/settings/sms`.
pub async fn save_settings(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: SmsForm = form(&body);
    let (scope, tenant) =
        match manager_write(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let lang = session.lang.lang;
    let t = lang.text();
    let prefix = f.prefix.trim().to_owned();
    let as_posted = |notice: String, error: String| Shown {
        notice,
        error,
        prefix: prefix.clone(),
        filter_on: f.marketing_filter.is_some(),
        rules: f.rules.clone(),
        calls: calls_shown(&state, Some(tenant)),
        webhook: WebhookShown::stored(&state, Some(tenant)),
    };
    if let Some(error) = refused(t, &prefix, &f.rules) {
        return page(
            &state,
            &session,
            scope,
            as_posted(String::new(), error),
            StatusCode::BAD_REQUEST,
        );
    }
    let rules = parse_rules(&f.rules).unwrap_or_default();
    let settings = Settings {
        prefix: Some(prefix.clone()).filter(|p| !p.is_empty()),
        filter: Filter {
            mode: if f.marketing_filter.is_some() {
                FilterMode::Standard
            } else {
                FilterMode::Off
            },
            rules,
        },
    };
    match state.engine.put_sms_settings(tenant, settings).await {
        Ok(()) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/settings",
                "sms".to_owned(),
                StatusCode::OK,
                peer.0,
            );
            let said = Said::notice(t.settings_saved.to_owned());
            settings_page(&state, &session, scope, said, StatusCode::OK)
        }
        Err(e) => failed(&session, &e),
    }
}

#[derive(Deserialize, Default)]
struct CallsForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    allow: String,
    #[serde(default)]
    deny: String,
    #[serde(default)]
    max_concurrent: String,
    #[serde(default)]
    max_per_second: String,
}

/// A cap as typed: empty for none; `Err` outside the range.
fn cap(raw: &str) -> Result<Option<u32>, ()> {
    match raw.trim() {
        "" => Ok(None),
        v => v
            .parse::<u32>()
            .ok()
            .filter(|v| CALL_CAP_RANGE.contains(v))
            .map(Some)
            .ok_or(()),
    }
}

/// Prefixes as typed: separated by spaces, commas or lines.
fn prefixes(raw: &str) -> Vec<String> {
    raw.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /console/settings/calls`: the call rules, as
/// `PUT /v1/settings/calls`.
pub async fn save_call_rules(
    State(state): State<ConsoleState>,
    session: Session,
    Query(q): Query<TenantParam>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let f: CallsForm = form(&body);
    let (scope, tenant) =
        match manager_write(&state, &session, f.csrf.as_deref(), q.tenant.as_deref()).await {
            Ok(s) => s,
            Err(res) => return res,
        };
    let lang = session.lang.lang;
    let t = lang.text();
    let parsed = maskline_core::CallRules::new(&prefixes(&f.allow), &prefixes(&f.deny))
        .map_err(|_| t.invalid_prefixes.to_owned())
        .and_then(|rules| {
            let caps = maskline_core::CallCaps {
                max_concurrent_calls: cap(&f.max_concurrent)
                    .map_err(|_| t.invalid_cap.to_owned())?,
                max_calls_per_second: cap(&f.max_per_second)
                    .map_err(|_| t.invalid_cap.to_owned())?,
            };
            Ok(rules.with_caps(caps))
        });
    let rules = match parsed {
        Ok(r) => r,
        Err(error) => {
            let mut shown = stored(&state, &scope);
            shown.error = error;
            shown.calls.allow = f.allow;
            shown.calls.deny = f.deny;
            shown.calls.max_concurrent = f.max_concurrent;
            shown.calls.max_per_second = f.max_per_second;
            return page(&state, &session, scope, shown, StatusCode::BAD_REQUEST);
        }
    };
    match state.engine.put_call_rules(tenant, rules).await {
        Ok(()) => {
            audit(
                &state,
                &session,
                tenant,
                "POST /console/settings/calls",
                "calls".to_owned(),
                StatusCode::OK,
                peer.0,
            );
            let said = Said::notice(t.settings_saved.to_owned());
            settings_page(&state, &session, scope, said, StatusCode::OK)
        }
        Err(e) => failed(&session, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_one_a_line_and_name_the_first_bad_one() {
        let rules = parse_rules("block 优惠|促销\n\n  allow 取件码 \n").unwrap();
        let shown: Vec<(&str, &str)> = rules
            .iter()
            .map(|r| (r.action.as_str(), r.pattern()))
            .collect();
        assert_eq!(shown, vec![("block", "优惠|促销"), ("allow", "取件码")]);
        assert_eq!(parse_rules("").unwrap().len(), 0);
        assert_eq!(parse_rules("block a\ndeny b").unwrap_err(), 2);
        assert_eq!(parse_rules("block").unwrap_err(), 1);
        assert_eq!(parse_rules("allow (unclosed").unwrap_err(), 1);
    }

    #[test]
    fn caps_and_prefixes_read_as_typed() {
        assert_eq!(cap(""), Ok(None));
        assert_eq!(cap(" 40 "), Ok(Some(40)));
        assert_eq!(cap("0"), Err(()));
        assert_eq!(cap("1000001"), Err(()));
        assert_eq!(cap("ten"), Err(()));
        assert_eq!(
            prefixes("+86, +852\n\n +1900 "),
            vec!["+86", "+852", "+1900"]
        );
        assert!(prefixes(" \n,").is_empty());
    }
}
