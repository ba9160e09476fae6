//! The HTTP API, end to end against the real binary.

mod common;

use common::*;
use serde_json::{Value, json};

async fn setup(numbers: &[&str]) -> (tempfile::TempDir, Server, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (tenant, key) = server.create_tenant("ride").await;
    server.import(&key, numbers).await;
    (dir, server, tenant, key)
}

#[tokio::test(flavor = "multi_thread")]
async fn axb_routes_both_ways_and_strangers_hear_no_binding() {
    let (_d, s, _t, key) = setup(&[&x(1)]).await;
    let (st, b) = s.bind(&key, json!({"mode": "axb", "a": party(1), "b": "13800000002", "expires_in": 600, "external_ref": "order-1"})).await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["x"], x(1));
    assert_eq!(
        b["b"], "+8613800000002",
        "national input is returned in E.164"
    );
    assert_eq!(b["status"], "active");

    let r = s.route(&party(1), &x(1), None).await;
    assert_eq!(r["action"], "connect");
    assert_eq!(r["to"], "+8613800000002");
    assert_eq!(r["caller_id"], x(1));
    assert_eq!(r["direction"], "a_to_b");
    assert_eq!(r["binding_id"], b["id"]);
    let r = s.route("+8613800000002", &x(1), None).await;
    assert_eq!(
        (r["action"].as_str(), r["to"].as_str()),
        (Some("connect"), Some(party(1).as_str()))
    );
    let r = s.route(&party(9), &x(1), None).await;
    assert_eq!(
        (r["action"].as_str(), r["prompt"].as_str()),
        (Some("announce"), Some("no_binding"))
    );
    let r = s.route(&party(1), &x(2), None).await;
    assert_eq!(r["prompt"], "no_binding", "unknown X");
}

#[tokio::test(flavor = "multi_thread")]
async fn unbound_binding_cools_down_and_announces_expired() {
    let (_d, s, _t, key) = setup(&[&x(1)]).await;
    let (_, b) = s
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let id = b["id"].as_str().unwrap();
    let (st, ended) = s
        .call("DELETE", &format!("/v1/bindings/{id}"), Some(&key), None)
        .await;
    assert_eq!(st, 200, "{ended}");
    assert_eq!(ended["status"], "cooling");
    assert_eq!(ended["end_reason"], "unbound");
    let r = s.route(&party(1), &x(1), None).await;
    assert_eq!(
        (r["action"].as_str(), r["prompt"].as_str()),
        (Some("announce"), Some("expired"))
    );
    // Deleting again changes nothing.
    let (st, again) = s
        .call("DELETE", &format!("/v1/bindings/{id}"), Some(&key), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(again["ended_at"], ended["ended_at"]);
    // While cooling, the pair's slot on X is reserved: a new binding for the
    // same party cannot take X (the pool has no other number).
    let (st, p) = s
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": party(3)}))
        .await;
    assert_eq!((st, p["code"].as_str()), (409, Some("pool_exhausted")));
    let (_, list) = s
        .call("GET", "/v1/bindings?status=cooling", Some(&key), None)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_is_enforced_at_decision_time_then_slots_free_after_cooldown() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_SWITCH_KEY", SWITCH_KEY),
            ("MASKLINE_COOLDOWN_SECS", "2"),
        ],
    )
    .await;
    let (_, key) = s.create_tenant("t").await;
    s.import(&key, &[&x(1)]).await;
    let (_, b) = s
        .bind(
            &key,
            json!({"mode": "axb", "a": party(1), "b": party(2), "expires_in": 1}),
        )
        .await;
    let id = b["id"].as_str().unwrap().to_owned();
    eventually(10, "expired prompt", || async {
        (s.route(&party(1), &x(1), None).await["prompt"] == "expired").then_some(())
    })
    .await;
    eventually(10, "no_binding after cool-down", || async {
        (s.route(&party(1), &x(1), None).await["prompt"] == "no_binding").then_some(())
    })
    .await;
    let got = eventually(10, "expiry recorded by the sweeper", || async {
        let (_, g) = s
            .call("GET", &format!("/v1/bindings/{id}"), Some(&key), None)
            .await;
        (g["end_reason"] == "expired").then_some(g)
    })
    .await;
    assert_eq!(got["status"], "ended");
    let (st, _) = s
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    assert_eq!(st, 201, "slots are free again after cool-down");
}

#[tokio::test(flavor = "multi_thread")]
async fn axn_and_axe_decisions() {
    let (_d, s, _t, key) = setup(&[&x(1), &x(2), &x(3)]).await;
    let (st, n) = s.bind(&key, json!({"mode": "axn", "a": party(1)})).await;
    assert_eq!(st, 201, "{n}");
    let xn = n["x"].as_str().unwrap().to_owned();
    let r = s.route(&party(7), &xn, None).await;
    assert_eq!(
        (
            r["action"].as_str(),
            r["to"].as_str(),
            r["direction"].as_str()
        ),
        (Some("connect"), Some(party(1).as_str()), Some("n_to_a"))
    );
    let r = s.route(&party(1), &xn, None).await;
    assert_eq!(r["prompt"], "no_b");
    let id = n["id"].as_str().unwrap();
    let (st, _) = s
        .call(
            "PATCH",
            &format!("/v1/bindings/{id}"),
            Some(&key),
            Some(json!({"b": party(2)})),
        )
        .await;
    assert_eq!(st, 200);
    let r = s.route(&party(1), &xn, None).await;
    assert_eq!(
        (r["to"].as_str(), r["direction"].as_str()),
        (Some(party(2).as_str()), Some("a_to_b"))
    );

    let (st, e) = s
        .bind(
            &key,
            json!({"mode": "axe", "a": party(3), "controls": {"b_to_a": true}}),
        )
        .await;
    assert_eq!(st, 201, "{e}");
    let xe = e["x"].as_str().unwrap().to_owned();
    assert_ne!(xe, xn, "an axn number is held alone");
    let ext = e["extension"].as_str().unwrap().to_owned();
    assert_eq!(ext.len(), 4);
    let r = s.route(&party(8), &xe, None).await;
    assert_eq!(r["action"], "collect_extension");
    assert_eq!(r["extension_length"], 4);
    let r = s.route(&party(8), &xe, Some(&ext)).await;
    assert_eq!(
        (r["action"].as_str(), r["to"].as_str()),
        (Some("connect"), Some(party(3).as_str()))
    );
    let other = if ext == "0000" { "0001" } else { "0000" };
    assert_eq!(
        s.route(&party(8), &xe, Some(other)).await["prompt"],
        "no_binding"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_direction_is_rejected_with_403() {
    let (_d, s, _t, key) = setup(&[&x(1)]).await;
    let (_, b) = s.bind(&key, json!({"mode": "axb", "a": party(1), "b": party(2), "controls": {"b_to_a": false, "max_call_seconds": 120, "record": true}})).await;
    let r = s.route(&party(2), &x(1), None).await;
    assert_eq!(
        (
            r["action"].as_str(),
            r["reason"].as_str(),
            r["sip_code"].as_u64()
        ),
        (Some("reject"), Some("direction_forbidden"), Some(403))
    );
    let r = s.route(&party(1), &x(1), None).await;
    assert_eq!(
        (r["max_call_seconds"].as_u64(), r["record"].as_bool()),
        (Some(120), Some(true))
    );
    // Partial controls patch keeps the other fields.
    let id = b["id"].as_str().unwrap();
    let (st, p) = s
        .call(
            "PATCH",
            &format!("/v1/bindings/{id}"),
            Some(&key),
            Some(json!({"controls": {"b_to_a": true}})),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["controls"]["max_call_seconds"], 120);
    assert_eq!(s.route(&party(2), &x(1), None).await["action"], "connect");
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_never_see_each_other() {
    let (_d, s, _t, key1) = setup(&[&x(1)]).await;
    let (_, key2) = s.create_tenant("other").await;
    let (_, b) = s
        .bind(&key1, json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let id = b["id"].as_str().unwrap();
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"b": party(3)}))),
        ("DELETE", None),
    ] {
        let (st, p) = s
            .call(method, &format!("/v1/bindings/{id}"), Some(&key2), body)
            .await;
        assert_eq!(
            (st, p["code"].as_str()),
            (404, Some("not_found")),
            "{method}"
        );
    }
    let (_, list) = s
        .call(
            "GET",
            &format!("/v1/bindings?party={}", party(1)),
            Some(&key2),
            None,
        )
        .await;
    assert_eq!(list["items"], json!([]));
    let (_, nums) = s.call("GET", "/v1/numbers", Some(&key2), None).await;
    assert_eq!(nums["items"], json!([]));
    let (st, p) = s
        .call(
            "POST",
            "/v1/numbers",
            Some(&key2),
            Some(json!({"numbers": [{"number": x(1)}]})),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str(), p["field"].as_str()),
        (409, Some("number_taken"), Some("numbers[0].number"))
    );
    // Still routes for its owner.
    assert_eq!(s.route(&party(1), &x(1), None).await["action"], "connect");
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_and_authorisation() {
    let (_d, s, tenant, key) = setup(&[&x(1)]).await;
    let (st, p) = s.call("GET", "/v1/bindings", None, None).await;
    assert_eq!((st, p["code"].as_str()), (401, Some("unauthorized")));
    let (st, _) = s
        .call("GET", "/v1/bindings", Some("mlk_not-a-real-key"), None)
        .await;
    assert_eq!(st, 401);
    let (st, p) = s
        .call(
            "POST",
            "/v1/tenants",
            Some(&key),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (403, Some("forbidden")));
    let (st, _) = s.call("GET", "/v1/bindings", Some(ADMIN_KEY), None).await;
    assert_eq!(st, 403, "the admin key alone does not act for a tenant");
    let res = s
        .client
        .get(format!("{}/v1/numbers", s.base))
        .bearer_auth(ADMIN_KEY)
        .header("Maskline-Tenant", &tenant)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "the admin key acts for a tenant with Maskline-Tenant"
    );
    let (st, _) = s
        .call(
            "POST",
            "/v1/route",
            Some(&key),
            Some(json!({"caller": party(1), "called": x(1)})),
        )
        .await;
    assert_eq!(st, 401, "tenant keys are not switch credentials");
}

#[tokio::test(flavor = "multi_thread")]
async fn route_endpoint_refuses_without_a_switch_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[("MASKLINE_ADMIN_KEY", ADMIN_KEY)]).await;
    let (st, p) = s
        .call(
            "POST",
            "/v1/route",
            Some(SWITCH_KEY),
            Some(json!({"caller": party(1), "called": x(1)})),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (403, Some("switch_disabled")));
}

async fn raw_post(
    s: &Server,
    key: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value, String) {
    // Its own connection: the server closes the one an oversized body came on.
    let res = common::http()
        .post(format!("{}/v1/bindings", s.base))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, res.json().await.unwrap_or(Value::Null), ct)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_precise_problems_and_change_nothing() {
    let (_d, s, _t, key) = setup(&[&x(1)]).await;
    let past = "2001-01-01T00:00:00Z";
    let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
        (
            "unknown field",
            json!({"mode": "axb", "a": party(1), "b": party(2), "expire_in": 5}),
            400,
            "unknown_field",
            Some("expire_in"),
        ),
        (
            "unknown controls field",
            json!({"mode": "axb", "a": party(1), "b": party(2), "controls": {"recrd": true}}),
            400,
            "unknown_field",
            Some("controls.recrd"),
        ),
        (
            "bad a",
            json!({"mode": "axb", "a": "12345", "b": party(2)}),
            400,
            "invalid_number",
            Some("a"),
        ),
        (
            "bad b",
            json!({"mode": "axb", "a": party(1), "b": "+86abc"}),
            400,
            "invalid_number",
            Some("b"),
        ),
        (
            "bad mode",
            json!({"mode": "abx", "a": party(1), "b": party(2)}),
            400,
            "invalid_field",
            Some("mode"),
        ),
        (
            "wrong type",
            json!({"mode": "axb", "a": party(1), "b": party(2), "expires_in": "soon"}),
            400,
            "invalid_field",
            Some("expires_in"),
        ),
        (
            "missing b",
            json!({"mode": "axb", "a": party(1)}),
            400,
            "missing_b",
            Some("b"),
        ),
        (
            "same party",
            json!({"mode": "axb", "a": party(1), "b": party(1)}),
            400,
            "same_party",
            Some("b"),
        ),
        (
            "past expiry",
            json!({"mode": "axb", "a": party(1), "b": party(2), "expires_at": past}),
            400,
            "expiry_in_past",
            Some("expires_at"),
        ),
        (
            "too far",
            json!({"mode": "axb", "a": party(1), "b": party(2), "expires_in": 10_i64.pow(10)}),
            400,
            "expiry_too_far",
            Some("expires_at"),
        ),
        (
            "both expiries",
            json!({"mode": "axb", "a": party(1), "b": party(2), "expires_in": 5, "expires_at": "2099-01-01T00:00:00Z"}),
            400,
            "invalid_field",
            Some("expires_in"),
        ),
        (
            "bad date",
            json!({"mode": "axb", "a": party(1), "b": party(2), "expires_at": "tomorrow"}),
            400,
            "invalid_field",
            Some("expires_at"),
        ),
        (
            "bad area",
            json!({"mode": "axb", "a": party(1), "b": party(2), "area": "05 71"}),
            400,
            "invalid_field",
            Some("area"),
        ),
        (
            "zero max",
            json!({"mode": "axb", "a": party(1), "b": party(2), "controls": {"max_call_seconds": 0}}),
            400,
            "invalid_field",
            Some("controls.max_call_seconds"),
        ),
        (
            "missing mode",
            json!({"a": party(1), "b": party(2)}),
            400,
            "invalid_field",
            None,
        ),
    ];
    for (name, body, status, code, field) in cases {
        let (st, p) = s.bind(&key, body).await;
        assert_eq!(st, status, "{name}: {p}");
        assert_eq!(p["code"], code, "{name}: {p}");
        assert_eq!(p["status"], status, "{name}");
        assert_eq!(p["type"], format!("urn:maskline:problem:{code}"), "{name}");
        if let Some(f) = field {
            assert_eq!(p["field"], f, "{name}: {p}");
        }
    }
    let (st, p, ct) = raw_post(&s, &key, "application/json", "{\"mode\": \"axb\", \"a\": ").await;
    assert_eq!((st, p["code"].as_str()), (400, Some("malformed_json")));
    assert_eq!(ct, "application/problem+json");
    let (st, p, _) = raw_post(&s, &key, "text/plain", "{}").await;
    assert_eq!(
        (st, p["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let huge = format!(
        "{{\"mode\": \"axb\", \"a\": \"{}\"}}",
        "1".repeat(3 * 1024 * 1024)
    );
    let (st, p, _) = raw_post(&s, &key, "application/json", huge).await;
    assert_eq!((st, p["code"].as_str()), (413, Some("payload_too_large")));
    let (st, p) = s
        .call("GET", "/v1/bindings?limit=0", Some(&key), None)
        .await;
    assert_eq!((st, p["code"].as_str()), (400, Some("invalid_parameter")));
    let (st, _) = s
        .call("GET", "/v1/bindings?limit=1001", Some(&key), None)
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .call("GET", "/v1/bindings?colour=red", Some(&key), None)
        .await;
    assert_eq!(st, 400, "unknown query parameters are refused");
    let (st, _) = s
        .call("GET", "/v1/bindings?status=paused", Some(&key), None)
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .call("GET", "/v1/bindings/not-an-id", Some(&key), None)
        .await;
    assert_eq!(st, 404);
    let res = s
        .client
        .get(format!("{}/v1/bindings/%FF", s.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        404,
        "an unreadable path segment names nothing"
    );
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let (st, p) = s
        .call(
            "POST",
            "/v1/numbers",
            Some(&key),
            Some(json!({"numbers": [{"number": x(2)}, {"number": "999"}]})),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str(), p["field"].as_str()),
        (400, Some("invalid_number"), Some("numbers[1].number"))
    );

    // Nothing changed: no binding exists, X(2) was not imported, X(1) is idle.
    let (_, list) = s.call("GET", "/v1/bindings", Some(&key), None).await;
    assert_eq!(list["items"], json!([]));
    let (_, nums) = s.call("GET", "/v1/numbers", Some(&key), None).await;
    assert_eq!(nums["items"].as_array().unwrap().len(), 1);
    assert_eq!(nums["items"][0]["status"], "idle");
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_changes_b_expiry_and_guards_invariants() {
    let (_d, s, _t, key) = setup(&[&x(1)]).await;
    let (_, b1) = s
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let (_, b2) = s
        .bind(&key, json!({"mode": "axb", "a": party(3), "b": party(4)}))
        .await;
    assert_eq!(b1["x"], b2["x"], "disjoint pairs pack onto one number");
    let id1 = b1["id"].as_str().unwrap();
    let (st, p) = s
        .call(
            "PATCH",
            &format!("/v1/bindings/{id1}"),
            Some(&key),
            Some(json!({"b": party(5)})),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["b"], party(5));
    assert_eq!(s.route(&party(1), &x(1), None).await["to"], party(5));
    assert_eq!(
        s.route(&party(2), &x(1), None).await["prompt"],
        "no_binding"
    );
    let (st, p) = s
        .call(
            "PATCH",
            &format!("/v1/bindings/{id1}"),
            Some(&key),
            Some(json!({"b": party(3)})),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (409, Some("party_conflict")),
        "party 3 is already on X"
    );
    let (st, p) = s
        .call(
            "PATCH",
            &format!("/v1/bindings/{id1}"),
            Some(&key),
            Some(json!({"b": null})),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (400, Some("missing_b")));
    let (st, p) = s
        .call(
            "PATCH",
            &format!("/v1/bindings/{id1}"),
            Some(&key),
            Some(json!({"expires_at": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (400, Some("expiry_in_past")));
    let (st, p) = s
        .call(
            "PATCH",
            &format!("/v1/bindings/{id1}"),
            Some(&key),
            Some(json!({"expires_at": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (400, Some("expiry_too_far")));
    let (_, got) = s
        .call("GET", &format!("/v1/bindings/{id1}"), Some(&key), None)
        .await;
    assert_eq!(got["b"], party(5), "refused patches changed nothing");
    s.call("DELETE", &format!("/v1/bindings/{id1}"), Some(&key), None)
        .await;
    let (st, p) = s
        .call(
            "PATCH",
            &format!("/v1/bindings/{id1}"),
            Some(&key),
            Some(json!({"controls": {"sms": false}})),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (409, Some("binding_not_active")));
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_with_cursors_and_filter() {
    let (_d, s, _t, key) = setup(&[&x(1), &x(2)]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (st, b) = s.bind(&key, json!({"mode": "axb", "a": party(100 + i), "b": party(200 + i), "external_ref": format!("order-{}", i % 2)})).await;
        assert_eq!(st, 201);
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    let seen: Vec<String> = s
        .list_all("/v1/bindings", &key, 2)
        .await
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ids, "every binding once, in creation order");
    let (_, f) = s
        .call("GET", "/v1/bindings?external_ref=order-1", Some(&key), None)
        .await;
    assert_eq!(f["items"].as_array().unwrap().len(), 2);
    let (_, f) = s
        .call(
            "GET",
            &format!("/v1/bindings?party={}", party(202)),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(f["items"].as_array().unwrap().len(), 1);
    let (_, f) = s
        .call("GET", "/v1/bindings?status=ended", Some(&key), None)
        .await;
    assert_eq!(f["items"], json!([]));
    let (st, _) = s
        .call("GET", "/v1/bindings?cursor=%%%", Some(&key), None)
        .await;
    assert_eq!(st, 400);
    let (_, n) = s.call("GET", "/v1/numbers?limit=1", Some(&key), None).await;
    assert_eq!(n["items"].as_array().unwrap().len(), 1);
    let c = n["next_cursor"].as_str().unwrap();
    let (_, n2) = s
        .call(
            "GET",
            &format!("/v1/numbers?limit=1&cursor={c}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(n2["items"].as_array().unwrap().len(), 1);
    assert_eq!(n2["next_cursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_import_all_or_nothing_and_retire_when_unused() {
    let (_d, s, _t, key) = setup(&[&x(1)]).await;
    let (st, r) = s
        .call(
            "POST",
            "/v1/numbers",
            Some(&key),
            Some(json!({"numbers": [{"number": x(1)}, {"number": x(2), "area": "hz"}]})),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(
        (r["imported"].as_u64(), r["existing"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, list) = s.call("GET", "/v1/numbers", Some(&key), None).await;
    assert_eq!(
        list["items"][0]["area"], "0571",
        "area derived from the number"
    );
    assert_eq!(list["items"][1]["area"], "hz");
    let too_many: Vec<Value> = (0..10_001).map(|i| json!({"number": x(i)})).collect();
    let (st, p) = s
        .call(
            "POST",
            "/v1/numbers",
            Some(&key),
            Some(json!({"numbers": too_many})),
        )
        .await;
    assert_eq!((st, p["field"].as_str()), (400, Some("numbers")));

    let (_, b) = s.bind(&key, json!({"mode": "axb", "a": party(1), "b": party(2), "area": "0571", "area_match": "strict"})).await;
    assert_eq!(b["x"], x(1));
    let (st, p) = s
        .call("DELETE", &format!("/v1/numbers/{}", x(1)), Some(&key), None)
        .await;
    assert_eq!((st, p["code"].as_str()), (409, Some("number_in_use")));
    let (st, _) = s
        .call("DELETE", &format!("/v1/numbers/{}", x(2)), Some(&key), None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = s
        .call("DELETE", &format!("/v1/numbers/{}", x(2)), Some(&key), None)
        .await;
    assert_eq!(st, 404);
    let (st, p) = s.bind(&key, json!({"mode": "axn", "a": party(3)})).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (409, Some("pool_exhausted")),
        "a retired number is never allocated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn area_preference_strict_and_fallback() {
    let (_d, s, _t, key) = setup(&[&x(1), "+861000000001"]).await;
    let (_, b) = s
        .bind(&key, json!({"mode": "axn", "a": party(1), "area": "010"}))
        .await;
    assert_eq!(b["x"], "+861000000001");
    assert_eq!(b["area"], "010");
    let (st, p) = s
        .bind(
            &key,
            json!({"mode": "axn", "a": party(2), "area": "010", "area_match": "strict"}),
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (409, Some("pool_exhausted")));
    let (st, b) = s
        .bind(&key, json!({"mode": "axn", "a": party(2), "area": "010"}))
        .await;
    assert_eq!(
        (st, b["x"].as_str()),
        (201, Some(x(1).as_str())),
        "fallback takes another area"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_reuse_gives_a_returning_pair_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_SWITCH_KEY", SWITCH_KEY),
            ("MASKLINE_COOLDOWN_SECS", "0"),
        ],
    )
    .await;
    let (_, key) = s.create_tenant("t").await;
    s.import(&key, &[&x(1), &x(2), &x(3)]).await;
    let (_, b1) = s
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let (_, b2) = s
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": party(3)}))
        .await;
    let (_, b3) = s
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": party(9)}))
        .await;
    assert_eq!(
        (b1["x"].as_str(), b2["x"].as_str(), b3["x"].as_str()),
        (
            Some(x(1).as_str()),
            Some(x(2).as_str()),
            Some(x(3).as_str())
        )
    );
    for b in [&b2, &b3] {
        let id = b["id"].as_str().unwrap();
        s.call("DELETE", &format!("/v1/bindings/{id}"), Some(&key), None)
            .await;
    }
    // Packing alone would now pick x2 (the lowest number without party 1 or
    // 9); sticky reuse gives the pair its earlier x3.
    let (_, again) = s
        .bind(&key, json!({"mode": "axb", "a": party(9), "b": party(1)}))
        .await;
    assert_eq!(again["x"], x(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn health_metrics_and_openapi() {
    let (_d, s, _t, key) = setup(&[&x(1)]).await;
    s.bind(&key, json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let (st, h) = s.call("GET", "/healthz", None, None).await;
    assert_eq!((st, h["status"].as_str()), (200, Some("ok")));
    let text = eventually(10, "census in metrics", || async {
        let t = s
            .client
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        t.contains("maskline_bindings{mode=\"axb\",status=\"active\"} 1")
            .then_some(t)
    })
    .await;
    assert!(
        text.contains("maskline_http_request_duration_seconds_bucket"),
        "latency histogram"
    );
    assert!(text.contains("maskline_pool_numbers_in_use{"), "pool usage");
    // The store's group commits: their time, and their writes in buckets
    // of counts rather than seconds.
    assert!(
        text.contains("maskline_store_commit_seconds_bucket{le=\"0.001\"}"),
        "group commit time"
    );
    assert!(
        text.contains("maskline_store_commit_writes_bucket{le=\"1\"}"),
        "writes per group commit"
    );
    let (st, spec) = s.call("GET", "/openapi.json", None, None).await;
    assert_eq!(st, 200);
    assert_eq!(spec["openapi"], "3.1.0");
    for path in [
        "/v1/tenants",
        "/v1/numbers",
        "/v1/numbers/{number}",
        "/v1/bindings",
        "/v1/bindings/{id}",
        "/v1/route",
        "/healthz",
        "/metrics",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(spec["paths"]["/v1/bindings/{id}"].get("patch").is_some());
    assert!(spec["components"]["schemas"].get("BindingView").is_some());
}

/// Reads from `stream` until the server closes it (or `limit` passes):
/// what it sent, and whether it closed.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    limit: std::time::Duration,
) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_or_silent_client_cannot_hold_a_connection() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_HTTP_HEADER_TIMEOUT_SECS", "1"),
            ("MASKLINE_HTTP_REQUEST_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    let (_, key) = s.create_tenant("ride").await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let limit = std::time::Duration::from_secs(15);

    // Silent after connecting: closed.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // A head trickled and never finished: closed.
    let mut trickle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A head in full, then a body that never comes: 408, then closed.
    let mut no_body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    no_body
        .write_all(
            format!(
                "POST /v1/bindings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"mode\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Idle after a request on a kept-alive connection: closed.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let (_, closed) = read_until_closed(&mut silent, limit).await;
    assert!(closed, "a silent connection stays open");
    let (_, closed) = read_until_closed(&mut trickle, limit).await;
    assert!(closed, "an unfinished head keeps its connection");
    let (answer, closed) = read_until_closed(&mut no_body, limit).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(closed, "a body that never comes keeps its connection");
    let (answer, closed) = read_until_closed(&mut idle, limit).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle kept-alive connection stays open");
    // Nothing was created, and the server serves on.
    let (st, page) = s.call("GET", "/v1/bindings", Some(&key), None).await;
    assert_eq!((st, page["items"].as_array().map(Vec::len)), (200, Some(0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_wait_for_a_free_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_HTTP_MAX_CONNECTIONS", "2"),
            ("MASKLINE_HTTP_HEADER_TIMEOUT_SECS", "60"),
        ],
    )
    .await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    // The test client's own pooled connection (from start-up) holds one
    // place; one idle raw connection takes the other.
    let held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let refused = fresh().get(format!("{}/healthz", s.base)).send().await;
    assert!(
        refused.is_err(),
        "a third connection was served: {refused:?}"
    );
    drop(held);
    let served = fresh().get(format!("{}/healthz", s.base)).send().await;
    assert_eq!(served.map(|r| r.status().as_u16()).ok(), Some(200));
}

/// Requests at once until one is refused: how many were served (`None`
/// if all `n` were).
async fn served_before_429(s: &Server, key: &str, n: usize) -> Option<usize> {
    for i in 0..n {
        let (st, v) = s.call("GET", "/v1/bindings", Some(key), None).await;
        match st {
            200 => {}
            429 => return Some(i),
            other => panic!("{other}: {v}"),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_gives_a_tenant_its_own_rate_and_takes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_RATE_LIMIT", "5"),
        ],
    )
    .await;
    let (id, key) = s.create_tenant("busy").await;
    let path = format!("/v1/tenants/{id}");
    let patch = |body: serde_json::Value, auth: &str| {
        let (path, auth) = (path.clone(), auth.to_owned());
        let s = &s;
        async move { s.call("PATCH", &path, Some(&auth), Some(body)).await }
    };
    // The server's 5 a second, bursts of 10.
    let n = served_before_429(&s, &key, 40).await.expect("limited");
    // Two seconds' worth, plus what refilled meanwhile.
    assert!((10..20).contains(&n), "{n} served");

    let (st, v) = patch(json!({"rate_limit": 0}), ADMIN_KEY).await;
    assert_eq!((st, v["rate_limit"].as_u64()), (200, Some(0)), "{v}");
    assert_eq!(served_before_429(&s, &key, 60).await, None, "0: no limit");
    let (st, v) = patch(json!({"rate_limit": 2}), ADMIN_KEY).await;
    assert_eq!((st, v["rate_limit"].as_u64()), (200, Some(2)), "{v}");
    let n = served_before_429(&s, &key, 40).await.expect("limited");
    assert!((4..10).contains(&n), "{n} served at 2 a second");
    let (_, list) = s.call("GET", "/v1/tenants", Some(ADMIN_KEY), None).await;
    assert_eq!(list["items"][0]["rate_limit"], 2, "{list}");

    // Refused, changing nothing.
    for (body, field) in [
        (json!({"rate_limit": -1}), "body"),
        (json!({"rate_limit": 10_000_001}), "rate_limit"),
        (json!({"rate_limit": "fast"}), "body"),
        (json!({"name": "other"}), "body"),
    ] {
        let (st, v) = patch(body.clone(), ADMIN_KEY).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert!(v["field"] == field || field == "body", "{body}: {v}");
    }
    let (st, _) = patch(json!({"rate_limit": 0}), &key).await;
    assert!(st == 401 || st == 403, "a tenant's key: {st}");
    let (st, _) = s
        .call(
            "PATCH",
            "/v1/tenants/0190a1b2-0000-7000-8000-000000000000",
            Some(ADMIN_KEY),
            Some(json!({"rate_limit": 1})),
        )
        .await;
    assert_eq!(st, 404);
    let (_, list) = s.call("GET", "/v1/tenants", Some(ADMIN_KEY), None).await;
    assert_eq!(list["items"][0]["rate_limit"], 2);

    // Null: the server's again, also after a restart.
    let (st, v) = patch(json!({"rate_limit": null}), ADMIN_KEY).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["rate_limit"].is_null());
    let (st, _) = patch(json!({"rate_limit": 1}), ADMIN_KEY).await;
    assert_eq!(st, 200);
    let mut s = s;
    s.restart().await;
    let (_, list) = s.call("GET", "/v1/tenants", Some(ADMIN_KEY), None).await;
    assert_eq!(list["items"][0]["rate_limit"], 1, "kept across a restart");
    let n = served_before_429(&s, &key, 20).await.expect("limited");
    assert!((2..6).contains(&n), "{n} served at 1 a second");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_RATE_LIMIT", "5"),
            ("MASKLINE_METRICS_KEY", "metrics-key-of-16-chars"),
        ],
    )
    .await;
    let (_, busy) = s.create_tenant("busy").await;
    let (_, calm) = s.create_tenant("calm").await;
    let mut limited = None;
    for _ in 0..20 {
        let r = s
            .client
            .get(format!("{}/v1/bindings", s.base))
            .bearer_auth(&busy)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let r = limited.expect("20 requests at once stayed within 5 a second");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "rate_limited");
    let (st, _) = s.call("GET", "/v1/bindings", Some(&calm), None).await;
    assert_eq!(st, 200, "another tenant is not limited");
    // A second later the bucket has refilled.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, _) = s.call("GET", "/v1/bindings", Some(&busy), None).await;
    assert_eq!(st, 200);

    // /metrics wants its key; an unknown method is counted as `other`.
    let (st, p) = s.call("GET", "/metrics", None, None).await;
    assert_eq!((st, p["code"].as_str()), (401, Some("unauthorized")));
    let odd = reqwest::Method::from_bytes(b"FROBNICATE").unwrap();
    s.client
        .request(odd, format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    let text = s
        .client
        .get(format!("{}/metrics", s.base))
        .bearer_auth("metrics-key-of-16-chars")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("maskline_http_requests_total"), "{text}");
    assert!(text.contains("method=\"other\"") && !text.contains("FROBNICATE"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_has_several_keys_lists_them_by_prefix_and_revokes_them() {
    let (_d, s, _t, first) = setup(&[&x(1)]).await;
    let (st, created) = s.call("POST", "/v1/keys", Some(&first), None).await;
    assert_eq!(st, 201, "{created}");
    let second = created["key"].as_str().unwrap().to_owned();
    assert!(second.starts_with("mlk_") && second.len() > 40, "{second}");
    assert!(second.starts_with(created["prefix"].as_str().unwrap()));
    // Both work.
    for key in [&first, &second] {
        let (st, _) = s.call("GET", "/v1/bindings", Some(key), None).await;
        assert_eq!(st, 200);
    }
    // The list shows prefixes, never a key.
    let (st, list) = s.call("GET", "/v1/keys", Some(&second), None).await;
    assert_eq!(st, 200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let text = list.to_string();
    assert!(!text.contains(&first) && !text.contains(&second), "{text}");
    let first_id = items[0]["id"].as_str().unwrap().to_owned();
    assert!(items.iter().all(|k| k["revoked_at"].is_null()));
    // Another tenant cannot see or revoke them.
    let (_, other) = s.create_tenant("other").await;
    let (st, p) = s
        .call(
            "DELETE",
            &format!("/v1/keys/{first_id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (404, Some("key_not_found")));
    let (_, list) = s.call("GET", "/v1/keys", Some(&other), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // Revoked: refused at once; the list says when; a second revoke is 404.
    let (st, _) = s
        .call(
            "DELETE",
            &format!("/v1/keys/{first_id}"),
            Some(&second),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _) = s.call("GET", "/v1/bindings", Some(&first), None).await;
    assert_eq!(st, 401);
    let (st, p) = s
        .call(
            "DELETE",
            &format!("/v1/keys/{first_id}"),
            Some(&second),
            None,
        )
        .await;
    assert_eq!((st, p["code"].as_str()), (404, Some("key_not_found")));
    let (st, p) = s
        .call("DELETE", "/v1/keys/not-an-id", Some(&second), None)
        .await;
    assert_eq!((st, p["code"].as_str()), (404, Some("key_not_found")));
    let (_, list) = s.call("GET", "/v1/keys", Some(&second), None).await;
    assert!(list["items"][0]["revoked_at"].is_string(), "{list}");
    // Kept across a restart.
    let mut s = s;
    s.restart().await;
    let (st, _) = s.call("GET", "/v1/bindings", Some(&first), None).await;
    assert_eq!(st, 401);
    let (st, _) = s.call("GET", "/v1/bindings", Some(&second), None).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_write_is_in_the_audit_log_with_its_key_and_no_number() {
    let (_d, s, tenant, first) = setup(&[&x(1), &x(2)]).await;
    let (_, created) = s.call("POST", "/v1/keys", Some(&first), None).await;
    let (second, second_id) = (
        created["key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    let (st, b) = s
        .bind(
            &second,
            json!({"mode": "axb", "a": party(1), "b": party(2)}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let id = b["id"].as_str().unwrap();
    let (st, _) = s
        .call("DELETE", &format!("/v1/bindings/{id}"), Some(&first), None)
        .await;
    assert_eq!(st, 200);
    // Reads and refusals are not writes.
    s.call("GET", "/v1/bindings", Some(&first), None).await;
    let (st, _) = s
        .bind(
            &first,
            json!({"mode": "axb", "a": "not a number", "b": party(2)}),
        )
        .await;
    assert_eq!(st, 400);
    // The admin acting for the tenant is recorded with no key id.
    let (st, _) = s
        .client
        .delete(format!("{}/v1/numbers/{}", s.base, x(2)))
        .bearer_auth(ADMIN_KEY)
        .header("Maskline-Tenant", &tenant)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(st, 204);

    // The import of setup, then the four writes above.
    let log = eventually(10, "five entries in the audit log", || async {
        let (_, page) = s.call("GET", "/v1/audit?limit=2", Some(&first), None).await;
        let mut all = page["items"].as_array()?.clone();
        let mut cursor = page["next_cursor"].as_str().map(str::to_owned);
        while let Some(c) = cursor {
            let (_, next) = s
                .call(
                    "GET",
                    &format!("/v1/audit?limit=2&cursor={c}"),
                    Some(&first),
                    None,
                )
                .await;
            all.extend(next["items"].as_array()?.iter().cloned());
            cursor = next["next_cursor"].as_str().map(str::to_owned);
        }
        (all.len() == 5).then_some(all)
    })
    .await;
    let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "DELETE /v1/numbers/{number}",
            "DELETE /v1/bindings/{id}",
            "POST /v1/bindings",
            "POST /v1/keys",
            "POST /v1/numbers",
        ],
        "newest first"
    );
    assert!(log[0]["key_id"].is_null(), "{}", log[0]);
    assert_eq!(log[2]["key_id"], second_id.as_str());
    assert_eq!(log[2]["object"], format!("/v1/bindings/{id}"));
    assert_eq!(log[3]["object"], format!("/v1/keys/{second_id}"));
    assert_eq!(log[2]["source"], "127.0.0.1");
    assert_eq!(log[2]["status"], 201);
    // The number in the admin's path is masked.
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains(&x(2)[3..]), "{text}");
    assert!(
        log[0]["object"].as_str().unwrap().contains("****"),
        "{}",
        log[0]
    );
    // Another tenant sees none of it.
    let (_, other) = s.create_tenant("other").await;
    let (_, page) = s.call("GET", "/v1/audit", Some(&other), None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_virtual_number_is_never_a_party() {
    let (_d, s, _t, key) = setup(&[&x(1), &x(2)]).await;
    let (_, other) = s.create_tenant("other").await;
    s.import(&other, &[&x(3)]).await;
    // Its own pool's, another pool's, as A or as B, in E.164 or national form.
    for (a, b) in [
        (party(1), x(2)),
        (x(3), party(1)),
        (party(1), x(3).trim_start_matches("+86").to_owned()),
    ] {
        let (st, p) = s.bind(&key, json!({"mode": "axb", "a": a, "b": b})).await;
        assert_eq!(
            (st, p["code"].as_str()),
            (422, Some("party_is_virtual")),
            "{a} {b}: {p}"
        );
    }
    let (st, b) = s
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    assert_eq!(st, 201, "{b}");
    let id = b["id"].as_str().unwrap();
    let (st, p) = s
        .call(
            "PATCH",
            &format!("/v1/bindings/{id}"),
            Some(&key),
            Some(json!({"b": x(3)})),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (422, Some("party_is_virtual")),
        "{p}"
    );
    let (_, got) = s
        .call("GET", &format!("/v1/bindings/{id}"), Some(&key), None)
        .await;
    assert_eq!(got["b"], party(2), "a refused PATCH changes nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn call_rules_keep_parties_to_the_allowed_destinations() {
    let (_d, s, _t, key) = setup(&[&x(1), &x(2)]).await;
    let rules = |body: Value| {
        let (s, key) = (&s, key.clone());
        async move {
            s.call("PUT", "/v1/settings/calls", Some(&key), Some(body))
                .await
        }
    };
    // Until set: the default region's country only, premium and satellite
    // ranges denied.
    let (st, got) = s.call("GET", "/v1/settings/calls", Some(&key), None).await;
    assert_eq!(st, 200);
    assert_eq!(got["allow_prefixes"], json!(["+86"]));
    assert!(
        got["deny_prefixes"]
            .as_array()
            .unwrap()
            .contains(&json!("+881"))
    );
    let us = "+12025550123";
    let (st, p) = s
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": us}))
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (422, Some("destination_not_allowed")),
        "{p}"
    );
    // Allowing the US lets the number in; a denied range stays out.
    let (st, v) =
        rules(json!({"allow_prefixes": ["+86", "+1"], "deny_prefixes": ["+1202555"]})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["deny_prefixes"], json!(["+1202555"]));
    let (st, p) = s
        .bind(&key, json!({"mode": "axb", "a": party(1), "b": us}))
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (422, Some("destination_not_allowed")),
        "{p}"
    );
    let (st, b) = s
        .bind(
            &key,
            json!({"mode": "axb", "a": party(1), "b": "+12125550123"}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    // A PATCH to a denied B is refused and changes nothing.
    let path = format!("/v1/bindings/{}", b["id"].as_str().unwrap());
    let (st, p) = s
        .call("PATCH", &path, Some(&key), Some(json!({"b": us})))
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (422, Some("destination_not_allowed")),
        "{p}"
    );
    let (_, got) = s.call("GET", &path, Some(&key), None).await;
    assert_eq!(got["b"], "+12125550123");
    // Bad rules are refused precisely and change nothing.
    for (body, code, field) in [
        (
            json!({"allow_prefixes": ["86"]}),
            "invalid_field",
            Some("allow_prefixes"),
        ),
        (
            json!({"allow_prefixes": ["+86"], "deny_prefixes": ["+8x"]}),
            "invalid_field",
            Some("deny_prefixes"),
        ),
        (
            json!({"allow_prefixes": ["+86"], "max_calls_per_second": 0}),
            "invalid_field",
            Some("max_calls_per_second"),
        ),
        (
            json!({"allow_prefixes": ["+86"], "max_concurrent_calls": 1_000_001}),
            "invalid_field",
            Some("max_concurrent_calls"),
        ),
        (
            json!({"allow_prefixes": ["+86"], "max_concurrent_calls": -1}),
            "invalid_field",
            Some("max_concurrent_calls"),
        ),
        (
            json!({"allow_prefixes": ["+86"], "max_calls": 5}),
            "unknown_field",
            Some("max_calls"),
        ),
        // Named in the detail, as every missing field is.
        (json!({"deny_prefixes": []}), "invalid_field", None),
    ] {
        let (st, p) = rules(body.clone()).await;
        assert_eq!(
            (st, p["code"].as_str(), p["field"].as_str()),
            (400, Some(code), field),
            "{body}: {p}"
        );
    }
    let (_, got) = s.call("GET", "/v1/settings/calls", Some(&key), None).await;
    assert_eq!(got["allow_prefixes"], json!(["+86", "+1"]));
    assert_eq!(got["max_concurrent_calls"], Value::Null);
    // Caps are kept with the prefixes.
    let (st, v) = rules(json!({"allow_prefixes": ["+86", "+1"],
        "max_concurrent_calls": 20, "max_calls_per_second": 5}))
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (&v["max_concurrent_calls"], &v["max_calls_per_second"]),
        (&json!(20), &json!(5))
    );
    // Another tenant keeps the defaults.
    let (_, other) = s.create_tenant("other").await;
    let (_, got) = s
        .call("GET", "/v1/settings/calls", Some(&other), None)
        .await;
    assert_eq!(got["allow_prefixes"], json!(["+86"]));
    // The rules survive a restart.
    let mut s = s;
    s.restart().await;
    let (_, got) = s.call("GET", "/v1/settings/calls", Some(&key), None).await;
    assert_eq!(got["allow_prefixes"], json!(["+86", "+1"]));
    assert_eq!(
        (&got["max_concurrent_calls"], &got["max_calls_per_second"]),
        (&json!(20), &json!(5))
    );
}
