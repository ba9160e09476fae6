//! The HTTP API (axum): tenants, numbers, bindings, call records, texts,
//! route decisions for switches, health, metrics and the OpenAPI description.
//!
//! - [`handlers`]: one function per endpoint, each annotated for OpenAPI.
//! - [`extract`]: body, query and auth extractors that refuse precisely.
//! - [`problem`]: the one mapping from errors to `application/problem+json`.
//! - [`prompts`]: tenants' prompt recordings (WAV bodies).
//! - [`types`]: the JSON request and response bodies.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use maskline_core::Region;
use maskline_engine::Engine;
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod audit;
pub mod edge;
pub mod extract;
pub mod handlers;
pub mod keys;
mod metrics;
pub mod problem;
pub mod prompts;
mod recordings;
pub mod types;
pub mod users;

use problem::Problem;

/// Largest request body (a 10,000-number import fits comfortably).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub region: Region,
    pub switch_key_hash: Option<[u8; 32]>,
    pub prometheus: Option<PrometheusHandle>,
    /// Where webhook and intercept URLs may point.
    pub callbacks: maskline_callbacks::Guard,
    pub edge: edge::EdgeConfig,
    pub rate_limits: Arc<edge::RateLimits>,
    /// `MASKLINE_METRICS_KEY`'s hash: `/metrics` wants it as bearer.
    pub metrics_key_hash: Option<[u8; 32]>,
}

impl AppState {
    pub fn new(
        engine: Arc<Engine>,
        region: Region,
        switch_key: Option<&str>,
        prometheus: Option<PrometheusHandle>,
        callbacks: maskline_callbacks::Guard,
    ) -> AppState {
        AppState {
            engine,
            region,
            switch_key_hash: switch_key.map(|k| sha256(k.as_bytes())),
            prometheus,
            callbacks,
            rate_limits: Arc::new(edge::RateLimits::new(
                edge::EdgeConfig::default().rate_limit,
            )),
            edge: edge::EdgeConfig::default(),
            metrics_key_hash: None,
        }
    }

    /// The HTTP edge's limits, and the key `/metrics` wants.
    pub fn with_edge(mut self, edge: edge::EdgeConfig, metrics_key: Option<&str>) -> AppState {
        self.rate_limits = Arc::new(edge::RateLimits::new(edge.rate_limit));
        self.edge = edge;
        self.metrics_key_hash = metrics_key.map(|k| sha256(k.as_bytes()));
        self
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Maskline",
        description = "Privacy numbers: bind a virtual number X between real numbers, route calls and texts through it.",
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "tenants", description = "Platforms using Maskline (admin key)"),
        (name = "console", description = "Console accounts"),
        (name = "numbers", description = "A tenant's pool of virtual numbers"),
        (name = "bindings", description = "X bound between parties"),
        (name = "calls", description = "Call detail records"),
        (name = "events", description = "Events, the webhook that receives them, the intercept callback"),
        (name = "routing", description = "Decisions for external switches (switch key)"),
        (name = "prompts", description = "What callers hear: a tenant's own recordings in place of the built-in prompts"),
        (name = "sms", description = "Texts through X: gateways' inbound texts, the pick-up-code inbox, the marketing filter"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        for name in ["admin_key", "tenant_key", "switch_key"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The router and the OpenAPI document, built from the same registrations.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The API's router with `pages` (the web console) beside it, under the
/// same edge: request timeout, metrics, body limit.
pub fn router_with(state: AppState, pages: Router) -> Router {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::create_tenant, handlers::list_tenants))
        .routes(routes!(handlers::patch_tenant))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(users::delete_user))
        .routes(routes!(audit::list_audit))
        .routes(routes!(handlers::import_numbers, handlers::list_numbers))
        .routes(routes!(handlers::retire_number))
        .routes(routes!(handlers::create_binding, handlers::list_bindings))
        .routes(routes!(
            handlers::get_binding,
            handlers::patch_binding,
            handlers::delete_binding
        ))
        .routes(routes!(handlers::list_calls))
        .routes(routes!(
            recordings::get_recording,
            recordings::delete_recording
        ))
        .routes(routes!(
            handlers::put_webhook,
            handlers::get_webhook,
            handlers::delete_webhook
        ))
        .routes(routes!(handlers::rotate_webhook_secret))
        .routes(routes!(handlers::list_events))
        .routes(routes!(handlers::get_event))
        .routes(routes!(handlers::redeliver_event))
        .routes(routes!(handlers::route))
        .routes(routes!(handlers::sms_inbound))
        .routes(routes!(handlers::list_messages))
        .routes(routes!(handlers::list_binding_messages))
        .routes(routes!(handlers::release_message))
        .routes(routes!(handlers::list_party_bindings))
        .routes(routes!(recordings::erase_party))
        .routes(routes!(
            handlers::put_sms_settings,
            handlers::get_sms_settings
        ))
        .routes(routes!(handlers::put_call_rules, handlers::get_call_rules))
        .routes(routes!(prompts::list_prompts))
        .routes(routes!(prompts::put_prompt, prompts::delete_prompt))
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::metrics))
        .split_for_parts();
    let spec = Arc::new(api.to_pretty_json().unwrap_or_default());
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let spec = spec.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        spec.as_str().to_owned(),
                    )
                }
            }),
        )
        .with_state(state.clone())
        .merge(pages)
        .fallback(|| async { Problem::not_found("resource") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this resource does not support that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.edge.request_timeout,
            edge::request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes
/// the requests in progress.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    pages: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.edge.clone();
    edge::serve_with_limits(listener, router_with(state, pages), &config, shutdown).await
}
