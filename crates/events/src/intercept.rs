//! The intercept callback: before a call's outbound leg is placed, the
//! tenant is asked, and its answer (or its fallback) decides.

use std::time::{Duration, Instant};

use maskline_store::{Fallback, Intercept};
use serde::{Deserialize, Serialize};

use crate::{Error, signature, unix_ms};

/// Most bytes of a verdict read: it is a one-line JSON object.
const MAX_VERDICT_BYTES: usize = 16 * 1024;

/// What the tenant is asked about, POSTed as JSON and signed like a webhook.
#[derive(Serialize, Clone, Debug)]
pub struct InterceptRequest {
    /// The call's id: its events and CDR carry the same.
    pub call_id: String,
    pub binding_id: String,
    /// `a_to_b`, `b_to_a` or `n_to_a`.
    pub direction: &'static str,
    pub x: String,
    pub caller: String,
    /// Who would be called.
    pub callee: String,
    /// RFC 3339 with milliseconds.
    pub invited_at: String,
}

/// The decision that applies.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Verdict {
    Allow,
    Deny { reason: Option<String> },
}

/// How the verdict was reached, for metrics and logs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// The tenant answered.
    Answer,
    /// No answer within the timeout: the fallback applied.
    Timeout,
    /// A non-2xx status, a connection failure or an unreadable body: the
    /// fallback applied.
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

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
enum Answer {
    Allow,
    Deny {
        #[serde(default)]
        reason: Option<String>,
    },
}

/// Longest deny reason kept (it reaches the call's events).
const MAX_REASON_CHARS: usize = 200;

/// Asks intercept callbacks. Cheap to clone; one per runtime (its pooled
/// connections belong to the runtime that opened them).
#[derive(Clone)]
pub struct Interceptor {
    client: reqwest::Client,
}

impl Interceptor {
    pub fn new() -> Result<Interceptor, Error> {
        Ok(Interceptor {
            client: crate::http_client(Duration::from_secs(30), 64)?,
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
        let body = serde_json::to_string(request).unwrap_or_default();
        let t = unix_ms().div_euclid(1000);
        let send = self
            .client
            .post(&intercept.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                "Maskline-Signature",
                signature::header(secret, t, body.as_bytes()),
            )
            .body(body);
        let timeout = Duration::from_millis(u64::from(intercept.timeout_ms));
        let answer = tokio::time::timeout(timeout, async {
            let response = send.send().await.map_err(|e| crate::describe(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("HTTP {}", status.as_u16()));
            }
            let bytes = crate::read_capped(response, MAX_VERDICT_BYTES)
                .await
                .map_err(|e| crate::describe(&e))?;
            serde_json::from_slice::<Answer>(&bytes)
                .map_err(|_| "not {\"action\": \"allow\"|\"deny\"}".to_owned())
        })
        .await;
        let fallback = match intercept.fallback {
            Fallback::Allow => Verdict::Allow,
            Fallback::Deny => Verdict::Deny { reason: None },
        };
        let (verdict, source) = match answer {
            Ok(Ok(Answer::Allow)) => (Verdict::Allow, Source::Answer),
            Ok(Ok(Answer::Deny { reason })) => (
                Verdict::Deny {
                    reason: reason.map(|r| r.chars().take(MAX_REASON_CHARS).collect()),
                },
                Source::Answer,
            ),
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
}
