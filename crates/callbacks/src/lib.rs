//! Callbacks over HTTP, the edge where Maskline calls tenants: the signed
//! webhook sender over the store's durable outbox ([`delivery`]), the
//! intercept callback ([`intercept`]), and the address policy both obey
//! ([`guard`]). What is sent (payloads, signatures) is the event contract
//! of `maskline-events`; this crate only carries it.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::time::Duration;

pub mod delivery;
pub mod guard;
pub mod intercept;

pub use delivery::{DeliveryConfig, Dispatcher};
pub use guard::{Guard, NotAllowed, Refused};
pub use intercept::{Interceptor, Source};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The HTTP client for callbacks: no redirects (a 3xx is a failed attempt,
/// so a receiver can bounce neither signed events nor Maskline itself
/// elsewhere), no proxy from the environment, names resolved through the
/// guard, TLS by rustls with the platform's roots.
fn http_client(
    guard: Guard,
    timeout: Duration,
    idle_per_host: usize,
) -> Result<reqwest::Client, Error> {
    install_crypto_provider();
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(guard.resolver())
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

/// A refused address as stored and shown: which address and why is the
/// operator's to know, not the tenant's.
const REFUSED: &str = "address not allowed";

/// An HTTP failure as stored and shown to the tenant: its kind only. The
/// underlying error names addresses, ports and resolver answers of the
/// network Maskline runs in, which are not the tenant's to see (they would
/// let a URL probe that network); they go to the log at debug level.
fn describe(e: &reqwest::Error) -> &'static str {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<NotAllowed>().is_some() {
            return REFUSED;
        }
        source = s.source();
    }
    tracing::debug!(error = %e, "callback request failed");
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect not followed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    }
}
