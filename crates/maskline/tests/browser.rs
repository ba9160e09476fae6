//! The web console in a real browser: starts a server, fills it through the
//! API, and runs `tests/browser/console.py` (Playwright driving Debian's
//! Chromium) against it. `scripts/test` installs Chromium, Playwright (in
//! `tests/browser/.venv`, from `requirements.txt`) and axe-core (npm, from
//! `package-lock.json`); without them this test fails, saying so.

mod common;

use std::path::PathBuf;
use std::process::Command;

use std::time::Duration;

use common::sipp::{self, Sipp, Transport};
use common::smsc::{Smsc, texts_to};
use common::voice::Rig;
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
    // Maskline between a sipp gateway (answering, its media to a socket of
    // ours) and the test SMSC, as in service.
    let parties = [party(12345671), party(12345672)];
    let callee_media = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee_port = callee_media.local_addr().unwrap().port().to_string();
    let mut uas = Sipp::uas(
        "uas_media.xml",
        Transport::Udp,
        &[
            "-s",
            &parties[1],
            "-key",
            "rtp_port",
            &callee_port,
            "-key",
            "codec_pt",
            "8",
            "-key",
            "codec_name",
            "PCMA",
        ],
    );
    let mut smsc = Smsc::start(&[]).await;
    let rig = Rig::start(&uas, &[("MASKLINE_SMPP", &smsc.url())]).await;
    let s = &rig.server;
    s.import(&rig.key, &[&x(3), &x(4)]).await;
    let (_, tenants) = s.call("GET", "/v1/tenants", Some(ADMIN_KEY), None).await;
    let tenant = tenants["items"][0]["id"].as_str().unwrap().to_owned();
    for (email, role) in [
        ("operator@shop.example", "operator"),
        ("viewer@shop.example", "viewer"),
        ("owner@shop.example", "owner"),
        ("root@ops.example", "admin"),
        ("locked@shop.example", "viewer"),
    ] {
        let mut user = json!({"email": email, "password": PASSWORD, "role": role});
        if role != "admin" {
            user["tenant_id"] = json!(tenant);
        }
        let (st, v) = s
            .call("POST", "/v1/users", Some(ADMIN_KEY), Some(user))
            .await;
        assert_eq!(st, 201, "{v}");
    }
    let binding = rig
        .bind(json!({"mode": "axb", "a": parties[0], "b": parties[1],
                     "external_ref": "<img src=x onerror=alert(1)>",
                     "controls": {"record": true}}))
        .await;
    let xx = binding["x"].as_str().unwrap().to_owned();

    // A recorded call: A calls X, sipp plays sip-tester's g711a.pcap.
    let media_port = sipp::free_sip_port().to_string();
    let mut uac = rig.uac(
        "uac_pcap.xml",
        &parties[0],
        &xx,
        Transport::Udp,
        &["-mi", "127.0.0.1", "-mp", &media_port],
    );
    let (a, b) = (
        uac.wait(Duration::from_secs(40)).await,
        uas.wait(Duration::from_secs(40)).await,
    );
    assert!(
        a.success() && b.success(),
        "{}\n{}",
        uac.report(),
        uas.report()
    );
    drop(callee_media);
    let call = rig
        .cdr_where("the recorded call's CDR", |c| c["recording"].is_object())
        .await;

    // A text with a pick-up code, from B through the SMSC, relayed to A.
    let text = "【菜鸟驿站】您有包裹待取，取件码26-3-3707，万科城菜鸟驿站，21:00关门。";
    smsc.deliver("pickup", &parties[1], &xx, text, "ucs2", false);
    assert_eq!(smsc.deliver_status("pickup").await, 0);
    smsc.wait_for(20, "the text relayed", |e| {
        e["event"] == "submit" && e["status"] == 0
    })
    .await;

    // A text to a shop's shared number that names no extension: held.
    let (shop, courier) = (party(23456783), party(23456784));
    let shared = rig.bind(json!({"mode": "axe", "a": shop})).await;
    let shared_x = shared["x"].as_str().unwrap().to_owned();
    smsc.deliver("held", &courier, &shared_x, "外卖放门口了", "ucs2", false);
    assert_eq!(smsc.deliver_status("held").await, 0);

    let (new_a, new_b) = (party(23456781), party(23456782));
    let fixture = json!({
        "password": PASSWORD,
        "operator": "operator@shop.example",
        "viewer": "viewer@shop.example",
        "owner": "owner@shop.example",
        "admin": "root@ops.example",
        "locked": "locked@shop.example",
        // Every party the pages may show: never whole to a viewer.
        "parties": [parties[0], parties[1], new_a, new_b, shop, courier],
        "new_a": new_a,
        "new_b": new_b,
        "shop": shop,
        "shop_extension": shared["extension"],
        "call_id": call["id"],
        "pickup_code": "26-3-3707",
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
    // The text released in the page went out to the shop, from X.
    eventually(20, "the released text relayed to the shop", || async {
        texts_to(&smsc.submits(), &shop)
            .contains(&"外卖放门口了".to_owned())
            .then_some(())
    })
    .await;
}
