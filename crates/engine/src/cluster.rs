//! Keeping this node's memory in step with the others' writes to a shared
//! store: the store's change feed ([`Change`]) names what another node
//! committed, and [`Engine::follow`] reads it back and applies it to the
//! index, the API keys and the webhook settings. Decisions keep coming from
//! memory throughout; while the feed is interrupted the node serves what it
//! has and catches up when the feed returns.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use maskline_core::{Binding, BindingId, Number, TenantId};
use maskline_store::Change;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{Engine, Result, bindings::index_entry, now};

/// Most binding ids read back in one query.
const MAX_READ: usize = 1_000;

impl Engine {
    /// Applies other nodes' changes as they arrive, until the feed closes.
    /// Run it as a task when [`Store::changes`](maskline_store::Store::changes)
    /// hands out a feed.
    pub async fn follow(self: Arc<Self>, mut changes: UnboundedReceiver<Change>) {
        // A change read while coalescing, to apply next.
        let mut carried = None;
        loop {
            let change = match carried.take() {
                Some(c) => c,
                None => match changes.recv().await {
                    Some(c) => c,
                    None => return,
                },
            };
            let Change::Bindings {
                mut ids,
                committed_at,
            } = change
            else {
                self.apply_change(change).await;
                continue;
            };
            // Coalesce what queued meanwhile into one read.
            let mut stamps = vec![committed_at];
            while ids.len() < MAX_READ {
                match changes.try_recv() {
                    Ok(Change::Bindings {
                        ids: more,
                        committed_at,
                    }) => {
                        ids.extend(more);
                        stamps.push(committed_at);
                    }
                    Ok(other) => {
                        carried = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.apply_remote_bindings(&ids, &stamps).await;
        }
    }

    pub(crate) async fn apply_change(&self, change: Change) {
        let outcome = match change {
            Change::Bindings { ids, committed_at } => {
                self.apply_remote_bindings(&ids, &[committed_at]).await;
                Ok(())
            }
            Change::Tenants => self.reload_tenants().await,
            Change::Keys => self.reload_keys().await,
            Change::Numbers => self.reload_numbers().await,
            Change::Webhooks => self.reload_webhooks().await,
            Change::SmsSettings => self.reload_sms_settings().await,
            Change::CallRules => self.reload_call_rules().await,
            Change::Prompts => self.reload_prompts().await,
            Change::Interrupted => {
                metrics::counter!("maskline_cluster_interruptions_total").increment(1);
                Ok(())
            }
            Change::Resync { since } => self.catch_up(since).await,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "applying another node's change failed");
        }
    }

    /// Applies bindings other nodes committed at `stamps` (their clocks,
    /// Unix ms) and records how long each commit took to become routable
    /// here (the clocks' difference included).
    async fn apply_remote_bindings(&self, ids: &[BindingId], stamps: &[i64]) {
        self.refresh_bindings(ids).await;
        let now = maskline_events::unix_ms();
        for at in stamps {
            metrics::histogram!("maskline_cluster_propagation_seconds")
                .record((now - at).max(0) as f64 / 1000.0);
        }
    }

    /// Reads `ids` back from the store and applies them (retrying a few
    /// times: a read that keeps failing means the feed is failing too, and
    /// its catch-up will cover these).
    async fn refresh_bindings(&self, ids: &[BindingId]) {
        let mut delay = Duration::from_millis(50);
        for chunk in ids.chunks(MAX_READ) {
            for attempt in 1..=5 {
                match self.store.bindings_by_id(chunk).await {
                    Ok(found) => {
                        self.apply_bindings(&found);
                        break;
                    }
                    Err(e) if attempt == 5 => {
                        tracing::warn!(error = %e, bindings = chunk.len(), "could not read other nodes' bindings; the catch-up will");
                    }
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
    }

    /// Puts bindings as the store has them into the index.
    pub(crate) fn apply_bindings(&self, bindings: &[Binding]) {
        let now = now();
        let mut index = self.index.write();
        for b in bindings {
            match index.apply(&index_entry(b, false), now) {
                Ok(dropped) => {
                    if !dropped.is_empty() {
                        tracing::debug!(binding = %b.id, dropped = dropped.len(), "records in the way of another node's binding dropped");
                    }
                }
                Err(e) => {
                    tracing::warn!(binding = %b.id, error = %e, "another node's binding does not fit this node's index");
                }
            }
        }
        metrics::counter!("maskline_cluster_bindings_applied_total")
            .increment(bindings.len() as u64);
    }

    /// Learns every binding that may hold slots on `x`: what a write the
    /// store refused as taken ran into.
    pub(crate) async fn learn_number(&self, x: Number) -> Result<()> {
        let now = now();
        let found = self
            .store
            .bindings_on(x, now - self.config.cooldown_secs)
            .await?;
        self.apply_bindings(&found);
        Ok(())
    }

    async fn reload_tenants(&self) -> Result<()> {
        let tenants = self.store.tenants().await?;
        {
            let mut index = self.index.write();
            let mut auth = self.auth.write();
            for t in tenants {
                index.add_tenant(t.id);
                auth.add_tenant(t.id);
            }
        }
        self.reload_rate_limits().await
    }

    async fn reload_keys(&self) -> Result<()> {
        let keys = self.store.api_keys().await?;
        self.auth.write().replace_keys(&keys);
        Ok(())
    }

    async fn reload_numbers(&self) -> Result<()> {
        // Tenants first: a number may arrive with its tenant.
        self.reload_tenants().await?;
        let stored = self.store.all_numbers().await?;
        let now = now();
        let mut index = self.index.write();
        let keep: HashSet<(TenantId, Number)> =
            stored.iter().map(|n| (n.tenant, n.number)).collect();
        for (tenant, number) in index.pool_numbers() {
            if !keep.contains(&(tenant, number))
                && let Err(e) = index.retire_number(tenant, number, now)
            {
                tracing::warn!(number = %number.masked(), error = %e, "a number retired by another node is still in use here");
            }
        }
        for n in &stored {
            if let Err(e) = index.add_number(n.tenant, n.number, n.area.as_ref()) {
                tracing::warn!(number = %n.number.masked(), error = %e, "another node's number does not fit this node's index");
            }
        }
        Ok(())
    }

    async fn reload_webhooks(&self) -> Result<()> {
        let stored = self.store.webhooks().await?;
        let keep: HashSet<TenantId> = stored.iter().map(|w| w.tenant).collect();
        for w in self.webhooks.all() {
            if !keep.contains(&w.tenant) {
                self.webhooks.remove(w.tenant);
            }
        }
        for w in stored {
            self.webhooks.set(w);
        }
        Ok(())
    }

    /// After an interruption: whatever other nodes changed since `since`.
    async fn catch_up(&self, since: maskline_core::UnixTime) -> Result<()> {
        self.reload_numbers().await?;
        self.reload_keys().await?;
        self.reload_webhooks().await?;
        self.reload_sms_settings().await?;
        self.reload_call_rules().await?;
        self.reload_prompts().await?;
        let changed = self.store.changed_bindings(since).await?;
        tracing::info!(
            bindings = changed.len(),
            "caught up with other nodes' changes"
        );
        self.apply_bindings(&changed);
        Ok(())
    }

    /// Why this node is not fully working (for `/healthz`), if it is not.
    pub fn degraded(&self) -> Option<String> {
        self.store.degraded()
    }
}
