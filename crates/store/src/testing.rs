//! For tests (this crate's and the end-to-end suites): a PostgreSQL schema
//! of its own for each test, so that runs (and tests within a run) never
//! see each other's rows. The server is `MASKLINE_TEST_DATABASE_URL`, by
//! default CI's: 127.0.0.1:5432, trust auth, database `test`. An
//! unreachable server fails the test: it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{PgOptions, PgStore, Store};
use sqlx::Connection;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn server_url() -> String {
    std::env::var("MASKLINE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A schema dropped (with everything in it) when this is dropped.
pub struct Schema {
    pub name: String,
}

impl Schema {
    pub async fn create() -> Schema {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "maskline_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
        );
        let mut conn = sqlx::PgConnection::connect(&server_url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {} is unreachable ({e}); the PostgreSQL tests need it",
                    server_url()
                )
            });
        // The extension lives in `public` for every test schema; tests
        // creating it at once may race, and the loser's error is harmless.
        let _ = sqlx::query("CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public")
            .execute(&mut conn)
            .await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        Schema { name }
    }

    /// The server's URL with this schema first on the search path.
    pub fn url(&self) -> String {
        let base = server_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options[search_path]={},public", self.name)
    }

    pub fn options(&self, cooldown_secs: i64) -> PgOptions {
        PgOptions::from_url(&self.url(), cooldown_secs).unwrap()
    }

    pub async fn open(&self, cooldown_secs: i64) -> Arc<dyn Store> {
        Arc::new(PgStore::open(self.options(cooldown_secs)).await.unwrap())
    }

    /// A plain connection inside the schema, for checks in SQL.
    pub async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url()).await.unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        // Drop runs outside any runtime's async context: a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&server_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
