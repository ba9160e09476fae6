//! Events (recorded in the same store write as the change that causes
//! them), the tenants' webhook settings, and the event log's reads.

use std::sync::Arc;

use maskline_core::{
    Binding, BindingStatus, CallRecord, EventId, EventPattern, EventType, TenantId,
};
use maskline_events::{payload, unix_ms};
use maskline_store::{Intercept, NewEvent, Page, StoredEvent, Webhook, Write, WriteAck};

use crate::{Engine, Error, Result, now, settle};

/// Most event types one webhook subscribes to.
pub const MAX_EVENT_PATTERNS: usize = 32;
/// How long a call waits for the intercept when none is given.
pub const DEFAULT_INTERCEPT_TIMEOUT_MS: u32 = 800;
/// The intercept's wait a tenant may set, in ms.
pub const INTERCEPT_TIMEOUT_MS: std::ops::RangeInclusive<u32> = 50..=10_000;

/// A `PUT /v1/webhook`, validated.
#[derive(Clone, Debug)]
pub struct WebhookSpec {
    pub url: String,
    /// Empty: every type.
    pub events: Vec<EventPattern>,
    pub intercept: Option<Intercept>,
}

fn new_id() -> EventId {
    EventId(uuid::Uuid::now_v7().as_u128())
}

impl Engine {
    /// Whether this tenant's webhook wants events of `kind` now.
    fn wants(&self, tenant: TenantId, kind: EventType) -> bool {
        self.webhooks.wants(tenant, kind)
    }

    pub(crate) fn binding_event(
        &self,
        kind: EventType,
        binding: &Binding,
        status: BindingStatus,
        changed: Vec<&'static str>,
    ) -> NewEvent {
        let (id, at) = (new_id(), unix_ms());
        NewEvent {
            id,
            tenant: binding.tenant,
            kind,
            subject: binding.id.0,
            created_at: at,
            body: payload::binding_event(id, kind, at, binding, status, changed),
            deliver: self.wants(binding.tenant, kind),
        }
    }

    /// The event for a call's progress or end; `None` for a call to a
    /// number in no pool (there is no tenant to tell).
    pub fn call_event(&self, kind: EventType, call: &CallRecord) -> Option<NewEvent> {
        let tenant = call.tenant?;
        let (id, at) = (new_id(), unix_ms());
        Some(NewEvent {
            id,
            tenant,
            kind,
            // A binding's calls and changes are delivered in one order.
            subject: call.binding.map_or(call.id.0, |b| b.0),
            created_at: at,
            body: payload::call_event(id, kind, at, call),
            deliver: self.wants(tenant, kind),
        })
    }

    /// Records `call.recorded` once a call's recording is complete.
    pub fn record_call_recorded(&self, call: &CallRecord, duration_ms: u64) -> Option<WriteAck> {
        let tenant = call.tenant?;
        let kind = EventType::CallRecorded;
        let (id, at) = (new_id(), unix_ms());
        let event = NewEvent {
            id,
            tenant,
            kind,
            subject: call.binding.map_or(call.id.0, |b| b.0),
            created_at: at,
            body: payload::recorded_event(id, at, call, duration_ms),
            deliver: self.wants(tenant, kind),
        };
        Some(self.store.enqueue(Write::RecordEvents(vec![event])))
    }

    /// Records a call's progress (`call.started`, `.ringing`, `.answered`)
    /// with the call so far in the open-call journal, so that a crash
    /// still leaves its CDR (`node_restart`, see [`Engine::close_open_calls`]).
    /// The ack resolves once it is durable; the SIP layer relays the
    /// progress to the caller only then.
    pub fn record_call_progress(&self, kind: EventType, call: &CallRecord) -> Option<WriteAck> {
        let event = self.call_event(kind, call)?;
        Some(self.store.enqueue(Write::OpenCall {
            record: call.clone(),
            events: vec![event],
        }))
    }

    pub fn webhooks(&self) -> &Arc<maskline_events::Webhooks> {
        &self.webhooks
    }

    pub fn webhook(&self, tenant: TenantId) -> Option<Arc<Webhook>> {
        self.webhooks.get(tenant)
    }

    /// Sets a tenant's webhook. The signing secret is kept if there is one,
    /// else made; the result carries it.
    pub async fn put_webhook(&self, tenant: TenantId, spec: WebhookSpec) -> Result<Webhook> {
        let _serial = self.webhook_lock.lock().await;
        let secret = match self.webhooks.get(tenant) {
            Some(w) => w.secret.clone(),
            None => maskline_events::new_secret(),
        };
        self.store_webhook(Webhook {
            tenant,
            url: spec.url,
            events: spec.events,
            secret,
            intercept: spec.intercept,
            updated_at: now(),
        })
        .await
    }

    /// Replaces the signing secret; deliveries from now on use the new one.
    pub async fn rotate_webhook_secret(&self, tenant: TenantId) -> Result<Webhook> {
        let _serial = self.webhook_lock.lock().await;
        let current = self.webhooks.get(tenant).ok_or(Error::WebhookNotSet)?;
        self.store_webhook(Webhook {
            secret: maskline_events::new_secret(),
            updated_at: now(),
            ..(*current).clone()
        })
        .await
    }

    pub async fn delete_webhook(&self, tenant: TenantId) -> Result<()> {
        let _serial = self.webhook_lock.lock().await;
        if self.webhooks.get(tenant).is_none() {
            return Err(Error::WebhookNotSet);
        }
        self.store.enqueue(Write::DeleteWebhook { tenant }).await?;
        self.webhooks.remove(tenant);
        Ok(())
    }

    async fn store_webhook(&self, webhook: Webhook) -> Result<Webhook> {
        self.store
            .enqueue(Write::PutWebhook(webhook.clone()))
            .await?;
        self.webhooks.set(webhook.clone());
        // Events already pending for this tenant may go now.
        self.store.events_signal().notify_one();
        Ok(webhook)
    }

    pub async fn event(&self, tenant: TenantId, id: EventId) -> Result<StoredEvent> {
        self.store
            .event(tenant, id)
            .await?
            .ok_or(Error::EventNotFound)
    }

    /// A tenant's events in the order they happened.
    pub async fn events(
        &self,
        tenant: TenantId,
        types: &[EventType],
        page: Page<i64>,
    ) -> Result<Vec<StoredEvent>> {
        Ok(self.store.events(tenant, types, page).await?)
    }

    /// A tenant's events, newest first, before sequence number `before`.
    pub async fn recent_events(
        &self,
        tenant: TenantId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        Ok(self
            .store
            .recent_events(
                tenant,
                Page {
                    after: before,
                    limit,
                },
            )
            .await?)
    }

    /// Queues an event for delivery again (whatever became of it), with a
    /// fresh retry window.
    pub async fn redeliver(&self, tenant: TenantId, id: EventId) -> Result<StoredEvent> {
        if self.webhooks.get(tenant).is_none() {
            return Err(Error::WebhookNotSet);
        }
        self.event(tenant, id).await?;
        let ack = self.store.enqueue(Write::Redeliver {
            tenant,
            event: id,
            at: unix_ms(),
        });
        settle(ack, |_| {}).await?;
        self.event(tenant, id).await
    }
}
