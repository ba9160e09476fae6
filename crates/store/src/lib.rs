//! Persistence: the [`Store`] trait that every back end implements, and the
//! embedded SQLite back end ([`SqliteStore`]).
//!
//! Only this crate knows SQL. Writes are commands ([`Write`]) queued in order
//! and acknowledged once durable, so a back end is free to group-commit them;
//! reads are plain async queries.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use maskline_core::sms::{Message, Sender, Settings as SmsSettings};
use maskline_core::{
    Area, Binding, BindingId, BindingStatus, CallId, CallRecord, EventId, EventPattern, EventType,
    MessageId, MessageReason, MessageStatus, Number, TenantId, UnixMillis, UnixTime,
};
use tokio::sync::oneshot;

mod postgres;
mod presealed;
mod reads;
mod reseal;
mod rows;
pub mod seal;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use postgres::{PgOptions, PgStore, migrate as migrate_postgres};
pub use reads::first_id_at;
pub use sqlite::SqliteStore;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A [`Write::ReleaseMessage`] of a text that is not held (any more).
pub(crate) fn not_held(id: MessageId) -> Error {
    Error::Conflict(format!("message {id} is not held"))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("write conflicts with stored data ({0})")]
    Conflict(String),
    /// Another node took what this write allocates (an allocation rule of a
    /// shared database): memory was behind, the write changed nothing.
    #[error("allocation taken by a concurrent write ({0})")]
    Taken(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("stored row is not valid: {0}")]
    Corrupt(&'static str),
    #[error("the store's writer has stopped")]
    WriterGone,
    /// The master key, or the data keys it wraps, cannot be used.
    #[error("encryption keys: {0}")]
    Keys(String),
    /// A value sealed under a data key this node has not read (yet).
    #[error("value sealed under unknown data key {0}")]
    UnknownKey(u32),
}

/// A tenant as stored: its first key only as a hash.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub api_key_hash: [u8; 32],
    pub created_at: UnixTime,
}

impl Tenant {
    /// The tenant's first key, as stored beside it: it has the tenant's id.
    pub fn first_key(&self, prefix: &str) -> ApiKey {
        ApiKey {
            id: KeyId(self.id.0),
            tenant: self.id,
            prefix: prefix.to_owned(),
            hash: self.api_key_hash,
            created_at: self.created_at,
            revoked_at: None,
        }
    }
}

/// An API key's id (a UUIDv7; a tenant's first key has the tenant's id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct KeyId(pub u128);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        uuid::Uuid::from_u128(self.0).fmt(f)
    }
}

impl std::str::FromStr for KeyId {
    type Err = Error;

    fn from_str(s: &str) -> Result<KeyId> {
        uuid::Uuid::try_parse(s)
            .map(|u| KeyId(u.as_u128()))
            .map_err(|_| Error::Corrupt("key id"))
    }
}

/// One write a tenant's request made, as the audit log keeps it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuditEntry {
    pub tenant: TenantId,
    /// The key used; `None`: the admin key acting for the tenant, or a
    /// console user.
    pub key: Option<KeyId>,
    /// The console user who acted; `None` for the API.
    pub user: Option<UserId>,
    /// Method and route template, e.g. `POST /v1/bindings`.
    pub action: String,
    /// What it acted on: an id, or the request's path with numbers masked.
    pub object: String,
    pub status: u16,
    pub at: UnixMillis,
    /// The client's IP address.
    pub source: Option<String>,
}

/// A tenant's API key as stored: a hash and the key's first characters.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ApiKey {
    pub id: KeyId,
    pub tenant: TenantId,
    pub prefix: String,
    pub hash: [u8; 32],
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// A console account's id (a UUIDv7).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct UserId(pub u128);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        uuid::Uuid::from_u128(self.0).fmt(f)
    }
}

/// What a console account may do (the console contract).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Role {
    /// Manages tenants; belongs to none.
    Admin,
    /// Also manages its tenant's keys, webhooks, users and settings.
    Owner,
    /// May reveal one record's numbers (audited).
    Operator,
    /// Sees every party number masked.
    Viewer,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Owner => "owner",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "owner" => Role::Owner,
            "operator" => Role::Operator,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }
}

/// A console account as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// Lower-cased: the sign-in name.
    pub email: String,
    /// Argon2id, as a PHC string.
    pub password_hash: String,
    pub role: Role,
    /// `None` for an admin, the tenant's id for everyone else.
    pub tenant: Option<TenantId>,
    pub created_at: UnixTime,
    /// Failed sign-ins since the last good one.
    pub failed_signins: u32,
    pub locked_until: Option<UnixTime>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// A signed-in console session as stored: the SHA-256 of its cookie's
/// token, never the token.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConsoleSession {
    pub token_hash: [u8; 32],
    pub user: UserId,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A virtual number in a tenant's pool.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PoolNumber {
    pub tenant: TenantId,
    pub number: Number,
    pub area: Option<Area>,
    pub created_at: UnixTime,
}

/// The first response to an `Idempotency-Key`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IdempotencyRecord {
    pub tenant: TenantId,
    pub key: String,
    /// SHA-256 of the request body, to tell a replay from a reuse.
    pub request_hash: [u8; 32],
    pub status: u16,
    pub body: String,
    pub created_at: UnixTime,
}

/// A change to persist. Writes take effect in the order they are queued.
#[derive(Clone, Debug)]
pub enum Write {
    PutMeta {
        key: String,
        value: String,
    },
    /// A tenant and its first key.
    CreateTenant(Tenant, ApiKey),
    /// Another key of a tenant.
    CreateKey(ApiKey),
    /// An entry of the audit log.
    Audit(AuditEntry),
    /// A console account; a taken email is `Error::Conflict`.
    CreateUser(User),
    /// A failed sign-in at `at`, counted in the row itself (so that
    /// attempts at once, on any node, each count): the `max`-th in a row
    /// locks the account until `at + lockout_secs` and starts the count
    /// again.
    SignInFailed {
        user: UserId,
        at: UnixTime,
        max: u32,
        lockout_secs: i64,
    },
    /// A good sign-in at `at` clears the count, unless a lockout still
    /// runs (one set by an attempt made at the same time).
    SignInSucceeded {
        user: UserId,
        at: UnixTime,
    },
    /// A console session starts; the user's sessions that have run out
    /// go with it (so that they never pile up).
    OpenSession(ConsoleSession),
    /// Sign-out: the session ends on every node.
    CloseSession {
        token_hash: [u8; 32],
    },
    /// A console account is removed, its sessions with it (on every node
    /// at once: a session is looked up with its user). `tenant`: only if it
    /// is that tenant's; `None` (the admin) any. [`Error::Conflict`] if
    /// there is no such account.
    DeleteUser {
        user: UserId,
        tenant: Option<TenantId>,
    },
    /// A key stops working (on every node).
    RevokeKey {
        tenant: TenantId,
        id: KeyId,
        at: UnixTime,
    },
    /// All or nothing.
    ImportNumbers(Vec<PoolNumber>),
    RetireNumber {
        tenant: TenantId,
        number: Number,
    },
    CreateBinding {
        binding: Binding,
        idempotency: Option<IdempotencyRecord>,
        events: Vec<NewEvent>,
    },
    /// Replaces the mutable fields (b, expiry, controls, end) of a binding.
    UpdateBinding {
        binding: Binding,
        events: Vec<NewEvent>,
    },
    /// Bindings that passed their expiry without being unbound. An event is
    /// recorded only for a binding this write ends (not one already ended).
    ExpireBindings {
        ended: Vec<ExpiredBinding>,
        at: UnixTime,
    },
    /// Forgets idempotency records created before `before`.
    PurgeIdempotency {
        before: UnixTime,
    },
    /// A finished call's CDR and its event. Group-committed like every
    /// other write.
    RecordCall {
        record: CallRecord,
        events: Vec<NewEvent>,
    },
    /// Events of a change that is not stored otherwise (call progress).
    RecordEvents(Vec<NewEvent>),
    /// Sets (or replaces) a tenant's webhook.
    PutWebhook(Webhook),
    DeleteWebhook {
        tenant: TenantId,
    },
    /// Results of delivery attempts.
    DeliveryOutcomes(Vec<DeliveryOutcome>),
    /// Claims events for delivery until `until` (see
    /// [`Store::claim_due_events`]).
    LeaseEvents {
        events: Vec<EventId>,
        until: UnixMillis,
    },
    /// Puts an event back in the delivery queue, with a fresh retry window.
    Redeliver {
        tenant: TenantId,
        event: EventId,
        at: UnixMillis,
    },
    /// A text and what became of it, with its event. A relayed one is due
    /// for sending at `relay_due` (the accepting node sends it before then;
    /// see [`Store::claim_due_relays`]). The parts it was assembled from are
    /// dropped.
    RecordMessage {
        message: Message,
        relay_due: Option<UnixMillis>,
        assembled_from: Option<PartsKey>,
        events: Vec<NewEvent>,
    },
    /// A held text relayed after all, to the binding someone chose for it:
    /// `message` with its binding, direction, recipient, end and `updated_at`
    /// set, `relayed`, due for sending at `relay_due`, with `event`.
    /// [`Error::Conflict`] if the tenant has no such text held (any more).
    ReleaseMessage {
        message: Message,
        relay_due: UnixMillis,
        event: NewEvent,
    },
    /// One part of a concatenated text, kept until all its parts are in (a
    /// part received again changes nothing).
    RecordPart(Part),
    /// A relayed text was handed to a carrier in `parts` parts: the ids
    /// the carrier gave them, for receipts (a part it gave no id is not
    /// listed). Nothing is due for it any more.
    MessageSubmitted {
        message: MessageId,
        parts: u8,
        submits: Vec<Submit>,
        at: UnixMillis,
    },
    /// A relayed text could not be handed over now: due again at `due`.
    RelayLater {
        message: MessageId,
        due: UnixMillis,
    },
    /// Claims relays due for sending until `until` (see
    /// [`Store::claim_due_relays`]).
    LeaseRelays {
        messages: Vec<MessageId>,
        until: UnixMillis,
    },
    /// What became of a relayed text: a receipt for one of its parts (`part`:
    /// the link and the carrier's id), or a failure to hand it over at all.
    /// A relayed text becomes `delivered` once every part is, `failed` once
    /// one is not; `event` (for that change) is recorded only if this write
    /// makes it.
    MessageOutcome {
        message: MessageId,
        part: Option<(String, String)>,
        delivered: bool,
        reason: Option<MessageReason>,
        at: UnixMillis,
        event: NewEvent,
    },
    /// A receipt for a carrier id no handover is recorded for (yet): kept
    /// for [`Store::unmatched_receipts`] to match later.
    UnmatchedReceipt(Receipt),
    /// Receipts matched (or given up on), by link and carrier id.
    ForgetReceipts(Vec<(String, String)>),
    /// Sets (or replaces) a tenant's SMS settings.
    PutSmsSettings {
        tenant: TenantId,
        settings: SmsSettings,
        updated_at: UnixTime,
    },
    /// Sets (or replaces) a tenant's call rules.
    PutCallRules {
        tenant: TenantId,
        rules: maskline_core::CallRules,
        updated_at: UnixTime,
    },
    /// Sets a tenant's own API rate (requests a second, `0` for none), or
    /// with `None` gives it the server's default again.
    PutTenantLimit {
        tenant: TenantId,
        rate_limit: Option<u32>,
        updated_at: UnixTime,
    },
    /// Replaces this node's report of its tenants' calls (for the other
    /// nodes' call caps): `loads` is all of it, a tenant absent has none.
    PutCallLoad {
        node: String,
        at: UnixMillis,
        loads: Vec<maskline_core::TenantLoad>,
    },
    /// Sets (or replaces) a tenant's recording of one prompt: `name` as the
    /// API spells it, `samples` 8 kHz mono PCM16 (validated by the caller).
    PutPrompt {
        tenant: TenantId,
        name: String,
        samples: Vec<i16>,
        updated_at: UnixTime,
    },
    /// Forgets a tenant's recording of a prompt (the built-in one plays
    /// again); nothing to forget changes nothing.
    DeletePrompt {
        tenant: TenantId,
        name: String,
    },
    /// Forgets texts whose binding ended before `ends_before` (the caller
    /// passes now minus the cool-down), and parts received before
    /// `parts_before` that never made a text.
    PurgeMessages {
        ends_before: UnixTime,
        parts_before: UnixMillis,
    },
    /// Retention: forgets up to `batch` rows of each kind that ended before
    /// `before` (Unix seconds): bindings, CDRs, events no longer pending,
    /// audit entries. Bounded, so that it never holds the writer long;
    /// repeated until nothing is left.
    PurgeExpired {
        before: UnixTime,
        batch: u32,
    },
    /// Seals under the current data key up to `batch` rows a table that
    /// are not (after `maskline keys rotate`, or left in clear by an older
    /// build). The store queues these itself; repeated until none are left.
    Reseal {
        batch: u32,
    },
    /// A connected call's CDR so far into the open-call journal (replacing
    /// what was there), with its progress events. `RecordCall` takes it out.
    OpenCall {
        record: CallRecord,
        events: Vec<NewEvent>,
    },
    /// Takes calls out of the open-call journal without a CDR (their CDR
    /// was written already, by another node).
    ForgetOpenCalls(Vec<CallId>),
    /// Erases `party` from `tenant`'s ended records: bindings that ended
    /// (cool-down included) at or before `ended_before` (seconds) and their
    /// events and texts go; CDRs keep the party's mask only
    /// ([`maskline_core::Erased`]) and lose the events about calls without
    /// a binding.
    EraseParty {
        tenant: TenantId,
        party: Number,
        ended_before: UnixTime,
    },
}

/// The parts of one concatenated text: its sender, X and the reference
/// the sender gave them.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PartsKey {
    pub x: Number,
    pub from: Sender,
    pub reference: u16,
}

/// One part of a concatenated text, as received (decoded once all are in:
/// a UCS-2 character may be cut between two parts).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Part {
    pub key: PartsKey,
    /// 1-based.
    pub seq: u8,
    pub total: u8,
    /// The SMPP `data_coding` of the bytes.
    pub coding: u8,
    pub bytes: Vec<u8>,
    pub received_at: UnixMillis,
    pub ingress: String,
}

/// One part of a relayed text as a carrier accepted it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Submit {
    /// The link that took it (its receipts come back on the same SMSC).
    pub link: String,
    /// The SMSC's `message_id`.
    pub smsc_id: String,
    /// 1-based.
    pub part: u8,
}

/// A carrier's receipt for one part it took.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Receipt {
    pub link: String,
    pub smsc_id: String,
    pub delivered: bool,
    pub received_at: UnixMillis,
}

/// Filters of `GET /v1/messages`.
#[derive(Clone, Debug, Default)]
pub struct MessageFilter {
    pub binding: Option<BindingId>,
    pub status: Option<MessageStatus>,
    /// Texts received at or after this time: a lower bound on the id
    /// (UUIDv7), so that a newest-first walk stops there.
    pub since: Option<UnixMillis>,
    /// Newest first, as [`BindingFilter::newest_first`].
    pub newest_first: bool,
}

/// A tenant's call rules as stored.
#[derive(Clone, Debug)]
pub struct StoredCallRules {
    pub tenant: TenantId,
    pub rules: maskline_core::CallRules,
    pub updated_at: UnixTime,
}

/// A tenant's SMS settings as stored.
#[derive(Clone, Debug)]
pub struct StoredSmsSettings {
    pub tenant: TenantId,
    pub settings: SmsSettings,
    pub updated_at: UnixTime,
}

/// A tenant's recording of a prompt as stored: 8 kHz mono PCM16.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPrompt {
    pub tenant: TenantId,
    /// As the API spells it; the store does not judge names.
    pub name: String,
    pub samples: Vec<i16>,
    pub updated_at: UnixTime,
}

impl std::fmt::Debug for StoredPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredPrompt")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("samples", &self.samples.len())
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// A binding the sweeper found expired, with the event to record if this
/// write is what ends it.
#[derive(Clone, Debug)]
pub struct ExpiredBinding {
    pub id: BindingId,
    pub ended_at: UnixTime,
    pub event: Option<NewEvent>,
}

/// An event, recorded with the change that caused it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewEvent {
    pub id: EventId,
    pub tenant: TenantId,
    pub kind: EventType,
    /// What the event is about: its binding, or the call when it has none.
    /// Deliveries of one subject keep their order.
    pub subject: u128,
    pub created_at: UnixMillis,
    /// The JSON document delivered, byte for byte (the signature covers it).
    pub body: String,
    /// Whether the tenant's webhook wants it, decided when it is created.
    pub deliver: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeliveryState {
    /// No webhook wanted it when it happened: listed, never sent.
    None,
    Pending,
    Delivered,
    /// Retried for the whole retry window without a 2xx.
    Failed,
}

/// An event as stored, with where its delivery stands.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredEvent {
    /// Apply order; what lists and deliveries are ordered by.
    pub seq: i64,
    pub id: EventId,
    pub tenant: TenantId,
    pub kind: EventType,
    pub subject: u128,
    pub created_at: UnixMillis,
    pub body: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Option<UnixMillis>,
    pub retry_from: UnixMillis,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<UnixMillis>,
}

/// What one delivery attempt came to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeliveryOutcome {
    pub event: EventId,
    pub at: UnixMillis,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it did not count, if it did not.
    pub error: Option<String>,
    pub next: NextStep,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NextStep {
    Delivered,
    RetryAt(UnixMillis),
    Failed,
}

/// A tenant's webhook (and intercept callback) settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub tenant: TenantId,
    pub url: String,
    /// Empty: every type.
    pub events: Vec<EventPattern>,
    pub secret: String,
    pub intercept: Option<Intercept>,
    pub updated_at: UnixTime,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("tenant", &self.tenant)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"<hidden>")
            .field("intercept", &self.intercept)
            .finish()
    }
}

/// Real-time control: asked before a call's outbound leg is placed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Intercept {
    pub url: String,
    /// Applied when the callback times out or fails.
    pub fallback: Fallback,
    pub timeout_ms: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fallback {
    Allow,
    Deny,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Allow => "allow",
            Fallback::Deny => "deny",
        }
    }
}

impl Write {
    /// Whether committing this makes an event due for delivery.
    pub fn wakes_sender(&self) -> bool {
        let any = |events: &[NewEvent]| events.iter().any(|e| e.deliver);
        match self {
            Write::CreateBinding { events, .. }
            | Write::UpdateBinding { events, .. }
            | Write::RecordCall { events, .. }
            | Write::OpenCall { events, .. }
            | Write::RecordMessage { events, .. }
            | Write::RecordEvents(events) => any(events),
            Write::MessageOutcome { event, .. } | Write::ReleaseMessage { event, .. } => {
                event.deliver
            }
            Write::ExpireBindings { ended, .. } => ended
                .iter()
                .any(|e| e.event.as_ref().is_some_and(|e| e.deliver)),
            Write::Redeliver { .. } => true,
            _ => false,
        }
    }
}

/// Splits a batch into its audit entries and its other writes, each in queue
/// order. An entry is queued after the write it records has been answered,
/// and nothing in a batch reads or changes it, so a back end can insert all
/// of a batch's entries last in one statement: every API write queues one,
/// and left in place they cut the runs of like writes (new bindings, say)
/// that go in together.
pub(crate) fn audits_apart<T>(
    ops: &[T],
    write: impl Fn(&T) -> &Write,
) -> (Vec<&AuditEntry>, Vec<&T>) {
    let mut audits = Vec::new();
    let mut others = Vec::with_capacity(ops.len());
    for op in ops {
        match write(op) {
            Write::Audit(entry) => audits.push(entry),
            _ => others.push(op),
        }
    }
    (audits, others)
}

/// Reports one group commit: how many writes it held and how long the
/// transaction took, from its first statement to the answer to `COMMIT`.
/// With the writes' rate these tell an operator how busy the single writer
/// is (busy = commits/s × mean commit time) and what a write waits for.
pub(crate) fn observe_commit(writes: usize, began: std::time::Instant) {
    metrics::histogram!("maskline_store_commit_seconds").record(began.elapsed().as_secs_f64());
    metrics::histogram!("maskline_store_commit_writes").record(writes as f64);
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::None => "none",
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        [
            DeliveryState::None,
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// What another node changed, as its commits arrive (back ends shared by
/// several nodes).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Change {
    /// These bindings were created or changed: read them again.
    Bindings {
        ids: Vec<BindingId>,
        /// When the writing node committed them (its clock, Unix ms): for
        /// measuring how long changes take to reach this node.
        committed_at: UnixMillis,
    },
    Tenants,
    /// Keys were created or revoked.
    Keys,
    Numbers,
    Webhooks,
    SmsSettings,
    CallRules,
    Prompts,
    /// The feed broke off; changes may be missed until [`Change::Resync`].
    Interrupted,
    /// The feed is back: anything may have changed since `since` (Unix
    /// seconds); what commits from now on arrives as changes again.
    Resync {
        since: UnixTime,
    },
}

/// A tenant's recent activity: `(minute, count)` for each minute with
/// any, minutes counted from the Unix epoch.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Activity {
    pub calls: Vec<(i64, u64)>,
    pub texts: Vec<(i64, u64)>,
    pub pending_events: u64,
}

/// Filters of `GET /v1/bindings`.
#[derive(Clone, Debug, Default)]
pub struct BindingFilter {
    pub external_ref: Option<String>,
    pub party: Option<Number>,
    /// With the `now` and cool-down it is judged by.
    pub status: Option<(BindingStatus, UnixTime, i64)>,
    /// Newest first (the page's `after` is then the last id seen, and the
    /// next page holds older ones).
    pub newest_first: bool,
}

/// Filters of `GET /v1/calls`. Times bound `invited_at`: `since` inclusive,
/// `until` exclusive.
#[derive(Clone, Debug, Default)]
pub struct CallFilter {
    pub binding: Option<BindingId>,
    /// Calls from or to this party.
    pub party: Option<Number>,
    pub since: Option<UnixMillis>,
    pub until: Option<UnixMillis>,
    /// Newest first, as [`BindingFilter::newest_first`].
    pub newest_first: bool,
}

/// One page of a list: items after `after` (exclusive), at most `limit`.
#[derive(Clone, Copy, Debug)]
pub struct Page<C> {
    pub after: Option<C>,
    pub limit: u32,
}

/// Resolves once the write it stands for is durable (or has failed).
#[must_use = "a write is only acknowledged once its ack resolves"]
pub struct WriteAck(pub(crate) oneshot::Receiver<Result<()>>);

impl Future for WriteAck {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::WriterGone)))
    }
}

/// What every back end provides.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Queues a write. Queue order is apply order, so a caller that queues
    /// while holding its own lock gets the store to see changes in the order
    /// memory saw them.
    fn enqueue(&self, write: Write) -> WriteAck;

    /// Notified after a commit that made events due for delivery, so the
    /// sender need not poll for them.
    fn events_signal(&self) -> std::sync::Arc<tokio::sync::Notify>;

    /// Changes committed by other nodes, for a back end shared by several;
    /// `None` for one that only this process uses, or once taken.
    fn changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Change>> {
        None
    }

    /// Why the store is not fully working right now (for `/healthz`).
    fn degraded(&self) -> Option<String> {
        None
    }

    /// The keys the store seals with, for what is kept beside it
    /// (recordings).
    fn keys(&self) -> std::sync::Arc<seal::Keyring>;

    /// This node's name in the open-call journal (and its `alive.<node>`
    /// meta key).
    fn node(&self) -> &str;

    /// A node's open-call journal: calls it connected whose CDR it has not
    /// written (after a crash).
    async fn open_calls(&self, node: &str) -> Result<Vec<CallRecord>>;

    /// The nodes with calls in the open-call journal.
    async fn open_call_nodes(&self) -> Result<Vec<String>>;

    async fn get_meta(&self, key: &str) -> Result<Option<String>>;

    async fn tenants(&self) -> Result<Vec<Tenant>>;

    /// A tenant's audit log, newest first, before sequence number
    /// `page.after` (the cursor).
    async fn audit(&self, tenant: TenantId, page: Page<i64>) -> Result<Vec<(i64, AuditEntry)>>;

    /// Every API key, revoked ones included, oldest first.
    async fn api_keys(&self) -> Result<Vec<ApiKey>>;

    /// The key with this hash, straight from the database: how a node
    /// learns of a key another node created a moment ago.
    async fn api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKey>>;

    /// The console account signing in with `email` (lower-cased).
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;

    /// Console accounts, oldest first: `tenant`'s, or every one for `None`.
    async fn users(&self, tenant: Option<TenantId>) -> Result<Vec<User>>;

    /// The session whose token hashes to `token_hash`, with its user (ended
    /// or not: the caller compares `expires_at` with its clock).
    async fn console_session(&self, token_hash: [u8; 32])
    -> Result<Option<(ConsoleSession, User)>>;

    /// Every number in every pool, for start-up.
    async fn all_numbers(&self) -> Result<Vec<PoolNumber>>;

    /// Streams every binding with `ends_at >= min_ends_at` to `each`, for
    /// start-up (live ones go into the index, older ones seed sticky reuse).
    async fn scan_bindings(
        &self,
        min_ends_at: UnixTime,
        each: &mut (dyn FnMut(Binding) + Send),
    ) -> Result<u64>;

    /// Bindings created or changed at or after `since` (catch-up after an
    /// interrupted change feed), oldest change first.
    async fn changed_bindings(&self, since: UnixTime) -> Result<Vec<Binding>>;

    /// Bindings on `x` that end after `ends_after` (the caller passes now
    /// minus the cool-down: those that may still hold slots on `x`), for
    /// learning what a refused allocation ran into.
    async fn bindings_on(&self, x: Number, ends_after: UnixTime) -> Result<Vec<Binding>>;

    async fn numbers(&self, tenant: TenantId, page: Page<Number>) -> Result<Vec<PoolNumber>>;

    async fn binding(&self, tenant: TenantId, id: BindingId) -> Result<Option<Binding>>;

    /// Bindings by id, in any tenant (for the sweeper); unknown ids are
    /// left out.
    async fn bindings_by_id(&self, ids: &[BindingId]) -> Result<Vec<Binding>>;

    async fn bindings(
        &self,
        tenant: TenantId,
        filter: &BindingFilter,
        page: Page<BindingId>,
    ) -> Result<Vec<Binding>>;

    async fn idempotency(&self, tenant: TenantId, key: &str) -> Result<Option<IdempotencyRecord>>;

    /// A tenant's CDRs in id (arrival) order. CDRs of calls to numbers in no
    /// pool (no tenant) are never listed.
    async fn calls(
        &self,
        tenant: TenantId,
        filter: &CallFilter,
        page: Page<CallId>,
    ) -> Result<Vec<CallRecord>>;

    /// Every tenant's webhook, for start-up.
    async fn webhooks(&self) -> Result<Vec<Webhook>>;

    async fn event(&self, tenant: TenantId, id: EventId) -> Result<Option<StoredEvent>>;

    /// A tenant's events in apply order, after sequence number `page.after`;
    /// `types` empty means every type.
    async fn events(
        &self,
        tenant: TenantId,
        types: &[EventType],
        page: Page<i64>,
    ) -> Result<Vec<StoredEvent>>;

    /// Claims up to `limit` pending events of `tenant` due at `now` that no
    /// earlier pending event of the same subject holds back, soonest due
    /// first. Each is leased until `lease_until`: not offered again before
    /// then (to any node), so that a sender that dies mid-attempt only
    /// delays it. The outcome of the attempt replaces the lease.
    async fn claim_due_events(
        &self,
        tenant: TenantId,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    /// How many events wait for delivery, over all tenants.
    async fn pending_events(&self) -> Result<u64>;

    /// A tenant's events, newest first, before sequence number `page.after`
    /// (the console's events page).
    async fn recent_events(&self, tenant: TenantId, page: Page<i64>) -> Result<Vec<StoredEvent>>;

    /// A tenant's calls and texts per minute since `since`, and its events
    /// waiting for delivery (the console's overview).
    async fn activity(&self, tenant: TenantId, since: UnixMillis) -> Result<Activity>;

    async fn message(&self, tenant: TenantId, id: MessageId) -> Result<Option<Message>>;

    /// A tenant's texts in id (arrival) order. Texts to numbers in no pool
    /// are never listed.
    async fn messages(
        &self,
        tenant: TenantId,
        filter: &MessageFilter,
        page: Page<MessageId>,
    ) -> Result<Vec<Message>>;

    /// The text one of whose parts the SMSC behind `link` took as `smsc_id`
    /// (a receipt names it so).
    async fn message_by_submit(&self, link: &str, smsc_id: &str) -> Result<Option<Message>>;

    /// Up to `limit` receipts kept unmatched, oldest first.
    async fn unmatched_receipts(&self, limit: u32) -> Result<Vec<Receipt>>;

    /// The parts of one concatenated text received so far, in order.
    async fn parts(&self, key: &PartsKey) -> Result<Vec<Part>>;

    /// Keys of texts whose first part came before `before` and whose other
    /// parts never did.
    async fn stale_parts(&self, before: UnixMillis) -> Result<Vec<PartsKey>>;

    /// Claims up to `limit` relayed texts due for sending at `now` (their
    /// accepting node did not send them in time: it died, or no link was
    /// up), each until `lease_until`, so no other node takes them meanwhile.
    async fn claim_due_relays(
        &self,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
    ) -> Result<Vec<Message>>;

    /// Every tenant's SMS settings, for start-up.
    async fn sms_settings(&self) -> Result<Vec<StoredSmsSettings>>;

    /// Every tenant's call rules (tenants without a row have the defaults).
    async fn call_rules(&self) -> Result<Vec<StoredCallRules>>;
    /// Every tenant's own API rate, for tenants that have one.
    async fn tenant_limits(&self) -> Result<Vec<(TenantId, u32)>>;

    /// The calls the nodes other than `except` last reported
    /// ([`Write::PutCallLoad`]) at or after `since`, summed per tenant.
    async fn call_loads(
        &self,
        except: &str,
        since: UnixMillis,
    ) -> Result<Vec<maskline_core::TenantLoad>>;

    /// Every tenant's own prompt recordings, for start-up.
    async fn prompts(&self) -> Result<Vec<StoredPrompt>>;

    /// The binding of the latest call from `caller` to `x` connected at or
    /// after `since`: where a text from the same sender to a shared X goes.
    async fn last_call_binding(
        &self,
        x: Number,
        caller: Number,
        since: UnixMillis,
    ) -> Result<Option<BindingId>>;
}
