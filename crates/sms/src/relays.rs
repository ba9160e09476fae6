//! What the links share: the queue of relays waiting for a link, what an
//! incoming `deliver_sm` becomes (a text, a part, a receipt) and the
//! background work (relays from the engine, relays no node sent in time,
//! texts whose parts stopped coming).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use maskline_core::sms::{Sender, SenderId};
use maskline_core::{MessageId, MessageReason, Number, Region, UnixMillis};
use maskline_engine::{Engine, IncomingText, Relay};
use maskline_store::{Part, PartsKey};
use parking_lot::Mutex;
use rusmpp::CommandStatus;
use rusmpp::pdus::DeliverSm;
use tokio::sync::{Notify, watch};

use crate::alphabet::decode;
use crate::inbound::{Delivery, ReceiptState, TextPart, interpret};
use crate::unix_ms;

/// SMPP's type of number for an international number and for a name.
const TON_INTERNATIONAL: u8 = 1;
const TON_ALPHANUMERIC: u8 = 5;

/// Relays waiting for a link on this node.
#[derive(Default)]
pub(crate) struct Queue {
    inner: Mutex<QueueInner>,
    pub(crate) notify: Notify,
}

#[derive(Default)]
struct QueueInner {
    waiting: VecDeque<Relay>,
    /// Waiting here or in flight on a link.
    held: HashMap<MessageId, ()>,
}

impl Queue {
    /// Adds a relay; one already here (a claim of our own relay, its lease
    /// lapsed) only gets the new lease.
    pub(crate) fn push(&self, relay: Relay) {
        let mut q = self.inner.lock();
        if q.held.contains_key(&relay.message) {
            if let Some(r) = q.waiting.iter_mut().find(|r| r.message == relay.message) {
                r.lease_until = relay.lease_until;
            }
            return;
        }
        q.held.insert(relay.message, ());
        q.waiting.push_back(relay);
        drop(q);
        self.notify.notify_waiters();
    }

    /// Relays a link took and could not finish: first in line again.
    pub(crate) fn put_back(&self, relays: Vec<Relay>) {
        let mut q = self.inner.lock();
        for r in relays.into_iter().rev() {
            q.waiting.push_front(r);
        }
        drop(q);
        self.notify.notify_waiters();
    }

    /// The next relay this node still holds the lease of. One whose lease
    /// lapsed is dropped: another node may have claimed it, and if none
    /// did, this node's next claim brings it back.
    pub(crate) fn pop(&self, now: UnixMillis) -> Option<Relay> {
        let mut q = self.inner.lock();
        while let Some(r) = q.waiting.pop_front() {
            if r.lease_until > now {
                return Some(r);
            }
            q.held.remove(&r.message);
        }
        None
    }

    /// A relay is done with (handed over, or failed).
    pub(crate) fn done(&self, id: MessageId) {
        self.inner.lock().held.remove(&id);
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.lock().waiting.len()
    }
}

/// Everything the links of one node share.
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    pub(crate) queue: Queue,
    pub(crate) region: Region,
    /// Links bound right now.
    pub(crate) bound: AtomicUsize,
    /// One concatenated text's parts are handled one at a time (a shard
    /// lock by key), so that two parts completing it at once make one
    /// text.
    part_locks: Vec<tokio::sync::Mutex<()>>,
}

impl Shared {
    pub(crate) fn new(engine: Arc<Engine>, region: Region) -> Shared {
        Shared {
            engine,
            queue: Queue::default(),
            region,
            bound: AtomicUsize::new(0),
            part_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    fn part_lock(&self, key: &PartsKey) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.part_locks[(h.finish() % self.part_locks.len() as u64) as usize]
    }

    /// What a `deliver_sm` from `link` comes to, as the status of its
    /// `deliver_sm_resp`: `ESME_ROK` only once what it carried is durable
    /// (or it needed keeping not at all); a temporary failure of ours asks
    /// the SMSC to deliver it again later.
    pub(crate) async fn deliver(&self, link: &str, sm: &DeliverSm) -> CommandStatus {
        let delivery = match interpret(sm) {
            Ok(d) => d,
            Err(status) => {
                metrics::counter!("maskline_smpp_delivers_total", "kind" => "refused").increment(1);
                return status;
            }
        };
        let outcome = match delivery {
            Delivery::Receipt(r) => {
                metrics::counter!("maskline_smpp_delivers_total", "kind" => "receipt").increment(1);
                match r.state {
                    ReceiptState::Pending => Ok(()),
                    state => {
                        let delivered = state == ReceiptState::Delivered;
                        self.engine.text_receipt(link, &r.smsc_id, delivered).await
                    }
                }
            }
            Delivery::Text(part) => {
                metrics::counter!("maskline_smpp_delivers_total", "kind" => "text").increment(1);
                let Some(to) = self.number(part.destination_ton, &part.destination) else {
                    return CommandStatus::EsmeRinvdstadr;
                };
                let Some(from) = self.sender(part.source_ton, &part.source) else {
                    return CommandStatus::EsmeRinvsrcadr;
                };
                self.text(link, from, to, part).await
            }
        };
        match outcome {
            Ok(()) => CommandStatus::EsmeRok,
            Err(e) => {
                tracing::warn!(error = %e, link, "a delivered text could not be kept; the SMSC will retry");
                CommandStatus::EsmeRxTAppn
            }
        }
    }

    async fn text(
        &self,
        link: &str,
        from: Sender,
        to: Number,
        part: TextPart,
    ) -> maskline_engine::Result<()> {
        let ingress = format!("smpp:{link}");
        let Some(c) = part.concat else {
            self.engine
                .accept_text(IncomingText {
                    from,
                    to,
                    text: decode(part.coding, &part.bytes),
                    ingress,
                    assembled_from: None,
                })
                .await?;
            return Ok(());
        };
        let key = PartsKey {
            x: to,
            from: from.clone(),
            reference: c.reference,
        };
        let _one_at_a_time = self.part_lock(&key).lock().await;
        let parts = self
            .engine
            .record_part(Part {
                key: key.clone(),
                seq: c.seq,
                total: c.total,
                coding: part.coding,
                bytes: part.bytes,
                received_at: unix_ms(),
                ingress: ingress.clone(),
            })
            .await?;
        let complete = (1..=c.total).all(|n| parts.iter().any(|p| p.seq == n));
        if complete {
            self.assemble(key, from, to, &parts, ingress).await?;
        }
        Ok(())
    }

    /// Makes one text of the parts received (all of them, or what came
    /// before the parts timeout) and decides it.
    async fn assemble(
        &self,
        key: PartsKey,
        from: Sender,
        to: Number,
        parts: &[Part],
        ingress: String,
    ) -> maskline_engine::Result<()> {
        let coding = parts.first().map_or(0, |p| p.coding);
        let mut bytes = Vec::new();
        let mut seen = 0u8;
        for p in parts {
            // In seq order (the store lists them so); a part twice counts once.
            if p.seq > seen {
                bytes.extend_from_slice(&p.bytes);
                seen = p.seq;
            }
        }
        self.engine
            .accept_text(IncomingText {
                from,
                to,
                text: decode(coding, &bytes),
                ingress,
                assembled_from: Some(key),
            })
            .await?;
        Ok(())
    }

    /// Texts whose parts stopped coming before `before`: relayed with what
    /// arrived, rather than kept forever.
    pub(crate) async fn flush_stale_parts(
        &self,
        before: UnixMillis,
    ) -> maskline_engine::Result<()> {
        for key in self.engine.stale_parts(before).await? {
            let _one_at_a_time = self.part_lock(&key).lock().await;
            let parts = self.engine.parts(&key).await?;
            let Some(first) = parts.first() else {
                continue;
            };
            tracing::info!(x = ?key.x, parts = parts.len(), total = first.total, "a concatenated text stayed incomplete; relaying what came");
            let ingress = first.ingress.clone();
            self.assemble(key.clone(), key.from.clone(), key.x, &parts, ingress)
                .await?;
        }
        Ok(())
    }

    /// X from a destination address.
    fn number(&self, ton: u8, addr: &str) -> Option<Number> {
        let input = if ton == TON_INTERNATIONAL && !addr.starts_with('+') {
            format!("+{addr}")
        } else {
            addr.to_owned()
        };
        Number::parse(&input, self.region).ok()
    }

    /// The sender from a source address: a number when it is one, else a
    /// short code or a name.
    fn sender(&self, ton: u8, addr: &str) -> Option<Sender> {
        if ton != TON_ALPHANUMERIC
            && let Some(n) = self.number(ton, addr)
        {
            return Some(Sender::Number(n));
        }
        SenderId::new(addr).ok().map(Sender::Id)
    }
}

/// Relays the engine accepted on this node go to the queue (or, with no
/// link configured here, stay due in the store for a node that has one).
pub(crate) async fn pump(shared: Arc<Shared>, links: usize, mut shutdown: watch::Receiver<bool>) {
    let Some(mut relays) = shared.engine.relays() else {
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            r = relays.recv() => match r {
                Some(r) if links > 0 => shared.queue.push(r),
                Some(_) => {}
                None => return,
            },
        }
    }
}

/// Relays due in the store (their node died, or had no link up for their
/// lease) are claimed while a link here is bound; relays older than
/// `relay_timeout` fail; texts whose parts stopped coming are relayed with
/// what came.
pub(crate) async fn recover(
    shared: Arc<Shared>,
    lease: Duration,
    relay_timeout: Duration,
    parts_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => {}
        }
        ticks += 1;
        let now = unix_ms();
        let bound = shared.bound.load(Ordering::Relaxed) > 0;
        // With no link up, only every minute: to fail what is too old, and
        // leave the rest due for nodes that can send.
        if bound || ticks.is_multiple_of(30) {
            let lease_until = now + lease.as_millis() as i64;
            match shared.engine.claim_due_relays(lease_until, 512).await {
                Ok(claimed) => {
                    for r in claimed {
                        let too_old = r.accepted_at < now - relay_timeout.as_millis() as i64;
                        if too_old {
                            if let Err(e) = shared
                                .engine
                                .relay_failed(&r, MessageReason::SubmitFailed)
                                .await
                            {
                                tracing::warn!(error = %e, "recording a relay that could not be sent failed");
                            }
                        } else if bound {
                            shared.queue.push(r);
                        } else if let Err(e) = shared.engine.relay_later(r.message, now).await {
                            tracing::warn!(error = %e, "returning a relay failed");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming due relays failed"),
            }
        }
        if ticks.is_multiple_of(15) {
            let before = now - parts_timeout.as_millis() as i64;
            if let Err(e) = shared.flush_stale_parts(before).await {
                tracing::warn!(error = %e, "relaying incomplete texts failed");
            }
        }
        metrics::gauge!("maskline_sms_relays_waiting").set(shared.queue.len() as f64);
    }
}
