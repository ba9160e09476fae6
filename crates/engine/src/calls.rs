//! Call detail records: written by the SIP layer, listed by the API.

use maskline_core::{CallId, CallRecord, EventType, Number, ReleaseReason, ReleasedBy, TenantId};
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

    /// Writes the CDRs of the calls this node connected and never ended (it
    /// stopped without ending them: a crash, a kill): each ends at the
    /// node's last sign of life (its heartbeat, [`Engine::heartbeat`]) or
    /// at its own last event, whichever is later, `released_by` the system
    /// with `node_restart`. Run at start-up, before calls are taken. The
    /// number of CDRs written.
    pub async fn close_open_calls(&self) -> Result<usize> {
        let open = self.store.open_calls().await?;
        if open.is_empty() {
            return Ok(0);
        }
        let alive = self
            .store
            .get_meta(&heartbeat_key(self.store.node()))
            .await?
            .and_then(|v| v.parse::<i64>().ok());
        let n = open.len();
        for mut c in open {
            let last = c.answered_at.or(c.ringing_at).unwrap_or(c.invited_at);
            c.ended_at = alive.map_or(last, |a| a.max(last));
            c.final_status = if c.answered_at.is_some() { 200 } else { 500 };
            c.released_by = ReleasedBy::System;
            c.release_reason = ReleaseReason::NodeRestart;
            c.refusal = None;
            self.record_call(c).await?;
        }
        tracing::warn!(calls = n, "CDRs written for calls cut by the node's stop");
        Ok(n)
    }

    /// Notes that the node is alive (Unix ms), for the CDRs of calls a crash
    /// cuts: the sweeper calls it every few seconds.
    pub fn heartbeat(&self) -> WriteAck {
        self.store.enqueue(Write::PutMeta {
            key: heartbeat_key(self.store.node()),
            value: maskline_events::unix_ms().to_string(),
        })
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

/// The `meta` key of a node's heartbeat.
fn heartbeat_key(node: &str) -> String {
    format!("alive.{node}")
}
