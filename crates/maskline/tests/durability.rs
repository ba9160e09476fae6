//! Concurrency, idempotency and crash durability, against the real binary.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{Value, json};

async fn all_bindings(s: &Server, key: &str) -> Vec<Value> {
    s.list_all("/v1/bindings", key, 1000).await
}

/// The allocation invariants, checked on what the API reports.
fn assert_invariants(bindings: &[Value]) {
    let live: Vec<&Value> = bindings.iter().filter(|b| b["status"] != "ended").collect();
    let mut parties: HashSet<(String, String)> = HashSet::new();
    let mut modes: HashMap<String, String> = HashMap::new();
    let mut per_x: HashMap<String, usize> = HashMap::new();
    let mut exts: HashSet<(String, String)> = HashSet::new();
    for b in &live {
        let x = b["x"].as_str().unwrap().to_owned();
        let mode = b["mode"].as_str().unwrap().to_owned();
        if let Some(m) = modes.insert(x.clone(), mode.clone()) {
            assert_eq!(m, mode, "number {x} serves two modes");
        }
        *per_x.entry(x.clone()).or_default() += 1;
        for p in [&b["a"], &b["b"]] {
            if let Some(p) = p.as_str() {
                assert!(
                    parties.insert((x.clone(), p.to_owned())),
                    "party twice on {x}"
                );
            }
        }
        if let Some(e) = b["extension"].as_str() {
            assert!(
                exts.insert((x.clone(), e.to_owned())),
                "extension twice on {x}"
            );
        }
    }
    for (x, mode) in &modes {
        if mode == "axn" {
            assert_eq!(per_x[x], 1, "axn number {x} shared");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_concurrent_binds_on_a_small_pool_give_exactly_the_right_409s() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Server::start(dir.path()).await);
    let (_, key) = s.create_tenant("t").await;
    let pool: Vec<String> = (1..=5).map(x).collect();
    s.import(&key, &pool.iter().map(String::as_str).collect::<Vec<_>>())
        .await;

    // Two hubs (a driver, a merchant) each asking for 250 bindings with
    // distinct counterparts: each number can hold each hub once, so exactly
    // 5 + 5 succeed whatever the interleaving.
    let mut tasks = Vec::new();
    for i in 0..500u32 {
        let s = s.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let hub = if i % 2 == 0 { party(1) } else { party(2) };
            s.bind(&key, json!({"mode": "axb", "a": hub, "b": party(1000 + i)}))
                .await
        }));
    }
    let mut created = 0;
    let mut exhausted = 0;
    for t in tasks {
        let (st, v) = t.await.unwrap();
        match st {
            201 => created += 1,
            409 => {
                assert_eq!(v["code"], "pool_exhausted");
                exhausted += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((created, exhausted), (10, 490));
    let all = all_bindings(&s, &key).await;
    assert_eq!(all.len(), 10, "refused requests left nothing behind");
    assert_invariants(&all);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_mixed_modes_never_share_a_number_wrongly() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Server::start(dir.path()).await);
    let (_, key) = s.create_tenant("t").await;
    let pool: Vec<String> = (1..=8).map(x).collect();
    s.import(&key, &pool.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let mut tasks = Vec::new();
    for i in 0..300u32 {
        let s = s.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let body = match i % 3 {
                0 => json!({"mode": "axn", "a": party(i)}),
                1 => json!({"mode": "axe", "a": party(i)}),
                _ => json!({"mode": "axb", "a": party(1), "b": party(5000 + i)}),
            };
            s.bind(&key, body).await
        }));
    }
    let mut axn_created = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        let (st, v) = t.await.unwrap();
        assert!(
            st == 201 || (st == 409 && v["code"] == "pool_exhausted"),
            "{st} {v}"
        );
        if st == 201 && i % 3 == 0 {
            axn_created += 1;
        }
    }
    assert!(axn_created <= 8);
    assert_invariants(&all_bindings(&s, &key).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_replay_survives_restart_and_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path()).await;
    let (_, key) = s.create_tenant("t").await;
    s.import(&key, &[&x(1), &x(2)]).await;
    let body = json!({"mode": "axb", "a": party(1), "b": party(2), "external_ref": "order-7"});
    let post = |s: &Server, idem: &'static str, body: Value| {
        let req = s
            .client
            .post(format!("{}/v1/bindings", s.base))
            .bearer_auth(&key)
            .header("Idempotency-Key", idem)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            let replayed = res.headers().contains_key("idempotent-replayed");
            (res.status().as_u16(), replayed, res.text().await.unwrap())
        }
    };
    let (st, replayed, first) = post(&s, "order-7-bind", body.clone()).await;
    assert_eq!((st, replayed), (201, false));

    s.restart().await;
    let (st, replayed, again) = post(&s, "order-7-bind", body.clone()).await;
    assert_eq!((st, replayed), (201, true));
    assert_eq!(again, first, "the first response, byte for byte");

    s.restart_after_kill9().await;
    let (st, _, again) = post(&s, "order-7-bind", body.clone()).await;
    assert_eq!(st, 201);
    assert_eq!(again, first);

    let mut other = body.clone();
    other["b"] = json!(party(3));
    let (st, _, problem) = post(&s, "order-7-bind", other).await;
    assert_eq!(st, 422);
    assert!(problem.contains("idempotency_key_reused"), "{problem}");
    assert_eq!(
        all_bindings(&s, &key).await.len(),
        1,
        "one binding for one key"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_loses_no_acknowledged_binding() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    let (_, key) = server.create_tenant("t").await;
    let pool: Vec<String> = (1..=20).map(x).collect();
    server
        .import(&key, &pool.iter().map(String::as_str).collect::<Vec<_>>())
        .await;

    let acked: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let base = server.base.clone();
    let client = common::http();
    let mut tasks = Vec::new();
    for i in 0..2000u32 {
        let (acked, base, client, key) = (acked.clone(), base.clone(), client.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(format!("{base}/v1/bindings"))
                .bearer_auth(&key)
                .json(&json!({"mode": "axb", "a": party(10_000 + i), "b": party(20_000 + i)}))
                .send()
                .await;
            if let Ok(res) = res
                && res.status().as_u16() == 201
                && let Ok(v) = res.json::<Value>().await
            {
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                let x = v["x"].as_str().unwrap_or_default().to_owned();
                acked.lock().unwrap().push((id, x, party(10_000 + i)));
            }
        }));
    }
    eventually(60, "some binds acknowledged", || async {
        (acked.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    server.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200);

    server.restart_after_kill9().await;
    let stored: HashMap<String, Value> = all_bindings(&server, &key)
        .await
        .into_iter()
        .map(|b| (b["id"].as_str().unwrap().to_owned(), b))
        .collect();
    for (id, x, a) in &acked {
        let b = stored
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged binding {id} lost"));
        assert_eq!(b["x"].as_str(), Some(x.as_str()));
        let r = server.route(a, x, None).await;
        assert_eq!(r["action"], "connect", "the restored index routes {id}");
    }
    // Nothing invented: every stored binding came from one of our requests.
    let requested: HashSet<String> = (0..2000).map(|i| party(10_000 + i)).collect();
    for b in stored.values() {
        assert!(requested.contains(b["a"].as_str().unwrap()), "{b}");
    }
    assert_invariants(&stored.into_values().collect::<Vec<_>>());
}
