//! The PostgreSQL back end, for several nodes over one database.
//!
//! Like the embedded store, each node has one writer that group-commits its
//! queued writes (on a connection of its own, on a thread of its own) and a
//! pool for reads. What several nodes add:
//!
//! - the database enforces the allocation invariants (slot rows under unique
//!   keys, taken by triggers: `migrations/postgres/0002_slots.sql`), so two nodes' memories that have
//!   not heard of each other yet cannot both commit a conflicting binding;
//! - every commit that changes bindings, tenants, numbers, webhooks, SMS
//!   settings or prompts sends a `NOTIFY`, which the other nodes turn into
//!   [`Change`]s (a listener per node, reconnecting with a catch-up after an
//!   interruption);
//! - events take their `seq` under an advisory lock held to commit, so `seq`
//!   is commit order for pollers;
//! - webhook senders claim due events with `FOR UPDATE SKIP LOCKED` and a
//!   lease.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures_util::TryStreamExt;
use maskline_core::sms::Message;
use maskline_core::{
    Area, Binding, BindingId, CallId, CallRecord, Direction, EndReason, EventId, EventType,
    MessageId, MessageStatus, Number, Refusal, TenantId, UnixMillis, UnixTime,
};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::presealed::{self, Parties, SealedBinding};
use crate::rows::{self, MESSAGE_COLUMNS, PART_COLUMNS, binding, message, stored_event};
use crate::seal::{Column, Keyring, MasterKey, MetaRows};
use crate::{ApiKey, AuditEntry, ConsoleSession, User};
use crate::{
    BindingFilter, CallFilter, Change, DeliveryState, Error, IdempotencyRecord, MessageFilter,
    NewEvent, NextStep, Page, Part, PartsKey, PoolNumber, Receipt, Result, Store, StoredEvent,
    StoredPrompt, StoredSmsSettings, Tenant, Webhook, Write, WriteAck,
};

/// Most writes committed in one transaction (as in the embedded store).
const MAX_BATCH: usize = 256;

/// The channel every node of one schema listens on (notifications are
/// per database, and several deployments may share one in their schemas).
fn channel(schema: &str) -> String {
    let mut c = format!("maskline_{schema}");
    // Channel names are identifiers: at most 63 bytes.
    while c.len() > 63 {
        c.pop();
    }
    c
}

/// Key of the advisory lock that orders event inserts by commit.
const EVENTS_LOCK: i64 = 0x6d61_736b_6c69_6e65; // "maskline"

/// NOTIFY payloads are limited to 8,000 bytes: binding ids go in chunks.
const IDS_PER_NOTIFY: usize = 200;

/// How far before an interruption the catch-up reads: covers transactions
/// that were in flight when it began and clocks that differ a little
/// between nodes (the nodes' clocks must be kept in step: NTP).
const CATCH_UP_MARGIN_SECS: i64 = 30;

const BINDING_COLUMNS: &str = "id, tenant_id, mode, x, extension, a, b, area, external_ref, \
     a_to_b, b_to_a, max_call_seconds, record, sms, created_at, updated_at, expires_at, \
     ended_at, end_reason, call_prompts, warn_before_end_seconds, a_sealed, b_sealed";

const CALL_COLUMNS: &str = "id, tenant_id, binding_id, direction, x, caller, callee, invited_at, \
     ringing_at, answered_at, ended_at, final_status, released_by, release_reason, refusal, \
     caller_sealed, callee_sealed";

const EVENT_COLUMNS: &str = "seq, id, tenant_id, type, subject, created_at, body, state, \
     attempts, next_attempt_at, retry_from, last_status, last_error, delivered_at";

/// [`EVENT_COLUMNS`] of the `events` table in an `UPDATE ... FROM`.
const LEASED_COLUMNS: &str = "events.seq, events.id, events.tenant_id, events.type, \
     events.subject, events.created_at, events.body, events.state, events.attempts, \
     events.next_attempt_at, events.retry_from, events.last_status, events.last_error, \
     events.delivered_at";

/// Settings of the PostgreSQL back end.
#[derive(Clone, Debug)]
pub struct PgOptions {
    pub connect: PgConnectOptions,
    /// Read connections per node (the writer and the listener have one each).
    pub pool_size: u32,
    /// Longest any one statement may run (0 = no limit).
    pub statement_timeout: Duration,
    /// The cool-down after a binding ends: bindings hold their slots in the
    /// database until it is over, as in memory. Every node must use the same.
    pub cooldown_secs: i64,
    /// Wraps the database's data keys; every node needs the same one. A
    /// fresh in-memory key unless set (tests: one schema, one process).
    pub master: MasterKey,
    /// This node's name in the open-call journal: the same across its
    /// restarts, unlike any other node's (the service keeps one in its data
    /// directory). A random one unless set.
    pub node: String,
}

impl PgOptions {
    pub fn from_url(url: &str, cooldown_secs: i64) -> Result<PgOptions> {
        Ok(PgOptions {
            connect: PgConnectOptions::from_str(url)?,
            pool_size: 8,
            statement_timeout: Duration::from_secs(10),
            cooldown_secs,
            master: MasterKey::ephemeral(),
            node: Uuid::now_v7().to_string(),
        })
    }

    /// The writer's sessions: a statement timeout.
    fn session(&self) -> PgConnectOptions {
        let ms = self.statement_timeout.as_millis().to_string();
        self.connect
            .clone()
            .application_name("maskline")
            .options([("statement_timeout", ms.as_str())])
    }

    /// Readers' sessions also plan every statement for its own arguments. A
    /// cached generic plan is chosen once, from the table's size then, and
    /// kept until the table is next analysed: one made while `bindings` was
    /// small scans it whole (48 ms per read-back of a batch at 200,000 rows
    /// without autovacuum). The writer keeps PostgreSQL's default: planning
    /// the statements of its batch function and triggers on every batch
    /// cost it a tenth to a sixth of its binds/s (BENCHMARKS.md §6.0).
    fn read_session(&self) -> PgConnectOptions {
        self.session()
            .options([("plan_cache_mode", "force_custom_plan")])
    }
}

pub struct PgStore {
    writes: mpsc::UnboundedSender<crate::presealed::Queued>,
    pool: PgPool,
    events_signal: Arc<Notify>,
    changes: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Change>>>,
    health: Arc<Health>,
    keys: Arc<Keyring>,
    node: String,
}

/// What `/healthz` reports about the database.
struct Health {
    listener_up: AtomicBool,
    writer_up: AtomicBool,
    /// When the listener last lost its connection (Unix seconds), for the
    /// catch-up.
    lost_at: AtomicI64,
}

struct Op {
    write: Write,
    /// What `enqueue` sealed of it (a new binding's values).
    sealed: Option<SealedBinding>,
    ack: oneshot::Sender<Result<()>>,
}

impl Op {
    fn presealed(&self) -> (&Write, Option<&SealedBinding>) {
        (&self.write, self.sealed.as_ref())
    }
}

/// Event bodies `enqueue` sealed, by event.
type SealedBodies<'a> = std::collections::HashMap<EventId, &'a str>;

/// The event bodies sealed ahead in `ops`.
fn sealed_bodies<'a>(ops: &[&'a Op]) -> SealedBodies<'a> {
    let mut bodies = SealedBodies::new();
    for op in ops {
        if let (Write::CreateBinding { events, .. }, Some(sealed)) = (&op.write, &op.sealed) {
            for (e, body) in events.iter().zip(&sealed.event_bodies) {
                bodies.insert(e.id, body.as_str());
            }
        }
    }
    bodies
}

/// Applies the migrations in `migrations/postgres` (under PostgreSQL's
/// migration lock, so nodes starting together apply them once).
pub async fn migrate(options: &PgOptions) -> Result<()> {
    // No statement timeout: a migration of a large table may take long.
    let mut conn = PgConnection::connect_with(&options.connect.clone()).await?;
    sqlx::migrate!("./migrations/postgres")
        .run(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

impl PgStore {
    /// Connects, applies migrations, and starts the writer and the listener.
    pub async fn open(options: PgOptions) -> Result<PgStore> {
        migrate(&options).await?;
        let session = options.session();
        let read_session = options.read_session();
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(read_session)
            .await?;
        // The random low bits of a UUID v7: tells our notifications from others'.
        let node = Uuid::now_v7().as_u128() as u64;
        let health = Arc::new(Health {
            listener_up: AtomicBool::new(false),
            writer_up: AtomicBool::new(true),
            lost_at: AtomicI64::new(0),
        });
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&pool)
            .await?;
        let channel = Arc::new(channel(&schema));
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        // Listening starts before anything is read, so that nothing
        // committed after start-up's reads can be missed.
        let listener = listen(&session, &channel).await?;
        health.listener_up.store(true, Ordering::Relaxed);
        let writer_changes = changes_tx.clone();
        tokio::spawn(listen_loop(
            listener,
            session.clone(),
            channel.clone(),
            node,
            changes_tx,
            health.clone(),
        ));

        let mut writer = PgConnection::connect_with(&session).await?;
        let keys = Arc::new(load_keys(&mut writer, options.master.clone()).await?);
        seal_clear_rows(&mut writer, &keys).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let events_signal = Arc::new(Notify::new());
        let writer_state = Writer {
            conn: Some(writer),
            keys: keys.clone(),
            journal: Arc::from(options.node.as_str()),
            session,
            cooldown: options.cooldown_secs,
            node,
            channel,
            events_signal: events_signal.clone(),
            health: health.clone(),
            changes: writer_changes,
            lost_at: None,
        };
        // A thread and runtime of its own, as in the embedded store: the
        // writer's round trips must not queue behind request handling.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        std::thread::Builder::new()
            .name("maskline-store-writer".into())
            .spawn(move || runtime.block_on(writer_state.run(rx)))
            .map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        tokio::spawn(crate::reseal::keep_keys(
            Arc::downgrade(&keys),
            KeysTask {
                reads: pool.clone(),
                writes: tx.downgrade(),
            },
        ));
        Ok(PgStore {
            writes: tx,
            pool,
            events_signal,
            changes: parking_lot::Mutex::new(Some(changes_rx)),
            health,
            keys,
            node: options.node.clone(),
        })
    }
}

impl PgStore {
    /// `maskline keys rotate` on PostgreSQL: adds a data key that seals from
    /// [`crate::seal::ROTATION_DELAY_SECS`] on; every node reads it and
    /// reseals in the background. Returns the new key's id and when it
    /// starts sealing.
    pub async fn rotate_keys(options: &PgOptions, now: i64) -> Result<(u32, i64)> {
        let mut conn = PgConnection::connect_with(&options.session()).await?;
        rotate_in(&mut conn, &options.master, now).await
    }
}

crate::reseal::sealing_back_end! {
    conn: PgConnection,
    pool: PgPool,
    query: PgQuery,
    handle: "ctid::text" as String,
    cast: "::tid",
    placeholder: |i| format!("${i}"),
    insert_meta: "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
    add_key: "INSERT INTO meta (key, value) VALUES ($1, $2)",
    set_current: "UPDATE meta SET value = $1 WHERE key = 'seal.current' AND value = $2",
    retoken: (
        "SELECT set_config('maskline.retoken', 'on', true)",
        "SELECT set_config('maskline.retoken', 'off', true)",
    ),
}

// === the writer ===

struct Writer {
    /// `None` while the database is unreachable.
    conn: Option<PgConnection>,
    keys: Arc<Keyring>,
    /// This node's name in the open-call journal.
    journal: Arc<str>,
    session: PgConnectOptions,
    cooldown: i64,
    node: u64,
    channel: Arc<String>,
    events_signal: Arc<Notify>,
    health: Arc<Health>,
    /// To ask this node for a catch-up after a lost connection (see
    /// `commit`).
    changes: mpsc::UnboundedSender<Change>,
    /// When the connection was lost, until it is back.
    lost_at: Option<i64>,
}

/// What a batch changed, for the other nodes.
#[derive(Default)]
struct Touched {
    bindings: Vec<Uuid>,
    tenants: bool,
    keys: bool,
    numbers: bool,
    webhooks: bool,
    sms_settings: bool,
    call_rules: bool,
    prompts: bool,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<crate::presealed::Queued>) {
        let mut queued = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
            let batch: Vec<Op> = queued
                .drain(..)
                .map(|(write, sealed, ack)| Op { write, sealed, ack })
                .collect();
            let wakes = batch.iter().any(|op| op.write.wakes_sender());
            let began = std::time::Instant::now();
            let committed = self.commit(&batch).await;
            crate::observe_commit(batch.len(), began);
            match committed {
                Ok(()) => {
                    if wakes {
                        self.events_signal.notify_one();
                    }
                    for op in batch {
                        let _ = op.ack.send(Ok(()));
                    }
                }
                Err(e) if is_refusal(&e) => {
                    // One write in the batch was refused (a constraint,
                    // usually): give each its own transaction and answer.
                    tracing::debug!(error = %e, "group commit refused, retrying writes one by one");
                    for op in batch {
                        let result = self.commit(std::slice::from_ref(&op)).await;
                        match &result {
                            Ok(()) if op.write.wakes_sender() => self.events_signal.notify_one(),
                            Ok(()) => {}
                            Err(e) => tracing::warn!(error = %e, "write refused by the store"),
                        }
                        let _ = op.ack.send(result);
                    }
                }
                Err(e) => {
                    // The database is unreachable or failing: nothing in the
                    // batch is durable, and each caller hears so.
                    tracing::warn!(error = %e, writes = batch.len(), "group commit failed");
                    let message = e.to_string();
                    for op in batch {
                        let _ = op.ack.send(Err(Error::Unavailable(message.clone())));
                    }
                }
            }
        }
    }

    /// Commits `ops` in one transaction, retrying a deadlock a few times.
    async fn commit(&mut self, ops: &[Op]) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = match self.conn.as_mut() {
                Some(c) => c,
                None => match PgConnection::connect_with(&self.session).await {
                    Ok(c) => {
                        self.health.writer_up.store(true, Ordering::Relaxed);
                        tracing::info!("store writer reconnected");
                        // A commit whose answer the lost connection swallowed
                        // may have gone through although its writer was told
                        // it failed (and memory undid it): catching up
                        // reads our own recent bindings back too.
                        if let Some(lost) = self.lost_at.take() {
                            let _ = self.changes.send(Change::Resync {
                                since: lost - CATCH_UP_MARGIN_SECS,
                            });
                        }
                        self.conn.insert(c)
                    }
                    Err(e) => {
                        self.health.writer_up.store(false, Ordering::Relaxed);
                        return Err(e.into());
                    }
                },
            };
            match apply_batch(
                conn,
                &self.keys,
                &self.journal,
                ops,
                self.cooldown,
                self.node,
                &self.channel,
            )
            .await
            {
                Ok(()) => return Ok(()),
                Err(e) if is_retryable(&e) && attempt < 3 => {
                    tracing::debug!(error = %e, attempt, "transaction retried");
                }
                Err(e) if is_connection_lost(&e) => {
                    // Not retried: the commit may have reached the database
                    // before the connection broke, and a retry would then
                    // be refused as a duplicate. The writers hear of the
                    // failure; the next batch reconnects.
                    self.conn = None;
                    self.lost_at.get_or_insert_with(unix_now);
                    self.health.writer_up.store(false, Ordering::Relaxed);
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A write the database refused on its merits (a constraint, a conflict),
/// as opposed to a failure of the database or the connection.
fn is_refusal(e: &Error) -> bool {
    match e {
        Error::Conflict(_) | Error::Taken(_) => true,
        Error::Database(sqlx::Error::Database(db)) => db
            .code()
            .is_some_and(|c| c.starts_with("23") || c.starts_with("22")),
        _ => false,
    }
}

/// Deadlock or serialisation failure: the same transaction may succeed now.
fn is_retryable(e: &Error) -> bool {
    matches!(e, Error::Database(sqlx::Error::Database(db))
        if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

fn is_connection_lost(e: &Error) -> bool {
    matches!(
        e,
        Error::Database(
            sqlx::Error::Io(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
        )
    ) || matches!(e, Error::Database(sqlx::Error::Database(db))
        // admin_shutdown, crash_shutdown, cannot_connect_now
        if matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03")))
}

async fn apply_batch(
    conn: &mut PgConnection,
    keys: &Keyring,
    journal: &str,
    ops: &[Op],
    cooldown: i64,
    node: u64,
    channel: &str,
) -> Result<()> {
    let (audits, ops) = crate::audits_apart(ops, |op| &op.write);
    if ops.is_empty() {
        return insert_audits(conn, &audits).await;
    }
    if ops
        .iter()
        .all(|op| matches!(op.write, Write::CreateBinding { .. }))
    {
        return create_batch(conn, keys, &ops, &audits, cooldown, node, channel).await;
    }
    let mut tx = conn.begin().await?;
    let mut events: Vec<&NewEvent> = Vec::new();
    let mut touched = Touched::default();
    let mut rest = &ops[..];
    while let Some(first) = rest.first() {
        let n = match &first.write {
            Write::CreateBinding { .. } => {
                let n = rest
                    .iter()
                    .take_while(|op| matches!(op.write, Write::CreateBinding { .. }))
                    .count();
                let writes: Vec<_> = rest[..n].iter().map(|op| op.presealed()).collect();
                insert_bindings(&mut tx, keys, &writes, cooldown, &mut events, &mut touched)
                    .await?;
                n
            }
            Write::RecordCall { .. } => {
                let n = rest
                    .iter()
                    .take_while(|op| matches!(op.write, Write::RecordCall { .. }))
                    .count();
                let mut calls = Vec::with_capacity(n);
                for op in &rest[..n] {
                    if let Write::RecordCall { record, events: e } = &op.write {
                        calls.push(record);
                        events.extend(e);
                    }
                }
                insert_calls(&mut tx, keys, &calls, None).await?;
                n
            }
            Write::MessageSubmitted { .. } => {
                let n = rest
                    .iter()
                    .take_while(|op| matches!(op.write, Write::MessageSubmitted { .. }))
                    .count();
                let writes: Vec<&Write> = rest[..n].iter().map(|op| &op.write).collect();
                mark_submitted(&mut tx, &writes).await?;
                n
            }
            Write::RecordMessage { .. } => {
                let n = rest
                    .iter()
                    .take_while(|op| matches!(op.write, Write::RecordMessage { .. }))
                    .count();
                let writes: Vec<&Write> = rest[..n].iter().map(|op| &op.write).collect();
                insert_messages(&mut tx, keys, &writes, &mut events).await?;
                n
            }
            other => {
                apply(
                    &mut tx,
                    keys,
                    journal,
                    other,
                    cooldown,
                    &mut events,
                    &mut touched,
                )
                .await?;
                1
            }
        };
        rest = &rest[n..];
    }
    if !events.is_empty() {
        // Held to commit: event inserts of all nodes commit in seq order.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(EVENTS_LOCK)
            .execute(&mut *tx)
            .await?;
        insert_events(&mut tx, keys, &events, &sealed_bodies(&ops)).await?;
    }
    insert_audits(&mut tx, &audits).await?;
    notify(&mut tx, node, channel, &touched).await?;
    tx.commit().await?;
    Ok(())
}

/// Tells the other nodes what this transaction changed (delivered at
/// commit, in commit order).
async fn notify(
    conn: &mut PgConnection,
    node: u64,
    channel: &str,
    touched: &Touched,
) -> Result<()> {
    let payloads = notifications(node, touched);
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT pg_notify($1, p) FROM UNNEST($2::text[]) WITH ORDINALITY AS u(p, i) ORDER BY i",
    )
    .bind(channel)
    .bind(payloads)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The payloads that say what a transaction changed.
fn notifications(node: u64, touched: &Touched) -> Vec<String> {
    let mut payloads = Vec::new();
    for (on, kind) in [
        (touched.tenants, 't'),
        (touched.keys, 'k'),
        (touched.numbers, 'n'),
        (touched.webhooks, 'w'),
        (touched.sms_settings, 's'),
        (touched.call_rules, 'r'),
        (touched.prompts, 'p'),
    ] {
        if on {
            payloads.push(format!("{node:016x} {kind}"));
        }
    }
    let at = unix_ms();
    for chunk in touched.bindings.chunks(IDS_PER_NOTIFY) {
        let mut p = format!("{node:016x} b {at}");
        for id in chunk {
            p.push(' ');
            p.push_str(&id.simple().to_string());
        }
        payloads.push(p);
    }
    payloads
}

fn live_until(b: &Binding, cooldown: i64) -> i64 {
    b.ends_at().saturating_add(cooldown).max(b.created_at)
}

fn uuid(id: u128) -> Uuid {
    Uuid::from_u128(id)
}

/// The rows of a run of `CreateBinding` writes, as column arrays; their
/// events join `events`.
fn new_bindings<'a>(
    keys: &Keyring,
    writes: &[(&'a Write, Option<&'a SealedBinding>)],
    cooldown: i64,
    events: &mut Vec<&'a NewEvent>,
    touched: &mut Touched,
) -> (BindingArrays, IdempotencyArrays) {
    let mut c = BindingArrays::with_capacity(writes.len());
    let mut k = IdempotencyArrays::default();
    for (write, sealed) in writes {
        if let Write::CreateBinding {
            binding: b,
            idempotency,
            events: e,
        } = write
        {
            // Sealed here only when `enqueue` did not.
            match sealed {
                Some(s) => c.push(b, &s.parties, cooldown),
                None => c.push(b, &Parties::of(b, keys), cooldown),
            }
            touched.bindings.push(uuid(b.id.0));
            if let Some(r) = idempotency {
                k.tenant.push(uuid(r.tenant.0));
                k.key.push(r.key.clone());
                k.hash.push(r.request_hash.to_vec());
                k.status.push(i32::from(r.status));
                k.body.push(
                    sealed
                        .and_then(|s| s.idempotency_body.clone())
                        .unwrap_or_else(|| keys.seal_str(Column::IdempotencyBody, &r.body)),
                );
                k.created_at.push(r.created_at);
                k.binding.push(uuid(b.id.0));
            }
            events.extend(e);
        }
    }
    (c, k)
}

async fn insert_bindings<'a>(
    conn: &mut PgConnection,
    keys: &Keyring,
    writes: &[(&'a Write, Option<&'a SealedBinding>)],
    cooldown: i64,
    events: &mut Vec<&'a NewEvent>,
    touched: &mut Touched,
) -> Result<()> {
    let (c, k) = new_bindings(keys, writes, cooldown, events, touched);
    let insert = sqlx::query(
        "INSERT INTO bindings (id, tenant_id, mode, x, extension, a, b, area, external_ref, \
         a_to_b, b_to_a, max_call_seconds, record, sms, created_at, updated_at, expires_at, \
         ended_at, end_reason, ends_at, live_until, call_prompts, warn_before_end_seconds, \
         a_sealed, b_sealed) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::bool[], $11::bool[], $12::int8[], \
         $13::bool[], $14::bool[], $15::int8[], $16::int8[], $17::int8[], $18::int8[], \
         $19::text[], $20::int8[], $21::int8[], $22::int4[], $23::int4[], $24::text[], \
         $25::text[])",
    );
    c.bind_to(insert)
        .execute(&mut *conn)
        .await
        .map_err(conflict)?;
    if !k.key.is_empty() {
        let insert = sqlx::query(
            "INSERT INTO idempotency (tenant_id, key, request_hash, status, body, created_at, \
             binding_id) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[], $4::int4[], $5::text[], \
             $6::int8[], $7::uuid[])",
        );
        k.bind_to(insert)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
    }
    Ok(())
}

/// A batch of nothing but new bindings, in one statement and so one round
/// trip (`create_bindings`, `0003_create_batch.sql`, last redefined in
/// `0016_idempotency_binding.sql`): it runs in an implicit
/// transaction that commits before the answer comes back.
async fn create_batch(
    conn: &mut PgConnection,
    keys: &Keyring,
    ops: &[&Op],
    audits: &[&AuditEntry],
    cooldown: i64,
    node: u64,
    channel: &str,
) -> Result<()> {
    let writes: Vec<_> = ops.iter().map(|op| op.presealed()).collect();
    let mut events = Vec::new();
    let mut touched = Touched::default();
    let (c, k) = new_bindings(keys, &writes, cooldown, &mut events, &mut touched);
    let e = EventArrays::new(keys, &events, &sealed_bodies(ops));
    // The batch's audit entries in the same statement (a data-modifying
    // WITH runs whether or not the query reads it): one round trip.
    let call = sqlx::query(
        "WITH audit_rows AS (INSERT INTO audit (tenant_id, key_id, action, object, status, at, \
         source, user_id) SELECT * FROM UNNEST($44::uuid[], $45::uuid[], $46::text[], \
         $47::text[], $48::int4[], $49::int8[], $50::text[], $51::uuid[])) \
         SELECT create_bindings($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
         $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, \
         $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, $43)",
    );
    let call = e
        .bind_to(k.bind_to(c.bind_to(call)))
        .bind(EVENTS_LOCK)
        .bind(channel)
        .bind(notifications(node, &touched));
    AuditArrays::new(audits)
        .bind_to(call)
        .execute(&mut *conn)
        .await
        .map_err(conflict)?;
    Ok(())
}

/// Column arrays of a multi-row audit insert.
struct AuditArrays {
    tenant: Vec<Uuid>,
    key: Vec<Option<Uuid>>,
    action: Vec<String>,
    object: Vec<String>,
    status: Vec<i32>,
    at: Vec<i64>,
    source: Vec<Option<String>>,
    user: Vec<Option<Uuid>>,
}

impl AuditArrays {
    fn new(entries: &[&AuditEntry]) -> AuditArrays {
        AuditArrays {
            tenant: entries.iter().map(|e| uuid(e.tenant.0)).collect(),
            key: entries.iter().map(|e| e.key.map(|k| uuid(k.0))).collect(),
            action: entries.iter().map(|e| e.action.clone()).collect(),
            object: entries.iter().map(|e| e.object.clone()).collect(),
            status: entries.iter().map(|e| i32::from(e.status)).collect(),
            at: entries.iter().map(|e| e.at).collect(),
            source: entries.iter().map(|e| e.source.clone()).collect(),
            user: entries.iter().map(|e| e.user.map(|u| uuid(u.0))).collect(),
        }
    }

    /// Binds the columns as the next parameters, in table order.
    fn bind_to(self, q: PgQuery<'_>) -> PgQuery<'_> {
        q.bind(self.tenant)
            .bind(self.key)
            .bind(self.action)
            .bind(self.object)
            .bind(self.status)
            .bind(self.at)
            .bind(self.source)
            .bind(self.user)
    }
}

/// Audit entries in one statement.
async fn insert_audits(conn: &mut PgConnection, entries: &[&AuditEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let insert = sqlx::query(
        "INSERT INTO audit (tenant_id, key_id, action, object, status, at, source, user_id) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int4[], \
         $6::int8[], $7::text[], $8::uuid[])",
    );
    AuditArrays::new(entries)
        .bind_to(insert)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Column arrays of a multi-row idempotency insert.
#[derive(Default)]
struct IdempotencyArrays {
    tenant: Vec<Uuid>,
    key: Vec<String>,
    hash: Vec<Vec<u8>>,
    status: Vec<i32>,
    body: Vec<String>,
    created_at: Vec<i64>,
    /// The binding each response created.
    binding: Vec<Uuid>,
}

/// A statement being given its parameters in order.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl IdempotencyArrays {
    /// Binds the columns as the next parameters, in table order.
    fn bind_to(self, q: PgQuery<'_>) -> PgQuery<'_> {
        q.bind(self.tenant)
            .bind(self.key)
            .bind(self.hash)
            .bind(self.status)
            .bind(self.body)
            .bind(self.created_at)
            .bind(self.binding)
    }
}

/// Column arrays of a multi-row binding insert.
struct BindingArrays {
    id: Vec<Uuid>,
    tenant: Vec<Uuid>,
    mode: Vec<&'static str>,
    x: Vec<String>,
    extension: Vec<Option<String>>,
    a: Vec<String>,
    b: Vec<Option<String>>,
    area: Vec<Option<String>>,
    external_ref: Vec<Option<String>>,
    a_to_b: Vec<bool>,
    b_to_a: Vec<bool>,
    max_call: Vec<Option<i64>>,
    record: Vec<bool>,
    sms: Vec<bool>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    expires_at: Vec<i64>,
    ended_at: Vec<Option<i64>>,
    end_reason: Vec<Option<&'static str>>,
    ends_at: Vec<i64>,
    live_until: Vec<i64>,
    call_prompts: Vec<i32>,
    warn: Vec<Option<i32>>,
    a_sealed: Vec<String>,
    b_sealed: Vec<Option<String>>,
}

impl BindingArrays {
    /// Binds the columns as the next parameters, in table order.
    fn bind_to(self, q: PgQuery<'_>) -> PgQuery<'_> {
        q.bind(self.id)
            .bind(self.tenant)
            .bind(self.mode)
            .bind(self.x)
            .bind(self.extension)
            .bind(self.a)
            .bind(self.b)
            .bind(self.area)
            .bind(self.external_ref)
            .bind(self.a_to_b)
            .bind(self.b_to_a)
            .bind(self.max_call)
            .bind(self.record)
            .bind(self.sms)
            .bind(self.created_at)
            .bind(self.updated_at)
            .bind(self.expires_at)
            .bind(self.ended_at)
            .bind(self.end_reason)
            .bind(self.ends_at)
            .bind(self.live_until)
            .bind(self.call_prompts)
            .bind(self.warn)
            .bind(self.a_sealed)
            .bind(self.b_sealed)
    }

    fn with_capacity(n: usize) -> BindingArrays {
        BindingArrays {
            id: Vec::with_capacity(n),
            tenant: Vec::with_capacity(n),
            mode: Vec::with_capacity(n),
            x: Vec::with_capacity(n),
            extension: Vec::with_capacity(n),
            a: Vec::with_capacity(n),
            b: Vec::with_capacity(n),
            area: Vec::with_capacity(n),
            external_ref: Vec::with_capacity(n),
            a_to_b: Vec::with_capacity(n),
            b_to_a: Vec::with_capacity(n),
            max_call: Vec::with_capacity(n),
            record: Vec::with_capacity(n),
            sms: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
            updated_at: Vec::with_capacity(n),
            expires_at: Vec::with_capacity(n),
            ended_at: Vec::with_capacity(n),
            end_reason: Vec::with_capacity(n),
            ends_at: Vec::with_capacity(n),
            live_until: Vec::with_capacity(n),
            call_prompts: Vec::with_capacity(n),
            warn: Vec::with_capacity(n),
            a_sealed: Vec::with_capacity(n),
            b_sealed: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, b: &Binding, parties: &Parties, cooldown: i64) {
        self.id.push(uuid(b.id.0));
        self.tenant.push(uuid(b.tenant.0));
        self.mode.push(b.mode.as_str());
        self.x.push(b.x.to_string());
        self.extension.push(b.extension.map(|e| e.to_string()));
        self.a.push(parties.a_token.clone());
        self.b.push(parties.b_token.clone());
        self.a_sealed.push(parties.a_sealed.clone());
        self.b_sealed.push(parties.b_sealed.clone());
        self.area
            .push(b.area.as_ref().map(|a| a.as_str().to_owned()));
        self.external_ref.push(b.external_ref.clone());
        self.a_to_b.push(b.controls.a_to_b);
        self.b_to_a.push(b.controls.b_to_a);
        self.max_call
            .push(b.controls.max_call_seconds.map(i64::from));
        self.record.push(b.controls.record);
        self.sms.push(b.controls.sms);
        self.created_at.push(b.created_at);
        self.updated_at.push(b.updated_at);
        self.expires_at.push(b.expires_at);
        self.ended_at.push(b.ended_at);
        self.end_reason.push(b.end_reason.map(EndReason::as_str));
        self.ends_at.push(b.ends_at());
        self.live_until.push(live_until(b, cooldown));
        self.call_prompts.push(rows::call_prompts(&b.controls));
        // At most MAX_WARN_BEFORE_END_SECS: the API refuses more.
        self.warn.push(
            b.controls
                .warn_before_end_seconds
                .map(|w| i32::try_from(w).unwrap_or(i32::MAX)),
        );
    }
}

async fn insert_key(conn: &mut PgConnection, key: &ApiKey) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, prefix, hash, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid(key.id.0))
    .bind(uuid(key.tenant.0))
    .bind(&key.prefix)
    .bind(&key.hash[..])
    .bind(key.created_at)
    .bind(key.revoked_at)
    .execute(&mut *conn)
    .await
    .map_err(conflict)?;
    Ok(())
}

/// Inserts CDRs and takes them out of the open-call journal; or, with
/// `journal` (this node's name), puts calls so far into the journal.
async fn insert_calls(
    conn: &mut PgConnection,
    keys: &Keyring,
    calls: &[&CallRecord],
    journal: Option<&str>,
) -> Result<()> {
    let n = calls.len();
    let mut id = Vec::with_capacity(n);
    let mut tenant = Vec::with_capacity(n);
    let mut binding = Vec::with_capacity(n);
    let mut direction = Vec::with_capacity(n);
    let mut x = Vec::with_capacity(n);
    let mut caller = Vec::with_capacity(n);
    let mut callee = Vec::with_capacity(n);
    let mut invited = Vec::with_capacity(n);
    let mut ringing = Vec::with_capacity(n);
    let mut answered = Vec::with_capacity(n);
    let mut ended = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut released_by = Vec::with_capacity(n);
    let mut reason = Vec::with_capacity(n);
    let mut refusal = Vec::with_capacity(n);
    let mut caller_sealed = Vec::with_capacity(n);
    let mut callee_sealed = Vec::with_capacity(n);
    for c in calls {
        id.push(uuid(c.id.0));
        tenant.push(c.tenant.map(|t| uuid(t.0)));
        binding.push(c.binding.map(|b| uuid(b.0)));
        direction.push(c.direction.map(Direction::as_str));
        x.push(c.x.map(|n| n.to_string()));
        caller.push(c.caller.map(|n| keys.blind(&n.to_string())));
        callee.push(c.callee.map(|n| keys.blind(&n.to_string())));
        caller_sealed.push(
            c.caller
                .map(|n| keys.seal_str(Column::CallCaller, &n.to_string())),
        );
        callee_sealed.push(
            c.callee
                .map(|n| keys.seal_str(Column::CallCallee, &n.to_string())),
        );
        invited.push(c.invited_at);
        ringing.push(c.ringing_at);
        answered.push(c.answered_at);
        ended.push(c.ended_at);
        status.push(i32::from(c.final_status));
        released_by.push(c.released_by.as_str());
        reason.push(c.release_reason.as_str());
        refusal.push(c.refusal.map(Refusal::as_str));
    }
    let rows = "UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int4[], \
         $13::text[], $14::text[], $15::text[], $16::text[], $17::text[])";
    let sql = match journal {
        None => format!("INSERT INTO calls ({CALL_COLUMNS}) SELECT * FROM {rows}"),
        Some(_) => format!(
            "INSERT INTO open_calls (node, {CALL_COLUMNS}) SELECT $18, * FROM {rows} \
             ON CONFLICT (id) DO UPDATE SET binding_id = excluded.binding_id, \
             direction = excluded.direction, callee = excluded.callee, \
             callee_sealed = excluded.callee_sealed, ringing_at = excluded.ringing_at, \
             answered_at = excluded.answered_at"
        ),
    };
    let q = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant)
        .bind(binding)
        .bind(direction)
        .bind(x)
        .bind(caller)
        .bind(callee)
        .bind(invited)
        .bind(ringing)
        .bind(answered)
        .bind(ended)
        .bind(status)
        .bind(released_by)
        .bind(reason)
        .bind(refusal)
        .bind(caller_sealed)
        .bind(callee_sealed);
    if let Some(node) = journal {
        q.bind(node).execute(&mut *conn).await?;
        return Ok(());
    }
    q.execute(&mut *conn).await.map_err(conflict)?;
    sqlx::query("DELETE FROM open_calls WHERE id = ANY($1)")
        .bind(calls.iter().map(|c| uuid(c.id.0)).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Column arrays of a multi-row event insert.
struct EventArrays {
    id: Vec<Uuid>,
    tenant: Vec<Uuid>,
    kind: Vec<&'static str>,
    subject: Vec<Uuid>,
    created: Vec<i64>,
    body: Vec<String>,
    state: Vec<&'static str>,
    next: Vec<Option<i64>>,
}

impl EventArrays {
    /// Binds the columns as the next parameters, in the order above.
    fn bind_to(self, q: PgQuery<'_>) -> PgQuery<'_> {
        q.bind(self.id)
            .bind(self.tenant)
            .bind(self.kind)
            .bind(self.subject)
            .bind(self.created)
            .bind(self.body)
            .bind(self.state)
            .bind(self.next)
    }

    /// `sealed`: bodies sealed already; the others are sealed here.
    fn new(keys: &Keyring, events: &[&NewEvent], sealed: &SealedBodies<'_>) -> EventArrays {
        let n = events.len();
        let mut a = EventArrays {
            id: Vec::with_capacity(n),
            tenant: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            subject: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
            state: Vec::with_capacity(n),
            next: Vec::with_capacity(n),
        };
        for e in events {
            a.id.push(uuid(e.id.0));
            a.tenant.push(uuid(e.tenant.0));
            a.kind.push(e.kind.as_str());
            a.subject.push(uuid(e.subject));
            a.created.push(e.created_at);
            a.body.push(match sealed.get(&e.id) {
                Some(body) => (*body).to_owned(),
                None => keys.seal_str(Column::EventBody, &e.body),
            });
            let s = if e.deliver {
                DeliveryState::Pending
            } else {
                DeliveryState::None
            };
            a.state.push(s.as_str());
            a.next.push(e.deliver.then_some(e.created_at));
        }
        a
    }
}

async fn insert_events(
    conn: &mut PgConnection,
    keys: &Keyring,
    events: &[&NewEvent],
    sealed: &SealedBodies<'_>,
) -> Result<()> {
    let e = EventArrays::new(keys, events, sealed);
    // WITH ORDINALITY ... ORDER BY: seq follows the order given.
    let insert = sqlx::query(
        "INSERT INTO events (id, tenant_id, type, subject, created_at, body, state, \
         next_attempt_at, retry_from) \
         SELECT id, t, k, s, c, body, st, nx, c FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], \
         $4::uuid[], $5::int8[], $6::text[], $7::text[], $8::int8[]) WITH ORDINALITY \
         AS u(id, t, k, s, c, body, st, nx, i) ORDER BY i",
    );
    e.bind_to(insert)
        .execute(&mut *conn)
        .await
        .map_err(conflict)?;
    Ok(())
}

/// A run of `MessageSubmitted` writes in two statements: the texts are no
/// longer due, their carrier ids are kept for receipts.
async fn mark_submitted(conn: &mut PgConnection, writes: &[&Write]) -> Result<()> {
    let (mut ids, mut parts, mut times) = (Vec::new(), Vec::new(), Vec::new());
    let (mut links, mut smsc_ids, mut owners, mut seqs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for write in writes {
        if let Write::MessageSubmitted {
            message,
            parts: n,
            submits,
            at,
        } = write
        {
            ids.push(uuid(message.0));
            parts.push(i32::from(*n));
            times.push(*at);
            for s in submits {
                links.push(s.link.as_str());
                smsc_ids.push(s.smsc_id.as_str());
                owners.push(uuid(message.0));
                seqs.push(i32::from(s.part));
            }
        }
    }
    // Not prepared: a plan cached while `messages` was small joins by a
    // sequential scan (as read sessions found, BENCHMARKS.md §6.0), and this
    // runs for every batch of texts handed over.
    sqlx::query(
        "WITH handed_over AS (DELETE FROM relays WHERE message_id = ANY($1)) \
         UPDATE messages SET updated_at = u.at, parts = u.parts \
         FROM UNNEST($1::uuid[], $2::int4[], $3::int8[]) AS u(id, parts, at) \
         WHERE messages.id = u.id",
    )
    .persistent(false)
    .bind(ids)
    .bind(parts)
    .bind(times)
    .execute(&mut *conn)
    .await?;
    // One row per (link, smsc_id): the last of a run wins.
    sqlx::query(
        "INSERT INTO message_submits (link, smsc_id, message_id, part, state) \
         SELECT DISTINCT ON (l, s) l, s, m, p, 'submitted' \
         FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::int4[]) WITH ORDINALITY \
         AS u(l, s, m, p, i) ORDER BY l, s, i DESC \
         ON CONFLICT (link, smsc_id) DO UPDATE SET message_id = excluded.message_id, \
         part = excluded.part, state = 'submitted'",
    )
    .bind(links)
    .bind(smsc_ids)
    .bind(owners)
    .bind(seqs)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts a run of `RecordMessage` writes (one statement), drops the parts
/// they were assembled from; their events join `events`.
async fn insert_messages<'a>(
    conn: &mut PgConnection,
    keys: &Keyring,
    writes: &[&'a Write],
    events: &mut Vec<&'a NewEvent>,
) -> Result<()> {
    let n = writes.len();
    let mut id = Vec::with_capacity(n);
    let mut tenant = Vec::with_capacity(n);
    let mut binding = Vec::with_capacity(n);
    let mut direction = Vec::with_capacity(n);
    let mut x = Vec::with_capacity(n);
    let mut sender = Vec::with_capacity(n);
    let mut recipient = Vec::with_capacity(n);
    let mut body = Vec::with_capacity(n);
    let mut code = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut reason = Vec::with_capacity(n);
    let mut parts = Vec::with_capacity(n);
    let mut ingress = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut updated = Vec::with_capacity(n);
    let mut ends = Vec::with_capacity(n);
    let mut sender_sealed = Vec::with_capacity(n);
    let mut recipient_sealed = Vec::with_capacity(n);
    let (mut relay_ids, mut dues) = (Vec::new(), Vec::new());
    for write in writes {
        let Write::RecordMessage {
            message: m,
            relay_due,
            assembled_from,
            events: e,
        } = write
        else {
            continue;
        };
        id.push(uuid(m.id.0));
        tenant.push(m.tenant.map(|t| uuid(t.0)));
        binding.push(m.binding.map(|b| uuid(b.0)));
        direction.push(m.direction.map(Direction::as_str));
        x.push(m.x.to_string());
        let from = m.from.to_string();
        sender.push(keys.blind(&from));
        recipient.push(m.to.map(|n| keys.blind(&n.to_string())));
        sender_sealed.push(keys.seal_str(Column::MessageSender, &from));
        recipient_sealed
            .push(m.to.map(|n| keys.seal_str(Column::MessageRecipient, &n.to_string())));
        body.push(keys.seal_str(Column::MessageBody, &m.text));
        code.push(m.pickup_code.as_deref());
        status.push(m.status.as_str());
        reason.push(m.reason.map(|r| r.as_str()));
        parts.push(i32::from(m.parts));
        ingress.push(m.ingress.as_str());
        created.push(m.created_at);
        updated.push(m.updated_at);
        ends.push(m.ends_at);
        if let Some(due) = relay_due {
            relay_ids.push(uuid(m.id.0));
            dues.push(*due);
        }
        events.extend(e);
        if let Some(key) = assembled_from {
            // A node assembling the same parts at once waits on these rows
            // and then finds none: one text, not two.
            let [token, previous] = keys.lookup_tokens(&key.from.to_string());
            let dropped = sqlx::query(
                "DELETE FROM message_parts WHERE x = $1 AND sender IN ($2, $3) AND reference = $4",
            )
            .bind(key.x.to_string())
            .bind(token)
            .bind(previous)
            .bind(i32::from(key.reference))
            .execute(&mut *conn)
            .await?;
            if dropped.rows_affected() == 0 {
                return Err(Error::Conflict(
                    "the parts of this text were assembled already".into(),
                ));
            }
        }
    }
    let sql = format!(
        "INSERT INTO messages ({MESSAGE_COLUMNS}) SELECT * FROM UNNEST($1::uuid[], $2::uuid[], \
         $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
         $10::text[], $11::text[], $12::int4[], $13::text[], $14::int8[], $15::int8[], \
         $16::int8[], $17::text[], $18::text[])"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant)
        .bind(binding)
        .bind(direction)
        .bind(x)
        .bind(sender)
        .bind(recipient)
        .bind(body)
        .bind(code)
        .bind(status)
        .bind(reason)
        .bind(parts)
        .bind(ingress)
        .bind(created)
        .bind(updated)
        .bind(ends)
        .bind(sender_sealed)
        .bind(recipient_sealed)
        .execute(&mut *conn)
        .await
        .map_err(conflict)?;
    if !relay_ids.is_empty() {
        sqlx::query(
            "INSERT INTO relays (message_id, due) SELECT * FROM UNNEST($1::uuid[], $2::int8[])",
        )
        .bind(relay_ids)
        .bind(dues)
        .execute(&mut *conn)
        .await
        .map_err(conflict)?;
    }
    Ok(())
}

async fn apply<'a>(
    conn: &mut PgConnection,
    keys: &Keyring,
    journal: &str,
    write: &'a Write,
    cooldown: i64,
    events: &mut Vec<&'a NewEvent>,
    touched: &mut Touched,
) -> Result<()> {
    match write {
        Write::PutMeta { key, value } => {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
        }
        Write::CreateTenant(t, key) => {
            sqlx::query(
                "INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(uuid(t.id.0))
            .bind(&t.name)
            .bind(&t.api_key_hash[..])
            .bind(t.created_at)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
            insert_key(conn, key).await?;
            touched.tenants = true;
            touched.keys = true;
        }
        Write::Audit(e) => insert_audits(conn, &[e]).await?,
        Write::CreateKey(key) => {
            insert_key(conn, key).await?;
            touched.keys = true;
        }
        Write::CreateUser(u) => {
            sqlx::query(
                "INSERT INTO users (id, email, password_hash, role, tenant_id, created_at, \
                 failed_signins, locked_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(uuid(u.id.0))
            .bind(&u.email)
            .bind(&u.password_hash)
            .bind(u.role.as_str())
            .bind(u.tenant.map(|t| uuid(t.0)))
            .bind(u.created_at)
            .bind(i32::try_from(u.failed_signins).unwrap_or(i32::MAX))
            .bind(u.locked_until)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
        }
        Write::OpenSession(session) => {
            sqlx::query("DELETE FROM console_sessions WHERE user_id = $1 AND expires_at <= $2")
                .bind(uuid(session.user.0))
                .bind(session.created_at)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO console_sessions (token_hash, user_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&session.token_hash[..])
            .bind(uuid(session.user.0))
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&mut *conn)
            .await?;
        }
        Write::DeleteUser { user, tenant } => {
            let gone = match tenant {
                Some(t) => {
                    sqlx::query("DELETE FROM users WHERE id = $1 AND tenant_id = $2")
                        .bind(uuid(user.0))
                        .bind(uuid(t.0))
                        .execute(&mut *conn)
                        .await?
                }
                None => {
                    sqlx::query("DELETE FROM users WHERE id = $1")
                        .bind(uuid(user.0))
                        .execute(&mut *conn)
                        .await?
                }
            };
            if gone.rows_affected() != 1 {
                return Err(Error::Conflict(format!("user {user} does not exist")));
            }
            // Its sessions go with it (the schema cascades too).
            sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
                .bind(uuid(user.0))
                .execute(&mut *conn)
                .await?;
        }
        Write::CloseSession { token_hash } => {
            sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
                .bind(&token_hash[..])
                .execute(&mut *conn)
                .await?;
        }
        Write::SignInFailed {
            user,
            at,
            max,
            lockout_secs,
        } => {
            // Every expression reads the row as it was.
            sqlx::query(
                "UPDATE users SET \
                 locked_until = CASE WHEN failed_signins + 1 >= $1 THEN $2 ELSE locked_until END, \
                 failed_signins = CASE WHEN failed_signins + 1 >= $1 THEN 0 \
                 ELSE failed_signins + 1 END \
                 WHERE id = $3",
            )
            .bind(i32::try_from(*max).unwrap_or(i32::MAX))
            .bind(at + lockout_secs)
            .bind(uuid(user.0))
            .execute(&mut *conn)
            .await?;
        }
        Write::SignInSucceeded { user, at } => {
            sqlx::query(
                "UPDATE users SET failed_signins = 0 \
                 WHERE id = $1 AND (locked_until IS NULL OR locked_until <= $2)",
            )
            .bind(uuid(user.0))
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        Write::RevokeKey { tenant, id, at } => {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 \
                 WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL",
            )
            .bind(at)
            .bind(uuid(id.0))
            .bind(uuid(tenant.0))
            .execute(&mut *conn)
            .await?;
            touched.keys = true;
        }
        Write::ImportNumbers(numbers) => {
            // Pool order is the order given.
            let tenants: Vec<Uuid> = numbers.iter().map(|n| uuid(n.tenant.0)).collect();
            let digits: Vec<String> = numbers.iter().map(|n| n.number.to_string()).collect();
            let areas: Vec<Option<&str>> = numbers
                .iter()
                .map(|n| n.area.as_ref().map(Area::as_str))
                .collect();
            let created: Vec<i64> = numbers.iter().map(|n| n.created_at).collect();
            sqlx::query(
                "INSERT INTO numbers (number, tenant_id, area, created_at) \
                 SELECT n, t, a, c FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::int8[]) \
                 WITH ORDINALITY AS u(n, t, a, c, i) ORDER BY i \
                 ON CONFLICT (number) DO NOTHING",
            )
            .bind(&digits)
            .bind(&tenants)
            .bind(areas)
            .bind(created)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
            // Already there is fine if it is this tenant's; someone else's
            // number rolls the whole import back.
            let foreign: Option<String> = sqlx::query_scalar(
                "SELECT u.n FROM UNNEST($1::text[], $2::uuid[]) AS u(n, t) \
                 JOIN numbers ON numbers.number = u.n WHERE numbers.tenant_id <> u.t LIMIT 1",
            )
            .bind(&digits)
            .bind(&tenants)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(n) = foreign {
                let masked = Number::from_e164(&n)
                    .map_or_else(|_| "?".to_owned(), |n| n.masked().to_string());
                return Err(Error::Conflict(format!(
                    "number {masked} belongs to another pool"
                )));
            }
            touched.numbers = true;
        }
        Write::RetireNumber { tenant, number } => {
            sqlx::query("DELETE FROM numbers WHERE number = $1 AND tenant_id = $2")
                .bind(number.to_string())
                .bind(uuid(tenant.0))
                .execute(&mut *conn)
                .await?;
            touched.numbers = true;
        }
        Write::CreateBinding { .. } => {
            insert_bindings(conn, keys, &[(write, None)], cooldown, events, touched).await?;
        }
        Write::UpdateBinding {
            binding: b,
            events: e,
        } => {
            let done = sqlx::query(
                "UPDATE bindings SET b = $1, a_to_b = $2, b_to_a = $3, max_call_seconds = $4, \
                 record = $5, sms = $6, updated_at = $7, expires_at = $8, ended_at = $9, \
                 end_reason = $10, ends_at = $11, live_until = $12, call_prompts = $15, \
                 warn_before_end_seconds = $16, b_sealed = $17 \
                 WHERE id = $13 AND tenant_id = $14",
            )
            .bind(b.b.map(|n| keys.blind(&n.to_string())))
            .bind(b.controls.a_to_b)
            .bind(b.controls.b_to_a)
            .bind(b.controls.max_call_seconds.map(i64::from))
            .bind(b.controls.record)
            .bind(b.controls.sms)
            .bind(b.updated_at)
            .bind(b.expires_at)
            .bind(b.ended_at)
            .bind(b.end_reason.map(EndReason::as_str))
            .bind(b.ends_at())
            .bind(live_until(b, cooldown))
            .bind(uuid(b.id.0))
            .bind(uuid(b.tenant.0))
            .bind(rows::call_prompts(&b.controls))
            .bind(
                b.controls
                    .warn_before_end_seconds
                    .map(|w| i32::try_from(w).unwrap_or(i32::MAX)),
            )
            .bind(b.b.map(|n| keys.seal_str(Column::BindingB, &n.to_string())))
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
            if done.rows_affected() != 1 {
                return Err(Error::Conflict(format!("binding {} does not exist", b.id)));
            }
            sqlx::query("UPDATE messages SET ends_at = $1 WHERE binding_id = $2")
                .bind(b.ends_at())
                .bind(uuid(b.id.0))
                .execute(&mut *conn)
                .await?;
            touched.bindings.push(uuid(b.id.0));
            events.extend(e);
        }
        Write::ExpireBindings { ended, at } => {
            let ids: Vec<Uuid> = ended.iter().map(|e| uuid(e.id.0)).collect();
            let times: Vec<i64> = ended.iter().map(|e| e.ended_at).collect();
            // Only a binding this write ends gets its event: another node
            // sweeping the same binding waits for our row lock, then finds
            // it ended and changes nothing.
            let done: Vec<Uuid> = sqlx::query_scalar(
                "UPDATE bindings SET ended_at = u.t, end_reason = 'expired', updated_at = $3, \
                 ends_at = LEAST(ends_at, u.t), \
                 live_until = GREATEST(created_at, LEAST(ends_at, u.t) + $4) \
                 FROM UNNEST($1::uuid[], $2::int8[]) AS u(id, t) \
                 WHERE bindings.id = u.id AND bindings.ended_at IS NULL RETURNING bindings.id",
            )
            .bind(&ids)
            .bind(times)
            .bind(at)
            .bind(cooldown)
            .fetch_all(&mut *conn)
            .await
            .map_err(conflict)?;
            let done: std::collections::HashSet<Uuid> = done.into_iter().collect();
            for e in ended {
                if done.contains(&uuid(e.id.0)) {
                    touched.bindings.push(uuid(e.id.0));
                    events.extend(e.event.as_ref());
                }
            }
        }
        Write::PurgeIdempotency { before } => {
            sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
                .bind(before)
                .execute(&mut *conn)
                .await?;
        }
        Write::RecordCall { record, events: e } => {
            insert_calls(conn, keys, &[record], None).await?;
            events.extend(e);
        }
        Write::ForgetOpenCalls(ids) => {
            sqlx::query("DELETE FROM open_calls WHERE id = ANY($1)")
                .bind(ids.iter().map(|c| uuid(c.0)).collect::<Vec<_>>())
                .execute(&mut *conn)
                .await?;
        }
        Write::OpenCall { record, events: e } => {
            insert_calls(conn, keys, &[record], Some(journal)).await?;
            events.extend(e);
        }
        Write::RecordEvents(e) => events.extend(e),
        Write::PutWebhook(w) => {
            let patterns: Vec<&str> = w.events.iter().map(|p| p.as_str()).collect();
            sqlx::query(
                "INSERT INTO webhooks (tenant_id, url, events, secret, intercept_url, \
                 intercept_fallback, intercept_timeout_ms, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant_id) DO UPDATE SET \
                 url = excluded.url, events = excluded.events, secret = excluded.secret, \
                 intercept_url = excluded.intercept_url, \
                 intercept_fallback = excluded.intercept_fallback, \
                 intercept_timeout_ms = excluded.intercept_timeout_ms, \
                 updated_at = excluded.updated_at",
            )
            .bind(uuid(w.tenant.0))
            .bind(&w.url)
            .bind(patterns.join(" "))
            .bind(keys.seal_str(Column::WebhookSecret, &w.secret))
            .bind(w.intercept.as_ref().map(|i| i.url.clone()))
            .bind(w.intercept.as_ref().map(|i| i.fallback.as_str()))
            .bind(
                w.intercept
                    .as_ref()
                    .map(|i| i32::try_from(i.timeout_ms).unwrap_or(i32::MAX)),
            )
            .bind(w.updated_at)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
            touched.webhooks = true;
        }
        Write::DeleteWebhook { tenant } => {
            sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1")
                .bind(uuid(tenant.0))
                .execute(&mut *conn)
                .await?;
            touched.webhooks = true;
        }
        Write::DeliveryOutcomes(outcomes) => {
            let mut id = Vec::with_capacity(outcomes.len());
            let mut state = Vec::with_capacity(outcomes.len());
            let mut next = Vec::with_capacity(outcomes.len());
            let mut status = Vec::with_capacity(outcomes.len());
            let mut error = Vec::with_capacity(outcomes.len());
            let mut delivered = Vec::with_capacity(outcomes.len());
            for o in outcomes {
                let (s, n, d) = match o.next {
                    NextStep::Delivered => (DeliveryState::Delivered, None, Some(o.at)),
                    NextStep::RetryAt(t) => (DeliveryState::Pending, Some(t), None),
                    NextStep::Failed => (DeliveryState::Failed, None, None),
                };
                id.push(uuid(o.event.0));
                state.push(s.as_str());
                next.push(n);
                status.push(o.status.map(i32::from));
                error.push(o.error.as_deref());
                delivered.push(d);
            }
            // Only a pending event moves: a redelivery queued since the
            // attempt started is not undone by its outcome.
            sqlx::query(
                "UPDATE events SET state = u.s, attempts = attempts + 1, next_attempt_at = u.n, \
                 last_status = u.st, last_error = u.err, \
                 delivered_at = COALESCE(u.d, delivered_at) \
                 FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::int4[], $5::text[], \
                 $6::int8[]) AS u(id, s, n, st, err, d) \
                 WHERE events.id = u.id AND events.state = 'pending'",
            )
            .bind(id)
            .bind(state)
            .bind(next)
            .bind(status)
            .bind(error)
            .bind(delivered)
            .execute(&mut *conn)
            .await?;
        }
        Write::LeaseEvents { events: ids, until } => {
            let ids: Vec<Uuid> = ids.iter().map(|e| uuid(e.0)).collect();
            sqlx::query(
                "UPDATE events SET next_attempt_at = GREATEST(next_attempt_at, $2) \
                 WHERE id = ANY($1) AND state = 'pending'",
            )
            .bind(ids)
            .bind(until)
            .execute(&mut *conn)
            .await?;
        }
        Write::Redeliver { tenant, event, at } => {
            let done = sqlx::query(
                "UPDATE events SET state = 'pending', next_attempt_at = $1, retry_from = $1 \
                 WHERE id = $2 AND tenant_id = $3",
            )
            .bind(at)
            .bind(uuid(event.0))
            .bind(uuid(tenant.0))
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() != 1 {
                return Err(Error::Conflict(format!("event {event} does not exist")));
            }
        }
        Write::RecordMessage { .. } => insert_messages(conn, keys, &[write], events).await?,
        Write::RecordPart(p) => {
            let sql = format!(
                "INSERT INTO message_parts ({PART_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(p.key.x.to_string())
                .bind(keys.blind(&p.key.from.to_string()))
                .bind(i32::from(p.key.reference))
                .bind(i32::from(p.seq))
                .bind(i32::from(p.total))
                .bind(i32::from(p.coding))
                .bind(&[][..] as &[u8])
                .bind(p.received_at)
                .bind(p.ingress.as_str())
                .bind(keys.seal_str(Column::PartSender, &p.key.from.to_string()))
                .bind(keys.seal(Column::PartBytes, &p.bytes))
                .execute(&mut *conn)
                .await?;
        }
        Write::MessageSubmitted { .. } => mark_submitted(conn, &[write]).await?,
        Write::RelayLater { message, due } => {
            sqlx::query("UPDATE relays SET due = $1 WHERE message_id = $2")
                .bind(due)
                .bind(uuid(message.0))
                .execute(&mut *conn)
                .await?;
        }
        Write::LeaseRelays { messages, until } => {
            let ids: Vec<Uuid> = messages.iter().map(|m| uuid(m.0)).collect();
            sqlx::query("UPDATE relays SET due = GREATEST(due, $1) WHERE message_id = ANY($2)")
                .bind(until)
                .bind(ids)
                .execute(&mut *conn)
                .await?;
        }
        Write::ReleaseMessage {
            message: m,
            relay_due,
            event,
        } => {
            let id = uuid(m.id.0);
            let done = sqlx::query(
                "UPDATE messages SET binding_id = $1, direction = $2, recipient = $3, \
                 recipient_sealed = $4, status = 'relayed', reason = NULL, updated_at = $5, \
                 ends_at = $6 WHERE id = $7 AND tenant_id = $8 AND status = 'held'",
            )
            .bind(m.binding.map(|b| uuid(b.0)))
            .bind(m.direction.map(Direction::as_str))
            .bind(m.to.map(|n| keys.blind(&n.to_string())))
            .bind(m.to.map(|n| keys.seal_str(Column::MessageRecipient, &n.to_string())))
            .bind(m.updated_at)
            .bind(m.ends_at)
            .bind(id)
            .bind(m.tenant.map(|t| uuid(t.0)))
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() != 1 {
                return Err(crate::not_held(m.id));
            }
            sqlx::query("INSERT INTO relays (message_id, due) VALUES ($1, $2)")
                .bind(id)
                .bind(relay_due)
                .execute(&mut *conn)
                .await?;
            events.push(event);
        }
        Write::MessageOutcome {
            message,
            part,
            delivered,
            reason,
            at,
            event,
        } => {
            let id = uuid(message.0);
            // The message row first: receipts for two parts of one text
            // take turns.
            sqlx::query("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            if let Some((link, smsc_id)) = part {
                sqlx::query(
                    "UPDATE message_submits SET state = $1 WHERE link = $2 AND smsc_id = $3",
                )
                .bind(if *delivered { "delivered" } else { "failed" })
                .bind(link.as_str())
                .bind(smsc_id.as_str())
                .execute(&mut *conn)
                .await?;
            }
            let complete = if *delivered {
                // Every part with a carrier id has been delivered (a part
                // taken without one gets no receipt to wait for).
                let waiting: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM message_submits \
                     WHERE message_id = $1 AND state <> 'delivered')",
                )
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
                !waiting
            } else {
                true
            };
            if complete {
                let status = if *delivered {
                    MessageStatus::Delivered
                } else {
                    MessageStatus::Failed
                };
                sqlx::query("DELETE FROM relays WHERE message_id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                let done = sqlx::query(
                    "UPDATE messages SET status = $1, reason = $2, updated_at = $3 \
                     WHERE id = $4 AND status = 'relayed'",
                )
                .bind(status.as_str())
                .bind(reason.map(|r| r.as_str()))
                .bind(at)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 1 {
                    events.push(event);
                }
            }
        }
        Write::UnmatchedReceipt(r) => {
            sqlx::query(
                "INSERT INTO unmatched_receipts (link, smsc_id, delivered, received_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (link, smsc_id) DO UPDATE SET \
                 delivered = excluded.delivered, received_at = excluded.received_at",
            )
            .bind(r.link.as_str())
            .bind(r.smsc_id.as_str())
            .bind(r.delivered)
            .bind(r.received_at)
            .execute(&mut *conn)
            .await?;
        }
        Write::ForgetReceipts(keys) => {
            let (links, ids): (Vec<&str>, Vec<&str>) =
                keys.iter().map(|(l, s)| (l.as_str(), s.as_str())).unzip();
            sqlx::query(
                "DELETE FROM unmatched_receipts u USING UNNEST($1::text[], $2::text[]) \
                 AS k(link, smsc_id) WHERE u.link = k.link AND u.smsc_id = k.smsc_id",
            )
            .bind(links)
            .bind(ids)
            .execute(&mut *conn)
            .await?;
        }
        Write::PutSmsSettings {
            tenant,
            settings,
            updated_at,
        } => {
            let t = uuid(tenant.0);
            sqlx::query(
                "INSERT INTO sms_settings (tenant_id, prefix, filter, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET \
                 prefix = excluded.prefix, filter = excluded.filter, \
                 updated_at = excluded.updated_at",
            )
            .bind(t)
            .bind(settings.prefix.as_deref())
            .bind(settings.filter.mode.as_str())
            .bind(updated_at)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
            sqlx::query("DELETE FROM sms_rules WHERE tenant_id = $1")
                .bind(t)
                .execute(&mut *conn)
                .await?;
            let patterns: Vec<&str> = settings.filter.rules.iter().map(|r| r.pattern()).collect();
            let actions: Vec<&str> = settings
                .filter
                .rules
                .iter()
                .map(|r| r.action.as_str())
                .collect();
            sqlx::query(
                "INSERT INTO sms_rules (tenant_id, position, pattern, action) \
                 SELECT $1, i - 1, p, a FROM UNNEST($2::text[], $3::text[]) \
                 WITH ORDINALITY AS u(p, a, i)",
            )
            .bind(t)
            .bind(patterns)
            .bind(actions)
            .execute(&mut *conn)
            .await?;
            touched.sms_settings = true;
        }
        Write::PutPrompt {
            tenant,
            name,
            samples,
            updated_at,
        } => {
            sqlx::query(
                "INSERT INTO prompts (tenant_id, name, samples, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, name) DO UPDATE SET \
                 samples = excluded.samples, updated_at = excluded.updated_at",
            )
            .bind(uuid(tenant.0))
            .bind(name.as_str())
            .bind(rows::pcm16_bytes(samples))
            .bind(updated_at)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
            touched.prompts = true;
        }
        Write::DeletePrompt { tenant, name } => {
            sqlx::query("DELETE FROM prompts WHERE tenant_id = $1 AND name = $2")
                .bind(uuid(tenant.0))
                .bind(name.as_str())
                .execute(&mut *conn)
                .await?;
            touched.prompts = true;
        }
        Write::EraseParty {
            tenant,
            party,
            ended_before,
        } => {
            let (sql, mask, [token, previous]) = crate::rows::erasure(keys, *party);
            for statement in sql {
                let mut q = sqlx::query(AssertSqlSafe(statement.text('$')));
                for &arg in statement.args {
                    q = match arg {
                        crate::rows::EraseArg::Tenant => q.bind(uuid(tenant.0)),
                        crate::rows::EraseArg::Token => q.bind(token.clone()),
                        crate::rows::EraseArg::PreviousToken => q.bind(previous.clone()),
                        crate::rows::EraseArg::EndedBefore => q.bind(*ended_before),
                        crate::rows::EraseArg::Mask(column) => q.bind(mask(column)),
                    };
                }
                q.execute(&mut *conn).await?;
            }
        }
        Write::PutCallRules {
            tenant,
            rules,
            updated_at,
        } => {
            sqlx::query(
                "INSERT INTO call_rules (tenant_id, allow_prefixes, deny_prefixes, updated_at, \
                 max_concurrent_calls, max_calls_per_second) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO UPDATE SET \
                 allow_prefixes = excluded.allow_prefixes, \
                 deny_prefixes = excluded.deny_prefixes, updated_at = excluded.updated_at, \
                 max_concurrent_calls = excluded.max_concurrent_calls, \
                 max_calls_per_second = excluded.max_calls_per_second",
            )
            .bind(uuid(tenant.0))
            .bind(rows::prefix_list(&rules.allow_prefixes))
            .bind(rows::prefix_list(&rules.deny_prefixes))
            .bind(updated_at)
            .bind(rules.caps.max_concurrent_calls.map(i64::from))
            .bind(rules.caps.max_calls_per_second.map(i64::from))
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
            touched.call_rules = true;
        }
        Write::PutTenantLimit {
            tenant,
            rate_limit,
            updated_at,
        } => {
            match rate_limit {
                Some(rate) => sqlx::query(
                    "INSERT INTO tenant_limits (tenant_id, rate_limit, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id) DO UPDATE SET rate_limit = excluded.rate_limit, \
                     updated_at = excluded.updated_at",
                )
                .bind(uuid(tenant.0))
                .bind(i64::from(*rate))
                .bind(updated_at)
                .execute(&mut *conn)
                .await
                .map_err(conflict)?,
                None => sqlx::query("DELETE FROM tenant_limits WHERE tenant_id = $1")
                    .bind(uuid(tenant.0))
                    .execute(&mut *conn)
                    .await?,
            };
            touched.tenants = true;
        }
        Write::PutCallLoad { node, at, loads } => {
            sqlx::query("DELETE FROM call_load WHERE node = $1")
                .bind(node)
                .execute(&mut *conn)
                .await?;
            for l in loads {
                sqlx::query(
                    "INSERT INTO call_load (node, tenant_id, active, per_second, at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(node)
                .bind(uuid(l.tenant.0))
                .bind(i64::from(l.active))
                .bind(i64::from(l.per_second))
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
        }
        Write::Reseal { batch } => {
            reseal_rows(
                conn,
                keys,
                crate::reseal::Stale::not_under(keys, keys.current_key())?,
                *batch,
            )
            .await?;
        }
        Write::PurgeExpired { before, batch } => {
            let before_ms = before.saturating_mul(1000);
            sqlx::query(
                "DELETE FROM bindings WHERE id IN (SELECT id FROM bindings WHERE ends_at < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(i64::from(*batch))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "DELETE FROM slots WHERE ctid IN (SELECT ctid FROM slots WHERE live_until < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(i64::from(*batch))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE ended_at < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(i64::from(*batch))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE created_at < $1 AND state <> 'pending' LIMIT $2)",
            )
            .bind(before_ms)
            .bind(i64::from(*batch))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE at < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(i64::from(*batch))
            .execute(&mut *conn)
            .await?;
        }
        Write::PurgeMessages {
            ends_before,
            parts_before,
        } => {
            // Unprepared, planned for the cut-off: a generic plan made while
            // the tables were small would scan them whole every purge.
            let ends = [
                "DELETE FROM message_submits WHERE message_id IN \
                 (SELECT id FROM messages WHERE ends_at < $1)",
                "DELETE FROM relays WHERE message_id IN \
                 (SELECT id FROM messages WHERE ends_at < $1)",
                "DELETE FROM messages WHERE ends_at < $1",
            ];
            for sql in ends {
                sqlx::query(sql)
                    .persistent(false)
                    .bind(ends_before)
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query("DELETE FROM message_parts WHERE received_at < $1")
                .persistent(false)
                .bind(parts_before)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

fn conflict(e: sqlx::Error) -> Error {
    use sqlx::error::ErrorKind;
    match &e {
        sqlx::Error::Database(db)
            if matches!(
                db.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::ExclusionViolation
                    | ErrorKind::CheckViolation
            ) =>
        {
            // The constraint's name says which invariant; the message may
            // quote key values (numbers), so it is not passed on.
            let what = db.constraint().unwrap_or("constraint").to_owned();
            if db.kind() == ErrorKind::ExclusionViolation {
                Error::Taken(what)
            } else {
                Error::Conflict(what)
            }
        }
        _ => Error::Database(e),
    }
}

// === the listener ===

async fn listen(session: &PgConnectOptions, channel: &str) -> Result<PgListener> {
    // A pool of one, only to hand the listener its connection.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(session.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

async fn listen_loop(
    mut listener: PgListener,
    session: PgConnectOptions,
    channel: Arc<String>,
    node: u64,
    changes: mpsc::UnboundedSender<Change>,
    health: Arc<Health>,
) {
    let own = format!("{node:016x}");
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                if let Some(change) = parse_notification(n.payload(), &own)
                    && changes.send(change).is_err()
                {
                    return;
                }
                continue;
            }
            Ok(None) => tracing::warn!("lost the database notification connection"),
            Err(e) => tracing::warn!(error = %e, "database notifications failed"),
        }
        let lost_at = unix_now();
        health.listener_up.store(false, Ordering::Relaxed);
        health.lost_at.store(lost_at, Ordering::Relaxed);
        if changes.send(Change::Interrupted).is_err() {
            return;
        }
        let mut delay = Duration::from_millis(100);
        listener = loop {
            tokio::time::sleep(delay).await;
            match listen(&session, &channel).await {
                Ok(l) => break l,
                Err(e) => {
                    tracing::debug!(error = %e, "reconnecting to the database");
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
            if changes.is_closed() {
                return;
            }
        };
        health.listener_up.store(true, Ordering::Relaxed);
        // The database is reachable again: the writer reconnects on its
        // next write (and reports if it cannot).
        health.writer_up.store(true, Ordering::Relaxed);
        tracing::info!("database notifications resumed; catching up");
        // Listening again before the catch-up reads: whatever commits from
        // now on arrives as a notification, the rest the catch-up finds.
        if changes
            .send(Change::Resync {
                since: lost_at - CATCH_UP_MARGIN_SECS,
            })
            .is_err()
        {
            return;
        }
    }
}

/// `<node> <kind> [ids...]`; our own notifications are skipped (memory
/// already has what we wrote).
fn parse_notification(payload: &str, own: &str) -> Option<Change> {
    let mut parts = payload.split(' ');
    let node = parts.next()?;
    if node == own {
        return None;
    }
    match parts.next()? {
        "t" => Some(Change::Tenants),
        "k" => Some(Change::Keys),
        "n" => Some(Change::Numbers),
        "w" => Some(Change::Webhooks),
        "s" => Some(Change::SmsSettings),
        "r" => Some(Change::CallRules),
        "p" => Some(Change::Prompts),
        "b" => Some(Change::Bindings {
            committed_at: parts.next()?.parse().ok()?,
            ids: parts
                .filter_map(|id| Uuid::try_parse(id).ok())
                .map(|u| BindingId(u.as_u128()))
                .collect(),
        }),
        _ => None,
    }
}

fn unix_now() -> i64 {
    unix_ms() / 1000
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// === reads ===

crate::reads::shared_reads!(
    store: PgStore,
    pool: pool,
    id: uuid,
    numbers_in_import_order: "seq",
    tenant_id: Uuid,
    reference: i32,
    calls_by_time: "",
    by_party: ["", "", "", ""],
);

#[async_trait::async_trait]
impl Store for PgStore {
    fn enqueue(&self, write: Write) -> WriteAck {
        let (tx, rx) = oneshot::channel();
        // Sealed here, on the caller's thread, not on the writer's.
        let sealed = presealed::preseal(&write, &self.keys);
        let _ = self.writes.send((write, sealed, tx));
        WriteAck(rx)
    }

    fn events_signal(&self) -> Arc<Notify> {
        self.events_signal.clone()
    }

    fn changes(&self) -> Option<mpsc::UnboundedReceiver<Change>> {
        self.changes.lock().take()
    }

    fn degraded(&self) -> Option<String> {
        let listener = self.health.listener_up.load(Ordering::Relaxed);
        let writer = self.health.writer_up.load(Ordering::Relaxed);
        match (listener, writer) {
            (true, true) => None,
            (false, _) => Some("database unreachable: routing from memory".to_owned()),
            (true, false) => Some("database writes failing".to_owned()),
        }
    }

    fn keys(&self) -> Arc<Keyring> {
        self.keys.clone()
    }

    fn node(&self) -> &str {
        &self.node
    }

    async fn open_calls(&self, node: &str) -> Result<Vec<CallRecord>> {
        self.read_open_calls(node).await
    }

    async fn open_call_nodes(&self) -> Result<Vec<String>> {
        self.read_open_call_nodes().await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        self.read_get_meta(key).await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.read_tenants().await
    }

    async fn audit(&self, tenant: TenantId, page: Page<i64>) -> Result<Vec<(i64, AuditEntry)>> {
        self.read_audit(tenant, page).await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read_api_keys().await
    }

    async fn api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKey>> {
        self.read_api_key(hash).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.read_user_by_email(email).await
    }

    async fn users(&self, tenant: Option<TenantId>) -> Result<Vec<User>> {
        self.read_users(tenant).await
    }

    async fn console_session(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<(ConsoleSession, User)>> {
        self.read_console_session(token_hash).await
    }

    async fn all_numbers(&self) -> Result<Vec<PoolNumber>> {
        self.read_all_numbers().await
    }

    async fn scan_bindings(
        &self,
        min_ends_at: UnixTime,
        each: &mut (dyn FnMut(Binding) + Send),
    ) -> Result<u64> {
        let sql = format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE ends_at >= $1 ORDER BY id");
        // One statement reads every live binding at start-up (10M: about
        // 20 s): it runs without the statement timeout, which is for the
        // service's own queries.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
        let mut n = 0;
        {
            let mut rows = sqlx::query(AssertSqlSafe(sql))
                .bind(min_ends_at)
                .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                each(binding(&row, &self.keys)?);
                n += 1;
            }
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn changed_bindings(&self, since: UnixTime) -> Result<Vec<Binding>> {
        let sql = format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE updated_at >= $1 ORDER BY updated_at, id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| binding(r, &self.keys)).collect()
    }

    async fn numbers(&self, tenant: TenantId, page: Page<Number>) -> Result<Vec<PoolNumber>> {
        self.read_numbers(tenant, page).await
    }

    async fn binding(&self, tenant: TenantId, id: BindingId) -> Result<Option<Binding>> {
        self.read_binding(tenant, id).await
    }

    async fn bindings_by_id(&self, ids: &[BindingId]) -> Result<Vec<Binding>> {
        let ids: Vec<Uuid> = ids.iter().map(|i| uuid(i.0)).collect();
        let sql = format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE id = ANY($1)");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| binding(r, &self.keys)).collect()
    }

    async fn bindings_on(&self, x: Number, ends_after: UnixTime) -> Result<Vec<Binding>> {
        let sql = format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE x = $1 AND live_until > $2 AND ends_at > $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(x.to_string())
            .bind(ends_after)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| binding(r, &self.keys)).collect()
    }

    async fn bindings(
        &self,
        tenant: TenantId,
        filter: &BindingFilter,
        page: Page<BindingId>,
    ) -> Result<Vec<Binding>> {
        self.read_bindings(tenant, filter, page).await
    }

    async fn idempotency(&self, tenant: TenantId, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.read_idempotency(tenant, key).await
    }

    async fn calls(
        &self,
        tenant: TenantId,
        filter: &CallFilter,
        page: Page<CallId>,
    ) -> Result<Vec<CallRecord>> {
        self.read_calls(tenant, filter, page).await
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.read_webhooks().await
    }

    async fn event(&self, tenant: TenantId, id: EventId) -> Result<Option<StoredEvent>> {
        self.read_event(tenant, id).await
    }

    async fn events(
        &self,
        tenant: TenantId,
        types: &[EventType],
        page: Page<i64>,
    ) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND seq > $2 \
             AND (cardinality($3::text[]) = 0 OR type = ANY($3)) ORDER BY seq LIMIT $4"
        );
        let types: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(uuid(tenant.0))
            .bind(page.after.unwrap_or(0))
            .bind(types)
            .bind(i64::from(page.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| stored_event(r, &self.keys)).collect()
    }

    async fn claim_due_events(
        &self,
        tenant: TenantId,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        // SKIP LOCKED: two nodes claiming at once take different events;
        // the lease (next_attempt_at) keeps a claimed event from being
        // offered again while its attempt runs, and brings it back if the
        // claiming node dies.
        let sql = format!(
            "WITH claimed AS (SELECT e.seq, e.next_attempt_at AS due FROM events AS e \
                 WHERE e.tenant_id = $1 AND e.state = 'pending' AND e.next_attempt_at <= $2 \
                 AND NOT EXISTS (SELECT 1 FROM events AS p \
                     WHERE p.subject = e.subject AND p.state = 'pending' AND p.seq < e.seq) \
                 ORDER BY e.next_attempt_at, e.seq LIMIT $4 FOR UPDATE SKIP LOCKED), \
             leased AS (UPDATE events SET next_attempt_at = GREATEST(next_attempt_at, $3) \
                 FROM claimed WHERE events.seq = claimed.seq \
                 RETURNING claimed.due, {LEASED_COLUMNS}) \
             SELECT * FROM leased ORDER BY due, seq"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(uuid(tenant.0))
            .bind(now)
            .bind(lease_until)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| stored_event(r, &self.keys)).collect()
    }

    async fn pending_events(&self) -> Result<u64> {
        self.read_pending_events().await
    }

    async fn recent_events(&self, tenant: TenantId, page: Page<i64>) -> Result<Vec<StoredEvent>> {
        self.read_recent_events(tenant, page).await
    }

    async fn activity(&self, tenant: TenantId, since: UnixMillis) -> Result<crate::Activity> {
        self.read_activity(tenant, since).await
    }

    async fn message(&self, tenant: TenantId, id: MessageId) -> Result<Option<Message>> {
        self.read_message(tenant, id).await
    }

    async fn messages(
        &self,
        tenant: TenantId,
        filter: &MessageFilter,
        page: Page<MessageId>,
    ) -> Result<Vec<Message>> {
        self.read_messages(tenant, filter, page).await
    }

    async fn message_by_submit(&self, link: &str, smsc_id: &str) -> Result<Option<Message>> {
        self.read_message_by_submit(link, smsc_id).await
    }

    async fn unmatched_receipts(&self, limit: u32) -> Result<Vec<Receipt>> {
        self.read_unmatched_receipts(limit).await
    }

    async fn parts(&self, key: &PartsKey) -> Result<Vec<Part>> {
        self.read_parts(key).await
    }

    async fn stale_parts(&self, before: UnixMillis) -> Result<Vec<PartsKey>> {
        self.read_stale_parts(before).await
    }

    async fn claim_due_relays(
        &self,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
    ) -> Result<Vec<Message>> {
        // SKIP LOCKED and the lease: as `claim_due_events`.
        let sql = format!(
            "WITH claimed AS (SELECT message_id FROM relays WHERE due <= $1 \
                 ORDER BY due LIMIT $3 FOR UPDATE SKIP LOCKED), \
             leased AS (UPDATE relays SET due = GREATEST(due, $2) FROM claimed \
                 WHERE relays.message_id = claimed.message_id RETURNING relays.message_id) \
             SELECT {MESSAGE_COLUMNS} FROM messages JOIN leased ON messages.id = leased.message_id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(lease_until)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| message(r, &self.keys)).collect()
    }

    async fn sms_settings(&self) -> Result<Vec<StoredSmsSettings>> {
        self.read_sms_settings().await
    }

    async fn call_rules(&self) -> Result<Vec<crate::StoredCallRules>> {
        self.read_call_rules().await
    }

    async fn tenant_limits(&self) -> Result<Vec<(TenantId, u32)>> {
        self.read_tenant_limits().await
    }

    async fn call_loads(
        &self,
        except: &str,
        since: UnixMillis,
    ) -> Result<Vec<maskline_core::TenantLoad>> {
        self.read_call_loads(except, since).await
    }

    async fn prompts(&self) -> Result<Vec<StoredPrompt>> {
        self.read_prompts().await
    }

    async fn last_call_binding(
        &self,
        x: Number,
        caller: Number,
        since: UnixMillis,
    ) -> Result<Option<BindingId>> {
        let [token, previous] = self.keys.lookup_tokens(&caller.to_string());
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT binding_id FROM calls WHERE x = $1 AND caller IN ($2, $3) \
             AND invited_at >= $4 AND binding_id IS NOT NULL AND direction IS NOT NULL \
             ORDER BY invited_at DESC LIMIT 1",
        )
        .bind(x.to_string())
        .bind(token)
        .bind(previous)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.map(|u| BindingId(u.as_u128())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_skip_our_own_and_parse_ids() {
        let own = format!("{:016x}", 7u64);
        assert_eq!(parse_notification(&format!("{own} t"), &own), None);
        let other = format!("{:016x}", 8u64);
        assert_eq!(
            parse_notification(&format!("{other} n"), &own),
            Some(Change::Numbers)
        );
        let id = Uuid::from_u128(42);
        assert_eq!(
            parse_notification(&format!("{other} b 17 {}", id.simple()), &own),
            Some(Change::Bindings {
                ids: vec![BindingId(42)],
                committed_at: 17
            })
        );
        assert_eq!(
            parse_notification(&format!("{other} p"), &own),
            Some(Change::Prompts)
        );
        assert_eq!(parse_notification("garbage", &own), None);
    }

    /// What a node's read sessions run with, as the server sees it.
    #[tokio::test(flavor = "multi_thread")]
    async fn read_sessions_have_a_statement_timeout_and_plan_for_their_arguments() {
        let schema = crate::testing::Schema::create().await;
        let mut conn = PgConnection::connect_with(&schema.options(100).read_session())
            .await
            .unwrap();
        let setting = |name: &'static str| {
            sqlx::query_scalar::<_, String>("SELECT current_setting($1)").bind(name)
        };
        let plans = setting("plan_cache_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(plans, "force_custom_plan");
        let timeout = setting("statement_timeout")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(timeout, "10s");
        let path = setting("search_path").fetch_one(&mut conn).await.unwrap();
        assert!(path.starts_with(&schema.name), "{path}");
    }
}
