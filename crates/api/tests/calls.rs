//! `GET /v1/calls` in process: the real router, engine and SQLite store, no
//! sockets. (CDRs come from the SIP layer, so they are written through the
//! engine here; the end-to-end suites make them with real calls.)

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use maskline_api::{AppState, router};
use maskline_core::{
    BindingId, CallId, CallRecord, Direction, Number, Refusal, ReleaseReason, ReleasedBy, TenantId,
};
use maskline_engine::{Config, Engine};
use maskline_store::SqliteStore;
use serde_json::Value;
use tower::ServiceExt;

/// 2026-01-31T12:00:00Z.
const NOON: i64 = 1_769_860_800_000;

struct App {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    key: String,
    tenant: TenantId,
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let engine = Arc::new(
        Engine::open(Arc::new(store), Config::default())
            .await
            .unwrap(),
    );
    let (tenant, key) = engine.create_tenant("t").await.unwrap();
    App {
        _dir: dir,
        engine,
        key,
        tenant: tenant.id,
    }
}

impl App {
    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.get_as(uri, &self.key).await
    }

    async fn get_as(&self, uri: &str, key: &str) -> (StatusCode, Value) {
        let state = AppState::new(
            self.engine.clone(),
            Default::default(),
            None,
            None,
            maskline_callbacks::Guard::new(true),
        );
        let res = router(state)
            .oneshot(
                Request::get(uri)
                    .header(header::AUTHORIZATION, format!("Bearer {key}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

/// Call `i` of `tenant`, invited `i` minutes after noon, on binding 7 when
/// `i` is even.
fn call(tenant: TenantId, i: u128) -> CallRecord {
    let at = NOON + 60_000 * i as i64;
    CallRecord {
        id: CallId((0x0190 << 112) | i),
        tenant: Some(tenant),
        binding: i.is_multiple_of(2).then_some(BindingId(7)),
        direction: Some(Direction::AToB),
        x: Some(Number::from_e164("+8657100000001").unwrap()),
        caller: Some(Number::from_e164("+8613800000001").unwrap()),
        callee: Some(Number::from_e164("+8613800000002").unwrap()),
        invited_at: at,
        ringing_at: Some(at + 100),
        answered_at: Some(at + 1_000),
        ended_at: at + 11_500,
        final_status: 200,
        released_by: ReleasedBy::Caller,
        release_reason: ReleaseReason::Normal,
        refusal: None,
        erased: Default::default(),
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_list_pages_filters_and_stays_in_the_tenant() {
    let app = app().await;
    let (other, other_key) = app.engine.create_tenant("other").await.unwrap();
    // An abandoned ack still lands: the SIP layer fires and forgets.
    drop(app.engine.record_call(call(app.tenant, 0)));
    for i in 1..5 {
        app.engine.record_call(call(app.tenant, i)).await.unwrap();
    }
    app.engine.record_call(call(other.id, 9)).await.unwrap();
    let id = |i| call(app.tenant, i).id.to_string();

    let (st, all) = app.get("/v1/calls").await;
    assert_eq!(st, StatusCode::OK, "{all}");
    assert_eq!(ids(&all), (0..5).map(id).collect::<Vec<_>>());
    assert_eq!(all["next_cursor"], Value::Null);
    let first = &all["items"][0];
    assert_eq!(first["invited_at"], "2026-01-31T12:00:00.000Z");
    assert_eq!(first["answered_at"], "2026-01-31T12:00:01.000Z");
    assert_eq!(first["duration_ms"], 10_500);
    assert_eq!(first["duration_seconds"], 11);
    assert_eq!(first["direction"], "a_to_b");
    assert_eq!(first["caller"], "+8613800000001");
    assert_eq!(first["binding_id"], BindingId(7).to_string());
    assert_eq!(all["items"][1]["binding_id"], Value::Null);

    let (_, theirs) = app.get_as("/v1/calls", &other_key).await;
    assert_eq!(ids(&theirs), vec![call(other.id, 9).id.to_string()]);

    let (_, p1) = app.get("/v1/calls?limit=2").await;
    assert_eq!(ids(&p1), vec![id(0), id(1)]);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = app.get(&format!("/v1/calls?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&p2), vec![id(2), id(3)]);
    let cursor = p2["next_cursor"].as_str().unwrap();
    let (_, p3) = app.get(&format!("/v1/calls?limit=2&cursor={cursor}")).await;
    assert_eq!((ids(&p3), &p3["next_cursor"]), (vec![id(4)], &Value::Null));

    let binding = BindingId(7);
    let (_, on_binding) = app.get(&format!("/v1/calls?binding_id={binding}")).await;
    assert_eq!(ids(&on_binding), vec![id(0), id(2), id(4)]);
    let (_, window) = app
        .get("/v1/calls?since=2026-01-31T12:01:00Z&until=2026-01-31T20:03:00%2B08:00")
        .await;
    assert_eq!(
        ids(&window),
        vec![id(1), id(2)],
        "since inclusive, until exclusive"
    );
    let (_, unencoded_plus) = app
        .get("/v1/calls?since=2026-01-31T20:03:00.000+08:00")
        .await;
    assert_eq!(ids(&unencoded_plus), vec![id(3), id(4)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_list_refuses_bad_queries_precisely() {
    let app = app().await;
    for (query, code, field) in [
        ("since=yesterday", "invalid_parameter", Some("since")),
        ("until=2026-01-31", "invalid_parameter", Some("until")),
        (
            "since=2026-01-31T12:00:00Z&until=2026-01-31T11:00:00Z",
            "invalid_parameter",
            Some("until"),
        ),
        ("binding_id=nope", "invalid_parameter", Some("binding_id")),
        ("cursor=%21%21", "invalid_parameter", Some("cursor")),
        ("limit=0", "invalid_parameter", Some("limit")),
        ("limit=1001", "invalid_parameter", Some("limit")),
        ("party=12345", "invalid_number", Some("party")),
        ("caller=%2B8613800000001", "invalid_parameter", None),
    ] {
        let (st, p) = app.get(&format!("/v1/calls?{query}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{query}: {p}");
        assert_eq!(p["code"], code, "{query}: {p}");
        assert_eq!(p["field"].as_str(), field, "{query}: {p}");
    }
    let (st, p) = app.get_as("/v1/calls", "wrong").await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_route_is_in_the_openapi_document() {
    let app = app().await;
    let (st, doc) = app.get("/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    let op = &doc["paths"]["/v1/calls"]["get"];
    assert_eq!(op["tags"][0], "calls", "{op}");
    assert!(doc["components"]["schemas"]["CallView"]["properties"]["duration_seconds"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_call_lists_with_its_refusal() {
    let app = app().await;
    let refused = CallRecord {
        binding: None,
        direction: None,
        callee: None,
        ringing_at: None,
        answered_at: None,
        ended_at: NOON + 3,
        final_status: 404,
        released_by: ReleasedBy::System,
        release_reason: ReleaseReason::Refused,
        refusal: Some(Refusal::NoBinding),
        ..call(app.tenant, 1)
    };
    app.engine.record_call(refused).await.unwrap();
    let (_, page) = app.get("/v1/calls").await;
    let c = &page["items"][0];
    assert_eq!(
        (
            c["release_reason"].as_str(),
            c["refusal"].as_str(),
            c["final_status"].as_u64(),
            c["duration_seconds"].as_i64(),
        ),
        (Some("refused"), Some("no_binding"), Some(404), Some(0))
    );
    assert_eq!(c["answered_at"], Value::Null);
}
