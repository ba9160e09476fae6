//! Housekeeping: records bindings that expired, drops records past
//! cool-down, forgets old idempotency keys, and takes the census that
//! metrics report. Decisions never depend on it having run.

use std::sync::Arc;
use std::time::Duration;

use maskline_store::Write;

use crate::{Engine, now};

/// Records visited per step: bounds how long one step holds the index lock.
const STEP_BUDGET: usize = 50_000;

pub struct Sweeper {
    engine: Arc<Engine>,
    interval: Duration,
}

impl Sweeper {
    pub fn new(engine: Arc<Engine>, interval: Duration) -> Sweeper {
        Sweeper { engine, interval }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            self.engine.sweep_step(STEP_BUDGET);
            ticks += 1;
            // About once a minute at the default interval.
            if ticks.is_multiple_of(60) {
                let before = now() - self.engine.config.idempotency_ttl_secs;
                let ack = self
                    .engine
                    .store
                    .enqueue(Write::PurgeIdempotency { before });
                tokio::spawn(async move {
                    if let Err(e) = ack.await {
                        tracing::warn!(error = %e, "purging old idempotency keys failed");
                    }
                });
            }
        }
    }
}

impl Engine {
    /// One sweep step over at most `budget` records.
    pub fn sweep_step(&self, budget: usize) {
        let now = now();
        let (report, ack) = {
            let mut index = self.index.write();
            let report = index.sweep(now, budget);
            // Queued under the lock: a PATCH that follows sees the record
            // ended in memory and refuses, so the store never undoes this.
            let ack = (!report.expired.is_empty()).then(|| {
                self.store.enqueue(Write::ExpireBindings {
                    ended: report.expired.clone(),
                    at: now,
                })
            });
            (report, ack)
        };
        if let Some(census) = report.census {
            *self.census.lock() = Some(census);
        }
        if let Some(ack) = ack {
            let expired = report.expired.len();
            tokio::spawn(async move {
                match ack.await {
                    Ok(()) => tracing::debug!(expired, "expired bindings recorded"),
                    // Memory already treats them as ended; the next start
                    // finds them expired again and records them then.
                    Err(e) => {
                        tracing::warn!(error = %e, expired, "recording expired bindings failed")
                    }
                }
            });
        }
        if report.removed > 0 {
            tracing::debug!(removed = report.removed, "records past cool-down dropped");
        }
    }
}
