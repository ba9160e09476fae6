//! Every JSON body and query string the API takes, through the real router,
//! engine and SQLite store in process: whatever arrives is answered with a
//! precise status (never a 500, never a panic), refusals as problem+json.
//!
//! The first byte picks the endpoint; the rest is the body (or the query).
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, header};
use libfuzzer_sys::fuzz_target;
use maskline_api::{AppState, router};
use maskline_engine::{Config, Engine};
use maskline_store::SqliteStore;
use tower::ServiceExt;

const ADMIN: &str = "fuzz-admin-key-0123456789";
const SWITCH: &str = "fuzz-switch-key-0123456789";

struct World {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    key: String,
    binding: String,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (app, key, binding) = runtime.block_on(async {
            let store = SqliteStore::open(dir.path()).await.unwrap();
            let engine = Arc::new(Engine::open(Arc::new(store), Config::default()).await.unwrap());
            engine.ensure_admin_key(Some(ADMIN)).await.unwrap();
            let (_, key) = engine.create_tenant("fuzz").await.unwrap();
            let state = AppState::new(
                engine,
                Default::default(),
                Some(SWITCH),
                None,
                maskline_callbacks::Guard::new(true),
            );
            let app = router(state);
            let send = |method: &str, uri: &str, body: &str| {
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .header(header::AUTHORIZATION, format!("Bearer {key}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_owned()))
                    .unwrap()
            };
            let r = app
                .clone()
                .oneshot(send("POST", "/v1/numbers", r#"{"numbers":[{"number":"+8657100000001"},{"number":"+8657100000002"}]}"#))
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            let r = app
                .clone()
                .oneshot(send("POST", "/v1/bindings", r#"{"mode":"axb","a":"+8613800000001","b":"+8613800000002"}"#))
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            (app, key.clone(), v["id"].as_str().unwrap().to_owned())
        });
        World { runtime, app, key, binding, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    let text = String::from_utf8_lossy(rest).into_owned();
    let patch = format!("/v1/bindings/{}", w.binding);
    let (method, path, bearer, query) = match pick % 12 {
        0 => ("POST", "/v1/bindings", w.key.as_str(), false),
        1 => ("PATCH", patch.as_str(), w.key.as_str(), false),
        2 => ("POST", "/v1/numbers", w.key.as_str(), false),
        3 => ("PUT", "/v1/webhook", w.key.as_str(), false),
        4 => ("PUT", "/v1/settings/sms", w.key.as_str(), false),
        5 => ("POST", "/v1/route", SWITCH, false),
        6 => ("POST", "/v1/sms/inbound", SWITCH, false),
        7 => ("POST", "/v1/tenants", ADMIN, false),
        8 => ("GET", "/v1/bindings", w.key.as_str(), true),
        9 => ("GET", "/v1/calls", w.key.as_str(), true),
        10 => ("GET", "/v1/messages", w.key.as_str(), true),
        _ => ("GET", "/v1/events", w.key.as_str(), true),
    };
    let uri = if query {
        let q: String = text
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '#')
            .collect();
        format!("{path}?{q}")
    } else {
        path.to_owned()
    };
    let Ok(request) = Request::builder()
        .method(method)
        .uri(&uri)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(if query { String::new() } else { text }))
    else {
        return;
    };
    let response = w.runtime.block_on(w.app.clone().oneshot(request)).unwrap();
    let status = response.status();
    assert!(status.as_u16() < 500, "{method} {uri}: {status}");
    if status.is_client_error() {
        let ct = response.headers().get(header::CONTENT_TYPE).cloned();
        assert_eq!(
            ct.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{method} {uri}: {status}"
        );
    }
});
