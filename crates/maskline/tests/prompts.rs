//! Tenants' prompts end to end: the real binary, WAV files built here, put,
//! listed, refused, kept across a restart and followed by another node.

mod common;

use common::{ADMIN_KEY, SWITCH_KEY, Server, eventually};
use maskline_store::testing::Schema;
use serde_json::Value;

const NAMES: [&str; 9] = [
    "enter_extension",
    "invalid_extension",
    "expired",
    "no_binding",
    "forbidden",
    "pre_connect",
    "callee_whisper",
    "last_minute",
    "recording_notice",
];

/// A WAV file: a 16-byte `fmt ` chunk and the data.
fn wav(format: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = channels * bits / 8;
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// `millis` of a 440 Hz tone at `rate`, as samples.
fn sine(rate: u32, millis: u32) -> Vec<i16> {
    let n = rate * millis / 1000;
    (0..n)
        .map(|i| {
            let t = f64::from(i) / f64::from(rate);
            ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
        })
        .collect()
}

fn pcm16_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// 8 kHz mono PCM16.
fn pcm_wav(millis: u32) -> Vec<u8> {
    wav(1, 1, 8000, 16, &pcm16_bytes(&sine(8000, millis)))
}

/// 8 kHz mono A-law.
fn alaw_wav(millis: u32) -> Vec<u8> {
    let codes: Vec<u8> = sine(8000, millis)
        .into_iter()
        .map(maskline_media::g711::alaw_encode)
        .collect();
    wav(6, 1, 8000, 8, &codes)
}

/// `PUT /v1/prompts/{name}` with `body` as `content_type` (none if `None`).
async fn put(
    s: &Server,
    key: &str,
    name: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = s
        .client
        .put(format!("{}/v1/prompts/{name}", s.base))
        .bearer_auth(key)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = req.send().await.expect("PUT reaches the server");
    let status = res.status().as_u16();
    if status != 200 {
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(ct, "application/problem+json", "{status}");
    }
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn put_ok(s: &Server, key: &str, name: &str, content_type: &str, body: Vec<u8>) -> Value {
    let (st, v) = put(s, key, name, Some(content_type), body).await;
    assert_eq!(st, 200, "{v}");
    v
}

/// `GET /v1/prompts`, by name.
async fn list(s: &Server, key: &str) -> Vec<Value> {
    let (st, v) = s.call("GET", "/v1/prompts", Some(key), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["next_cursor"], Value::Null);
    let items = v["items"].as_array().expect("items").clone();
    let names: Vec<&str> = items.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, NAMES);
    items
}

fn item<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items.iter().find(|p| p["name"] == name).expect("listed")
}

fn assert_builtin(p: &Value) {
    assert_eq!(p["source"], "builtin", "{p}");
    assert_eq!(p["updated_at"], Value::Null, "{p}");
    assert!(p["duration_ms"].as_u64().unwrap() > 500, "{p}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_prompt_replaces_the_builtin_until_deleted_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path()).await;
    let (_, key) = s.create_tenant("shop").await;
    for p in &list(&s, &key).await {
        assert_builtin(p);
    }

    let v = put_ok(&s, &key, "expired", "audio/wav", pcm_wav(1_500)).await;
    assert_eq!(v["name"], "expired");
    assert_eq!(v["source"], "tenant");
    assert_eq!(v["duration_ms"], 1_500);
    let put_at = v["updated_at"].as_str().expect("updated_at").to_owned();
    assert!(put_at.ends_with('Z'), "{put_at}");
    // A-law, under another of the accepted types.
    let v = put_ok(&s, &key, "no_binding", "audio/x-wav", alaw_wav(700)).await;
    assert_eq!(v["duration_ms"], 700);
    // Putting again replaces it.
    let v = put_ok(
        &s,
        &key,
        "no_binding",
        "audio/wave; codecs=6",
        alaw_wav(900),
    )
    .await;
    assert_eq!(v["duration_ms"], 900);

    let items = list(&s, &key).await;
    assert_eq!(item(&items, "expired")["source"], "tenant");
    assert_eq!(item(&items, "expired")["duration_ms"], 1_500);
    assert_eq!(item(&items, "expired")["updated_at"], put_at.as_str());
    assert_eq!(item(&items, "no_binding")["source"], "tenant");
    assert_eq!(item(&items, "no_binding")["duration_ms"], 900);
    for name in NAMES
        .iter()
        .filter(|n| !["expired", "no_binding"].contains(n))
    {
        assert_builtin(item(&items, name));
    }

    // Deleted: the built-in one is back; deleted again: there is none.
    let (st, v) = s
        .call("DELETE", "/v1/prompts/expired", Some(&key), None)
        .await;
    assert_eq!(st, 204, "{v}");
    assert_builtin(item(&list(&s, &key).await, "expired"));
    let (st, v) = s
        .call("DELETE", "/v1/prompts/expired", Some(&key), None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (404, Some("prompt_not_set")),
        "{v}"
    );

    // What was put is durable: a restart (same data directory) keeps it.
    s.restart().await;
    let items = list(&s, &key).await;
    assert_eq!(item(&items, "no_binding")["source"], "tenant");
    assert_eq!(item(&items, "no_binding")["duration_ms"], 900);
    assert_builtin(item(&items, "expired"));
}

#[tokio::test(flavor = "multi_thread")]
async fn prompts_are_in_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (st, spec) = s.call("GET", "/openapi.json", None, None).await;
    assert_eq!(st, 200);
    let paths = &spec["paths"];
    assert!(
        paths["/v1/prompts"].get("get").is_some(),
        "{}",
        paths["/v1/prompts"]
    );
    let one = &paths["/v1/prompts/{name}"];
    assert!(one.get("delete").is_some(), "{one}");
    let body = &one["put"]["requestBody"]["content"];
    for ct in ["audio/wav", "audio/x-wav", "audio/wave"] {
        assert!(body.get(ct).is_some(), "{ct} in {body}");
    }
    assert!(spec["components"]["schemas"].get("PromptView").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_prompts_are_refused_naming_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = s.create_tenant("shop").await;
    let wide = wav(1, 1, 16_000, 16, &pcm16_bytes(&sine(16_000, 500)));
    let stereo = wav(1, 2, 8000, 16, &pcm16_bytes(&sine(8000, 500)));
    let float = wav(3, 1, 8000, 32, &[0; 64]);
    for (what, body, says) in [
        ("16 kHz", wide, "16000 Hz"),
        ("stereo", stereo, "2 channels"),
        ("float", float, "encoding 3"),
        (
            "garbage",
            b"ID3\x04 definitely not a wav".to_vec(),
            "not a RIFF file",
        ),
        ("empty", Vec::new(), "truncated"),
        ("no samples", wav(1, 1, 8000, 16, &[]), "no audio"),
    ] {
        let (st, v) = put(&s, &key, "expired", Some("audio/wav"), body).await;
        assert_eq!(st, 422, "{what}: {v}");
        assert_eq!(v["code"], "invalid_wav", "{what}: {v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{what}: {detail}");
    }
    // Wrong or missing content type: the body is not looked at.
    for ct in [Some("application/octet-stream"), Some("audio/mpeg"), None] {
        let (st, v) = put(&s, &key, "expired", ct, pcm_wav(200)).await;
        assert_eq!(st, 415, "{ct:?}: {v}");
        assert_eq!(v["code"], "unsupported_media_type");
    }
    // Over the size limit.
    let (st, v) = put(&s, &key, "expired", Some("audio/wav"), pcm_wav(140_000)).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    // Names outside the contract.
    let (st, v) = put(&s, &key, "welcome", Some("audio/wav"), pcm_wav(200)).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (404, Some("unknown_prompt")),
        "{v}"
    );
    let (st, v) = s
        .call("DELETE", "/v1/prompts/Expired", Some(&key), None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (404, Some("unknown_prompt")),
        "{v}"
    );
    // Without a key.
    let res = s
        .client
        .put(format!("{}/v1/prompts/expired", s.base))
        .header("content-type", "audio/wav")
        .body(pcm_wav(200))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    // Nothing of the above changed anything.
    for p in &list(&s, &key).await {
        assert_builtin(p);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_sees_and_changes_only_its_own_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, one) = s.create_tenant("one").await;
    let (two_id, two) = s.create_tenant("two").await;
    put_ok(&s, &one, "forbidden", "audio/wav", pcm_wav(1_000)).await;

    for p in &list(&s, &two).await {
        assert_builtin(p);
    }
    let (st, v) = s
        .call("DELETE", "/v1/prompts/forbidden", Some(&two), None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (404, Some("prompt_not_set")),
        "{v}"
    );
    assert_eq!(item(&list(&s, &one).await, "forbidden")["source"], "tenant");

    // Two's own of the same name leaves one's alone.
    put_ok(&s, &two, "forbidden", "audio/wav", pcm_wav(300)).await;
    assert_eq!(
        item(&list(&s, &one).await, "forbidden")["duration_ms"],
        1_000
    );
    assert_eq!(item(&list(&s, &two).await, "forbidden")["duration_ms"], 300);

    // The admin key acts for a tenant only with its Maskline-Tenant header.
    let (st, v) = s.call("GET", "/v1/prompts", Some(ADMIN_KEY), None).await;
    assert_eq!(st, 403, "{v}");
    let res = s
        .client
        .get(format!("{}/v1/prompts", s.base))
        .bearer_auth(ADMIN_KEY)
        .header("maskline-tenant", &two_id)
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        item(v["items"].as_array().unwrap(), "forbidden")["duration_ms"],
        300
    );
}

/// Two nodes over one PostgreSQL: a prompt put or deleted on one is what
/// the other lists (it reloads on the other's notification).
#[tokio::test(flavor = "multi_thread")]
async fn another_node_follows_prompt_changes() {
    let schema = Schema::create().await;
    let url = schema.url();
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2) = (dir.path().join("1"), dir.path().join("2"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    let master = dir.path().join("master.key");
    let env = [
        ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
        ("MASKLINE_SWITCH_KEY", SWITCH_KEY),
        ("MASKLINE_DATABASE_URL", url.as_str()),
        ("MASKLINE_DATABASE_POOL_SIZE", "4"),
        ("MASKLINE_MASTER_KEY_FILE", master.to_str().unwrap()),
    ];
    let (one, two) = tokio::join!(Server::start_with(&d1, &env), Server::start_with(&d2, &env));
    let (_, key) = one.create_tenant("shop").await;
    eventually(10, "the tenant on node 2", || async {
        let (st, _) = two.call("GET", "/v1/prompts", Some(&key), None).await;
        (st == 200).then_some(())
    })
    .await;

    put_ok(&one, &key, "pre_connect", "audio/wav", pcm_wav(1_200)).await;
    eventually(10, "node 2 to list the tenant's prompt", || async {
        let items = list(&two, &key).await;
        let p = item(&items, "pre_connect");
        (p["source"] == "tenant" && p["duration_ms"] == 1_200).then_some(())
    })
    .await;

    let (st, v) = two
        .call("DELETE", "/v1/prompts/pre_connect", Some(&key), None)
        .await;
    assert_eq!(st, 204, "{v}");
    eventually(10, "node 1 to list the built-in prompt again", || async {
        let items = list(&one, &key).await;
        (item(&items, "pre_connect")["source"] == "builtin").then_some(())
    })
    .await;
}
