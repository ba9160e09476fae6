//! Sealing what is not sealed under the current key: rows an older build
//! wrote in clear, and, after `maskline keys rotate`, rows sealed under an
//! older data key. Both back ends run the same statements (only their
//! placeholders and row handles differ), a bounded batch at a time, each
//! update conditional on the value it replaces so that a row changed
//! meanwhile is left to the next pass.

use crate::seal::{Column, Keyring};
use crate::{Error, Result};

/// How a sealed value is kept.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A party number or sender: `col` holds its blind token, `sealed` the
    /// value (both clear in `col` for a row from before sealing).
    Party { col: &'static str },
    /// Sealed in place; clear before sealing.
    InPlace,
    /// `message_parts.bytes`: the bytes sealed into `sealed`, `bytes` emptied.
    Bytes,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub kind: Kind,
    pub sealed: &'static str,
    pub column: Column,
}

pub(crate) struct Table {
    pub name: &'static str,
    pub fields: &'static [Field],
    /// A row's new token may be its twin's: the same part of a text, received
    /// again after a rotation and stored under the new token. The reseal
    /// then drops this copy (the twin holds the same part) instead of failing
    /// the primary key and, with it, the whole batch.
    pub may_have_twin: bool,
}

const fn party(col: &'static str, sealed: &'static str, column: Column) -> Field {
    Field {
        kind: Kind::Party { col },
        sealed,
        column,
    }
}

const fn in_place(col: &'static str, column: Column) -> Field {
    Field {
        kind: Kind::InPlace,
        sealed: col,
        column,
    }
}

/// Every sealed column of the schema.
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "bindings",
        may_have_twin: false,
        fields: &[
            party("a", "a_sealed", Column::BindingA),
            party("b", "b_sealed", Column::BindingB),
        ],
    },
    Table {
        name: "calls",
        may_have_twin: false,
        fields: &[
            party("caller", "caller_sealed", Column::CallCaller),
            party("callee", "callee_sealed", Column::CallCallee),
        ],
    },
    Table {
        name: "messages",
        may_have_twin: false,
        fields: &[
            party("sender", "sender_sealed", Column::MessageSender),
            party("recipient", "recipient_sealed", Column::MessageRecipient),
            in_place("body", Column::MessageBody),
        ],
    },
    Table {
        name: "message_parts",
        may_have_twin: true,
        fields: &[
            party("sender", "sender_sealed", Column::PartSender),
            Field {
                kind: Kind::Bytes,
                sealed: "bytes_sealed",
                column: Column::PartBytes,
            },
        ],
    },
    Table {
        name: "events",
        may_have_twin: false,
        fields: &[in_place("body", Column::EventBody)],
    },
    Table {
        name: "idempotency",
        may_have_twin: false,
        fields: &[in_place("body", Column::IdempotencyBody)],
    },
    Table {
        name: "webhooks",
        may_have_twin: false,
        fields: &[in_place("secret", Column::WebhookSecret)],
    },
];

/// Which rows a pass takes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stale {
    /// Rows written in clear (by a build from before sealing).
    Clear,
    /// Rows not sealed under data key `key` (clear ones included), or
    /// whose tokens are not under its blind key (tagged `blind`).
    NotUnder { key: u32, blind: Option<u32> },
}

impl Stale {
    /// Rows not sealed under data key `key` and its blind key.
    pub fn not_under(keys: &Keyring, key: u32) -> Result<Stale> {
        Ok(Stale::NotUnder {
            key,
            blind: keys.blind_tag(key)?,
        })
    }
}

impl Field {
    /// The SQL condition "this field is `stale`".
    fn stale(&self, stale: Stale) -> String {
        let (current, blind) = match stale {
            Stale::NotUnder { key, blind } => (key, blind),
            Stale::Clear => {
                return match self.kind {
                    Kind::Party { col } => {
                        format!("({col} IS NOT NULL AND {} IS NULL)", self.sealed)
                    }
                    Kind::InPlace => format!("{} NOT LIKE 'ml1:%'", self.sealed),
                    Kind::Bytes => format!("{} IS NULL", self.sealed),
                };
            }
        };
        let like = Keyring::like_key(current);
        match self.kind {
            Kind::Party { col } => {
                let token_stale = match blind {
                    Some(tag) => format!(" OR {col} NOT LIKE '{}'", Keyring::like_blind(tag)),
                    None => String::new(),
                };
                format!(
                    "({col} IS NOT NULL AND ({s} IS NULL OR {s} NOT LIKE '{like}'{token_stale}))",
                    s = self.sealed
                )
            }
            Kind::InPlace => format!("{} NOT LIKE '{like}'", self.sealed),
            Kind::Bytes => format!("({s} IS NULL OR {s} NOT LIKE '{like}')", s = self.sealed),
        }
    }

    /// The columns a pass reads (and compares before it writes).
    fn read(&self) -> Vec<&'static str> {
        match self.kind {
            Kind::Party { col } => vec![col, self.sealed],
            Kind::InPlace => vec![self.sealed],
            Kind::Bytes => vec!["bytes", self.sealed],
        }
    }
}

impl Table {
    /// `SELECT <handle>, <columns> FROM t WHERE <any field stale> LIMIT n`.
    pub fn select(&self, handle: &str, stale: Stale, limit: u32) -> String {
        let cols: Vec<&str> = self.fields.iter().flat_map(Field::read).collect();
        let stale: Vec<String> = self.fields.iter().map(|f| f.stale(stale)).collect();
        format!(
            "SELECT {handle} AS handle, {} FROM {} WHERE {} LIMIT {limit}",
            cols.join(", "),
            self.name,
            stale.join(" OR ")
        )
    }

    /// `UPDATE t SET <every column read> = … WHERE <handle> = …<cast> AND
    /// <each column read> IS NOT DISTINCT FROM <what was read>`, with
    /// placeholders from `p(1)` on: new values, the handle, then old values.
    pub fn update(&self, handle: &str, cast: &str, p: fn(usize) -> String) -> String {
        let cols: Vec<&str> = self.fields.iter().flat_map(Field::read).collect();
        let n = cols.len();
        let set: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = {}", p(i + 1)))
            .collect();
        let same: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} IS NOT DISTINCT FROM {}", p(n + 2 + i)))
            .collect();
        format!(
            "UPDATE {} SET {} WHERE {handle} = {}{cast} AND {}",
            self.name,
            set.join(", "),
            p(n + 1),
            same.join(" AND ")
        )
    }
}

/// A cell a pass reads or writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Text(String),
    Bytes(Vec<u8>),
}

impl Cell {
    fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// The new cells of one row, in the order [`Table::update`] sets them,
/// given the cells read in the same order.
pub(crate) fn resealed(table: &Table, keys: &Keyring, old: &[Cell]) -> Result<Vec<Cell>> {
    let mut out = Vec::with_capacity(old.len());
    let mut cells = old.iter();
    let mut next = || cells.next().ok_or(Error::Corrupt(table.name));
    for f in table.fields {
        match f.kind {
            Kind::Party { col } => {
                let (token, sealed) = (next()?, next()?);
                let clear = match (sealed.text(), token.text()) {
                    (Some(s), _) => Some(keys.open_string(f.column, s)?),
                    (None, Some(c)) if !crate::seal::is_blind(c) => Some(c.to_owned()),
                    (None, Some(_)) => return Err(Error::Corrupt(col)),
                    (None, None) => None,
                };
                match clear {
                    Some(c) => {
                        out.push(Cell::Text(keys.blind(&c)));
                        out.push(Cell::Text(keys.seal_str(f.column, &c)));
                    }
                    None => out.extend([Cell::Null, Cell::Null]),
                }
            }
            Kind::InPlace => {
                let v = next()?.text().ok_or(Error::Corrupt(f.sealed))?;
                out.push(Cell::Text(keys.seal(f.column, &keys.open(f.column, v)?)));
            }
            Kind::Bytes => {
                let (bytes, sealed) = (next()?, next()?);
                let clear = match (sealed.text(), bytes) {
                    (Some(s), _) => keys.open(f.column, s)?,
                    (None, Cell::Bytes(b)) => b.clone(),
                    _ => return Err(Error::Corrupt("bytes")),
                };
                out.push(Cell::Bytes(Vec::new()));
                out.push(Cell::Text(keys.seal(f.column, &clear)));
            }
        }
    }
    Ok(out)
}

/// The columns read for `table`, for decoding a row.
pub(crate) fn columns(table: &Table) -> Vec<(&'static str, bool)> {
    table
        .fields
        .iter()
        .flat_map(|f| {
            f.read()
                .into_iter()
                .map(move |c| (c, matches!(f.kind, Kind::Bytes) && c == "bytes"))
        })
        .collect()
}

/// What [`keep_keys`] needs of a back end.
pub(crate) trait KeyStore: Send + Sync + 'static {
    /// The `seal.*` rows of `meta`.
    fn keyring_rows(&self) -> BoxFuture<'_, Result<crate::seal::MetaRows>>;
    /// Whether some row is `stale`.
    fn any_stale(&self, stale: Stale) -> BoxFuture<'_, Result<bool>>;
    /// Queues a [`crate::Write::Reseal`] and waits for it.
    fn reseal(&self, batch: u32) -> BoxFuture<'_, Result<()>>;
    /// Records that every stored value is sealed under key `id`.
    fn mark_sealed_under(&self, id: u32) -> BoxFuture<'_, Result<()>>;
}

pub(crate) type BoxFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Rows a background reseal takes per table and write: small, so that the
/// writer's other work waits little behind it.
const BACKGROUND_BATCH: u32 = 200;
/// How often a node reads the keyring (a rotation takes effect after
/// `maskline keys rotate`'s delay, longer than this).
const REFRESH: std::time::Duration = std::time::Duration::from_secs(2);
/// After resealing under a new key, look once more this much later, for
/// rows another node sealed under the old one while it switched.
const RECHECK_SECS: u64 = 30;

/// Follows the database's keyring (keys another process added) and, when
/// the sealing key changes, reseals every row under it in the background.
/// Ends once the store (the keyring's owner) is gone.
pub(crate) async fn keep_keys(keys: std::sync::Weak<Keyring>, db: impl KeyStore) {
    let Some(first) = keys.upgrade().map(|k| k.current_key()) else {
        return;
    };
    // The key everything is known to be sealed under, and when to look again.
    let mut clean_under = first;
    // Once at start, unless a finished pass recorded that all was sealed
    // under this key (a look is a scan of every sealed table).
    let marked = db.keyring_rows().await.ok().and_then(|rows| {
        rows.into_iter()
            .find(|(k, _)| k == META_SEALED_UNDER)
            .and_then(|(_, v)| v.parse::<u32>().ok())
    });
    let mut recheck = (marked != Some(first)).then(std::time::Instant::now);
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(ring) = keys.upgrade() else {
            return;
        };
        match db.keyring_rows().await.and_then(|rows| ring.refresh(&rows)) {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the keyring");
                continue;
            }
        }
        let current = ring.current_key();
        let stale = Stale::not_under(&ring, current);
        drop(ring);
        let stale = match stale {
            Ok(stale) => stale,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the keyring");
                continue;
            }
        };
        let due = recheck.is_some_and(|at| at <= std::time::Instant::now());
        if current == clean_under && !due {
            continue;
        }
        let mut resealed = 0u64;
        let finished = loop {
            match db.any_stale(stale).await {
                Ok(false) => break true,
                Ok(true) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look for values to reseal");
                    break false;
                }
            }
            if let Err(e) = db.reseal(BACKGROUND_BATCH).await {
                tracing::warn!(error = %e, "resealing failed; trying again later");
                break false;
            }
            resealed += 1;
            if keys.strong_count() == 0 {
                return;
            }
        };
        if !finished {
            // Still due: the next tick tries again.
            continue;
        }
        if current != clean_under {
            tracing::info!(
                key = current,
                batches = resealed,
                "stored values resealed under the new key"
            );
            recheck =
                Some(std::time::Instant::now() + std::time::Duration::from_secs(RECHECK_SECS));
            clean_under = current;
        } else {
            recheck = None;
            if let Err(e) = db.mark_sealed_under(current).await {
                tracing::warn!(error = %e, "cannot record that every value is sealed");
            }
        }
    }
}

/// The `meta` row naming the key every stored value was last found sealed
/// under (by a finished pass of [`keep_keys`]).
pub(crate) const META_SEALED_UNDER: &str = "seal.sealed_under";

/// The sealing code of a back end, one implementation for both: the
/// keyring's rows, its creation, the reseal passes, the background task's
/// view ([`KeyStore`]) and a rotation's writes. The back ends differ only in
/// the types and the SQL spellings given here: the connection, pool and
/// query types; how a row is named (`rowid`, an `i64`, in SQLite; `ctid`
/// as text, cast back with `::tid`, in PostgreSQL); placeholders.
macro_rules! sealing_back_end {
    (
        conn: $conn:ty,
        pool: $pool:ty,
        query: $query:ident,
        handle: $handle:literal as $handle_ty:ty,
        cast: $cast:literal,
        placeholder: $ph:expr,
        insert_meta: $insert_meta:literal,
        add_key: $add_key:literal,
        set_current: $set_current:literal,
        retoken: ($retoken_on:literal, $retoken_off:literal $(,)?) $(,)?
    ) => {
        /// The `seal.*` rows of `meta`.
        async fn keyring_rows(conn: &mut $conn) -> Result<MetaRows> {
            Ok(
                sqlx::query_as("SELECT key, value FROM meta WHERE key LIKE 'seal.%' ORDER BY key")
                    .fetch_all(&mut *conn)
                    .await?,
            )
        }

        /// The database's keyring, made on first open (in one transaction;
        /// a node that opens the database at the same moment waits on the
        /// first row and then finds them all).
        async fn load_keys(conn: &mut $conn, master: MasterKey) -> Result<Keyring> {
            let mut rows = keyring_rows(conn).await?;
            if rows.is_empty() {
                let mut tx = conn.begin().await?;
                for (k, v) in Keyring::genesis(&master) {
                    sqlx::query($insert_meta)
                        .bind(k)
                        .bind(v)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                rows = keyring_rows(conn).await?;
            }
            Keyring::from_meta(master, &rows)
        }

        /// A rotation's writes (`maskline keys rotate`): the new keys' rows,
        /// failing if another rotation took their id, and `seal.current`,
        /// only where it still holds what the plan read.
        async fn rotate_in(conn: &mut $conn, master: &MasterKey, now: i64) -> Result<(u32, i64)> {
            let rows = keyring_rows(conn).await?;
            let plan = crate::seal::Rotation::plan(master, &rows, now)?;
            let raced = || Error::Keys("another rotation ran at the same time".into());
            let mut tx = conn.begin().await?;
            for (key, value) in [&plan.key_row, &plan.blind_row] {
                sqlx::query($add_key)
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await
                    .map_err(|_| raced())?;
            }
            let set = sqlx::query($set_current)
                .bind(&plan.current)
                .bind(&plan.was_current)
                .execute(&mut *tx)
                .await?;
            if set.rows_affected() != 1 {
                return Err(raced());
            }
            tx.commit().await?;
            Ok((plan.id, plan.from))
        }

        /// Seals, a batch at a time, what an older build left in clear;
        /// once done, `seal.clear_done` saves later starts the scan (a
        /// clear row an older node writes after that reads as clear and is
        /// sealed by the next pass of `keep_keys`, after a rotation).
        async fn seal_clear_rows(conn: &mut $conn, keys: &Keyring) -> Result<u64> {
            let done: Option<String> =
                sqlx::query_scalar("SELECT value FROM meta WHERE key = 'seal.clear_done'")
                    .fetch_optional(&mut *conn)
                    .await?;
            if done.is_some() {
                return Ok(0);
            }
            let mut total = 0;
            loop {
                let mut tx = conn.begin().await?;
                let n = reseal_rows(&mut tx, keys, crate::reseal::Stale::Clear, 500).await?;
                if n == 0 {
                    sqlx::query($insert_meta)
                        .bind("seal.clear_done")
                        .bind("1")
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                total += n;
                if n == 0 {
                    if total > 0 {
                        tracing::info!(
                            rows = total,
                            key = keys.current_key(),
                            "sealed stored values"
                        );
                    }
                    return Ok(total);
                }
            }
        }

        /// Reseals at most `limit` `stale` rows a table; the rows it
        /// changed. Each update compares the values it replaces, so a row
        /// changed meanwhile is left to the next pass.
        async fn reseal_rows(
            conn: &mut $conn,
            keys: &Keyring,
            stale: crate::reseal::Stale,
            limit: u32,
        ) -> Result<u64> {
            use crate::reseal::{Cell, TABLES, columns, resealed};
            fn bind_cell<'q>(q: $query<'q>, c: &Cell) -> $query<'q> {
                match c {
                    Cell::Null => q.bind(None::<String>),
                    Cell::Text(t) => q.bind(t.clone()),
                    Cell::Bytes(b) => q.bind(b.clone()),
                }
            }
            // Tokens change under bindings that keep their parties: the
            // database lets their slots follow (PostgreSQL's 0017).
            sqlx::query($retoken_on).execute(&mut *conn).await?;
            let mut changed = 0;
            for table in TABLES {
                let plain_handle = $handle.split("::").next().unwrap_or($handle);
                let drop_twin = format!(
                    "DELETE FROM {} WHERE {plain_handle} = {}{}",
                    table.name,
                    $ph(1),
                    $cast
                );
                let cols = columns(table);
                let rows = sqlx::query(AssertSqlSafe(table.select($handle, stale, limit)))
                    .fetch_all(&mut *conn)
                    .await?;
                let update =
                    table.update($handle.split("::").next().unwrap_or($handle), $cast, $ph);
                for row in &rows {
                    let handle: $handle_ty = sqlx::Row::try_get(row, "handle")?;
                    let old = cols
                        .iter()
                        .map(|&(c, bytes)| {
                            Ok(if bytes {
                                sqlx::Row::try_get::<Option<Vec<u8>>, _>(row, c)?
                                    .map_or(Cell::Null, Cell::Bytes)
                            } else {
                                sqlx::Row::try_get::<Option<String>, _>(row, c)?
                                    .map_or(Cell::Null, Cell::Text)
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let new = resealed(table, keys, &old)?;
                    let mut q = sqlx::query(AssertSqlSafe(update.clone()));
                    for c in new.iter() {
                        q = bind_cell(q, c);
                    }
                    q = q.bind(handle.clone());
                    for c in old.iter() {
                        q = bind_cell(q, c);
                    }
                    if !table.may_have_twin {
                        changed += q.execute(&mut *conn).await?.rows_affected();
                        continue;
                    }
                    // A failed statement aborts a PostgreSQL transaction:
                    // only back to this savepoint.
                    sqlx::query("SAVEPOINT reseal_row")
                        .execute(&mut *conn)
                        .await?;
                    match q.execute(&mut *conn).await {
                        Ok(done) => changed += done.rows_affected(),
                        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                            sqlx::query("ROLLBACK TO SAVEPOINT reseal_row")
                                .execute(&mut *conn)
                                .await?;
                            changed += sqlx::query(AssertSqlSafe(drop_twin.clone()))
                                .bind(handle)
                                .execute(&mut *conn)
                                .await?
                                .rows_affected();
                        }
                        Err(e) => return Err(e.into()),
                    }
                    sqlx::query("RELEASE SAVEPOINT reseal_row")
                        .execute(&mut *conn)
                        .await?;
                }
            }
            sqlx::query($retoken_off).execute(&mut *conn).await?;
            Ok(changed)
        }

        /// The back end as [`crate::reseal::keep_keys`] sees it. The writer
        /// is held weakly: a store that is dropped lets its writer end.
        struct KeysTask {
            reads: $pool,
            writes: mpsc::WeakUnboundedSender<crate::presealed::Queued>,
        }

        impl crate::reseal::KeyStore for KeysTask {
            fn keyring_rows(&self) -> crate::reseal::BoxFuture<'_, Result<MetaRows>> {
                Box::pin(async move {
                    let mut conn = self.reads.acquire().await?;
                    keyring_rows(&mut conn).await
                })
            }

            fn any_stale(
                &self,
                stale: crate::reseal::Stale,
            ) -> crate::reseal::BoxFuture<'_, Result<bool>> {
                Box::pin(async move {
                    for table in crate::reseal::TABLES {
                        let found = sqlx::query(AssertSqlSafe(table.select($handle, stale, 1)))
                            .fetch_optional(&self.reads)
                            .await?;
                        if found.is_some() {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                })
            }

            fn reseal(&self, batch: u32) -> crate::reseal::BoxFuture<'_, Result<()>> {
                Box::pin(self.write(Write::Reseal { batch }))
            }

            fn mark_sealed_under(&self, id: u32) -> crate::reseal::BoxFuture<'_, Result<()>> {
                Box::pin(self.write(Write::PutMeta {
                    key: crate::reseal::META_SEALED_UNDER.to_owned(),
                    value: id.to_string(),
                }))
            }
        }

        impl KeysTask {
            /// Queues `write` on the store's writer, if it is still there.
            async fn write(&self, write: Write) -> Result<()> {
                let writes = self.writes.upgrade().ok_or(Error::WriterGone)?;
                let (tx, rx) = oneshot::channel();
                writes
                    .send((write, None, tx))
                    .map_err(|_| Error::WriterGone)?;
                drop(writes);
                WriteAck(rx).await
            }
        }
    };
}
pub(crate) use sealing_back_end;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::MasterKey;

    fn keys() -> Keyring {
        let master = MasterKey::ephemeral();
        Keyring::from_meta(master.clone(), &Keyring::genesis(&master)).unwrap()
    }

    #[test]
    fn statements_name_every_sealed_column() {
        let t = &TABLES[0];
        assert_eq!(
            t.select(
                "rowid",
                Stale::NotUnder {
                    key: 3,
                    blind: None
                },
                10
            ),
            "SELECT rowid AS handle, a, a_sealed, b, b_sealed FROM bindings WHERE \
             (a IS NOT NULL AND (a_sealed IS NULL OR a_sealed NOT LIKE 'ml1:3:%')) OR \
             (b IS NOT NULL AND (b_sealed IS NULL OR b_sealed NOT LIKE 'ml1:3:%')) LIMIT 10"
        );
        // Once blind keys have turned too, a token under another is stale.
        assert_eq!(
            t.select(
                "rowid",
                Stale::NotUnder {
                    key: 3,
                    blind: Some(3)
                },
                10
            ),
            "SELECT rowid AS handle, a, a_sealed, b, b_sealed FROM bindings WHERE \
             (a IS NOT NULL AND (a_sealed IS NULL OR a_sealed NOT LIKE 'ml1:3:%' \
             OR a NOT LIKE '~3:%')) OR \
             (b IS NOT NULL AND (b_sealed IS NULL OR b_sealed NOT LIKE 'ml1:3:%' \
             OR b NOT LIKE '~3:%')) LIMIT 10"
        );
        assert_eq!(
            TABLES[4].update("ctid", "::tid", |i| format!("${i}")),
            "UPDATE events SET body = $1 WHERE ctid = $2::tid AND body IS NOT DISTINCT FROM $3"
        );
    }

    #[test]
    fn clear_rows_get_tokens_and_sealed_values() {
        let keys = keys();
        let old = [
            Cell::Text("+8613800000000".into()),
            Cell::Null,
            Cell::Null,
            Cell::Null,
        ];
        let new = resealed(&TABLES[0], &keys, &old).unwrap();
        assert_eq!(new[0], Cell::Text(keys.blind("+8613800000000")));
        let Cell::Text(sealed) = &new[1] else {
            panic!()
        };
        assert_eq!(
            keys.open_string(Column::BindingA, sealed).unwrap(),
            "+8613800000000"
        );
        assert_eq!(new[2..], [Cell::Null, Cell::Null]);
        // A second pass keeps the token and opens what the first sealed.
        let again = resealed(&TABLES[0], &keys, &new).unwrap();
        assert_eq!(again[0], new[0]);
        assert_ne!(again[1], new[1]);
    }

    #[test]
    fn part_bytes_move_into_the_sealed_column() {
        let keys = keys();
        let old = [
            Cell::Text("TAOBAO".into()),
            Cell::Null,
            Cell::Bytes(vec![0, 1, 2]),
            Cell::Null,
        ];
        let new = resealed(&TABLES[3], &keys, &old).unwrap();
        assert_eq!(new[2], Cell::Bytes(vec![]));
        let Cell::Text(sealed) = &new[3] else {
            panic!()
        };
        assert_eq!(keys.open(Column::PartBytes, sealed).unwrap(), [0, 1, 2]);
    }
}
