//! Call detail records: written by the SIP layer, listed by the API.

use maskline_core::{CallId, CallRecord, EventType, Number, ReleaseReason, ReleasedBy, TenantId};
use maskline_store::{CallFilter, Page, Write, WriteAck};

use std::sync::Arc;

use crate::{Engine, Error, Result};

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
        let n = self.close_calls(open, alive).await;
        if n > 0 {
            tracing::warn!(calls = n, "CDRs written for calls cut by the node's stop");
        }
        Ok(n)
    }

    /// Writes the CDRs of the calls that other nodes left open and that no
    /// node will close: each such node has given no sign of life for
    /// `node_timeout_secs`, as one that crashed and never came back
    /// (replaced, its data directory and name gone). As
    /// [`Engine::close_open_calls`] does for this node's own. The number of
    /// CDRs written.
    ///
    /// Silence is what this node saw: the other's heartbeat (`alive.<node>`)
    /// unchanged over `node_timeout_secs` of this node's reads, every one of
    /// which succeeded. A read that fails (the database is away, and no node
    /// can beat) starts the watch again, so an outage never makes the nodes
    /// close each other's calls.
    pub async fn close_orphaned_calls(&self) -> Result<usize> {
        let watched = self.watch_heartbeats().await;
        let silent = match watched {
            Ok(silent) => silent,
            Err(e) => {
                self.heartbeats_seen.lock().clear();
                return Err(e);
            }
        };
        let mut closed = 0;
        for (node, alive) in silent {
            let open = self.store.open_calls(&node).await?;
            let n = self.close_calls(open, alive).await;
            if n > 0 {
                tracing::warn!(
                    node = %node,
                    calls = n,
                    "CDRs written for the calls of a node silent for longer than its timeout"
                );
            }
            closed += n;
        }
        Ok(closed)
    }

    /// Reads the heartbeat of every other node with open calls; those whose
    /// heartbeat has not changed for `node_timeout_secs` of watching, with
    /// their last one.
    async fn watch_heartbeats(&self) -> Result<Vec<(String, Option<i64>)>> {
        let me = self.store.node().to_owned();
        let timeout = std::time::Duration::from_secs(u64::from(self.config.node_timeout_secs));
        let mut beats = Vec::new();
        for node in self.store.open_call_nodes().await? {
            if node != me {
                let alive = self.last_heartbeat(&node).await?;
                beats.push((node, alive));
            }
        }
        let now = std::time::Instant::now();
        let mut seen = self.heartbeats_seen.lock();
        seen.retain(|node, _| beats.iter().any(|(n, _)| n == node));
        let mut silent = Vec::new();
        for (node, alive) in beats {
            let (last, since) = seen.entry(node.clone()).or_insert((alive, now));
            if *last != alive {
                (*last, *since) = (alive, now);
            } else if now.duration_since(*since) >= timeout {
                silent.push((node, alive));
            }
        }
        Ok(silent)
    }

    async fn last_heartbeat(&self, node: &str) -> Result<Option<i64>> {
        Ok(self
            .store
            .get_meta(&heartbeat_key(node))
            .await?
            .and_then(|v| v.parse::<i64>().ok()))
    }

    /// Ends `open` calls at `alive` (or each at its last event, if later)
    /// with `node_restart`, and records them; how many it wrote. A call whose
    /// CDR exists already (another node closed it first) is only taken out
    /// of the journal; one that fails otherwise is logged and left for the
    /// next try.
    async fn close_calls(&self, open: Vec<CallRecord>, alive: Option<i64>) -> usize {
        let mut written = 0;
        for mut c in open {
            let last = last_event(&c);
            c.ended_at = alive.map_or(last, |a| a.max(last));
            c.final_status = if c.answered_at.is_some() { 200 } else { 500 };
            c.released_by = ReleasedBy::System;
            c.release_reason = ReleaseReason::NodeRestart;
            c.refusal = None;
            let id = c.id;
            match self.record_call(c).await {
                Ok(()) => written += 1,
                Err(maskline_store::Error::Conflict(_)) => {
                    if let Err(e) = self.store.enqueue(Write::ForgetOpenCalls(vec![id])).await {
                        tracing::warn!(cdr = %id, error = %e, "cannot take a closed call out of the journal");
                    }
                }
                Err(e) => {
                    tracing::warn!(cdr = %id, error = %e, "cannot write the CDR of a call cut by a node's stop");
                }
            }
        }
        written
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

/// A call's recording being read: its length and its bytes, a chunk at a
/// time, read from storage off the async threads.
pub struct RecordingStream {
    /// Bytes, WAV header included.
    pub len: u64,
    pub chunks: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
}

/// Bytes read from storage per chunk of a recording.
const RECORDING_CHUNK: usize = 64 * 1024;

impl Engine {
    /// Where `tenant`'s recording of `call` is kept, if recordings are on.
    fn recording_key(
        &self,
        tenant: TenantId,
        call: CallId,
    ) -> Option<(
        Arc<dyn maskline_media::recordings::Recordings>,
        maskline_media::recordings::RecordingKey,
    )> {
        let key =
            maskline_media::recordings::RecordingKey::new(&tenant.to_string(), &call.to_string())?;
        Some((self.recordings()?.clone(), key))
    }

    /// `tenant`'s recording of `call`, streamed; `None` when there is none.
    pub async fn recording(
        &self,
        tenant: TenantId,
        call: CallId,
    ) -> Result<Option<RecordingStream>> {
        use std::io::Read;
        let Some((store, key)) = self.recording_key(tenant, call) else {
            return Ok(None);
        };
        let opened = tokio::task::spawn_blocking(move || store.open(&key))
            .await
            .map_err(|_| Error::RecordingStorage)?
            .map_err(|e| {
                tracing::error!(error = %e, "recording storage failed");
                Error::RecordingStorage
            })?;
        let Some(recording) = opened else {
            return Ok(None);
        };
        let len = recording.len;
        let mut reader = recording.reader;
        let (tx, chunks) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut left = len;
            while left > 0 {
                let mut buf = vec![0u8; RECORDING_CHUNK.min(left as usize)];
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        left -= n as u64;
                        if tx.blocking_send(Ok(buf)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        break;
                    }
                }
            }
        });
        Ok(Some(RecordingStream { len, chunks }))
    }

    /// How long each call's recording is, in milliseconds (`None`: no
    /// recording), in the order of `calls`.
    pub async fn recording_durations(
        &self,
        tenant: TenantId,
        calls: &[CallId],
    ) -> Vec<Option<u64>> {
        let Some(store) = self.recordings().cloned() else {
            return vec![None; calls.len()];
        };
        let keys: Vec<_> = calls
            .iter()
            .map(|c| {
                maskline_media::recordings::RecordingKey::new(&tenant.to_string(), &c.to_string())
            })
            .collect();
        let n = keys.len();
        tokio::task::spawn_blocking(move || {
            keys.iter()
                .map(|k| {
                    let len = k.as_ref().and_then(|k| store.len(k).ok().flatten())?;
                    // 8 kHz, two 16-bit channels, after the 44-byte header.
                    Some(len.saturating_sub(44) / 4 * 1000 / 8000)
                })
                .collect()
        })
        .await
        .unwrap_or_else(|_| vec![None; n])
    }
}

impl Engine {
    /// `tenant`'s calls and texts per minute since `since`, and its events
    /// waiting for delivery.
    pub async fn activity(
        &self,
        tenant: TenantId,
        since: maskline_core::UnixMillis,
    ) -> Result<maskline_store::Activity> {
        Ok(self.store.activity(tenant, since).await?)
    }
}
