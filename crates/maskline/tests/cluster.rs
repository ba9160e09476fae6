//! Several nodes over one PostgreSQL: the real binary, twice, on a schema
//! of the test's own. What one node commits routes on the other; the
//! database keeps every allocation invariant when both bind at once; a node
//! that loses the database keeps routing from memory and catches up; the
//! sweeper and the webhook outbox act once per item even when a node dies.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::{ADMIN_KEY, SWITCH_KEY, Server, eventually, party, x};
use maskline_store::testing::{self, Schema};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A node of a cluster on `db` (a PostgreSQL URL).
async fn node(dir: &std::path::Path, db: &str, extra: &[(&str, &str)]) -> Server {
    // One master key for the cluster, as a deployment shares the file.
    let master = dir.parent().unwrap().join("master.key");
    let master = master.to_str().unwrap();
    let mut env = vec![
        ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
        ("MASKLINE_SWITCH_KEY", SWITCH_KEY),
        ("MASKLINE_DATABASE_URL", db),
        ("MASKLINE_DATABASE_POOL_SIZE", "4"),
        ("MASKLINE_MASTER_KEY_FILE", master),
    ];
    env.extend_from_slice(extra);
    Server::start_with(dir, &env).await
}

async fn cluster(schema: &Schema, extra: &[(&str, &str)]) -> (tempfile::TempDir, Server, Server) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("1")).unwrap();
    std::fs::create_dir_all(dir.path().join("2")).unwrap();
    let url = schema.url();
    let (d1, d2) = (dir.path().join("1"), dir.path().join("2"));
    let (one, two) = tokio::join!(node(&d1, &url, extra), node(&d2, &url, extra));
    (dir, one, two)
}

/// The warnings and errors a node logged, for failure messages.
fn warnings(node: &Server) -> String {
    node.logs()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(40)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tenant created on `one`, usable on `two` once it has heard of it.
async fn tenant_on_both(one: &Server, two: &Server, name: &str) -> (String, String) {
    let (id, key) = one.create_tenant(name).await;
    eventually(10, "the tenant's key to work on node 2", || async {
        let (st, _) = two.call("GET", "/v1/numbers", Some(&key), None).await;
        (st == 200).then_some(())
    })
    .await;
    (id, key)
}

/// Every pair of live bindings on one X that breaks an allocation rule, as
/// the database sees it (live over [created_at, live_until)).
async fn violations(schema: &Schema) -> i64 {
    let mut conn = schema.connect().await;
    let overlapping =
        "int8range(p.created_at, p.live_until) && int8range(q.created_at, q.live_until)";
    let checks = [
        // A party in two live bindings on one X (as A or B, either side).
        format!(
            "SELECT count(*) FROM bindings p JOIN bindings q ON p.x = q.x AND p.id < q.id \
             AND {overlapping} AND p.mode <> 'axn' AND q.mode <> 'axn' \
             AND (p.a IN (q.a, q.b) OR p.b IN (q.a, q.b))"
        ),
        // Two modes on one X at once.
        format!(
            "SELECT count(*) FROM bindings p JOIN bindings q ON p.x = q.x AND p.id < q.id \
             AND {overlapping} AND p.mode <> q.mode"
        ),
        // An axn binding sharing its X.
        format!(
            "SELECT count(*) FROM bindings p JOIN bindings q ON p.x = q.x AND p.id < q.id \
             AND {overlapping} AND (p.mode = 'axn' OR q.mode = 'axn')"
        ),
        // An X outside the binding's tenant's pool.
        "SELECT count(*) FROM bindings b LEFT JOIN numbers n \
         ON n.number = b.x AND n.tenant_id = b.tenant_id WHERE n.number IS NULL"
            .to_owned(),
    ];
    let mut total = 0;
    for sql in checks {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{sql}");
        total += n;
    }
    total
}

/// The issue's proof: two `maskline serve` on one PostgreSQL, 2,000
/// concurrent binds split across them against a small pool, then every
/// invariant checked in SQL.
#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_binding_at_once_never_break_an_invariant() {
    let schema = Schema::create().await;
    let (_dir, one, two) = cluster(&schema, &[]).await;
    let (_, key) = tenant_on_both(&one, &two, "acme").await;
    // 12 numbers; 2,000 binds of 40 As and 40 Bs (axb) and some axn: the
    // pool runs out and the same parties contend for the same Xs.
    let pool: Vec<String> = (1..=12).map(x).collect();
    one.import(&key, &pool.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    eventually(10, "the pool on node 2", || async {
        let (_, v) = two.call("GET", "/v1/numbers", Some(&key), None).await;
        (v["items"].as_array().map_or(0, Vec::len) == 12).then_some(())
    })
    .await;

    let nodes = Arc::new([one, two]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..2_000u32 {
        let nodes = nodes.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let body = if i % 10 == 9 {
                json!({ "mode": "axn", "a": party(500 + i % 7) })
            } else {
                json!({ "mode": "axb", "a": party(i % 40), "b": party(100 + (i / 40) % 40) })
            };
            let (st, v) = nodes[(i % 2) as usize].bind(&key, body).await;
            (i % 2, st, v)
        }));
    }
    let mut created: Vec<(u32, Value)> = Vec::new();
    let mut refusals: HashMap<String, u32> = HashMap::new();
    for t in tasks {
        let (node, st, v) = t.await.unwrap();
        match st {
            201 => created.push((node, v)),
            409 | 422 => {
                *refusals
                    .entry(v["code"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1
            }
            _ => panic!("bind answered {st}: {v}"),
        }
    }
    let elapsed = started.elapsed();
    println!(
        "2,000 binds over two nodes in {elapsed:?}: {} created, refused {refusals:?}",
        created.len()
    );
    assert!(!created.is_empty());
    assert!(
        created.iter().any(|(n, _)| *n == 0) && created.iter().any(|(n, _)| *n == 1),
        "both nodes created bindings"
    );

    // Every invariant, in SQL, over everything the database holds.
    assert_eq!(violations(&schema).await, 0);
    // Every 201 is in the database, and nothing else is.
    let mut conn = schema.connect().await;
    let stored: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM bindings")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let stored: HashSet<String> = stored.iter().map(|u| u.to_string()).collect();
    let acked: HashSet<String> = created
        .iter()
        .map(|(_, v)| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        stored, acked,
        "stored bindings are exactly the acknowledged ones"
    );

    // And each node routes every binding, wherever it was created.
    for (_, b) in created.iter().filter(|(_, b)| b["mode"] == "axb").take(300) {
        let (a, bb, xx) = (
            b["a"].as_str().unwrap(),
            b["b"].as_str().unwrap(),
            b["x"].as_str().unwrap(),
        );
        for n in nodes.iter() {
            eventually(10, "the binding to route on both nodes", || async {
                let r = n.route(a, xx, None).await;
                (r["action"] == "connect" && r["to"] == bb).then_some(())
            })
            .await;
        }
    }
    for n in nodes.iter() {
        let (_, h) = n.call("GET", "/healthz", None, None).await;
        assert_eq!(h["status"], "ok", "{h}");
    }
}

/// Milliseconds until `check` holds on `node`, polling fast.
async fn until(
    node: &Server,
    what: &str,
    check: impl Fn(&Value) -> bool,
    route: (&str, &str),
) -> u128 {
    let started = Instant::now();
    loop {
        let r = node.route(route.0, route.1, None).await;
        if check(&r) {
            return started.elapsed().as_millis();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: not seen on the other node within 10 s (last decision {r})"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_on_one_node_routes_on_the_other() {
    let schema = Schema::create().await;
    let (_dir, one, two) = cluster(&schema, &[]).await;
    let (_, key) = tenant_on_both(&one, &two, "acme").await;
    one.import(&key, &[&x(1)]).await;
    eventually(10, "the number on node 2", || async {
        let (_, v) = two.call("GET", "/v1/numbers", Some(&key), None).await;
        (v["items"].as_array().map_or(0, Vec::len) == 1).then_some(())
    })
    .await;

    // Created on one: connects on two.
    let (st, b) = one
        .bind(&key, json!({ "mode": "axb", "a": party(1), "b": party(2) }))
        .await;
    assert_eq!(st, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let created = until(
        &two,
        "a new binding",
        |r| r["action"] == "connect" && r["to"] == party(2),
        (&party(1), &x(1)),
    )
    .await;

    // B changed on two (which has heard of it): routes to the new B on one.
    let (st, v) = two
        .call(
            "PATCH",
            &format!("/v1/bindings/{id}"),
            Some(&key),
            Some(json!({ "b": party(3) })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let changed = until(
        &one,
        "a changed B",
        |r| r["action"] == "connect" && r["to"] == party(3),
        (&party(1), &x(1)),
    )
    .await;

    // Unbound on one: refused on two.
    let (st, v) = one
        .call("DELETE", &format!("/v1/bindings/{id}"), Some(&key), None)
        .await;
    assert_eq!(st, 200, "{v}");
    let ended = until(
        &two,
        "an unbind",
        |r| r["action"] != "connect",
        (&party(1), &x(1)),
    )
    .await;
    println!(
        "seen on the other node after: created {created} ms, changed {changed} ms, ended {ended} ms"
    );

    // A binding created on two and changed at once on one (which may not
    // have heard of it yet) is changed, not refused.
    let (st, b) = two
        .bind(
            &key,
            json!({ "mode": "axb", "a": party(10), "b": party(11) }),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, v) = one
        .call(
            "PATCH",
            &format!("/v1/bindings/{}", b["id"].as_str().unwrap()),
            Some(&key),
            Some(json!({ "b": party(12) })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    until(
        &two,
        "a change of a binding made before the node heard of it",
        |r| r["to"] == party(12),
        (&party(10), &x(1)),
    )
    .await;

    // Webhook settings made on one are used by two's sender.
    let rx = Receiver::start().await;
    let (st, v) = one
        .call(
            "PUT",
            "/v1/webhook",
            Some(&key),
            Some(json!({ "url": rx.url })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // Two learns of the webhook asynchronously: bind on two until one of
    // its bindings' events arrives (each try with new parties, so none is
    // refused for a pair already bound).
    let mut tries = 0u32;
    eventually(10, "two's binding.created to be delivered", || {
        tries += 1;
        let (a, b) = (party(20 + 2 * tries), party(21 + 2 * tries));
        let (two, key, rx) = (&two, &key, &rx);
        async move {
            let (st, b) = two
                .bind(key, json!({ "mode": "axb", "a": a, "b": b }))
                .await;
            assert_eq!(st, 201, "{b}");
            let id = b["id"].as_str().unwrap().to_owned();
            tokio::time::sleep(Duration::from_millis(300)).await;
            rx.of_type("binding.created")
                .iter()
                .any(|r| r.json["data"]["id"] == id.as_str())
                .then_some(())
        }
    })
    .await;
}

/// A TCP relay to PostgreSQL that the test can cut and restore.
struct Relay {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (target, up2, conns2) = (target.to_owned(), up.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = client.shutdown().await;
                    continue;
                }
                let target = target.clone();
                conns2.lock().push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Relay { port, up, conns }
    }

    /// Closes every relayed connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_loses_the_database_routes_from_memory_and_catches_up() {
    let schema = Schema::create().await;
    let relay = Relay::start(&testing::server_addr().to_string()).await;
    let direct = schema.url();
    // Node 2 reaches PostgreSQL only through the relay.
    let relayed = testing::url_via(
        &direct,
        format!("127.0.0.1:{}", relay.port).parse().unwrap(),
    );
    assert_ne!(relayed, direct);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("1")).unwrap();
    std::fs::create_dir_all(dir.path().join("2")).unwrap();
    let one = node(&dir.path().join("1"), &direct, &[]).await;
    let two = node(&dir.path().join("2"), &relayed, &[]).await;
    let (_, key) = tenant_on_both(&one, &two, "acme").await;
    one.import(&key, &[&x(1), &x(2)]).await;
    let (st, b) = one
        .bind(&key, json!({ "mode": "axb", "a": party(1), "b": party(2) }))
        .await;
    assert_eq!(st, 201, "{b}");
    let xx = b["x"].as_str().unwrap().to_owned();
    until(&two, "a binding", |r| r["to"] == party(2), (&party(1), &xx)).await;

    relay.cut();
    eventually(20, "node 2 to report itself degraded", || async {
        let (st, h) = two.call("GET", "/healthz", None, None).await;
        assert_eq!(st, 200);
        (h["status"] == "degraded").then_some(())
    })
    .await;
    // Still routing from memory; changes cannot be made durable.
    let r = two.route(&party(1), &xx, None).await;
    assert_eq!(
        (r["action"].as_str(), r["to"].as_str()),
        (Some("connect"), Some(party(2).as_str()))
    );
    let (st, v) = two
        .bind(&key, json!({ "mode": "axb", "a": party(5), "b": party(6) }))
        .await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["code"], "storage_unavailable");
    // Meanwhile node 1 creates and ends bindings.
    let (st, fresh) = one
        .bind(&key, json!({ "mode": "axb", "a": party(3), "b": party(4) }))
        .await;
    assert_eq!(st, 201, "{fresh}");
    let (st, _) = one
        .call(
            "DELETE",
            &format!("/v1/bindings/{}", b["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, 200);
    let r = two
        .route(&party(3), fresh["x"].as_str().unwrap(), None)
        .await;
    assert_ne!(r["action"], "connect", "node 2 cannot know of it yet");

    relay.restore();
    eventually(30, "node 2 to be healthy again", || async {
        let (_, h) = two.call("GET", "/healthz", None, None).await;
        (h["status"] == "ok").then_some(())
    })
    .await;
    // Caught up: what changed during the outage routes correctly.
    until(
        &two,
        "a binding created during the outage",
        |r| r["to"] == party(4),
        (&party(3), fresh["x"].as_str().unwrap()),
    )
    .await;
    until(
        &two,
        "a binding ended during the outage",
        |r| r["action"] != "connect",
        (&party(1), &xx),
    )
    .await;
    let (st, v) = two
        .bind(&key, json!({ "mode": "axb", "a": party(5), "b": party(6) }))
        .await;
    assert_eq!(st, 201, "{v}");
}

/// Expiry and the webhook outbox with two nodes: each binding ends once and
/// each event is delivered, even when the node that created the bindings
/// (and claimed some deliveries) is killed mid-delivery.
#[tokio::test(flavor = "multi_thread")]
async fn background_work_acts_once_per_item_and_survives_a_node_dying() {
    let schema = Schema::create().await;
    // A claimed delivery's lease is 2 × the timeout + 5 s: 9 s here.
    let extra = [
        ("MASKLINE_WEBHOOK_TIMEOUT_MS", "2000"),
        ("MASKLINE_WEBHOOK_FIRST_RETRY_MS", "100"),
        ("MASKLINE_COOLDOWN_SECS", "0"),
    ];
    let (_dir, mut one, two) = cluster(&schema, &extra).await;
    let (_, key) = tenant_on_both(&one, &two, "acme").await;
    let pool: Vec<String> = (1..=5).map(x).collect();
    one.import(&key, &pool.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    // The receiver holds each request 1 s before answering 200: node 1 is
    // killed while holding claims.
    let rx = Receiver::scripted(
        Vec::new(),
        common::receiver::Answer::Delay(Duration::from_secs(1), 200, String::new()),
    )
    .await;
    let (st, v) = one
        .call(
            "PUT",
            "/v1/webhook",
            Some(&key),
            Some(json!({ "url": rx.url })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let mut ids = Vec::new();
    for i in 0..100u32 {
        let n = if i % 2 == 0 { &one } else { &two };
        let (st, b) = n
            .bind(
                &key,
                json!({ "mode": "axb", "a": party(i), "b": party(1_000 + i), "expires_in": 2 }),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    // Node 1 is mid-delivery (requests held by the receiver): kill it.
    eventually(10, "deliveries to be in flight", || async {
        (!rx.requests().is_empty()).then_some(())
    })
    .await;
    one.kill9();

    // Node 2 expires all of them (node 1's too) and delivers every event,
    // node 1's claimed ones once their lease ends.
    let mut conn = schema.connect().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let undelivered: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE state <> 'delivered'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if undelivered == 0 && events == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{undelivered} of {events} events undelivered after 90 s; node 2's warnings:\n{}",
            warnings(&two)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let per_binding: Vec<(String, i64)> =
        sqlx::query_as("SELECT type, count(*) FROM events GROUP BY type ORDER BY type")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        per_binding,
        vec![
            ("binding.created".to_owned(), 100),
            ("binding.ended".to_owned(), 100)
        ],
        "one binding.ended per binding, recorded once"
    );
    let ended: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bindings WHERE end_reason = 'expired'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(ended, 100);
    // The receiver got every event (node 1's in-flight ones at least once).
    let got: HashSet<(String, String)> = rx
        .requests()
        .iter()
        .map(|r| {
            (
                r.json["type"].as_str().unwrap().to_owned(),
                r.json["data"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for id in &ids {
        assert!(got.contains(&("binding.created".to_owned(), id.clone())));
        assert!(got.contains(&("binding.ended".to_owned(), id.clone())));
    }
    let total = rx.requests().len();
    println!("{total} requests for 200 events (node 1 killed with claims held)");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_applies_the_schema_and_serve_then_starts_on_it() {
    let schema = Schema::create().await;
    let out = std::process::Command::new(common::bin())
        .arg("migrate")
        .env_clear()
        .env("MASKLINE_DATABASE_URL", schema.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    let mut conn = schema.connect().await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(tables >= 9, "{tables} tables");
    // Without a database URL, migrate says what it needs.
    let out = std::process::Command::new(common::bin())
        .arg("migrate")
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MASKLINE_DATABASE_URL"));
}

/// The README's cluster example, as shipped in `examples/cluster/`: Kamailio's
/// dispatcher in front of two nodes on one PostgreSQL spreads a trunk's
/// calls over both, and each call connects through whichever node took it.
/// Two nodes taking calls over UDP (their SIP ports returned) and sending
/// them to `gateway`, with a tenant whose binding party 1 <-> party 2 on
/// x(1) routes on both (its key returned).
async fn sip_cluster(
    schema: &Schema,
    gateway: &common::sipp::Sipp,
    extra: &[(&str, &str)],
) -> (tempfile::TempDir, Vec<Server>, [u16; 2], String) {
    use common::sipp::{self, Transport};

    let (p1, p2) = (sipp::free_sip_port(), sipp::free_sip_port());
    let base = [
        (
            "MASKLINE_SIP_OUTBOUND".to_owned(),
            format!("127.0.0.1:{}", gateway.port),
        ),
        ("MASKLINE_SIP_TRUSTED".to_owned(), "127.0.0.1/32".to_owned()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for (i, port) in [(1, p1), (2, p2)] {
        let d = dir.path().join(i.to_string());
        std::fs::create_dir_all(&d).unwrap();
        let listen = format!("127.0.0.1:{port}");
        let mut env: Vec<(&str, &str)> =
            base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("MASKLINE_SIP_LISTEN", &listen));
        env.extend_from_slice(extra);
        nodes.push(node(&d, &schema.url(), &env).await);
        eventually(10, "the node's SIP port", || async move {
            sipp::port_bound(Transport::Udp, port).then_some(())
        })
        .await;
    }
    let (_, key) = tenant_on_both(&nodes[0], &nodes[1], "ride").await;
    nodes[0].import(&key, &[&x(1)]).await;
    let (st, b) = nodes[0]
        .bind(&key, json!({ "mode": "axb", "a": party(1), "b": party(2) }))
        .await;
    assert_eq!(st, 201, "{b}");
    for n in &nodes {
        until(
            n,
            "the binding",
            |r| r["action"] == "connect",
            (&party(1), &x(1)),
        )
        .await;
    }
    (dir, nodes, [p1, p2], key)
}

#[tokio::test(flavor = "multi_thread")]
async fn kamailio_dispatcher_spreads_calls_over_two_nodes() {
    use common::sipp::{self, Sipp, Transport};

    let schema = Schema::create().await;
    let gateway = Sipp::uas("uas_answer.xml", Transport::Udp, &["-m", "40"]);
    let (_dir, nodes, [p1, p2], key) = sip_cluster(&schema, &gateway, &[]).await;

    // Kamailio with the example's configuration, its nodes and port set by
    // its defines.
    let kdir = tempfile::tempdir().unwrap();
    let list = kdir.path().join("dispatcher.list");
    std::fs::write(
        &list,
        format!("1 sip:127.0.0.1:{p1} 0 0\n1 sip:127.0.0.1:{p2} 0 0\n"),
    )
    .unwrap();
    let kport = sipp::free_sip_port();
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/cluster/kamailio.cfg");
    let log = std::fs::File::create(kdir.path().join("kamailio.log")).unwrap();
    let mut kamailio = KillOnDrop(
        std::process::Command::new("kamailio")
            .arg("-f")
            .arg(&config)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(kdir.path())
            .arg("-A")
            .arg(format!("LISTEN=udp:127.0.0.1:{kport}"))
            .arg("-A")
            .arg(format!("DS_LIST=\"{}\"", list.display()))
            .arg("-A")
            .arg(format!(
                "CTL_SOCKET=\"unix:{}\"",
                kdir.path().join("kamailio.ctl").display()
            ))
            .args(["-A", "PING_INTERVAL=1"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("kamailio (apt-get install -y kamailio)"),
    );
    let klog = || std::fs::read_to_string(kdir.path().join("kamailio.log")).unwrap_or_default();
    let started = Instant::now();
    while !sipp::port_bound(Transport::Udp, kport) {
        if let Ok(Some(status)) = kamailio.0.try_wait() {
            panic!("kamailio exited ({status}):\n{}", klog());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "Kamailio did not bind:\n{}",
            klog()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 20 calls from a trunk to Kamailio, A calling X.
    let mut trunk = Sipp::uac(
        "uac_call.xml",
        &format!("127.0.0.1:{kport}"),
        Transport::Udp,
        &x(1),
        &[("caller", &party(1))],
        &["-m", "20", "-r", "10", "-d", "100"],
    );
    let status = trunk.wait(Duration::from_secs(60)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "the trunk's calls failed:\n{}",
        klog()
    );

    // Both nodes took calls, and every call left one CDR.
    let mut per_node = Vec::new();
    for n in &nodes {
        let (_, text) = n.call("GET", "/metrics", None, None).await;
        let text = text.as_str().unwrap_or_default().to_owned();
        let calls: f64 = text
            .lines()
            .filter(|l| l.starts_with("maskline_calls_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        per_node.push(calls);
    }
    println!("calls per node through Kamailio: {per_node:?}");
    assert!(
        per_node.iter().all(|&c| c > 0.0),
        "{per_node:?}\n{}",
        klog()
    );
    // A CDR is queued as the BYE is answered and commits a moment later.
    let cdrs = eventually(10, "a CDR for each of the 20 calls", || async {
        let cdrs = nodes[1].list_all("/v1/calls", &key, 100).await;
        (cdrs.len() >= 20).then_some(cdrs)
    })
    .await;
    assert_eq!(cdrs.len(), 20);
    assert!(cdrs.iter().all(|c| c["final_status"] == 200), "{cdrs:?}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SIGTERM: Kamailio's main process then stops its workers too.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_works_on_every_node_as_soon_as_its_201_is_sent_and_revocation_reaches_them() {
    let schema = Schema::create().await;
    let (_dir, one, two) = cluster(&schema, &[]).await;
    // A tenant created on one is known on two at once (its first key too).
    let (_, first) = one.create_tenant("acme").await;
    let (st, _) = two.call("GET", "/v1/numbers", Some(&first), None).await;
    assert_eq!(st, 200, "the new tenant's key was refused on node 2");
    for i in 0..20 {
        let (st, created) = one.call("POST", "/v1/keys", Some(&first), None).await;
        assert_eq!(st, 201, "{created}");
        let key = created["key"].as_str().unwrap().to_owned();
        // No wait: the other node must accept it now.
        let (st, p) = two.call("GET", "/v1/bindings", Some(&key), None).await;
        assert_eq!(
            st, 200,
            "key {i} refused on node 2 right after its 201: {p}"
        );
    }
    // Revoked on two: refused on one once it hears of it.
    let (_, keys) = two.call("GET", "/v1/keys", Some(&first), None).await;
    let items = keys["items"].as_array().unwrap();
    assert_eq!(items.len(), 21);
    let (st, created) = one.call("POST", "/v1/keys", Some(&first), None).await;
    assert_eq!(st, 201);
    let (key, id) = (
        created["key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    let (st, _) = one.call("GET", "/v1/bindings", Some(&key), None).await;
    assert_eq!(st, 200);
    let (st, _) = two
        .call("DELETE", &format!("/v1/keys/{id}"), Some(&first), None)
        .await;
    assert_eq!(st, 204);
    eventually(10, "the revoked key refused on node 1", || async {
        let (st, _) = one.call("GET", "/v1/bindings", Some(&key), None).await;
        (st == 401).then_some(())
    })
    .await;
}

/// Toll-fraud rules set on one node hold on the other as soon as it has
/// heard of them: a bind there outside them is refused.
#[tokio::test(flavor = "multi_thread")]
async fn call_rules_set_on_one_node_hold_on_the_other() {
    let schema = Schema::create().await;
    let (_dir, one, two) = cluster(&schema, &[]).await;
    let (_, key) = tenant_on_both(&one, &two, "acme").await;
    one.import(&key, &[&x(1), &x(2)]).await;
    let us = "+12125550123";
    let (st, v) = one
        .call(
            "PUT",
            "/v1/settings/calls",
            Some(&key),
            Some(json!({"allow_prefixes": ["+86", "+1"], "deny_prefixes": ["+86170"]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    eventually(10, "node 2 to allow the US", || async {
        let (_, got) = two
            .call("GET", "/v1/settings/calls", Some(&key), None)
            .await;
        (got["allow_prefixes"] == json!(["+86", "+1"])).then_some(())
    })
    .await;
    let (st, b) = two
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": us}))
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, p) = two
        .bind(
            &key,
            json!({"mode": "axb", "a": party(2), "b": "+8617012345678"}),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (422, Some("destination_not_allowed")),
        "{p}"
    );
}

/// A tenant's own API rate set through one node is applied by the other.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_rate_set_on_one_node_holds_on_the_other() {
    let schema = Schema::create().await;
    let (_dir, one, two) = cluster(&schema, &[]).await;
    let (id, key) = tenant_on_both(&one, &two, "acme").await;
    let (st, v) = one
        .call(
            "PATCH",
            &format!("/v1/tenants/{id}"),
            Some(ADMIN_KEY),
            Some(json!({"rate_limit": 1})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    eventually(10, "node 2 to know the rate", || async {
        let (_, list) = two.call("GET", "/v1/tenants", Some(ADMIN_KEY), None).await;
        (list["items"][0]["rate_limit"] == 1).then_some(())
    })
    .await;
    // One a second, bursts of two: node 2 refuses within a few at once
    // (at the server's 5,000 a second all 30 would pass).
    let mut refused = false;
    for _ in 0..30 {
        let (st, _) = two.call("GET", "/v1/bindings", Some(&key), None).await;
        if st == 429 {
            refused = true;
            break;
        }
        assert_eq!(st, 200);
    }
    assert!(refused, "node 2 applies the tenant's rate");
}

/// A tenant's concurrent-call cap holds over both nodes: with its one call
/// up on node 1, node 2 refuses the next with 503 (once node 1's report of
/// it has arrived), and takes it again when that call has ended.
#[tokio::test(flavor = "multi_thread")]
async fn call_caps_hold_across_two_nodes() {
    use common::sipp::{Sipp, Transport};

    let schema = Schema::create().await;
    let mut gateway = Sipp::uas("uas_answer.xml", Transport::Udp, &["-m", "10"]);
    let (_dir, nodes, ports, key) = sip_cluster(&schema, &gateway, &[]).await;
    let rules = |n: usize| {
        let (node, key) = (&nodes[n], &key);
        async move {
            let (st, v) = node
                .call("GET", "/v1/settings/calls", Some(key), None)
                .await;
            assert_eq!(st, 200, "{v}");
            v
        }
    };
    let (st, v) = nodes[0]
        .call(
            "PUT",
            "/v1/settings/calls",
            Some(&key),
            Some(json!({"allow_prefixes": ["+86"], "max_concurrent_calls": 1})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    eventually(10, "node 2 to learn the cap", || async {
        (rules(1).await["max_concurrent_calls"] == 1).then_some(())
    })
    .await;
    let call = |n: usize, scenario: &str, extra: &[&str]| {
        Sipp::uac(
            scenario,
            &format!("127.0.0.1:{}", ports[n]),
            Transport::Udp,
            &x(1),
            &[("caller", &party(1))],
            extra,
        )
    };

    let mut live = call(0, "uac_call.xml", &["-d", "4000"]);
    eventually(10, "node 2 to count node 1's call", || async {
        (rules(1).await["calls_in_progress"] == 1).then_some(())
    })
    .await;
    let mut over = call(1, "uac_expect_fail.xml", &[]);
    assert_eq!(
        over.wait(Duration::from_secs(30)).await.code(),
        Some(0),
        "{}",
        over.report()
    );
    assert_eq!(over.invite_final_status(), Some(503), "{}", over.report());
    assert_eq!(
        live.wait(Duration::from_secs(30)).await.code(),
        Some(0),
        "{}",
        live.report()
    );
    eventually(10, "node 2 to see the call end", || async {
        (rules(1).await["calls_in_progress"] == 0).then_some(())
    })
    .await;
    let mut next = call(1, "uac_call.xml", &["-d", "100"]);
    assert_eq!(
        next.wait(Duration::from_secs(30)).await.code(),
        Some(0),
        "{}",
        next.report()
    );
    gateway.kill();
    assert_eq!(
        gateway.received_requests("INVITE").len(),
        2,
        "{}",
        gateway.report()
    );
    let cdrs = eventually(10, "the three CDRs", || async {
        let cdrs = nodes[1].list_all("/v1/calls", &key, 100).await;
        (cdrs.len() >= 3).then_some(cdrs)
    })
    .await;
    let limited: Vec<_> = cdrs
        .iter()
        .filter(|c| c["refusal"] == "call_limit")
        .collect();
    assert_eq!(limited.len(), 1, "{cdrs:#?}");
    assert_eq!(limited[0]["final_status"], 503, "{cdrs:#?}");
}

/// A node killed for good during an answered call: once it has been silent
/// for MASKLINE_NODE_TIMEOUT_SECS, the other node writes the call's CDR
/// (`node_restart`), once.
#[tokio::test(flavor = "multi_thread")]
async fn the_calls_of_a_node_that_never_returns_get_their_cdrs_from_another() {
    use common::sipp::{Sipp, Transport};

    let schema = Schema::create().await;
    let mut gateway = Sipp::uas("uas_answer_wait_bye.xml", Transport::Udp, &[]);
    let (_dir, mut nodes, ports, key) =
        sip_cluster(&schema, &gateway, &[("MASKLINE_NODE_TIMEOUT_SECS", "15")]).await;
    let mut caller = Sipp::uac(
        "uac_wait_bye.xml",
        &format!("127.0.0.1:{}", ports[1]),
        Transport::Udp,
        &x(1),
        &[("caller", &party(1))],
        &[],
    );
    {
        let gateway = &gateway;
        eventually(30, "the call to be answered", || async move {
            (!gateway.received_requests("ACK").is_empty()).then_some(())
        })
        .await;
    }
    let answered = Instant::now();
    // The answer is in node 2's open-call journal before it dies.
    eventually(10, "the journal to hold the answered call", || async {
        let mut conn = schema.connect().await;
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM open_calls WHERE answered_at IS NOT NULL")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        (n == 1).then_some(())
    })
    .await;
    let up_for = answered.elapsed();
    nodes[1].kill9();
    caller.kill();
    gateway.kill();

    let cdr = eventually(60, "node 1 to write the dead node's CDR", || async {
        let cdrs = nodes[0].list_all("/v1/calls", &key, 100).await;
        cdrs.into_iter()
            .find(|c| c["release_reason"] == "node_restart")
    })
    .await;
    assert_eq!(cdr["final_status"], 200, "{cdr:#}");
    assert_eq!(cdr["released_by"], "system", "{cdr:#}");
    // It ends at the dead node's last heartbeat, not when it was found.
    let talked = cdr["duration_ms"].as_i64().unwrap();
    assert!(
        talked <= up_for.as_millis() as i64 + 1_000,
        "{talked} ms talked, up {up_for:?}: {cdr:#}"
    );
    // Later passes find nothing left to close.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let cdrs = nodes[0].list_all("/v1/calls", &key, 100).await;
    assert_eq!(cdrs.len(), 1, "{cdrs:#?}");
}
