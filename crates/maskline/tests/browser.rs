//! The web console in a real browser: starts a server, fills it through the
//! API, and runs `tests/browser/console.py` (Playwright driving Debian's
//! Chromium) against it. `scripts/test` installs Chromium, Playwright (in
//! `tests/browser/.venv`, from `requirements.txt`) and axe-core (npm, from
//! `package-lock.json`); without them this test fails, saying so.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::json;

const PASSWORD: &str = "browser-passphrase-4711";

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The venv's Python when `scripts/test` made it, else the system's.
fn python() -> PathBuf {
    let venv = browser_dir().join(".venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_works_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path()).await;
    let (tenant, key) = s.create_tenant("shop").await;
    s.import(&key, &[&x(1), &x(2), &x(3), &x(4)]).await;
    for (email, role) in [
        ("operator@shop.example", "operator"),
        ("viewer@shop.example", "viewer"),
    ] {
        let (st, v) = s
            .call(
                "POST",
                "/v1/users",
                Some(ADMIN_KEY),
                Some(json!({"email": email, "password": PASSWORD, "role": role, "tenant_id": tenant})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
    let parties = [party(12345671), party(12345672)];
    let (st, b) = s
        .bind(
            &key,
            json!({"mode": "axb", "a": parties[0], "b": parties[1],
                   "external_ref": "<img src=x onerror=alert(1)>"}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let (new_a, new_b) = (party(23456781), party(23456782));
    let fixture = json!({
        "password": PASSWORD,
        "operator": "operator@shop.example",
        "viewer": "viewer@shop.example",
        // Every party the pages may show: never whole to a viewer.
        "parties": [parties[0], parties[1], new_a, new_b],
        "new_a": new_a,
        "new_b": new_b,
    });

    let python = python();
    let out = Command::new(&python)
        .arg(browser_dir().join("console.py"))
        .env("MASKLINE_BASE", &s.base)
        .env("MASKLINE_FIXTURE", fixture.to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (scripts/test installs what the browser tests need)",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}\n--- server log ---\n{}",
        out.status,
        s.logs()
    );
}
