//! For tests (this crate's and the end-to-end suites): which PostgreSQL
//! server to use, and a schema of its own for each test, so that runs (and
//! tests within a run) never see each other's rows.
//!
//! The server is, in this order:
//! 1. `MASKLINE_TEST_DATABASE_URL` when it is set;
//! 2. a throwaway cluster started for this test process ([`throwaway`]) when
//!    `MASKLINE_TEST_PG=throwaway`, or when nothing answers on
//!    127.0.0.1:5432;
//! 3. otherwise 127.0.0.1:5432 (CI's: trust auth, database `test`).
//!
//! A server that cannot be used fails the test: it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod throwaway;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::{PgOptions, PgStore, Store};
use sqlx::Connection;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const DEFAULT_ADDR: &str = "127.0.0.1:5432";

/// The URL of the server this process's tests use, chosen (and a throwaway
/// cluster started) on first use. If that failed, every test that asks
/// fails with the same message.
pub fn server_url() -> String {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    match URL.get_or_init(choose_server) {
        Ok(url) => url.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn choose_server() -> Result<String, String> {
    if let Ok(url) = std::env::var("MASKLINE_TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        return Ok(url);
    }
    let throwaway = match std::env::var("MASKLINE_TEST_PG").as_deref() {
        Ok("throwaway") => true,
        Ok("") | Err(_) => !answers(DEFAULT_ADDR),
        Ok(other) => {
            return Err(format!(
                "MASKLINE_TEST_PG={other:?}: the only value is `throwaway` \
                 (unset: 127.0.0.1:5432 if it answers, else a throwaway cluster)"
            ));
        }
    };
    if throwaway {
        throwaway::start()
    } else {
        Ok(DEFAULT_URL.to_owned())
    }
}

fn answers(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("a socket address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// `url` with its host and port replaced by `addr` (to reach the same
/// server through a relay).
pub fn url_via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!("{scheme}://{}{addr}{tail}", user.unwrap_or_default())
}

/// The server's `host:port`, as a socket address (for a relay to connect to).
pub fn server_addr() -> SocketAddr {
    let url = server_url();
    let opts: sqlx::postgres::PgConnectOptions = url.parse().expect("a PostgreSQL URL");
    let host = opts.get_host();
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", opts.get_port())
        .parse()
        .unwrap_or_else(|_| panic!("the test server's host {host:?} is not an IP address"))
}

/// A schema dropped (with everything in it) when this is dropped.
pub struct Schema {
    pub name: String,
    /// Every node opened on the schema shares it, as real nodes share
    /// `MASKLINE_MASTER_KEY_FILE`.
    pub master: crate::seal::MasterKey,
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
        // Choosing the server may start a cluster: not on a runtime thread.
        let url = tokio::task::spawn_blocking(server_url).await.unwrap();
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {url} is unreachable ({e}); the PostgreSQL tests need it \
                     (set MASKLINE_TEST_DATABASE_URL, or MASKLINE_TEST_PG=throwaway)"
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
        Schema {
            name,
            master: crate::seal::MasterKey::ephemeral(),
        }
    }

    /// The server's URL with this schema first on the search path.
    pub fn url(&self) -> String {
        let base = server_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options[search_path]={},public", self.name)
    }

    pub fn options(&self, cooldown_secs: i64) -> PgOptions {
        let mut options = PgOptions::from_url(&self.url(), cooldown_secs).unwrap();
        options.master = self.master.clone();
        options
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_via_replaces_only_host_and_port() {
        let relay: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        for (url, want) in [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:40001/test",
            ),
            (
                "postgres://u:p@db.example:6000/x?sslmode=disable",
                "postgres://u:p@127.0.0.1:40001/x?sslmode=disable",
            ),
            ("postgresql://localhost", "postgresql://127.0.0.1:40001"),
            (
                "postgres://postgres@127.0.0.1:5432/test?options[search_path]=s,public",
                "postgres://postgres@127.0.0.1:40001/test?options[search_path]=s,public",
            ),
        ] {
            assert_eq!(url_via(url, relay), want, "{url}");
        }
    }
}
