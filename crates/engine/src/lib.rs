//! The live state of one Maskline node: the route [`Index`] and the
//! authentication table, kept in memory over a [`Store`].
//!
//! Every change goes through [`Engine`]: it checks the change against memory
//! under one lock, reserves it there, queues the store write while still
//! holding the lock (so the store applies changes in the order memory saw
//! them), and answers only once the write is durable. A failed write undoes
//! the reservation. Route decisions read memory only.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use maskline_core::{Decision, Inbound, Index, TenantId, UnixTime};
use maskline_store::Store;
use parking_lot::{Mutex, RwLock};

mod bindings;
mod call_rules;
mod calls;
mod cluster;
mod events;
mod numbers;
mod prompts;
mod sms;
mod sweeper;
mod tenants;
mod users;

pub use bindings::{BindingPatch, BindingSpec, ControlsPatch, Created, Expiry, IdempotencyKey};
pub use call_rules::Admission;
pub use calls::RecordingStream;
pub use events::{
    DEFAULT_INTERCEPT_TIMEOUT_MS, INTERCEPT_TIMEOUT_MS, MAX_EVENT_PATTERNS, WebhookSpec,
};
pub use maskline_core as core;
pub use maskline_store as store;
pub use numbers::{ImportOutcome, NumberEntry};
pub use prompts::{PromptInfo, PromptSource};
pub use sms::{Accepted, IncomingText, Relay};
pub use sweeper::Sweeper;
pub use tenants::{Caller, MAX_RATE_LIMIT, MAX_TENANT_NAME_CHARS, Principal};
pub use users::{
    LOCKOUT_SECS, MAX_FAILED_SIGNINS, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, NewUser,
    REFUSAL_FLOOR, SESSION_SECS, SignIn,
};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A refusal by the domain rules (pool exhausted, party conflict, ...).
    #[error(transparent)]
    Domain(#[from] maskline_core::Error),
    #[error("storage failed: {0}")]
    Store(#[from] maskline_store::Error),
    #[error("binding not found")]
    BindingNotFound,
    #[error("event not found")]
    EventNotFound,
    #[error("message not found")]
    MessageNotFound,
    /// Only a held text can be released (this one was relayed, blocked,
    /// or released already).
    #[error("the message is not held")]
    MessageNotHeld,
    /// No live binding on the text's X has the extension it was released to.
    #[error("no active binding on this number has that extension")]
    UnknownExtension,
    /// The tenant's SMS rules or the binding's controls would block the
    /// released text: it stays held.
    #[error("the text would be blocked: {}", .0.as_str())]
    ReleaseBlocked(maskline_core::MessageReason),
    /// The parts of a concatenated text were made into a text already
    /// (by another node, or by a part received twice at once).
    #[error("these parts were assembled already")]
    PartsAlreadyAssembled,
    #[error("no webhook is set")]
    WebhookNotSet,
    #[error("tenant not found")]
    TenantNotFound,
    #[error("expiry must be in the future")]
    ExpiryInPast,
    #[error("expiry is more than {max_secs} seconds away")]
    ExpiryTooFar { max_secs: i64 },
    #[error("the binding has ended; only active bindings can change")]
    BindingNotActive,
    #[error("mode {0} has no b to change")]
    NoBToChange(&'static str),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is in progress")]
    IdempotencyInProgress,
    #[error("number {number} of entry {entry}: {reason}")]
    ImportRefused {
        entry: usize,
        number: String,
        reason: maskline_core::Error,
    },
    /// A prompt's WAV is not 8 kHz mono PCM16, A-law or μ-law (the
    /// media error's [`WavFault`](maskline_media::wav::WavFault) says why).
    #[error("{0}")]
    InvalidWav(maskline_media::Error),
    /// A console account refused before anything was stored.
    #[error("{field} {reason}")]
    InvalidUser { field: &'static str, reason: String },
    #[error("a console user with this email exists")]
    EmailTaken,
    #[error("user not found")]
    UserNotFound,
    /// Reading a recording failed (logged where it happened).
    #[error("recording storage failed")]
    RecordingStorage,
}

/// Engine settings (validated by the binary's config).
#[derive(Clone, Debug)]
pub struct Config {
    pub cooldown_secs: i64,
    /// Lifetime of a binding created without `expires_in`/`expires_at`.
    pub default_ttl_secs: i64,
    pub max_ttl_secs: i64,
    pub extension_len: u8,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl_secs: i64,
    /// How far back ended bindings seed sticky reuse at start-up.
    pub sticky_window_secs: i64,
    /// Ended records (bindings, CDRs, events, audit entries, recordings)
    /// older than this are purged; `0`: kept for ever.
    pub retention_days: u32,
    /// How far back a sender's last call to a shared X routes its texts.
    pub sms_affinity_secs: i64,
    /// How long the accepting node holds a relay before any node may claim
    /// it.
    pub sms_relay_lease_ms: i64,
    /// Whose country code the default call rules allow.
    pub default_region: maskline_core::Region,
    /// A node silent (no heartbeat) this long is gone: another node writes
    /// the CDRs of the calls it left open.
    pub node_timeout_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cooldown_secs: 3600,
            default_ttl_secs: 86_400,
            max_ttl_secs: 180 * 86_400,
            extension_len: 4,
            idempotency_ttl_secs: 86_400,
            sticky_window_secs: 30 * 86_400,
            retention_days: 180,
            sms_affinity_secs: 72 * 3600,
            sms_relay_lease_ms: 30_000,
            default_region: maskline_core::Region::default(),
            node_timeout_secs: 300,
        }
    }
}

/// See the crate documentation.
pub struct Engine {
    store: Arc<dyn Store>,
    config: Config,
    index: Arc<RwLock<Index>>,
    auth: Arc<RwLock<tenants::Auth>>,
    misses: parking_lot::Mutex<tenants::Misses>,
    /// Idempotency keys whose first request is still being served.
    inflight: Arc<Mutex<HashSet<(TenantId, String)>>>,
    /// PATCH and DELETE of one binding read, decide and write in turn.
    binding_locks: Vec<Arc<tokio::sync::Mutex<()>>>,
    census: Mutex<Option<maskline_core::Census>>,
    webhooks: Arc<maskline_events::Webhooks>,
    /// Webhook changes of one tenant read, decide and write in turn.
    webhook_lock: tokio::sync::Mutex<()>,
    sms_settings: Arc<RwLock<sms::SmsSettingsMap>>,
    /// Tenants' call rules; tenants without their own have the defaults.
    call_rules: Arc<RwLock<call_rules::CallRulesMap>>,
    call_rules_lock: Arc<tokio::sync::Mutex<()>>,
    default_call_rules: Arc<maskline_core::CallRules>,
    /// Tenants' calls against their caps: this node's, and the others'.
    call_load: Arc<Mutex<maskline_core::CallLoad>>,
    /// Other nodes' heartbeats as this node last read them, and since when
    /// unchanged ([`Engine::close_orphaned_calls`]).
    heartbeats_seen: Mutex<HashMap<String, (Option<i64>, std::time::Instant)>>,
    /// Where call recordings are kept (set once at start-up).
    recordings: std::sync::OnceLock<Arc<dyn maskline_media::recordings::Recordings>>,
    /// SMS settings changes (and reloads after another node's) take turns.
    sms_lock: Arc<tokio::sync::Mutex<()>>,
    outbox: sms::Outbox,
    /// Tenants' own prompts, by tenant and name.
    prompts: Arc<RwLock<prompts::PromptMap>>,
    /// Prompt changes (and reloads after another node's) take turns.
    prompt_lock: Arc<tokio::sync::Mutex<()>>,
    /// Tenants' own API rates; a tenant absent has the server's.
    rate_limits: Arc<RwLock<HashMap<TenantId, u32>>>,
    /// Rate changes (and reloads after another node's) take turns.
    rate_limit_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Engine {
    /// Loads tenants, numbers and live bindings from `store` into memory.
    pub async fn open(store: Arc<dyn Store>, config: Config) -> Result<Engine> {
        let now = now();
        let mut index = Index::new(config.cooldown_secs);
        index.set_sticky_window(config.sticky_window_secs);
        let mut auth = tenants::Auth::default();
        for t in store.tenants().await? {
            index.add_tenant(t.id);
            auth.add_tenant(t.id);
        }
        auth.replace_keys(&store.api_keys().await?);
        for n in store.all_numbers().await? {
            index.add_number(n.tenant, n.number, n.area.as_ref())?;
        }
        let webhooks = Arc::new(maskline_events::Webhooks::new(store.webhooks().await?));
        let sms_settings = Arc::new(sms::load_sms_settings(&*store).await?);
        let call_rules = Arc::new(call_rules::load_call_rules(&*store).await?);
        let default_call_rules =
            Arc::new(maskline_core::CallRules::defaults(config.default_region));
        let prompts = prompts::load_prompts(&*store).await?;
        let rate_limits = store.tenant_limits().await?.into_iter().collect();
        let horizon = now - config.cooldown_secs.max(config.sticky_window_secs);
        let (mut live, mut refused) = (0u64, 0u64);
        // Expired while no node was running and already past cool-down: the
        // sweeper will never see them, so record their end here.
        let mut overdue = Vec::new();
        let scanned = store
            .scan_bindings(horizon, &mut |b| {
                let nb = bindings::index_entry(&b, false);
                match index.insert(&nb, now) {
                    Ok(true) => live += 1,
                    Ok(false) => {
                        if b.ended_at.is_none() {
                            overdue.push(b.clone());
                        }
                        index.remember(b.tenant, b.mode, b.a, b.b, b.x, b.extension);
                    }
                    Err(e) => {
                        refused += 1;
                        tracing::error!(binding = %b.id, error = %e, "stored binding conflicts with the index; it will not route");
                    }
                }
            })
            .await?;
        tracing::info!(scanned, live, refused, "route index loaded");
        let binding_locks = (0..64)
            .map(|_| Arc::new(tokio::sync::Mutex::new(())))
            .collect();
        let engine = Engine {
            store,
            config,
            index: Arc::new(RwLock::new(index)),
            auth: Arc::new(RwLock::new(auth)),
            misses: parking_lot::Mutex::default(),
            inflight: Arc::default(),
            binding_locks,
            census: Mutex::new(None),
            webhooks,
            webhook_lock: tokio::sync::Mutex::new(()),
            sms_settings: Arc::new(RwLock::new(sms_settings)),
            call_rules: Arc::new(RwLock::new(call_rules)),
            call_rules_lock: Arc::default(),
            default_call_rules,
            call_load: Arc::default(),
            heartbeats_seen: Mutex::default(),
            recordings: std::sync::OnceLock::new(),
            sms_lock: Arc::default(),
            outbox: sms::Outbox::default(),
            prompts: Arc::new(RwLock::new(prompts)),
            prompt_lock: Arc::default(),
            rate_limits: Arc::new(RwLock::new(rate_limits)),
            rate_limit_lock: Arc::default(),
        };
        if !overdue.is_empty() {
            let expired = overdue.len();
            let ended = overdue
                .iter()
                .map(|b| engine.expired(b.id, b.expires_at, Some(b), now))
                .collect();
            engine
                .store
                .enqueue(maskline_store::Write::ExpireBindings { ended, at: now })
                .await?;
            tracing::info!(expired, "bindings that expired while stopped recorded");
        }
        Ok(engine)
    }

    /// Sets where call recordings are kept; only the first call counts.
    pub fn set_recordings(&self, recordings: Arc<dyn maskline_media::recordings::Recordings>) {
        let _ = self.recordings.set(recordings);
    }

    /// Where call recordings are kept, when set.
    pub fn recordings(&self) -> Option<&Arc<dyn maskline_media::recordings::Recordings>> {
        self.recordings.get()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The route decision for one inbound call or message, from memory.
    pub fn decide(&self, inbound: &Inbound) -> Decision {
        self.index.read().decide(inbound, now())
    }

    /// Live bindings by mode and status, as of the last full sweep pass.
    pub fn census(&self) -> Option<maskline_core::Census> {
        *self.census.lock()
    }

    pub fn pool_stats(&self) -> Vec<maskline_core::PoolStat> {
        self.index.read().pool_stats()
    }

    /// The lock that serialises PATCH and DELETE of one binding; owned, so
    /// that a write still settling after its caller left keeps holding it.
    async fn binding_lock(&self, id: maskline_core::BindingId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = &self.binding_locks[(id.0 % self.binding_locks.len() as u128) as usize];
        lock.clone().lock_owned().await
    }
}

/// Waits for a queued write and then runs `settle` with its outcome, in a
/// task of its own: an HTTP handler's future is dropped when its client
/// disconnects, and memory must still be confirmed or undone (and locks and
/// idempotency keys held) exactly until the write is durable or has failed.
async fn settle<F>(ack: maskline_store::WriteAck, settle: F) -> Result<(), maskline_store::Error>
where
    F: FnOnce(&Result<(), maskline_store::Error>) + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let outcome = ack.await;
        settle(&outcome);
        let _ = tx.send(outcome);
    });
    rx.await.unwrap_or(Err(maskline_store::Error::WriterGone))
}

/// Wall-clock Unix seconds: the only place the engine reads the clock.
pub fn now() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
