//! Request metrics and the gauges computed at scrape time.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::AppState;

/// One span and one latency sample per request, labelled by the route
/// template (never the raw path, which may hold a number).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    // Label values must be bounded: a client can send any method name.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let span = tracing::info_span!("http", %method, %route);
    let start = Instant::now();
    let res = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    metrics::histogram!("maskline_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(elapsed.as_secs_f64());
    metrics::counter!("maskline_http_requests_total", "method" => method, "route" => route, "status" => status.to_string())
        .increment(1);
    span.in_scope(|| {
        tracing::debug!(
            status,
            latency_us = elapsed.as_micros() as u64,
            "request served"
        );
    });
    res
}

pub fn refresh_gauges(state: &AppState) {
    // 1 while the database is unreachable (the node routes from memory).
    metrics::gauge!("maskline_degraded")
        .set(f64::from(u8::from(state.engine.degraded().is_some())));
    if let Some(census) = state.engine.census() {
        for mode in maskline_core::Mode::ALL {
            for (s, status) in ["active", "cooling"].into_iter().enumerate() {
                metrics::gauge!("maskline_bindings", "mode" => mode.as_str(), "status" => status)
                    .set(census.live[mode as usize][s] as f64);
            }
        }
    }
    for p in state.engine.pool_stats() {
        let tenant = p.tenant.to_string();
        let area = p.area.map_or_else(String::new, |a| a.to_string());
        metrics::gauge!("maskline_pool_numbers", "tenant" => tenant.clone(), "area" => area.clone())
            .set(p.total as f64);
        metrics::gauge!("maskline_pool_numbers_in_use", "tenant" => tenant, "area" => area)
            .set(p.in_use as f64);
    }
}
