//! A new binding's sealed values, computed by `enqueue` on the caller's
//! thread: the store has one writer thread, and sealing a bind (two numbers,
//! two blind tokens, its stored response and its event: about 12 µs) there
//! lengthened every group commit by the batch's sealing time. Sealed ahead,
//! on the request's own task, it overlaps the writer's commit instead.
//!
//! Only what the writer would have computed, with the same keyring: a key
//! rotated in between still reads, and the background resealer moves such a
//! value to the current key like any other.

use maskline_core::Binding;

use tokio::sync::oneshot;

use crate::seal::{Column, Keyring};
use crate::{IdempotencyRecord, NewEvent, Result, Write};

/// A queued write, what `enqueue` sealed of it, and where its answer goes.
pub(crate) type Queued = (Write, Option<SealedBinding>, oneshot::Sender<Result<()>>);

/// The blind tokens and sealed values of a binding's parties.
pub(crate) struct Parties {
    pub(crate) a_token: String,
    pub(crate) a_sealed: String,
    pub(crate) b_token: Option<String>,
    pub(crate) b_sealed: Option<String>,
}

impl Parties {
    pub(crate) fn of(b: &Binding, keys: &Keyring) -> Parties {
        let a = b.a.to_string();
        let other = b.b.map(|n| n.to_string());
        Parties {
            a_token: keys.blind(&a),
            a_sealed: keys.seal_str(Column::BindingA, &a),
            b_token: other.as_deref().map(|n| keys.blind(n)),
            b_sealed: other.as_deref().map(|n| keys.seal_str(Column::BindingB, n)),
        }
    }
}

/// A `Write::CreateBinding`'s values, sealed.
pub(crate) struct SealedBinding {
    pub(crate) parties: Parties,
    /// The stored response's body.
    pub(crate) idempotency_body: Option<String>,
    /// Each event's body, in the write's order.
    pub(crate) event_bodies: Vec<String>,
}

impl SealedBinding {
    pub(crate) fn of(
        binding: &Binding,
        idempotency: Option<&IdempotencyRecord>,
        events: &[NewEvent],
        keys: &Keyring,
    ) -> SealedBinding {
        SealedBinding {
            parties: Parties::of(binding, keys),
            idempotency_body: idempotency.map(|r| keys.seal_str(Column::IdempotencyBody, &r.body)),
            event_bodies: events
                .iter()
                .map(|e| keys.seal_str(Column::EventBody, &e.body))
                .collect(),
        }
    }
}

/// What `enqueue` sealed for a write: a new binding's values, else nothing
/// (other writes are sealed by the writer).
pub(crate) fn preseal(write: &Write, keys: &Keyring) -> Option<SealedBinding> {
    match write {
        Write::CreateBinding {
            binding,
            idempotency,
            events,
        } => Some(SealedBinding::of(
            binding,
            idempotency.as_ref(),
            events,
            keys,
        )),
        _ => None,
    }
}
