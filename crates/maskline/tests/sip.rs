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
use common::voice::Rig;
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
    assert_masked_dialog(uac, uas, caller, x, callee);
}

/// The callee's first INVITE went to `callee` from X, and neither leg
/// carries the other's number or identifiers (Call-ID, tags, the branch of
/// any request), however many in-dialog requests the call carried.
fn assert_masked_dialog(uac: &Sipp, uas: &Sipp, caller: &str, x: &str, callee: &str) {
    let invites = uas.received_requests("INVITE");
    let Some(out) = invites.first() else {
        panic!("an INVITE reaches the callee\n{}", uas.report());
    };
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
    let uac_sent = uac.sent();
    let inbound = &uac.sent_requests("INVITE")[0];
    let mut inbound_ids: Vec<&str> = uac_sent
        .iter()
        .filter(|m| sipp::method(m).is_some())
        .flat_map(|m| sipp::via_branches(m))
        .collect();
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
    // ...and nothing of the outbound leg's comes back: its Call-ID, the
    // callee's tag (To of its responses, From of its own requests) and the
    // branches of the callee's requests.
    let mut outbound_ids: Vec<&str> = sipp::header(out, "Call-ID").into_iter().collect();
    let uas_sent = uas.sent();
    for m in &uas_sent {
        if sipp::method(m).is_some() {
            outbound_ids.extend(sipp::via_branches(m));
            outbound_ids.extend(sipp::header(m, "From").and_then(sipp::tag));
        } else {
            outbound_ids.extend(sipp::header(m, "To").and_then(sipp::tag));
        }
    }
    let inbound_text = uac.received().join("\n");
    for id in outbound_ids {
        assert!(
            !inbound_text.contains(id),
            "the outbound leg's {id} reached the caller\n{}",
            uac.report()
        );
    }
}

/// The first final response (≥ 200) `peer` received to its `m` request.
fn final_response(peer: &Sipp, m: &str) -> String {
    peer.received()
        .into_iter()
        .find(|msg| {
            sipp::cseq_method(msg) == Some(m) && sipp::status(msg).is_some_and(|c| c >= 200)
        })
        .unwrap_or_else(|| panic!("no final response to {m}\n{}", peer.report()))
}

/// The response carries an RFC 3326 Reason header: a protocol (`SIP` or
/// `Q.850`) with a cause.
fn assert_reason(resp: &str) {
    let reason = sipp::header(resp, "Reason")
        .unwrap_or_else(|| panic!("the refusal carries a Reason header:\n{resp}"));
    let protocol = reason.split(';').next().unwrap_or("").trim();
    assert!(
        protocol.eq_ignore_ascii_case("SIP") || protocol.eq_ignore_ascii_case("Q.850"),
        "Reason protocol is SIP or Q.850: {reason}"
    );
    assert!(
        reason
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().split_once('='))
            .any(|(k, v)| k.trim().eq_ignore_ascii_case("cause")
                && v.trim().parse::<u16>().is_ok()),
        "Reason has a numeric cause: {reason}"
    );
}

/// The CSeq number of a message.
/// The port of an SDP's first audio stream.
fn audio_port(sdp: &str) -> Option<u16> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
}

/// The `o=` version of an SDP.
fn sdp_version(sdp: &str) -> Option<u64> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("o="))
        .and_then(|o| o.split(' ').nth(2))
        .and_then(|v| v.parse().ok())
}

/// `msg`'s SDP is Maskline's own (media anchored): our origin, no session
/// name, and none of the parties' RTP ports.
fn assert_our_sdp(msg: &str, party_ports: &[u16]) {
    let sdp = sipp::body(msg);
    assert!(sdp.contains("\no=maskline "), "not our SDP:\n{msg}");
    assert!(sdp.contains("\ns=-"), "{msg}");
    let port = audio_port(sdp).unwrap_or_else(|| panic!("no audio stream:\n{msg}"));
    assert!(
        !party_ports.contains(&port),
        "a party's RTP port crossed:\n{msg}"
    );
}

fn cseq_number(msg: &str) -> Option<u32> {
    sipp::header(msg, "CSeq")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The tag of header `name` (From or To).
fn tag_of<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    sipp::header(msg, name).and_then(sipp::tag)
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

/// Every header a trunk may use to identify a caller carries A's number;
/// the callee sees none of it (the B2BUA passes only the body's headers).
#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_and_unknown_headers_never_cross() {
    let (rig, binding, _uac, uas) = answered_call(
        axb(),
        &a(),
        &b(),
        Transport::Udp,
        "uac_call_identity_headers.xml",
        &[],
    )
    .await;
    let invite = &uas.received_requests("INVITE")[0];
    for name in [
        "Remote-Party-ID",
        "Diversion",
        "History-Info",
        "Call-Info",
        "P-Preferred-Identity",
        "X-Caller-Number",
        "Subject",
        "Organization",
        "User-Agent",
        "Session-Expires",
    ] {
        assert!(
            sipp::header(invite, name).is_none(),
            "{name} reached the callee:\n{invite}"
        );
    }
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
}

/// A SIP-I trunk's INVITE carries the caller's number in an encapsulated
/// ISUP part: only the SDP part reaches the callee.
#[tokio::test(flavor = "multi_thread")]
async fn sip_i_isup_body_never_crosses_only_its_sdp_does() {
    let (rig, binding, _uac, uas) =
        answered_call(axb(), &a(), &b(), Transport::Udp, "uac_call_sipi.xml", &[]).await;
    let invite = &uas.received_requests("INVITE")[0];
    assert_eq!(
        sipp::header(invite, "Content-Type"),
        Some("application/sdp"),
        "{invite}"
    );
    assert!(
        !invite.contains("isup") && !invite.contains("IAM"),
        "{invite}"
    );
    assert_our_sdp(invite, &[6000]);
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
}

/// Early media: the callee's 183 with SDP reaches the caller with that SDP,
/// then the 200 with the answer's; Max-Forwards went down by one.
#[tokio::test(flavor = "multi_thread")]
async fn early_media_183_with_sdp_is_relayed_then_the_answer() {
    let mut uas = Sipp::uas("uas_early_media.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "300"]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &a(), &x, &b());
    let received = uac.received();
    let progress = received
        .iter()
        .find(|m| sipp::status(m) == Some(183))
        .unwrap_or_else(|| panic!("the caller got the 183\n{}", uac.report()));
    assert_eq!(
        sipp::header(progress, "Content-Type"),
        Some("application/sdp"),
        "{progress}"
    );
    assert_our_sdp(progress, &[6000, 6002, 6004]);
    let answer = received
        .iter()
        .find(|m| sipp::status(m) == Some(200) && sipp::cseq_method(m) == Some("INVITE"))
        .unwrap_or_else(|| panic!("the caller got the 200\n{}", uac.report()));
    assert_our_sdp(answer, &[6000, 6002, 6004]);
    // One answer, early and final: the caller's leg stays on one port.
    assert_eq!(
        audio_port(sipp::body(progress)),
        audio_port(sipp::body(answer))
    );
    let invite = &uas.received_requests("INVITE")[0];
    assert_eq!(sipp::header(invite, "Max-Forwards"), Some("69"), "{invite}");
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
    assert!(
        cdrs[0]["ringing_at"].is_string(),
        "183 counts as ringing: {:#}",
        cdrs[0]
    );
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

#[tokio::test(flavor = "multi_thread")]
async fn ended_binding_is_refused_410_with_a_reason_and_nothing_goes_out() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let id = binding["id"].as_str().unwrap();
    let x = binding["x"].as_str().unwrap().to_owned();
    let (st, ended) = rig
        .server
        .call(
            "DELETE",
            &format!("/v1/bindings/{id}"),
            Some(&rig.key),
            None,
        )
        .await;
    assert_eq!(st, 200, "{ended}");
    assert_eq!(ended["status"], "cooling", "{ended}");
    let mut uac = rig.uac("uac_expect_fail.xml", &a(), &x, Transport::Udp, &[]);
    uac.succeeds(PEER_SECS).await;
    assert_eq!(uac.invite_final_status(), Some(410), "{}", uac.report());
    assert_reason(&final_response(&uac, "INVITE"));
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], None, 410, "system", "refused");
    assert_eq!(cdrs[0]["refusal"], "expired", "{:#}", cdrs[0]);
    assert_eq!(
        cdrs[0]["release_cause"], 22,
        "Q.850 number changed: {:#}",
        cdrs[0]
    );
    assert_nothing_went_out(&mut uas);
    assert_never_saw(&uac, "caller", &b());
}

/// The tenant's call rules and its calls counted against them.
async fn call_rules(rig: &Rig, body: Option<Value>) -> Value {
    let method = if body.is_some() { "PUT" } else { "GET" };
    let (st, v) = rig
        .server
        .call(method, "/v1/settings/calls", Some(&rig.key), body)
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

/// Toll fraud: a tenant's concurrent-call and calls-per-second caps refuse
/// the calls beyond them with 503 before anything goes out, and rules
/// changed after a binding was made hold for its next call.
#[tokio::test(flavor = "multi_thread")]
async fn calls_beyond_the_tenants_caps_get_503_and_changed_rules_hold_at_call_time() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b(), "-m", "10"]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    call_rules(
        &rig,
        Some(json!({"allow_prefixes": ["+86"], "max_concurrent_calls": 1})),
    )
    .await;

    // One call up (the caller hangs up after 4 s) fills the cap.
    let mut live = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "4000"]);
    {
        let rig = &rig;
        eventually(PEER_SECS, "the call to count", || async move {
            (call_rules(rig, None).await["calls_in_progress"] == 1).then_some(())
        })
        .await;
    }
    let mut over = rig.uac("uac_expect_fail.xml", &b(), &x, Transport::Udp, &[]);
    over.succeeds(PEER_SECS).await;
    assert_eq!(over.invite_final_status(), Some(503), "{}", over.report());
    let refusal = final_response(&over, "INVITE");
    assert!(
        sipp::headers(&refusal, "Reason")
            .iter()
            .any(|r| r.starts_with("Q.850") && r.contains("cause=34")),
        "Q.850 no circuit available: {refusal}"
    );
    assert!(live.running(), "the first call is still up");
    live.succeeds(PEER_SECS).await;
    {
        let rig = &rig;
        eventually(
            PEER_SECS,
            "the ended call to stop counting",
            || async move { (call_rules(rig, None).await["calls_in_progress"] == 0).then_some(()) },
        )
        .await;
    }
    // Once it ended, the next call goes through.
    let mut next = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "100"]);
    next.succeeds(PEER_SECS).await;
    assert_eq!(uas.received_requests("INVITE").len(), 2, "{}", uas.report());

    // Rules changed after the binding was made: B is now denied.
    call_rules(
        &rig,
        Some(json!({"allow_prefixes": ["+86"], "deny_prefixes": [b()]})),
    )
    .await;
    let mut denied = rig.uac("uac_expect_fail.xml", &a(), &x, Transport::Udp, &[]);
    denied.succeeds(PEER_SECS).await;
    assert_eq!(
        denied.invite_final_status(),
        Some(403),
        "{}",
        denied.report()
    );
    assert_reason(&final_response(&denied, "INVITE"));
    assert_eq!(uas.received_requests("INVITE").len(), 2, "{}", uas.report());

    // One call a second: of three started within a few milliseconds, the
    // first goes out and the others are refused.
    call_rules(
        &rig,
        Some(json!({"allow_prefixes": ["+86"], "max_calls_per_second": 1})),
    )
    .await;
    {
        let rig = &rig;
        eventually(PEER_SECS, "a second without calls", || async move {
            (call_rules(rig, None).await["calls_last_second"] == 0).then_some(())
        })
        .await;
    }
    let mut burst = rig.uac(
        "uac_call.xml",
        &a(),
        &x,
        Transport::Udp,
        &["-d", "100", "-m", "3", "-r", "100"],
    );
    // Refused calls fail the scenario: only its end matters here.
    let _ = burst.wait(Duration::from_secs(PEER_SECS)).await;

    let cdrs = rig.cdrs(&binding, 7).await;
    let refused =
        |why: &str| -> Vec<&Value> { cdrs.iter().filter(|c| c["refusal"] == why).collect() };
    let limited = refused("call_limit");
    assert!(
        (2..=3).contains(&limited.len()),
        "the concurrent refusal and one or two of the burst: {cdrs:#?}"
    );
    for c in &limited {
        assert_cdr(c, None, 503, "system", "refused");
        assert_eq!(c["release_cause"], 34, "{c:#}");
    }
    let not_allowed = refused("destination_not_allowed");
    assert_eq!(not_allowed.len(), 1, "{cdrs:#?}");
    assert_cdr(not_allowed[0], None, 403, "system", "refused");
    assert_eq!(not_allowed[0]["release_cause"], 21, "{:#}", not_allowed[0]);
    let placed = cdrs.iter().filter(|c| c["direction"] == "a_to_b").count();
    uas.kill();
    assert_eq!(
        uas.received_requests("INVITE").len(),
        placed,
        "every call placed and no other: {}",
        uas.report()
    );
    assert_eq!(placed, 7 - limited.len() - 1, "{cdrs:#?}");
    // Every call, placed or refused, gave its place back with its CDR.
    assert_eq!(call_rules(&rig, None).await["calls_in_progress"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_direction_is_refused_403_and_the_allowed_one_connects() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig
        .bind(json!({"mode": "axb", "a": a(), "b": b(), "expires_in": 600, "controls": {"b_to_a": false}}))
        .await;
    let x = binding["x"].as_str().unwrap().to_owned();

    let mut refused = rig.uac("uac_expect_fail.xml", &b(), &x, Transport::Udp, &[]);
    refused.succeeds(PEER_SECS).await;
    assert_eq!(
        refused.invite_final_status(),
        Some(403),
        "{}",
        refused.report()
    );
    let cdr = rig
        .cdr_where("B's refused call's CDR", |c| c["caller"] == json!(b()))
        .await;
    assert_cdr(&cdr, None, 403, "system", "refused");
    assert_eq!(cdr["refusal"], "direction_forbidden", "{cdr:#}");
    assert!(
        uas.received_requests("INVITE").is_empty(),
        "B's call places no outbound call\n{}",
        uas.report()
    );
    assert_never_saw(&refused, "caller", &a());

    // A -> B is allowed on the same binding and connects; the callee gets
    // exactly one INVITE (so B's call never went out).
    let mut uac = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "300"]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &a(), &x, &b());
    let cdrs = rig.cdrs(&binding, 2).await;
    let answered = cdrs
        .iter()
        .find(|c| c["caller"] == json!(a()))
        .unwrap_or_else(|| panic!("A's CDR: {cdrs:#?}"));
    assert_cdr(answered, Some("a_to_b"), 200, "caller", "normal");
}

#[tokio::test(flavor = "multi_thread")]
async fn axe_without_extension_hears_a_prompt_and_nothing_goes_out() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &a()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(json!({"mode": "axe", "a": a()})).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    // Anyone dialling X alone, the holder included, is asked for the
    // extension (early media, our SDP); whoever hangs up places no call.
    for caller in [stranger(), a()] {
        let mut uac = rig.uac("uac_ivr_cancel.xml", &caller, &x, Transport::Udp, &[]);
        uac.succeeds(PEER_SECS).await;
        let early = uac
            .received()
            .into_iter()
            .find(|m| sipp::status(m) == Some(183))
            .unwrap_or_else(|| panic!("183 with the prompt\n{}", uac.report()));
        assert_our_sdp(&early, &[6000]);
        assert_eq!(uac.invite_final_status(), Some(487), "{}", uac.report());
        let cdr = rig
            .cdr_where("the CDR of the call without extension", |c| {
                c["caller"] == json!(caller)
            })
            .await;
        assert_cdr(&cdr, None, 487, "caller", "cancelled");
        assert_eq!(cdr["x"], json!(x), "{cdr:#}");
        if caller != a() {
            assert_never_saw(&uac, "caller", &a());
        }
    }
    assert_nothing_went_out(&mut uas);
}

/// `<X>,<ext>` in the Request-URI user: the shared number's extension
/// dialled with it reaches its holder, showing X; an extension nobody holds
/// is refused 404, one that is no extension 404 too.
#[tokio::test(flavor = "multi_thread")]
async fn axe_extension_in_the_request_uri_reaches_its_holder() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &a()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(json!({"mode": "axe", "a": a()})).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let ext = binding["extension"].as_str().unwrap().to_owned();
    let other = if ext == "0000" { "0001" } else { "0000" };
    for dialled in [format!("{x},{other}"), format!("{x},12ab")] {
        let mut uac = rig.uac(
            "uac_expect_fail.xml",
            &stranger(),
            &dialled,
            Transport::Udp,
            &[],
        );
        uac.succeeds(PEER_SECS).await;
        assert_eq!(
            uac.invite_final_status(),
            Some(404),
            "{dialled}: {}",
            uac.report()
        );
    }
    let mut uac = rig.uac(
        "uac_call.xml",
        &stranger(),
        &format!("{x},{ext}"),
        Transport::Udp,
        &["-d", "300"],
    );
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &stranger(), &x, &a());
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("n_to_a"), 200, "caller", "normal");
}

#[tokio::test(flavor = "multi_thread")]
async fn caller_without_a_number_is_refused_404_and_nothing_goes_out() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    // No P-Asserted-Identity, and From is sip:anonymous@...: no caller.
    let mut uac = rig.uac("uac_expect_fail.xml", "anonymous", &x, Transport::Udp, &[]);
    uac.succeeds(PEER_SECS).await;
    let invite = &uac.sent_requests("INVITE")[0];
    assert!(
        sipp::header(invite, "P-Asserted-Identity").is_none()
            && sipp::header(invite, "From").and_then(sipp::uri_user) == Some("anonymous"),
        "{invite}"
    );
    assert_eq!(uac.invite_final_status(), Some(404), "{}", uac.report());
    assert_nothing_went_out(&mut uas);
    assert_never_saw(&uac, "caller", &a());
    assert_never_saw(&uac, "caller", &b());
}

// === in-dialog requests ===

#[tokio::test(flavor = "multi_thread")]
async fn caller_reinvite_update_and_info_reach_the_callee_in_its_own_dialog() {
    let mut uas = Sipp::uas("uas_reinvite.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_reinvite.xml", &a(), &x, Transport::Udp, &["-d", "100"]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked_dialog(&uac, &uas, &a(), &x, &b());

    // Every request after the first INVITE is in the callee's dialog: its
    // Call-ID, Maskline's From tag on that leg, the callee's own To tag.
    let invites = uas.received_requests("INVITE");
    assert_eq!(
        invites.len(),
        3,
        "the INVITE and two re-INVITEs reach the callee\n{}",
        uas.report()
    );
    let first = &invites[0];
    let call_id = sipp::header(first, "Call-ID").unwrap();
    let our_tag = tag_of(first, "From").unwrap();
    let callee_tag = uas
        .sent()
        .iter()
        .find(|m| sipp::status(m) == Some(200) && sipp::cseq_method(m) == Some("INVITE"))
        .and_then(|m| tag_of(m, "To").map(str::to_owned))
        .unwrap_or_else(|| panic!("the callee's 200 has a To tag\n{}", uas.report()));
    let received = uas.received();
    let in_dialog: Vec<&String> = received
        .iter()
        .filter(|m| sipp::method(m).is_some())
        .skip(1)
        .collect();
    let methods: Vec<&str> = in_dialog.iter().filter_map(|m| sipp::method(m)).collect();
    for m in ["INVITE", "ACK", "UPDATE", "INFO", "BYE"] {
        assert!(
            methods.contains(&m),
            "the callee got a {m}: {methods:?}\n{}",
            uas.report()
        );
    }
    for req in &in_dialog {
        assert_eq!(
            sipp::header(req, "Call-ID"),
            Some(call_id),
            "the callee's Call-ID:\n{req}"
        );
        assert_eq!(
            tag_of(req, "From"),
            Some(our_tag),
            "Maskline's tag on the callee's leg:\n{req}"
        );
        assert_eq!(
            tag_of(req, "To"),
            Some(callee_tag.as_str()),
            "the callee's own tag:\n{req}"
        );
    }
    // CSeq grows on the callee's leg (§12.2.1.1); each ACK has its INVITE's.
    let numbers: Vec<u32> = in_dialog
        .iter()
        .filter(|m| sipp::method(m) != Some("ACK"))
        .filter_map(|m| cseq_number(m))
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]) && numbers[0] > cseq_number(first).unwrap(),
        "CSeq increases on the callee's leg: {numbers:?}\n{}",
        uas.report()
    );
    let acks: Vec<u32> = uas
        .received_requests("ACK")
        .iter()
        .filter_map(|m| cseq_number(m))
        .collect();
    for invite in &invites {
        let n = cseq_number(invite).unwrap();
        assert!(
            acks.contains(&n),
            "an ACK for INVITE CSeq {n}: ACKs {acks:?}\n{}",
            uas.report()
        );
    }

    // Hold, then resume: the callee gets our offers saying so, on its
    // leg's port, each a new version.
    let sent_invites = uac.sent_requests("INVITE");
    assert!(
        sipp::body(&invites[1]).contains("a=sendonly"),
        "{}",
        invites[1]
    );
    assert!(
        sipp::body(&invites[2]).contains("a=sendrecv")
            && !sipp::body(&invites[2]).contains("a=sendonly"),
        "{}",
        invites[2]
    );
    let party_ports = [6000, 6002, 6004, 6006];
    for got in &invites {
        assert_our_sdp(got, &party_ports);
        assert_eq!(
            sipp::header(got, "Content-Type"),
            Some("application/sdp"),
            "{got}"
        );
        assert_eq!(audio_port(sipp::body(got)), audio_port(sipp::body(first)));
    }
    let versions: Vec<u64> = invites
        .iter()
        .filter_map(|m| sdp_version(sipp::body(m)))
        .collect();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "a changed offer is a new version: {versions:?}"
    );
    let update = &uas.received_requests("UPDATE");
    assert_eq!(update.len(), 1, "{}", uas.report());
    assert_our_sdp(&update[0], &party_ports);
    let info = &uas.received_requests("INFO");
    assert_eq!(info.len(), 1, "{}", uas.report());
    assert_eq!(
        sipp::header(&info[0], "Content-Type"),
        Some("application/dtmf-relay"),
        "{}",
        info[0]
    );
    assert_eq!(
        sipp::body(&info[0]),
        sipp::body(&uac.sent_requests("INFO")[0]),
        "the INFO body is relayed unchanged"
    );
    assert_eq!(
        sipp::body(&info[0]).trim_end(),
        "Signal=5\r\nDuration=160",
        "{}",
        info[0]
    );
    assert_eq!(
        sipp::header(&info[0], "Content-Length"),
        sipp::header(&uac.sent_requests("INFO")[0], "Content-Length"),
        "{}",
        info[0]
    );

    // The callee's answers came back to the caller, in the caller's dialog.
    let caller_call_id = sipp::header(&sent_invites[0], "Call-ID").unwrap();
    let answer = |cseq: u32, m: &str| -> String {
        uac.received()
            .into_iter()
            .find(|r| {
                sipp::status(r) == Some(200)
                    && sipp::cseq_method(r) == Some(m)
                    && cseq_number(r) == Some(cseq)
            })
            .unwrap_or_else(|| panic!("the caller got 200 for {cseq} {m}\n{}", uac.report()))
    };
    let held = answer(2, "INVITE");
    assert!(
        sipp::body(&held).contains("a=recvonly"),
        "the callee's hold answer:\n{held}"
    );
    let resumed = answer(3, "INVITE");
    assert!(sipp::body(&resumed).contains("a=sendrecv"), "{resumed}");
    let updated = answer(4, "UPDATE");
    assert_our_sdp(&updated, &party_ports);
    assert_our_sdp(&held, &party_ports);
    assert_our_sdp(&resumed, &party_ports);
    let info_ok = answer(5, "INFO");
    for r in [&held, &resumed, &updated, &info_ok] {
        assert_eq!(sipp::header(r, "Call-ID"), Some(caller_call_id), "{r}");
    }

    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
}

#[tokio::test(flavor = "multi_thread")]
async fn callee_holds_and_the_caller_gets_the_reinvite_in_its_own_dialog() {
    let mut uas = Sipp::uas("uas_hold.xml", Transport::Udp, &["-s", &b(), "-d", "200"]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_held.xml", &a(), &x, Transport::Udp, &["-d", "200"]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &a(), &x, &b());

    // The caller's dialog: its Call-ID, Maskline's tag (the To tag of the
    // 200 it got) as From tag, its own tag as To tag.
    let inbound = &uac.sent_requests("INVITE")[0];
    let caller_tag = tag_of(inbound, "From").unwrap();
    let maskline_tag = tag_of(&final_response(&uac, "INVITE"), "To")
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the 200 has a To tag\n{}", uac.report()));
    let reinvites = uac.received_requests("INVITE");
    assert_eq!(
        reinvites.len(),
        1,
        "the hold reaches the caller\n{}",
        uac.report()
    );
    let hold = &reinvites[0];
    assert_eq!(
        sipp::header(hold, "Call-ID"),
        sipp::header(inbound, "Call-ID"),
        "{hold}"
    );
    assert_eq!(tag_of(hold, "From"), Some(maskline_tag.as_str()), "{hold}");
    assert_eq!(tag_of(hold, "To"), Some(caller_tag), "{hold}");
    assert!(sipp::body(hold).contains("a=sendonly"), "{hold}");
    assert_our_sdp(hold, &[6000, 6002]);
    // The hold is our offer on the caller's leg: the port of our answer to
    // its INVITE, a newer version.
    let first_ok = final_response(&uac, "INVITE");
    let first_answer = sipp::body(&first_ok);
    assert_eq!(audio_port(sipp::body(hold)), audio_port(first_answer));
    assert_eq!(
        sdp_version(sipp::body(hold)),
        sdp_version(first_answer).map(|v| v + 1)
    );
    // The caller's answer went back to the callee, and the callee's ACK
    // reached the caller as an ACK of the re-INVITE, in its dialog.
    let answer = final_response(&uas, "INVITE");
    assert_eq!(sipp::status(&answer), Some(200), "{}", uas.report());
    assert!(sipp::body(&answer).contains("a=recvonly"), "{answer}");
    assert_our_sdp(&answer, &[6000, 6002]);
    let acks = uac.received_requests("ACK");
    assert_eq!(acks.len(), 1, "{}", uac.report());
    assert_eq!(cseq_number(&acks[0]), cseq_number(hold), "{}", acks[0]);
    assert_eq!(
        sipp::header(&acks[0], "Call-ID"),
        sipp::header(inbound, "Call-ID")
    );
    assert_eq!(
        tag_of(&acks[0], "From"),
        Some(maskline_tag.as_str()),
        "{}",
        acks[0]
    );

    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
}

/// The callee answers and disappears; the caller's in-dialog request
/// (`scenario`, method `m`) times out downstream: the caller gets 408 and
/// Maskline's BYE, and the CDR says the system ended it on a peer timeout.
async fn silent_callee_ends_the_call(scenario: &str, m: &str) {
    let mut uas = Sipp::uas("uas_answer_then_gone.xml", Transport::Udp, &["-s", &b()]);
    // T1 = 100 ms: Timer B/F fires at 64*T1 = 6.4 s.
    let rig = Rig::start(&uas, &[("MASKLINE_SIP_T1_MS", "100")]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac(scenario, &a(), &x, Transport::Udp, &["-d", "300"]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked_dialog(&uac, &uas, &a(), &x, &b());
    let seen: Vec<String> = uas
        .received()
        .iter()
        .filter_map(|r| sipp::method(r).map(str::to_owned))
        .collect();
    assert_eq!(
        seen,
        ["INVITE", "ACK"],
        "the callee was gone before the {m}\n{}",
        uas.report()
    );
    // The in-dialog request (for INVITE: the re-INVITE, CSeq 2).
    let request = uac
        .sent_requests(m)
        .into_iter()
        .find(|r| cseq_number(r) == Some(2))
        .unwrap_or_else(|| panic!("the caller sent its {m}\n{}", uac.report()));
    let request = &request;
    let reply = uac
        .received()
        .into_iter()
        .find(|r| {
            sipp::cseq_method(r) == Some(m)
                && cseq_number(r) == cseq_number(request)
                && sipp::status(r).is_some_and(|c| c >= 200)
        })
        .unwrap_or_else(|| panic!("a final response to the {m}\n{}", uac.report()));
    assert_eq!(sipp::status(&reply), Some(408), "{reply}");
    let byes = uac.received_requests("BYE");
    assert!(
        !byes.is_empty(),
        "Maskline hangs up the caller\n{}",
        uac.report()
    );
    assert_eq!(
        sipp::header(&byes[0], "Call-ID"),
        sipp::header(request, "Call-ID"),
        "the BYE is in the caller's dialog"
    );
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "system", "peer_timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn unanswered_reinvite_gets_408_and_a_bye() {
    silent_callee_ends_the_call("uac_reinvite_unanswered.xml", "INVITE").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unanswered_info_gets_408_and_a_bye() {
    silent_callee_ends_the_call("uac_info_unanswered.xml", "INFO").await;
}

// === malformed input ===

/// A small SDP body for the hand-made INVITEs.
const RAW_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n";

/// An INVITE from `raw` to X (on `sip`) from A, number `n`, with
/// `max_forwards`, the body [`RAW_SDP`] and `content_length` claiming its
/// length. Returns the message and its Call-ID.
fn raw_invite(
    raw: &sipp::RawUdp,
    sip: &str,
    x: &str,
    n: u32,
    max_forwards: &str,
    content_length: usize,
) -> (String, String) {
    let local = raw.local();
    let caller = a();
    let call_id = format!("raw-{n}-{}@127.0.0.1", std::process::id());
    let msg = format!(
        "INVITE sip:{x}@{sip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-raw-{n}\r\n\
         From: <sip:{caller}@{local}>;tag=raw{n}\r\n\
         To: <sip:{x}@{sip}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{caller}@{local}>\r\n\
         Max-Forwards: {max_forwards}\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {content_length}\r\n\
         \r\n\
         {RAW_SDP}"
    );
    (msg, call_id)
}

/// The first final response on `raw` to the request with `call_id`
/// (provisional responses skipped); panics when none comes.
fn raw_final(raw: &sipp::RawUdp, call_id: &str, what: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(PEER_SECS);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Some(msg) = raw.recv(left) else {
            panic!("no final response to {what}");
        };
        if sipp::header(&msg, "Call-ID") == Some(call_id)
            && sipp::status(&msg).is_some_and(|c| c >= 200)
        {
            return msg;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_400_garbage_gets_nothing_and_nothing_changes() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let raw = sipp::RawUdp::new(&rig.sip);

    // A body shorter than its Content-Length: over UDP, §18.3 says 400.
    let (msg, short_body) = raw_invite(&raw, &rig.sip, &x, 1, "70", 999);
    raw.send(msg.as_bytes());
    let reply = raw_final(&raw, &short_body, "the short body");
    assert_eq!(sipp::status(&reply), Some(400), "{reply}");
    assert_eq!(sipp::cseq_method(&reply), Some("INVITE"), "{reply}");

    // A Max-Forwards that is not a number: 400 (then ACKed, as a UAC does).
    let (msg, bad_mf) = raw_invite(&raw, &rig.sip, &x, 2, "seventy", RAW_SDP.len());
    raw.send(msg.as_bytes());
    let reply = raw_final(&raw, &bad_mf, "the bad Max-Forwards");
    assert_eq!(sipp::status(&reply), Some(400), "{reply}");
    let local = raw.local();
    let ack = format!(
        "ACK sip:{x}@{sip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-raw-2\r\n\
         From: <sip:{a}@{local}>;tag=raw2\r\n\
         To: {to}\r\n\
         Call-ID: {bad_mf}\r\n\
         CSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        sip = rig.sip,
        a = a(),
        to = sipp::header(&reply, "To").unwrap_or_default(),
    );
    raw.send(ack.as_bytes());

    // Garbage: no answer is possible. The next thing this socket gets is
    // the answer to the OPTIONS sent after it (UDP on loopback keeps order),
    // apart from retransmissions of what was already answered.
    raw.send(b"\x00\xff\xfe garbage \x01\x02\r\n\r\n");
    raw.send(b"NOT SIP AT ALL\r\nfoo\r\n\r\nbar");
    let options_id = format!("raw-options-{}@127.0.0.1", std::process::id());
    let options = format!(
        "OPTIONS sip:maskline@{sip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-raw-options\r\n\
         From: <sip:ping@{local}>;tag=rawping\r\n\
         To: <sip:maskline@{sip}>\r\n\
         Call-ID: {options_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        sip = rig.sip,
    );
    raw.send(options.as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(PEER_SECS);
    let pong = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let msg = raw
            .recv(left)
            .expect("an answer to OPTIONS after the garbage");
        let id = sipp::header(&msg, "Call-ID");
        if id == Some(options_id.as_str()) {
            break msg;
        }
        assert!(
            id == Some(short_body.as_str()) || id == Some(bad_mf.as_str()),
            "nothing answers garbage, got:\n{msg}"
        );
    };
    assert_eq!(sipp::status(&pong), Some(200), "{pong}");

    // Nothing went out for any of it, and a normal call still works: the
    // callee gets exactly that one INVITE.
    let mut uac = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "300"]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &a(), &x, &b());
    let cdrs = rig.cdrs(&binding, 1).await;
    assert_cdr(&cdrs[0], Some("a_to_b"), 200, "caller", "normal");
    let (st, still) = rig
        .server
        .call(
            "GET",
            &format!("/v1/bindings/{}", binding["id"].as_str().unwrap()),
            Some(&rig.key),
            None,
        )
        .await;
    assert_eq!(
        (st, still["status"].as_str()),
        (200, Some("active")),
        "{still}"
    );
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
    let pairs: [(&str, &str, &[&str], &[&str]); 8] = [
        ("uac_call.xml", "uas_answer.xml", &["-d", "100"], &[]),
        ("uac_reinvite.xml", "uas_reinvite.xml", &["-d", "100"], &[]),
        (
            "uac_held.xml",
            "uas_hold.xml",
            &["-d", "100"],
            &["-d", "100"],
        ),
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
            let invites = if uas_scn == "uas_reinvite.xml" { 3 } else { 1 };
            assert_eq!(
                uas.received_requests("INVITE").len(),
                invites,
                "{}",
                uas.report()
            );
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

/// §8.2.2.3: an extension we do not support that the caller requires gets
/// 420 naming it; §8.2.2.2: the same INVITE arriving by a second path while
/// the first is in progress gets 482, and only one call goes out.
#[tokio::test(flavor = "multi_thread")]
async fn required_extensions_get_420_and_a_merged_invite_gets_482() {
    let mut uas = Sipp::uas("uas_ring_forever.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let raw = sipp::RawUdp::new(&rig.sip);

    let (msg, requires) = raw_invite(&raw, &rig.sip, &x, 1, "70", RAW_SDP.len());
    let msg = msg.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: 100rel\r\n",
    );
    raw.send(msg.as_bytes());
    let reply = raw_final(&raw, &requires, "the INVITE requiring 100rel");
    assert_eq!(sipp::status(&reply), Some(420), "{reply}");
    assert_eq!(
        sipp::header(&reply, "Unsupported"),
        Some("100rel"),
        "{reply}"
    );

    // The first copy rings at the callee...
    let (first, call_id) = raw_invite(&raw, &rig.sip, &x, 2, "70", RAW_SDP.len());
    raw.send(first.as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(PEER_SECS);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let msg = raw.recv(left).expect("ringing for the first copy");
        if sipp::header(&msg, "Call-ID") == Some(call_id.as_str())
            && sipp::status(&msg) == Some(180)
        {
            break;
        }
    }
    // ...the second, by another path (another branch), is refused.
    let second = first.replace("branch=z9hG4bK-raw-2", "branch=z9hG4bK-raw-2-other-path");
    raw.send(second.as_bytes());
    let merged = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let msg = raw.recv(left).expect("an answer to the merged copy");
        if sipp::via_branches(&msg).contains(&"z9hG4bK-raw-2-other-path") {
            break msg;
        }
    };
    assert_eq!(sipp::status(&merged), Some(482), "{merged}");

    // The first one is cancelled as usual; the callee saw one INVITE.
    let local = raw.local();
    let cancel = format!(
        "CANCEL sip:{x}@{sip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-raw-2\r\n\
         From: <sip:{a}@{local}>;tag=raw2\r\n\
         To: <sip:{x}@{sip}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 CANCEL\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        sip = rig.sip,
        a = a(),
    );
    raw.send(cancel.as_bytes());
    let terminated = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let msg = raw.recv(left).expect("487 for the cancelled INVITE");
        if sipp::header(&msg, "Call-ID") == Some(call_id.as_str())
            && sipp::cseq_method(&msg) == Some("INVITE")
            && sipp::status(&msg).is_some_and(|c| c >= 200)
        {
            break msg;
        }
    };
    assert_eq!(sipp::status(&terminated), Some(487), "{terminated}");
    let ack = format!(
        "ACK sip:{x}@{sip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-raw-2\r\n\
         From: <sip:{a}@{local}>;tag=raw2\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        sip = rig.sip,
        a = a(),
        to = sipp::header(&terminated, "To").unwrap_or_default(),
    );
    raw.send(ack.as_bytes());
    let status = uas.wait(Duration::from_secs(PEER_SECS)).await;
    assert_eq!(status.code(), Some(0), "{}", uas.report());
    assert_eq!(uas.received_requests("INVITE").len(), 1, "{}", uas.report());
    // Each refused INVITE is on record too, under the binding it would reach.
    let cdrs = rig.cdrs(&binding, 3).await;
    let with = |status: u64| {
        cdrs.iter()
            .find(|c| c["final_status"] == status)
            .unwrap_or_else(|| panic!("no CDR with {status}: {cdrs:#?}"))
    };
    assert_cdr(with(487), Some("a_to_b"), 487, "caller", "cancelled");
    for status in [420, 482] {
        assert_eq!(with(status)["release_reason"], "failed", "{cdrs:#?}");
        assert_eq!(with(status)["caller"], a(), "{cdrs:#?}");
    }
}

// === events and the intercept callback ===

use common::receiver::{Answer, Receiver, signature_valid};

async fn put_webhook(rig: &Rig, body: Value) -> Value {
    let (st, v) = rig
        .server
        .call("PUT", "/v1/webhook", Some(&rig.key), Some(body))
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

/// The `data` of each delivered event of `kind`.
fn delivered(rx: &Receiver, kind: &str) -> Vec<Value> {
    rx.of_type(kind)
        .into_iter()
        .map(|r| r.json["data"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn call_events_reach_the_webhook_in_order_and_end_with_the_cdr() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let rx = Receiver::start().await;
    let hook = put_webhook(&rig, json!({ "url": rx.url })).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "300"]);
    both_succeed(&mut uac, &mut uas).await;
    // A stranger's call to the same X is refused, and told as such.
    let mut refused = rig.uac("uac_expect_fail.xml", &stranger(), &x, Transport::Udp, &[]);
    refused.succeeds(PEER_SECS).await;

    let got = eventually(15, "the call's events", || async {
        let r = rx.requests();
        (r.iter().any(|e| e.json["type"] == "call.ended")
            && r.iter().any(|e| e.json["type"] == "call.refused"))
        .then_some(r)
    })
    .await;
    for r in &got {
        assert!(signature_valid(
            &secret,
            r.signature.as_deref().unwrap(),
            &r.body
        ));
    }
    let of_binding: Vec<&str> = got
        .iter()
        .filter(|r| r.json["type"] != "call.refused")
        .map(|r| r.json["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        of_binding,
        [
            "binding.created",
            "call.started",
            "call.ringing",
            "call.answered",
            "call.ended"
        ]
    );
    let cdr = &rig.cdrs(&binding, 1).await[0];
    let started = &delivered(&rx, "call.started")[0];
    assert_eq!(started["id"], cdr["id"]);
    assert_eq!(started["binding_id"], binding["id"]);
    assert_eq!(started["direction"], "a_to_b");
    assert_eq!(
        (&started["x"], &started["caller"], &started["callee"]),
        (&json!(x), &json!(a()), &json!(b()))
    );
    assert_eq!(started["ringing_at"], Value::Null);
    let ringing = &delivered(&rx, "call.ringing")[0];
    assert_eq!(ringing["ringing_at"], cdr["ringing_at"]);
    let answered = &delivered(&rx, "call.answered")[0];
    assert_eq!(answered["answered_at"], cdr["answered_at"]);
    // call.ended is the CDR exactly as GET /v1/calls shows it.
    assert_eq!(&delivered(&rx, "call.ended")[0], cdr);
    let refusal = &delivered(&rx, "call.refused")[0];
    assert_eq!(refusal["refusal"], "no_binding");
    assert_eq!(refusal["caller"], json!(stranger()));
    assert_eq!(refusal["final_status"], 404);
}

/// A tenant's webhook that accepts connections and never answers: calls go
/// on as before, its events wait, and another tenant's still flow.
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_never_answers_delays_no_call() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b(), "-m", "2"]);
    let rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();

    // Setup time of a call with no webhook at all, for comparison.
    let setup = |uac: &Sipp| {
        // From the INVITE sent to the 180 received, as the caller saw it.
        let e = uac.entries();
        let sent = e
            .iter()
            .find(|m| m.sent && sipp::method(&m.text) == Some("INVITE"));
        let ringing = e
            .iter()
            .find(|m| !m.sent && sipp::status(&m.text) == Some(180));
        match (sent, ringing) {
            (Some(s), Some(r)) => Duration::from_secs_f64((r.at - s.at).max(0.0)),
            _ => panic!("no INVITE/180 in\n{}", uac.report()),
        }
    };
    let mut uac = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "100"]);
    uac.succeeds(PEER_SECS).await;
    let without = setup(&uac);

    let dead = Receiver::scripted(Vec::new(), Answer::Hang).await;
    put_webhook(&rig, json!({ "url": dead.url })).await;
    let (_, other_key) = rig.server.create_tenant("other").await;
    rig.server.import(&other_key, &[&common::x(7)]).await;
    let live = Receiver::start().await;
    let (st, _) = rig
        .server
        .call(
            "PUT",
            "/v1/webhook",
            Some(&other_key),
            Some(json!({ "url": live.url })),
        )
        .await;
    assert_eq!(st, 200);

    let held = rig
        .bind(json!({"mode": "axb", "a": a(), "b": party(3), "expires_in": 600}))
        .await;
    eventually(10, "the dead endpoint is being tried", || async {
        (!dead.requests().is_empty()).then_some(())
    })
    .await;
    let mut uac = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "100"]);
    uac.succeeds(PEER_SECS).await;
    let with = setup(&uac);
    uas.succeeds(PEER_SECS).await;
    println!(
        "setup (INVITE to 180) without a webhook: {without:?}; with one that never answers: {with:?}"
    );

    // The call completed while its events (and the first binding's) wait.
    let (_, events) = rig
        .server
        .call("GET", "/v1/events?type=call.*", Some(&rig.key), None)
        .await;
    let states: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["delivery"]["state"].as_str().unwrap())
        .collect();
    assert!(
        !states.is_empty() && states.iter().all(|s| *s == "none" || *s == "pending"),
        "{events:#}"
    );
    assert!(states.contains(&"pending"), "{events:#}");
    assert!(
        delivered(&dead, "binding.created")
            .iter()
            .any(|d| d["id"] == held["id"])
    );
    // The other tenant is not held up by the dead endpoint.
    let (st, theirs) = rig
        .server
        .bind(&other_key, json!({"mode": "axb", "a": a(), "b": b()}))
        .await;
    assert_eq!(st, 201);
    eventually(10, "the other tenant's event", || async {
        delivered(&live, "binding.created")
            .into_iter()
            .find(|d| d["id"] == theirs["id"])
    })
    .await;
}

/// Rig, binding and intercept receiver for one intercepted call.
async fn intercepted(
    uas_scenario: &str,
    answers: Answer,
    fallback: &str,
    timeout_ms: u32,
) -> (Rig, Value, Receiver, Sipp, String) {
    let uas = Sipp::uas(uas_scenario, Transport::Udp, &["-s", &b()]);
    let rig = Rig::start(&uas, &[]).await;
    let ask = Receiver::scripted(Vec::new(), answers).await;
    let hook = put_webhook(
        &rig,
        json!({
            "url": "http://127.0.0.1:9/unused",
            "events": ["binding.ended"],
            "intercept": {"url": ask.url, "fallback": fallback, "timeout_ms": timeout_ms},
        }),
    )
    .await;
    let binding = rig.bind(axb()).await;
    (
        rig,
        binding,
        ask,
        uas,
        hook["secret"].as_str().unwrap().to_owned(),
    )
}

fn allow() -> Answer {
    Answer::Status(200, r#"{"action": "allow"}"#.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn intercept_allow_connects_the_call_and_is_asked_with_a_signed_context() {
    let (rig, binding, ask, mut uas, secret) =
        intercepted("uas_answer.xml", allow(), "deny", 5000).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "100"]);
    both_succeed(&mut uac, &mut uas).await;
    assert_masked(&uac, &uas, &a(), &x, &b());
    let asked = ask.requests();
    assert_eq!(asked.len(), 1);
    let q = &asked[0];
    assert!(signature_valid(
        &secret,
        q.signature.as_deref().unwrap(),
        &q.body
    ));
    let cdr = &rig.cdrs(&binding, 1).await[0];
    assert_eq!(q.json["call_id"], cdr["id"]);
    assert_eq!(q.json["binding_id"], binding["id"]);
    assert_eq!(
        (
            &q.json["caller"],
            &q.json["callee"],
            &q.json["x"],
            &q.json["direction"]
        ),
        (&json!(a()), &json!(b()), &json!(x), &json!("a_to_b"))
    );
    assert_cdr(cdr, Some("a_to_b"), 200, "caller", "normal");
}

async fn assert_denied(rig: &Rig, binding: &Value, uas: &mut Sipp) {
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_expect_fail.xml", &a(), &x, Transport::Udp, &[]);
    uac.succeeds(PEER_SECS).await;
    assert_eq!(uac.invite_final_status(), Some(403), "{}", uac.report());
    assert_reason(&final_response(&uac, "INVITE"));
    assert_nothing_went_out(uas);
    assert_never_saw(&uac, "caller", &b());
    let cdr = &rig.cdrs(binding, 1).await[0];
    assert_cdr(cdr, None, 403, "system", "refused");
    assert_eq!(cdr["refusal"], "intercepted", "{cdr:#}");
    let (_, events) = rig
        .server
        .call("GET", "/v1/events?type=call.*", Some(&rig.key), None)
        .await;
    let types: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["call.refused"], "no call.started for a denied call");
}

#[tokio::test(flavor = "multi_thread")]
async fn intercept_deny_refuses_the_call_and_nothing_goes_out() {
    let deny = Answer::Status(
        200,
        r#"{"action": "deny", "reason": "order closed"}"#.to_owned(),
    );
    let (rig, binding, ask, mut uas, _) = intercepted("uas_answer.xml", deny, "allow", 5000).await;
    assert_denied(&rig, &binding, &mut uas).await;
    assert_eq!(ask.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn intercept_timeout_applies_the_allow_fallback() {
    let (rig, binding, ask, mut uas, _) =
        intercepted("uas_answer.xml", Answer::Hang, "allow", 300).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "100"]);
    both_succeed(&mut uac, &mut uas).await;
    assert_eq!(ask.requests().len(), 1);
    assert_cdr(
        &rig.cdrs(&binding, 1).await[0],
        Some("a_to_b"),
        200,
        "caller",
        "normal",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn intercept_timeout_applies_the_deny_fallback() {
    let (rig, binding, _ask, mut uas, _) =
        intercepted("uas_answer.xml", Answer::Hang, "deny", 300).await;
    assert_denied(&rig, &binding, &mut uas).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn intercept_error_or_garbage_applies_the_fallback() {
    for (answer, fallback) in [
        (Answer::Status(500, String::new()), "deny"),
        (
            Answer::Status(200, r#"{"action": "maybe"}"#.to_owned()),
            "deny",
        ),
        (Answer::Status(302, String::new()), "deny"),
    ] {
        let (rig, binding, ask, mut uas, _) =
            intercepted("uas_answer.xml", answer.clone(), fallback, 5000).await;
        assert_denied(&rig, &binding, &mut uas).await;
        assert_eq!(ask.requests().len(), 1, "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn caller_cancelling_during_the_intercept_ends_the_attempt() {
    let (rig, binding, ask, mut uas, _) = intercepted(
        "uas_answer.xml",
        Answer::Delay(
            Duration::from_millis(1500),
            200,
            r#"{"action":"allow"}"#.to_owned(),
        ),
        "allow",
        5000,
    )
    .await;
    let x = binding["x"].as_str().unwrap().to_owned();
    let mut uac = rig.uac("uac_cancel_early.xml", &a(), &x, Transport::Udp, &[]);
    uac.succeeds(PEER_SECS).await;
    assert_eq!(uac.invite_final_status(), Some(487), "{}", uac.report());
    let cdr = &rig.cdrs(&binding, 1).await[0];
    assert_cdr(cdr, None, 487, "caller", "cancelled");
    // The late "allow" places nothing.
    eventually(5, "the intercept answered", || async {
        (ask.requests().len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_nothing_went_out(&mut uas);
}

/// `kill -9` in the middle of a burst of binds and calls: after a restart
/// every acknowledged change has its event delivered, no refused change has
/// one, and every delivered event stands for something that happened.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_burst_loses_no_event_and_invents_none() {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const BINDS: usize = 1000;
    const FIRST: usize = 300;
    const CALLS: usize = 250;

    let mut uas = Sipp::uas(
        "uas_answer.xml",
        Transport::Udp,
        &["-s", &b(), "-m", "100000"],
    );
    let mut rig = Rig::start(&uas, &[("MASKLINE_WEBHOOK_FIRST_RETRY_MS", "100")]).await;
    let rx = Receiver::start().await;
    put_webhook(&rig, json!({ "url": rx.url })).await;
    // A second tenant with three numbers asks for more axn bindings than
    // they can hold: the rest are refused.
    let (_, small) = rig.server.create_tenant("small").await;
    rig.server.import(&small, &[&x(50), &x(51), &x(52)]).await;
    let (st, _) = rig
        .server
        .call(
            "PUT",
            "/v1/webhook",
            Some(&small),
            Some(json!({ "url": rx.url })),
        )
        .await;
    assert_eq!(st, 200);

    let body = |i: usize| json!({"mode": "axb", "a": party(10_000 + i as u32), "b": party(20_000 + i as u32), "expires_in": 3600});
    // Bindings for the calls, acknowledged before the burst.
    let mut acked: Vec<String> = Vec::new();
    let mut xs = Vec::new();
    for i in 0..FIRST {
        let v = rig.bind(body(i)).await;
        acked.push(v["id"].as_str().unwrap().to_owned());
        xs.push(v["x"].as_str().unwrap().to_owned());
    }
    let calls_csv = rig._dir.path().join("calls.csv");
    let mut csv = String::from("SEQUENTIAL\n");
    for (i, x) in xs.iter().enumerate().take(CALLS) {
        csv.push_str(&format!("{};{x}\n", party(10_000 + i as u32)));
    }
    std::fs::write(&calls_csv, csv).unwrap();

    // The burst: calls at 100/s, the other binds 16 at a time, and the
    // refused ones, until the kill.
    let csv_path = calls_csv.display().to_string();
    let mut uac = Sipp::uac(
        "uac_burst.xml",
        &rig.sip,
        Transport::Udp,
        "0",
        &[],
        &[
            "-inf",
            &csv_path,
            "-r",
            "100",
            "-m",
            &CALLS.to_string(),
            "-l",
            "400",
            "-d",
            "300",
        ],
    );
    let base = rig.server.base.clone();
    let client = common::http();
    let next = Arc::new(AtomicUsize::new(FIRST));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (base, client, next, done, key, small) = (
            base.clone(),
            client.clone(),
            next.clone(),
            done.clone(),
            rig.key.clone(),
            small.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // (id of a 201, or None for a refusal) with the party asked for.
            let mut out: Vec<(String, Option<String>, u16)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= BINDS {
                    return out;
                }
                // Every 10th request goes to the small tenant as axn.
                let (key, b) = if i % 10 == w % 10 {
                    let a = party(30_000 + i as u32);
                    (small.clone(), json!({"mode": "axn", "a": a}))
                } else {
                    (key.clone(), body(i))
                };
                let a = b["a"].as_str().unwrap().to_owned();
                let res = client
                    .post(format!("{base}/v1/bindings"))
                    .bearer_auth(&key)
                    .json(&b)
                    .send()
                    .await;
                let Ok(res) = res else { return out };
                let status = res.status().as_u16();
                let Ok(v) = res.json::<Value>().await else {
                    return out;
                };
                out.push((a, v["id"].as_str().map(str::to_owned), status));
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    eventually(60, "half the burst acknowledged", || async {
        (done.load(Ordering::SeqCst) >= (BINDS - FIRST) / 2).then_some(())
    })
    .await;
    rig.server.kill9();
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.unwrap());
    }
    // Let the calls in flight fail on their own, then read what sipp saw.
    tokio::time::sleep(Duration::from_millis(300)).await;
    uac.kill();
    uas.kill();
    let refused: HashSet<String> = answers
        .iter()
        .filter(|(_, id, st)| id.is_none() && *st == 409)
        .map(|(a, ..)| a.clone())
        .collect();
    assert!(
        !refused.is_empty(),
        "some axn binds were refused: {answers:?}"
    );
    acked.extend(
        answers
            .iter()
            .filter_map(|(_, id, st)| (*st == 201).then(|| id.clone()).flatten()),
    );

    // Callers that heard 180 / 200 before the kill.
    let entries = uac.entries();
    let mut caller_of: HashMap<String, String> = HashMap::new();
    let (mut rang, mut answered) = (HashSet::new(), HashSet::new());
    for e in &entries {
        let call_id = sipp::header(&e.text, "Call-ID").unwrap_or("").to_owned();
        if e.sent && sipp::method(&e.text) == Some("INVITE") {
            let from = sipp::header(&e.text, "From")
                .and_then(sipp::uri_user)
                .unwrap_or("");
            caller_of.insert(call_id, from.to_owned());
        } else if !e.sent && sipp::cseq_method(&e.text) == Some("INVITE") {
            let caller = caller_of.get(&call_id).cloned().unwrap_or_default();
            match sipp::status(&e.text) {
                Some(180) => {
                    rang.insert(caller);
                }
                Some(200) => {
                    answered.insert(caller);
                }
                _ => {}
            }
        }
    }
    assert!(
        !answered.is_empty(),
        "calls were answered before the kill\n{}",
        uac.report()
    );

    rig.server.restart_after_kill9().await;
    // Everything recorded goes out.
    let server = &rig.server;
    let key = rig.key.clone();
    eventually(60, "no event left pending", || {
        let (server, key, small) = (server, key.clone(), small.clone());
        async move {
            for k in [&key, &small] {
                let all = server.list_all("/v1/events", k, 1000).await;
                if all.iter().any(|e| e["delivery"]["state"] != "delivered") {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;

    let got = rx.requests();
    let of = |kind: &str, field: &str| -> HashSet<String> {
        got.iter()
            .filter(|r| r.json["type"] == kind)
            .filter_map(|r| r.json["data"][field].as_str().map(str::to_owned))
            .collect()
    };
    let created = of("binding.created", "id");
    for id in &acked {
        assert!(
            created.contains(id),
            "binding {id} was acknowledged; its event was lost"
        );
    }
    for (a, _, _) in answers.iter().filter(|(_, id, _)| id.is_none()) {
        assert!(
            !of("binding.created", "a").contains(a),
            "a refused bind for {a} has an event"
        );
    }
    // Nothing invented: each delivered binding exists, for its tenant.
    for id in &created {
        let (st_main, _) = server
            .call("GET", &format!("/v1/bindings/{id}"), Some(&key), None)
            .await;
        let (st_small, _) = server
            .call("GET", &format!("/v1/bindings/{id}"), Some(&small), None)
            .await;
        assert!(
            st_main == 200 || st_small == 200,
            "event for binding {id}, which does not exist"
        );
    }
    let started = of("call.started", "caller");
    let ringing = of("call.ringing", "caller");
    let answered_events = of("call.answered", "caller");
    for caller in &rang {
        assert!(
            started.contains(caller) && ringing.contains(caller),
            "{caller} heard ringing; its events were lost"
        );
    }
    for caller in &answered {
        assert!(
            answered_events.contains(caller),
            "{caller} was answered; call.answered was lost"
        );
    }
    // Each call event is about a call that has its CDR or was cut by the
    // kill, and ids are never reused for different events.
    let mut bodies: HashMap<String, String> = HashMap::new();
    for r in &got {
        let id = r.event_id.clone().unwrap();
        if let Some(prev) = bodies.insert(id.clone(), r.body.clone()) {
            assert_eq!(prev, r.body, "event {id} redelivered with other content");
        }
    }
    println!(
        "acknowledged binds {}, refused {}, callers rang {}, answered {}, deliveries {}",
        acked.len(),
        refused.len(),
        rang.len(),
        answered.len(),
        got.len()
    );
}

/// A node killed (SIGKILL) during an answered call leaves no call without
/// its CDR: the open-call journal gives it one when the node starts again,
/// `node_restart`, ending at the node's last heartbeat, with its
/// `call.ended`.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_cut_by_a_kill_gets_its_cdr_when_the_node_restarts() {
    let mut uas = Sipp::uas("uas_answer.xml", Transport::Udp, &["-s", &b()]);
    let mut rig = Rig::start(&uas, &[]).await;
    let binding = rig.bind(axb()).await;
    let x = binding["x"].as_str().unwrap().to_owned();
    // The caller would hang up after a minute: the kill comes first.
    let started = std::time::Instant::now();
    let mut uac = rig.uac("uac_call.xml", &a(), &x, Transport::Udp, &["-d", "60000"]);
    let key = rig.key.clone();
    let answered = eventually(20, "call.answered", || {
        let (server, key) = (&rig.server, key.clone());
        async move {
            let events = server.list_all("/v1/events", &key, 100).await;
            events
                .into_iter()
                .find(|e| e["type"] == "call.answered")
                .map(|e| e["data"]["id"].as_str().unwrap().to_owned())
        }
    })
    .await;
    // Long enough for heartbeats (every 5 s) after the answer.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let up_for = started.elapsed();
    rig.server.kill9();
    uac.kill();
    uas.kill();
    rig.server.restart_after_kill9().await;
    let cdrs = rig.calls(None).await;
    assert_eq!(cdrs.len(), 1, "{cdrs:#?}");
    let cdr = &cdrs[0];
    assert_eq!(cdr["id"], json!(answered));
    assert_eq!(cdr["release_reason"], "node_restart", "{cdr:#}");
    assert_eq!(cdr["released_by"], "system");
    assert_eq!(
        (cdr["caller"].as_str(), cdr["callee"].as_str()),
        (Some(a().as_str()), Some(b().as_str()))
    );
    assert!(cdr["answered_at"].is_string(), "{cdr:#}");
    // It ends at a heartbeat after the answer, before the kill: not at the
    // answer, not at the restart.
    let talked = cdr["duration_ms"].as_i64().unwrap();
    assert!(
        talked > 0 && talked <= up_for.as_millis() as i64,
        "{talked} ms talked, up {up_for:?}: {cdr:#}"
    );
    let events = rig.server.list_all("/v1/events", &rig.key, 100).await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "call.ended" && e["data"]["id"] == json!(answered)),
        "{events:#?}"
    );
    // Once: a second restart writes nothing more.
    rig.server.restart().await;
    assert_eq!(rig.calls(None).await.len(), 1);
}
