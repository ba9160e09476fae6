//! Texts through X: the decision for each (memory, and the store only for
//! a shared number's last call), the record of it with its event (durable
//! before the carrier or gateway hears "accepted"), the relays handed to the
//! carrier links, their receipts, and the tenants' SMS settings.

use std::collections::HashMap;
use std::sync::Arc;

use maskline_core::sms::{
    InboundText, Message, Sender, Settings, TextDecision, decide_release, decide_text,
    pickup::pickup_code,
};
use maskline_core::{
    Binding, BindingStatus, EventType, Extension, MessageId, MessageReason, MessageStatus, Number,
    TenantId, UnixMillis,
};
use maskline_events::{payload, unix_ms};
use maskline_store::{MessageFilter, NewEvent, Page, Part, PartsKey, Receipt, Submit, Write};
use tokio::sync::mpsc;

use crate::{Engine, Error, Result, now, settle};

/// A text arriving at X, decoded (and assembled from its parts).
#[derive(Clone, Debug)]
pub struct IncomingText {
    pub from: Sender,
    pub to: Number,
    pub text: String,
    /// `smpp:<link>` or `http:<gateway id>`.
    pub ingress: String,
    /// The parts it was assembled from, dropped with its record.
    pub assembled_from: Option<PartsKey>,
}

/// What became of an incoming text, once durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub id: MessageId,
    pub status: MessageStatus,
    pub reason: Option<MessageReason>,
}

/// A relayed text for a carrier link to send, from X.
#[derive(Clone, Debug)]
pub struct Relay {
    pub message: MessageId,
    pub tenant: TenantId,
    /// X: what the recipient sees as the sender.
    pub from: Number,
    pub to: Number,
    /// The text as sent: the tenant's prefix and the text.
    pub text: String,
    /// When it was accepted (a relay too old to send fails).
    pub accepted_at: UnixMillis,
    /// Until when this node holds it; after that the store offers it to
    /// whichever node claims it (see `claim_due_relays`).
    pub lease_until: UnixMillis,
}

/// The relays this node's carrier links send, in acceptance order.
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Relay>,
    rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Relay>>>,
}

impl Default for Outbox {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Outbox {
            tx,
            rx: parking_lot::Mutex::new(Some(rx)),
        }
    }
}

fn new_message_id() -> MessageId {
    MessageId(uuid::Uuid::now_v7().as_u128())
}

fn new_event_id() -> maskline_core::EventId {
    maskline_core::EventId(uuid::Uuid::now_v7().as_u128())
}

impl Engine {
    /// Decides an incoming text and records it with its event; returns once
    /// that is durable (only then may the carrier or gateway be told it was
    /// accepted). A relayed text then goes to the carrier links.
    pub async fn accept_text(&self, mut incoming: IncomingText) -> Result<Accepted> {
        if incoming.text.contains('\0') {
            // A NUL ends a C string in some tools and PostgreSQL refuses it
            // in text; it is never meant as a character.
            incoming.text = incoming.text.replace('\0', "\u{fffd}");
        }
        let now_s = now();
        let settings = self.sms_settings.read().clone();
        let filter = |t: TenantId| settings.get(&t).map(|s| &s.filter);
        let text = InboundText {
            from: &incoming.from,
            to: incoming.to,
            text: &incoming.text,
        };
        let ext_len = self.config.extension_len;
        let mut decision = {
            let index = self.index.read();
            decide_text(&index, &text, ext_len, None, filter, now_s)
        };
        if decision == TextDecision::NeedAffinity {
            let since = unix_ms() - self.config.sms_affinity_secs * 1000;
            let last_call = match incoming.from.number() {
                Some(caller) => {
                    self.store
                        .last_call_binding(incoming.to, caller, since)
                        .await?
                }
                None => None,
            };
            let affinity = last_call.and_then(|b| self.binding_extension(b));
            let index = self.index.read();
            decision = decide_text(&index, &text, ext_len, Some(affinity), filter, now_s);
        }
        let at = unix_ms();
        let mut message = Message {
            id: new_message_id(),
            tenant: None,
            binding: None,
            direction: None,
            x: incoming.to,
            from: incoming.from.clone(),
            to: None,
            pickup_code: pickup_code(&incoming.text),
            text: incoming.text,
            status: MessageStatus::Blocked,
            reason: None,
            parts: 0,
            ingress: incoming.ingress,
            created_at: at,
            updated_at: at,
            ends_at: now_s,
        };
        let mut relay = None;
        match decision {
            TextDecision::Relay(c) => {
                message.tenant = Some(c.tenant);
                message.binding = Some(c.binding);
                message.direction = Some(c.direction);
                message.to = Some(c.to);
                message.status = MessageStatus::Relayed;
                relay = Some(Relay {
                    message: message.id,
                    tenant: c.tenant,
                    from: c.caller_id,
                    to: c.to,
                    text: as_sent(&settings, c.tenant, &message.text),
                    accepted_at: at,
                    lease_until: at + self.config.sms_relay_lease_ms,
                });
            }
            TextDecision::Hold { tenant } => {
                message.tenant = Some(tenant);
                message.status = MessageStatus::Held;
                message.reason = Some(MessageReason::ExtensionUnknown);
            }
            TextDecision::Block {
                tenant,
                binding,
                reason,
            } => {
                message.tenant = tenant;
                message.binding = binding;
                message.reason = Some(reason);
            }
            // decide_text asks once, and was answered.
            TextDecision::NeedAffinity => {
                message.status = MessageStatus::Held;
                message.reason = Some(MessageReason::ExtensionUnknown);
            }
        }
        let kind = match message.status {
            MessageStatus::Relayed => EventType::SmsRelayed,
            MessageStatus::Held => EventType::SmsHeld,
            _ => EventType::SmsBlocked,
        };
        let accepted = Accepted {
            id: message.id,
            status: message.status,
            reason: message.reason,
        };
        let assembled = incoming.assembled_from.is_some();
        let ack = {
            // The text is kept as long as its binding: its end is read and
            // the record queued under the index lock, so a change of that
            // end (queued under the same lock) is applied after it and
            // moves it too.
            let index = self.index.read();
            if let Some(b) = message.binding {
                message.ends_at = index.ends_at(b).unwrap_or(now_s);
            }
            let events = self.message_event(kind, &message).into_iter().collect();
            self.store.enqueue(Write::RecordMessage {
                relay_due: relay.as_ref().map(|r| r.lease_until),
                message,
                assembled_from: incoming.assembled_from,
                events,
            })
        };
        match ack.await {
            Err(maskline_store::Error::Conflict(_)) if assembled => {
                return Err(Error::PartsAlreadyAssembled);
            }
            other => other?,
        }
        metrics::counter!(
            "maskline_sms_texts_total",
            "status" => accepted.status.as_str(),
            "reason" => accepted.reason.map_or("", |r| r.as_str()),
        )
        .increment(1);
        if let Some(r) = relay {
            let _ = self.outbox.tx.send(r);
        }
        Ok(accepted)
    }

    /// Relays a held text to the live binding on its X with `extension`
    /// (a console user read it and knows whom it is for), once that is
    /// durable, with `sms.relayed`. Only a held text of the tenant's:
    /// [`Error::MessageNotHeld`] otherwise (released already, say). The
    /// tenant's filter and the binding's controls apply as to any text: a
    /// text they would block stays held ([`Error::ReleaseBlocked`]), as
    /// does one for an extension no live binding has
    /// ([`Error::UnknownExtension`]).
    pub async fn release_text(
        &self,
        tenant: TenantId,
        id: MessageId,
        extension: Extension,
    ) -> Result<Message> {
        let mut message = self.message(tenant, id).await?;
        if message.status != MessageStatus::Held {
            return Err(Error::MessageNotHeld);
        }
        let settings = self.sms_settings.read().clone();
        let filter = |t: TenantId| settings.get(&t).map(|s| &s.filter);
        let text = InboundText {
            from: &message.from,
            to: message.x,
            text: &message.text,
        };
        let decision = {
            let index = self.index.read();
            decide_release(&index, &text, extension, filter, now())
        };
        let c = match decision {
            TextDecision::Relay(c) if c.tenant == tenant => c,
            TextDecision::Block {
                reason,
                tenant: Some(t),
                ..
            } if t == tenant => return Err(Error::ReleaseBlocked(reason)),
            _ => return Err(Error::UnknownExtension),
        };
        let at = unix_ms();
        message.binding = Some(c.binding);
        message.direction = Some(c.direction);
        message.to = Some(c.to);
        message.status = MessageStatus::Relayed;
        message.reason = None;
        message.updated_at = at;
        let relay = Relay {
            message: message.id,
            tenant,
            from: c.caller_id,
            to: c.to,
            text: as_sent(&settings, tenant, &message.text),
            accepted_at: at,
            lease_until: at + self.config.sms_relay_lease_ms,
        };
        let ack = {
            // As in accept_text: the binding's end is read and the change
            // queued under the index lock, so a later change of that end
            // moves the text's too.
            let index = self.index.read();
            message.ends_at = index.ends_at(c.binding).unwrap_or(message.ends_at);
            let Some(event) = self.message_event(EventType::SmsRelayed, &message) else {
                return Err(Error::MessageNotFound);
            };
            self.store.enqueue(Write::ReleaseMessage {
                message: message.clone(),
                relay_due: relay.lease_until,
                event,
            })
        };
        match ack.await {
            Err(maskline_store::Error::Conflict(_)) => return Err(Error::MessageNotHeld),
            other => other?,
        }
        let _ = self.outbox.tx.send(relay);
        Ok(message)
    }

    /// The relays accepted on this node, for its carrier links; `None` once
    /// taken.
    pub fn relays(&self) -> Option<mpsc::UnboundedReceiver<Relay>> {
        self.outbox.rx.lock().take()
    }

    /// Relays no node sent in time (see `Store::claim_due_relays`), held by
    /// this node until `lease_until`.
    pub async fn claim_due_relays(
        &self,
        lease_until: UnixMillis,
        limit: u32,
    ) -> Result<Vec<Relay>> {
        let claimed = self
            .store
            .claim_due_relays(unix_ms(), lease_until, limit)
            .await?;
        let settings = self.sms_settings.read().clone();
        Ok(claimed
            .into_iter()
            .filter_map(|m| {
                let (tenant, to) = (m.tenant?, m.to?);
                Some(Relay {
                    message: m.id,
                    tenant,
                    from: m.x,
                    to,
                    text: as_sent(&settings, tenant, &m.text),
                    accepted_at: m.created_at,
                    lease_until,
                })
            })
            .collect())
    }

    /// A carrier took the relay's `parts` parts: their ids there, for
    /// receipts.
    pub async fn relay_submitted(
        &self,
        message: MessageId,
        parts: u8,
        submits: Vec<Submit>,
    ) -> Result<()> {
        self.store
            .enqueue(Write::MessageSubmitted {
                message,
                parts,
                submits,
                at: unix_ms(),
            })
            .await?;
        Ok(())
    }

    /// This node still holds these relays (waiting for a busy link): no
    /// other node may claim them before `until`.
    pub async fn renew_relays(&self, messages: Vec<MessageId>, until: UnixMillis) -> Result<()> {
        for chunk in messages.chunks(1024) {
            self.store
                .enqueue(Write::LeaseRelays {
                    messages: chunk.to_vec(),
                    until,
                })
                .await?;
        }
        Ok(())
    }

    /// No link can take the relay now: it is due again at `due` (for this
    /// node or another).
    pub async fn relay_later(&self, message: MessageId, due: UnixMillis) -> Result<()> {
        self.store
            .enqueue(Write::RelayLater { message, due })
            .await?;
        Ok(())
    }

    /// The relay could not be sent (refused by every carrier, or too old):
    /// it is `failed`, with `sms.failed`.
    pub async fn relay_failed(&self, relay: &Relay, reason: MessageReason) -> Result<()> {
        let Some(message) = self.store.message(relay.tenant, relay.message).await? else {
            return Ok(());
        };
        self.record_outcome(message, None, false, Some(reason))
            .await
    }

    /// A carrier's receipt for one part it took as `smsc_id` on `link`;
    /// durable on return. One for an id no handover is recorded for yet
    /// (the SMSC answered the receipt before our record of the handover
    /// committed, or sent it to another node) is kept for
    /// [`Engine::match_receipts`].
    pub async fn text_receipt(&self, link: &str, smsc_id: &str, delivered: bool) -> Result<()> {
        if let Some(message) = self.store.message_by_submit(link, smsc_id).await? {
            return self.apply_receipt(message, link, smsc_id, delivered).await;
        }
        self.store
            .enqueue(Write::UnmatchedReceipt(Receipt {
                link: link.to_owned(),
                smsc_id: smsc_id.to_owned(),
                delivered,
                received_at: unix_ms(),
            }))
            .await?;
        // The handover's write was most likely queued just before this one:
        // then it is applied now rather than at the next match.
        if let Some(message) = self.store.message_by_submit(link, smsc_id).await? {
            self.apply_receipt(message, link, smsc_id, delivered)
                .await?;
            self.store
                .enqueue(Write::ForgetReceipts(vec![(
                    link.to_owned(),
                    smsc_id.to_owned(),
                )]))
                .await?;
        }
        Ok(())
    }

    /// Applies receipts kept unmatched whose handover is now recorded;
    /// forgets those older than `give_up_before` (texts purged, or never
    /// ours). Returns how many it applied.
    pub async fn match_receipts(&self, give_up_before: UnixMillis) -> Result<usize> {
        let mut applied = 0;
        let mut forget = Vec::new();
        for r in self.store.unmatched_receipts(512).await? {
            match self.store.message_by_submit(&r.link, &r.smsc_id).await? {
                Some(message) => {
                    self.apply_receipt(message, &r.link, &r.smsc_id, r.delivered)
                        .await?;
                    applied += 1;
                }
                None if r.received_at < give_up_before => {
                    tracing::debug!(link = %r.link, "receipt for an unknown message id dropped");
                }
                None => continue,
            }
            forget.push((r.link, r.smsc_id));
        }
        if !forget.is_empty() {
            self.store.enqueue(Write::ForgetReceipts(forget)).await?;
        }
        Ok(applied)
    }

    async fn apply_receipt(
        &self,
        message: Message,
        link: &str,
        smsc_id: &str,
        delivered: bool,
    ) -> Result<()> {
        let reason = (!delivered).then_some(MessageReason::Undeliverable);
        let part = Some((link.to_owned(), smsc_id.to_owned()));
        self.record_outcome(message, part, delivered, reason).await
    }

    async fn record_outcome(
        &self,
        mut message: Message,
        part: Option<(String, String)>,
        delivered: bool,
        reason: Option<MessageReason>,
    ) -> Result<()> {
        let at = unix_ms();
        let (kind, status) = if delivered {
            (EventType::SmsDelivered, MessageStatus::Delivered)
        } else {
            (EventType::SmsFailed, MessageStatus::Failed)
        };
        message.status = status;
        message.reason = reason;
        message.updated_at = at;
        let Some(event) = self.message_event(kind, &message) else {
            return Ok(());
        };
        self.store
            .enqueue(Write::MessageOutcome {
                message: message.id,
                part,
                delivered,
                reason,
                at,
                event,
            })
            .await?;
        Ok(())
    }

    /// Keeps one part of a concatenated text (durable on return) and
    /// returns every part of its text received so far.
    pub async fn record_part(&self, part: Part) -> Result<Vec<Part>> {
        let key = part.key.clone();
        self.store.enqueue(Write::RecordPart(part)).await?;
        Ok(self.store.parts(&key).await?)
    }

    pub async fn parts(&self, key: &PartsKey) -> Result<Vec<Part>> {
        Ok(self.store.parts(key).await?)
    }

    /// Texts whose parts started arriving before `before` and never
    /// completed.
    pub async fn stale_parts(&self, before: UnixMillis) -> Result<Vec<PartsKey>> {
        Ok(self.store.stale_parts(before).await?)
    }

    pub async fn message(&self, tenant: TenantId, id: MessageId) -> Result<Message> {
        self.store
            .message(tenant, id)
            .await?
            .ok_or(Error::MessageNotFound)
    }

    pub async fn messages(
        &self,
        tenant: TenantId,
        filter: &MessageFilter,
        page: Page<MessageId>,
    ) -> Result<Vec<Message>> {
        Ok(self.store.messages(tenant, filter, page).await?)
    }

    /// A tenant's bindings in which `party` is A or B and that are active.
    pub async fn party_bindings(
        &self,
        tenant: TenantId,
        party: Number,
        page: Page<maskline_core::BindingId>,
    ) -> Result<Vec<Binding>> {
        let filter = maskline_store::BindingFilter {
            party: Some(party),
            status: Some((BindingStatus::Active, now(), self.config.cooldown_secs)),
            ..maskline_store::BindingFilter::default()
        };
        Ok(self.store.bindings(tenant, &filter, page).await?)
    }

    pub fn sms_settings(&self, tenant: TenantId) -> Arc<Settings> {
        self.sms_settings
            .read()
            .get(&tenant)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn put_sms_settings(&self, tenant: TenantId, settings: Settings) -> Result<()> {
        let serial = self.sms_lock.clone().lock_owned().await;
        let ack = self.store.enqueue(Write::PutSmsSettings {
            tenant,
            settings: settings.clone(),
            updated_at: now(),
        });
        // Memory follows the store even if our caller goes away meanwhile.
        let memory = self.sms_settings.clone();
        settle(ack, move |outcome| {
            if outcome.is_ok() {
                let mut all = (**memory.read()).clone();
                all.insert(tenant, Arc::new(settings));
                *memory.write() = Arc::new(all);
            }
            drop(serial);
        })
        .await?;
        Ok(())
    }

    /// Reads every tenant's SMS settings again (another node changed one);
    /// not while a change here is being made, which it could undo.
    pub(crate) async fn reload_sms_settings(&self) -> Result<()> {
        let _serial = self.sms_lock.lock().await;
        let all = load_sms_settings(&*self.store).await?;
        *self.sms_settings.write() = Arc::new(all);
        Ok(())
    }

    pub(crate) fn message_event(&self, kind: EventType, message: &Message) -> Option<NewEvent> {
        let tenant = message.tenant?;
        let (id, at) = (new_event_id(), unix_ms());
        Some(NewEvent {
            id,
            tenant,
            kind,
            // A binding's texts, calls and changes are delivered in order.
            subject: message.binding.map_or(message.id.0, |b| b.0),
            created_at: at,
            body: payload::message_event(id, kind, at, message),
            deliver: self.webhooks.wants(tenant, kind),
        })
    }

    /// The extension of a binding in memory (a live `axe` binding).
    fn binding_extension(&self, id: maskline_core::BindingId) -> Option<maskline_core::Extension> {
        self.index.read().extension_of(id)
    }
}

pub(crate) type SmsSettingsMap = Arc<HashMap<TenantId, Arc<Settings>>>;

/// A relayed text as the recipient gets it: the tenant's prefix, then the
/// text.
fn as_sent(settings: &SmsSettingsMap, tenant: TenantId, text: &str) -> String {
    match settings.get(&tenant).and_then(|s| s.prefix.as_deref()) {
        Some(prefix) => format!("{prefix}{text}"),
        None => text.to_owned(),
    }
}

pub(crate) async fn load_sms_settings(
    store: &dyn maskline_store::Store,
) -> Result<HashMap<TenantId, Arc<Settings>>> {
    Ok(store
        .sms_settings()
        .await?
        .into_iter()
        .map(|s| (s.tenant, Arc::new(s.settings)))
        .collect())
}
