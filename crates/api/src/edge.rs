//! The HTTP edge: what a client can hold and how fast a tenant may ask.
//!
//! - Connections are capped; beyond the cap the listener stops accepting
//!   (the kernel's backlog holds the rest) instead of spawning without end.
//! - A request's head must arrive within `header_timeout` of the
//!   connection being ready for it, idle keep-alive included: a client that
//!   trickles bytes or sits silent is closed.
//! - A request must be answered within `request_timeout`, body read
//!   included (`408`); a response body streamed after that is not cut.
//! - Each tenant has a token bucket (`429` with `Retry-After`): its own
//!   rate or the server's, with bursts of twice that.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use maskline_core::TenantId;
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::problem::Problem;

/// The edge's limits (`MASKLINE_HTTP_*`, `MASKLINE_RATE_LIMIT`).
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    /// Requests a second per tenant, with a burst of one second's worth;
    /// `None`: unlimited.
    pub rate_limit: Option<NonZeroU32>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 4096,
            rate_limit: NonZeroU32::new(5000),
        }
    }
}

const TWO: NonZeroU32 = NonZeroU32::new(2).unwrap();

/// Per-tenant token buckets, made on a tenant's first request (and again
/// when its rate changes). A bucket holds two seconds' worth.
pub struct RateLimits {
    default: Option<NonZeroU32>,
    buckets: RwLock<HashMap<TenantId, (NonZeroU32, Arc<DefaultDirectRateLimiter>)>>,
}

impl RateLimits {
    pub fn new(default: Option<NonZeroU32>) -> RateLimits {
        RateLimits {
            default,
            buckets: RwLock::default(),
        }
    }

    /// Takes a token for `tenant`, or says how long until one is there.
    /// `own` is the tenant's own rate (`0`: none), else the default holds.
    pub fn check(&self, tenant: TenantId, own: Option<u32>) -> Result<(), Problem> {
        let rate = match own {
            Some(r) => NonZeroU32::new(r),
            None => self.default,
        };
        let Some(rate) = rate else {
            return Ok(());
        };
        let bucket = match self.buckets.read().get(&tenant) {
            Some((r, b)) if *r == rate => Some(b.clone()),
            _ => None,
        };
        let bucket = match bucket {
            Some(b) => b,
            None => {
                let burst = rate.saturating_mul(TWO);
                let fresh = Arc::new(RateLimiter::direct(
                    Quota::per_second(rate).allow_burst(burst),
                ));
                let mut buckets = self.buckets.write();
                let entry = buckets.entry(tenant).or_insert((rate, fresh.clone()));
                if entry.0 != rate {
                    *entry = (rate, fresh);
                }
                entry.1.clone()
            }
        };
        bucket.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut p = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than {rate} requests a second; retry after the time in Retry-After"),
            );
            // Whole seconds, rounded up: 0 would invite an immediate retry.
            p.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            p
        })
    }
}

/// Answers `408` when the handler (body read included) takes longer than
/// the request timeout.
pub(crate) async fn request_timeout(
    State(limit): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request was not received and answered within {} s",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Serves `app` on `listener` within `config`'s limits until `shutdown`
/// resolves, then waits for the connections in progress to finish their
/// requests. Each request carries its peer's address (`ConnectInfo`).
pub async fn serve_with_limits(
    listener: TcpListener,
    app: Router,
    config: &EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(axum::body::Body::new)
            });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "HTTP connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The peer of a request served by [`serve_with_limits`].
pub fn peer(req_extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    req_extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}
