//! Creating, changing and ending bindings.

use maskline_core::{
    AllocRequest, Area, AreaMatch, Binding, BindingId, BindingStatus, Controls, EndReason,
    EventType, Mode, NewBinding, Number, TenantId, UnixTime,
};
use maskline_store::{BindingFilter, IdempotencyRecord, Page, Write};

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Engine, Error, Result, now, settle};

/// How long a new binding lives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expiry {
    Default,
    In(i64),
    At(UnixTime),
}

/// A create request, already parsed and validated field by field.
#[derive(Clone, Debug)]
pub struct BindingSpec {
    pub mode: Mode,
    pub a: Number,
    pub b: Option<Number>,
    pub expiry: Expiry,
    pub area: Option<Area>,
    pub area_match: AreaMatch,
    pub external_ref: Option<String>,
    pub controls: Controls,
}

/// An `Idempotency-Key` and the hash of the request body it came with.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: [u8; 32],
}

pub enum Created {
    /// A new binding, and the response body recorded for replays.
    Fresh(Box<Binding>, String),
    /// The first response to this `Idempotency-Key`.
    Replayed { status: u16, body: String },
}

/// Fields of a PATCH; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct BindingPatch {
    /// `Some(None)` removes B (axn and axe only).
    pub b: Option<Option<Number>>,
    pub expires_at: Option<UnixTime>,
    pub controls: Option<ControlsPatch>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ControlsPatch {
    pub a_to_b: Option<bool>,
    pub b_to_a: Option<bool>,
    pub max_call_seconds: Option<Option<u32>>,
    pub record: Option<bool>,
    pub sms: Option<bool>,
    pub pre_connect: Option<bool>,
    pub callee_whisper: Option<bool>,
    pub warn_before_end_seconds: Option<Option<u32>>,
}

/// Allocations tried for one create when other nodes keep taking what
/// memory offers; then the request is refused as a conflict.
const MAX_ALLOCATION_ATTEMPTS: u32 = 4;

/// Removes an idempotency key from the in-flight set however the request
/// ends.
struct InflightGuard {
    inflight: Arc<Mutex<HashSet<(TenantId, String)>>>,
    key: Option<(TenantId, String)>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.inflight.lock().remove(&k);
        }
    }
}

/// Makes sure memory holds a stored binding before it is changed: one
/// another node created may not have reached this node yet.
fn know(index: &mut maskline_core::Index, stored: &Binding, now: UnixTime) {
    if index.is_ended(stored.id).is_none()
        && let Err(e) = index.apply(&index_entry(stored, false), now)
    {
        tracing::warn!(binding = %stored.id, error = %e, "stored binding does not fit the index");
    }
}

pub(crate) fn index_entry(b: &Binding, pending: bool) -> NewBinding {
    NewBinding {
        id: b.id,
        tenant: b.tenant,
        mode: b.mode,
        x: b.x,
        extension: b.extension,
        a: b.a,
        b: b.b,
        ends_at: b.ends_at(),
        ended: b.ended_at.is_some(),
        controls: b.controls,
        pending,
    }
}

impl Engine {
    fn expiry_to_time(&self, expiry: Expiry, now: UnixTime) -> Result<UnixTime> {
        let at = match expiry {
            Expiry::Default => now + self.config.default_ttl_secs,
            Expiry::In(secs) => now.saturating_add(secs),
            Expiry::At(t) => t,
        };
        self.check_expiry(at, now)?;
        Ok(at)
    }

    fn check_expiry(&self, at: UnixTime, now: UnixTime) -> Result<()> {
        if at <= now {
            return Err(Error::ExpiryInPast);
        }
        if at - now > self.config.max_ttl_secs {
            return Err(Error::ExpiryTooFar {
                max_secs: self.config.max_ttl_secs,
            });
        }
        Ok(())
    }

    /// Creates a binding: allocates X, reserves it in memory, and returns once
    /// the binding is durable. `render` produces the response body, which is
    /// stored with the idempotency key so that replays return it verbatim.
    pub async fn create_binding(
        &self,
        tenant: TenantId,
        spec: BindingSpec,
        idempotency: Option<IdempotencyKey>,
        render: &(dyn Fn(&Binding) -> String + Sync),
    ) -> Result<Created> {
        let now = now();
        let mut guard = InflightGuard {
            inflight: self.inflight.clone(),
            key: None,
        };
        if let Some(idem) = &idempotency {
            let k = (tenant, idem.key.clone());
            // Registered before the store is asked, so a concurrent repeat
            // either sees us in flight or sees our durable record.
            if !self.inflight.lock().insert(k.clone()) {
                return Err(Error::IdempotencyInProgress);
            }
            guard.key = Some(k);
            // A replay answers before anything is validated again: the
            // request was valid when first made (its expiry may have
            // passed since).
            if let Some(rec) = self.store.idempotency(tenant, &idem.key).await? {
                if rec.request_hash != idem.request_hash {
                    return Err(Error::IdempotencyKeyReused);
                }
                return Ok(Created::Replayed {
                    status: rec.status,
                    body: rec.body,
                });
            }
        }
        let expires_at = self.expiry_to_time(spec.expiry, now)?;
        self.check_destinations(tenant, std::iter::once(spec.a).chain(spec.b))?;
        // Shared with each attempt's settling task: the key stays in flight
        // until our caller is done and the last write has settled.
        let guard = Arc::new(guard);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tried = self
                .try_create(tenant, &spec, expires_at, now, &idempotency, render, &guard)
                .await;
            match tried {
                Ok((binding, body)) => {
                    tracing::debug!(binding = %binding.id, x = %binding.x.masked(), a = %binding.a.masked(), "binding created");
                    return Ok(Created::Fresh(Box::new(binding), body));
                }
                // Another node took what memory allocated (this node had not
                // heard of that node's binding yet). Nothing was stored:
                // learn what is on that X and allocate again.
                Err((Error::Store(maskline_store::Error::Taken(what)), Some(x))) => {
                    metrics::counter!("maskline_allocation_retries_total").increment(1);
                    tracing::debug!(constraint = %what, attempt, "allocation taken by another node");
                    if attempt == MAX_ALLOCATION_ATTEMPTS {
                        return Err(maskline_core::Error::PartyConflict.into());
                    }
                    self.learn_number(x).await?;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One allocation and its write. On failure, also the X it tried.
    #[allow(clippy::too_many_arguments)]
    async fn try_create(
        &self,
        tenant: TenantId,
        spec: &BindingSpec,
        expires_at: UnixTime,
        now: UnixTime,
        idempotency: &Option<IdempotencyKey>,
        render: &(dyn Fn(&Binding) -> String + Sync),
        guard: &Arc<InflightGuard>,
    ) -> std::result::Result<(Binding, String), (Error, Option<Number>)> {
        let id = BindingId(uuid::Uuid::now_v7().as_u128());
        let (binding, body, ack) = {
            let mut index = self.index.write();
            let req = AllocRequest {
                tenant,
                mode: spec.mode,
                a: spec.a,
                b: spec.b,
                area: spec.area.as_ref(),
                area_match: spec.area_match,
                extension_len: self.config.extension_len,
            };
            let allocation = index
                .allocate(&req, now, &mut rand::rng())
                .map_err(|e| (e.into(), None))?;
            let binding = Binding {
                id,
                tenant,
                mode: spec.mode,
                x: allocation.x,
                extension: allocation.extension,
                a: spec.a,
                b: spec.b,
                area: allocation.area,
                external_ref: spec.external_ref.clone(),
                controls: spec.controls,
                created_at: now,
                updated_at: now,
                expires_at,
                ended_at: None,
                end_reason: None,
            };
            index
                .insert(&index_entry(&binding, true), now)
                .map_err(|e| (e.into(), None))?;
            let body = render(&binding);
            let record = idempotency.as_ref().map(|idem| IdempotencyRecord {
                tenant,
                key: idem.key.clone(),
                request_hash: idem.request_hash,
                status: 201,
                body: body.clone(),
                created_at: now,
            });
            let event = self.binding_event(
                EventType::BindingCreated,
                &binding,
                BindingStatus::Active,
                Vec::new(),
            );
            let ack = self.store.enqueue(Write::CreateBinding {
                binding: binding.clone(),
                idempotency: record,
                events: vec![event],
            });
            (binding, body, ack)
        };
        // The reservation stays pending until the write settles, even if
        // our caller has gone.
        let index = self.index.clone();
        let guard = guard.clone();
        let store = self.store.clone();
        let settled = settle(ack, move |outcome| {
            match outcome {
                Ok(()) => {
                    let confirmed = index.write().confirm(id);
                    if !confirmed {
                        // Dropped while pending for another node's binding
                        // that the store must then have ended first: read
                        // ours back so that it routes.
                        tokio::spawn(async move {
                            if let Ok(found) = store.bindings_by_id(&[id]).await {
                                let mut index = index.write();
                                for b in &found {
                                    let _ = index.apply(&index_entry(b, false), crate::now());
                                }
                            }
                        });
                    }
                }
                Err(_) => {
                    index.write().remove(id);
                }
            }
            drop(guard);
        })
        .await;
        match settled {
            Ok(()) => Ok((binding, body)),
            Err(e) => Err((e.into(), Some(binding.x))),
        }
    }

    pub async fn binding(&self, tenant: TenantId, id: BindingId) -> Result<Binding> {
        self.store
            .binding(tenant, id)
            .await?
            .ok_or(Error::BindingNotFound)
    }

    pub async fn bindings(
        &self,
        tenant: TenantId,
        filter: &BindingFilter,
        page: Page<BindingId>,
    ) -> Result<Vec<Binding>> {
        Ok(self.store.bindings(tenant, filter, page).await?)
    }

    /// Status of a stored binding now.
    pub fn status_of(&self, binding: &Binding) -> BindingStatus {
        binding.status(now(), self.config.cooldown_secs)
    }

    /// Changes B, the expiry or the controls of an active binding.
    pub async fn update_binding(
        &self,
        tenant: TenantId,
        id: BindingId,
        patch: BindingPatch,
    ) -> Result<Binding> {
        let serial = self.binding_lock(id).await;
        let now = now();
        let current = self.binding(tenant, id).await?;
        if current.status(now, self.config.cooldown_secs) != BindingStatus::Active {
            return Err(Error::BindingNotActive);
        }
        let mut next = current.clone();
        if let Some(b) = patch.b {
            if current.mode == Mode::Axb && b.is_none() {
                return Err(maskline_core::Error::MissingB.into());
            }
            self.check_destinations(tenant, b)?;
            next.b = b;
        }
        if let Some(at) = patch.expires_at {
            self.check_expiry(at, now)?;
            next.expires_at = at;
        }
        if let Some(c) = patch.controls {
            let n = &mut next.controls;
            n.a_to_b = c.a_to_b.unwrap_or(n.a_to_b);
            n.b_to_a = c.b_to_a.unwrap_or(n.b_to_a);
            n.max_call_seconds = c.max_call_seconds.unwrap_or(n.max_call_seconds);
            n.record = c.record.unwrap_or(n.record);
            n.sms = c.sms.unwrap_or(n.sms);
            n.pre_connect = c.pre_connect.unwrap_or(n.pre_connect);
            n.callee_whisper = c.callee_whisper.unwrap_or(n.callee_whisper);
            n.warn_before_end_seconds = c
                .warn_before_end_seconds
                .unwrap_or(n.warn_before_end_seconds);
        }
        next.updated_at = now;

        let ack = {
            let mut index = self.index.write();
            know(&mut index, &current, now);
            if index.is_ended(id) != Some(false) {
                return Err(Error::BindingNotActive);
            }
            index.set_b(id, next.b, now)?;
            // The record's end moves only while it is still active: an expiry
            // the sweeper may already be recording is not undone.
            if index
                .set_expiry_if_active(id, next.expires_at, now)
                .is_none()
            {
                index.set_b(id, current.b, now)?;
                return Err(Error::BindingNotActive);
            }
            index.set_controls(id, &next.controls);
            let mut changed = Vec::new();
            if next.b != current.b {
                changed.push("b");
            }
            if next.expires_at != current.expires_at {
                changed.push("expires_at");
            }
            if next.controls != current.controls {
                changed.push("controls");
            }
            // A PATCH that changes nothing is no news.
            let events = if changed.is_empty() {
                Vec::new()
            } else {
                vec![self.binding_event(
                    EventType::BindingUpdated,
                    &next,
                    BindingStatus::Active,
                    changed,
                )]
            };
            self.store.enqueue(Write::UpdateBinding {
                binding: next.clone(),
                events,
            })
        };
        let index = self.index.clone();
        let undo = current.clone();
        let outcome = settle(ack, move |outcome| {
            if outcome.is_err() {
                let mut index = index.write();
                if let Err(e) = index.set_b(id, undo.b, now) {
                    tracing::error!(binding = %id, error = %e, "could not undo a failed change of b");
                }
                index.set_expiry_if_active(id, undo.expires_at, now);
                index.set_controls(id, &undo.controls);
            }
            drop(serial);
        })
        .await;
        if let Err(maskline_store::Error::Taken(_)) = outcome {
            // Another node put the new B on this X first.
            self.learn_number(current.x).await?;
            return Err(maskline_core::Error::PartyConflict.into());
        }
        outcome?;
        tracing::debug!(binding = %id, "binding updated");
        Ok(next)
    }

    /// Ends a binding now (it starts cooling down). Ending an ended binding
    /// changes nothing and returns it as it is.
    pub async fn unbind(&self, tenant: TenantId, id: BindingId) -> Result<Binding> {
        let serial = self.binding_lock(id).await;
        let now = now();
        let current = self.binding(tenant, id).await?;
        if current.ended_at.is_some()
            || current.status(now, self.config.cooldown_secs) != BindingStatus::Active
        {
            return Ok(current);
        }
        let mut next = current.clone();
        next.ended_at = Some(now);
        next.end_reason = Some(EndReason::Unbound);
        next.updated_at = now;
        let (ack, before) = {
            let mut index = self.index.write();
            know(&mut index, &current, now);
            let was_ended = index.is_ended(id).unwrap_or(true);
            let before = index.end(id, now);
            let status = next.status(now, self.config.cooldown_secs);
            let event = self.binding_event(EventType::BindingEnded, &next, status, Vec::new());
            (
                self.store.enqueue(Write::UpdateBinding {
                    binding: next.clone(),
                    events: vec![event],
                }),
                before.map(|b| (b, was_ended)),
            )
        };
        let index = self.index.clone();
        settle(ack, move |outcome| {
            if outcome.is_err()
                && let Some((ends_at, was_ended)) = before
            {
                index.write().undo_end(id, ends_at, was_ended);
            }
            drop(serial);
        })
        .await?;
        tracing::debug!(binding = %id, "binding unbound");
        Ok(next)
    }
}
