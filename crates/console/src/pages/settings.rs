//! Settings an owner keeps: the texts' prefix, the marketing filter and
//! the tenant's own rules.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maskline_core::sms::filter::{Filter, FilterMode, MAX_RULES, Rule, RuleAction};
use maskline_core::sms::{MAX_PREFIX_CHARS, Settings};
use serde::Deserialize;

use super::{
    Chrome, Peer, Scope, TenantOption, TenantParam, audit, failed, forbidden, form, manager_scope,
    render,
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
}

fn page(session: &Session, scope: Scope, shown: Shown, status: StatusCode) -> Response {
    let page = SettingsPage {
        c: Chrome::signed_in(session, "settings", &scope),
        picked: scope.tenant.is_some(),
        tenant_query: scope.query(),
        notice: shown.notice,
        error: shown.error,
        prefix: shown.prefix,
        filter_on: shown.filter_on,
        rules: shown.rules,
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
            page(&session, scope, shown, StatusCode::OK)
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
    if let Err(res) = session.check_csrf(f.csrf.as_deref()) {
        return res;
    }
    let scope = match manager_scope(&state, &session, q.tenant.as_deref()).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let lang = session.lang.lang;
    let t = lang.text();
    let Some(tenant) = scope.tenant else {
        return forbidden(lang, t.admin_pick_tenant);
    };
    let prefix = f.prefix.trim().to_owned();
    let as_posted = |notice: String, error: String| Shown {
        notice,
        error,
        prefix: prefix.clone(),
        filter_on: f.marketing_filter.is_some(),
        rules: f.rules.clone(),
    };
    if let Some(error) = refused(t, &prefix, &f.rules) {
        return page(
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
            let shown = Shown {
                notice: t.settings_saved.to_owned(),
                ..stored(&state, &scope)
            };
            page(&session, scope, shown, StatusCode::OK)
        }
        Err(e) => failed(lang, &e),
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
}
