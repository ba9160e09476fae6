//! What the links share: the queue of relays waiting for a link, what an
//! incoming `deliver_sm` becomes (a text, a part, a receipt) and the
//! background work (relays from the engine, relays no node sent in time,
//! texts whose parts stopped coming).

use std::collections::{HashMap, HashSet, VecDeque};
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

/// How long a receipt for a carrier id we do not know waits for the record
/// of its handover (a node that took the text may be slow to write it).
const RECEIPT_PATIENCE_MS: i64 = 3_600_000;

/// SMPP's type of number for an international number and for a name.
const TON_INTERNATIONAL: u8 = 1;
const TON_ALPHANUMERIC: u8 = 5;

/// Relays waiting for a link on this node, and the leases this node holds
/// on them (on those in flight on a link too).
pub(crate) struct Queue {
    inner: Mutex<QueueInner>,
    pub(crate) notify: Notify,
    lease_ms: i64,
}

#[derive(Default)]
struct QueueInner {
    waiting: VecDeque<Relay>,
    /// Waiting here or in flight on a link: until when this node holds it.
    held: HashMap<MessageId, UnixMillis>,
    /// Finished while a claim is under way: the claim may have read them
    /// from the store before their handover committed.
    finished: Option<HashSet<MessageId>>,
}

impl Queue {
    pub(crate) fn new(lease: Duration) -> Queue {
        Queue {
            inner: Mutex::default(),
            notify: Notify::new(),
            lease_ms: lease.as_millis() as i64,
        }
    }

    /// A relay is taken from the queue only with this much of its lease
    /// left: time to hand it over before another node may claim it.
    fn margin(&self) -> i64 {
        self.lease_ms / 3
    }

    /// Adds a relay; one already here (a claim of our own relay, its lease
    /// lapsed) only gets the new lease. One whose lease is (nearly) over is
    /// left to the store, which offers it to the next claim.
    pub(crate) fn push(&self, relay: Relay, now: UnixMillis) {
        if self.push_locked(&mut self.inner.lock(), relay, now) {
            self.notify.notify_waiters();
        }
    }

    fn push_locked(&self, q: &mut QueueInner, relay: Relay, now: UnixMillis) -> bool {
        if relay.lease_until <= now + self.margin() {
            return false;
        }
        if let Some(lease) = q.held.get_mut(&relay.message) {
            *lease = (*lease).max(relay.lease_until);
            let lease = *lease;
            if let Some(r) = q.waiting.iter_mut().find(|r| r.message == relay.message) {
                r.lease_until = lease;
            }
            return false;
        }
        q.held.insert(relay.message, relay.lease_until);
        q.waiting.push_back(relay);
        true
    }

    /// A claim of due relays begins: relays finished from now on are
    /// remembered until [`Queue::push_claimed`].
    pub(crate) fn start_claim(&self) {
        self.inner.lock().finished = Some(HashSet::new());
    }

    /// Adds what a claim returned, but not a relay finished meanwhile.
    pub(crate) fn push_claimed(&self, relays: Vec<Relay>, now: UnixMillis) {
        let mut q = self.inner.lock();
        let finished = q.finished.take().unwrap_or_default();
        let mut added = false;
        for r in relays {
            if !finished.contains(&r.message) {
                added |= self.push_locked(&mut q, r, now);
            }
        }
        drop(q);
        if added {
            self.notify.notify_waiters();
        }
    }

    /// Relays a link took and could not finish: first in line again.
    pub(crate) fn put_back(&self, relays: Vec<Relay>) {
        let mut q = self.inner.lock();
        for mut r in relays.into_iter().rev() {
            if let Some(lease) = q.held.get(&r.message) {
                r.lease_until = *lease;
            }
            q.waiting.push_front(r);
        }
        drop(q);
        self.notify.notify_waiters();
    }

    /// The next relay this node holds with time to send it. One whose lease
    /// is (nearly) over is dropped: another node may claim it, and if none
    /// does, this node's next claim brings it back.
    pub(crate) fn pop(&self, now: UnixMillis) -> Option<Relay> {
        let mut q = self.inner.lock();
        while let Some(r) = q.waiting.pop_front() {
            if r.lease_until > now + self.margin() {
                return Some(r);
            }
            q.held.remove(&r.message);
        }
        None
    }

    /// A relay is done with (handed over, or failed).
    pub(crate) fn done(&self, id: MessageId) {
        let mut q = self.inner.lock();
        q.held.remove(&id);
        if let Some(finished) = q.finished.as_mut() {
            finished.insert(id);
        }
    }

    /// Relays held whose lease should be renewed now: a third of it is
    /// left, at least the margin (a lease closer to its end may lapse
    /// before the renewal commits, and is let go).
    pub(crate) fn to_renew(&self, now: UnixMillis) -> Vec<MessageId> {
        let q = self.inner.lock();
        let (low, high) = (now + self.margin(), now + self.lease_ms * 2 / 3);
        q.held
            .iter()
            .filter(|(_, lease)| (low..high).contains(*lease))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The store holds these relays for this node until `until`.
    pub(crate) fn renewed(&self, ids: &[MessageId], until: UnixMillis) {
        let mut q = self.inner.lock();
        for id in ids {
            if let Some(lease) = q.held.get_mut(id) {
                *lease = (*lease).max(until);
            }
        }
        let QueueInner { waiting, held, .. } = &mut *q;
        for r in waiting.iter_mut() {
            if let Some(lease) = held.get(&r.message) {
                r.lease_until = *lease;
            }
        }
    }

    /// With no link bound, relays whose lease is (nearly) over are let go
    /// rather than kept in memory.
    pub(crate) fn prune(&self, now: UnixMillis) {
        let mut q = self.inner.lock();
        let limit = now + self.margin();
        let QueueInner { waiting, held, .. } = &mut *q;
        waiting.retain(|r| {
            let keep = r.lease_until > limit;
            if !keep {
                held.remove(&r.message);
            }
            keep
        });
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
    pub(crate) fn new(engine: Arc<Engine>, region: Region, lease: Duration) -> Shared {
        Shared {
            engine,
            queue: Queue::new(lease),
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
        let accepted = self
            .engine
            .accept_text(IncomingText {
                from,
                to,
                text: decode(coding, &bytes),
                ingress,
                assembled_from: Some(key),
            })
            .await;
        match accepted {
            // Another node (or this one, for a part the SMSC sent twice)
            // made the text: one text, and this part is safe with it.
            Err(maskline_engine::Error::PartsAlreadyAssembled) => Ok(()),
            other => other.map(drop),
        }
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
                Some(r) if links > 0 => shared.queue.push(r, unix_ms()),
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
        let lease_until = now + lease.as_millis() as i64;
        if bound {
            // Relays waiting for a busy link stay this node's.
            let ids = shared.queue.to_renew(now);
            if !ids.is_empty() {
                match shared.engine.renew_relays(ids.clone(), lease_until).await {
                    Ok(()) => shared.queue.renewed(&ids, lease_until),
                    Err(e) => tracing::warn!(error = %e, "renewing relay leases failed"),
                }
            }
        } else {
            shared.queue.prune(now);
        }
        if bound || ticks.is_multiple_of(30) {
            shared.queue.start_claim();
            let mut to_send = Vec::new();
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
                            to_send.push(r);
                        } else if let Err(e) = shared.engine.relay_later(r.message, now).await {
                            tracing::warn!(error = %e, "returning a relay failed");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming due relays failed"),
            }
            shared.queue.push_claimed(to_send, unix_ms());
        }
        if let Err(e) = shared
            .engine
            .match_receipts(now - RECEIPT_PATIENCE_MS)
            .await
        {
            tracing::warn!(error = %e, "matching receipts to their texts failed");
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

#[cfg(test)]
mod tests {
    use maskline_core::TenantId;

    use super::*;

    const LEASE: i64 = 30_000;

    fn relay(id: u128, lease_until: UnixMillis) -> Relay {
        let region: Region = "CN".parse().unwrap();
        let n = |s: &str| Number::parse(s, region).unwrap();
        Relay {
            message: MessageId(id),
            tenant: TenantId(1),
            from: n("+8617000000001"),
            to: n("+8613800000000"),
            text: "hi".into(),
            accepted_at: 0,
            lease_until,
        }
    }

    fn queue() -> Queue {
        Queue::new(Duration::from_millis(LEASE as u64))
    }

    fn ids(q: &Queue, now: UnixMillis) -> Vec<u128> {
        std::iter::from_fn(|| q.pop(now))
            .map(|r| r.message.0)
            .collect()
    }

    #[test]
    fn a_relay_is_popped_only_with_time_left_to_send_it() {
        let q = queue();
        q.push(relay(1, 1_000 + LEASE), 1_000);
        // Nearly over on arrival: left to the store.
        q.push(relay(2, 1_000 + LEASE / 4), 1_000);
        q.push(relay(3, 1_000 + LEASE), 1_000);
        assert_eq!(q.len(), 2);
        // Two thirds of the lease gone: not worth starting.
        assert_eq!(ids(&q, 1_000 + LEASE * 2 / 3), Vec::<u128>::new());
        assert_eq!(q.len(), 0);
        // Dropped from the held set too: a claim brings it back.
        q.push(relay(1, 50_000 + LEASE), 50_000);
        assert_eq!(ids(&q, 50_000), vec![1]);
    }

    #[test]
    fn a_relay_held_twice_is_queued_once_with_the_later_lease() {
        let q = queue();
        q.push(relay(1, 1_000 + LEASE), 1_000);
        q.push(relay(1, 5_000 + LEASE), 5_000);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(5_000).unwrap().lease_until, 5_000 + LEASE);
        // In flight: a claim of it changes its lease, not the queue.
        q.push(relay(1, 9_000 + LEASE), 9_000);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_claim_does_not_bring_back_a_relay_finished_meanwhile() {
        let q = queue();
        q.push(relay(1, 1_000 + LEASE), 1_000);
        let sent = q.pop(1_000).unwrap();
        q.start_claim();
        // The claim read relay 1 before its handover committed.
        q.done(sent.message);
        q.push_claimed(
            vec![relay(1, 2_000 + LEASE), relay(2, 2_000 + LEASE)],
            2_000,
        );
        assert_eq!(ids(&q, 2_000), vec![2]);
        // Outside a claim nothing is remembered.
        q.done(MessageId(2));
        assert!(q.inner.lock().finished.is_none());
    }

    #[test]
    fn leases_are_renewed_before_they_run_short_and_pruned_when_over() {
        let q = queue();
        q.push(relay(1, LEASE), 0);
        q.push(relay(2, 5_000 + LEASE), 5_000);
        let held_out = q.pop(0).unwrap();
        // Relay 1 (in flight) has a third of its lease left; 2 has more.
        let now = LEASE / 3 + 100;
        assert_eq!(q.to_renew(now), vec![MessageId(1)]);
        q.renewed(&[MessageId(1)], now + LEASE);
        assert!(q.to_renew(now).is_empty());
        q.put_back(vec![held_out]);
        assert_eq!(q.pop(now).unwrap().lease_until, now + LEASE);
        // No link bound: what can no longer be sent in time is let go.
        q.prune(5_000 + LEASE * 2 / 3);
        assert_eq!(q.len(), 0);
        assert!(q.inner.lock().held.contains_key(&MessageId(1)));
        assert!(!q.inner.lock().held.contains_key(&MessageId(2)));
    }
}
