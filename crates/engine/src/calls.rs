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
        let me = self.store.node().to_owned();
        let open = self.store.open_calls(&me).await?;
        let alive = self.last_heartbeat(&me).await?;
        let n = self.close_calls(open, alive).await?;
        if n > 0 {
            tracing::warn!(calls = n, "CDRs written for calls cut by the node's stop");
        }
        Ok(n)
    }

    /// Writes the CDRs of the calls that other nodes left open and that no
    /// node will close: each such node has given no sign of life (heartbeat)
    /// for `node_timeout_secs`, as one that crashed and never came back
    /// (replaced, its data directory and name gone). As
    /// [`Engine::close_open_calls`] does for this node's own. Should the node
    /// return after all, its own CDR of such a call is refused as a
    /// duplicate. The number of CDRs written.
    pub async fn close_orphaned_calls(&self) -> Result<usize> {
        let me = self.store.node().to_owned();
        let now = maskline_events::unix_ms();
        let timeout_ms = i64::from(self.config.node_timeout_secs) * 1_000;
        let mut closed = 0;
        for node in self.store.open_call_nodes().await? {
            if node == me {
                continue;
            }
            let alive = self.last_heartbeat(&node).await?;
            let open = self.store.open_calls(&node).await?;
            // A node that died before its first heartbeat: its calls' own
            // last events are its last signs of life.
            let last_sign = alive.or_else(|| open.iter().map(last_event).max());
            if last_sign.is_some_and(|at| now - at < timeout_ms) {
                continue;
            }
            let n = self.close_calls(open, alive).await?;
            tracing::warn!(
                node = %node,
                calls = n,
                "CDRs written for calls of a node silent for longer than its timeout"
            );
            closed += n;
        }
        Ok(closed)
    }

    async fn last_heartbeat(&self, node: &str) -> Result<Option<i64>> {
        Ok(self
            .store
            .get_meta(&heartbeat_key(node))
            .await?
            .and_then(|v| v.parse::<i64>().ok()))
    }

    /// Ends `open` calls at `alive` (or each at its last event, if later)
    /// with `node_restart`, and records them.
    async fn close_calls(&self, open: Vec<CallRecord>, alive: Option<i64>) -> Result<usize> {
        let n = open.len();
        for mut c in open {
            let last = last_event(&c);
            c.ended_at = alive.map_or(last, |a| a.max(last));
            c.final_status = if c.answered_at.is_some() { 200 } else { 500 };
            c.released_by = ReleasedBy::System;
            c.release_reason = ReleaseReason::NodeRestart;
            c.refusal = None;
            self.record_call(c).await?;
        }
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

/// When a call in the journal last progressed.
fn last_event(c: &CallRecord) -> i64 {
    c.answered_at.or(c.ringing_at).unwrap_or(c.invited_at)
}

/// The `meta` key of a node's heartbeat.
fn heartbeat_key(node: &str) -> String {
    format!("alive.{node}")
}
