//! Tenants' call rules against toll fraud (`PUT /v1/settings/calls`): kept
//! in memory, checked on every party a binding gets.

use std::collections::HashMap;
use std::sync::Arc;

use maskline_core::{CallRules, Number, TenantId};
use maskline_store::Write;

use crate::{Engine, Result, now, settle};

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
