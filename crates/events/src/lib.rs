//! Events: their JSON ([`payload`]), the signed webhook sender over the
//! store's durable outbox ([`delivery`]), the tenants' settings in memory
//! ([`webhooks`]) and the intercept callback ([`intercept`]).
//!
//! Events are *recorded* by the engine, in the same store write as the
//! change they report; this crate renders them and sends them.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use maskline_core::UnixMillis;

pub mod delivery;
pub mod intercept;
pub mod payload;
pub mod signature;
pub mod webhooks;

pub use delivery::{DeliveryConfig, Dispatcher};
pub use intercept::{InterceptRequest, Interceptor, Source, Verdict};
pub use webhooks::{Webhooks, new_secret, validate_url};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid URL: {0}")]
    InvalidUrl(&'static str),
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The HTTP client for callbacks: no redirects (a 3xx is a failed attempt,
/// so a receiver cannot bounce signed events elsewhere), no proxy from the
/// environment, TLS by rustls with the platform's roots.
fn http_client(timeout: Duration, idle_per_host: usize) -> Result<reqwest::Client, Error> {
    install_crypto_provider();
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .pool_max_idle_per_host(idle_per_host)
        .user_agent(concat!("Maskline/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// reqwest is built without a default TLS crypto provider (the default one
/// needs a C toolchain for aws-lc); every process that builds an HTTP client
/// installs ring's first. A second install is refused, harmlessly.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads at most `cap` bytes of an answer's body.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> reqwest::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == cap {
            break;
        }
    }
    Ok(body)
}

/// Reads and drops an answer's body (up to `cap` bytes), so that the
/// connection can serve the next request.
async fn drain(response: reqwest::Response, cap: usize) {
    let _ = read_capped(response, cap).await;
}

/// An HTTP failure in words, without the URL (it may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Wall-clock Unix milliseconds.
pub fn unix_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
