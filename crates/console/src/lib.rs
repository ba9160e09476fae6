//! The web console ("The console contract" in PRODUCT.md): server-rendered
//! pages at `/console` for operators and tenants' support staff, over the
//! same engine calls and tenant scoping as the HTTP API.
//!
//! - [`auth`]: the session cookie, the language, CSRF tokens.
//! - [`login`]: signing in and out.
//! - [`pages`]: the pages, and the one place errors become a page.
//! - [`i18n`]: every text in English and Simplified Chinese; formatting.
//! - [`assets`]: CSS and scripts embedded in the binary, served by hash.
//! - [`chart`]: the overview's charts, as SVG drawn here.
//!
//! Templates (askama, checked at compile time) live in `templates/`; they
//! escape every value, so nothing a tenant stored (an `external_ref`, say)
//! becomes markup. Party numbers reach a template only masked.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// A refusal here is the page to answer (`Err(Response)`), made once per
// request: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use maskline_core::Region;
use maskline_engine::Engine;

pub mod assets;
pub mod auth;
pub mod chart;
pub mod i18n;
pub mod login;
pub mod pages;

#[derive(Clone)]
pub struct ConsoleState {
    pub engine: Arc<Engine>,
    /// Region of national-format numbers typed into forms.
    pub region: Region,
    /// The server's API rate per tenant (`MASKLINE_RATE_LIMIT`, `0` for
    /// none), shown beside a tenant's own.
    pub default_rate_limit: u32,
    /// Which callback URLs may be set (`MASKLINE_WEBHOOK_ALLOW_PRIVATE`).
    pub callbacks: maskline_callbacks::Guard,
    /// Sign-in attempts per client address (this node's).
    pub sign_in_limits: Arc<login::SignInLimits>,
    /// The tenant's request rate, the one its API keys draw on.
    pub tenant_rate: TenantRate,
    /// Cookies are `Secure` whatever the request says
    /// (`MASKLINE_CONSOLE_SECURE_COOKIE`): for a TLS proxy in front that
    /// does not send `X-Forwarded-Proto` or `Forwarded`.
    pub always_secure: bool,
}

impl ConsoleState {
    /// Whether cookies set in answer to a request with `headers` are
    /// `Secure`.
    pub fn secure(&self, headers: &axum::http::HeaderMap) -> bool {
        self.always_secure || auth::behind_tls(headers)
    }
}

/// Takes one request from a tenant's rate, or says in how many seconds one
/// is free. The server passes the API's per-tenant buckets, so that a
/// tenant's console users and its API keys share one limit: the console is
/// another way to the same writes and searches.
pub type TenantRate = Arc<dyn Fn(maskline_core::TenantId) -> Result<(), u64> + Send + Sync>;

/// Everything under `/console`. The caller merges it into the HTTP
/// router, whose limits and timeouts then cover it too.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/", get(pages::overview))
        .route("/console/login", get(login::form).post(login::sign_in))
        .route("/console/logout", post(login::sign_out))
        .route(
            "/console/numbers",
            get(pages::numbers).post(pages::import_numbers),
        )
        .route(
            "/console/numbers/{number}/retire",
            post(pages::retire_number),
        )
        .route(
            "/console/bindings",
            get(pages::bindings).post(pages::create_binding),
        )
        .route("/console/bindings/search", post(pages::search_bindings))
        .route("/console/bindings/{id}/end", post(pages::end_binding))
        .route("/console/bindings/{id}/reveal", post(pages::reveal_binding))
        .route("/console/bindings/{id}/extend", post(pages::extend_binding))
        .route("/console/calls", get(pages::calls))
        .route("/console/calls/search", post(pages::search_calls))
        .route("/console/calls/{id}/recording", get(pages::recording))
        .route("/console/calls/{id}/reveal", post(pages::reveal_call))
        .route("/console/messages", get(pages::messages))
        .route(
            "/console/messages/{id}/release",
            post(pages::release_message),
        )
        .route("/console/messages/{id}/reveal", post(pages::reveal_message))
        .route("/console/events", get(pages::events))
        .route("/console/events/{id}/redeliver", post(pages::redeliver))
        .route(
            "/console/settings",
            get(pages::settings).post(pages::save_settings),
        )
        .route("/console/settings/calls", post(pages::save_call_rules))
        .route("/console/settings/webhook", post(pages::save_webhook))
        .route(
            "/console/settings/webhook/rotate",
            post(pages::rotate_secret),
        )
        .route(
            "/console/settings/webhook/delete",
            post(pages::delete_webhook),
        )
        .route(
            "/console/prompts/{name}",
            get(pages::play_prompt).post(pages::put_prompt),
        )
        .route("/console/prompts/{name}/revert", post(pages::revert_prompt))
        .route("/console/keys", get(pages::keys).post(pages::create_key))
        .route("/console/keys/{id}/revoke", post(pages::revoke_key))
        .route("/console/users", get(pages::users).post(pages::create_user))
        .route("/console/users/{id}/remove", post(pages::remove_user))
        .route("/console/audit", get(pages::audit_log))
        .route(
            "/console/tenants",
            get(pages::tenants).post(pages::create_tenant),
        )
        .route("/console/tenants/{id}/rate", post(pages::set_rate))
        .route("/console/assets/{file}", get(assets::serve))
        .route(
            "/console/{*rest}",
            get(pages::unknown_path).post(pages::unknown_path),
        )
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// No inline script or style, nothing from another origin, no framing:
/// markup that slipped through escaping could still run nothing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    // Pages show tenants' data: never kept by a shared cache. Assets set
    // their own.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
