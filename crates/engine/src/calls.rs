//! Call detail records: written by the SIP layer, listed by the API.

use maskline_core::{CallId, CallRecord, EventType, Number, ReleaseReason, TenantId};
use maskline_store::{CallFilter, Page, Write, WriteAck};

use crate::{Engine, Result};

impl Engine {
    /// Queues a finished call's CDR with its `call.ended` (or, refused,
    /// `call.refused`) event. Unlike binding changes it touches no memory,
    /// so nothing is reserved or undone and no lock is taken; the caller
    /// may await the ack or drop it (the write still happens) and should
    /// log a failure.
    pub fn record_call(&self, record: CallRecord) -> WriteAck {
        // One terminal event per attempt: `call.ended` once an outbound
        // leg was placed (`call.started` came before), `call.refused` for
        // an attempt that never got that far (refused, or cut short by
        // shutdown, a bad request or the caller cancelling during an
        // intercept).
        let kind = if record.release_reason == ReleaseReason::Refused || record.direction.is_none()
        {
            EventType::CallRefused
        } else {
            EventType::CallEnded
        };
        let events = self.call_event(kind, &record).into_iter().collect();
        self.store.enqueue(Write::RecordCall { record, events })
    }

    /// Erases `party` from `tenant`'s ended records (see
    /// [`Write::EraseParty`]): bindings whose cool-down is over go with their
    /// events and texts, CDRs keep the party's mask. Live bindings are kept:
    /// they still route.
    pub async fn erase_party(&self, tenant: TenantId, party: Number) -> Result<()> {
        self.store
            .enqueue(Write::EraseParty {
                tenant,
                party,
                ended_before: crate::now() - self.config.cooldown_secs,
            })
            .await?;
        Ok(())
    }

    /// A tenant's CDRs in id (arrival) order.
    pub async fn calls(
        &self,
        tenant: TenantId,
        filter: &CallFilter,
        page: Page<CallId>,
    ) -> Result<Vec<CallRecord>> {
        Ok(self.store.calls(tenant, filter, page).await?)
    }
}
