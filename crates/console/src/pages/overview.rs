//! The overview: pool use per area.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Chrome, Scope, TenantOption, TenantParam, render};
use crate::ConsoleState;
use crate::auth::Session;

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
