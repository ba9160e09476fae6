//! The embedded back end: SQLite in WAL mode with `synchronous=FULL`, one
//! writer connection that group-commits queued writes, and a small pool of
//! read connections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::TryStreamExt;
use maskline_core::{
    Area, Binding, BindingId, CallId, CallRecord, Direction, EndReason, EventId, EventType, Number,
    Refusal, TenantId, UnixMillis, UnixTime,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection};
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::presealed::{self, Parties, Queued, SealedBinding};
use crate::rows::{self, MESSAGE_COLUMNS, PART_COLUMNS, binding, message, stored_event};
use crate::seal::{Column, Keyring, MasterKey, MetaRows};
use crate::{ApiKey, AuditEntry, ConsoleSession, User};
use crate::{
    BindingFilter, CallFilter, DeliveryState, Error, IdempotencyRecord, MessageFilter, NewEvent,
    NextStep, Page, Part, PartsKey, PoolNumber, Receipt, Result, Store, StoredEvent, StoredPrompt,
    StoredSmsSettings, Tenant, Webhook, Write, WriteAck,
};
use maskline_core::sms::Message;
use maskline_core::{MessageId, MessageStatus};

/// Most writes committed in one transaction. Large enough to amortise the
/// fsync, small enough that the first request in a batch does not wait long.
const MAX_BATCH: usize = 256;

const BINDING_COLUMNS: &str = "id, tenant_id, mode, x, extension, a, b, area, external_ref, \
     a_to_b, b_to_a, max_call_seconds, record, sms, created_at, updated_at, expires_at, \
     ended_at, end_reason, call_prompts, warn_before_end_seconds, a_sealed, b_sealed";

/// The `calls` columns, in the order `bind_call` binds them and
/// `call_record` reads them; one list for the INSERT and the SELECT.
macro_rules! call_columns {
    () => {
        "id, tenant_id, binding_id, direction, x, caller, callee, invited_at, ringing_at, \
         answered_at, ended_at, final_status, released_by, release_reason, refusal, \
         caller_sealed, callee_sealed"
    };
}
const CALL_COLUMNS: &str = call_columns!();

const EVENT_COLUMNS: &str = "seq, id, tenant_id, type, subject, created_at, body, state, \
     attempts, next_attempt_at, retry_from, last_status, last_error, delivered_at";

pub struct SqliteStore {
    writes: mpsc::UnboundedSender<Queued>,
    reads: SqlitePool,
    events_signal: Arc<Notify>,
    keys: Arc<Keyring>,
}

struct Op {
    write: Write,
    sealed: Option<SealedBinding>,
    ack: oneshot::Sender<Result<()>>,
}

impl SqliteStore {
    /// [`SqliteStore::open_sealed`] with the master key in `dir/master.key`
    /// (created when missing).
    pub async fn open(dir: &Path) -> Result<SqliteStore> {
        let master = MasterKey::load_or_create(&dir.join("master.key"))?;
        SqliteStore::open_sealed(dir, master).await
    }

    /// Opens (creating if needed) `dir/maskline.db`, owner-only, applies
    /// migrations, reads (or on a new database creates) its data keys under
    /// `master`, seals what an older build left in clear, and starts the
    /// writer task.
    pub async fn open_sealed(dir: &Path, master: MasterKey) -> Result<SqliteStore> {
        let file = dir.join("maskline.db");
        private_file(&file)?;
        let options = SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Deleted rows (purged, erased) are overwritten, not left in
            // free pages for a copy of the file to give back.
            .pragma("secure_delete", "on")
            // A multi-row INSERT inside a group commit keeps a statement
            // journal of the pages it changes; past 64 KiB SQLite spills it to
            // an unlinked file in /var/tmp: pages of the database outside the
            // owner-only data directory, and writes a group commit waited on.
            .pragma("temp_store", "memory")
            .busy_timeout(Duration::from_secs(10));
        // Seven statement kinds times MAX_INSERT_ROWS shapes (multi-row
        // inserts and the IN lists of texts handed over), plus the others.
        let writer_options = options
            .clone()
            .statement_cache_capacity(7 * MAX_INSERT_ROWS + 48);
        let mut writer = SqliteConnection::connect_with(&writer_options).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut writer)
            .await?;
        let keys = Arc::new(load_keys(&mut writer, master).await?);
        seal_clear_rows(&mut writer, &keys).await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let events_signal = Arc::new(Notify::new());
        let signal = events_signal.clone();
        // The writer gets a thread and a runtime of its own: on the shared
        // runtime every hand-off to and from SQLite's thread waited behind
        // request handling, and that wait, not SQLite, set the commit rate.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        std::thread::Builder::new()
            .name("maskline-store-writer".into())
            .spawn({
                let keys = keys.clone();
                move || runtime.block_on(write_loop(writer, keys, rx, signal))
            })
            .map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
        tokio::spawn(crate::reseal::keep_keys(
            Arc::downgrade(&keys),
            KeysTask {
                reads: reads.clone(),
                writes: tx.downgrade(),
            },
        ));
        Ok(SqliteStore {
            writes: tx,
            reads,
            events_signal,
            keys,
        })
    }
}

impl SqliteStore {
    /// `maskline keys rotate` on the embedded store in `dir`: adds a data
    /// key that seals from [`crate::seal::ROTATION_DELAY_SECS`] on; a
    /// running server reads it and reseals in the background. Returns the
    /// new key's id and when it starts sealing.
    pub async fn rotate_keys(dir: &Path, master: &MasterKey, now: i64) -> Result<(u32, i64)> {
        let file = dir.join("maskline.db");
        if !file.exists() {
            return Err(Error::Keys(format!("no database at {}", file.display())));
        }
        let options = SqliteConnectOptions::new()
            .filename(&file)
            .busy_timeout(Duration::from_secs(10));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        rotate_in(&mut conn, master, now).await
    }
}

/// The embedded store's node: it is the only one.
const NODE: &str = "local";

/// Takes the calls whose CDRs are written out of the open-call journal.
async fn close_journal(conn: &mut SqliteConnection, calls: &[&CallRecord]) -> Result<()> {
    for chunk in calls.chunks(MAX_INSERT_ROWS) {
        let list = vec!["?"; chunk.len()].join(", ");
        let sql = format!("DELETE FROM open_calls WHERE id IN ({list})");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for c in chunk {
            q = q.bind(uuid_bytes(c.id.0));
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Creates `file` empty and owner-only if it does not exist (SQLite gives
/// its `-wal` and `-shm` files the database file's mode), and takes group
/// and other access away from one that does.
fn private_file(file: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e| Error::Database(sqlx::Error::Io(e));
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{suffix}", file.display()));
        if f.exists() {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    Ok(())
}

crate::reseal::sealing_back_end! {
    conn: SqliteConnection,
    pool: SqlitePool,
    query: SqliteQuery,
    handle: "rowid" as i64,
    cast: "",
    placeholder: |_| "?".to_owned(),
    insert_meta: "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
    add_key: "INSERT INTO meta (key, value) VALUES (?, ?)",
    set_current: "UPDATE meta SET value = ? WHERE key = 'seal.current' AND value = ?",
    // No slots here: the index is the allocator's last word.
    retoken: ("SELECT 1", "SELECT 1"),
}

// === the writer ===

async fn write_loop(
    mut conn: SqliteConnection,
    keys: Arc<Keyring>,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    events_signal: Arc<Notify>,
) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        let batch: Vec<Op> = queued
            .drain(..)
            .map(|(write, sealed, ack)| Op { write, sealed, ack })
            .collect();
        let wakes = batch.iter().any(|op| op.write.wakes_sender());
        let began = std::time::Instant::now();
        let applied = apply_all(&mut conn, &keys, &batch).await;
        crate::observe_commit(batch.len(), began);
        match applied {
            Ok(()) => {
                if wakes {
                    events_signal.notify_one();
                }
                for op in batch {
                    let _ = op.ack.send(Ok(()));
                }
            }
            Err(batch_error) => {
                // One write in the batch failed (a constraint, usually): the
                // batch rolled back, so give each write its own transaction
                // and its own answer.
                tracing::debug!(error = %batch_error, "group commit failed, retrying writes one by one");
                for op in batch {
                    let result = apply_all(&mut conn, &keys, std::slice::from_ref(&op)).await;
                    match &result {
                        Ok(()) if op.write.wakes_sender() => events_signal.notify_one(),
                        Ok(()) => {}
                        Err(e) => tracing::warn!(error = %e, "write refused by the store"),
                    }
                    let _ = op.ack.send(result);
                }
            }
        }
    }
}

async fn apply_all(conn: &mut SqliteConnection, keys: &Keyring, ops: &[Op]) -> Result<()> {
    let mut tx = conn.begin().await?;
    let (audits, ops) = crate::audits_apart(ops, |op| &op.write);
    let mut rest = &ops[..];
    while let Some(first) = rest.first() {
        // Runs of new bindings and of CDRs (the bulk of the traffic) go in
        // as multi-row INSERTs: each statement is a round trip to SQLite's
        // thread, and that hand-off, not SQLite, bounds the write rate.
        let run = |same: fn(&Write) -> bool| rest.iter().take_while(|op| same(&op.write)).count();
        let n = match &first.write {
            Write::CreateBinding { .. } => {
                let n = run(|w| matches!(w, Write::CreateBinding { .. }));
                let writes: Vec<_> = rest[..n]
                    .iter()
                    .map(|op| (&op.write, op.sealed.as_ref()))
                    .collect();
                insert_bindings(&mut tx, keys, &writes).await?;
                n
            }
            Write::RecordCall { .. } => {
                let n = run(|w| matches!(w, Write::RecordCall { .. }));
                let mut calls = Vec::with_capacity(n);
                let mut events = Vec::new();
                for op in &rest[..n] {
                    if let Write::RecordCall { record, events: e } = &op.write {
                        calls.push(record);
                        events.extend(e);
                    }
                }
                insert_rows(&mut tx, CALLS_INSERT, CALLS_ROW, &calls, |q, c| {
                    bind_call(q, c, keys)
                })
                .await?;
                close_journal(&mut tx, &calls).await?;
                insert_events(&mut tx, keys, &events).await?;
                n
            }
            Write::RecordMessage { .. } => {
                let n = run(|w| matches!(w, Write::RecordMessage { .. }));
                let writes: Vec<&Write> = rest[..n].iter().map(|op| &op.write).collect();
                insert_messages(&mut tx, keys, &writes).await?;
                n
            }
            Write::MessageSubmitted { .. } => {
                let n = run(|w| matches!(w, Write::MessageSubmitted { .. }));
                let writes: Vec<&Write> = rest[..n].iter().map(|op| &op.write).collect();
                mark_submitted(&mut tx, &writes).await?;
                n
            }
            Write::RecordEvents(_) => {
                let n = run(|w| matches!(w, Write::RecordEvents(_)));
                let events: Vec<&NewEvent> = rest[..n]
                    .iter()
                    .flat_map(|op| match &op.write {
                        Write::RecordEvents(e) => e.as_slice(),
                        _ => &[],
                    })
                    .collect();
                insert_events(&mut tx, keys, &events).await?;
                n
            }
            other => {
                apply(&mut tx, keys, other).await?;
                1
            }
        };
        rest = &rest[n..];
    }
    insert_rows(&mut tx, AUDIT_INSERT, AUDIT_ROW, &audits, bind_audit).await?;
    tx.commit().await?;
    Ok(())
}

/// Most rows per multi-row INSERT. A run is cut into statements of this
/// many rows and one for the rest, so a batch usually costs one statement per
/// table; the writer's statement cache holds every shape (see `open`).
const MAX_INSERT_ROWS: usize = 64;

const BINDINGS_INSERT: &str = "INSERT INTO bindings (id, tenant_id, mode, x, extension, a, b, \
     area, external_ref, a_to_b, b_to_a, max_call_seconds, record, sms, created_at, updated_at, \
     expires_at, ended_at, end_reason, ends_at, call_prompts, warn_before_end_seconds, a_sealed, \
     b_sealed) VALUES ";
const BINDINGS_ROW: &str =
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const IDEMPOTENCY_INSERT: &str = "INSERT INTO idempotency (tenant_id, key, request_hash, status, body, created_at, \
     binding_id) VALUES ";
const IDEMPOTENCY_ROW: &str = "(?, ?, ?, ?, ?, ?, ?)";
const CALLS_INSERT: &str = concat!("INSERT INTO calls (", call_columns!(), ") VALUES ");
const CALLS_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const EVENTS_INSERT: &str = "INSERT INTO events (id, tenant_id, type, subject, created_at, body, \
     state, next_attempt_at, retry_from) VALUES ";
const EVENTS_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";
const AUDIT_INSERT: &str =
    "INSERT INTO audit (tenant_id, key_id, action, object, status, at, source, user_id) VALUES ";
const AUDIT_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?)";
const MESSAGES_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

fn multi_row(head: &str, row: &str, rows: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * (row.len() + 1));
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(row);
    }
    sql
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

fn bind_binding<'q>(q: SqliteQuery<'q>, (b, sealed): &(&Binding, &Parties)) -> SqliteQuery<'q> {
    q.bind(uuid_bytes(b.id.0))
        .bind(uuid_bytes(b.tenant.0))
        .bind(b.mode.as_str())
        .bind(b.x.to_string())
        .bind(b.extension.map(|e| e.to_string()))
        .bind(sealed.a_token.clone())
        .bind(sealed.b_token.clone())
        .bind(b.area.as_ref().map(|a| a.as_str().to_owned()))
        .bind(b.external_ref.clone())
        .bind(b.controls.a_to_b)
        .bind(b.controls.b_to_a)
        .bind(b.controls.max_call_seconds.map(i64::from))
        .bind(b.controls.record)
        .bind(b.controls.sms)
        .bind(b.created_at)
        .bind(b.updated_at)
        .bind(b.expires_at)
        .bind(b.ended_at)
        .bind(b.end_reason.map(EndReason::as_str))
        .bind(b.ends_at())
        .bind(rows::call_prompts(&b.controls))
        .bind(b.controls.warn_before_end_seconds.map(i64::from))
        .bind(sealed.a_sealed.clone())
        .bind(sealed.b_sealed.clone())
}

fn bind_audit<'q>(q: SqliteQuery<'q>, e: &&AuditEntry) -> SqliteQuery<'q> {
    q.bind(uuid_bytes(e.tenant.0))
        .bind(e.key.map(|k| uuid_bytes(k.0)))
        .bind(e.action.clone())
        .bind(e.object.clone())
        .bind(i32::from(e.status))
        .bind(e.at)
        .bind(e.source.clone())
        .bind(e.user.map(|u| uuid_bytes(u.0)))
}

/// A stored response, its sealed body, and the binding it created.
fn bind_idempotency<'q>(
    q: SqliteQuery<'q>,
    (rec, sealed_body, binding): &(&IdempotencyRecord, &str, BindingId),
) -> SqliteQuery<'q> {
    q.bind(uuid_bytes(rec.tenant.0))
        .bind(rec.key.clone())
        .bind(rec.request_hash.to_vec())
        .bind(i64::from(rec.status))
        .bind(sealed_body.to_string())
        .bind(rec.created_at)
        .bind(uuid_bytes(binding.0))
}

fn bind_call<'q>(q: SqliteQuery<'q>, c: &&CallRecord, keys: &Keyring) -> SqliteQuery<'q> {
    q.bind(uuid_bytes(c.id.0))
        .bind(c.tenant.map(|t| uuid_bytes(t.0)))
        .bind(c.binding.map(|b| uuid_bytes(b.0)))
        .bind(c.direction.map(Direction::as_str))
        .bind(c.x.map(|n| n.to_string()))
        .bind(c.caller.map(|n| keys.blind(&n.to_string())))
        .bind(c.callee.map(|n| keys.blind(&n.to_string())))
        .bind(c.invited_at)
        .bind(c.ringing_at)
        .bind(c.answered_at)
        .bind(c.ended_at)
        .bind(i64::from(c.final_status))
        .bind(c.released_by.as_str())
        .bind(c.release_reason.as_str())
        .bind(c.refusal.map(Refusal::as_str))
        .bind(
            c.caller
                .map(|n| keys.seal_str(Column::CallCaller, &n.to_string())),
        )
        .bind(
            c.callee
                .map(|n| keys.seal_str(Column::CallCallee, &n.to_string())),
        )
}

fn bind_event<'q>(q: SqliteQuery<'q>, (e, sealed_body): &(&NewEvent, String)) -> SqliteQuery<'q> {
    let state = if e.deliver {
        DeliveryState::Pending
    } else {
        DeliveryState::None
    };
    q.bind(uuid_bytes(e.id.0))
        .bind(uuid_bytes(e.tenant.0))
        .bind(e.kind.as_str())
        .bind(uuid_bytes(e.subject))
        .bind(e.created_at)
        .bind(sealed_body.clone())
        .bind(state.as_str())
        .bind(e.deliver.then_some(e.created_at))
        .bind(e.created_at)
}

fn bind_message<'q>(q: SqliteQuery<'q>, m: &&Message, keys: &Keyring) -> SqliteQuery<'q> {
    let from = m.from.to_string();
    q.bind(uuid_bytes(m.id.0))
        .bind(m.tenant.map(|t| uuid_bytes(t.0)))
        .bind(m.binding.map(|b| uuid_bytes(b.0)))
        .bind(m.direction.map(Direction::as_str))
        .bind(m.x.to_string())
        .bind(keys.blind(&from))
        .bind(m.to.map(|n| keys.blind(&n.to_string())))
        .bind(keys.seal_str(Column::MessageBody, &m.text))
        .bind(m.pickup_code.clone())
        .bind(m.status.as_str())
        .bind(m.reason.map(|r| r.as_str()))
        .bind(i64::from(m.parts))
        .bind(m.ingress.clone())
        .bind(m.created_at)
        .bind(m.updated_at)
        .bind(m.ends_at)
        .bind(keys.seal_str(Column::MessageSender, &from))
        .bind(m.to.map(|n| keys.seal_str(Column::MessageRecipient, &n.to_string())))
}

/// Inserts a run of `RecordMessage` writes: their texts, their events, and
/// drops the parts they were assembled from.
async fn insert_messages(
    conn: &mut SqliteConnection,
    keys: &Keyring,
    writes: &[&Write],
) -> Result<()> {
    let mut messages = Vec::with_capacity(writes.len());
    let mut relays = Vec::new();
    let mut events = Vec::new();
    for write in writes {
        if let Write::RecordMessage {
            message,
            relay_due,
            assembled_from,
            events: e,
        } = write
        {
            messages.push(message);
            if let Some(due) = relay_due {
                relays.push((uuid_bytes(message.id.0), *due));
            }
            events.extend(e);
            if let Some(key) = assembled_from {
                let [token, previous] = keys.lookup_tokens(&key.from.to_string());
                let dropped = sqlx::query(
                    "DELETE FROM message_parts WHERE x = ? AND sender IN (?, ?) AND reference = ?",
                )
                .bind(key.x.to_string())
                .bind(token)
                .bind(previous)
                .bind(i64::from(key.reference))
                .execute(&mut *conn)
                .await?;
                if dropped.rows_affected() == 0 {
                    return Err(already_assembled());
                }
            }
        }
    }
    let head = format!("INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ");
    insert_rows(conn, &head, MESSAGES_ROW, &messages, |q, m| {
        bind_message(q, m, keys)
    })
    .await?;
    insert_rows(
        conn,
        "INSERT INTO relays (message_id, due) VALUES ",
        "(?, ?)",
        &relays,
        |q, (id, due)| q.bind(id.clone()).bind(*due),
    )
    .await?;
    insert_events(conn, keys, &events).await
}

/// A run of `MessageSubmitted` writes in a few statements: the texts are
/// no longer due, their part counts are set (one UPDATE per part count and
/// 64 texts; `updated_at` is the run's latest time), their carrier ids go in
/// as multi-row upserts.
async fn mark_submitted(conn: &mut SqliteConnection, writes: &[&Write]) -> Result<()> {
    let mut by_parts: std::collections::BTreeMap<u8, Vec<Vec<u8>>> = Default::default();
    let mut rows: Vec<(&str, &str, Vec<u8>, i64)> = Vec::new();
    let mut latest = 0;
    for write in writes {
        if let Write::MessageSubmitted {
            message,
            parts,
            submits,
            at,
        } = write
        {
            latest = latest.max(*at);
            by_parts
                .entry(*parts)
                .or_default()
                .push(uuid_bytes(message.0));
            rows.extend(submits.iter().map(|s| {
                (
                    s.link.as_str(),
                    s.smsc_id.as_str(),
                    uuid_bytes(message.0),
                    i64::from(s.part),
                )
            }));
        }
    }
    for (parts, ids) in by_parts {
        for chunk in ids.chunks(MAX_INSERT_ROWS) {
            let list = vec!["?"; chunk.len()].join(", ");
            let sql = format!("UPDATE messages SET updated_at = ?, parts = ? WHERE id IN ({list})");
            let mut q = sqlx::query(AssertSqlSafe(sql))
                .bind(latest)
                .bind(i64::from(parts));
            for id in chunk {
                q = q.bind(id.as_slice());
            }
            q.execute(&mut *conn).await?;
            let sql = format!("DELETE FROM relays WHERE message_id IN ({list})");
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.as_slice());
            }
            q.execute(&mut *conn).await?;
        }
    }
    for chunk in rows.chunks(MAX_INSERT_ROWS) {
        let mut sql = multi_row(
            "INSERT INTO message_submits (link, smsc_id, message_id, part, state) VALUES ",
            "(?, ?, ?, ?, 'submitted')",
            chunk.len(),
        );
        sql.push_str(
            " ON CONFLICT (link, smsc_id) DO UPDATE SET message_id = excluded.message_id, \
             part = excluded.part, state = 'submitted'",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (link, smsc_id, message, part) in chunk {
            q = q
                .bind(*link)
                .bind(*smsc_id)
                .bind(message.as_slice())
                .bind(*part);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn insert_events(
    conn: &mut SqliteConnection,
    keys: &Keyring,
    events: &[&NewEvent],
) -> Result<()> {
    let sealed: Vec<_> = events
        .iter()
        .map(|e| (*e, keys.seal_str(Column::EventBody, &e.body)))
        .collect();
    insert_sealed_events(conn, &sealed).await
}

/// Inserts events whose bodies are sealed already.
async fn insert_sealed_events(
    conn: &mut SqliteConnection,
    events: &[(&NewEvent, String)],
) -> Result<()> {
    insert_rows(conn, EVENTS_INSERT, EVENTS_ROW, events, bind_event).await
}

/// Inserts `rows` with multi-row INSERTs of at most [`MAX_INSERT_ROWS`] rows.
async fn insert_rows<T>(
    conn: &mut SqliteConnection,
    head: &str,
    row: &str,
    rows: &[T],
    bind: impl for<'q> Fn(SqliteQuery<'q>, &T) -> SqliteQuery<'q>,
) -> Result<()> {
    for chunk in rows.chunks(MAX_INSERT_ROWS) {
        let mut q = sqlx::query(AssertSqlSafe(multi_row(head, row, chunk.len())));
        for item in chunk {
            q = bind(q, item);
        }
        q.execute(&mut *conn).await.map_err(conflict)?;
    }
    Ok(())
}

/// Inserts a run of `CreateBinding` writes, bindings and idempotency records,
/// at most [`MAX_INSERT_ROWS`] rows a statement.
async fn insert_bindings(
    conn: &mut SqliteConnection,
    keys: &Keyring,
    writes: &[(&Write, Option<&SealedBinding>)],
) -> Result<()> {
    // Sealed here only when `enqueue` did not (a write applied alone).
    let here: Vec<Option<SealedBinding>> = writes
        .iter()
        .map(|(w, sealed)| {
            sealed
                .is_none()
                .then(|| presealed::preseal(w, keys))
                .flatten()
        })
        .collect();
    let mut bindings = Vec::with_capacity(writes.len());
    let mut records = Vec::new();
    let mut events = Vec::new();
    for ((write, sealed), here) in writes.iter().zip(&here) {
        let (
            Write::CreateBinding {
                binding,
                idempotency,
                events: e,
            },
            Some(sealed),
        ) = (write, sealed.or(here.as_ref()))
        else {
            continue;
        };
        bindings.push((binding, &sealed.parties));
        if let (Some(r), Some(body)) = (idempotency, &sealed.idempotency_body) {
            records.push((r, body.as_str(), binding.id));
        }
        events.extend(e.iter().zip(sealed.event_bodies.iter().cloned()));
    }
    insert_rows(conn, BINDINGS_INSERT, BINDINGS_ROW, &bindings, bind_binding).await?;
    insert_rows(
        conn,
        IDEMPOTENCY_INSERT,
        IDEMPOTENCY_ROW,
        &records,
        bind_idempotency,
    )
    .await?;
    insert_sealed_events(conn, &events).await
}

async fn insert_key(conn: &mut SqliteConnection, key: &ApiKey) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, prefix, hash, created_at, revoked_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(uuid_bytes(key.id.0))
    .bind(uuid_bytes(key.tenant.0))
    .bind(&key.prefix)
    .bind(&key.hash[..])
    .bind(key.created_at)
    .bind(key.revoked_at)
    .execute(&mut *conn)
    .await
    .map_err(conflict)?;
    Ok(())
}

async fn apply(conn: &mut SqliteConnection, keys: &Keyring, write: &Write) -> Result<()> {
    match write {
        Write::PutMeta { key, value } => {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES (?, ?) \
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
                "INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(uuid_bytes(t.id.0))
            .bind(&t.name)
            .bind(&t.api_key_hash[..])
            .bind(t.created_at)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
            insert_key(conn, key).await?;
        }
        Write::Audit(e) => {
            insert_rows(conn, AUDIT_INSERT, AUDIT_ROW, &[e], bind_audit).await?;
        }
        Write::CreateKey(key) => insert_key(conn, key).await?,
        Write::CreateUser(u) => {
            sqlx::query(
                "INSERT INTO users (id, email, password_hash, role, tenant_id, created_at, \
                 failed_signins, locked_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(uuid_bytes(u.id.0))
            .bind(&u.email)
            .bind(&u.password_hash)
            .bind(u.role.as_str())
            .bind(u.tenant.map(|t| uuid_bytes(t.0)))
            .bind(u.created_at)
            .bind(i64::from(u.failed_signins))
            .bind(u.locked_until)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
        }
        Write::OpenSession(session) => {
            sqlx::query("DELETE FROM console_sessions WHERE user_id = ? AND expires_at <= ?")
                .bind(uuid_bytes(session.user.0))
                .bind(session.created_at)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO console_sessions (token_hash, user_id, created_at, expires_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(&session.token_hash[..])
            .bind(uuid_bytes(session.user.0))
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&mut *conn)
            .await?;
        }
        Write::DeleteUser { user, tenant } => {
            let gone = match tenant {
                Some(t) => {
                    sqlx::query("DELETE FROM users WHERE id = ? AND tenant_id = ?")
                        .bind(uuid_bytes(user.0))
                        .bind(uuid_bytes(t.0))
                        .execute(&mut *conn)
                        .await?
                }
                None => {
                    sqlx::query("DELETE FROM users WHERE id = ?")
                        .bind(uuid_bytes(user.0))
                        .execute(&mut *conn)
                        .await?
                }
            };
            if gone.rows_affected() != 1 {
                return Err(Error::Conflict(format!("user {user} does not exist")));
            }
            // Its sessions go with it (the schema cascades too).
            sqlx::query("DELETE FROM console_sessions WHERE user_id = ?")
                .bind(uuid_bytes(user.0))
                .execute(&mut *conn)
                .await?;
        }
        Write::CloseSession { token_hash } => {
            sqlx::query("DELETE FROM console_sessions WHERE token_hash = ?")
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
                 locked_until = CASE WHEN failed_signins + 1 >= ?1 THEN ?2 ELSE locked_until END, \
                 failed_signins = CASE WHEN failed_signins + 1 >= ?1 THEN 0 \
                 ELSE failed_signins + 1 END \
                 WHERE id = ?3",
            )
            .bind(i64::from(*max))
            .bind(at + lockout_secs)
            .bind(uuid_bytes(user.0))
            .execute(&mut *conn)
            .await?;
        }
        Write::SignInSucceeded { user, at } => {
            sqlx::query(
                "UPDATE users SET failed_signins = 0 \
                 WHERE id = ? AND (locked_until IS NULL OR locked_until <= ?)",
            )
            .bind(uuid_bytes(user.0))
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        Write::RevokeKey { tenant, id, at } => {
            sqlx::query(
                "UPDATE api_keys SET revoked_at = ? \
                 WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL",
            )
            .bind(at)
            .bind(uuid_bytes(id.0))
            .bind(uuid_bytes(tenant.0))
            .execute(&mut *conn)
            .await?;
        }
        Write::ImportNumbers(numbers) => {
            for n in numbers {
                let inserted = sqlx::query(
                    "INSERT INTO numbers (number, tenant_id, area, created_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (number) DO NOTHING",
                )
                .bind(n.number.to_string())
                .bind(uuid_bytes(n.tenant.0))
                .bind(n.area.as_ref().map(Area::as_str))
                .bind(n.created_at)
                .execute(&mut *conn)
                .await
                .map_err(conflict)?;
                if inserted.rows_affected() == 1 {
                    continue;
                }
                // Already there: fine if it is this tenant's, else it is
                // someone else's number and the whole import rolls back.
                let owner: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT tenant_id FROM numbers WHERE number = ?")
                        .bind(n.number.to_string())
                        .fetch_optional(&mut *conn)
                        .await?;
                if owner.as_deref() != Some(&uuid_bytes(n.tenant.0)[..]) {
                    return Err(Error::Conflict(format!(
                        "number {} belongs to another pool",
                        n.number.masked()
                    )));
                }
            }
        }
        Write::RetireNumber { tenant, number } => {
            sqlx::query("DELETE FROM numbers WHERE number = ? AND tenant_id = ?")
                .bind(number.to_string())
                .bind(uuid_bytes(tenant.0))
                .execute(&mut *conn)
                .await?;
        }
        Write::CreateBinding { .. } => insert_bindings(conn, keys, &[(write, None)]).await?,
        Write::UpdateBinding { binding: b, events } => {
            let done = sqlx::query(
                "UPDATE bindings SET b = ?, b_sealed = ?, a_to_b = ?, b_to_a = ?, max_call_seconds = ?, \
                 record = ?, sms = ?, call_prompts = ?, warn_before_end_seconds = ?, \
                 updated_at = ?, expires_at = ?, ended_at = ?, \
                 end_reason = ?, ends_at = ? WHERE id = ? AND tenant_id = ?",
            )
            .bind(b.b.map(|n| keys.blind(&n.to_string())))
            .bind(b.b.map(|n| keys.seal_str(Column::BindingB, &n.to_string())))
            .bind(b.controls.a_to_b)
            .bind(b.controls.b_to_a)
            .bind(b.controls.max_call_seconds.map(i64::from))
            .bind(b.controls.record)
            .bind(b.controls.sms)
            .bind(rows::call_prompts(&b.controls))
            .bind(b.controls.warn_before_end_seconds.map(i64::from))
            .bind(b.updated_at)
            .bind(b.expires_at)
            .bind(b.ended_at)
            .bind(b.end_reason.map(EndReason::as_str))
            .bind(b.ends_at())
            .bind(uuid_bytes(b.id.0))
            .bind(uuid_bytes(b.tenant.0))
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() != 1 {
                return Err(Error::Conflict(format!("binding {} does not exist", b.id)));
            }
            sqlx::query("UPDATE messages SET ends_at = ? WHERE binding_id = ?")
                .bind(b.ends_at())
                .bind(uuid_bytes(b.id.0))
                .execute(&mut *conn)
                .await?;
            insert_events(conn, keys, &events.iter().collect::<Vec<_>>()).await?;
        }
        Write::ExpireBindings { ended, at } => {
            for e in ended {
                let (id, ended_at) = (e.id, e.ended_at);
                let done = sqlx::query(
                    "UPDATE bindings SET ended_at = ?, end_reason = 'expired', updated_at = ?, \
                     ends_at = MIN(ends_at, ?) WHERE id = ? AND ended_at IS NULL",
                )
                .bind(ended_at)
                .bind(at)
                .bind(ended_at)
                .bind(uuid_bytes(id.0))
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 1
                    && let Some(event) = &e.event
                {
                    insert_events(conn, keys, &[event]).await?;
                }
            }
        }
        Write::PurgeIdempotency { before } => {
            sqlx::query("DELETE FROM idempotency WHERE created_at < ?")
                .bind(before)
                .execute(&mut *conn)
                .await?;
        }
        Write::RecordCall { record, events } => {
            insert_rows(conn, CALLS_INSERT, CALLS_ROW, &[record], |q, c| {
                bind_call(q, c, keys)
            })
            .await?;
            close_journal(conn, &[record]).await?;
            insert_events(conn, keys, &events.iter().collect::<Vec<_>>()).await?;
        }
        Write::ForgetOpenCalls(ids) => {
            for id in ids {
                sqlx::query("DELETE FROM open_calls WHERE id = ?")
                    .bind(uuid_bytes(id.0))
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Write::OpenCall { record, events } => {
            let sql = concat!(
                "INSERT INTO open_calls (node, ",
                call_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET binding_id = excluded.binding_id, \
                 direction = excluded.direction, callee = excluded.callee, \
                 callee_sealed = excluded.callee_sealed, ringing_at = excluded.ringing_at, \
                 answered_at = excluded.answered_at"
            );
            bind_call(sqlx::query(sql).bind(NODE), &record, keys)
                .execute(&mut *conn)
                .await?;
            insert_events(conn, keys, &events.iter().collect::<Vec<_>>()).await?;
        }
        Write::RecordEvents(events) => {
            insert_events(conn, keys, &events.iter().collect::<Vec<_>>()).await?;
        }
        Write::PutWebhook(w) => {
            let patterns: Vec<&str> = w.events.iter().map(|p| p.as_str()).collect();
            sqlx::query(
                "INSERT INTO webhooks (tenant_id, url, events, secret, intercept_url, \
                 intercept_fallback, intercept_timeout_ms, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET \
                 url = excluded.url, events = excluded.events, secret = excluded.secret, \
                 intercept_url = excluded.intercept_url, \
                 intercept_fallback = excluded.intercept_fallback, \
                 intercept_timeout_ms = excluded.intercept_timeout_ms, \
                 updated_at = excluded.updated_at",
            )
            .bind(uuid_bytes(w.tenant.0))
            .bind(&w.url)
            .bind(patterns.join(" "))
            .bind(keys.seal_str(Column::WebhookSecret, &w.secret))
            .bind(w.intercept.as_ref().map(|i| i.url.clone()))
            .bind(w.intercept.as_ref().map(|i| i.fallback.as_str()))
            .bind(w.intercept.as_ref().map(|i| i64::from(i.timeout_ms)))
            .bind(w.updated_at)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
        }
        Write::DeleteWebhook { tenant } => {
            sqlx::query("DELETE FROM webhooks WHERE tenant_id = ?")
                .bind(uuid_bytes(tenant.0))
                .execute(&mut *conn)
                .await?;
        }
        Write::DeliveryOutcomes(outcomes) => {
            for o in outcomes {
                let (state, next, delivered) = match o.next {
                    NextStep::Delivered => (DeliveryState::Delivered, None, Some(o.at)),
                    NextStep::RetryAt(t) => (DeliveryState::Pending, Some(t), None),
                    NextStep::Failed => (DeliveryState::Failed, None, None),
                };
                // Only a pending event moves: a redelivery queued since the
                // attempt started is not undone by its outcome.
                sqlx::query(
                    "UPDATE events SET state = ?, attempts = attempts + 1, next_attempt_at = ?, \
                     last_status = ?, last_error = ?, delivered_at = COALESCE(?, delivered_at) \
                     WHERE id = ? AND state = 'pending'",
                )
                .bind(state.as_str())
                .bind(next)
                .bind(o.status.map(i64::from))
                .bind(o.error.as_deref())
                .bind(delivered)
                .bind(uuid_bytes(o.event.0))
                .execute(&mut *conn)
                .await?;
            }
        }
        Write::LeaseEvents { events, until } => {
            for id in events {
                sqlx::query(
                    "UPDATE events SET next_attempt_at = MAX(next_attempt_at, ?) \
                     WHERE id = ? AND state = 'pending'",
                )
                .bind(until)
                .bind(uuid_bytes(id.0))
                .execute(&mut *conn)
                .await?;
            }
        }
        Write::Redeliver { tenant, event, at } => {
            let done = sqlx::query(
                "UPDATE events SET state = 'pending', next_attempt_at = ?, retry_from = ? \
                 WHERE id = ? AND tenant_id = ?",
            )
            .bind(at)
            .bind(at)
            .bind(uuid_bytes(event.0))
            .bind(uuid_bytes(tenant.0))
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() != 1 {
                return Err(Error::Conflict(format!("event {event} does not exist")));
            }
        }
        Write::RecordMessage { .. } => insert_messages(conn, keys, &[write]).await?,
        Write::RecordPart(p) => {
            let sql = format!(
                "INSERT INTO message_parts ({PART_COLUMNS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(p.key.x.to_string())
                .bind(keys.blind(&p.key.from.to_string()))
                .bind(i64::from(p.key.reference))
                .bind(i64::from(p.seq))
                .bind(i64::from(p.total))
                .bind(i64::from(p.coding))
                .bind(&[][..])
                .bind(p.received_at)
                .bind(p.ingress.as_str())
                .bind(keys.seal_str(Column::PartSender, &p.key.from.to_string()))
                .bind(keys.seal(Column::PartBytes, &p.bytes))
                .execute(&mut *conn)
                .await?;
        }
        Write::MessageSubmitted { .. } => mark_submitted(conn, &[write]).await?,
        Write::RelayLater { message, due } => {
            sqlx::query("UPDATE relays SET due = ? WHERE message_id = ?")
                .bind(due)
                .bind(uuid_bytes(message.0))
                .execute(&mut *conn)
                .await?;
        }
        Write::LeaseRelays { messages, until } => {
            for id in messages {
                sqlx::query("UPDATE relays SET due = MAX(due, ?) WHERE message_id = ?")
                    .bind(until)
                    .bind(uuid_bytes(id.0))
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Write::ReleaseMessage {
            message: m,
            relay_due,
            event,
        } => {
            let id = uuid_bytes(m.id.0);
            let done = sqlx::query(
                "UPDATE messages SET binding_id = ?, direction = ?, recipient = ?, \
                 recipient_sealed = ?, status = 'relayed', reason = NULL, updated_at = ?, \
                 ends_at = ? WHERE id = ? AND tenant_id = ? AND status = 'held'",
            )
            .bind(m.binding.map(|b| uuid_bytes(b.0)))
            .bind(m.direction.map(Direction::as_str))
            .bind(m.to.map(|n| keys.blind(&n.to_string())))
            .bind(m.to.map(|n| keys.seal_str(Column::MessageRecipient, &n.to_string())))
            .bind(m.updated_at)
            .bind(m.ends_at)
            .bind(&id)
            .bind(m.tenant.map(|t| uuid_bytes(t.0)))
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() != 1 {
                return Err(crate::not_held(m.id));
            }
            sqlx::query("INSERT INTO relays (message_id, due) VALUES (?, ?)")
                .bind(&id)
                .bind(relay_due)
                .execute(&mut *conn)
                .await?;
            insert_events(conn, keys, &[event]).await?;
        }
        Write::MessageOutcome {
            message,
            part,
            delivered,
            reason,
            at,
            event,
        } => {
            let id = uuid_bytes(message.0);
            if let Some((link, smsc_id)) = part {
                sqlx::query("UPDATE message_submits SET state = ? WHERE link = ? AND smsc_id = ?")
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
                     WHERE message_id = ? AND state <> 'delivered')",
                )
                .bind(&id)
                .fetch_one(&mut *conn)
                .await?;
                !waiting
            } else {
                true
            };
            let status = if *delivered {
                MessageStatus::Delivered
            } else {
                MessageStatus::Failed
            };
            if complete {
                sqlx::query("DELETE FROM relays WHERE message_id = ?")
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
                let done = sqlx::query(
                    "UPDATE messages SET status = ?, reason = ?, updated_at = ? \
                     WHERE id = ? AND status = 'relayed'",
                )
                .bind(status.as_str())
                .bind(reason.map(|r| r.as_str()))
                .bind(at)
                .bind(&id)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 1 {
                    insert_events(conn, keys, &[event]).await?;
                }
            }
        }
        Write::UnmatchedReceipt(r) => {
            sqlx::query(
                "INSERT INTO unmatched_receipts (link, smsc_id, delivered, received_at) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (link, smsc_id) DO UPDATE SET \
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
            for (link, smsc_id) in keys {
                sqlx::query("DELETE FROM unmatched_receipts WHERE link = ? AND smsc_id = ?")
                    .bind(link.as_str())
                    .bind(smsc_id.as_str())
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Write::PutSmsSettings {
            tenant,
            settings,
            updated_at,
        } => {
            let t = uuid_bytes(tenant.0);
            sqlx::query(
                "INSERT INTO sms_settings (tenant_id, prefix, filter, updated_at) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET \
                 prefix = excluded.prefix, filter = excluded.filter, \
                 updated_at = excluded.updated_at",
            )
            .bind(&t)
            .bind(settings.prefix.as_deref())
            .bind(settings.filter.mode.as_str())
            .bind(updated_at)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
            sqlx::query("DELETE FROM sms_rules WHERE tenant_id = ?")
                .bind(&t)
                .execute(&mut *conn)
                .await?;
            for (i, rule) in settings.filter.rules.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO sms_rules (tenant_id, position, pattern, action) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(&t)
                .bind(i as i64)
                .bind(rule.pattern())
                .bind(rule.action.as_str())
                .execute(&mut *conn)
                .await?;
            }
        }
        Write::PutPrompt {
            tenant,
            name,
            samples,
            updated_at,
        } => {
            sqlx::query(
                "INSERT INTO prompts (tenant_id, name, samples, updated_at) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, name) DO UPDATE SET \
                 samples = excluded.samples, updated_at = excluded.updated_at",
            )
            .bind(uuid_bytes(tenant.0))
            .bind(name.as_str())
            .bind(rows::pcm16_bytes(samples))
            .bind(updated_at)
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
        }
        Write::DeletePrompt { tenant, name } => {
            sqlx::query("DELETE FROM prompts WHERE tenant_id = ? AND name = ?")
                .bind(uuid_bytes(tenant.0))
                .bind(name.as_str())
                .execute(&mut *conn)
                .await?;
        }
        Write::EraseParty {
            tenant,
            party,
            ended_before,
        } => {
            let (sql, mask, [token, previous]) = crate::rows::erasure(keys, *party);
            for statement in sql.iter().filter(|s| !s.postgres_only) {
                let mut q = sqlx::query(AssertSqlSafe(statement.text('?')));
                for &arg in statement.args {
                    q = match arg {
                        crate::rows::EraseArg::Tenant => q.bind(uuid_bytes(tenant.0)),
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
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET \
                 allow_prefixes = excluded.allow_prefixes, \
                 deny_prefixes = excluded.deny_prefixes, updated_at = excluded.updated_at, \
                 max_concurrent_calls = excluded.max_concurrent_calls, \
                 max_calls_per_second = excluded.max_calls_per_second",
            )
            .bind(uuid_bytes(tenant.0))
            .bind(rows::prefix_list(&rules.allow_prefixes))
            .bind(rows::prefix_list(&rules.deny_prefixes))
            .bind(updated_at)
            .bind(rules.caps.max_concurrent_calls.map(i64::from))
            .bind(rules.caps.max_calls_per_second.map(i64::from))
            .execute(&mut *conn)
            .await
            .map_err(conflict)?;
        }
        Write::PutTenantLimit {
            tenant,
            rate_limit,
            updated_at,
        } => {
            match rate_limit {
                Some(rate) => sqlx::query(
                    "INSERT INTO tenant_limits (tenant_id, rate_limit, updated_at) VALUES (?, ?, ?) \
                     ON CONFLICT (tenant_id) DO UPDATE SET rate_limit = excluded.rate_limit, \
                     updated_at = excluded.updated_at",
                )
                .bind(uuid_bytes(tenant.0))
                .bind(i64::from(*rate))
                .bind(updated_at)
                .execute(&mut *conn)
                .await
                .map_err(conflict)?,
                None => sqlx::query("DELETE FROM tenant_limits WHERE tenant_id = ?")
                    .bind(uuid_bytes(tenant.0))
                    .execute(&mut *conn)
                    .await?,
            };
        }
        Write::PutCallLoad { node, at, loads } => {
            sqlx::query("DELETE FROM call_load WHERE node = ?")
                .bind(node)
                .execute(&mut *conn)
                .await?;
            for l in loads {
                sqlx::query(
                    "INSERT INTO call_load (node, tenant_id, active, per_second, at) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(node)
                .bind(uuid_bytes(l.tenant.0))
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
                "DELETE FROM bindings WHERE id IN (SELECT id FROM bindings WHERE ends_at < ? LIMIT ?)",
            )
            .bind(before)
            .bind(i64::from(*batch))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE ended_at < ? LIMIT ?)",
            )
            .bind(before_ms)
            .bind(i64::from(*batch))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE created_at < ? AND state <> 'pending' LIMIT ?)",
            )
            .bind(before_ms)
            .bind(i64::from(*batch))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE at < ? LIMIT ?)",
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
            for table in ["message_submits", "relays"] {
                let sql = format!(
                    "DELETE FROM {table} WHERE message_id IN \
                     (SELECT id FROM messages WHERE ends_at < ?)"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(ends_before)
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query("DELETE FROM messages WHERE ends_at < ?")
                .bind(ends_before)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM message_parts WHERE received_at < ?")
                .bind(parts_before)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// The parts a text was assembled from are gone: another write made them
/// a text first.
fn already_assembled() -> Error {
    Error::Conflict("the parts of this text were assembled already".into())
}

fn conflict(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() || db.is_foreign_key_violation() => {
            Error::Conflict(db.message().to_owned())
        }
        _ => Error::Database(e),
    }
}

// === reads ===

crate::reads::shared_reads!(
    store: SqliteStore,
    pool: reads,
    id: uuid_bytes,
    numbers_in_import_order: "rowid",
    tenant_id: Vec<u8>,
    reference: i64,
    calls_by_time: " INDEXED BY calls_by_time",
    // Without statistics SQLite would walk the tenant's whole history in id
    // order rather than look the party up (BENCHMARKS.md §11).
    by_party: [
        " INDEXED BY bindings_by_a",
        " INDEXED BY bindings_by_b",
        " INDEXED BY calls_by_caller",
        " INDEXED BY calls_by_callee"
    ],
);

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn enqueue(&self, write: Write) -> WriteAck {
        let (tx, rx) = oneshot::channel();
        // Sealed here, on the caller's thread, not on the single writer's.
        let sealed = presealed::preseal(&write, &self.keys);
        // A closed channel drops `tx`, and the ack reports `WriterGone`.
        let _ = self.writes.send((write, sealed, tx));
        WriteAck(rx)
    }

    fn events_signal(&self) -> Arc<Notify> {
        self.events_signal.clone()
    }

    fn keys(&self) -> Arc<Keyring> {
        self.keys.clone()
    }

    fn node(&self) -> &str {
        NODE
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
        let sql = format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE ends_at >= ? ORDER BY id");
        let mut rows = sqlx::query(AssertSqlSafe(sql))
            .bind(min_ends_at)
            .fetch(&self.reads);
        let mut n = 0;
        while let Some(row) = rows.try_next().await? {
            each(binding(&row, &self.keys)?);
            n += 1;
        }
        Ok(n)
    }

    async fn changed_bindings(&self, since: UnixTime) -> Result<Vec<Binding>> {
        // Only one process uses an embedded store, so nothing calls this in
        // service; it reads the whole table (no index on updated_at).
        let sql = format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE updated_at >= ? ORDER BY updated_at, id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(since)
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(|r| binding(r, &self.keys)).collect()
    }

    async fn bindings_on(&self, x: Number, ends_after: UnixTime) -> Result<Vec<Binding>> {
        let sql = format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE x = ? AND ends_at > ?");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(x.to_string())
            .bind(ends_after)
            .fetch_all(&self.reads)
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
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_INSERT_ROWS) {
            let sql = format!(
                "SELECT {BINDING_COLUMNS} FROM bindings WHERE id IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(uuid_bytes(id.0));
            }
            for row in q.fetch_all(&self.reads).await? {
                out.push(binding(&row, &self.keys)?);
            }
        }
        Ok(out)
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
        // Built from fixed fragments only; every value is a bound parameter.
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND seq > ?");
        if !types.is_empty() {
            sql.push_str(" AND type IN (");
            sql.push_str(&vec!["?"; types.len()].join(", "));
            sql.push(')');
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(uuid_bytes(tenant.0))
            .bind(page.after.unwrap_or(0));
        for t in types {
            q = q.bind(t.as_str());
        }
        let rows = q.bind(i64::from(page.limit)).fetch_all(&self.reads).await?;
        rows.iter().map(|r| stored_event(r, &self.keys)).collect()
    }

    async fn claim_due_events(
        &self,
        tenant: TenantId,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        // One process, one sender: a read and then the lease, queued like
        // any write, is a claim.
        // `state = 'pending'` is spelled out (not bound) so that SQLite can
        // use the partial indexes.
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events AS e \
             WHERE e.tenant_id = ? AND e.state = 'pending' AND e.next_attempt_at <= ? \
             AND NOT EXISTS (SELECT 1 FROM events AS p \
                 WHERE p.subject = e.subject AND p.state = 'pending' AND p.seq < e.seq) \
             ORDER BY e.next_attempt_at, e.seq LIMIT ?"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(uuid_bytes(tenant.0))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.reads)
            .await?;
        let events = rows
            .iter()
            .map(|r| stored_event(r, &self.keys))
            .collect::<Result<Vec<_>>>()?;
        if !events.is_empty() {
            self.enqueue(Write::LeaseEvents {
                events: events.iter().map(|e| e.id).collect(),
                until: lease_until,
            })
            .await?;
        }
        Ok(events)
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
        // One process: a read and then the lease, queued like any write.
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM relays JOIN messages ON messages.id = relays.message_id \
             WHERE relays.due <= ? ORDER BY relays.due LIMIT ?"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.reads)
            .await?;
        let messages = rows
            .iter()
            .map(|r| message(r, &self.keys))
            .collect::<Result<Vec<_>>>()?;
        if !messages.is_empty() {
            self.enqueue(Write::LeaseRelays {
                messages: messages.iter().map(|m| m.id).collect(),
                until: lease_until,
            })
            .await?;
        }
        Ok(messages)
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
        let id: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT binding_id FROM calls INDEXED BY calls_by_x_caller \
             WHERE x = ? AND caller IN (?, ?) AND invited_at >= ? \
             AND binding_id IS NOT NULL AND direction IS NOT NULL \
             ORDER BY invited_at DESC LIMIT 1",
        )
        .bind(x.to_string())
        .bind(token)
        .bind(previous)
        .bind(since)
        .fetch_optional(&self.reads)
        .await?;
        id.map(|b| {
            <[u8; 16]>::try_from(b)
                .map(|b| BindingId(u128::from_be_bytes(b)))
                .map_err(|_| Error::Corrupt("binding_id"))
        })
        .transpose()
    }
}

// === row decoding ===

fn uuid_bytes(id: u128) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}
