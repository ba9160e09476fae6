//! The call logic in-process: a real engine over a SQLite store in a
//! temporary directory, a wire that records what would be sent, and a
//! fake clock moved by hand. No socket, no sleep.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maskline_core::{AreaMatch, Controls, Mode, Number, ReleaseReason, ReleasedBy, TenantId};
use maskline_engine::{BindingSpec, Config as EngineConfig, Engine, Expiry, NumberEntry};
use maskline_store::{CallFilter, Page, SqliteStore};
use tokio::sync::mpsc;

use maskline_media::dtmf::Digit;
use maskline_media::prompts::Language;
use maskline_media::relay::{Anchor, MediaEvent, RelayConfig, SessionId, Update};
use maskline_media::session::{Leg, SessionEvent};

use super::{B2bua, Effect, MediaPlane, Resume};
use crate::endpoint::Wire;
use crate::message::{Message, Method, Name, response_to};
use crate::transport::{ConnId, Peer};
use crate::{Cidr, Config, Outbound, Timers, Transport};

const A: u64 = 8_613_800_000_001;
const B: u64 = 8_613_800_000_002;
const X: u64 = 8_657_100_000_001;

type Sent = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

struct Recorder(Sent);

/// The relay's control surface, recorded: what the call logic asked of it.
#[derive(Clone, Default)]
struct FakePlane {
    next: Arc<Mutex<u64>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl MediaPlane for FakePlane {
    fn addr(&self) -> std::net::IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    fn open(&mut self) -> Result<Anchor, maskline_media::Error> {
        let mut next = self.next.lock().unwrap();
        *next += 1;
        let port = 20_000 + 4 * (*next as u16);
        Ok(Anchor {
            id: SessionId(*next),
            ports: [port, port + 2],
        })
    }

    fn update(&mut self, id: SessionId, update: Update) {
        let what = match update {
            Update::Leg(leg, media) => format!("leg {leg:?} {:?}", media.remote),
            Update::Bridge(on) => format!("bridge {on}"),
            Update::WatchSilence => "watch".into(),
            Update::Play { leg, .. } => format!("play {leg:?}"),
            Update::Stop(leg) => format!("stop {leg:?}"),
            Update::Collect(leg, on) => format!("collect {leg:?} {on}"),
            Update::Record(_) => "record".into(),
            Update::Close => "close".into(),
        };
        self.asked.lock().unwrap().push(format!("{}: {what}", id.0));
    }
}

impl Wire for Recorder {
    fn send(&mut self, peer: &Peer, bytes: &[u8]) -> Option<ConnId> {
        if let Ok(mut sent) = self.0.lock() {
            sent.push((peer.addr, bytes.to_vec()));
        }
        None
    }
    fn opened(&mut self, _: ConnId, _: SocketAddr, _: mpsc::UnboundedSender<Vec<u8>>) {}
    fn closed(&mut self, _: ConnId) {}
}

fn caller() -> SocketAddr {
    "127.0.0.1:5070".parse().unwrap()
}

fn gateway() -> SocketAddr {
    "127.0.0.1:5080".parse().unwrap()
}

fn udp(addr: SocketAddr) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr,
        conn: None,
    }
}

struct Harness {
    core: B2bua,
    plane: FakePlane,
    binding: maskline_core::BindingId,
    sent: Sent,
    now: Instant,
    engine: Arc<Engine>,
    tenant: TenantId,
    cdrs: Vec<maskline_store::WriteAck>,
    _dir: tempfile::TempDir,
}

const RING: Duration = Duration::from_secs(60);

impl Harness {
    /// An axb binding A–B on X with `max_call_seconds`.
    async fn new(max_call_seconds: Option<u32>) -> Harness {
        Harness::with_binding(Mode::Axb, max_call_seconds).await.0
    }

    /// A binding on X in `mode` (for `axe`: B behind an extension, which is
    /// returned).
    async fn with_binding(
        mode: Mode,
        max_call_seconds: Option<u32>,
    ) -> (Harness, Option<maskline_core::Extension>) {
        Harness::with_controls(
            mode,
            Controls {
                max_call_seconds,
                ..Controls::default()
            },
        )
        .await
    }

    async fn with_controls(
        mode: Mode,
        controls: Controls,
    ) -> (Harness, Option<maskline_core::Extension>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let engine = Arc::new(
            Engine::open(Arc::new(store), EngineConfig::default())
                .await
                .unwrap(),
        );
        let (tenant, _) = engine.create_tenant("t").await.unwrap();
        let x = Number::from_digits(X).unwrap();
        engine
            .import_numbers(
                tenant.id,
                vec![NumberEntry {
                    number: x,
                    area: None,
                }],
            )
            .await
            .unwrap();
        let (a, b) = match mode {
            Mode::Axe => (Number::from_digits(B).unwrap(), None),
            _ => (
                Number::from_digits(A).unwrap(),
                Some(Number::from_digits(B).unwrap()),
            ),
        };
        let spec = BindingSpec {
            mode,
            a,
            b,
            expiry: Expiry::Default,
            area: None,
            area_match: AreaMatch::Fallback,
            external_ref: None,
            controls,
        };
        let render = |_: &maskline_core::Binding| String::new();
        let created = engine
            .create_binding(tenant.id, spec, None, &render)
            .await
            .unwrap();
        let maskline_engine::Created::Fresh(binding, _) = created else {
            panic!("a fresh binding");
        };
        let extension = binding.extension;
        let cfg = Config {
            listen: "127.0.0.1:5060".parse().unwrap(),
            advertise: "127.0.0.1:5060".into(),
            outbound: Some(Outbound {
                addr: gateway(),
                transport: Transport::Udp,
            }),
            trusted: vec![Cidr::parse("127.0.0.1/32").unwrap()],
            timers: Timers::default(),
            ring_timeout: RING,
            region: "CN".parse().unwrap(),
            media: RelayConfig {
                addr: "127.0.0.1".parse().unwrap(),
                ports: 20_000..=29_999,
                rtp_timeout: Duration::from_secs(60),
                workers: 1,
                realtime_priority: None,
            },
            language: Language::Zh,
            limits: crate::Limits::default(),
        };
        let sent = Sent::default();
        let now = Instant::now();
        let plane = FakePlane::default();
        let core = B2bua::new(
            cfg,
            engine.clone(),
            Box::new(Recorder(sent.clone())),
            Box::new(plane.clone()),
            now,
        );
        let h = Harness {
            core,
            plane,
            binding: binding.id,
            sent,
            now,
            engine,
            tenant: tenant.id,
            cdrs: Vec::new(),
            _dir: dir,
        };
        (h, extension)
    }

    /// Runs the effects as the driver would: progress events are awaited
    /// and resumed at once, CDR writes kept to await later.
    async fn effects(&mut self) {
        while let Some(effect) = self.core.poll_effect() {
            match effect {
                Effect::Write(ack) => self.cdrs.push(ack),
                Effect::Progress(ack, call) => {
                    ack.await.unwrap();
                    self.core.handle_resume(Resume::Durable(call), self.now);
                }
                Effect::Intercept(_) => panic!("no intercept is configured"),
            }
        }
    }

    async fn from(&mut self, addr: SocketAddr, bytes: &[u8]) {
        self.core.handle_bytes(bytes, udp(addr), self.now);
        self.effects().await;
    }

    /// Moves the fake clock and fires what is due.
    async fn advance(&mut self, by: Duration) {
        self.now += by;
        self.core.handle_timeout(self.now);
        self.effects().await;
    }

    /// What went out since the last call, parsed.
    fn take(&self) -> Vec<(SocketAddr, Message)> {
        std::mem::take(&mut *self.sent.lock().unwrap())
            .into_iter()
            .map(|(to, bytes)| (to, Message::parse(&bytes).unwrap()))
            .collect()
    }

    /// The one request with `method` sent to `to` since the last take.
    fn request_to(sent: &[(SocketAddr, Message)], to: SocketAddr, method: &Method) -> Message {
        let found: Vec<&Message> = sent
            .iter()
            .filter(|(addr, m)| *addr == to && m.method() == Some(method))
            .map(|(_, m)| m)
            .collect();
        assert_eq!(found.len(), 1, "{method:?} to {to}: {sent:?}");
        found[0].clone()
    }

    fn codes_to(sent: &[(SocketAddr, Message)], to: SocketAddr) -> Vec<u16> {
        sent.iter()
            .filter(|(addr, _)| *addr == to)
            .filter_map(|(_, m)| m.code())
            .collect()
    }

    async fn cdrs(&mut self) -> Vec<maskline_core::CallRecord> {
        for ack in std::mem::take(&mut self.cdrs) {
            ack.await.unwrap();
        }
        self.engine
            .calls(
                self.tenant,
                &CallFilter::default(),
                Page {
                    after: None,
                    limit: 100,
                },
            )
            .await
            .unwrap()
    }
}

fn with_length(head: &str, body: &str) -> Vec<u8> {
    format!("{head}Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

const SDP: &str = "v=0\r\no=alice 1 1 IN IP4 10.0.0.7\r\ns=Alice's phone\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn invite(call_id: &str) -> Vec<u8> {
    with_length(
        &format!(
            "INVITE sip:+{X}@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{call_id}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+{A}@127.0.0.1:5070>;tag=a-{call_id}\r\n\
             To: <sip:+{X}@127.0.0.1:5060>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:+{A}@127.0.0.1:5070>\r\n\
             Content-Type: application/sdp\r\n"
        ),
        SDP,
    )
}

/// The caller's CANCEL of the INVITE made by [`invite`]`(call_id)`.
fn cancel_of(call_id: &str) -> Vec<u8> {
    with_length(
        &format!(
            "CANCEL sip:+{X}@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{call_id}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+{A}@127.0.0.1:5070>;tag=a-{call_id}\r\n\
             To: <sip:+{X}@127.0.0.1:5060>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 CANCEL\r\n"
        ),
        "",
    )
}

/// A response to `req` as its recipient would send it.
fn answer(req: &Message, code: u16, tag: &str) -> Vec<u8> {
    let mut b = response_to(req, code, Some(tag));
    if (180..300).contains(&code) && req.method() == Some(&Method::Invite) {
        b.header("Contact", "<sip:peer@127.0.0.1:5080>");
    }
    b.finish(b"")
}

/// An in-dialog request from the caller in the dialog `ok` (the 200 the
/// caller got) established.
fn from_caller(ok: &Message, method: &str, cseq: u32, branch: &str) -> Vec<u8> {
    with_length(
        &format!(
            "{method} sip:+{X}@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: {}\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: {cseq} {method}\r\n",
            ok.from(),
            ok.to(),
            ok.call_id()
        ),
        "",
    )
}

/// Places a call and has the callee answer; returns the outbound INVITE
/// and the 200 the caller got.
async fn answered(h: &mut Harness, call_id: &str) -> (Message, Message) {
    h.from(caller(), &invite(call_id)).await;
    let sent = h.take();
    let out = Harness::request_to(&sent, gateway(), &Method::Invite);
    assert_eq!(Harness::codes_to(&sent, caller()), [100]);
    h.from(gateway(), &answer(&out, 180, "b")).await;
    h.from(gateway(), &answer(&out, 200, "b")).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [180, 200]);
    let ok = sent
        .into_iter()
        .find(|(_, m)| m.code() == Some(200))
        .unwrap()
        .1;
    (out, ok)
}

#[tokio::test]
async fn the_outbound_leg_shows_x_and_carries_nothing_of_the_caller() {
    let mut h = Harness::new(None).await;
    // Not hex: no random token of ours can contain it by chance.
    h.from(caller(), &invite("the-callers-leg")).await;
    let sent = h.take();
    let out = Harness::request_to(&sent, gateway(), &Method::Invite);
    let text = String::from_utf8_lossy(&out.body).into_owned();
    let head = format!("{out:?}");
    assert!(out.from().contains(&format!("+{X}")));
    assert!(out.uri().contains(&format!("+{B}")));
    for needle in [&A.to_string()[2..], "the-callers-leg"] {
        assert!(!head.contains(needle), "{needle} crossed: {head}");
    }
    // The media is anchored: the callee is offered our address and port,
    // none of the caller's description.
    assert!(text.contains("m=audio 20006 RTP/AVP 0"), "{text}");
    assert!(text.contains("o=maskline "), "{text}");
    for leak in ["10.0.0.7", "40000", "alice", "Alice"] {
        assert!(!text.contains(leak), "{leak} crossed: {text}");
    }
    assert_eq!(out.header(Name::MaxForwards), Some("69"));
}

#[tokio::test]
async fn a_hang_up_ends_both_legs_writes_one_cdr_and_leaves_nothing_behind() {
    let mut h = Harness::new(None).await;
    let (out, ok) = answered(&mut h, "c2").await;
    h.from(caller(), &from_caller(&ok, "ACK", 1, "ack")).await;
    let sent = h.take();
    let ack = Harness::request_to(&sent, gateway(), &Method::Ack);
    assert_eq!(ack.call_id(), out.call_id());
    h.from(caller(), &from_caller(&ok, "BYE", 2, "bye")).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [200]);
    let bye = Harness::request_to(&sent, gateway(), &Method::Bye);
    h.from(gateway(), &answer(&bye, 200, "b")).await;
    // Transactions linger for their retransmission timers, then go.
    h.advance(Duration::from_secs(64)).await;
    assert_eq!(h.core.ep.held(), (0, 0, 0));
    assert!(h.core.calls.is_empty());
    let cdrs = h.cdrs().await;
    assert_eq!(cdrs.len(), 1);
    assert_eq!(cdrs[0].released_by, ReleasedBy::Caller);
    assert_eq!(cdrs[0].release_reason, ReleaseReason::Normal);
    assert!(cdrs[0].answered_at.is_some());
}

#[tokio::test]
async fn an_unanswered_call_is_cancelled_when_the_clock_reaches_the_ring_timeout() {
    let mut h = Harness::new(None).await;
    h.from(caller(), &invite("c3")).await;
    let out = Harness::request_to(&h.take(), gateway(), &Method::Invite);
    h.from(gateway(), &answer(&out, 180, "b")).await;
    h.take();
    h.advance(RING - Duration::from_millis(1)).await;
    assert!(
        Harness::codes_to(&h.take(), caller()).is_empty(),
        "nothing before the ring timeout"
    );
    h.advance(Duration::from_millis(1)).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [480]);
    let cancel = Harness::request_to(&sent, gateway(), &Method::Cancel);
    assert_eq!(cancel.branch(), out.branch());
    h.from(gateway(), &answer(&cancel, 200, "b")).await;
    h.from(gateway(), &answer(&out, 487, "b")).await;
    let sent = h.take();
    Harness::request_to(&sent, gateway(), &Method::Ack);
    let cdrs = h.cdrs().await;
    assert_eq!(cdrs[0].release_reason, ReleaseReason::NoAnswer);
    assert_eq!(cdrs[0].final_status, 480);
}

#[tokio::test]
async fn a_cancel_before_any_provisional_response_waits_for_one() {
    let mut h = Harness::new(None).await;
    h.from(caller(), &invite("c4")).await;
    let out = Harness::request_to(&h.take(), gateway(), &Method::Invite);
    let cancel = cancel_of("c4");
    h.from(caller(), &cancel).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [200, 487]);
    // §9.1: no CANCEL before the callee has answered provisionally.
    assert!(sent.iter().all(|(to, _)| *to != gateway()));
    h.from(gateway(), &answer(&out, 180, "b")).await;
    let sent = h.take();
    Harness::request_to(&sent, gateway(), &Method::Cancel);
    assert!(Harness::codes_to(&sent, caller()).is_empty());
}

#[tokio::test]
async fn max_call_seconds_ends_both_legs_on_the_fake_clock() {
    let mut h = Harness::new(Some(600)).await;
    let (_, ok) = answered(&mut h, "c5").await;
    h.from(caller(), &from_caller(&ok, "ACK", 1, "ack")).await;
    h.take();
    // Waited for in steps of at most five minutes.
    h.advance(Duration::from_secs(300)).await;
    h.advance(Duration::from_secs(299)).await;
    assert!(h.take().is_empty());
    h.advance(Duration::from_secs(1)).await;
    let sent = h.take();
    Harness::request_to(&sent, caller(), &Method::Bye);
    Harness::request_to(&sent, gateway(), &Method::Bye);
    let cdrs = h.cdrs().await;
    assert_eq!(cdrs[0].release_reason, ReleaseReason::MaxDuration);
}

#[tokio::test]
async fn a_silent_gateway_gives_the_caller_408_at_timer_b() {
    let mut h = Harness::new(None).await;
    h.from(caller(), &invite("c6")).await;
    h.take();
    // Timer A retransmits the INVITE while Timer B runs.
    h.advance(Duration::from_millis(500)).await;
    Harness::request_to(&h.take(), gateway(), &Method::Invite);
    for _ in 0..7 {
        h.advance(Duration::from_secs(5)).await;
    }
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [408]);
    let cdrs = h.cdrs().await;
    assert_eq!(cdrs[0].release_reason, ReleaseReason::GatewayTimeout);
}

#[tokio::test]
async fn an_answer_the_caller_never_acknowledges_ends_the_call() {
    let mut h = Harness::new(None).await;
    answered(&mut h, "c7").await;
    // Timer G retransmits the 200 until Timer H (64*T1) gives up.
    h.advance(Duration::from_millis(500)).await;
    assert_eq!(Harness::codes_to(&h.take(), caller()), [200]);
    for _ in 0..8 {
        h.advance(Duration::from_secs(4)).await;
    }
    let sent = h.take();
    Harness::request_to(&sent, caller(), &Method::Bye);
    Harness::request_to(&sent, gateway(), &Method::Bye);
    let cdrs = h.cdrs().await;
    assert_eq!(cdrs[0].release_reason, ReleaseReason::PeerTimeout);
}

#[tokio::test]
async fn a_progress_answer_waits_until_its_event_is_durable() {
    let mut h = Harness::new(None).await;
    h.core.handle_bytes(&invite("c8"), udp(caller()), h.now);
    let out = Harness::request_to(&h.take(), gateway(), &Method::Invite);
    // call.started is not durable yet: the 180 is held back.
    h.core
        .handle_bytes(&answer(&out, 180, "b"), udp(gateway()), h.now);
    assert!(Harness::codes_to(&h.take(), caller()).is_empty());
    h.effects().await;
    assert_eq!(Harness::codes_to(&h.take(), caller()), [180]);
}

const CALLEE_SDP: &str = "v=0\r\no=bob 7 7 IN IP4 10.0.0.9\r\ns=Bob's phone\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// A response to `req` carrying `sdp`.
fn answer_with(req: &Message, code: u16, tag: &str, sdp: &str) -> Vec<u8> {
    let mut b = response_to(req, code, Some(tag));
    b.header("Contact", "<sip:peer@127.0.0.1:5080>");
    b.header("Content-Type", "application/sdp");
    b.finish(sdp.as_bytes())
}

fn body(m: &Message) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

impl Harness {
    fn asked(&self) -> Vec<String> {
        std::mem::take(&mut *self.plane.asked.lock().unwrap())
    }
}

#[tokio::test]
async fn each_leg_hears_only_our_sdp_and_the_relay_learns_both_parties() {
    let mut h = Harness::new(None).await;
    h.from(caller(), &invite("m1")).await;
    let out = Harness::request_to(&h.take(), gateway(), &Method::Invite);
    h.from(gateway(), &answer_with(&out, 200, "b", CALLEE_SDP))
        .await;
    let sent = h.take();
    let ok = sent
        .iter()
        .find(|(to, m)| *to == caller() && m.code() == Some(200))
        .map(|(_, m)| m.clone())
        .unwrap();
    let text = body(&ok);
    assert!(text.contains("m=audio 20004 RTP/AVP 0"), "{text}");
    assert!(text.contains("c=IN IP4 127.0.0.1"), "{text}");
    for leak in ["10.0.0.9", "50000", "bob", "Bob"] {
        assert!(!text.contains(leak), "{leak} reached the caller: {text}");
    }
    assert_eq!(
        h.asked(),
        [
            "1: leg A Some(10.0.0.7:40000)",
            "1: leg B Some(10.0.0.9:50000)",
            "1: bridge true",
            "1: watch"
        ]
    );
}

#[tokio::test]
async fn an_offer_without_a_common_codec_gets_488_and_nothing_goes_out() {
    let mut h = Harness::new(None).await;
    let g729 = invite("m2")
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .replace(
            "RTP/AVP 0\r\na=rtpmap:0 PCMU/8000",
            "RTP/AVP 18\r\na=rtpmap:18 G729/8000",
        );
    h.from(caller(), g729.as_bytes()).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [488]);
    assert!(sent.iter().all(|(to, _)| *to != gateway()));
    assert_eq!(h.asked(), ["1: close"]);
    let cdrs = h.cdrs().await;
    assert_eq!(cdrs[0].final_status, 488);
}

#[tokio::test]
async fn silence_on_an_answered_call_ends_it_with_media_timeout() {
    let mut h = Harness::new(None).await;
    let (_, ok) = answered(&mut h, "m3").await;
    h.from(caller(), &from_caller(&ok, "ACK", 1, "ack")).await;
    h.take();
    h.core.handle_media(
        MediaEvent::Session(SessionId(1), SessionEvent::Silent(Leg::B)),
        h.now,
    );
    h.effects().await;
    let sent = h.take();
    Harness::request_to(&sent, caller(), &Method::Bye);
    Harness::request_to(&sent, gateway(), &Method::Bye);
    assert!(h.asked().contains(&"1: close".to_owned()));
    let cdrs = h.cdrs().await;
    assert_eq!(cdrs[0].release_reason, ReleaseReason::MediaTimeout);
}

#[tokio::test]
async fn an_offer_in_the_answer_is_answered_in_the_ack_on_each_leg() {
    let mut h = Harness::new(None).await;
    // A delayed offer: the INVITE has no SDP.
    let bare = String::from_utf8(invite("m4"))
        .unwrap()
        .replace("Content-Type: application/sdp\r\n", "")
        .replace(
            &format!("Content-Length: {}\r\n\r\n{SDP}", SDP.len()),
            "Content-Length: 0\r\n\r\n",
        );
    h.from(caller(), bare.as_bytes()).await;
    let out = Harness::request_to(&h.take(), gateway(), &Method::Invite);
    assert!(out.body.is_empty());
    h.from(gateway(), &answer_with(&out, 200, "b", CALLEE_SDP))
        .await;
    let ok = h
        .take()
        .into_iter()
        .find(|(to, m)| *to == caller() && m.code() == Some(200))
        .unwrap()
        .1;
    assert!(body(&ok).contains("m=audio 20004"), "{}", body(&ok));
    let mut ack = String::from_utf8(from_caller(&ok, "ACK", 1, "ack")).unwrap();
    ack = ack.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        ),
    );
    h.from(caller(), ack.as_bytes()).await;
    let ack_b = Harness::request_to(&h.take(), gateway(), &Method::Ack);
    let text = body(&ack_b);
    assert!(text.contains("m=audio 20006 RTP/AVP 0"), "{text}");
    assert!(!text.contains("10.0.0.7"), "{text}");
    assert!(
        h.asked()
            .contains(&"1: leg A Some(10.0.0.7:40000)".to_owned())
    );
}

impl Harness {
    async fn media_event(&mut self, event: SessionEvent) {
        self.core
            .handle_media(MediaEvent::Session(SessionId(1), event), self.now);
        self.effects().await;
    }

    async fn key(&mut self, digits: &str) {
        for c in digits.chars() {
            self.media_event(SessionEvent::Digit(Leg::A, Digit::from_char(c).unwrap()))
                .await;
        }
    }
}

#[tokio::test]
async fn a_shared_number_asks_for_the_extension_and_connects_in_the_same_dialog() {
    let (mut h, extension) = Harness::with_binding(Mode::Axe, None).await;
    let extension = extension.unwrap().to_string();
    h.from(caller(), &invite("p1")).await;
    let sent = h.take();
    let early = sent
        .iter()
        .find(|(to, m)| *to == caller() && m.code() == Some(183))
        .map(|(_, m)| m.clone())
        .expect("183 with early media");
    assert!(
        body(&early).contains("m=audio 20004 RTP/AVP 0"),
        "{}",
        body(&early)
    );
    assert!(sent.iter().all(|(to, _)| *to != gateway()));
    assert_eq!(
        h.asked(),
        [
            "1: leg A Some(10.0.0.7:40000)",
            "1: collect A true",
            "1: play A"
        ]
    );
    // A wrong extension: the caller hears invalid_extension and may retry.
    h.media_event(SessionEvent::PromptDone(Leg::A)).await;
    h.key("9999").await;
    assert_eq!(h.asked(), ["1: play A"]);
    assert!(h.take().is_empty());
    // Digits barge in on the prompt; the right extension places the call.
    h.key(&extension).await;
    let sent = h.take();
    let out = Harness::request_to(&sent, gateway(), &Method::Invite);
    assert!(out.uri().contains(&format!("+{B}")), "{out:?}");
    assert!(
        body(&out).contains("m=audio 20006 RTP/AVP 0"),
        "{}",
        body(&out)
    );
    h.from(gateway(), &answer_with(&out, 200, "b", CALLEE_SDP))
        .await;
    let ok = h
        .take()
        .into_iter()
        .find(|(to, m)| *to == caller() && m.code() == Some(200))
        .unwrap()
        .1;
    assert_eq!(
        ok.to_tag(),
        early.to_tag(),
        "the early dialog is the call's"
    );
    let asked = h.asked();
    assert!(asked.contains(&"1: bridge true".to_owned()), "{asked:?}");
}

#[tokio::test]
async fn three_wrong_extensions_refuse_the_call_after_the_prompts() {
    let (mut h, _) = Harness::with_binding(Mode::Axe, None).await;
    h.from(caller(), &invite("p2")).await;
    let early_tag = h
        .take()
        .into_iter()
        .find(|(_, m)| m.code() == Some(183))
        .and_then(|(_, m)| m.to_tag().map(str::to_owned))
        .unwrap();
    for _ in 0..2 {
        h.key("0000").await;
        h.media_event(SessionEvent::PromptDone(Leg::A)).await;
    }
    assert!(Harness::codes_to(&h.take(), caller()).is_empty());
    // The third try is the caller's silence: the digit timeout submits
    // nothing, which is no extension.
    h.advance(Duration::from_secs(5)).await;
    let sent = h.take();
    let refusal = sent
        .iter()
        .find(|(to, m)| *to == caller() && m.code().is_some_and(|c| c >= 300))
        .map(|(_, m)| m.clone())
        .unwrap();
    assert_eq!(refusal.code(), Some(404));
    assert_eq!(refusal.to_tag(), Some(early_tag.as_str()));
    assert!(h.asked().contains(&"1: close".to_owned()));
    let cdrs = h.cdrs().await;
    assert_eq!(cdrs.len(), 1);
    assert_eq!(cdrs[0].release_reason, ReleaseReason::Refused);
}

#[tokio::test]
async fn an_expired_binding_is_announced_before_its_410() {
    let mut h = Harness::new(None).await;
    h.engine.unbind(h.tenant, h.binding).await.unwrap();
    h.from(caller(), &invite("p3")).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [183]);
    assert_eq!(h.asked(), ["1: leg A Some(10.0.0.7:40000)", "1: play A"]);
    h.media_event(SessionEvent::PromptDone(Leg::A)).await;
    let sent = h.take();
    let refusal = sent
        .iter()
        .find(|(_, m)| m.code() == Some(410))
        .unwrap()
        .1
        .clone();
    let text = format!("{refusal:?}");
    assert!(text.contains("Reason: Q.850;cause=22"), "{text}");
    assert!(text.contains("Reason: SIP;cause=410"), "{text}");
}

#[tokio::test]
async fn pre_connect_plays_to_the_caller_while_the_callee_is_called() {
    let (mut h, _) = Harness::with_controls(
        Mode::Axb,
        Controls {
            pre_connect: true,
            ..Controls::default()
        },
    )
    .await;
    h.from(caller(), &invite("pc")).await;
    let sent = h.take();
    let early = sent
        .iter()
        .find(|(to, m)| *to == caller() && m.code() == Some(183))
        .map(|(_, m)| m.clone())
        .expect("183 with early media");
    assert!(body(&early).contains("m=audio 20004"), "{}", body(&early));
    // The callee is called at once, with our offer.
    let out = Harness::request_to(&sent, gateway(), &Method::Invite);
    assert!(
        body(&out).contains("m=audio 20006 RTP/AVP 0"),
        "{}",
        body(&out)
    );
    assert!(h.asked().contains(&"1: play A".to_owned()));
    h.from(gateway(), &answer_with(&out, 200, "b", CALLEE_SDP))
        .await;
    let ok = h
        .take()
        .into_iter()
        .find(|(to, m)| *to == caller() && m.code() == Some(200))
        .unwrap()
        .1;
    assert_eq!(ok.to_tag(), early.to_tag());
}

#[tokio::test]
async fn the_callee_hears_its_whisper_and_both_the_last_minute_warning() {
    let (mut h, _) = Harness::with_controls(
        Mode::Axb,
        Controls {
            max_call_seconds: Some(600),
            callee_whisper: true,
            warn_before_end_seconds: Some(60),
            ..Controls::default()
        },
    )
    .await;
    let (_, ok) = answered(&mut h, "lm").await;
    h.from(caller(), &from_caller(&ok, "ACK", 1, "ack")).await;
    h.take();
    let asked = h.asked();
    assert!(
        asked.ends_with(&["1: bridge false".to_owned(), "1: play B".to_owned()]),
        "{asked:?}"
    );
    assert!(!asked.contains(&"1: play A".to_owned()), "{asked:?}");
    // Bridged once the whisper is over.
    h.media_event(SessionEvent::PromptDone(Leg::B)).await;
    assert_eq!(h.asked(), ["1: bridge true"]);
    h.advance(Duration::from_secs(539)).await;
    assert!(h.asked().is_empty());
    h.advance(Duration::from_secs(1)).await;
    assert_eq!(h.asked(), ["1: play A", "1: play B"]);
    // The call still ends at max_call_seconds.
    h.advance(Duration::from_secs(60)).await;
    Harness::request_to(&h.take(), gateway(), &Method::Bye);
}

#[tokio::test]
async fn a_cancel_that_crosses_a_held_answer_gets_487_and_the_callee_a_bye() {
    let mut h = Harness::new(None).await;
    h.from(caller(), &invite("race")).await;
    let out = Harness::request_to(&h.take(), gateway(), &Method::Invite);
    // The callee answers; the 200 waits for call.answered to be durable
    // (no effects run), and the caller cancels meanwhile.
    h.core.handle_bytes(
        &answer_with(&out, 200, "b", CALLEE_SDP),
        udp(gateway()),
        h.now,
    );
    let cancel = cancel_of("race");
    h.core.handle_bytes(&cancel, udp(caller()), h.now);
    h.effects().await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [200, 487]);
    Harness::request_to(&sent, gateway(), &Method::Ack);
    Harness::request_to(&sent, gateway(), &Method::Bye);
    let cdrs = h.cdrs().await;
    assert_eq!(cdrs[0].release_reason, ReleaseReason::Cancelled);
    assert_eq!(cdrs[0].final_status, 487);
}

#[tokio::test]
async fn beyond_the_dialog_limit_a_new_invite_gets_503_and_a_bye_still_passes() {
    let mut h = Harness::new(None).await;
    let (_, ok) = answered(&mut h, "first").await;
    h.from(caller(), &from_caller(&ok, "ACK", 1, "ack1")).await;
    let (_, _, dialogs) = h.core.ep.held();
    assert!(dialogs > 0);
    h.core.ep.set_limits(crate::Limits {
        max_transactions: 1_000,
        max_dialogs: dialogs,
    });
    h.take();
    h.from(caller(), &invite("second")).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [503]);
    let refusal = sent.iter().find(|(_, m)| m.code() == Some(503)).unwrap();
    assert!(
        format!("{:?}", refusal.1).contains("Retry-After: 5"),
        "{:?}",
        refusal.1
    );
    assert!(
        !sent
            .iter()
            .any(|(to, m)| *to == gateway() && m.method() == Some(&Method::Invite)),
        "a refused INVITE went on"
    );
    // Within the dialog, a BYE is served: it frees what is held.
    h.from(caller(), &from_caller(&ok, "BYE", 2, "bye1")).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [200]);
    let bye = Harness::request_to(&sent, gateway(), &Method::Bye);
    h.from(gateway(), &answer(&bye, 200, "b")).await;
    h.advance(Duration::from_secs(64)).await;
    h.take();
    h.from(caller(), &invite("third")).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [100], "room again");
}

#[tokio::test]
async fn beyond_the_transaction_limit_new_requests_get_503() {
    let mut h = Harness::new(None).await;
    h.core.ep.set_limits(crate::Limits {
        max_transactions: 2,
        max_dialogs: 1_000,
    });
    // One INVITE: a server and a client transaction.
    h.from(caller(), &invite("one")).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [100]);
    h.from(caller(), &invite("two")).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [503]);
    // A retransmission of the first is still its transaction's.
    h.from(caller(), &invite("one")).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [100]);
    // The refused INVITE is on record, under the binding it would reach.
    let cdrs = h.cdrs().await;
    let refused: Vec<_> = cdrs.iter().filter(|c| c.final_status == 503).collect();
    assert_eq!(refused.len(), 1, "{cdrs:?}");
    assert_eq!(refused[0].tenant, Some(h.tenant));
    assert_eq!(refused[0].binding, Some(h.binding));
    assert_eq!(refused[0].release_reason, ReleaseReason::Failed);
    assert_eq!(refused[0].release_cause(), 34);
}

#[tokio::test]
async fn a_merged_invite_is_refused_with_482_and_recorded() {
    let mut h = Harness::new(None).await;
    h.from(caller(), &invite("merge")).await;
    h.take();
    // The same request (From tag, Call-ID, CSeq) by another path.
    let again = String::from_utf8(invite("merge"))
        .unwrap()
        .replace("branch=z9hG4bK-merge", "branch=z9hG4bK-other-path");
    h.from(caller(), again.as_bytes()).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [482]);
    let cdrs = h.cdrs().await;
    assert!(
        cdrs.iter()
            .any(|c| c.final_status == 482 && c.tenant == Some(h.tenant)),
        "{cdrs:?}"
    );
}

#[tokio::test]
async fn a_response_with_the_right_branch_but_another_call_id_is_ignored() {
    let mut h = Harness::new(None).await;
    h.from(caller(), &invite("real")).await;
    let sent = h.take();
    let out = Harness::request_to(&sent, gateway(), &Method::Invite);
    // Forged: our branch and CSeq, a Call-ID of the forger's choosing.
    let forged = String::from_utf8(answer(&out, 200, "forger"))
        .unwrap()
        .replace(out.call_id(), "forged-call-id");
    h.from(gateway(), forged.as_bytes()).await;
    let sent = h.take();
    assert!(
        Harness::codes_to(&sent, caller()).is_empty(),
        "the forged answer was relayed"
    );
    // The real one still is.
    h.from(gateway(), &answer(&out, 200, "b")).await;
    let sent = h.take();
    assert_eq!(Harness::codes_to(&sent, caller()), [200]);
}

#[tokio::test]
async fn a_call_without_a_limit_ends_after_an_hour() {
    let mut h = Harness::new(None).await;
    let (_, ok) = answered(&mut h, "long").await;
    h.from(caller(), &from_caller(&ok, "ACK", 1, "ack-long"))
        .await;
    h.take();
    // Just under the hour: still up (moved in steps, as a clock would).
    for _ in 0..59 {
        h.advance(Duration::from_secs(60)).await;
    }
    h.advance(Duration::from_secs(59)).await;
    let sent = h.take();
    assert!(
        !sent.iter().any(|(_, m)| m.method() == Some(&Method::Bye)),
        "ended before the hour"
    );
    h.advance(Duration::from_secs(2)).await;
    let sent = h.take();
    let byes = sent
        .iter()
        .filter(|(_, m)| m.method() == Some(&Method::Bye))
        .count();
    assert_eq!(byes, 2, "both legs get a BYE at the hour");
}
