//! The webhook sender: reads due events from the store's outbox, POSTs each
//! to its tenant's URL, and records every attempt's outcome.
//!
//! Ordering: the store only offers the oldest pending event of a subject
//! (a binding), and the sender keeps an event "in flight" until its outcome
//! is durable, so the next event of that binding waits for it. Isolation: each
//! tenant has its own bound on concurrent requests, and requests are spawned,
//! so a slow endpoint ties up only its own tenant's slots.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maskline_core::{EventId, TenantId, UnixMillis};
use maskline_store::{DeliveryOutcome, NextStep, Store, StoredEvent, Webhook, Write};
use parking_lot::Mutex;
use rand::RngExt;
use tokio::sync::Notify;
use tracing::Instrument;

use maskline_events::{Webhooks, signature, unix_ms};

use crate::{Error, Guard};

/// Most bytes of a receiver's answer read (and then dropped): enough to keep
/// the connection reusable after a normal reply, bounded against a flood.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// One attempt's limit, connection included.
    pub timeout: Duration,
    /// How long after the event (or its redelivery) attempts go on; then it
    /// is kept as failed.
    pub retry_window: Duration,
    /// The first retry's delay; each next one doubles, up to `max_backoff`,
    /// and is jittered down by up to half.
    pub first_retry: Duration,
    pub max_backoff: Duration,
    /// Requests in flight per tenant.
    pub concurrency: usize,
    /// How often the outbox is read when nothing wakes the sender.
    pub poll_interval: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: Duration::from_secs(5),
            retry_window: Duration::from_secs(24 * 3600),
            first_retry: Duration::from_secs(2),
            max_backoff: Duration::from_secs(3600),
            concurrency: 16,
            poll_interval: Duration::from_millis(250),
        }
    }
}

impl DeliveryConfig {
    /// How long a claimed event is this sender's: twice its attempt's
    /// timeout plus room for recording the outcome (a later outcome only
    /// risks one more delivery). A sender that dies leaves its events to
    /// another node after this.
    pub fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

/// See the module documentation.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    webhooks: Arc<Webhooks>,
    client: reqwest::Client,
    guard: Guard,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    inflight: Arc<Mutex<Inflight>>,
}

/// Events being sent, and events whose outcome became durable lately.
///
/// A read of the outbox that was already running when an outcome was
/// recorded still shows that event pending; `done` remembers it until a
/// read that began after it, so it is not sent a second time (which would
/// also break its binding's order).
#[derive(Default)]
struct Inflight {
    by_tenant: HashMap<TenantId, HashSet<EventId>>,
    /// Outcomes recorded so far, as a clock.
    completed: u64,
    /// Event -> the value of `completed` when its outcome was recorded.
    done: HashMap<EventId, u64>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        webhooks: Arc<Webhooks>,
        config: DeliveryConfig,
        guard: Guard,
    ) -> Result<Dispatcher, Error> {
        Ok(Dispatcher {
            wake: store.events_signal(),
            store,
            webhooks,
            client: crate::http_client(guard, config.timeout, config.concurrency)?,
            guard,
            config,
            inflight: Arc::default(),
        })
    }

    /// Sends until `shutdown` resolves, then waits up to `grace` for requests
    /// in flight (an event whose outcome is not recorded is sent again after
    /// a restart: delivery is at least once).
    pub async fn run(self, shutdown: impl Future<Output = ()>, grace: Duration) {
        tokio::pin!(shutdown);
        let mut last_backlog = Instant::now() - Duration::from_secs(60);
        loop {
            if last_backlog.elapsed() >= Duration::from_secs(2) {
                last_backlog = Instant::now();
                match self.store.pending_events().await {
                    Ok(n) => metrics::gauge!("maskline_webhook_backlog").set(n as f64),
                    Err(e) => tracing::warn!(error = %e, "counting the webhook backlog failed"),
                }
            }
            for webhook in self.webhooks.all() {
                self.fill(&webhook).await;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        let deadline = Instant::now() + grace;
        while self.in_flight() > 0 && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), self.wake.notified()).await;
        }
    }

    fn in_flight(&self) -> usize {
        self.inflight
            .lock()
            .by_tenant
            .values()
            .map(HashSet::len)
            .sum()
    }

    /// Starts requests for `webhook`'s tenant up to its concurrency.
    async fn fill(&self, webhook: &Arc<Webhook>) {
        let tenant = webhook.tenant;
        let (busy, read_from) = {
            let f = self.inflight.lock();
            (
                f.by_tenant.get(&tenant).map_or(0, HashSet::len),
                f.completed,
            )
        };
        let free = self.config.concurrency.saturating_sub(busy);
        if free == 0 {
            return;
        }
        // A claim leases what it returns: events in flight do not come back
        // (to this node or another) before their lease ends, and one whose
        // sender died is due again when it does.
        let limit = u32::try_from(free).unwrap_or(u32::MAX);
        let now = unix_ms();
        let lease = now + self.config.lease().as_millis() as i64;
        let due = match self.store.claim_due_events(tenant, now, lease, limit).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading due events failed");
                return;
            }
        };
        let mut started = 0;
        let mut flight = self.inflight.lock();
        // Outcomes recorded before this read began are in its results.
        flight.done.retain(|_, at| *at > read_from);
        for event in due {
            if started == free {
                break;
            }
            if flight.done.contains_key(&event.id)
                || !flight.by_tenant.entry(tenant).or_default().insert(event.id)
            {
                continue;
            }
            started += 1;
            let job = Attempt {
                store: self.store.clone(),
                client: self.client.clone(),
                guard: self.guard,
                webhook: webhook.clone(),
                config: self.config.clone(),
                wake: self.wake.clone(),
                inflight: self.inflight.clone(),
            };
            // Instrumented, not entered: an entered span held across an
            // await moves threads with the task and corrupts the span stack.
            let span =
                tracing::debug_span!("webhook", event = %event.id, kind = event.kind.as_str());
            tokio::spawn(job.run(event).instrument(span));
        }
    }
}

/// One delivery attempt and the recording of its outcome.
struct Attempt {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    guard: Guard,
    webhook: Arc<Webhook>,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    inflight: Arc<Mutex<Inflight>>,
}

impl Attempt {
    async fn run(self, event: StoredEvent) {
        let started = Instant::now();
        let (status, error) = self.post(&event).await;
        let secs = started.elapsed().as_secs_f64();
        metrics::histogram!("maskline_webhook_delivery_seconds").record(secs);
        let at = unix_ms();
        let delivered = error.is_none();
        let next = if delivered {
            NextStep::Delivered
        } else if at - event.retry_from >= millis(self.config.retry_window) {
            NextStep::Failed
        } else {
            NextStep::RetryAt(at + backoff(&self.config, event.attempts + 1))
        };
        let outcome = match next {
            NextStep::Delivered => "delivered",
            NextStep::RetryAt(_) => "retry",
            NextStep::Failed => "failed",
        };
        metrics::counter!("maskline_webhook_deliveries_total", "outcome" => outcome).increment(1);
        if delivered {
            metrics::histogram!("maskline_event_delivery_lag_seconds")
                .record((at - event.created_at).max(0) as f64 / 1000.0);
        } else {
            tracing::debug!(
                status,
                error = error.as_deref(),
                outcome,
                "webhook attempt failed"
            );
        }
        let write = Write::DeliveryOutcomes(vec![DeliveryOutcome {
            event: event.id,
            at,
            status,
            error,
            next,
        }]);
        if let Err(e) = self.store.enqueue(write).await {
            // Still pending in the store: it is sent again, which the
            // receiver tells apart by its id.
            tracing::warn!(error = %e, "recording a delivery outcome failed");
        }
        {
            let mut f = self.inflight.lock();
            if let Some(set) = f.by_tenant.get_mut(&self.webhook.tenant) {
                set.remove(&event.id);
            }
            f.completed += 1;
            let at = f.completed;
            f.done.insert(event.id, at);
        }
        self.wake.notify_one();
    }

    /// The receiver's status, and why the attempt did not count (`None`
    /// for a 2xx).
    async fn post(&self, event: &StoredEvent) -> (Option<u16>, Option<String>) {
        if self.guard.literal(&self.webhook.url).is_err() {
            return (None, Some(crate::REFUSED.to_owned()));
        }
        let t = unix_ms().div_euclid(1000);
        let request = self
            .client
            .post(&self.webhook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Maskline-Event-Id", event.id.to_string())
            .header(
                "Maskline-Signature",
                signature::header(&self.webhook.secret, t, event.body.as_bytes()),
            )
            .body(event.body.clone());
        let answer = tokio::time::timeout(self.config.timeout, async {
            let response = request.send().await?;
            let status = response.status();
            crate::drain(response, MAX_ANSWER_BYTES).await;
            Ok::<_, reqwest::Error>(status)
        })
        .await;
        match answer {
            Ok(Ok(status)) if status.is_success() => (Some(status.as_u16()), None),
            Ok(Ok(status)) => (
                Some(status.as_u16()),
                Some(format!("HTTP {}", status.as_u16())),
            ),
            Ok(Err(e)) => (None, Some(crate::describe(&e).to_owned())),
            Err(_) => (None, Some("timed out".to_owned())),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Delay before attempt `n + 1` after `n` failures: doubling from
/// `first_retry`, capped, with up to half of it taken off at random so that
/// events failed together do not retry together.
pub fn backoff(config: &DeliveryConfig, failures: u32) -> UnixMillis {
    let base = millis(config.first_retry).max(1);
    let cap = millis(config.max_backoff).max(base);
    let full = base
        .saturating_mul(1i64 << failures.saturating_sub(1).min(40))
        .min(cap);
    full - rand::rng().random_range(0..=full / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let c = DeliveryConfig::default();
        for _ in 0..200 {
            let first = backoff(&c, 1);
            assert!((1_000..=2_000).contains(&first), "{first}");
            let third = backoff(&c, 3);
            assert!((4_000..=8_000).contains(&third), "{third}");
            let late = backoff(&c, 30);
            assert!((1_800_000..=3_600_000).contains(&late), "{late}");
            assert!(backoff(&c, u32::MAX) <= 3_600_000);
        }
    }

    #[test]
    fn a_day_of_retries_is_a_few_dozen_attempts() {
        let c = DeliveryConfig::default();
        let (mut t, mut n) = (0i64, 0u32);
        while t < millis(c.retry_window) {
            n += 1;
            t += backoff(&c, n);
        }
        assert!((20..=60).contains(&n), "{n} attempts in a day");
    }
}
