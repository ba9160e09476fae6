//! The overview: calls and texts per minute over the last 24 hours, the
//! webhook backlog, pool use per area.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Chrome, Scope, TenantOption, TenantParam, failed, render};
use crate::ConsoleState;
use crate::auth::Session;
use crate::chart::{self, Series};
use crate::i18n::Lang;

/// One chart of the overview.
struct Activity {
    id: &'static str,
    title: &'static str,
    /// What the chart shows, in words (its accessible description).
    summary: String,
    series: Series,
}

impl Activity {
    fn new(id: &'static str, title: &'static str, series: Series, lang: Lang) -> Activity {
        let t = lang.text();
        Activity {
            id,
            title,
            summary: format!(
                "{} {}{}{} {}",
                t.total_24h,
                lang.int(series.total),
                t.list_sep,
                t.peak_per_minute,
                lang.int(series.peak_per_minute)
            ),
            series,
        }
    }
}

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
    charts: Vec<Activity>,
    backlog: String,
    width: u32,
    height: u32,
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
    let mut charts = Vec::new();
    let mut backlog = String::new();
    if let Some(tenant) = scope.tenant {
        // The last 24 hours, from the start of the minute a day ago.
        let start = maskline_engine::now().div_euclid(60) - 1440 + 1;
        match state.engine.activity(tenant, start * 60_000).await {
            Ok(a) => {
                charts.push(Activity::new(
                    "calls",
                    t.calls_per_minute,
                    chart::series(&a.calls, start, 1440),
                    lang,
                ));
                charts.push(Activity::new(
                    "texts",
                    t.texts_per_minute,
                    chart::series(&a.texts, start, 1440),
                    lang,
                ));
                backlog = lang.int(a.pending_events);
            }
            Err(e) => return failed(&session, &e),
        }
    }
    let page = OverviewPage {
        c: Chrome::signed_in(&session, "overview", &scope),
        picked: scope.tenant.is_some(),
        chart_height: pools.len() * 22,
        pools,
        tenants: scope.options,
        charts,
        backlog,
        width: chart::WIDTH,
        height: chart::HEIGHT,
    };
    render(StatusCode::OK, &page, session.lang, session.secure)
}
