//! Housekeeping: records bindings that expired, drops records past
//! cool-down, forgets old idempotency keys, and takes the census that
//! metrics report. Decisions never depend on it having run.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use maskline_core::{Binding, BindingId, EndReason, EventType, UnixTime};
use maskline_store::{ExpiredBinding, Write};

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
        // A pass over silent nodes' calls is running (one at a time).
        let orphans = Arc::new(std::sync::atomic::AtomicBool::new(false));
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            self.engine.sweep_step(STEP_BUDGET);
            ticks += 1;
            // Every 5 s at the default interval: the end given to calls a
            // crash cuts (Engine::close_open_calls).
            if ticks.is_multiple_of(5) {
                let ack = self.engine.heartbeat();
                tokio::spawn(async move {
                    if let Err(e) = ack.await {
                        tracing::warn!(error = %e, "recording the node's heartbeat failed");
                    }
                });
            }
            if ticks.is_multiple_of(10) {
                self.engine.purge_messages();
                self.engine.purge_expired();
                if !orphans.load(std::sync::atomic::Ordering::Relaxed) {
                    orphans.store(true, std::sync::atomic::Ordering::Relaxed);
                    let (engine, orphans) = (self.engine.clone(), orphans.clone());
                    tokio::spawn(async move {
                        if let Err(e) = engine.close_orphaned_calls().await {
                            tracing::warn!(error = %e, "closing the calls of a silent node failed");
                        }
                        orphans.store(false, std::sync::atomic::Ordering::Relaxed);
                    });
                }
            }
            // About once an hour: recordings are files, found by walking.
            if ticks.is_multiple_of(3_600) {
                self.engine.purge_recordings();
            }
            // After a key rotation (a pass is nearly free until then).
            if ticks.is_multiple_of(30) {
                self.engine.reseal_recordings();
            }
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

/// Parts of a concatenated text that never made one are forgotten after
/// this (the SMS edge relays what came long before).
const PARTS_KEPT_MS: i64 = 7 * 86_400_000;

/// Rows of each kind one retention step purges: bounded, so that the
/// writer serves other writes between steps (one step every ten sweeps).
const RETENTION_BATCH: u32 = 1_000;

impl Engine {
    /// The retention cut-off (Unix seconds), when retention is on.
    fn retention_cutoff(&self) -> Option<UnixTime> {
        let days = i64::from(self.config.retention_days);
        (days > 0).then(|| now() - days * 86_400)
    }

    /// One retention step: up to a batch of each kind of ended record past
    /// `MASKLINE_RETENTION_DAYS` (queued; a failure is logged and retried).
    pub fn purge_expired(&self) {
        let Some(before) = self.retention_cutoff() else {
            return;
        };
        let ack = self.store.enqueue(Write::PurgeExpired {
            before,
            batch: RETENTION_BATCH,
        });
        tokio::spawn(async move {
            if let Err(e) = ack.await {
                tracing::warn!(error = %e, "purging records past retention failed");
            }
        });
    }

    /// Seals finished recordings again under the current key, off the
    /// runtime (files are read and rewritten).
    pub fn reseal_recordings(&self) {
        let Some(recordings) = self.recordings().cloned() else {
            return;
        };
        tokio::task::spawn_blocking(move || match recordings.reseal() {
            Ok(0) => {}
            Ok(n) => tracing::info!(recordings = n, "recordings sealed under the current key"),
            Err(e) => tracing::warn!(error = %e, "resealing recordings failed"),
        });
    }

    /// Deletes recordings past retention, off the async threads.
    pub fn purge_recordings(&self) {
        let (Some(before), Some(recordings)) =
            (self.retention_cutoff(), self.recordings().cloned())
        else {
            return;
        };
        let before = std::time::UNIX_EPOCH + Duration::from_secs(before.max(0) as u64);
        tokio::task::spawn_blocking(move || match recordings.purge_before(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(recordings = n, "recordings past retention deleted"),
            Err(e) => tracing::warn!(error = %e, "deleting recordings past retention failed"),
        });
    }

    /// Forgets texts a cool-down after their binding ended, and parts that
    /// never made a text (queued; a failure is logged and retried next time).
    pub fn purge_messages(&self) {
        let ack = self.store.enqueue(Write::PurgeMessages {
            ends_before: now() - self.config.cooldown_secs,
            parts_before: maskline_events::unix_ms() - PARTS_KEPT_MS,
        });
        tokio::spawn(async move {
            if let Err(e) = ack.await {
                tracing::warn!(error = %e, "purging old texts failed");
            }
        });
    }

    /// One sweep step over at most `budget` records.
    pub fn sweep_step(self: &Arc<Self>, budget: usize) {
        let now = now();
        let report = self.index.write().sweep(now, budget);
        if let Some(census) = report.census {
            *self.census.lock() = Some(census);
        }
        if !report.expired.is_empty() {
            // Memory already treats them as ended, and a PATCH or DELETE of
            // an expired binding changes nothing, so the write need not be
            // queued under the lock: it can wait for the bindings' stored
            // fields, which their `binding.ended` events carry.
            let engine = self.clone();
            tokio::spawn(async move {
                let expired = report.expired.len();
                match engine.record_expiries(report.expired, now).await {
                    Ok(()) => tracing::debug!(expired, "expired bindings recorded"),
                    // The next start finds them expired again and records
                    // them then.
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

    async fn record_expiries(
        &self,
        expired: Vec<(BindingId, UnixTime)>,
        now: UnixTime,
    ) -> Result<(), maskline_store::Error> {
        let ids: Vec<BindingId> = expired.iter().map(|(id, _)| *id).collect();
        let stored: HashMap<BindingId, Binding> = self
            .store
            .bindings_by_id(&ids)
            .await?
            .into_iter()
            .map(|b| (b.id, b))
            .collect();
        let ended = expired
            .iter()
            .map(|(id, at)| self.expired(*id, *at, stored.get(id), now))
            .collect();
        self.store
            .enqueue(Write::ExpireBindings { ended, at: now })
            .await
    }

    /// A binding's expiry to record, with its `binding.ended` event when
    /// its stored fields are known.
    pub(crate) fn expired(
        &self,
        id: BindingId,
        ended_at: UnixTime,
        stored: Option<&Binding>,
        now: UnixTime,
    ) -> ExpiredBinding {
        let event = stored.map(|b| {
            let mut ended = b.clone();
            ended.ended_at = Some(ended_at);
            ended.end_reason = Some(EndReason::Expired);
            ended.updated_at = now;
            let status = ended.status(now, self.config.cooldown_secs);
            self.binding_event(EventType::BindingEnded, &ended, status, Vec::new())
        });
        ExpiredBinding {
            id,
            ended_at,
            event,
        }
    }
}
