//! Texts through X, end to end: the real binary bound over SMPP to a real
//! SMSC (the npm `smpp` package in server mode, `tests/smsc/smsc.js`),
//! asserting on what that SMSC received. Store-dependent cases run on the
//! embedded store and on PostgreSQL.

mod common;

use std::time::Duration;

use common::sipp::{self, Sipp, Transport};
use common::smsc::{Smsc, texts_to};
use common::{ADMIN_KEY, SWITCH_KEY, Server, eventually, party, x};
use maskline_store::testing::Schema;
use serde_json::{Value, json};

struct Rig {
    server: Server,
    key: String,
    _dir: tempfile::TempDir,
    _schema: Option<Schema>,
}

impl Rig {
    /// Maskline bound to `smsc`, on PostgreSQL when `pg`; one tenant with
    /// X 1 to 3.
    async fn start(smsc: &Smsc, pg: bool, env: &[(&str, &str)]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let schema = if pg {
            Some(Schema::create().await)
        } else {
            None
        };
        let url = smsc.url();
        let db = schema.as_ref().map(Schema::url);
        let mut vars = vec![
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_SWITCH_KEY", SWITCH_KEY),
            ("MASKLINE_SMPP", url.as_str()),
        ];
        if let Some(db) = &db {
            vars.push(("MASKLINE_DATABASE_URL", db.as_str()));
        }
        vars.extend_from_slice(env);
        let server = Server::start_with(dir.path(), &vars).await;
        let (_, key) = server.create_tenant("courier-app").await;
        server.import(&key, &[&x(1), &x(2), &x(3)]).await;
        smsc.bound().await;
        Rig {
            server,
            key,
            _dir: dir,
            _schema: schema,
        }
    }

    async fn bind(&self, body: Value) -> Value {
        let (st, b) = self.server.bind(&self.key, body).await;
        assert_eq!(st, 201, "{b}");
        b
    }

    async fn unbind(&self, binding: &Value) {
        let path = format!("/v1/bindings/{}", binding["id"].as_str().unwrap());
        let (st, v) = self
            .server
            .call("DELETE", &path, Some(&self.key), None)
            .await;
        assert_eq!(st, 200, "{v}");
    }

    async fn messages(&self, query: &str) -> Vec<Value> {
        self.server
            .list_all(&format!("/v1/messages{query}"), &self.key, 100)
            .await
    }

    /// Waits for a text the tenant's list shows matching `pred`.
    async fn message_where(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(20, what, || async {
            self.messages("").await.into_iter().find(|m| pred(m))
        })
        .await
    }

    async fn events(&self, kind: &str) -> Vec<Value> {
        self.server
            .list_all(&format!("/v1/events?type={kind}"), &self.key, 100)
            .await
    }
}

fn digits(n: &str) -> &str {
    n.trim_start_matches('+')
}

/// Runs a store-dependent case on both back ends.
macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::$case(false).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    super::$case(true).await
                }
            )*
        }
    };
}

both_stores!(
    axb_texts_relay_both_ways_from_x_and_receipts_settle_them,
    long_chinese_and_gsm_texts_round_trip_in_parts,
    axe_texts_go_by_prefix_then_by_last_call_else_are_held,
    marketing_to_axn_is_blocked_and_listed_while_codes_pass,
    an_smsc_that_dies_gets_every_accepted_text_exactly_once_after_it_returns,
    kill_9_after_deliver_sm_resp_loses_no_text,
    http_gateways_push_texts_with_the_same_decisions,
    a_receipt_before_the_submit_answer_still_settles_the_text,
    texts_and_their_parties_are_sealed_at_rest,
);

/// The privacy contract's black-box check for texts: after binds and
/// texts relayed both ways, no party's digits (E.164, national, the last
/// eight) and no text are in the data directory's raw files, nor, on
/// PostgreSQL, in a `pg_dump` of the schema.
async fn texts_and_their_parties_are_sealed_at_rest(pg: bool) {
    let (party_a, party_b) = ("+8613847319256", "+8613962748135");
    let smsc = Smsc::start(&[]).await;
    let rig = Rig::start(&smsc, pg, &[]).await;
    let b = rig
        .bind(json!({"mode": "axb", "a": party_a, "b": party_b}))
        .await;
    let xx = b["x"].as_str().unwrap().to_owned();
    for (from, to, text) in [
        (party_a, party_b, "the parcel is at gate 7"),
        (party_b, party_a, "thanks, coming down"),
    ] {
        let (st, r) = rig
            .server
            .call(
                "POST",
                "/v1/sms/inbound",
                Some(SWITCH_KEY),
                Some(json!({"from": from, "to": xx, "text": text, "gateway_id": "gw-1"})),
            )
            .await;
        assert_eq!((st, r["status"].as_str()), (200, Some("relayed")), "{r}");
        eventually(20, "the text relayed over SMPP", || async {
            texts_to(&smsc.submits(), to)
                .contains(&text.to_owned())
                .then_some(())
        })
        .await;
    }
    let mut needles: Vec<String> = [party_a, party_b]
        .iter()
        .flat_map(|p| common::digit_forms(p))
        .collect();
    needles.extend(["parcel is at gate".to_owned(), "coming down".to_owned()]);
    let found = common::files_holding(&rig.server.dir.join("data"), &needles);
    assert!(found.is_empty(), "{found:?}");
    if let Some(schema) = &rig._schema {
        let dump = std::process::Command::new("pg_dump")
            .args(["--data-only", "--schema", &schema.name, "-d"])
            .arg(maskline_store::testing::server_url())
            .output()
            .expect("pg_dump (postgresql-client)");
        assert!(
            dump.status.success(),
            "{}",
            String::from_utf8_lossy(&dump.stderr)
        );
        assert!(
            String::from_utf8_lossy(&dump.stdout).contains("COPY"),
            "the dump holds the tables"
        );
        let found = common::holding(&dump.stdout, &needles);
        assert!(found.is_empty(), "pg_dump holds {found:?}");
    }
    // And the API still gives every text back whole.
    let listed = rig.messages("").await;
    assert_eq!(listed.len(), 2, "{listed:#?}");
    assert!(listed.iter().any(|m| m["text"] == "thanks, coming down"));
}

async fn axb_texts_relay_both_ways_from_x_and_receipts_settle_them(pg: bool) {
    let mut smsc = Smsc::start(&[]).await;
    let rig = Rig::start(&smsc, pg, &[]).await;
    let (st, _) = rig
        .server
        .call(
            "PUT",
            "/v1/webhook",
            Some(&rig.key),
            Some(json!({"url": "http://127.0.0.1:9/unused"})),
        )
        .await;
    assert_eq!(st, 200);
    let b = rig
        .bind(json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let xx = b["x"].as_str().unwrap().to_owned();
    smsc.deliver(
        "ab",
        &party(1),
        &xx,
        "Hello B, I'm at gate 3 {ok}",
        "gsm",
        false,
    );
    smsc.deliver("ba", &party(2), &xx, "好的，马上到 😊", "ucs2", false);
    assert_eq!(smsc.deliver_status("ab").await, 0);
    assert_eq!(smsc.deliver_status("ba").await, 0);
    let submits = smsc
        .wait_count(20, "two relays", 2, |e| {
            e["event"] == "submit" && e["status"] == 0
        })
        .await;
    // Each from X, to the other party, the text unchanged.
    for s in &submits {
        assert_eq!(s["source"], digits(&xx), "{s}");
        assert_eq!(s["source_ton"], 1, "{s}");
        assert_eq!(s["registered_delivery"], 1, "{s}");
    }
    assert_eq!(
        texts_to(&submits, &party(2)),
        vec!["Hello B, I'm at gate 3 {ok}"]
    );
    assert_eq!(texts_to(&submits, &party(1)), vec!["好的，马上到 😊"]);
    // No real number crossed: neither party's appears but as the recipient.
    for s in &submits {
        let text = serde_json::to_string(s).unwrap();
        let (sender, receiver) = if s["dest"] == digits(&party(2)) {
            (party(1), party(2))
        } else {
            (party(2), party(1))
        };
        assert!(
            !text.contains(digits(&sender)),
            "{sender} reached {receiver}: {s}"
        );
    }
    // Both are listed, relayed and handed over (in one part each).
    let ab = rig
        .message_where("A's text handed over", |m| {
            m["from"] == party(1) && m["parts"] == 1
        })
        .await;
    assert_eq!(
        (ab["to"].as_str(), ab["status"].as_str()),
        (Some(party(2).as_str()), Some("relayed"))
    );
    assert_eq!(ab["direction"], "a_to_b");
    assert_eq!(ab["binding_id"], b["id"]);
    rig.message_where("B's text handed over", |m| {
        m["from"] == party(2) && m["parts"] == 1
    })
    .await;
    // Receipts settle them: delivered, and undeliverable.
    let id_of = |dest: &str| {
        submits.iter().find(|s| s["dest"] == digits(dest)).unwrap()["message_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    smsc.send(json!({"cmd": "receipt", "id": "r1", "from": party(2), "to": xx, "message_id": id_of(&party(2)), "stat": "DELIVRD"}));
    smsc.send(json!({"cmd": "receipt", "id": "r2", "from": party(1), "to": xx, "message_id": id_of(&party(1)), "stat": "UNDELIV"}));
    assert_eq!(smsc.deliver_status("r1").await, 0);
    assert_eq!(smsc.deliver_status("r2").await, 0);
    rig.message_where("A's text delivered", |m| {
        m["from"] == party(1) && m["status"] == "delivered"
    })
    .await;
    let failed = rig
        .message_where("B's text failed", |m| {
            m["from"] == party(2) && m["status"] == "failed"
        })
        .await;
    assert_eq!(failed["reason"], "undeliverable");
    let delivered = rig.events("sms.delivered").await;
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    assert_eq!(delivered[0]["data"]["id"], ab["id"]);
    assert_eq!(rig.events("sms.failed").await.len(), 1);
    assert_eq!(rig.events("sms.relayed").await.len(), 2);
    // A receipt for an id nobody knows is answered, and changes nothing.
    smsc.send(json!({"cmd": "receipt", "id": "r3", "from": party(1), "to": xx, "message_id": "nobody", "stat": "DELIVRD"}));
    assert_eq!(smsc.deliver_status("r3").await, 0);
}

async fn a_receipt_before_the_submit_answer_still_settles_the_text(pg: bool) {
    let mut smsc = Smsc::start(&["--receipt-first"]).await;
    let rig = Rig::start(&smsc, pg, &[]).await;
    let b = rig
        .bind(json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let xx = b["x"].as_str().unwrap().to_owned();
    smsc.deliver("t1", &party(1), &xx, "at the gate", "gsm", false);
    // Two parts, each receipted before its submit_sm_resp.
    let long = "快递已到小区门口，请到东门取件，取件码 12-3-4567，谢谢。".repeat(4);
    smsc.deliver("t2", &party(2), &xx, &long, "ucs2", true);
    assert_eq!(smsc.deliver_status("t1").await, 0);
    smsc.wait_count(20, "three parts handed over", 3, |e| {
        e["event"] == "submit" && e["status"] == 0
    })
    .await;
    // The receipts came for ids not yet known; each is answered (kept),
    // then matched once the handover is recorded.
    let early = smsc
        .wait_count(20, "three early receipts answered", 3, |e| {
            e["event"] == "deliver_resp"
                && e["id"].as_str().is_some_and(|id| id.starts_with("early-"))
        })
        .await;
    assert!(early.iter().all(|e| e["status"] == 0), "{early:#?}");
    for from in [party(1), party(2)] {
        rig.message_where("text delivered by its early receipts", |m| {
            m["from"] == from && m["status"] == "delivered"
        })
        .await;
    }
    assert_eq!(rig.events("sms.delivered").await.len(), 2);
}

async fn long_chinese_and_gsm_texts_round_trip_in_parts(pg: bool) {
    let mut smsc = Smsc::start(&[]).await;
    let rig = Rig::start(&smsc, pg, &[]).await;
    let b = rig
        .bind(json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let xx = b["x"].as_str().unwrap().to_owned();
    let chinese: String = "【菜鸟驿站】您的包裹已到达幸福路188号驿站，取件码 12-3-4567，请于今晚20:00前领取，超时将退回。😊"
        .repeat(3);
    let gsm: String = "Dear customer, your parcel [ref 88-1] is at the locker on Elm St; price €2.50 ~ pick up by 8pm. "
        .repeat(3);
    // The Chinese text's parts arrive last part first.
    smsc.send(json!({"cmd": "deliver", "id": "zh", "from": party(1), "to": xx, "text": chinese, "encoding": "ucs2", "parts": true, "reverse": true}));
    smsc.deliver("en", &party(2), &xx, &gsm, "gsm", true);
    let answered = smsc
        .wait_count(20, "every part answered", 1, |e| {
            e["event"] == "deliver_resp" && e["id"] == "zh" && e["part"] == 1
        })
        .await;
    assert_eq!(answered[0]["status"], 0);
    let whole = |to: String, text: String| {
        let smsc = &smsc;
        async move {
            eventually(20, "the whole text relayed", || {
                let (to, text) = (to.clone(), text.clone());
                async move { texts_to(&smsc.submits(), &to).contains(&text).then_some(()) }
            })
            .await
        }
    };
    whole(party(2), chinese.clone()).await;
    whole(party(1), gsm.clone()).await;
    // Sent in parts as well, UCS-2 and GSM.
    let submits = smsc.submits();
    assert!(
        submits
            .iter()
            .filter(|s| s["dest"] == digits(&party(2)))
            .count()
            >= 3
    );
    assert!(
        submits
            .iter()
            .all(|s| s["dest"] != digits(&party(2)) || s["data_coding"] == 8)
    );
    assert!(
        submits
            .iter()
            .all(|s| s["dest"] != digits(&party(1)) || s["data_coding"] == 0)
    );
    // Kept whole, with its code.
    let zh = rig
        .message_where("the Chinese text", |m| m["from"] == party(1))
        .await;
    assert_eq!(zh["text"], chinese.as_str());
    assert_eq!(zh["pickup_code"], "12-3-4567");
    let en = rig
        .message_where("the long GSM text handed over", |m| {
            m["from"] == party(2) && m["parts"].as_u64() > Some(1)
        })
        .await;
    assert_eq!(en["text"], gsm.as_str());
}

/// A shared number's text goes to the extension it starts with; else to the
/// one its sender last called (a real call, `<X>,<ext>`); else it is held.
async fn axe_texts_go_by_prefix_then_by_last_call_else_are_held(pg: bool) {
    let mut smsc = Smsc::start(&[]).await;
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &party(1)]);
    let sip = format!("127.0.0.1:{}", sipp::free_sip_port());
    let gateway = format!("127.0.0.1:{}", uas.port);
    let rig = Rig::start(
        &smsc,
        pg,
        &[
            ("MASKLINE_SIP_LISTEN", sip.as_str()),
            ("MASKLINE_SIP_OUTBOUND", gateway.as_str()),
        ],
    )
    .await;
    let shop = rig.bind(json!({"mode": "axe", "a": party(1)})).await;
    let other = rig.bind(json!({"mode": "axe", "a": party(2)})).await;
    let xx = shop["x"].as_str().unwrap().to_owned();
    assert_eq!(other["x"], xx, "both on one shared number");
    let ext = shop["extension"].as_str().unwrap().to_owned();
    let other_ext = other["extension"].as_str().unwrap().to_owned();
    let courier = party(7);

    smsc.deliver(
        "prefix",
        &courier,
        &xx,
        &format!("{other_ext} 您的外卖到了"),
        "ucs2",
        false,
    );
    assert_eq!(smsc.deliver_status("prefix").await, 0);
    smsc.deliver("none", &courier, &xx, "您的外卖到了，放门口", "ucs2", false);
    assert_eq!(smsc.deliver_status("none").await, 0);
    let held = rig
        .message_where("the text without extension held", |m| {
            m["text"] == "您的外卖到了，放门口"
        })
        .await;
    assert_eq!(
        (held["status"].as_str(), held["reason"].as_str()),
        (Some("held"), Some("extension_unknown"))
    );
    assert!(held["to"].is_null());
    assert_eq!(rig.events("sms.held").await.len(), 1);
    eventually(20, "the prefixed text relayed to its extension", || async {
        (texts_to(&smsc.submits(), &party(2)) == vec![format!("{other_ext} 您的外卖到了")])
            .then_some(())
    })
    .await;

    // Someone who read it releases it to the shop: it goes out from X.
    let rig = &rig;
    let release = |id: &str, ext: &str| {
        let path = format!("/v1/messages/{id}/release");
        let body = json!({ "extension": ext });
        async move {
            rig.server
                .call("POST", &path, Some(&rig.key), Some(body))
                .await
        }
    };
    let held_id = held["id"].as_str().unwrap();
    let unknown = if ext == "9999" { "9998" } else { "9999" };
    let (st, p) = release(held_id, unknown).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (422, Some("unknown_extension")),
        "{p}"
    );
    let (st, p) = release(held_id, "12x").await;
    assert_eq!((st, p["field"].as_str()), (400, Some("extension")), "{p}");
    let (st, p) = release("0190a1b2-0000-7000-8000-000000000000", &ext).await;
    assert_eq!(st, 404, "{p}");
    let (st, released) = release(held_id, &ext).await;
    assert_eq!(st, 200, "{released}");
    assert_eq!(
        (released["status"].as_str(), released["to"].as_str()),
        (Some("relayed"), Some(party(1).as_str()))
    );
    assert!(released["reason"].is_null());
    eventually(20, "the released text relayed to the shop", || async {
        texts_to(&smsc.submits(), &party(1))
            .contains(&"您的外卖到了，放门口".to_owned())
            .then_some(())
    })
    .await;
    let (st, p) = release(held_id, &ext).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (409, Some("message_not_held")),
        "{p}"
    );
    let relayed_events = rig.events("sms.relayed").await;
    assert!(
        relayed_events
            .iter()
            .any(|e| e["data"]["id"] == held["id"] && e["data"]["status"] == "relayed"),
        "{relayed_events:?}"
    );

    // The courier calls the shop's extension; afterwards its texts go there.
    let mut uac = Sipp::uac(
        "uac_call.xml",
        &sip,
        Transport::Udp,
        &format!("{xx},{ext}"),
        &[("caller", &courier)],
        &["-d", "200"],
    );
    uac.succeeds(30).await;
    uas.succeeds(30).await;
    eventually(20, "the call's CDR", || async {
        let (st, calls) = rig
            .server
            .call("GET", "/v1/calls", Some(&rig.key), None)
            .await;
        (st == 200 && calls["items"].as_array().is_some_and(|c| !c.is_empty())).then_some(())
    })
    .await;
    smsc.deliver("after-call", &courier, &xx, "我到楼下了", "ucs2", false);
    assert_eq!(smsc.deliver_status("after-call").await, 0);
    eventually(
        20,
        "the text after the call relayed to the shop",
        || async {
            texts_to(&smsc.submits(), &party(1))
                .contains(&"我到楼下了".to_owned())
                .then_some(())
        },
    )
    .await;
    // Someone who never called is still held.
    smsc.deliver("stranger", &party(8), &xx, "hello?", "gsm", false);
    assert_eq!(smsc.deliver_status("stranger").await, 0);
    let h = rig
        .message_where("the stranger's text", |m| m["text"] == "hello?")
        .await;
    assert_eq!(h["status"], "held");
}

async fn marketing_to_axn_is_blocked_and_listed_while_codes_pass(pg: bool) {
    let mut smsc = Smsc::start(&[]).await;
    let rig = Rig::start(&smsc, pg, &[]).await;
    let b = rig.bind(json!({"mode": "axn", "a": party(1)})).await;
    let xx = b["x"].as_str().unwrap().to_owned();
    let (st, s) = rig
        .server
        .call(
            "PUT",
            "/v1/settings/sms",
            Some(&rig.key),
            Some(
                json!({"prefix": "【快递助手】", "marketing_filter": "standard",
                "rules": [{"match": "贷款|网贷", "action": "block"}]}),
            ),
        )
        .await;
    assert_eq!(st, 200, "{s}");
    let promo = "【某商城】双11狂欢，全场满300减50，领券戳 t.cn/abc 回T退订";
    let code = "【菜鸟驿站】会员日福利！您的包裹已到站，取件码12-3-4567，回T退订";
    let otp = "【某银行】验证码 482913，5分钟内有效。回T退订";
    let loan = "急用钱？低息网贷当天到账";
    for (id, text) in [
        ("promo", promo),
        ("code", code),
        ("otp", otp),
        ("loan", loan),
    ] {
        smsc.deliver(id, "10690000123", &xx, text, "ucs2", false);
        assert_eq!(smsc.deliver_status(id).await, 0, "{id}");
    }
    // Only the code and the OTP went out, with the tenant's prefix.
    eventually(20, "two relays", || async {
        (smsc.submits().len() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = texts_to(&smsc.submits(), &party(1));
    got.sort();
    let mut want = vec![format!("【快递助手】{code}"), format!("【快递助手】{otp}")];
    want.sort();
    assert_eq!(got, want);
    // All four are kept: the inbox of the binding has the code.
    let inbox = rig
        .server
        .list_all(
            &format!("/v1/bindings/{}/messages", b["id"].as_str().unwrap()),
            &rig.key,
            2,
        )
        .await;
    assert_eq!(inbox.len(), 4, "{inbox:#?}");
    let by_text = |t: &str| inbox.iter().find(|m| m["text"] == t).unwrap().clone();
    assert_eq!(by_text(code)["pickup_code"], "12-3-4567");
    assert_eq!(by_text(code)["status"], "relayed");
    assert_eq!(by_text(code)["from"], "10690000123");
    assert_eq!(
        (
            by_text(promo)["status"].as_str(),
            by_text(promo)["reason"].as_str()
        ),
        (Some("blocked"), Some("marketing"))
    );
    assert_eq!(by_text(loan)["reason"], "tenant_rule");
    assert!(by_text(otp)["pickup_code"].is_null());
    let blocked = rig.messages("?status=blocked").await;
    assert_eq!(blocked.len(), 2);
    assert_eq!(rig.events("sms.blocked").await.len(), 2);
    // Counted.
    let (_, metrics) = rig.server.call("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    for reason in ["marketing", "tenant_rule"] {
        let line = format!("maskline_sms_texts_total{{status=\"blocked\",reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    // The party finds its number by its last four digits.
    let mine = rig
        .server
        .list_all(&format!("/v1/parties/{}/bindings", party(1)), &rig.key, 10)
        .await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["x"], xx);
    assert_eq!(mine[0]["x_last4"], &xx[xx.len() - 4..]);
    assert_eq!(mine[0]["role"], "a");
    // Settings read back; a bad rule is refused and changes nothing.
    let (st, p) = rig
        .server
        .call(
            "PUT",
            "/v1/settings/sms",
            Some(&rig.key),
            Some(json!({"rules": [{"match": "(", "action": "block"}]})),
        )
        .await;
    assert_eq!(st, 400, "{p}");
    assert_eq!(
        (p["code"].as_str(), p["field"].as_str()),
        (Some("invalid_rule"), Some("rules[0].match"))
    );
    let (_, now) = rig
        .server
        .call("GET", "/v1/settings/sms", Some(&rig.key), None)
        .await;
    assert_eq!(now["prefix"], "【快递助手】");
    assert_eq!(now["rules"][0]["match"], "贷款|网贷");
}

/// The SMSC dies twice: once after relaying what it got, once with relays
/// it never answered. Every text Maskline accepted goes out exactly once.
async fn an_smsc_that_dies_gets_every_accepted_text_exactly_once_after_it_returns(pg: bool) {
    let mut smsc = Smsc::start(&[]).await;
    let port = smsc.port;
    let rig = Rig::start(&smsc, pg, &[]).await;
    let b = rig
        .bind(json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let xx = b["x"].as_str().unwrap().to_owned();
    let text = |i: usize| format!("text number {i}");
    for i in 0..10 {
        smsc.deliver(&format!("t{i}"), &party(1), &xx, &text(i), "gsm", false);
    }
    smsc.wait_count(20, "the first ten relayed", 10, |e| {
        e["event"] == "submit" && e["status"] == 0
    })
    .await;
    let mut seen = smsc.submits();
    smsc.kill();
    // Back, but swallowing every submit_sm unanswered.
    let mut smsc = Smsc::start_on(port, &["--hold-submits"]).await;
    smsc.bound().await;
    for i in 10..30 {
        smsc.deliver(&format!("t{i}"), &party(1), &xx, &text(i), "gsm", false);
    }
    for i in 10..30 {
        assert_eq!(smsc.deliver_status(&format!("t{i}")).await, 0, "t{i}");
    }
    smsc.kill();
    let smsc = Smsc::start_on(port, &[]).await;
    smsc.bound().await;
    smsc.wait_count(30, "the twenty held back relayed", 20, |e| {
        e["event"] == "submit" && e["status"] == 0
    })
    .await;
    // A moment for anything sent twice to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    seen.extend(smsc.submits());
    let mut got = texts_to(&seen, &party(2));
    got.sort();
    let mut want: Vec<String> = (0..30).map(text).collect();
    want.sort();
    assert_eq!(got, want, "each accepted text exactly once");
}

async fn kill_9_after_deliver_sm_resp_loses_no_text(pg: bool) {
    // Relays stay unsent (the SMSC never answers them) while Maskline dies.
    let mut smsc = Smsc::start(&["--hold-submits"]).await;
    let port = smsc.port;
    let mut rig = Rig::start(&smsc, pg, &[("MASKLINE_SMS_RELAY_LEASE_SECS", "1")]).await;
    let b = rig
        .bind(json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let xx = b["x"].as_str().unwrap().to_owned();
    for i in 0..25 {
        smsc.deliver(
            &format!("k{i}"),
            &party(2),
            &xx,
            &format!("kept {i}"),
            "gsm",
            false,
        );
    }
    for i in 0..25 {
        assert_eq!(smsc.deliver_status(&format!("k{i}")).await, 0);
    }
    rig.server.kill9();
    smsc.kill();
    let smsc = Smsc::start_on(port, &[]).await;
    rig.server.restart_after_kill9().await;
    smsc.bound().await;
    smsc.wait_count(30, "every accepted text relayed", 25, |e| {
        e["event"] == "submit" && e["status"] == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = texts_to(&smsc.submits(), &party(1));
    got.sort();
    let mut want: Vec<String> = (0..25).map(|i| format!("kept {i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

async fn http_gateways_push_texts_with_the_same_decisions(pg: bool) {
    let smsc = Smsc::start(&[]).await;
    let rig = Rig::start(&smsc, pg, &[]).await;
    let b = rig
        .bind(json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let xx = b["x"].as_str().unwrap().to_owned();
    let push = |body: Value, key: Option<&'static str>| {
        let server = &rig.server;
        async move {
            server
                .call("POST", "/v1/sms/inbound", key, Some(body))
                .await
        }
    };
    let (st, r) = push(
        json!({"from": party(1), "to": xx, "text": "via http", "gateway_id": "gw-1"}),
        Some(SWITCH_KEY),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "relayed");
    eventually(20, "the gateway's text relayed over SMPP", || async {
        (texts_to(&smsc.submits(), &party(2)) == vec!["via http".to_owned()]).then_some(())
    })
    .await;
    // A stranger on an axb number: blocked, kept, not sent.
    let (st, r) = push(
        json!({"from": party(9), "to": xx, "text": "hi"}),
        Some(SWITCH_KEY),
    )
    .await;
    assert_eq!(
        (st, r["status"].as_str(), r["reason"].as_str()),
        (200, Some("blocked"), Some("no_binding"))
    );
    // After an unbind the number says so.
    rig.unbind(&b).await;
    let (_, r) = push(
        json!({"from": party(1), "to": xx, "text": "still there?"}),
        Some(SWITCH_KEY),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("blocked"), Some("expired"))
    );
    // A number in nobody's pool: answered, kept, never listed.
    let (_, r) = push(
        json!({"from": party(1), "to": x(99), "text": "?"}),
        Some(SWITCH_KEY),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("blocked"), Some("no_binding"))
    );
    assert_eq!(rig.messages("").await.len(), 3);
    // Refusals change nothing.
    for (body, key, status, code) in [
        (
            json!({"from": party(1), "to": "nonsense", "text": "x"}),
            Some(SWITCH_KEY),
            400,
            "invalid_number",
        ),
        (
            json!({"from": "+86 not a sender!", "to": xx, "text": "x"}),
            Some(SWITCH_KEY),
            400,
            "invalid_sender",
        ),
        (
            json!({"from": party(1), "to": xx, "text": "x", "extra": 1}),
            Some(SWITCH_KEY),
            400,
            "unknown_field",
        ),
        (
            json!({"from": party(1), "to": xx}),
            Some(SWITCH_KEY),
            400,
            "invalid_field",
        ),
        (
            json!({"from": party(1), "to": xx, "text": "x"}),
            None,
            401,
            "unauthorized",
        ),
        (
            json!({"from": party(1), "to": xx, "text": "x"}),
            Some(ADMIN_KEY),
            401,
            "unauthorized",
        ),
    ] {
        let (st, p) = push(body.clone(), key).await;
        assert_eq!(
            (st, p["code"].as_str()),
            (status, Some(code)),
            "{body}: {p}"
        );
    }
    let (st, p) = rig
        .server
        .client
        .post(format!("{}/v1/sms/inbound", rig.server.base))
        .bearer_auth(SWITCH_KEY)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    let p: Value = p.json().await.unwrap();
    assert_eq!(
        (st, p["code"].as_str()),
        (400, Some("malformed_json")),
        "{p}"
    );
    assert_eq!(rig.messages("").await.len(), 3);
}

/// A binding's texts are kept for its life and cool-down, then forgotten.
#[tokio::test(flavor = "multi_thread")]
async fn texts_go_a_cool_down_after_their_binding() {
    let smsc = Smsc::start(&[]).await;
    let rig = Rig::start(&smsc, false, &[("MASKLINE_COOLDOWN_SECS", "1")]).await;
    let b = rig
        .bind(json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let xx = b["x"].as_str().unwrap().to_owned();
    let (st, _) = rig
        .server
        .call(
            "POST",
            "/v1/sms/inbound",
            Some(SWITCH_KEY),
            Some(json!({"from": party(1), "to": xx, "text": "取件码 553201"})),
        )
        .await;
    assert_eq!(st, 200);
    let path = format!("/v1/bindings/{}/messages", b["id"].as_str().unwrap());
    assert_eq!(rig.server.list_all(&path, &rig.key, 10).await.len(), 1);
    rig.unbind(&b).await;
    eventually(30, "the text purged after the cool-down", || async {
        rig.server
            .list_all(&path, &rig.key, 10)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_makes_maskline_wait_and_retry_each_refused_part_once() {
    let mut smsc = Smsc::start(&["--throttle", "4"]).await;
    let rig = Rig::start(&smsc, false, &[]).await;
    let b = rig
        .bind(json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let xx = b["x"].as_str().unwrap().to_owned();
    for i in 0..6 {
        smsc.deliver(
            &format!("t{i}"),
            &party(1),
            &xx,
            &format!("busy {i}"),
            "gsm",
            false,
        );
    }
    smsc.wait_count(30, "six texts accepted", 6, |e| {
        e["event"] == "submit" && e["status"] == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts: Vec<Value> = smsc
        .events()
        .into_iter()
        .filter(|e| e["event"] == "submit")
        .collect();
    // Four refused, each retried once: no flood while the SMSC was busy.
    assert_eq!(attempts.len(), 6 + 4, "{attempts:#?}");
    let mut got = texts_to(&smsc.submits(), &party(2));
    got.sort();
    assert_eq!(got, (0..6).map(|i| format!("busy {i}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_pdus_get_the_right_status_and_the_link_survives() {
    let mut smsc = Smsc::start(&[]).await;
    let rig = Rig::start(&smsc, false, &[]).await;
    let b = rig
        .bind(json!({"mode": "axb", "a": party(1), "b": party(2)}))
        .await;
    let xx = b["x"].as_str().unwrap().to_owned();
    // A deliver_sm whose source address never ends (no NUL within 21 octets).
    let mut body = vec![0u8, 1, 1];
    body.extend_from_slice(&[b'9'; 30]);
    let pdu = |id: u32, seq: u32, body: &[u8]| {
        let mut p = ((16 + body.len()) as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(body);
        p.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    smsc.send(json!({"cmd": "raw", "hex": pdu(0x0000_0005, 9001, &body)}));
    // A command id that does not exist.
    smsc.send(json!({"cmd": "raw", "hex": pdu(0x0000_0077, 9002, &[])}));
    // A deliver_sm to something that is no number.
    smsc.send(
        json!({"cmd": "part", "id": "bad-to", "from": party(1), "to": "ABCDEF", "hex": "41"}),
    );
    let nack = |seq: u64| {
        let smsc = &smsc;
        async move {
            smsc.wait_for(10, &format!("the answer to {seq}"), |e| {
                e["seq"] == seq && e["event"] == "pdu"
            })
            .await
        }
    };
    let a = nack(9001).await;
    assert_eq!(
        (a["command"].as_str(), a["status"].as_u64()),
        (Some("deliver_sm_resp"), Some(0x0a)),
        "{a}"
    );
    let a = nack(9002).await;
    assert_eq!(
        (a["command"].as_str(), a["status"].as_u64()),
        (Some("generic_nack"), Some(0x03)),
        "{a}"
    );
    assert_eq!(smsc.deliver_status("bad-to").await, 0x0b);
    // The link is still up and serving.
    smsc.deliver("good", &party(1), &xx, "still here", "gsm", false);
    assert_eq!(smsc.deliver_status("good").await, 0);
    eventually(20, "the good text relayed", || async {
        (texts_to(&smsc.submits(), &party(2)) == vec!["still here".to_owned()]).then_some(())
    })
    .await;
    assert_eq!(
        smsc.events()
            .iter()
            .filter(|e| e["event"] == "bound")
            .count(),
        1,
        "never rebound"
    );
    // Logs mask numbers and never show a text.
    let logs = rig.server.logs();
    assert!(!logs.contains("still here"), "a text in the logs");
    assert!(!logs.contains(digits(&party(1))), "a number in the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_refused_and_retried_without_a_storm() {
    let smsc = Smsc::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("smpp://maskline:wrong@127.0.0.1:{}", smsc.port);
    let server = Server::start_with(
        dir.path(),
        &[
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
            ("MASKLINE_SMPP", url.as_str()),
        ],
    )
    .await;
    smsc.wait_for(10, "the refused bind", |e| e["event"] == "bind_refused")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = smsc
        .events()
        .iter()
        .filter(|e| e["event"] == "bind_refused")
        .count();
    // Reconnects pause and double (0.5 s, 1 s, ...): a handful, not hundreds.
    assert!((1..=5).contains(&refused), "{refused} binds in 2 s");
    let (st, _) = server.call("GET", "/healthz", None, None).await;
    assert_eq!(st, 200);
}
