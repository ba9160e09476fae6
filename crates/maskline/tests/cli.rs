//! The binary's own behaviour: configuration errors, the admin key, the CLI
//! commands, and what reaches the logs.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn serve_with(env: &[(&str, &str)], dir: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .env_clear()
        .env("MASKLINE_DATA_DIR", dir.join("data"))
        .env("MASKLINE_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run maskline")
}

#[test]
fn invalid_config_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("MASKLINE_HTTP_LISTEN", "not-an-address"),
        ("MASKLINE_COOLDOWN_SECS", "soon"),
        ("MASKLINE_DEFAULT_REGION", "XX"),
        ("MASKLINE_SIP_TRUSTED", "300.1.1.1"),
    ] {
        let out = serve_with(&[(var, value)], dir.path());
        assert_eq!(out.status.code(), Some(64), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "cooldown_sec = 5\n").unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cooldown_sec"));
}

#[test]
fn a_taken_port_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = Command::new(bin());
    let out = cmd
        .arg("serve")
        .env_clear()
        .env("MASKLINE_DATA_DIR", dir.path().join("data"))
        .env("MASKLINE_HTTP_LISTEN", &addr)
        .env("MASKLINE_ADMIN_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&addr) && err.contains("cannot listen"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_admin_key_is_printed_once_and_kept_hashed() {
    // Without a terminal (as under systemd) the key goes to a 0600 file in
    // the data directory, never to a log.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(dir.path(), &[]).await;
    let path = dir.path().join("data/admin.key");
    let key = std::fs::read_to_string(&path)
        .expect("admin key written on first start")
        .trim()
        .to_owned();
    assert!(key.starts_with("mla_"), "{key}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!s.logs().contains(&key), "the admin key reached the log");
    assert!(s.logs().contains("admin.key"), "the log says where it is");
    let (st, _) = s
        .call(
            "POST",
            "/v1/tenants",
            Some(&key),
            Some(json!({"name": "t"})),
        )
        .await;
    assert_eq!(st, 201);
    std::fs::remove_file(&path).unwrap();
    s.restart().await;
    assert!(!path.exists(), "generated only once");
    let (st, _) = s
        .call(
            "POST",
            "/v1/tenants",
            Some(&key),
            Some(json!({"name": "u"})),
        )
        .await;
    assert_eq!(st, 201, "the key survives a restart");
    let db = std::fs::read(dir.path().join("data/maskline.db")).unwrap();
    assert!(
        !db.windows(key.len()).any(|w| w == key.as_bytes()),
        "only a hash is stored"
    );
    assert!(!s.logs().contains(&key), "the admin key reached the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_creates_tenants_imports_numbers_and_asks_for_routes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let cli = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .env_clear()
            .env("MASKLINE_HTTP_LISTEN", format!("127.0.0.1:{}", s.port))
            .env("MASKLINE_ADMIN_KEY", ADMIN_KEY)
            .env("MASKLINE_SWITCH_KEY", SWITCH_KEY)
            .output()
            .unwrap()
    };
    let out = cli(&["tenant", "create", "delivery"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tenant = created["id"].as_str().unwrap();
    let key = created["api_key"].as_str().unwrap();

    let csv = dir.path().join("numbers.csv");
    std::fs::write(&csv, format!("number,area\n{},0571\n{}\n", x(1), x(2))).unwrap();
    let out = cli(&[
        "numbers",
        "import",
        csv.to_str().unwrap(),
        "--tenant",
        tenant,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 2"));

    let (st, _) = s
        .bind(key, json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    assert_eq!(st, 201);
    let out = cli(&["route", "--caller", &party(1), "--called", &x(1)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decision: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["action"], "connect");
    assert_eq!(decision["to"], party(2));

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "12345\n").unwrap();
    let out = cli(&[
        "numbers",
        "import",
        bad.to_str().unwrap(),
        "--tenant",
        tenant,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_number"));
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_never_show_a_real_number() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (_, key) = s.create_tenant("t").await;
    s.import(&key, &[&x(1)]).await;
    let (_, b) = s
        .bind(
            &key,
            json!({"mode": "axb", "a": party(4321), "b": party(8765)}),
        )
        .await;
    s.route(&party(4321), &x(1), None).await;
    s.call(
        "GET",
        &format!("/v1/bindings?party={}", party(4321)),
        Some(&key),
        None,
    )
    .await;
    s.call(
        "DELETE",
        &format!("/v1/bindings/{}", b["id"].as_str().unwrap()),
        Some(&key),
        None,
    )
    .await;
    s.bind(
        &key,
        json!({"mode": "axb", "a": party(4321), "b": "garbage-13800004321"}),
    )
    .await;
    let logs = s.logs();
    assert!(logs.contains("binding created"), "debug logs are on");
    for p in [party(4321), party(8765)] {
        let digits = p.trim_start_matches('+');
        assert!(!logs.contains(&digits[2..]), "{p} appears in the logs");
    }
}
