//! Asks a tenant's intercept callback before a call's outbound leg is
//! placed; its answer (or its fallback) decides.

use std::time::{Duration, Instant};

use maskline_events::intercept::{InterceptRequest, MAX_ANSWER_BYTES, Verdict, read_answer};
use maskline_events::{signature, unix_ms};
use maskline_store::{Fallback, Intercept};

use crate::{Error, Guard};

/// How the verdict was reached, for metrics and logs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// The tenant answered.
    Answer,
    /// No answer within the timeout: the fallback applied.
    Timeout,
    /// A non-2xx status, a connection failure, a refused address or an
    /// unreadable body: the fallback applied.
    Error,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Answer => "answer",
            Source::Timeout => "timeout",
            Source::Error => "error",
        }
    }
}

/// Asks intercept callbacks. Cheap to clone; one per runtime (its pooled
/// connections belong to the runtime that opened them).
#[derive(Clone)]
pub struct Interceptor {
    client: reqwest::Client,
    guard: Guard,
}

impl Interceptor {
    pub fn new(guard: Guard) -> Result<Interceptor, Error> {
        Ok(Interceptor {
            client: crate::http_client(guard, Duration::from_secs(30), 64)?,
            guard,
        })
    }

    /// Asks `intercept.url` about `request`, waiting at most its timeout.
    /// Never fails: every failure is the fallback.
    pub async fn ask(
        &self,
        intercept: &Intercept,
        secret: &str,
        request: &InterceptRequest,
    ) -> (Verdict, Source) {
        let started = Instant::now();
        let timeout = Duration::from_millis(u64::from(intercept.timeout_ms));
        let answer = match self.guard.literal(&intercept.url) {
            Err(_) => Ok(Err(crate::REFUSED.to_owned())),
            Ok(()) => tokio::time::timeout(timeout, self.post(intercept, secret, request)).await,
        };
        let fallback = match intercept.fallback {
            Fallback::Allow => Verdict::Allow,
            Fallback::Deny => Verdict::Deny { reason: None },
        };
        let (verdict, source) = match answer {
            Ok(Ok(verdict)) => (verdict, Source::Answer),
            Ok(Err(error)) => {
                tracing::warn!(%error, fallback = intercept.fallback.as_str(), "intercept callback failed");
                (fallback, Source::Error)
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = intercept.timeout_ms,
                    fallback = intercept.fallback.as_str(),
                    "intercept callback timed out"
                );
                (fallback, Source::Timeout)
            }
        };
        let decision = match verdict {
            Verdict::Allow => "allow",
            Verdict::Deny { .. } => "deny",
        };
        metrics::counter!("maskline_intercepts_total", "source" => source.as_str(), "verdict" => decision)
            .increment(1);
        metrics::histogram!("maskline_intercept_seconds").record(started.elapsed().as_secs_f64());
        (verdict, source)
    }

    async fn post(
        &self,
        intercept: &Intercept,
        secret: &str,
        request: &InterceptRequest,
    ) -> Result<Verdict, String> {
        let body = serde_json::to_string(request).unwrap_or_default();
        let t = unix_ms().div_euclid(1000);
        let response = self
            .client
            .post(&intercept.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                "Maskline-Signature",
                signature::header(secret, t, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| crate::describe(&e).to_owned())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        let bytes = crate::read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| crate::describe(&e).to_owned())?;
        read_answer(&bytes).ok_or_else(|| "not {\"action\": \"allow\"|\"deny\"}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use maskline_store::{Fallback, Intercept};

    use super::*;

    fn request() -> InterceptRequest {
        InterceptRequest {
            call_id: "c".into(),
            binding_id: "b".into(),
            direction: "a_to_b",
            x: "+8657100000001".into(),
            caller: "+8613800000001".into(),
            callee: "+8613800000002".into(),
            invited_at: "2026-12-07T00:00:00.000Z".into(),
        }
    }

    /// A loopback intercept is never connected to, by address or by name:
    /// the fallback applies as for any failure.
    #[tokio::test]
    async fn a_refused_address_gets_the_fallback_without_a_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let interceptor = Interceptor::new(Guard::default()).unwrap();
        for url in [
            format!("http://127.0.0.1:{port}/ask"),
            format!("http://localhost:{port}/ask"),
        ] {
            let intercept = Intercept {
                url,
                fallback: Fallback::Deny,
                timeout_ms: 2_000,
            };
            let (verdict, source) = interceptor.ask(&intercept, "whsec_x", &request()).await;
            assert_eq!(verdict, Verdict::Deny { reason: None });
            assert_eq!(source, Source::Error);
        }
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "nothing connected to loopback");

        // Allowed, the same address is asked.
        let open = Interceptor::new(Guard::new(true)).unwrap();
        let intercept = Intercept {
            url: format!("http://127.0.0.1:{port}/ask"),
            fallback: Fallback::Deny,
            timeout_ms: 300,
        };
        let asked = tokio::spawn(async move { open.ask(&intercept, "whsec_x", &request()).await });
        let accepted = tokio::time::timeout(Duration::from_secs(2), listener.accept()).await;
        assert!(accepted.is_ok(), "the allowed address was connected to");
        assert_eq!(asked.await.unwrap().1, Source::Timeout);
    }
}
