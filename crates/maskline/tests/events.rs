//! Events and webhooks end to end: the real binary delivering to a real
//! HTTP receiver on loopback.

mod common;

use std::time::Duration;

use common::receiver::{Answer, Receiver, signature_valid};
use common::{Server, eventually, party, x};
use serde_json::{Value, json};

/// Retries come fast in tests; everything else is as shipped.
const FAST_RETRY: [(&str, &str); 3] = [
    ("MASKLINE_ADMIN_KEY", common::ADMIN_KEY),
    ("MASKLINE_SWITCH_KEY", common::SWITCH_KEY),
    ("MASKLINE_WEBHOOK_FIRST_RETRY_MS", "100"),
];

async fn tenant_with_numbers(s: &Server, name: &str, first: u32) -> String {
    let (_, key) = s.create_tenant(name).await;
    let numbers: Vec<String> = (first..first + 3).map(x).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    s.import(&key, &refs).await;
    key
}

async fn put_webhook(s: &Server, key: &str, body: Value) -> Value {
    let (st, v) = s.call("PUT", "/v1/webhook", Some(key), Some(body)).await;
    assert_eq!(st, 200, "{v}");
    v
}

async fn bind_axb(s: &Server, key: &str, a: u32, b: u32) -> Value {
    let (st, v) = s
        .bind(key, json!({"mode": "axb", "a": party(a), "b": party(b)}))
        .await;
    assert_eq!(st, 201, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_are_signed_with_the_tenant_secret() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &FAST_RETRY).await;
    let key = tenant_with_numbers(&s, "acme", 1).await;
    let rx = Receiver::start().await;
    let hook = put_webhook(&s, &key, json!({ "url": rx.url })).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{hook}");
    assert_eq!(hook["events"], json!([]));
    // The secret is shown on PUT only, never on GET.
    let (st, got) = s.call("GET", "/v1/webhook", Some(&key), None).await;
    assert_eq!(st, 200);
    assert!(got.get("secret").is_none(), "{got}");
    assert_eq!(got["url"], rx.url);

    let b = bind_axb(&s, &key, 1, 2).await;
    let created = eventually(10, "binding.created delivered", || async {
        rx.of_type("binding.created").into_iter().next()
    })
    .await;
    assert_eq!(created.path, "/hook");
    assert_eq!(created.content_type.as_deref(), Some("application/json"));
    assert_eq!(created.event_id.as_deref(), created.json["id"].as_str());
    assert_eq!(
        created.json["data"], b,
        "the event carries the binding as the API shows it"
    );
    let sig = created.signature.clone().unwrap();
    assert!(signature_valid(&secret, &sig, &created.body), "{sig}");
    assert!(!signature_valid("whsec_another", &sig, &created.body));
    // The timestamp is now (Unix seconds).
    let t: i64 = sig
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - t).abs() < 60, "t={t} now={now}");

    // After a rotation only the new secret verifies.
    let (st, rotated) = s
        .call("POST", "/v1/webhook/rotate-secret", Some(&key), None)
        .await;
    assert_eq!(st, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let id = b["id"].as_str().unwrap();
    let (st, _) = s
        .call("DELETE", &format!("/v1/bindings/{id}"), Some(&key), None)
        .await;
    assert_eq!(st, 200);
    let ended = eventually(10, "binding.ended delivered", || async {
        rx.of_type("binding.ended").into_iter().next()
    })
    .await;
    let sig = ended.signature.unwrap();
    assert!(signature_valid(&new_secret, &sig, &ended.body));
    assert!(!signature_valid(&secret, &sig, &ended.body));
    assert_eq!(ended.json["data"]["end_reason"], "unbound");
    assert_eq!(ended.json["data"]["status"], "cooling");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_deliveries_are_retried_with_the_same_id_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &FAST_RETRY).await;
    let key = tenant_with_numbers(&s, "acme", 1).await;
    let rx = Receiver::scripted(
        vec![
            Answer::Status(500, String::new()),
            Answer::Status(500, String::new()),
        ],
        Answer::Status(200, String::new()),
    )
    .await;
    put_webhook(&s, &key, json!({ "url": rx.url })).await;
    let b = bind_axb(&s, &key, 1, 2).await;
    let id = b["id"].as_str().unwrap().to_owned();
    // Two more changes of the same binding while the first event is retried.
    let (st, _) = s
        .call(
            "PATCH",
            &format!("/v1/bindings/{id}"),
            Some(&key),
            Some(json!({"b": party(3)})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .call("DELETE", &format!("/v1/bindings/{id}"), Some(&key), None)
        .await;
    assert_eq!(st, 200);

    let got = eventually(20, "all three events delivered", || async {
        let r = rx.requests();
        (r.len() >= 5 && r.last().unwrap().json["type"] == "binding.ended").then_some(r)
    })
    .await;
    let types: Vec<&str> = got
        .iter()
        .map(|r| r.json["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "binding.created",
            "binding.created",
            "binding.created",
            "binding.updated",
            "binding.ended"
        ],
        "retries first, then the later events in order"
    );
    let first_id = got[0].event_id.clone().unwrap();
    assert!(
        got[..3]
            .iter()
            .all(|r| r.event_id.as_deref() == Some(&first_id))
    );
    assert!(
        got[..3].iter().all(|r| r.body == got[0].body),
        "the same bytes each time"
    );
    assert_eq!(got[3].json["data"]["changed"], json!(["b"]));
    assert_eq!(got[3].json["data"]["b"], party(3));

    // The event log shows the attempts.
    let (st, e) = s
        .call("GET", &format!("/v1/events/{first_id}"), Some(&key), None)
        .await;
    assert_eq!(st, 200, "{e}");
    assert_eq!(e["delivery"]["state"], "delivered");
    assert_eq!(e["delivery"]["attempts"], 3);
    assert_eq!(e["delivery"]["last_status"], 200);
    assert_eq!(e["data"], got[0].json["data"]);

    // The outcomes are counted.
    let metrics = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} in\n{text}"))
    };
    assert_eq!(
        value(r#"maskline_webhook_deliveries_total{outcome="retry"}"#),
        2.0
    );
    assert_eq!(
        value(r#"maskline_webhook_deliveries_total{outcome="delivered"}"#),
        3.0
    );
    assert!(
        text.contains("maskline_webhook_delivery_seconds_count"),
        "{text}"
    );
    assert!(
        text.contains("maskline_event_delivery_lag_seconds_count"),
        "{text}"
    );
    assert!(text.contains("maskline_webhook_backlog"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_listed_filtered_and_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &FAST_RETRY).await;
    let key = tenant_with_numbers(&s, "acme", 1).await;
    let other = tenant_with_numbers(&s, "other", 10).await;
    // Before any webhook: recorded, listed, never sent.
    let b1 = bind_axb(&s, &key, 1, 2).await;
    bind_axb(&s, &other, 1, 2).await;
    let rx = Receiver::start().await;
    put_webhook(
        &s,
        &key,
        json!({ "url": rx.url, "events": ["binding.ended"] }),
    )
    .await;
    let b2 = bind_axb(&s, &key, 3, 4).await;
    for b in [&b1, &b2] {
        let id = b["id"].as_str().unwrap();
        let (st, _) = s
            .call("DELETE", &format!("/v1/bindings/{id}"), Some(&key), None)
            .await;
        assert_eq!(st, 200);
    }
    eventually(10, "two binding.ended delivered", || async {
        (rx.of_type("binding.ended").len() == 2).then_some(())
    })
    .await;
    assert!(rx.of_type("binding.created").is_empty(), "filtered out");

    let all = s.list_all("/v1/events", &key, 2).await;
    let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "binding.created",
            "binding.created",
            "binding.ended",
            "binding.ended"
        ]
    );
    let states: Vec<&str> = all
        .iter()
        .map(|e| e["delivery"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["none", "none", "delivered", "delivered"]);
    assert_eq!(all[0]["data"]["id"], b1["id"]);
    // Another tenant sees only its own.
    let theirs = s.list_all("/v1/events", &other, 100).await;
    assert_eq!(theirs.len(), 1);
    let (st, p) = s
        .call(
            "GET",
            &format!("/v1/events/{}", all[0]["id"].as_str().unwrap()),
            Some(&other),
            None,
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (404, Some("not_found")));

    // Polling: after an id, and by type.
    let after = all[1]["id"].as_str().unwrap();
    let (st, page) = s
        .call(
            "GET",
            &format!("/v1/events?after={after}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, page) = s
        .call("GET", "/v1/events?type=binding.created", Some(&key), None)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, page) = s
        .call("GET", "/v1/events?type=call.*", Some(&key), None)
        .await;
    assert!(page["items"].as_array().unwrap().is_empty());
    for (query, param) in [
        ("type=binding.deleted", "type"),
        ("after=nope", "after"),
        (
            &format!("after={}", theirs[0]["id"].as_str().unwrap()) as &str,
            "after",
        ),
        ("cursor=x&after=y", "cursor"),
        ("limit=0", "limit"),
        // Unknown parameters are refused, not ignored.
        ("since=x", ""),
    ] {
        let (st, p) = s
            .call("GET", &format!("/v1/events?{query}"), Some(&key), None)
            .await;
        assert_eq!(st, 400, "{query}: {p}");
        assert_eq!(p["code"], "invalid_parameter", "{query}: {p}");
        assert_eq!(p["field"].as_str().unwrap_or(""), param, "{query}: {p}");
    }

    // Redelivery sends an event again, even one never sent (filtered).
    let first = all[0]["id"].as_str().unwrap();
    let (st, e) = s
        .call(
            "POST",
            &format!("/v1/events/{first}/redeliver"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, 202, "{e}");
    assert_eq!(e["delivery"]["state"], "pending");
    let again = eventually(10, "redelivered", || async {
        rx.of_type("binding.created").into_iter().next()
    })
    .await;
    assert_eq!(again.event_id.as_deref(), Some(first));
    let (st, p) = s
        .call(
            "POST",
            "/v1/events/01900000-0000-7000-8000-000000000000/redeliver",
            Some(&key),
            None,
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (404, Some("not_found")));
    let (st, p) = s
        .call(
            "POST",
            &format!("/v1/events/{}/redeliver", theirs[0]["id"].as_str().unwrap()),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (404, Some("webhook_not_set")),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_settings_are_validated_and_a_bad_request_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &FAST_RETRY).await;
    let key = tenant_with_numbers(&s, "acme", 1).await;
    for (body, field) in [
        (json!({"url": "ftp://example.com/"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "http://u:p@example.com/"}), "url"),
        (
            json!({"url": "http://example.com/", "events": ["call.*", "cal.ended"]}),
            "events[1]",
        ),
        (
            json!({"url": "http://example.com/", "intercept": {"url": "gopher://x/"}}),
            "intercept.url",
        ),
        (
            json!({"url": "http://example.com/", "intercept": {"url": "http://x/", "timeout_ms": 10}}),
            "intercept.timeout_ms",
        ),
        (
            json!({"url": "http://example.com/", "intercept": {"url": "http://x/", "fallback": "maybe"}}),
            "intercept.fallback",
        ),
        (
            json!({"url": "http://example.com/", "secret": "mine"}),
            "secret",
        ),
    ] {
        let (st, p) = s
            .call("PUT", "/v1/webhook", Some(&key), Some(body.clone()))
            .await;
        assert_eq!(st, 400, "{body}: {p}");
        assert_eq!(p["field"], field, "{body}: {p}");
    }
    let (st, p) = s.call("GET", "/v1/webhook", Some(&key), None).await;
    assert_eq!((st, p["code"].as_str()), (404, Some("webhook_not_set")));
    let (st, p) = s
        .call("POST", "/v1/webhook/rotate-secret", Some(&key), None)
        .await;
    assert_eq!((st, p["code"].as_str()), (404, Some("webhook_not_set")));

    // A PUT keeps the secret; intercept settings get their defaults.
    let first = put_webhook(&s, &key, json!({"url": "http://127.0.0.1:9/a"})).await;
    let second = put_webhook(
        &s,
        &key,
        json!({"url": "http://127.0.0.1:9/b", "events": ["call.*"], "intercept": {"url": "http://127.0.0.1:9/ask"}}),
    )
    .await;
    assert_eq!(first["secret"], second["secret"]);
    assert_eq!(
        second["intercept"],
        json!({"url": "http://127.0.0.1:9/ask", "fallback": "allow", "timeout_ms": 800})
    );
    // Kept across a restart.
    let mut s = s;
    s.restart().await;
    let (st, got) = s.call("GET", "/v1/webhook", Some(&key), None).await;
    assert_eq!(st, 200);
    assert_eq!(got["url"], "http://127.0.0.1:9/b");
    assert_eq!(got["events"], json!(["call.*"]));
    let (st, _) = s.call("DELETE", "/v1/webhook", Some(&key), None).await;
    assert_eq!(st, 204);
    let (st, _) = s.call("GET", "/v1/webhook", Some(&key), None).await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_binding_sends_binding_ended() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &FAST_RETRY).await;
    let key = tenant_with_numbers(&s, "acme", 1).await;
    let rx = Receiver::start().await;
    put_webhook(&s, &key, json!({ "url": rx.url })).await;
    let (st, b) = s
        .bind(
            &key,
            json!({"mode": "axb", "a": party(1), "b": party(2), "expires_in": 1}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let ended = eventually(15, "binding.ended for the expiry", || async {
        rx.of_type("binding.ended").into_iter().next()
    })
    .await;
    assert_eq!(ended.json["data"]["id"], b["id"]);
    assert_eq!(ended.json["data"]["end_reason"], "expired");
    assert_eq!(ended.json["data"]["ended_at"], b["expires_at"]);
    // Exactly one, even as the sweeper keeps running.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.of_type("binding.ended").len(), 1);
}

/// Under load, with a receiver that always answers 200, each event arrives
/// exactly once and each binding's events in order (a read of the outbox
/// racing a recorded outcome once sent events twice).
#[tokio::test(flavor = "multi_thread")]
async fn each_event_is_sent_once_and_in_order_when_nothing_fails() {
    use std::collections::{HashMap, HashSet};

    const BINDS: usize = 1500;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &FAST_RETRY).await;
    let key = tenant_with_numbers(&s, "acme", 1).await;
    let rx = Receiver::start().await;
    put_webhook(&s, &key, json!({ "url": rx.url })).await;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (client, base, key) = (s.client.clone(), s.base.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (w..BINDS).step_by(16) {
                let body = json!({"mode": "axb", "a": party(10_000 + i as u32), "b": party(20_000 + i as u32)});
                let v: Value = client
                    .post(format!("{base}/v1/bindings"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let id = v["id"].as_str().unwrap().to_owned();
                // Every third binding also ends: two events in order.
                if i % 3 == 0 {
                    let st = client
                        .delete(format!("{base}/v1/bindings/{id}"))
                        .bearer_auth(&key)
                        .send()
                        .await
                        .unwrap()
                        .status();
                    assert_eq!(st, 200);
                }
                ids.push(id);
            }
            ids
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected = BINDS + BINDS.div_ceil(3);
    let got = eventually(60, "every event delivered", || async {
        let r = rx.requests();
        (r.len() >= expected).then_some(r)
    })
    .await;
    // Anything late would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = if rx.requests().len() > got.len() {
        rx.requests()
    } else {
        got
    };
    let ids: HashSet<&str> = got.iter().filter_map(|r| r.event_id.as_deref()).collect();
    assert_eq!(ids.len(), expected, "distinct events");
    assert_eq!(
        got.len(),
        expected,
        "{} events were sent twice",
        got.len() - ids.len()
    );
    let mut seen: HashMap<String, Vec<&str>> = HashMap::new();
    for r in &got {
        let binding = r.json["data"]["id"].as_str().unwrap().to_owned();
        seen.entry(binding)
            .or_default()
            .push(r.json["type"].as_str().unwrap());
    }
    for (binding, types) in seen {
        assert!(
            types == ["binding.created"] || types == ["binding.created", "binding.ended"],
            "{binding}: {types:?}"
        );
    }
}

/// The port a receiver listens on.
fn port_of(rx: &Receiver) -> String {
    rx.url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}

/// The tenant's newest event once an attempt to deliver it is recorded.
async fn first_attempt(s: &Server, key: &str) -> Value {
    eventually(10, "a failed attempt recorded", || async {
        let (_, page) = s.call("GET", "/v1/events", Some(key), None).await;
        let e = page["items"][0].clone();
        (e["delivery"]["attempts"].as_u64() >= Some(1)).then_some(e)
    })
    .await
}

/// As shipped: callbacks may reach public addresses only.
const PUBLIC_ONLY: [(&str, &str); 4] = [
    ("MASKLINE_ADMIN_KEY", common::ADMIN_KEY),
    ("MASKLINE_SWITCH_KEY", common::SWITCH_KEY),
    ("MASKLINE_WEBHOOK_FIRST_RETRY_MS", "100"),
    ("MASKLINE_WEBHOOK_ALLOW_PRIVATE", "false"),
];

#[tokio::test(flavor = "multi_thread")]
async fn callback_urls_to_the_operators_network_are_refused_by_address_name_and_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(dir.path(), &PUBLIC_ONLY).await;
    let key = tenant_with_numbers(&s, "acme", 1).await;
    let rx = Receiver::start().await;
    let port = port_of(&rx);
    // By address, in the forms a URL can spell it, and by a name that
    // resolves to loopback.
    for url in [
        rx.url.clone(),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.1:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.1.2.3/hook".to_owned(),
        "http://[fd00::1]/hook".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let (st, p) = s
            .call(
                "PUT",
                "/v1/webhook",
                Some(&key),
                Some(json!({ "url": url })),
            )
            .await;
        assert_eq!(
            (st, p["code"].as_str()),
            (422, Some("url_not_allowed")),
            "{url}: {p}"
        );
        assert_eq!(p["field"], "url");
        assert!(!p["detail"].as_str().unwrap().contains("127.0.0.1"), "{p}");
    }
    let (st, p) = s
        .call(
            "PUT",
            "/v1/webhook",
            Some(&key),
            Some(json!({"url": "https://hooks.example.com/", "intercept": {"url": format!("http://localhost:{port}/ask")}})),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str(), p["field"].as_str()),
        (422, Some("url_not_allowed"), Some("intercept.url")),
        "{p}"
    );
    let (st, _) = s.call("GET", "/v1/webhook", Some(&key), None).await;
    assert_eq!(st, 404, "a refused PUT changes nothing");

    // Set while private addresses were allowed, a loopback URL is still
    // never connected to once they are not: each connection is checked,
    // for an address and for a name.
    let named = Receiver::start().await;
    let named_port = port_of(&named);
    let other = tenant_with_numbers(&s, "other", 10).await;
    s.env.retain(|(k, _)| k != "MASKLINE_WEBHOOK_ALLOW_PRIVATE");
    s.env
        .push(("MASKLINE_WEBHOOK_ALLOW_PRIVATE".into(), "true".into()));
    s.restart().await;
    put_webhook(&s, &key, json!({ "url": rx.url })).await;
    put_webhook(
        &s,
        &other,
        json!({ "url": format!("http://localhost:{named_port}/") }),
    )
    .await;
    s.env.retain(|(k, _)| k != "MASKLINE_WEBHOOK_ALLOW_PRIVATE");
    s.env
        .push(("MASKLINE_WEBHOOK_ALLOW_PRIVATE".into(), "false".into()));
    s.restart().await;
    bind_axb(&s, &key, 1, 2).await;
    bind_axb(&s, &other, 1, 2).await;
    for k in [&key, &other] {
        let e = first_attempt(&s, k).await;
        assert_eq!(e["delivery"]["last_error"], "address not allowed", "{e}");
        assert!(e["delivery"]["last_status"].is_null(), "{e}");
    }
    assert!(
        rx.requests().is_empty() && named.requests().is_empty(),
        "nothing reached loopback"
    );

    // A redirect is not followed: the attempt fails with its status and
    // the target of the redirect hears nothing.
    drop(s);
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &FAST_RETRY).await;
    let key = tenant_with_numbers(&s, "acme", 1).await;
    let target = Receiver::start().await;
    let bouncer = Receiver::scripted(
        Vec::new(),
        Answer::Redirect(307, format!("{}elsewhere", target.url)),
    )
    .await;
    put_webhook(&s, &key, json!({ "url": bouncer.url })).await;
    bind_axb(&s, &key, 1, 2).await;
    let e = first_attempt(&s, &key).await;
    assert_eq!(e["delivery"]["last_status"], 307, "{e}");
    assert_eq!(e["delivery"]["state"], "pending", "{e}");
    assert!(!bouncer.requests().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(target.requests().is_empty(), "the redirect was followed");
}
