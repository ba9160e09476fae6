//! Console accounts over the API and the CLI: who may create whom, what is
//! refused, and that a password never comes back or reaches the logs.

mod common;

use common::*;
use serde_json::json;

const PASSWORD: &str = "plaintext-passphrase-4711";

#[tokio::test(flavor = "multi_thread")]
async fn accounts_are_created_by_the_admin_or_for_a_tenant_by_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path()).await;
    let (shop, shop_key) = s.create_tenant("shop").await;
    let (other, other_key) = s.create_tenant("other").await;
    let post = |key: &str, body: serde_json::Value| {
        let key = key.to_owned();
        let s = &s;
        async move { s.call("POST", "/v1/users", Some(&key), Some(body)).await }
    };

    // The admin key: an owner for a tenant, and an admin.
    let (st, owner) = post(
        ADMIN_KEY,
        json!({"email": "Owner@Shop.Example", "password": PASSWORD, "role": "owner", "tenant_id": shop}),
    )
    .await;
    assert_eq!(st, 201, "{owner}");
    assert_eq!(owner["email"], "owner@shop.example");
    assert_eq!(owner["role"], "owner");
    assert_eq!(owner["tenant_id"], shop.as_str());
    assert!(owner["id"].as_str().is_some_and(|id| id.len() == 36));
    let (st, admin) = post(
        ADMIN_KEY,
        json!({"email": "root@ops.example", "password": PASSWORD, "role": "admin"}),
    )
    .await;
    assert_eq!(st, 201, "{admin}");
    assert!(admin["tenant_id"].is_null());

    // A tenant's key: its own users only, never an admin.
    let (st, viewer) = post(
        &shop_key,
        json!({"email": "viewer@shop.example", "password": PASSWORD, "role": "viewer"}),
    )
    .await;
    assert_eq!(st, 201, "{viewer}");
    assert_eq!(viewer["tenant_id"], shop.as_str());
    for body in [
        json!({"email": "x@shop.example", "password": PASSWORD, "role": "admin"}),
        json!({"email": "x@shop.example", "password": PASSWORD, "role": "viewer", "tenant_id": other}),
    ] {
        let (st, v) = post(&shop_key, body).await;
        assert_eq!(st, 403, "{v}");
    }

    // Refusals name their field and change nothing.
    let refused = [
        (
            json!({"email": "OWNER@shop.example", "password": PASSWORD, "role": "viewer", "tenant_id": shop}),
            409,
            "email_taken",
            "email",
        ),
        (
            json!({"email": "a@shop.example", "password": "short", "role": "viewer", "tenant_id": shop}),
            400,
            "invalid_field",
            "password",
        ),
        (
            json!({"email": "not an email", "password": PASSWORD, "role": "viewer", "tenant_id": shop}),
            400,
            "invalid_field",
            "email",
        ),
        (
            json!({"email": "a@shop.example", "password": PASSWORD, "role": "root", "tenant_id": shop}),
            400,
            "invalid_field",
            "role",
        ),
        (
            json!({"email": "a@shop.example", "password": PASSWORD, "role": "viewer"}),
            400,
            "invalid_field",
            "tenant_id",
        ),
        (
            json!({"email": "a@shop.example", "password": PASSWORD, "role": "admin", "tenant_id": shop}),
            400,
            "invalid_field",
            "tenant_id",
        ),
        (
            json!({"email": "a@shop.example", "password": PASSWORD, "role": "viewer", "tenant_id": "nope"}),
            400,
            "invalid_field",
            "tenant_id",
        ),
    ];
    for (body, status, code, field) in refused {
        let (st, v) = post(ADMIN_KEY, body.clone()).await;
        assert_eq!(
            (st, v["code"].as_str(), v["field"].as_str()),
            (status, Some(code), Some(field)),
            "{body}: {v}"
        );
    }
    let (st, v) = post(
        ADMIN_KEY,
        json!({"email": "a@shop.example", "password": PASSWORD, "role": "viewer", "tenant_id": "01890000-0000-7000-8000-000000000000"}),
    )
    .await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = post(
        ADMIN_KEY,
        json!({"email": "a@shop.example", "password": PASSWORD, "role": "viewer", "tenant_id": shop, "admin": true}),
    )
    .await;
    assert_eq!(st, 400, "unknown fields are refused: {v}");
    let (st, _) = s.call("POST", "/v1/users", None, Some(json!({}))).await;
    assert_eq!(st, 401);

    // Lists: the tenant's own, or all with the admin key; never a password.
    let emails = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["email"].as_str().unwrap().to_owned())
            .collect()
    };
    let (st, mine) = s.call("GET", "/v1/users", Some(&shop_key), None).await;
    assert_eq!(st, 200);
    assert_eq!(emails(&mine), ["owner@shop.example", "viewer@shop.example"]);
    let (_, theirs) = s.call("GET", "/v1/users", Some(&other_key), None).await;
    assert_eq!(emails(&theirs), Vec::<String>::new());
    let one_tenant = s
        .client
        .get(format!("{}/v1/users", s.base))
        .bearer_auth(ADMIN_KEY)
        .header("Maskline-Tenant", &shop)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(
        emails(&one_tenant),
        ["owner@shop.example", "viewer@shop.example"]
    );
    let bad = s
        .client
        .get(format!("{}/v1/users", s.base))
        .bearer_auth(ADMIN_KEY)
        .header("Maskline-Tenant", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let (_, all) = s.call("GET", "/v1/users", Some(ADMIN_KEY), None).await;
    assert_eq!(
        emails(&all),
        [
            "owner@shop.example",
            "root@ops.example",
            "viewer@shop.example"
        ]
    );
    let text = all.to_string();
    assert!(
        !text.contains(PASSWORD) && !text.contains("argon2"),
        "{text}"
    );

    // The CLI does the same; the password comes from the environment.
    s.env
        .push(("MASKLINE_USER_PASSWORD".into(), PASSWORD.into()));
    let base = s.base.clone();
    let out = s.cli(&[
        "users",
        "--server",
        &base,
        "add",
        "--email",
        "ops@shop.example",
        "--role",
        "operator",
        "--tenant",
        &shop,
    ]);
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (printed["role"].as_str(), printed["tenant_id"].as_str()),
        (Some("operator"), Some(shop.as_str()))
    );
    let (_, mine) = s.call("GET", "/v1/users", Some(&shop_key), None).await;
    assert_eq!(emails(&mine).len(), 3);

    // Every creation for the tenant is in its audit log: by its key, and
    // by the admin's (no key id), newest first.
    let printed_id = printed["id"].as_str().unwrap().to_owned();
    let log = eventually(10, "three creations in the audit log", || async {
        let (_, page) = s.call("GET", "/v1/audit", Some(&shop_key), None).await;
        let entries: Vec<serde_json::Value> = page["items"]
            .as_array()?
            .iter()
            .filter(|e| e["action"] == "POST /v1/users")
            .cloned()
            .collect();
        (entries.len() == 3).then_some(entries)
    })
    .await;
    let objects: Vec<&str> = log.iter().map(|e| e["object"].as_str().unwrap()).collect();
    let path = |id: &str| format!("/v1/users/{id}");
    assert_eq!(
        objects,
        [
            path(&printed_id),
            path(viewer["id"].as_str().unwrap()),
            path(owner["id"].as_str().unwrap())
        ]
    );
    assert!(log[0]["key_id"].is_null() && log[2]["key_id"].is_null());
    assert!(log[1]["key_id"].is_string(), "{}", log[1]);
    let (_, theirs) = s.call("GET", "/v1/audit", Some(&other_key), None).await;
    assert!(!theirs.to_string().contains("/v1/users"), "{theirs}");

    assert!(s.stop().success());
    assert!(
        !s.logs().contains(PASSWORD),
        "the password reached the logs"
    );
}

/// A user who leaves is removed: by the admin key, or by its tenant's key
/// (never another tenant's); its console session ends at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_account_signs_nobody_in_any_more() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, shop_key) = s.create_tenant("shop").await;
    let (_, other_key) = s.create_tenant("other").await;
    let mut ids = Vec::new();
    for email in ["leaver@shop.example", "second@shop.example"] {
        let (st, u) = s
            .call(
                "POST",
                "/v1/users",
                Some(&shop_key),
                Some(json!({"email": email, "password": PASSWORD, "role": "operator"})),
            )
            .await;
        assert_eq!(st, 201, "{u}");
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    let mut agent = common::console::Agent::new(&s.base);
    assert_eq!(
        agent.sign_in("leaver@shop.example", PASSWORD).await.status,
        303
    );
    assert_eq!(agent.get("/console/bindings").await.status, 200);

    let path = |id: &str| format!("/v1/users/{id}");
    let (st, p) = s
        .call("DELETE", &path(&ids[0]), Some(&other_key), None)
        .await;
    assert_eq!(st, 404, "another tenant's key: {p}");
    for bad in ["nonsense", "0190a1b2-0000-7000-8000-000000000000"] {
        let (st, _) = s.call("DELETE", &path(bad), Some(&shop_key), None).await;
        assert_eq!(st, 404, "{bad}");
    }
    let (st, _) = s
        .call("DELETE", &path(&ids[0]), Some(&shop_key), None)
        .await;
    assert_eq!(st, 204);
    let page = agent.get("/console/bindings").await;
    assert_eq!(page.status, 303, "the session ended with its user");
    let again = agent.sign_in("leaver@shop.example", PASSWORD).await;
    assert_eq!(again.status, 401, "refused like an unknown email");
    let (st, _) = s
        .call("DELETE", &path(&ids[0]), Some(&shop_key), None)
        .await;
    assert_eq!(st, 404, "removed already");

    let (st, _) = s
        .call("DELETE", &path(&ids[1]), Some(ADMIN_KEY), None)
        .await;
    assert_eq!(st, 204, "the admin removes any");
    let (_, list) = s.call("GET", "/v1/users", Some(&shop_key), None).await;
    assert_eq!(list["items"], json!([]));
    let entry = eventually(5, "the removal's audit entry", || async {
        let (_, log) = s.call("GET", "/v1/audit", Some(&shop_key), None).await;
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "DELETE /v1/users/{id}")
            .cloned()
    })
    .await;
    assert!(entry["object"].as_str().unwrap().starts_with("/v1/users/"));
}

/// Follows `next_cursor` from `path` with `limit=1`: every item's `field`, in
/// order, and how many pages it took.
async fn every_page(s: &Server, path: &str, key: &str, field: &str) -> (Vec<String>, usize) {
    let (mut seen, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}?limit=1&cursor={c}"),
            None => format!("{path}?limit=1"),
        };
        let (st, v) = s.call("GET", &url, Some(key), None).await;
        assert_eq!(st, 200, "{url}: {v}");
        pages += 1;
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 1, "{v}");
        seen.extend(items.iter().map(|i| i[field].as_str().unwrap().to_owned()));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (seen, pages),
        }
        assert!(pages < 20, "{path} does not end");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_keys_and_users_page_as_every_list_does() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, shop_key) = s.create_tenant("shop").await;
    s.create_tenant("other").await;
    s.create_tenant("third").await;
    for email in ["a@shop.example", "b@shop.example", "c@shop.example"] {
        let (st, u) = s
            .call(
                "POST",
                "/v1/users",
                Some(&shop_key),
                Some(json!({"email": email, "password": PASSWORD, "role": "viewer"})),
            )
            .await;
        assert_eq!(st, 201, "{u}");
    }
    for _ in 0..2 {
        let (st, k) = s.call("POST", "/v1/keys", Some(&shop_key), None).await;
        assert_eq!(st, 201, "{k}");
    }
    for (path, key, field) in [
        ("/v1/tenants", ADMIN_KEY, "name"),
        ("/v1/users", shop_key.as_str(), "email"),
        ("/v1/keys", shop_key.as_str(), "prefix"),
    ] {
        let (st, whole) = s.call("GET", path, Some(key), None).await;
        assert_eq!(st, 200, "{whole}");
        assert!(whole["next_cursor"].is_null(), "{whole}");
        let all: Vec<String> = whole["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[field].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(all.len(), 3, "{path}: {whole}");
        // One at a time: the same items in the same order, then the end.
        assert_eq!(every_page(&s, path, key, field).await, (all, 3), "{path}");
        for bad in [
            "?limit=0",
            "?limit=1001",
            "?cursor=not-a-cursor",
            "?sort=name",
        ] {
            let (st, v) = s
                .call("GET", &format!("{path}{bad}"), Some(key), None)
                .await;
            assert_eq!(st, 400, "{path}{bad}: {v}");
        }
    }
}
