//! The SIP contract, end to end: real `sipp` peers on both sides of the real
//! `maskline` binary. A UAC plays the trusted trunk that dials X; a UAS plays
//! the outbound gateway, i.e. the callee. Every test asserts on what the
//! peers actually received: the callee never sees the caller's number in any
//! form, the caller never sees the callee's, the legs share no identifier,
//! and each inbound INVITE leaves one CDR.
//!
//! Scenarios: `tests/sipp/*.xml`; harness: `common/sipp.rs`.

mod common;

use std::time::Duration;

use common::sipp::{self, Sipp, Transport};
use common::*;
use serde_json::{Value, json};

/// How long a peer may take to play its whole scenario.
const PEER_SECS: u64 = 30;

fn a() -> String {
    party(1)
}

fn b() -> String {
    party(2)
}

fn stranger() -> String {
    party(9)
}

fn axb() -> Value {
    json!({"mode": "axb", "a": a(), "b": b(), "expires_in": 600})
}

// === the rig ===

/// Maskline between a UAS (its outbound gateway) and the test's UACs, with
/// one tenant whose pool holds `x(1)` and `x(2)`.
struct Rig {
    _dir: tempfile::TempDir,
    server: Server,
    /// Maskline's SIP address, `127.0.0.1:PORT`, UDP and TCP.
    sip: String,
    key: String,
}

impl Rig {
    /// Starts Maskline with `gateway` as its outbound gateway (over the
    /// gateway's transport); `env` adds or overrides variables.
    async fn start(gateway: &Sipp, env: &[(&str, &str)]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let sip_port = sipp::free_sip_port();
        let sip = format!("127.0.0.1:{sip_port}");
        let mut vars: Vec<(String, String)> = [
            ("MASKLINE_ADMIN_KEY", ADMIN_KEY.to_owned()),
            ("MASKLINE_SWITCH_KEY", SWITCH_KEY.to_owned()),
            ("MASKLINE_SIP_LISTEN", sip.clone()),
            (
                "MASKLINE_SIP_OUTBOUND",
                format!("127.0.0.1:{}", gateway.port),
            ),
            (
                "MASKLINE_SIP_OUTBOUND_TRANSPORT",
                gateway.transport.env().to_owned(),
            ),
            ("MASKLINE_SIP_TRUSTED", "127.0.0.1/32".to_owned()),
            // Short timers keep retransmission paths quick.
            ("MASKLINE_SIP_T1_MS", "100".to_owned()),
            ("MASKLINE_SIP_RING_TIMEOUT_SECS", "60".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in env {
            match vars.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v.to_string(),
                None => vars.push((k.to_string(), v.to_string())),
            }
        }
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = Server::start_with(dir.path(), &pairs).await;
        // Ready means HTTP answers; SIP may bind a moment later.
        eventually(10, "Maskline's SIP port", || async move {
            (sipp::port_bound(Transport::Udp, sip_port)
                && sipp::port_bound(Transport::Tcp, sip_port))
            .then_some(())
        })
        .await;
        let (_tenant, key) = server.create_tenant("ride").await;
        server.import(&key, &[&x(1), &x(2)]).await;
        Rig {
            _dir: dir,
            server,
            sip,
            key,
        }
    }

    async fn bind(&self, body: Value) -> Value {
        let (st, b) = self.server.bind(&self.key, body).await;
        assert_eq!(st, 201, "{b}");
        b
    }

    /// A UAC calling `x` from `caller` (From user, or P-Asserted-Identity
    /// for `uac_call_pai.xml`).
    fn uac(
        &self,
        scenario: &str,
        caller: &str,
        x: &str,
        transport: Transport,
        extra: &[&str],
    ) -> Sipp {
        Sipp::uac(
            scenario,
            &self.sip,
            transport,
            x,
            &[("caller", caller)],
            extra,
        )
    }

    /// The tenant's CDRs, optionally of one binding.
    async fn calls(&self, binding_id: Option<&str>) -> Vec<Value> {
        let path = binding_id.map_or_else(
            || "/v1/calls".to_owned(),
            |b| format!("/v1/calls?binding_id={b}"),
        );
        self.server.list_all(&path, &self.key, 100).await
    }

    /// Waits for the binding's CDRs to number `n` and returns them.
    async fn cdrs(&self, binding: &Value, n: usize) -> Vec<Value> {
        let id = binding["id"].as_str().expect("binding id");
        let rig = self;
        let cdrs = eventually(15, "the CDRs", || async move {
            let c = rig.calls(Some(id)).await;
            (c.len() >= n).then_some(c)
        })
        .await;
        assert_eq!(cdrs.len(), n, "one CDR per inbound INVITE: {cdrs:#?}");
        cdrs
    }

    /// Waits for a CDR of the tenant that `pick` accepts.
    async fn cdr_where(&self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        let rig = self;
        let pick = &pick;
        eventually(15, what, || async move {
            rig.calls(None).await.into_iter().find(|c| pick(c))
        })
        .await
    }
}

// === assertions ===

/// The forms a real number can take on the wire: E.164 with and without
/// `+`, and national (`+8613800000001` -> `8613800000001`, `13800000001`).
fn forms(e164: &str) -> [String; 3] {
    let digits = e164.trim_start_matches('+');
    let national = digits.strip_prefix("86").unwrap_or(digits);
    [e164.to_owned(), digits.to_owned(), national.to_owned()]
}

/// Whether a URI user is this number, in any of its forms.
fn same_number(user: &str, e164: &str) -> bool {
    let [_, digits, national] = forms(e164);
    let user = user.trim_start_matches('+');
    user == digits || user == national || user == format!("0{national}")
}

/// The first message `peer` received that carries `number` in any form,
/// with the form found.
fn leak(peer: &Sipp, number: &str) -> Option<(String, String)> {
    peer.received().into_iter().find_map(|msg| {
        forms(number)
            .into_iter()
            .find(|form| msg.contains(form.as_str()))
            .map(|form| (form, msg))
    })
}

/// Nothing `peer` received carries `number`, in any form, anywhere.
fn assert_never_saw(peer: &Sipp, who: &str, number: &str) {
    if let Some((form, msg)) = leak(peer, number) {
        panic!(
            "the {who} received {number} (as {form}) in:\n{msg}\n\n{}",
            peer.report()
        );
    }
}

/// Both peers played their whole scenario.
async fn both_succeed(uac: &mut Sipp, uas: &mut Sipp) {
    let uac_status = uac.wait(Duration::from_secs(PEER_SECS)).await;
    let uas_status = uas.wait(Duration::from_secs(PEER_SECS)).await;
    assert!(
        uac_status.code() == Some(0) && uas_status.code() == Some(0),
        "caller {uac_status}, callee {uas_status}\n{}\n\n{}",
        uac.report(),
        uas.report()
    );
}

/// The callee got exactly one INVITE, to `callee` from X, and neither leg
/// carries the other's number or identifiers (Call-ID, tags, branches).
fn assert_masked(uac: &Sipp, uas: &Sipp, caller: &str, x: &str, callee: &str) {
    let invites = uas.received_requests("INVITE");
    assert_eq!(
        invites.len(),
        1,
        "one INVITE reaches the callee\n{}",
        uas.report()
    );
    let out = &invites[0];
    let ruri_user = sipp::request_uri(out).and_then(sipp::uri_user);
    assert!(
        ruri_user.is_some_and(|u| same_number(u, callee)),
        "the Request-URI user is the callee {callee}:\n{out}"
    );
    let from_user = sipp::header(out, "From").and_then(sipp::uri_user);
    assert!(
        from_user.is_some_and(|u| same_number(u, x)),
        "the From user is X {x}:\n{out}"
    );
    assert_never_saw(uas, "callee", caller);
    assert_never_saw(uac, "caller", callee);

    // A fresh dialog: nothing of the inbound leg's identifiers goes out...
    let inbound = &uac.sent_requests("INVITE")[0];
    let mut inbound_ids: Vec<&str> = sipp::via_branches(inbound);
    inbound_ids.extend(sipp::header(inbound, "Call-ID"));
    inbound_ids.extend(sipp::header(inbound, "From").and_then(sipp::tag));
    let outbound_text = uas.received().join("\n");
    for id in inbound_ids {
        assert!(
            !outbound_text.contains(id),
            "the inbound leg's {id} reached the callee\n{}",
            uas.report()
        );
    }
    // ...and nothing of the outbound leg's comes back.
    let mut outbound_ids: Vec<&str> = sipp::header(out, "Call-ID").into_iter().collect();
    let uas_sent = uas.sent();
    outbound_ids.extend(
        uas_sent
            .iter()
            .filter_map(|m| sipp::header(m, "To").and_then(sipp::tag)),
    );
    let inbound_text = uac.received().join("\n");
    for id in outbound_ids {
        assert!(
            !inbound_text.contains(id),
            "the outbound leg's {id} reached the caller\n{}",
            uac.report()
        );
    }
}

/// Kills the UAS and asserts that no INVITE ever reached it. Call once the
/// caller has its final response (Maskline has decided by then).
fn assert_nothing_went_out(uas: &mut Sipp) {
    uas.kill();
    assert!(
        uas.received_requests("INVITE").is_empty(),
        "no outbound call is placed\n{}",
        uas.report()
    );
}

fn assert_cdr(
    cdr: &Value,
    direction: Option<&str>,
    final_status: u16,
    released_by: &str,
    reason: &str,
) {
    assert_eq!(cdr["direction"], json!(direction), "direction: {cdr:#}");
    assert_eq!(
        cdr["final_status"],
        json!(final_status),
        "final_status: {cdr:#}"
    );
    assert_eq!(
        cdr["released_by"],
        json!(released_by),
        "released_by: {cdr:#}"
    );
    assert_eq!(
        cdr["release_reason"],
        json!(reason),
        "release_reason: {cdr:#}"
    );
    let duration = cdr["duration_seconds"].as_i64().expect("duration_seconds");
    if final_status == 200 {
        // Talk time is rounded up, and every answered call here talks.
        assert!(duration >= 1, "duration_seconds: {cdr:#}");
    } else {
        assert_eq!(duration, 0, "duration_seconds: {cdr:#}");
    }
}

/// One call from `caller` to the binding's X, answered by `callee` (the UAS
/// runs `uas_answer.xml`) and hung up by the caller after 300 ms.
async fn answered_call(
    binding: Value,
    caller: &str,
    callee: &str,
    transport: Transport,
    uac_scenario: &str,
    uac_extra: &[&str],
) -> (Rig, Value, Sipp, Sipp) {
    let mut uas = Sipp::uas("uas_answer.xml", transport, &["-s", callee]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(binding).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut extra = vec!["-d", "300"];
    extra.extend_from_slice(uac_extra);
    let mut uac = rig.uac(uac_scenario, caller, &x, transport, &extra);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, caller, &x, callee);
    // Ringing and the answer were relayed; the callee got the ACK and the BYE.
    let statuses = uac.received_statuses("INVITE");
    assert!(
        statuses.contains(&180) && statuses.contains(&200),
        "{}",
        uac.report()
    );
    assert!(!uas.received_requests("ACK").is_empty(), "{}", uas.report());
    assert_eq!(uas.received_requests("BYE").len(), 1, "{}", uas.report());
    (rig, binding, uac, uas)
}

// === answered calls ===

#[tokio::test(flavor = "multi_thread")]
async fn axb_a_reaches_b_from_x_and_neither_sees_the_other() {
    let (rig, binding, ..) =
        answered_call(axb(), &a(), &b(), Transport::Udp, "uac_call.xml", &[]).await;
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
}

#[tokio::test(flavor = "multi_thread")]
async fn axb_b_reaches_a_from_x() {
    let (rig, binding, ..) =
        answered_call(axb(), &b(), &a(), Transport::Udp, "uac_call.xml", &[]).await;
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("b_to_a"), 200, "caller", "normal");
}

#[tokio::test(flavor = "multi_thread")]
async fn axn_stranger_reaches_a() {
    let axn = json!({"mode": "axn", "a": a(), "b": b(), "expires_in": 600});
    let (rig, binding, ..) =
        answered_call(axn, &stranger(), &a(), Transport::Udp, "uac_call.xml", &[]).await;
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("n_to_a"), 200, "caller", "normal");
}

#[tokio::test(flavor = "multi_thread")]
async fn axn_a_reaches_b() {
    let axn = json!({"mode": "axn", "a": a(), "b": b(), "expires_in": 600});
    let (rig, binding, ..) =
        answered_call(axn, &a(), &b(), Transport::Udp, "uac_call.xml", &[]).await;
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
}

#[tokio::test(flavor = "multi_thread")]
async fn p_asserted_identity_names_the_caller_and_stays_on_the_inbound_leg() {
    let (rig, binding, ..) =
        answered_call(axb(), &a(), &b(), Transport::Udp, "uac_call_pai.xml", &[]).await;
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
    assert_eq!(cdrs[0]["caller"], json!(a()), "{:#}", cdrs[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_on_both_legs() {
    let (rig, binding, uac, uas) =
        answered_call(axb(), &a(), &b(), Transport::Tcp, "uac_call.xml", &[]).await;
    for (peer, who) in [(&uac, "caller"), (&uas, "callee")] {
        let entries = peer.entries();
        assert!(
            !entries.is_empty() && entries.iter().all(|e| e.transport == "TCP"),
            "the {who} talked TCP only\n{}",
            peer.report()
        );
    }
    let invite = &uas.received_requests("INVITE")[0];
    let via = sipp::header(invite, "Via").unwrap_or_default();
    assert!(
        via.to_ascii_uppercase().starts_with("SIP/2.0/TCP"),
        "{invite}"
    );
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
}

#[tokio::test(flavor = "multi_thread")]
async fn retransmitted_invite_places_one_outbound_call() {
    let (rig, binding, uac, _uas) = answered_call(
        axb(),
        &a(),
        &b(),
        Transport::Udp,
        "uac_retrans.xml",
        // A response may arrive between the two copies: carry on (see the scenario).
        &["-default_behaviors", "all,-abortunexp"],
    )
    .await;
    assert!(
        uac.sent_requests("INVITE").len() >= 2,
        "the caller did retransmit\n{}",
        uac.report()
    );
    // answered_call asserted that exactly one INVITE reached the callee.
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
}

// === who ends the call ===

#[tokio::test(flavor = "multi_thread")]
async fn callee_hangs_up_and_the_caller_gets_the_bye() {
    let mut uas = Sipp::uas("uas_hangup.xml", Transport::Udp, &["-s", &b(), "-d", "300"]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_wait_bye.xml", &a(), &x, Transport::Udp, &[]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &a(), &x, &b());
    assert_eq!(uac.received_requests("BYE").len(), 1, "{}", uac.report());
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "callee", "normal");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_call_seconds_ends_both_legs() {
    let mut uas = Sipp::uas("uas_answer_wait_bye.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig
        .bind(json!({"mode": "axb", "a": a(), "b": b(), "expires_in": 600, "controls": {"max_call_seconds": 1}}))
        .await;
    let x = binding["x"].as_str().unwrap().to_owned();
    // Neither peer ever hangs up: each completes only on Maskline's BYE.
    let mut uac = rig.uac("uac_wait_bye.xml", &a(), &x, Transport::Udp, &[]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &a(), &x, &b());
    assert_eq!(uac.received_requests("BYE").len(), 1, "{}", uac.report());
    assert_eq!(uas.received_requests("BYE").len(), 1, "{}", uas.report());
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "system", "max_duration");
}

#[tokio::test(flavor = "multi_thread")]
async fn caller_cancels_while_ringing() {
    let mut uas = Sipp::uas("uas_ring_forever.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_cancel.xml", &a(), &x, Transport::Udp, &[]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &a(), &x, &b());
    assert_eq!(uac.invite_final_status(), Some(487), "{}", uac.report());
    assert_eq!(uas.received_requests("CANCEL").len(), 1, "{}", uas.report());
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 487, "caller", "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_callee_gives_the_caller_486() {
    let mut uas = Sipp::uas("uas_busy.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_expect_fail.xml", &a(), &x, Transport::Udp, &[]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &a(), &x, &b());
    assert_eq!(uac.invite_final_status(), Some(486), "{}", uac.report());
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 486, "callee", "busy");
}

#[tokio::test(flavor = "multi_thread")]
async fn unanswered_call_is_cancelled_at_the_ring_timeout() {
    let mut uas = Sipp::uas("uas_ring_forever.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[("MASKLINE_SIP_RING_TIMEOUT_SECS", "1")]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_expect_fail.xml", &a(), &x, Transport::Udp, &[]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &a(), &x, &b());
    assert_eq!(uas.received_requests("CANCEL").len(), 1, "{}", uas.report());
    let code = uac.invite_final_status();
    assert!(
        matches!(code, Some(408 | 480)),
        "no answer is 480 or 408, got {code:?}\n{}",
        uac.report()
    );
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(
        &cdrs[0],
        Some("a_to_b"),
        code.unwrap(),
        "system",
        "no_answer",
    );
}

// === refusals: nothing goes out ===

#[tokio::test(flavor = "multi_thread")]
async fn stranger_on_axb_is_refused_404_and_nothing_goes_out() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &a()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_expect_fail.xml", &stranger(), &x, Transport::Udp, &[]);
    uac.succeeds(PEER_SECS).await;
    assert_eq!(uac.invite_final_status(), Some(404), "{}", uac.report());
    let cdr = rig
        .cdr_where("the stranger's CDR", |c| c["caller"] == json!(stranger()))
        .await;
    assert_cdr(&cdr, None, 404, "system", "refused");
    assert_eq!(cdr["refusal"], "no_binding", "{cdr:#}");
    assert_nothing_went_out(&mut uas);
    assert_never_saw(&uac, "caller", &a());
    assert_never_saw(&uac, "caller", &b());
}

#[tokio::test(flavor = "multi_thread")]
async fn unbound_x_is_refused_404_and_nothing_goes_out() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    rig.bind(axb()).await;
    let idle = x(2);
    let mut uac = rig.uac("uac_expect_fail.xml", &a(), &idle, Transport::Udp, &[]);
    uac.succeeds(PEER_SECS).await;
    assert_eq!(uac.invite_final_status(), Some(404), "{}", uac.report());
    let cdr = rig
        .cdr_where("the CDR on the idle X", |c| c["x"] == json!(idle))
        .await;
    assert_cdr(&cdr, None, 404, "system", "refused");
    assert_eq!(cdr["refusal"], "no_binding", "{cdr:#}");
    assert_nothing_went_out(&mut uas);
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_source_is_refused_403_and_nothing_goes_out() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[("MASKLINE_SIP_TRUSTED", "10.0.0.0/8")]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_expect_fail.xml", &a(), &x, Transport::Udp, &[]);
    uac.succeeds(PEER_SECS).await;
    assert_eq!(uac.invite_final_status(), Some(403), "{}", uac.report());
    assert_nothing_went_out(&mut uas);
    assert_never_saw(&uac, "caller", &b());
}

// === operations ===

#[tokio::test(flavor = "multi_thread")]
async fn options_is_answered_200() {
    let uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut ping = Sipp::uac("uac_options.xml", &rig.sip, transport, "maskline", &[], &[]);
        ping.succeeds(PEER_SECS).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_refuses_new_calls_and_ends_live_ones_at_the_grace() {
    let mut uas = Sipp::uas("uas_answer_wait_bye.xml", Transport::Udp, &["-s", &b()]);
    let mut rig = Rig::start(&uas, &[("MASKLINE_SHUTDOWN_GRACE_SECS", "5")]).await;
    let binding = rig.bind(axb()).await;
    let bound_x = binding["x"].as_str().unwrap().to_owned();
    let mut live = rig.uac("uac_wait_bye.xml", &a(), &bound_x, Transport::Udp, &[]);
    {
        let uas = &uas;
        eventually(PEER_SECS, "the call to be answered", || async move {
            (!uas.received_requests("ACK").is_empty()).then_some(())
        })
        .await;
    }

    rig.server.sigterm();
    // Maskline notices the signal asynchronously: probe with calls that
    // could never go out (X unbound: 404 before, 503 once draining).
    {
        let rig = &rig;
        eventually(PEER_SECS, "503 for new INVITEs", || async move {
            let mut probe = rig.uac(
                "uac_expect_fail.xml",
                &stranger(),
                &x(2),
                Transport::Udp,
                &[],
            );
            probe.succeeds(PEER_SECS).await;
            (probe.invite_final_status() == Some(503)).then_some(())
        })
        .await;
    }
    // Draining refuses calls that would otherwise connect, too.
    let mut late = rig.uac("uac_expect_fail.xml", &b(), &bound_x, Transport::Udp, &[]);
    late.succeeds(PEER_SECS).await;
    assert_eq!(late.invite_final_status(), Some(503), "{}", late.report());
    assert!(
        live.running() && uas.received_requests("BYE").is_empty(),
        "the answered call is still up while draining\n{}\n{}",
        live.report(),
        uas.report()
    );

    // At the end of the grace period Maskline ends the call on both legs
    // (each peer completes only on a BYE) and exits cleanly.
    both_succeed(&mut live, &mut uas).await;
    assert_eq!(uas.received_requests("INVITE").len(), 1, "{}", uas.report());
    let status = rig.server.wait_exit(PEER_SECS).await;
    assert!(
        status.success(),
        "graceful stop exits 0, got {status}\n{}",
        rig.server.logs()
    );

    // The CDR was written before exit.
    rig.server.restart().await;
    let cdr = rig
        .cdr_where("the live call's CDR", |c| c["final_status"] == json!(200))
        .await;
    assert_cdr(&cdr, Some("a_to_b"), 200, "system", "shutdown");
}

// === the harness itself ===

#[test]
fn sipp_message_log_is_parsed() {
    let log = "----------------------------------------------- 2026-11-23 00:51:19.468877\n\
UDP message sent (60 bytes):\n\n\
INVITE sip:+8657100000001@127.0.0.1:15070 SIP/2.0\r\nf: <sip:+8613800000001@h>;tag=1\r\nContent-Length: 3\r\n\r\nv=0\n\n\
----------------------------------------------- 2026-11-23 00:51:19.469204\n\
TCP message received [254] bytes :\n\n\
SIP/2.0 100 Trying\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n\n\n\
-----------------------------------------------\n\
Unexpected UDP message received:\n\n\
SIP/2.0 100 Trying\r\nCSeq: 1 INVITE\r\n\r\n\n";
    let e = sipp::parse_trace(log);
    assert_eq!(
        e.len(),
        2,
        "the unexpected-message repeat is skipped: {e:?}"
    );
    assert!(e[0].sent && e[0].transport == "UDP");
    assert_eq!(sipp::method(&e[0].text), Some("INVITE"));
    let ruri = sipp::request_uri(&e[0].text).unwrap();
    assert_eq!(sipp::uri_user(ruri), Some("+8657100000001"));
    let from = sipp::header(&e[0].text, "From").unwrap();
    assert_eq!(sipp::uri_user(from), Some("+8613800000001"));
    assert_eq!(sipp::tag(from), Some("1"));
    assert!(e[0].text.ends_with("v=0"));
    assert!(!e[1].sent && e[1].transport == "TCP");
    assert_eq!(sipp::status(&e[1].text), Some(100));
    assert_eq!(sipp::cseq_method(&e[1].text), Some("INVITE"));
}

/// The scenarios and the harness, without Maskline: each UAC plays
/// against its UAS directly, over UDP and TCP.
#[tokio::test(flavor = "multi_thread")]
async fn sipp_scenarios_pair_up_without_maskline() {
    let pairs: [(&str, &str, &[&str], &[&str]); 6] = [
        ("uac_call.xml", "uas_answer.xml", &["-d", "100"], &[]),
        ("uac_call_pai.xml", "uas_answer.xml", &["-d", "100"], &[]),
        ("uac_wait_bye.xml", "uas_hangup.xml", &[], &["-d", "100"]),
        (
            "uac_call.xml",
            "uas_answer_wait_bye.xml",
            &["-d", "100"],
            &[],
        ),
        ("uac_cancel.xml", "uas_ring_forever.xml", &[], &[]),
        ("uac_expect_fail.xml", "uas_busy.xml", &[], &[]),
    ];
    let caller = a();
    let keys = [("caller", caller.as_str())];
    for transport in [Transport::Udp, Transport::Tcp] {
        for (uac_scn, uas_scn, uac_extra, uas_extra) in pairs {
            let mut uas_args = vec!["-s", "+8613800000002"];
            uas_args.extend_from_slice(uas_extra);
            let mut uas = Sipp::uas(uas_scn, transport, &uas_args);
            let target = format!("127.0.0.1:{}", uas.port);
            let mut uac = Sipp::uac(uac_scn, &target, transport, &x(1), &keys, uac_extra);
            both_succeed(&mut uac, &mut uas).await;
            if uac_scn == "uac_expect_fail.xml" {
                assert_eq!(uac.invite_final_status(), Some(486), "{}", uac.report());
            }
            assert_eq!(uas.received_requests("INVITE").len(), 1, "{}", uas.report());
            // Straight through, the caller's number does reach the callee,
            // and the leak check sees it.
            assert!(leak(&uas, &caller).is_some(), "{}", uas.report());
            let from = sipp::header(&uas.received_requests("INVITE")[0], "From")
                .unwrap_or_default()
                .to_owned();
            if uac_scn == "uac_call_pai.xml" {
                assert!(from.contains("anonymous"), "{from}");
            } else {
                assert_eq!(sipp::uri_user(&from), Some(caller.as_str()));
            }
        }
    }
    // A retransmitted INVITE: SIPp's UAS recognises the copy.
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &[]);
    let target = format!("127.0.0.1:{}", uas.port);
    let mut uac = Sipp::uac(
        "uac_retrans.xml",
        &target,
        Transport::Udp,
        &x(1),
        &keys,
        &["-d", "100", "-default_behaviors", "all,-abortunexp"],
    );
    both_succeed(&mut uac, &mut uas).await;
    assert!(uac.sent_requests("INVITE").len() >= 2, "{}", uac.report());
    // A refusal scenario fails when the call is answered instead.
    let uas = Sipp::uas("uas_answer.xml", Transport::Udp, &[]);
    let target = format!("127.0.0.1:{}", uas.port);
    let mut uac = Sipp::uac(
        "uac_expect_fail.xml",
        &target,
        Transport::Udp,
        &x(1),
        &keys,
        &[],
    );
    let status = uac.wait(Duration::from_secs(PEER_SECS)).await;
    assert_ne!(status.code(), Some(0), "{}", uac.report());
}
