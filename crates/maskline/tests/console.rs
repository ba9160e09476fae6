//! The web console over HTTP, as a browser without JavaScript uses it:
//! sign-in and out, lockout, CSRF, roles, masking, escaping, languages,
//! headers and assets. (The browser tests drive the same pages in
//! Chromium.)

mod common;

use common::console::Agent;
use common::*;
use serde_json::json;

const PASSWORD: &str = "console-passphrase-4711";

/// A tenant with a pool, a binding and one user of each tenant role, plus
/// an admin. Returns the tenant's id and key.
async fn shop(s: &Server) -> (String, String) {
    let (tenant, key) = s.create_tenant("shop").await;
    s.import(&key, &[&x(1), &x(2), &x(3)]).await;
    for (email, role, tenant_id) in [
        ("owner@shop.example", "owner", Some(&tenant)),
        ("operator@shop.example", "operator", Some(&tenant)),
        ("viewer@shop.example", "viewer", Some(&tenant)),
        ("root@ops.example", "admin", None),
    ] {
        let mut body = json!({"email": email, "password": PASSWORD, "role": role});
        if let Some(t) = tenant_id {
            body["tenant_id"] = json!(t);
        }
        let (st, v) = s
            .call("POST", "/v1/users", Some(ADMIN_KEY), Some(body))
            .await;
        assert_eq!(st, 201, "{v}");
    }
    (tenant, key)
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_opens_a_strict_cookie_session_that_signing_out_ends() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    shop(&s).await;
    let mut a = Agent::new(&s.base);

    // Without a session every page sends to the sign-in form.
    for path in ["/console", "/console/bindings"] {
        let p = a.get(path).await;
        assert_eq!(p.status, 303, "{path}");
        assert_eq!(p.location.as_deref(), Some("/console/login"));
    }

    let p = a.sign_in("Operator@Shop.Example", PASSWORD).await;
    assert_eq!(p.status, 303, "{}", p.html);
    assert_eq!(p.location.as_deref(), Some("/console"));
    let cookie = p
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("ml_session="))
        .expect("a session cookie");
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    // Plain HTTP: a Secure cookie would never come back.
    assert!(!cookie.contains("Secure"), "{cookie}");
    let token = a.cookies["ml_session"].clone();

    let home = a.get("/console").await;
    assert_eq!(home.status, 200, "{}", home.html);
    assert!(home.html.contains("operator@shop.example"));

    // Sign-out needs the session's token too.
    let p = a.post("/console/logout", &[]).await;
    assert_eq!(p.status, 403);
    assert_eq!(a.get("/console").await.status, 200, "still signed in");
    let csrf = home.csrf();
    let p = a.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location.as_deref(), Some("/console/login?out=1"));
    assert!(
        !a.cookies.contains_key("ml_session"),
        "the cookie is cleared"
    );

    // The old token signs nobody in any more, on this node or another.
    a.cookies.insert("ml_session".into(), token);
    let p = a.get("/console").await;
    assert_eq!(p.status, 303);

    // Behind a TLS proxy the cookie is Secure.
    let mut b = Agent::new(&s.base);
    let form = b.get("/console/login").await;
    maskline_callbacks::install_crypto_provider();
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/console/login", s.base))
        .header("x-forwarded-proto", "https")
        .header("cookie", format!("ml_login={}", b.cookies["ml_login"]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("csrf", form.csrf().as_str()),
                ("email", "viewer@shop.example"),
                ("password", PASSWORD),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let secure = res.headers().get_all("set-cookie").iter().any(|v| {
        v.to_str().unwrap().starts_with("ml_session=") && v.to_str().unwrap().ends_with("; Secure")
    });
    assert!(secure, "{:?}", res.headers());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_are_refused_alike_and_ten_lock_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    shop(&s).await;
    let mut a = Agent::new(&s.base);

    let unknown = a.sign_in("nobody@shop.example", PASSWORD).await;
    let wrong = a.sign_in("viewer@shop.example", "not-the-passphrase").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.status, 401);
    assert!(wrong.html.contains("Wrong email or password."));
    assert!(unknown.html.contains("Wrong email or password."));
    // The form keeps the email, never the password.
    assert!(wrong.html.contains("value=\"viewer@shop.example\""));
    assert!(!wrong.html.contains("not-the-passphrase"));
    assert!(!a.cookies.contains_key("ml_session"));

    for _ in 1..10 {
        let p = a.sign_in("viewer@shop.example", "not-the-passphrase").await;
        assert_eq!(p.status, 401);
    }
    // Ten failures: even the right password is refused, saying until when.
    let p = a.sign_in("viewer@shop.example", PASSWORD).await;
    assert_eq!(p.status, 401, "{}", p.html);
    assert!(p.html.contains("locked until"), "{}", p.html);
    assert!(!a.cookies.contains_key("ml_session"));
    // Other accounts are not affected.
    let p = a.sign_in("operator@shop.example", PASSWORD).await;
    assert_eq!(p.status, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_without_its_csrf_token_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = shop(&s).await;
    let mut a = Agent::new(&s.base);

    // The sign-in form: no token, a made-up one, or one without its cookie.
    let form = a.get("/console/login").await;
    let good = form.csrf();
    let creds = [("email", "operator@shop.example"), ("password", PASSWORD)];
    let p = a.post("/console/login", &creds).await;
    assert_eq!(p.status, 403, "{}", p.html);
    assert!(p.html.contains("did not come from this console"));
    let p = a
        .post("/console/login", &[creds[0], creds[1], ("csrf", "forged")])
        .await;
    assert_eq!(p.status, 403);
    let mut stranger = Agent::new(&s.base);
    let p = stranger
        .post("/console/login", &[creds[0], creds[1], ("csrf", &good)])
        .await;
    assert_eq!(p.status, 403, "the token without its cookie");

    assert_eq!(
        a.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    let page = a.get("/console/bindings").await;
    let csrf = page.csrf();
    let create = |csrf: Option<&str>| {
        let mut f = vec![
            ("mode", "axb".to_owned()),
            ("a", party(12345671)),
            ("b", party(12345672)),
            ("hours", "24".to_owned()),
        ];
        if let Some(c) = csrf {
            f.push(("csrf", c.to_owned()));
        }
        f
    };
    for token in [None, Some("forged"), Some(&csrf[..csrf.len() - 1])] {
        let form = create(token);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let p = a.post("/console/bindings", &form).await;
        assert_eq!(p.status, 403, "{token:?}: {}", p.html);
    }
    // A body that is not a form at all is a form without a token.
    let p = a.post("/console/bindings", &[("%%%", "\u{0}")]).await;
    assert_eq!(p.status, 403);
    let (_, list) = s.call("GET", "/v1/bindings", Some(&key), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");

    // Another session's token is not this one's.
    let mut other = Agent::new(&s.base);
    assert_eq!(
        other.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
    let theirs = other.get("/console/bindings").await.csrf();
    assert_ne!(theirs, csrf);
    let form = create(Some(&theirs));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(a.post("/console/bindings", &form).await.status, 403);

    // With it, the binding is made.
    let form = create(Some(&csrf));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = a.post("/console/bindings", &form).await;
    assert_eq!(p.status, 303, "{}", p.html);
    let (_, list) = s.call("GET", "/v1/bindings", Some(&key), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bindings_are_made_listed_extended_and_ended_in_forms_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = shop(&s).await;
    let mut a = Agent::new(&s.base);
    assert_eq!(
        a.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    let csrf = a.get("/console/bindings").await.csrf();

    let (pa, pb) = (party(12345671), party(12345672));
    let p = a
        .post(
            "/console/bindings",
            &[
                ("csrf", &csrf),
                ("mode", "axb"),
                ("a", &pa),
                ("b", &pb),
                ("external_ref", "order-77"),
                ("hours", "2"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let back = p.location.unwrap();
    assert!(
        back.starts_with("/console/bindings?done=created&id="),
        "{back}"
    );
    let id = back.rsplit('=').next().unwrap().to_owned();

    let (st, b) = s
        .call("GET", &format!("/v1/bindings/{id}"), Some(&key), None)
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["a"], pa.as_str());
    assert_eq!(b["external_ref"], "order-77");
    let created = b["expires_at"].as_str().unwrap().to_owned();

    let listed = a.get(&back).await;
    assert_eq!(listed.status, 200);
    assert!(listed.html.contains("Binding created:"), "{}", listed.html);
    assert!(listed.html.contains(b["x"].as_str().unwrap()));
    assert!(listed.html.contains("order-77"));
    // Found by its reference, and by a party's full number, which the
    // search posts and the list's address carries sealed.
    let p = a.get("/console/bindings?external_ref=order-77").await;
    assert!(p.html.contains(&format!("id=\"b-{id}\"")));
    let found = a
        .post(
            "/console/bindings/search",
            &[("csrf", &csrf), ("party", &pb)],
        )
        .await;
    assert_eq!(found.status, 303, "{}", found.html);
    let list = found.location.unwrap();
    assert!(list.starts_with("/console/bindings?pq="), "{list}");
    assert_eq!(
        holding(list.as_bytes(), &digit_forms(&pb)),
        Vec::<String>::new()
    );
    let p = a.get(&list).await;
    assert!(p.html.contains(&format!("id=\"b-{id}\"")), "{}", p.html);
    assert!(p.html.contains("Showing bindings of +86138****5672"));
    // Another session cannot open the sealed number.
    let mut other = Agent::new(&s.base);
    assert_eq!(
        other.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
    let p = other.get(&list).await;
    assert!(p.html.contains("Not a valid phone number."), "{}", p.html);
    assert!(!p.html.contains(&format!("id=\"b-{id}\"")));
    let p = a
        .post(
            "/console/bindings/search",
            &[("csrf", &csrf), ("party", "12")],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(p.html.contains("Not a valid phone number."));
    let p = a.get("/console/bindings?external_ref=order-78").await;
    assert!(!p.html.contains(&format!("id=\"b-{id}\"")));
    assert!(p.html.contains("No binding matches."));

    // Refusals come back on the page and change nothing.
    for (form, says, status) in [
        (
            vec![("mode", "axb"), ("a", "12"), ("hours", "2")],
            "Not a valid phone number.",
            400,
        ),
        (
            vec![("mode", "axb"), ("a", &pa[..]), ("hours", "2")],
            "Mode AXB needs both parties.",
            400,
        ),
        (
            vec![
                ("mode", "axb"),
                ("a", &pa[..]),
                ("b", &pb[..]),
                ("hours", "0"),
            ],
            "Hours must be",
            400,
        ),
        (
            vec![
                ("mode", "axb"),
                ("a", &pa[..]),
                ("b", &pa[..]),
                ("hours", "2"),
            ],
            "A and B must be different numbers.",
            400,
        ),
        (
            vec![
                ("mode", "axb"),
                ("a", &pa[..]),
                ("b", &x(2)[..]),
                ("hours", "2"),
            ],
            "may not be one of the pool",
            400,
        ),
    ] {
        let mut form = form;
        form.push(("csrf", &csrf));
        let p = a.post("/console/bindings", &form).await;
        assert_eq!(p.status, status, "{form:?}: {}", p.html);
        assert!(
            p.html.contains(says),
            "{form:?} should say {says}: {}",
            p.html
        );
        assert!(
            p.html.contains(&format!("id=\"b-{id}\"")),
            "the list is still shown"
        );
    }
    let (_, list) = s.call("GET", "/v1/bindings", Some(&key), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let p = a
        .post(
            &format!("/console/bindings/{id}/extend"),
            &[("csrf", &csrf), ("hours", "24")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let (_, b) = s
        .call("GET", &format!("/v1/bindings/{id}"), Some(&key), None)
        .await;
    assert!(b["expires_at"].as_str().unwrap() > created.as_str(), "{b}");

    let p = a
        .post(&format!("/console/bindings/{id}/end"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let (_, b) = s
        .call("GET", &format!("/v1/bindings/{id}"), Some(&key), None)
        .await;
    assert_eq!(b["status"], "cooling", "{b}");
    let p = a
        .post(
            &format!("/console/bindings/{id}/extend"),
            &[("csrf", &csrf), ("hours", "24")],
        )
        .await;
    assert_eq!(p.status, 409);
    assert!(p.html.contains("Only an active binding can change."));
    let p = a
        .post(
            "/console/bindings/00000000-0000-0000-0000-000000000000/end",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 404);

    // Every change is in the audit log, with the client's address.
    let entries = eventually(5, "the console's audit entries", || async {
        let (_, log) = s.call("GET", "/v1/audit", Some(&key), None).await;
        let items = log["items"].as_array().cloned().unwrap_or_default();
        let console: Vec<_> = items
            .into_iter()
            .filter(|e| e["action"].as_str().unwrap_or("").contains("/console/"))
            .collect();
        (console.len() == 3).then_some(console)
    })
    .await;
    // Newest first.
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "POST /console/bindings/{id}/end",
            "POST /console/bindings/{id}/extend",
            "POST /console/bindings",
        ]
    );
    let (_, users) = s.call("GET", "/v1/users", Some(&key), None).await;
    let operator = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "operator@shop.example")
        .unwrap()["id"]
        .clone();
    for e in &entries {
        assert_eq!(e["object"], id.as_str(), "{e}");
        assert_eq!(e["source"], "127.0.0.1", "{e}");
        assert_eq!(e["user_id"], operator, "{e}");
        assert!(e["key_id"].is_null(), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_sees_only_masked_numbers_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = shop(&s).await;
    let (pa, pb) = (party(12345671), party(12345672));
    let (st, b) = s
        .bind(
            &key,
            json!({"mode": "axb", "a": pa, "b": pb, "external_ref": "<img src=x onerror=alert(1)>"}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    // A platform that puts a party's number in its reference.
    let (st, v) = s
        .bind(
            &key,
            json!({"mode": "axn", "a": party(12345673), "external_ref": format!("call {}", pb)}),
        )
        .await;
    assert_eq!(st, 201, "{v}");

    let mut a = Agent::new(&s.base);
    assert_eq!(a.sign_in("viewer@shop.example", PASSWORD).await.status, 303);
    let needles: Vec<String> = [&pa, &pb].iter().flat_map(|n| digit_forms(n)).collect();
    let csrf = a.get("/console/bindings").await.csrf();
    let search = a
        .post(
            "/console/bindings/search",
            &[("csrf", &csrf), ("party", &pa)],
        )
        .await;
    let sealed = search.location.unwrap();
    assert_eq!(holding(sealed.as_bytes(), &needles), Vec::<String>::new());
    for path in [
        "/console".to_owned(),
        "/console/bindings".to_owned(),
        sealed,
        format!("/console/bindings?party={}", pa.replace('+', "%2B")),
        format!("/console/bindings?done=created&id={id}"),
        format!(
            "/console/bindings?external_ref=call%20{}",
            pb.replace('+', "%2B")
        ),
        "/console/bindings?lang=zh".to_owned(),
    ] {
        let p = a.get(&path).await;
        assert_eq!(p.status, 200, "{path}");
        assert_eq!(
            holding(p.html.as_bytes(), &needles),
            Vec::<String>::new(),
            "{path}"
        );
        let shown = if path.contains("external_ref") {
            // The reference, its number masked like any other.
            "call +86138****5672"
        } else {
            "+86138****5671"
        };
        assert!(
            p.html.contains(shown) || !path.contains("bindings"),
            "{path}: {}",
            p.html
        );
    }
    // The reference is shown as text, never as markup.
    let p = a.get("/console/bindings?lang=en").await;
    assert!(
        p.html.contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{}",
        p.html
    );
    assert!(!p.html.contains("<img"));
    // No form to change anything, and a post is refused.
    assert!(!p.html.contains("action=\"/console/bindings\""));
    assert!(
        p.html
            .contains("Your role may look but not change anything.")
    );
    let csrf = p.csrf();
    let p = a
        .post(
            "/console/bindings",
            &[
                ("csrf", &csrf),
                ("mode", "axn"),
                ("a", &party(12345673)),
                ("hours", "2"),
            ],
        )
        .await;
    assert_eq!(p.status, 403);
    let p = a
        .post(&format!("/console/bindings/{id}/end"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 403);
    let (_, b) = s
        .call("GET", &format!("/v1/bindings/{id}"), Some(&key), None)
        .await;
    assert_eq!(b["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_users_see_only_its_bindings_and_an_admin_picks_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (shop_id, shop_key) = shop(&s).await;
    let (_, other_key) = s.create_tenant("other").await;
    s.import(&other_key, &[&x(9)]).await;
    let (_, theirs) = s
        .bind(
            &other_key,
            json!({"mode": "axn", "a": party(22222222), "external_ref": "theirs"}),
        )
        .await;
    let (_, ours) = s
        .bind(
            &shop_key,
            json!({"mode": "axn", "a": party(33333333), "external_ref": "ours"}),
        )
        .await;

    let mut a = Agent::new(&s.base);
    assert_eq!(a.sign_in("owner@shop.example", PASSWORD).await.status, 303);
    let p = a.get("/console/bindings").await;
    assert!(p.html.contains("ours") && !p.html.contains("theirs"));
    // Asking for another tenant changes nothing for a tenant's user.
    let other_id = theirs["id"].as_str().unwrap();
    let p = a.get("/console/bindings?external_ref=theirs").await;
    assert!(!p.html.contains(other_id));
    let csrf = p.csrf();
    let p = a
        .post(
            &format!("/console/bindings/{other_id}/end"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 404);

    // The admin picks; before that, no tenant's data.
    let mut root = Agent::new(&s.base);
    assert_eq!(root.sign_in("root@ops.example", PASSWORD).await.status, 303);
    let p = root.get("/console/bindings").await;
    assert!(p.html.contains("Choose the tenant to look at."));
    assert!(!p.html.contains(ours["id"].as_str().unwrap()));
    let p = root
        .get(&format!("/console/bindings?tenant={shop_id}"))
        .await;
    assert!(p.html.contains(ours["id"].as_str().unwrap()), "{}", p.html);
    assert!(!p.html.contains(other_id));
    // An admin's changes name the tenant in the form's address.
    assert!(
        p.html
            .contains(&format!("/console/bindings?tenant={shop_id}"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_speak_the_browsers_language_until_switched() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    shop(&s).await;
    let mut a = Agent::new(&s.base);
    a.accept_language = Some("zh-CN,zh;q=0.9,en;q=0.8".into());
    let p = a.get("/console/login").await;
    assert!(p.html.contains("<html lang=\"zh-CN\">"));
    assert!(p.html.contains("登录"));
    assert_eq!(
        a.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    let p = a.get("/console/bindings").await;
    assert!(p.html.contains("新建绑定"), "{}", p.html);

    // The switch sticks, whatever the browser prefers.
    let p = a.get("/console/bindings?lang=en").await;
    assert!(p.html.contains("<html lang=\"en\">"));
    let cookie = p.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with("ml_lang=en;"), "{cookie}");
    let p = a.get("/console").await;
    assert!(p.html.contains("<html lang=\"en\">"));
    assert!(p.html.contains("Overview"));
    let p = a.get("/console?lang=zh").await;
    assert!(p.html.contains("概览"));
    // Formatting follows the language.
    let p = a.get("/console/login?lang=en").await;
    assert!(p.html.contains("Sign in"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_forbids_framing_and_inline_script_and_assets_are_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    shop(&s).await;
    let mut a = Agent::new(&s.base);
    assert_eq!(
        a.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    for path in [
        "/console/login",
        "/console",
        "/console/bindings",
        "/console/nowhere",
    ] {
        let p = a.get(path).await;
        let h = |name: &str| p.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(h("x-frame-options").as_deref(), Some("DENY"), "{path}");
        let csp = h("content-security-policy").unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(h("cache-control").as_deref(), Some("no-store"), "{path}");
        // No inline script or style, and nothing from another origin.
        assert!(
            !p.html.contains("<script>") && !p.html.contains("<style"),
            "{path}"
        );
        assert!(
            !p.html.contains(" style=") && !p.html.contains(" onclick="),
            "{path}"
        );
        assert!(
            !p.html.contains("http://") && !p.html.contains("https://"),
            "{path}"
        );
    }
    assert_eq!(a.get("/console/nowhere").await.status, 404);

    // Each asset the pages name is served for a year under its hash.
    let page = a.get("/console").await;
    let mut assets: Vec<String> = page
        .html
        .match_indices("/console/assets/")
        .map(|(i, _)| {
            let rest = &page.html[i..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect();
    assets.sort();
    assets.dedup();
    assert_eq!(assets.len(), 3, "{assets:?}");
    for path in &assets {
        let p = a.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        assert_eq!(
            p.headers.get("cache-control").unwrap(),
            "public, max-age=31536000, immutable"
        );
        let ct = p.headers.get("content-type").unwrap().to_str().unwrap();
        assert!(
            ct.starts_with("text/css") || ct.starts_with("text/javascript"),
            "{ct}"
        );
        let stale = path.replacen('.', ".0", 1);
        assert_eq!(a.get(&stale).await.status, 404, "{stale}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_CONSOLE", "false"),
        ],
    )
    .await;
    for path in ["/console", "/console/login"] {
        let (st, body) = s.call("GET", path, None, None).await;
        assert_eq!(st, 404, "{path}: {body}");
        assert_eq!(body["code"], "not_found");
    }
    let (st, _) = s.call("GET", "/healthz", None, None).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_manages_keys_and_users_and_reads_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    shop(&s).await;

    // Keys, users and the audit log are the owner's, not an operator's.
    let mut op = Agent::new(&s.base);
    assert_eq!(
        op.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    let home = op.get("/console").await;
    assert!(!home.html.contains("/console/keys"), "no menu entry");
    for path in ["/console/keys", "/console/users", "/console/audit"] {
        assert_eq!(op.get(path).await.status, 403, "{path}");
    }
    let csrf = home.csrf();
    assert_eq!(
        op.post("/console/keys", &[("csrf", &csrf)]).await.status,
        403
    );

    let mut owner = Agent::new(&s.base);
    assert_eq!(
        owner.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
    let page = owner.get("/console/keys").await;
    assert_eq!(page.status, 200);
    let csrf = page.csrf();
    assert_eq!(
        owner.post("/console/keys", &[]).await.status,
        403,
        "no token"
    );

    // A new key is shown once, and works at once.
    let made = owner.post("/console/keys", &[("csrf", &csrf)]).await;
    assert_eq!(made.status, 201, "{}", made.html);
    let at = made.html.find("id=\"new-key\">").unwrap() + "id=\"new-key\">".len();
    let key = made.html[at..at + made.html[at..].find('<').unwrap()].to_owned();
    assert!(key.starts_with("mlk_"), "{key}");
    let (st, _) = s.call("GET", "/v1/bindings", Some(&key), None).await;
    assert_eq!(st, 200);
    let listed = owner.get("/console/keys").await;
    assert!(!listed.html.contains(&key), "the key is not shown again");
    assert!(listed.html.contains(&key[..12]), "its prefix is");

    // Revoked, it is refused.
    let (_, v1keys) = s.call("GET", "/v1/keys", Some(&key), None).await;
    let id = v1keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| key.starts_with(k["prefix"].as_str().unwrap()))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(made.html.contains(&format!("/console/keys/{id}/revoke")));
    let p = owner
        .post(&format!("/console/keys/{id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let (st, _) = s.call("GET", "/v1/bindings", Some(&key), None).await;
    assert_eq!(st, 401);

    // A user added in the form signs in; refusals say why.
    for (form, says) in [
        (
            [
                ("email", "new@shop.example"),
                ("password", "short"),
                ("role", "viewer"),
            ],
            "at least 12 characters",
        ),
        (
            [
                ("email", "viewer@shop.example"),
                ("password", PASSWORD),
                ("role", "viewer"),
            ],
            "A user with this email exists.",
        ),
        (
            [
                ("email", "new@shop.example"),
                ("password", PASSWORD),
                ("role", "admin"),
            ],
            "Choose viewer, operator or owner.",
        ),
    ] {
        let mut f = form.to_vec();
        f.push(("csrf", &csrf));
        let p = owner.post("/console/users", &f).await;
        assert_eq!(p.status, 400, "{form:?}");
        assert!(p.html.contains(says), "{form:?}: {}", p.html);
        assert!(!p.html.contains(PASSWORD), "the password never comes back");
    }
    let p = owner
        .post(
            "/console/users",
            &[
                ("csrf", &csrf),
                ("email", "New@Shop.Example"),
                ("password", PASSWORD),
                ("role", "operator"),
            ],
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.html);
    assert!(p.html.contains("new@shop.example"));
    let mut new = Agent::new(&s.base);
    assert_eq!(new.sign_in("new@shop.example", PASSWORD).await.status, 303);

    // The audit log names the owner for each change.
    let mut log = owner.get("/console/audit").await;
    for _ in 0..50 {
        if log.html.matches("owner@shop.example").count() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        log = owner.get("/console/audit").await;
    }
    for action in [
        "POST /console/keys",
        "POST /console/keys/{id}/revoke",
        "POST /console/users",
    ] {
        assert!(log.html.contains(action), "{action}: {}", log.html);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_reveals_one_records_numbers_and_the_audit_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = shop(&s).await;
    let (pa, pb) = (party(12345671), party(12345672));
    let (st, b) = s.bind(&key, json!({"mode": "axb", "a": pa, "b": pb})).await;
    assert_eq!(st, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let path = format!("/console/bindings/{id}/reveal");

    // A viewer may not; nor may a post without its token.
    let mut viewer = Agent::new(&s.base);
    assert_eq!(
        viewer.sign_in("viewer@shop.example", PASSWORD).await.status,
        303
    );
    let page = viewer.get("/console/bindings").await;
    assert!(!page.html.contains(&path), "no button for a viewer");
    let p = viewer.post(&path, &[("csrf", &page.csrf())]).await;
    assert_eq!(p.status, 403);
    assert!(!p.html.contains(&pa[3..]));

    let mut op = Agent::new(&s.base);
    assert_eq!(
        op.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    let page = op.get("/console/bindings").await;
    assert!(page.html.contains(&path));
    assert!(!page.html.contains(&pa[3..]), "the list stays masked");
    assert_eq!(op.post(&path, &[]).await.status, 403);
    let p = op.post(&path, &[("csrf", &page.csrf())]).await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert!(p.html.contains(&pa) && p.html.contains(&pb), "{}", p.html);
    assert!(p.html.contains("written to the audit log"));
    assert_eq!(p.headers.get("cache-control").unwrap(), "no-store");
    // Never at an address of its own.
    assert_eq!(op.get(&path).await.status, 405);
    let p = op
        .post(
            "/console/bindings/00000000-0000-0000-0000-000000000000/reveal",
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(p.status, 404);
    let p = op
        .post(
            "/console/calls/00000000-0000-0000-0000-000000000001/reveal",
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(p.status, 404);

    let entry = eventually(5, "the reveal's audit entry", || async {
        let (_, log) = s.call("GET", "/v1/audit", Some(&key), None).await;
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "POST /console/bindings/{id}/reveal")
            .cloned()
    })
    .await;
    assert_eq!(entry["object"], id.as_str());
    assert!(entry["user_id"].is_string(), "{entry}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_show_their_delivery_and_are_sent_again_from_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            // The webhook below is a closed port on loopback.
            ("MASKLINE_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("MASKLINE_WEBHOOK_FIRST_RETRY_MS", "600000"),
        ],
    )
    .await;
    let (_, key) = shop(&s).await;
    let (st, _) = s
        .bind(&key, json!({"mode": "axn", "a": party(12345671)}))
        .await;
    assert_eq!(st, 201);
    let mut op = Agent::new(&s.base);
    assert_eq!(
        op.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    let page = op.get("/console/events").await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("binding.created"), "{}", page.html);
    assert!(page.html.contains("Not sent (no webhook wanted it)"));
    assert!(!page.html.contains("/redeliver"), "nothing to send again");

    let (st, v) = s
        .call(
            "PUT",
            "/v1/webhook",
            Some(&key),
            Some(json!({"url": format!("http://127.0.0.1:{}/hook", free_port())})),
        )
        .await;
    assert!(st == 200 || st == 201, "{st} {v}");
    let (_, b) = s
        .bind(&key, json!({"mode": "axn", "a": party(12345672)}))
        .await;
    let event = eventually(10, "a failed attempt", || async {
        let (_, list) = s.call("GET", "/v1/events", Some(&key), None).await;
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["data"]["id"] == b["id"] && e["delivery"]["attempts"].as_u64() >= Some(1))
            .cloned()
    })
    .await;
    let id = event["id"].as_str().unwrap().to_owned();
    let page = op.get("/console/events").await;
    let row_at = page.html.find(&format!("id=\"event-{id}\"")).unwrap();
    let row = &page.html[row_at..row_at + page.html[row_at..].find("</tr>").unwrap()];
    assert!(row.contains("Waiting"), "{row}");
    assert!(row.contains(&format!("/console/events/{id}/redeliver")));
    let csrf = page.csrf();
    assert_eq!(
        op.post(&format!("/console/events/{id}/redeliver"), &[])
            .await
            .status,
        403
    );
    let p = op
        .post(
            &format!("/console/events/{id}/redeliver"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let p = op.get(p.location.as_deref().unwrap()).await;
    assert!(p.html.contains("queued to be sent again"));
    let p = op
        .post(
            "/console/events/00000000-0000-0000-0000-000000000000/redeliver",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 404);

    // A viewer sees the deliveries and may not send.
    let mut viewer = Agent::new(&s.base);
    assert_eq!(
        viewer.sign_in("viewer@shop.example", PASSWORD).await.status,
        303
    );
    let page = viewer.get("/console/events").await;
    assert!(page.html.contains(&id) && !page.html.contains("/redeliver"));
    let p = viewer
        .post(
            &format!("/console/events/{id}/redeliver"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(p.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_imports_numbers_from_a_csv_file_all_or_nothing_and_retires_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = shop(&s).await;
    let (_, other_key) = s.create_tenant("other").await;
    s.import(&other_key, &[&x(90)]).await;

    let mut owner = Agent::new(&s.base);
    assert_eq!(
        owner.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
    let page = owner.get("/console/numbers").await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains(&x(1)), "the pool is listed");
    let csrf = page.csrf();

    let count = || async { s.list_all("/v1/numbers", &key, 1000).await.len() };
    let before = count().await;
    // Without the token, and with a bad line: nothing changes.
    let good = format!("number,area\n{},hz\n{}\n", x(10), x(11));
    let p = owner
        .post_file("/console/numbers", &[], good.as_bytes())
        .await;
    assert_eq!(p.status, 403);
    let p = owner.post("/console/numbers", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 403, "not a file's form: {}", p.html);
    let bad = format!("{}\n{}\nnot a number\n", x(10), x(11));
    let p = owner
        .post_file("/console/numbers", &[("csrf", &csrf)], bad.as_bytes())
        .await;
    assert_eq!(p.status, 400, "{}", p.html);
    assert!(
        p.html.contains("Line 3: Not a valid phone number."),
        "{}",
        p.html
    );
    // One number another tenant holds: all or nothing.
    let taken = format!("{}\n{}\n", x(10), x(90));
    let p = owner
        .post_file("/console/numbers", &[("csrf", &csrf)], taken.as_bytes())
        .await;
    assert_eq!(p.status, 400, "{}", p.html);
    assert!(p.html.contains("belongs to another pool"), "{}", p.html);
    let p = owner
        .post_file("/console/numbers", &[("csrf", &csrf)], b"\n\n")
        .await;
    assert!(p.html.contains("The file holds no numbers."));
    assert_eq!(count().await, before);

    let p = owner
        .post_file("/console/numbers", &[("csrf", &csrf)], good.as_bytes())
        .await;
    assert_eq!(p.status, 201, "{}", p.html);
    assert!(p.html.contains("Imported: 2"), "{}", p.html);
    assert_eq!(count().await, before + 2);
    let p = owner
        .post_file("/console/numbers", &[("csrf", &csrf)], good.as_bytes())
        .await;
    assert!(p.html.contains("already in the pool: 2"), "{}", p.html);

    // Retired: out of the pool.
    let p = owner
        .post(
            &format!("/console/numbers/{}/retire", x(11)),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    assert_eq!(count().await, before + 1);
    let p = owner
        .post(
            &format!("/console/numbers/{}/retire", x(11)),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 404);

    // An operator sees the pool and may change nothing.
    let mut op = Agent::new(&s.base);
    assert_eq!(
        op.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    let page = op.get("/console/numbers").await;
    assert!(page.html.contains(&x(10)) && !page.html.contains("type=\"file\""));
    let p = op
        .post_file(
            "/console/numbers",
            &[("csrf", &page.csrf())],
            good.as_bytes(),
        )
        .await;
    assert_eq!(p.status, 403);
    let p = op
        .post(
            &format!("/console/numbers/{}/retire", x(10)),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(p.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_keeps_the_sms_settings_in_a_form() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = shop(&s).await;
    let mut op = Agent::new(&s.base);
    assert_eq!(
        op.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    assert_eq!(op.get("/console/settings").await.status, 403);

    let mut owner = Agent::new(&s.base);
    assert_eq!(
        owner.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
    let page = owner.get("/console/settings").await;
    assert_eq!(page.status, 200);
    assert!(
        page.html
            .contains("name=\"marketing_filter\" type=\"checkbox\" value=\"standard\" checked")
    );
    let csrf = page.csrf();
    let form = |rules: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("prefix", "【Shop】".to_owned()),
            ("rules", rules.to_owned()),
        ]
    };
    // A bad rule: refused, nothing changed, the form keeps what was typed.
    let bad = form("block 优惠\nallow (unclosed");
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = owner.post("/console/settings", &bad).await;
    assert_eq!(p.status, 400, "{}", p.html);
    assert!(p.html.contains("Rule on line 2"), "{}", p.html);
    assert!(p.html.contains("allow (unclosed"));
    let (_, v) = s.call("GET", "/v1/settings/sms", Some(&key), None).await;
    assert_eq!(v["rules"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(
        owner
            .post("/console/settings", &[("prefix", "x")])
            .await
            .status,
        403
    );

    // Saved: the checkbox unticked turns the filter off.
    let good = form("block 优惠|促销\nallow 取件码");
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = owner.post("/console/settings", &good).await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert!(p.html.contains("Saved."));
    let (_, v) = s.call("GET", "/v1/settings/sms", Some(&key), None).await;
    assert_eq!(v["prefix"], "【Shop】", "{v}");
    assert_eq!(v["marketing_filter"], "off", "{v}");
    assert_eq!(v["rules"][0]["action"], "block", "{v}");
    assert_eq!(v["rules"][0]["match"], "优惠|促销", "{v}");
    assert_eq!(v["rules"][1]["action"], "allow", "{v}");
    let page = owner.get("/console/settings").await;
    assert!(
        page.html.contains("block 优惠|促销\nallow 取件码"),
        "{}",
        page.html
    );

    // The call rules: refused as typed, then saved.
    for (allow, conc, says) in [
        ("+86 86", "", "A prefix is + and 1 to 15 digits"),
        ("+86", "0", "A cap is a whole number"),
    ] {
        let p = owner
            .post(
                "/console/settings/calls",
                &[
                    ("csrf", &csrf),
                    ("allow", allow),
                    ("deny", ""),
                    ("max_concurrent", conc),
                ],
            )
            .await;
        assert_eq!(p.status, 400, "{}", p.html);
        assert!(p.html.contains(says), "{says}: {}", p.html);
        assert!(p.html.contains(allow), "what was typed stays");
    }
    assert_eq!(
        owner
            .post("/console/settings/calls", &[("allow", "+86")])
            .await
            .status,
        403
    );
    let p = owner
        .post(
            "/console/settings/calls",
            &[
                ("csrf", &csrf),
                ("allow", "+86, +852"),
                ("deny", "+86170\n+86171"),
                ("max_concurrent", "40"),
                ("max_per_second", ""),
            ],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.html);
    let (_, v) = s.call("GET", "/v1/settings/calls", Some(&key), None).await;
    assert_eq!(v["allow_prefixes"], json!(["+86", "+852"]), "{v}");
    assert_eq!(v["deny_prefixes"], json!(["+86170", "+86171"]), "{v}");
    assert_eq!(v["max_concurrent_calls"], 40, "{v}");
    assert!(v["max_calls_per_second"].is_null(), "{v}");
    // A destination the rules refuse is refused in the bindings form too.
    let bcsrf = owner.get("/console/bindings").await.csrf();
    let p = owner
        .post(
            "/console/bindings",
            &[
                ("csrf", &bcsrf),
                ("mode", "axn"),
                ("a", "+8617012345678"),
                ("hours", "2"),
            ],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.html);
    assert!(
        p.html.contains("outside the allowed destinations"),
        "{}",
        p.html
    );
}

/// A text to a shared number that names no extension is held; an operator
/// reads it and relays it to the right extension from the messages page,
/// and may show one text whole. A viewer may do neither.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_releases_a_held_text_and_reveals_one_text() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = shop(&s).await;
    let shop_owner = party(23456781);
    let (st, b) = s.bind(&key, json!({"mode": "axe", "a": shop_owner})).await;
    assert_eq!(st, 201, "{b}");
    let (xx, ext) = (
        b["x"].as_str().unwrap().to_owned(),
        b["extension"].as_str().unwrap().to_owned(),
    );
    let courier = party(23456789);
    let words = format!("外卖到了，放门口。有事打我 {courier}");
    let (st, v) = s
        .call(
            "POST",
            "/v1/sms/inbound",
            Some(SWITCH_KEY),
            Some(json!({"from": courier, "to": xx, "text": words})),
        )
        .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("held")), "{v}");
    let id = v["message_id"].as_str().unwrap().to_owned();
    let release = format!("/console/messages/{id}/release");
    let reveal = format!("/console/messages/{id}/reveal");

    let mut viewer = Agent::new(&s.base);
    assert_eq!(
        viewer.sign_in("viewer@shop.example", PASSWORD).await.status,
        303
    );
    let page = viewer.get("/console/messages").await;
    assert!(page.html.contains("Held"), "{}", page.html);
    assert!(!page.html.contains(&release) && !page.html.contains(&reveal));
    assert!(
        !page.html.contains(&courier[3..]),
        "masked, in the text too"
    );
    let csrf = page.csrf();
    for path in [&release, &reveal] {
        let p = viewer
            .post(path, &[("csrf", &csrf), ("extension", &ext)])
            .await;
        assert_eq!(p.status, 403, "{path}");
    }

    let mut op = Agent::new(&s.base);
    assert_eq!(
        op.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    let page = op.get("/console/messages?status=held").await;
    assert!(page.html.contains(&release), "{}", page.html);
    let csrf = page.csrf();
    assert_eq!(op.post(&release, &[("extension", &ext)]).await.status, 403);
    let unknown = if ext == "9999" { "9998" } else { "9999" };
    for (typed, status, says) in [
        ("12x", 400, "An extension is 1 to 8 digits."),
        ("", 400, "An extension is 1 to 8 digits."),
        (
            unknown,
            400,
            "No active binding on this number has that extension.",
        ),
    ] {
        let p = op
            .post(&release, &[("csrf", &csrf), ("extension", typed)])
            .await;
        assert_eq!(p.status, status, "{typed}: {}", p.html);
        assert!(p.html.contains(says), "{typed}: {}", p.html);
    }
    let (_, held) = s
        .call("GET", "/v1/messages?status=held", Some(&key), None)
        .await;
    assert_eq!(held["items"].as_array().unwrap().len(), 1, "still held");

    let p = op
        .post(&release, &[("csrf", &csrf), ("extension", &ext)])
        .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let page = op.get(p.location.as_deref().unwrap()).await;
    assert!(
        page.html.contains("Released and relayed to")
            && page
                .html
                .contains(&format!("{}****{}", &shop_owner[..6], &shop_owner[10..])),
        "{}",
        page.html
    );
    assert!(!page.html.contains(&shop_owner[3..]));
    let (_, list) = s.call("GET", "/v1/messages", Some(&key), None).await;
    let m = &list["items"][0];
    assert_eq!(
        (m["status"].as_str(), m["to"].as_str()),
        (Some("relayed"), Some(shop_owner.as_str()))
    );
    let p = op
        .post(&release, &[("csrf", &csrf), ("extension", &ext)])
        .await;
    assert_eq!(p.status, 409);
    assert!(p.html.contains("not held any more"), "{}", p.html);

    // One text whole: its parties and its words, for this answer only.
    let p = op.post(&reveal, &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 200, "{}", p.html);
    for whole in [courier.as_str(), shop_owner.as_str(), xx.as_str()] {
        assert!(p.html.contains(whole), "{whole}: {}", p.html);
    }
    assert!(p.html.contains(&words), "{}", p.html);
    assert_eq!(p.headers.get("cache-control").unwrap(), "no-store");
    let p = op
        .post(
            "/console/messages/00000000-0000-0000-0000-000000000000/reveal",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 404);

    for action in [
        "POST /console/messages/{id}/release",
        "POST /console/messages/{id}/reveal",
    ] {
        let entry = eventually(5, action, || async {
            let (_, log) = s.call("GET", "/v1/audit", Some(&key), None).await;
            log["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["action"] == action)
                .cloned()
        })
        .await;
        assert_eq!(entry["object"], id.as_str());
        assert!(entry["user_id"].is_string(), "{entry}");
    }
}

/// An owner listens to every prompt, replaces one with a WAV file (a file
/// that is not 8 kHz mono is refused, saying why) and sets it back; the
/// API sees the same. Nobody else may.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_listens_to_replaces_and_reverts_a_prompt() {
    use maskline_media::wav::{prompt_wav, read_prompt};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = shop(&s).await;
    let prompt_of = |name: &str| {
        let name = name.to_owned();
        let s = &s;
        let key = key.clone();
        async move {
            let (_, list) = s.call("GET", "/v1/prompts", Some(&key), None).await;
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name.as_str())
                .cloned()
                .unwrap()
        }
    };

    let mut op = Agent::new(&s.base);
    assert_eq!(
        op.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    assert_eq!(op.get("/console/settings").await.status, 403);
    assert_eq!(op.get("/console/prompts/expired?play=zh").await.status, 403);
    let csrf = op.get("/console/messages").await.csrf();
    let tone: Vec<i16> = (0..12_000)
        .map(|i| ((f64::from(i) * 0.3).sin() * 6000.0) as i16)
        .collect();
    let good = prompt_wav(&tone);
    let p = op
        .post_file("/console/prompts/expired", &[("csrf", &csrf)], &good)
        .await;
    assert_eq!(p.status, 403);

    let mut owner = Agent::new(&s.base);
    assert_eq!(
        owner.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
    let page = owner.get("/console/settings").await;
    assert_eq!(page.status, 200);
    for name in [
        "enter_extension",
        "invalid_extension",
        "expired",
        "no_binding",
        "forbidden",
        "pre_connect",
        "callee_whisper",
        "last_minute",
        "recording_notice",
    ] {
        for play in ["zh", "en"] {
            let src = format!("/console/prompts/{name}?play={play}");
            assert!(page.html.contains(&src), "{src}");
            let wav = owner.get(&src).await;
            assert_eq!(wav.status, 200, "{src}");
            assert_eq!(wav.headers.get("content-type").unwrap(), "audio/wav");
            assert!(
                read_prompt(wav.bytes.as_slice()).unwrap().len() > 8000,
                "{src}"
            );
        }
    }
    assert!(!page.html.contains("play=own"));
    assert_eq!(
        owner.get("/console/prompts/expired?play=own").await.status,
        404
    );
    assert_eq!(
        owner.get("/console/prompts/nothing?play=zh").await.status,
        404
    );
    let csrf = page.csrf();

    // Refused, saying why, and nothing changes.
    let mut wide = good.clone();
    wide[24..28].copy_from_slice(&16_000u32.to_le_bytes());
    wide[28..32].copy_from_slice(&32_000u32.to_le_bytes());
    for (file, says) in [
        (wide.as_slice(), "The sample rate is 16,000 Hz"),
        (
            b"number,area\n".as_slice(),
            "not a WAV file that can be read",
        ),
        (b"".as_slice(), "Choose a WAV file."),
    ] {
        let p = owner
            .post_file("/console/prompts/expired", &[("csrf", &csrf)], file)
            .await;
        assert_eq!(p.status, 400, "{says}: {}", p.html);
        assert!(p.html.contains(says), "{says}: {}", p.html);
    }
    let p = owner
        .post_file("/console/prompts/expired", &[], &good)
        .await;
    assert_eq!(p.status, 403);
    let p = owner
        .post_file("/console/prompts/nothing", &[("csrf", &csrf)], &good)
        .await;
    assert_eq!(p.status, 404);
    assert_eq!(prompt_of("expired").await["source"], "builtin");

    let p = owner
        .post_file("/console/prompts/expired", &[("csrf", &csrf)], &good)
        .await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert!(
        p.html.contains("Replaced: The binding has ended"),
        "{}",
        p.html
    );
    assert!(p.html.contains("/console/prompts/expired?play=own"));
    assert!(p.html.contains("1.5 s"), "{}", p.html);
    let api = prompt_of("expired").await;
    assert_eq!(
        (api["source"].as_str(), api["duration_ms"].as_u64()),
        (Some("tenant"), Some(1500))
    );
    let played = owner.get("/console/prompts/expired?play=own").await;
    assert_eq!(played.status, 200);
    assert_eq!(read_prompt(played.bytes.as_slice()).unwrap(), tone);

    let p = owner
        .post("/console/prompts/expired/revert", &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert!(
        p.html.contains("The built-in one plays again"),
        "{}",
        p.html
    );
    assert_eq!(prompt_of("expired").await["source"], "builtin");
    assert_eq!(
        owner.get("/console/prompts/expired?play=own").await.status,
        404
    );

    for action in [
        "POST /console/prompts/{name}",
        "POST /console/prompts/{name}/revert",
    ] {
        let entry = eventually(5, action, || async {
            let (_, log) = s.call("GET", "/v1/audit", Some(&key), None).await;
            log["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["action"] == action)
                .cloned()
        })
        .await;
        assert_eq!(entry["object"], "expired");
    }
}

/// An admin adds a tenant (its first key shown once, and working) and sets
/// a tenant's own API rate; an owner may do neither.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_adds_a_tenant_and_sets_its_api_rate() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (shop_id, _) = shop(&s).await;

    let mut owner = Agent::new(&s.base);
    assert_eq!(
        owner.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
    let page = owner.get("/console/bindings").await;
    assert!(
        !page.html.contains("/console/tenants"),
        "not in an owner's menu"
    );
    let refused = owner.get("/console/tenants").await;
    assert_eq!(refused.status, 403);
    // The refusal keeps the signed-in menu: the way on is one click.
    assert!(
        refused.html.contains("href=\"/console/bindings\"")
            && refused.html.contains("action=\"/console/logout\""),
        "{}",
        refused.html
    );
    let missing = owner.get("/console/no-such-page").await;
    assert_eq!(missing.status, 404);
    assert!(missing.html.contains("href=\"/console/bindings\""));
    let csrf = page.csrf();
    let p = owner
        .post("/console/tenants", &[("csrf", &csrf), ("name", "mine")])
        .await;
    assert_eq!(p.status, 403);
    let p = owner
        .post(
            &format!("/console/tenants/{shop_id}/rate"),
            &[("csrf", &csrf), ("rate_limit", "0")],
        )
        .await;
    assert_eq!(p.status, 403);

    let mut admin = Agent::new(&s.base);
    assert_eq!(
        admin.sign_in("root@ops.example", PASSWORD).await.status,
        303
    );
    let page = admin.get("/console/tenants").await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.html.contains("shop") && page.html.contains("5,000 a second (the server&#39;s)"),
        "{}",
        page.html
    );
    let csrf = page.csrf();
    assert_eq!(
        admin
            .post("/console/tenants", &[("name", "courier-app")])
            .await
            .status,
        403
    );
    for name in ["", "   "] {
        let p = admin
            .post("/console/tenants", &[("csrf", &csrf), ("name", name)])
            .await;
        assert_eq!(p.status, 400);
        assert!(p.html.contains("A name is 1 to 200 characters."));
    }
    let p = admin
        .post(
            "/console/tenants",
            &[("csrf", &csrf), ("name", "courier-app")],
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.html);
    let at = p.html.find("id=\"new-key\">").expect("the key shown once") + 13;
    let key = p.html[at..at + p.html[at..].find('<').unwrap()].to_owned();
    assert!(key.starts_with("mlk_"), "{key}");
    let (st, _) = s.call("GET", "/v1/bindings", Some(&key), None).await;
    assert_eq!(st, 200, "the new tenant's key works");
    assert!(
        !admin.get("/console/tenants").await.html.contains(&key),
        "shown once"
    );
    let (_, list) = s.call("GET", "/v1/tenants", Some(ADMIN_KEY), None).await;
    let courier = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "courier-app")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let rate_path = format!("/console/tenants/{courier}/rate");
    for bad in ["-1", "fast", "10000001"] {
        let p = admin
            .post(&rate_path, &[("csrf", &csrf), ("rate_limit", bad)])
            .await;
        assert_eq!(p.status, 400, "{bad}");
        assert!(p.html.contains("A rate is a whole number"), "{bad}");
    }
    let p = admin
        .post(&rate_path, &[("csrf", &csrf), ("rate_limit", "250")])
        .await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert!(p.html.contains("250 a second"), "{}", p.html);
    let rate_of = |list: &serde_json::Value| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == courier.as_str())
            .unwrap()["rate_limit"]
            .clone()
    };
    let (_, list) = s.call("GET", "/v1/tenants", Some(ADMIN_KEY), None).await;
    assert_eq!(rate_of(&list), 250);
    let p = admin
        .post(&rate_path, &[("csrf", &csrf), ("rate_limit", "")])
        .await;
    assert_eq!(p.status, 200);
    let (_, list) = s.call("GET", "/v1/tenants", Some(ADMIN_KEY), None).await;
    assert!(rate_of(&list).is_null(), "the server's again");
    let p = admin
        .post(
            "/console/tenants/0190a1b2-0000-7000-8000-000000000000/rate",
            &[("csrf", &csrf), ("rate_limit", "1")],
        )
        .await;
    assert_eq!(p.status, 404);

    let entry = eventually(5, "the tenant's audit entry", || async {
        let (_, log) = s.call("GET", "/v1/audit", Some(&key), None).await;
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "POST /console/tenants/{id}/rate")
            .cloned()
    })
    .await;
    assert_eq!(entry["object"], courier.as_str());
    assert!(entry["user_id"].is_string(), "{entry}");
}

/// A binding's row links to its calls and its texts; those lists hold only
/// that binding's, until "Show all".
#[tokio::test(flavor = "multi_thread")]
async fn a_bindings_calls_and_texts_are_one_click_away() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = shop(&s).await;
    let mut ids = Vec::new();
    for (i, words) in [(1u32, "first binding's text"), (3, "second binding's text")] {
        let (a, b) = (party(34567000 + i), party(34567001 + i));
        let (st, v) = s.bind(&key, json!({"mode": "axb", "a": a, "b": b})).await;
        assert_eq!(st, 201, "{v}");
        let (st, t) = s
            .call(
                "POST",
                "/v1/sms/inbound",
                Some(SWITCH_KEY),
                Some(json!({"from": a, "to": v["x"], "text": words})),
            )
            .await;
        assert_eq!((st, t["status"].as_str()), (200, Some("relayed")), "{t}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let mut viewer = Agent::new(&s.base);
    assert_eq!(
        viewer.sign_in("viewer@shop.example", PASSWORD).await.status,
        303
    );
    let page = viewer.get("/console/bindings").await;
    let texts = format!("/console/messages?binding={}", ids[0]);
    let calls = format!("/console/calls?binding={}", ids[0]);
    assert!(
        page.html.contains(&texts) && page.html.contains(&calls),
        "{}",
        page.html
    );
    let page = viewer.get(&texts).await;
    assert_eq!(page.status, 200);
    assert!(
        page.html.contains("first binding&#39;s text"),
        "{}",
        page.html
    );
    assert!(!page.html.contains("second binding"), "only that binding's");
    assert!(page.html.contains("Of one binding only:"));
    let page = viewer.get("/console/messages").await;
    assert!(page.html.contains("first binding") && page.html.contains("second binding"));
    let page = viewer.get(&calls).await;
    assert_eq!(page.status, 200);
    assert!(
        page.html.contains("Of one binding only:") && page.html.contains("No call"),
        "{}",
        page.html
    );
    // A binding id that reads as none lists everything, as without one.
    assert_eq!(
        viewer.get("/console/calls?binding=nonsense").await.status,
        200
    );

    // A day to end the list on: all of today's texts are before 2100,
    // none before 2020.
    let page = viewer.get("/console/messages?until=2100-01-01").await;
    assert!(page.html.contains("first binding") && page.html.contains("second binding"));
    assert!(
        page.html.contains("value=\"2100-01-01\""),
        "the day stays in the form"
    );
    let page = viewer.get("/console/messages?until=2020-01-01").await;
    assert!(page.html.contains("No text matches."), "{}", page.html);
    let page = viewer.get("/console/messages?until=31.12.2020").await;
    assert_eq!(page.status, 400);
    assert!(
        page.html.contains("A date is year-month-day"),
        "{}",
        page.html
    );
    let page = viewer.get("/console/calls?until=2020-01-01").await;
    assert!(page.html.contains("No call matches."), "{}", page.html);
    // And a day to start it on: none of today's texts is from 2100 on,
    // all are from 2020 on, also with an end day after today.
    let page = viewer.get("/console/messages?from=2100-01-01").await;
    assert!(page.html.contains("No text matches."), "{}", page.html);
    assert!(page.html.contains("value=\"2100-01-01\""));
    let page = viewer
        .get("/console/messages?from=2020-01-01&until=2100-01-01")
        .await;
    assert!(page.html.contains("first binding") && page.html.contains("second binding"));
    let page = viewer.get("/console/messages?from=yesterday").await;
    assert_eq!(page.status, 400);
    assert!(page.html.contains("A date is year-month-day"));
    let page = viewer.get("/console/calls?from=2100-01-01").await;
    assert!(page.html.contains("No call matches."), "{}", page.html);
    assert!(
        viewer
            .get("/console/calls?from=1.1.2020")
            .await
            .html
            .contains("A date is year-month-day")
    );
    let p = viewer
        .post(
            "/console/calls/search",
            &[
                ("csrf", &page.csrf()),
                ("party", ""),
                ("from", "2019-12-01"),
                ("until", "2020-01-01"),
            ],
        )
        .await;
    assert_eq!(
        p.location.as_deref(),
        Some("/console/calls?from=2019-12-01&until=2020-01-01")
    );
}

/// The secret shown once on a settings page, if any.
fn shown_secret(html: &str) -> Option<String> {
    let at = html.find("id=\"new-secret\">")? + "id=\"new-secret\">".len();
    Some(html[at..at + html[at..].find('<')?].to_owned())
}

/// An owner sets the webhook in the settings (a URL on the operator's own
/// network refused unless allowed, a first secret shown once), gives it a
/// new secret and removes it; as the API sees it.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_keeps_the_webhook_in_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    // As shipped: callbacks may reach public addresses only.
    let mut s = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_SWITCH_KEY", SWITCH_KEY),
            ("MASKLINE_WEBHOOK_ALLOW_PRIVATE", "false"),
        ],
    )
    .await;
    let (_, key) = shop(&s).await;
    let mut owner = Agent::new(&s.base);
    assert_eq!(
        owner.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
    let page = owner.get("/console/settings").await;
    assert!(
        !page.html.contains("/console/settings/webhook/rotate"),
        "none set yet"
    );
    let csrf = page.csrf();
    let hook = "http://127.0.0.1:9/hook";
    let save = |url: &str, events: &str, intercept: &str, timeout: &str| {
        vec![
            ("csrf".to_owned(), csrf.clone()),
            ("url".to_owned(), url.to_owned()),
            ("events".to_owned(), events.to_owned()),
            ("intercept_url".to_owned(), intercept.to_owned()),
            ("intercept_fallback".to_owned(), "deny".to_owned()),
            ("intercept_timeout_ms".to_owned(), timeout.to_owned()),
        ]
    };
    fn post(form: &[(String, String)]) -> Vec<(&str, &str)> {
        form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
    for (form, says) in [
        (save(hook, "", "", ""), "on a private or local network"),
        (
            save("http://localhost:9/", "", "", ""),
            "on a private or local network",
        ),
        (
            save("not a url", "", "", ""),
            "Not a usable http(s) address.",
        ),
        (save(hook, "call.exploded", "", ""), "Unknown event type"),
        (
            save(hook, "", "http://10.1.2.3/ask", "800"),
            "on a private or local network",
        ),
    ] {
        let p = owner.post("/console/settings/webhook", &post(&form)).await;
        assert_eq!(p.status, 400, "{says}: {}", p.html);
        assert!(p.html.contains(says), "{says}: {}", p.html);
    }
    let p = owner
        .post(
            "/console/settings/webhook",
            &post(&save("not a url", "call.exploded", "", "")),
        )
        .await;
    assert!(p.html.contains("value=\"call.exploded\""), "kept as typed");
    let (st, _) = s.call("GET", "/v1/webhook", Some(&key), None).await;
    assert_eq!(st, 404, "a refused form changes nothing");

    // Where the operator allows its own network.
    s.env.retain(|(k, _)| k != "MASKLINE_WEBHOOK_ALLOW_PRIVATE");
    s.env
        .push(("MASKLINE_WEBHOOK_ALLOW_PRIVATE".into(), "true".into()));
    s.restart().await;
    let p = owner
        .post(
            "/console/settings/webhook",
            &post(&save(
                hook,
                "call.ended, sms.*",
                "http://127.0.0.1:9/ask",
                "20",
            )),
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(p.html.contains("Wait 50 to 10,000 ms."));
    let p = owner
        .post(
            "/console/settings/webhook",
            &post(&save(
                hook,
                "call.ended, sms.*",
                "http://127.0.0.1:9/ask",
                "500",
            )),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert!(p.html.contains("Webhook saved."));
    let first = shown_secret(&p.html).expect("a first secret is shown once");
    assert!(first.starts_with("whsec_"), "{first}");
    let (st, w) = s.call("GET", "/v1/webhook", Some(&key), None).await;
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["url"], hook);
    assert_eq!(w["events"], json!(["call.ended", "sms.*"]));
    assert_eq!(
        (
            w["intercept"]["fallback"].as_str(),
            w["intercept"]["timeout_ms"].as_u64()
        ),
        (Some("deny"), Some(500))
    );
    let page = owner.get("/console/settings").await;
    assert!(shown_secret(&page.html).is_none(), "shown only once");
    assert!(page.html.contains("value=\"call.ended sms.*\""));

    // A change keeps the secret (not shown again); a new one is shown once.
    let p = owner
        .post("/console/settings/webhook", &post(&save(hook, "", "", "")))
        .await;
    assert_eq!(p.status, 200);
    assert!(shown_secret(&p.html).is_none());
    let (_, w) = s.call("GET", "/v1/webhook", Some(&key), None).await;
    assert!(w["intercept"].is_null() && w["events"] == json!([]), "{w}");
    let p = owner
        .post("/console/settings/webhook/rotate", &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 200);
    let second = shown_secret(&p.html).expect("the new secret is shown");
    assert!(second.starts_with("whsec_") && second != first);

    // Not an operator's to change.
    let mut op = Agent::new(&s.base);
    assert_eq!(
        op.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    let op_csrf = op.get("/console/bindings").await.csrf();
    let p = op
        .post("/console/settings/webhook/delete", &[("csrf", &op_csrf)])
        .await;
    assert_eq!(p.status, 403);
    assert_eq!(
        owner
            .post("/console/settings/webhook/delete", &[])
            .await
            .status,
        403
    );
    let (st, _) = s.call("GET", "/v1/webhook", Some(&key), None).await;
    assert_eq!(st, 200);

    let p = owner
        .post("/console/settings/webhook/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 200);
    assert!(!p.html.contains("/console/settings/webhook/rotate"));
    let (st, _) = s.call("GET", "/v1/webhook", Some(&key), None).await;
    assert_eq!(st, 404);
    for action in [
        "POST /console/settings/webhook",
        "POST /console/settings/webhook/rotate",
        "POST /console/settings/webhook/delete",
    ] {
        eventually(5, action, || async {
            let (_, log) = s.call("GET", "/v1/audit", Some(&key), None).await;
            log["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["action"] == action)
                .cloned()
        })
        .await;
    }
}

/// An owner removes a user who left: that user's session ends at once; an
/// owner cannot remove itself, nor may anyone below an owner remove anyone.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_removes_a_user_and_their_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = shop(&s).await;
    let (_, users) = s.call("GET", "/v1/users", Some(&key), None).await;
    let id_of = |email: &str| {
        users["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (owner_id, op_id) = (id_of("owner@shop.example"), id_of("operator@shop.example"));
    let mut op = Agent::new(&s.base);
    assert_eq!(
        op.sign_in("operator@shop.example", PASSWORD).await.status,
        303
    );
    let op_csrf = op.get("/console/bindings").await.csrf();
    let p = op
        .post(
            &format!("/console/users/{owner_id}/remove"),
            &[("csrf", &op_csrf)],
        )
        .await;
    assert_eq!(p.status, 403, "an operator removes nobody");

    let mut owner = Agent::new(&s.base);
    assert_eq!(
        owner.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
    let page = owner.get("/console/users").await;
    assert!(
        page.html
            .contains(&format!("/console/users/{op_id}/remove"))
    );
    assert!(
        !page
            .html
            .contains(&format!("/console/users/{owner_id}/remove")),
        "not oneself"
    );
    let csrf = page.csrf();
    let p = owner
        .post(
            &format!("/console/users/{owner_id}/remove"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(p.html.contains("You cannot remove yourself."));
    assert_eq!(
        owner
            .post(&format!("/console/users/{op_id}/remove"), &[])
            .await
            .status,
        403
    );
    let p = owner
        .post(
            &format!("/console/users/{op_id}/remove"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert!(p.html.contains("User removed"));
    assert!(!p.html.contains("operator@shop.example"));
    assert_eq!(op.get("/console/bindings").await.status, 303, "signed out");
    let p = owner
        .post(
            &format!("/console/users/{op_id}/remove"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 404, "removed already");
    eventually(5, "the removal's audit entry", || async {
        let (_, log) = s.call("GET", "/v1/audit", Some(&key), None).await;
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["action"] == "POST /console/users/{id}/remove" && e["object"] == op_id.as_str()
            })
            .cloned()
    })
    .await;
}

/// One address trying many accounts is slowed down: after a burst of sixty
/// attempts (a lockout stops at ten a account), sign-in answers `429` with
/// `Retry-After`, the right password included, without checking it.
#[tokio::test(flavor = "multi_thread")]
async fn an_address_trying_many_accounts_is_slowed_down() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    shop(&s).await;
    let mut agent = Agent::new(&s.base);
    let mut throttled = None;
    // Unlimited, all 200 would be answered; limited, the attempts outrun
    // one a second after the burst however slow the machine.
    for i in 0..200 {
        let p = agent
            .sign_in(&format!("guess{i}@shop.example"), "not-the-passphrase")
            .await;
        match p.status {
            401 => continue,
            429 => {
                throttled = Some((i, p));
                break;
            }
            other => panic!("{other}: {}", p.html),
        }
    }
    let (at, p) = throttled.expect("throttled within 200 attempts");
    assert!(at >= 60, "a burst of sixty first, throttled at {at}");
    let retry: u64 = p.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    assert!(
        p.html
            .contains("Too many sign-in attempts from your address"),
        "{}",
        p.html
    );
    let p = agent.sign_in("owner@shop.example", PASSWORD).await;
    assert_eq!(p.status, 429, "the right password waits too");
    // The account itself is not locked: a second later it signs in.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        agent.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_console_users_draw_on_the_rate_its_keys_do() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (shop_id, key) = shop(&s).await;
    let (st, v) = s
        .call(
            "PATCH",
            &format!("/v1/tenants/{shop_id}"),
            Some(ADMIN_KEY),
            Some(json!({"rate_limit": 1})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let mut owner = Agent::new(&s.base);
    assert_eq!(
        owner.sign_in("owner@shop.example", PASSWORD).await.status,
        303
    );
    // One request a second, bursts of two: pages outrun it at once. Each
    // round empties the bucket from the console, then asks with the key;
    // only a pause of a second between the two could refill it, so one of
    // a few rounds shows the two share a bucket.
    let mut shared = false;
    for _ in 0..5 {
        let mut limited = None;
        for _ in 0..50 {
            let p = owner.get("/console/bindings").await;
            match p.status {
                200 => continue,
                429 => {
                    limited = Some(p);
                    break;
                }
                other => panic!("{other}: {}", p.html),
            }
        }
        let p = limited.expect("a page refused within 50");
        let retry: u64 = p.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "Retry-After: {retry}");
        assert!(p.html.contains("Too many requests"), "{}", p.html);
        // With the menu: the way on is one click, once the time has passed.
        assert!(p.html.contains("href=\"/console/bindings\""), "{}", p.html);
        let (st, _) = s.call("GET", "/v1/bindings", Some(&key), None).await;
        if st == 429 {
            shared = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    }
    assert!(
        shared,
        "the key's requests draw on the bucket the console emptied"
    );
    // The admin belongs to no tenant and has no rate.
    let mut admin = Agent::new(&s.base);
    assert_eq!(
        admin.sign_in("root@ops.example", PASSWORD).await.status,
        303
    );
    for _ in 0..20 {
        assert_eq!(admin.get("/console/tenants").await.status, 200);
    }
    // Once the bucket refills, the owner's pages are served again.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(owner.get("/console/bindings").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_proxy_that_does_not_say_tls_cookies_can_be_secure_always() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_CONSOLE_SECURE_COOKIE", "true"),
        ],
    )
    .await;
    shop(&s).await;
    let secure = |headers: &reqwest::header::HeaderMap, name: &str| {
        headers.get_all("set-cookie").iter().any(|v| {
            let v = v.to_str().unwrap();
            v.starts_with(&format!("{name}=")) && v.ends_with("; Secure")
        })
    };
    // No X-Forwarded-Proto or Forwarded header on either request.
    let mut agent = Agent::new(&s.base);
    let form = agent.get("/console/login").await;
    assert!(secure(&form.headers, "ml_login"), "{:?}", form.headers);
    let signed_in = agent.sign_in("owner@shop.example", PASSWORD).await;
    assert_eq!(signed_in.status, 303);
    assert!(
        secure(&signed_in.headers, "ml_session"),
        "{:?}",
        signed_in.headers
    );
    let csrf = agent.get("/console").await.csrf();
    let out = agent.post("/console/logout", &[("csrf", &csrf)]).await;
    assert!(secure(&out.headers, "ml_session"), "{:?}", out.headers);
}
