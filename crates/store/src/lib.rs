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

use maskline_core::{
    Area, Binding, BindingId, BindingStatus, CallId, CallRecord, Number, TenantId, UnixMillis,
    UnixTime,
};
use tokio::sync::oneshot;

mod sqlite;

pub use sqlite::SqliteStore;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("write conflicts with stored data ({0})")]
    Conflict(String),
    #[error("stored row is not valid: {0}")]
    Corrupt(&'static str),
    #[error("the store's writer has stopped")]
    WriterGone,
}

/// A tenant as stored: its key only as a hash.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub api_key_hash: [u8; 32],
    pub created_at: UnixTime,
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
    CreateTenant(Tenant),
    /// All or nothing.
    ImportNumbers(Vec<PoolNumber>),
    RetireNumber {
        tenant: TenantId,
        number: Number,
    },
    CreateBinding {
        binding: Binding,
        idempotency: Option<IdempotencyRecord>,
    },
    /// Replaces the mutable fields (b, expiry, controls, end) of a binding.
    UpdateBinding(Binding),
    /// Bindings that passed their expiry without being unbound.
    ExpireBindings {
        ended: Vec<(BindingId, UnixTime)>,
        at: UnixTime,
    },
    /// Forgets idempotency records created before `before`.
    PurgeIdempotency {
        before: UnixTime,
    },
    /// A finished call's CDR. Fire and forget for the SIP layer, but
    /// group-committed like every other write.
    RecordCall(CallRecord),
}

/// Filters of `GET /v1/bindings`.
#[derive(Clone, Debug, Default)]
pub struct BindingFilter {
    pub external_ref: Option<String>,
    pub party: Option<Number>,
    /// With the `now` and cool-down it is judged by.
    pub status: Option<(BindingStatus, UnixTime, i64)>,
}

/// Filters of `GET /v1/calls`. Times bound `invited_at`: `since` inclusive,
/// `until` exclusive.
#[derive(Clone, Debug, Default)]
pub struct CallFilter {
    pub binding: Option<BindingId>,
    pub since: Option<UnixMillis>,
    pub until: Option<UnixMillis>,
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

    async fn get_meta(&self, key: &str) -> Result<Option<String>>;

    async fn tenants(&self) -> Result<Vec<Tenant>>;

    /// Every number in every pool, for start-up.
    async fn all_numbers(&self) -> Result<Vec<PoolNumber>>;

    /// Streams every binding with `ends_at >= min_ends_at` to `each`, for
    /// start-up (live ones go into the index, older ones seed sticky reuse).
    async fn scan_bindings(
        &self,
        min_ends_at: UnixTime,
        each: &mut (dyn FnMut(Binding) + Send),
    ) -> Result<u64>;

    async fn numbers(&self, tenant: TenantId, page: Page<Number>) -> Result<Vec<PoolNumber>>;

    async fn binding(&self, tenant: TenantId, id: BindingId) -> Result<Option<Binding>>;

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
}
