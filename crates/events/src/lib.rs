//! The event contract: events' JSON ([`payload`]), their signature
//! ([`signature`]), the tenants' webhook settings in memory ([`webhooks`])
//! and the intercept callback's request and answer ([`intercept`]).
//!
//! Events are *recorded* by the engine, in the same store write as the
//! change they report (the store's outbox); `maskline-callbacks` sends
//! them. This crate does no I/O.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::time::{SystemTime, UNIX_EPOCH};

use maskline_core::UnixMillis;

pub mod intercept;
pub mod payload;
pub mod signature;
pub mod webhooks;

pub use intercept::{InterceptRequest, Verdict};
pub use webhooks::{Webhooks, new_secret, validate_url};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid URL: {0}")]
    InvalidUrl(&'static str),
}

/// Wall-clock Unix milliseconds.
pub fn unix_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
