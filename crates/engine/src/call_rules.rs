//! Tenants' call rules against toll fraud (`PUT /v1/settings/calls`): kept
//! in memory, checked on every party a binding gets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use maskline_core::{CallLoad, CallRules, Number, OverCap, TenantId};
use maskline_store::Write;
use parking_lot::Mutex;

use crate::{Engine, Result, now, settle};

/// Reports older than this are a stopped node's: its calls are gone.
const LOAD_STALE_MS: i64 = 3_000;

pub(crate) type CallRulesMap = Arc<HashMap<TenantId, Arc<CallRules>>>;

pub(crate) async fn load_call_rules(
    store: &dyn maskline_store::Store,
) -> Result<HashMap<TenantId, Arc<CallRules>>> {
    Ok(store
        .call_rules()
        .await?
        .into_iter()
        .map(|r| (r.tenant, Arc::new(r.rules)))
        .collect())
}

impl Engine {
    /// The tenant's rules, or the defaults of the default region.
    pub fn call_rules(&self, tenant: TenantId) -> Arc<CallRules> {
        self.call_rules
            .read()
            .get(&tenant)
            .cloned()
            .unwrap_or_else(|| self.default_call_rules.clone())
    }

    pub async fn put_call_rules(&self, tenant: TenantId, rules: CallRules) -> Result<()> {
        let serial = self.call_rules_lock.clone().lock_owned().await;
        let ack = self.store.enqueue(Write::PutCallRules {
            tenant,
            rules: rules.clone(),
            updated_at: now(),
        });
        // Memory follows the store even if our caller goes away meanwhile.
        let memory = self.call_rules.clone();
        settle(ack, move |outcome| {
            if outcome.is_ok() {
                let mut all = (**memory.read()).clone();
                all.insert(tenant, Arc::new(rules));
                *memory.write() = Arc::new(all);
            }
            drop(serial);
        })
        .await?;
        Ok(())
    }

    /// Reads every tenant's rules again (another node changed some).
    pub(crate) async fn reload_call_rules(&self) -> Result<()> {
        let _serial = self.call_rules_lock.lock().await;
        let all = load_call_rules(&*self.store).await?;
        *self.call_rules.write() = Arc::new(all);
        Ok(())
    }

    /// `DestinationNotAllowed` unless every one of `parties` may be a party
    /// of `tenant`'s bindings.
    pub(crate) fn check_destinations(
        &self,
        tenant: TenantId,
        parties: impl IntoIterator<Item = Number>,
    ) -> Result<()> {
        Ok(self.call_rules(tenant).check(parties)?)
    }
}

/// A call counted against its tenant's caps until this is dropped (the
/// call ended).
pub struct Admission {
    load: Arc<Mutex<CallLoad>>,
    tenant: TenantId,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.load.lock().release(self.tenant);
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl Engine {
    /// Counts a call of `tenant` through the trunk if `caps` (its rules'
    /// `max_concurrent_calls`, `max_calls_per_second`, over every node)
    /// allow one more; it counts until the [`Admission`] is dropped.
    pub fn admit_call(
        &self,
        tenant: TenantId,
        caps: maskline_core::CallCaps,
    ) -> std::result::Result<Admission, OverCap> {
        self.call_load
            .lock()
            .admit(tenant, caps, maskline_events::unix_ms())
            .map(|()| Admission {
                load: self.call_load.clone(),
                tenant,
            })
    }

    /// `tenant`'s calls as its caps count them now: this node's, and the
    /// other nodes' as they last reported them.
    pub fn call_load(&self, tenant: TenantId) -> maskline_core::TenantLoad {
        self.call_load
            .lock()
            .total(tenant, maskline_events::unix_ms())
    }

    /// Shares this node's calls with the other nodes of a shared store and
    /// learns theirs, every `every`, for as long as the engine lives. Idle
    /// while no tenant has caps. Run it as a task on a clustered node.
    pub async fn share_call_load(self: Arc<Self>, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut published = false;
        loop {
            ticker.tick().await;
            let capped = self.call_rules.read().values().any(|r| r.caps.is_capped());
            if !capped {
                // Not read while no tenant has caps: forget what was.
                self.call_load.lock().set_remote([]);
                if !published {
                    continue;
                }
            }
            let at = maskline_events::unix_ms();
            let loads = match capped {
                true => self.call_load.lock().local(at),
                false => Vec::new(),
            };
            // An empty report once, then quiet until there is load again.
            if !loads.is_empty() || published {
                published = !loads.is_empty();
                let ack = self.store.enqueue(Write::PutCallLoad {
                    node: self.store.node().to_owned(),
                    at,
                    loads,
                });
                if let Err(e) = ack.await {
                    tracing::warn!(error = %e, "cannot report this node's calls");
                }
            }
            if !capped {
                continue;
            }
            match self
                .store
                .call_loads(self.store.node(), at - LOAD_STALE_MS)
                .await
            {
                Ok(remote) => self.call_load.lock().set_remote(remote),
                Err(e) => tracing::warn!(error = %e, "cannot read the other nodes' calls"),
            }
        }
    }
}
