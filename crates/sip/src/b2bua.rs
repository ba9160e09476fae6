//! The back-to-back user agent.
//!
//! One task owns everything: transactions, dialogs, calls and timers, so
//! no lock is taken on the call path. Each inbound INVITE is decided by the
//! engine from memory; on `connect` a new INVITE is built from scratch for
//! the outbound leg (fresh Call-ID, tags and branch, From = X; of the
//! caller's INVITE only what `message::crossing_body` lets through), and
//! from then on every message on one leg is answered by a message built
//! for the other.
//!
//! In-dialog requests are sent to the leg's signalling peer (the trunk or
//! gateway the leg runs over), with the dialog's Request-URI and Route set:
//! trunks are configured peers, and this keeps a peer's Contact from
//! steering Maskline's traffic anywhere else.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use maskline_core::{
    CallId, CallRecord, Channel, Connect, Decision, EventType, Inbound, Number, Prompt, Refusal,
    RejectReason, ReleaseReason, ReleasedBy,
};
use maskline_engine::Engine;
use maskline_engine::events_crate::payload::rfc3339_millis;
use maskline_engine::events_crate::{InterceptRequest, Interceptor, Verdict, unix_ms};
use maskline_engine::store::Intercept;
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::message::{
    self, Body, Builder, Message, Method, Name, crossing_body, response_to, uri_of, uri_user,
};
use crate::transaction::{
    ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, State, Step, Timer, Timers,
};
use crate::transport::{self, ConnId, Connections, NetEvent, Peer};
use crate::{Config, Error, Transport};

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO";
/// How long calls may take to close after the grace period has ended them.
const CLOSE_AFTER_GRACE: Duration = Duration::from_secs(2);
/// The longest a timer waits in the heap: limits longer than this are
/// re-armed, so the heap never holds stale timers for longer.
const MAX_TIMER_STEP: Duration = Duration::from_secs(300);
/// Messages handled per wake-up before timers get their turn.
const BATCH: usize = 64;

/// A bound SIP server, ready to [`run`](SipServer::run).
pub struct SipServer {
    cfg: Config,
    engine: Arc<Engine>,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    interceptor: Interceptor,
}

impl SipServer {
    /// Binds UDP and TCP on `cfg.listen` (port 0 picks one port for both).
    pub fn bind(mut cfg: Config, engine: Arc<Engine>) -> Result<SipServer, Error> {
        let udp = transport::bind_udp(cfg.listen)?;
        let local = udp.local_addr().map_err(|source| Error::Bind {
            transport: "UDP",
            addr: cfg.listen,
            source,
        })?;
        let tcp = transport::bind_tcp(local)?;
        if cfg.listen.port() == 0 {
            cfg.listen = local;
            if cfg.advertise.ends_with(":0") {
                cfg.advertise = format!("{}:{}", local.ip(), local.port());
            }
        }
        Ok(SipServer {
            cfg,
            engine,
            udp,
            tcp,
            interceptor: Interceptor::new().map_err(Error::Http)?,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.cfg.listen
    }

    /// Runs [`run`](SipServer::run) on a thread of its own with a
    /// single-threaded runtime: the call path then never waits for a
    /// wake-up handed across threads, nor behind HTTP work.
    ///
    /// The receiver resolves when the thread ends, however it ends, so the
    /// process can stop rather than serve HTTP without voice.
    pub fn spawn(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> std::io::Result<(
        std::thread::JoinHandle<()>,
        tokio::sync::oneshot::Receiver<()>,
    )> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("maskline-sip".into())
            .spawn(move || {
                let _done = done_tx;
                runtime.block_on(self.run(shutdown, grace));
            })?;
        Ok((handle, done_rx))
    }

    /// Serves until `shutdown` resolves, then refuses new INVITEs with 503,
    /// lets calls in progress finish for up to `grace`, ends the rest, and
    /// returns once every CDR is durable.
    pub async fn run(self, shutdown: impl Future<Output = ()>, grace: Duration) {
        let (net_tx, mut net_rx) = mpsc::unbounded_channel();
        let (cdr_tx, cdr_rx) = mpsc::unbounded_channel();
        let cdr_task = tokio::spawn(write_cdrs(cdr_rx));
        let (resume_tx, mut resume_rx) = mpsc::unbounded_channel();
        let (durable_tx, durable_rx) = mpsc::unbounded_channel();
        let durable_task = tokio::spawn(await_durable(durable_rx, resume_tx.clone()));
        let udp = match UdpSocket::from_std(self.udp) {
            Ok(udp) => Arc::new(udp),
            Err(e) => {
                tracing::error!(error = %e, "cannot register the SIP UDP socket");
                return;
            }
        };
        let tcp = match tokio::net::TcpListener::from_std(self.tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::error!(error = %e, "cannot register the SIP TCP listener");
                return;
            }
        };
        // TCP from anyone but a trusted trunk or the gateway is closed at
        // once, so strangers cannot hold connections (and descriptors).
        let trusted = self.cfg.trusted.clone();
        let gateway = self.cfg.outbound.map(|o| o.addr.ip());
        let allow = move |ip: std::net::IpAddr| {
            gateway == Some(ip) || trusted.iter().any(|c| c.contains(ip))
        };
        let accept = tokio::spawn(transport::accept_loop(
            tcp,
            net_tx.clone(),
            Arc::default(),
            allow,
        ));
        let mut core = Core {
            engine: self.engine,
            t: self.cfg.timers,
            cfg: self.cfg,
            net: Net {
                udp: udp.clone(),
                conns: Connections::default(),
                events: net_tx,
            },
            timers: TimerQueue::default(),
            next_id: 0,
            server: HashMap::new(),
            server_keys: HashMap::new(),
            client: HashMap::new(),
            client_keys: HashMap::new(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            invites: HashMap::new(),
            cdrs: cdr_tx,
            durable: durable_tx,
            resume: resume_tx,
            interceptor: self.interceptor,
            intercepting: HashMap::new(),
            draining: false,
            hard_stop: None,
            received_at: Instant::now(),
        };
        let mut buf = vec![0u8; 65_536];
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        tokio::pin!(shutdown);
        let mut shutdown_seen = false;
        loop {
            let now = Instant::now();
            guarded(&mut core, |core| core.fire_due(now));
            if core.draining
                && ((core.calls.is_empty() && core.intercepting.is_empty())
                    || core.hard_stop.is_some_and(|at| now >= at))
            {
                guarded(&mut core, Core::refuse_intercepting);
                break;
            }
            let next = core
                .timers
                .next()
                .unwrap_or(now + Duration::from_secs(3600));
            let next = tokio::time::Instant::from_std(next);
            if sleep.deadline() != next {
                sleep.as_mut().reset(next);
            }
            tokio::select! {
                ready = udp.readable() => {
                    if ready.is_err() {
                        continue;
                    }
                    for _ in 0..BATCH {
                        match udp.try_recv_from(&mut buf) {
                            Ok((n, addr)) => {
                                let peer = Peer { transport: Transport::Udp, addr, conn: None };
                                let bytes = &buf[..n];
                                guarded(&mut core, |core| core.on_bytes(bytes, peer));
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                // ICMP errors surface here on some systems.
                                tracing::debug!(error = %e, "UDP receive failed");
                                break;
                            }
                        }
                    }
                }
                Some(event) = net_rx.recv() => {
                    guarded(&mut core, |core| core.on_net(event));
                    for _ in 1..BATCH {
                        match net_rx.try_recv() {
                            Ok(event) => guarded(&mut core, |core| core.on_net(event)),
                            Err(_) => break,
                        }
                    }
                }
                Some(resume) = resume_rx.recv() => {
                    guarded(&mut core, |core| core.on_resume(resume));
                }
                () = &mut sleep => {}
                () = &mut shutdown, if !shutdown_seen => {
                    shutdown_seen = true;
                    core.start_draining(grace);
                }
            }
        }
        accept.abort();
        let calls_left = core.calls.len();
        if calls_left > 0 {
            tracing::warn!(calls_left, "SIP stopped with calls still closing");
        }
        drop(core);
        durable_task.abort();
        let _ = cdr_task.await;
    }
}

/// What asynchronous work hands back to the SIP task.
enum Resume {
    /// The oldest progress event of this call not yet durable now is.
    Durable(Id),
    /// The tenant's intercept callback decided about this INVITE.
    Verdict(Id, Verdict),
}

/// Awaits progress-event writes in queue order (the store applies them in
/// that order) and tells the SIP task each time one is durable.
async fn await_durable(
    mut acks: mpsc::UnboundedReceiver<(maskline_store::WriteAck, Id)>,
    resume: mpsc::UnboundedSender<Resume>,
) {
    while let Some((ack, call)) = acks.recv().await {
        if let Err(e) = ack.await {
            // The relay it held goes on: a call is not failed for its
            // event (the CDR is written separately).
            metrics::counter!("maskline_event_write_failures_total").increment(1);
            tracing::error!(error = %e, "a call event could not be written");
        }
        let _ = resume.send(Resume::Durable(call));
    }
}

/// Runs one handler; a panic in it (a bug) is logged and counted, and the
/// SIP thread goes on serving every other call rather than dying with it.
fn guarded(core: &mut Core, f: impl FnOnce(&mut Core)) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(core)));
    if outcome.is_err() {
        metrics::counter!("maskline_sip_handler_panics_total").increment(1);
        // The panic's message is withheld: it may quote a number.
        tracing::error!("a SIP handler panicked; the message was dropped");
    }
}

/// Waits for each CDR write in queue order (the store applies them in that
/// order) and reports failures.
async fn write_cdrs(mut acks: mpsc::UnboundedReceiver<maskline_store::WriteAck>) {
    while let Some(ack) = acks.recv().await {
        if let Err(e) = ack.await {
            metrics::counter!("maskline_cdr_write_failures_total").increment(1);
            tracing::error!(error = %e, "a CDR could not be written");
        }
    }
}

type Id = u64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    fn released_by(self) -> ReleasedBy {
        match self {
            Side::A => ReleasedBy::Caller,
            Side::B => ReleasedBy::Callee,
        }
    }
}

/// One side of a call, as a dialog seen from Maskline.
struct Leg {
    call_id: String,
    local_tag: String,
    /// Our From/To value, tag included.
    local: String,
    /// Theirs, tag included once known.
    remote: String,
    remote_tag: Option<String>,
    /// The remote target (their Contact URI): the Request-URI we use.
    target: String,
    routes: Vec<String>,
    cseq: u32,
    peer: Peer,
    /// Our Contact header value on this leg.
    contact: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Early,
    Answered,
    Ended,
}

/// A 2xx to an INVITE relayed to one side, waiting for that side's ACK.
#[derive(Clone, Copy)]
struct PendingAck {
    cseq: u32,
    server: Id,
    client: Id,
    out_cseq: u32,
}

struct Call {
    cdr: CallRecord,
    phase: Phase,
    legs: [Leg; 2],
    a_invite: Id,
    b_invite: Id,
    b_responded: bool,
    cancel_b: bool,
    max_call_seconds: Option<u32>,
    /// When an answered call must end (from `max_call_seconds`).
    deadline: Option<Instant>,
    /// The caller's and callee's digits, kept out of relayed bodies.
    numbers: [String; 2],
    acks: [Option<PendingAck>; 2],
    /// Client transactions that will still report to this call.
    holds: u32,
    /// Progress events recorded, and how many of them are durable: the
    /// caller hears of progress only once its event is (see `relay_held`).
    events_issued: u32,
    events_durable: u32,
    held: VecDeque<Held>,
}

/// A response for the caller waiting for the call's events before it.
struct Held {
    wait_for: u32,
    code: u16,
    body: Option<Body>,
}

/// An INVITE the engine decided to connect, waiting for the tenant's
/// intercept callback.
struct Intercepting {
    connect: Connect,
    cdr: CallRecord,
    max_forwards: u32,
    started: Instant,
}

impl Call {
    fn scrub(&self) -> [&str; 2] {
        [self.numbers[0].as_str(), self.numbers[1].as_str()]
    }

    fn leg(&self, side: Side) -> &Leg {
        &self.legs[side.index()]
    }

    fn leg_mut(&mut self, side: Side) -> &mut Leg {
        &mut self.legs[side.index()]
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// A's INVITE (server) or the outbound INVITE (client).
    Invite,
    /// A request relayed from the other leg's server transaction; `to` is
    /// the leg this client transaction runs on.
    Relay {
        server: Id,
        to: Side,
    },
    /// Answered here (BYE, CANCEL, refusals).
    Local,
    Bye,
    Cancel,
}

enum ServerMachine {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

struct ServerTx {
    key: String,
    machine: ServerMachine,
    peer: Peer,
    /// Kept until the final response: responses are built from it.
    req: Option<Box<Message>>,
    last: Vec<u8>,
    call: Option<Id>,
    role: Role,
    /// For a relayed request: the client transaction on the other leg.
    relay: Option<Id>,
    /// For an inbound INVITE: its entry in `Core::invites`.
    merge_key: Option<String>,
}

enum ClientMachine {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

/// What an ACK or CANCEL for a client INVITE is built from.
struct ReqBase {
    uri: String,
    via: String,
    /// The branch in `via`, which a CANCEL shares.
    branch: String,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
    routes: Vec<String>,
}

struct ClientTx {
    key: String,
    machine: ClientMachine,
    peer: Peer,
    request: Vec<u8>,
    base: Option<Box<ReqBase>>,
    /// The ACK to re-send on a retransmitted final response.
    ack: Option<Vec<u8>>,
    got_2xx: bool,
    /// A CANCEL was sent for it.
    cancelled: bool,
    /// The TCP connection the request went out on.
    conn: Option<ConnId>,
    call: Id,
    role: Role,
    holds: bool,
}

#[derive(Clone, Copy, Debug)]
enum TimerRef {
    Server(Id, Timer),
    Client(Id, Timer),
    Ring(Id),
    MaxDuration(Id),
    /// A client INVITE still without a final response: Timer C for a
    /// relayed re-INVITE, or 64*T1 after our CANCEL (RFC 3261 §9.1).
    Abandon(Id),
    Grace,
}

struct Due {
    at: Instant,
    seq: u64,
    what: TimerRef,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Due) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Timers are never cancelled: a stale one finds its transaction gone or
/// in another state and does nothing.
#[derive(Default)]
struct TimerQueue {
    heap: BinaryHeap<Due>,
    seq: u64,
}

impl TimerQueue {
    fn arm(&mut self, at: Instant, what: TimerRef) {
        self.seq += 1;
        self.heap.push(Due {
            at,
            seq: self.seq,
            what,
        });
    }

    fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|d| d.at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<TimerRef> {
        if self.heap.peek()?.at <= now {
            return self.heap.pop().map(|d| d.what);
        }
        None
    }
}

struct Net {
    udp: Arc<UdpSocket>,
    conns: Connections,
    events: mpsc::UnboundedSender<NetEvent>,
}

impl Net {
    /// Sends; on TCP, returns the connection used.
    fn send(&mut self, peer: &Peer, bytes: &[u8]) -> Option<ConnId> {
        match peer.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.try_send_to(bytes, peer.addr) {
                    // Retransmission recovers a dropped datagram.
                    tracing::debug!(addr = %peer.addr, error = %e, "UDP send failed");
                }
                None
            }
            Transport::Tcp => {
                let conn = self.conns.send(peer, bytes.to_vec(), &self.events);
                if conn.is_none() {
                    tracing::debug!(addr = %peer.addr, "TCP connection gone; message not sent");
                }
                conn
            }
        }
    }
}

struct Core {
    engine: Arc<Engine>,
    cfg: Config,
    t: Timers,
    net: Net,
    timers: TimerQueue,
    next_id: Id,
    server: HashMap<Id, ServerTx>,
    server_keys: HashMap<String, Id>,
    client: HashMap<Id, ClientTx>,
    client_keys: HashMap<String, Id>,
    calls: HashMap<Id, Call>,
    /// Our local tag on a leg -> the call and the side.
    dialogs: HashMap<String, (Id, Side)>,
    /// Inbound INVITEs in progress by From tag, Call-ID and CSeq.
    invites: HashMap<String, Id>,
    cdrs: mpsc::UnboundedSender<maskline_store::WriteAck>,
    /// Progress-event writes, awaited in order by `await_durable`.
    durable: mpsc::UnboundedSender<(maskline_store::WriteAck, Id)>,
    resume: mpsc::UnboundedSender<Resume>,
    interceptor: Interceptor,
    /// By the INVITE's server transaction.
    intercepting: HashMap<Id, Intercepting>,
    draining: bool,
    hard_stop: Option<Instant>,
    /// When the message being handled arrived (setup delay starts here).
    received_at: Instant,
}

/// Options of a response built for a server transaction.
#[derive(Default)]
struct Resp<'a> {
    to_tag: Option<&'a str>,
    contact: Option<&'a str>,
    record_route: bool,
    headers: &'a [(&'a str, &'a str)],
    body: Option<&'a Body>,
}

fn hex(mut v: u64, out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for b in buf.iter_mut().rev() {
        *b = DIGITS[(v & 15) as usize];
        v >>= 4;
    }
    out.extend(buf.iter().map(|&b| b as char));
}

fn token() -> String {
    let mut s = String::with_capacity(16);
    hex(rand::rng().next_u64(), &mut s);
    s
}

fn is_magic(branch: &str) -> bool {
    branch.starts_with("z9hG4bK")
}

/// §17.2.3: the branch, sent-by and method (ACK counts as INVITE); for a
/// pre-RFC 3261 peer without the magic cookie, the request's identity.
fn server_key(req: &Message, method: &Method) -> String {
    let method = match method {
        Method::Ack => "INVITE",
        m => m.as_str(),
    };
    if is_magic(req.branch()) {
        format!("{}|{}|{}", req.branch(), req.sent_by(), method)
    } else {
        format!(
            "{}|{}|{}|{}|{}",
            req.call_id(),
            req.from_tag().unwrap_or(""),
            req.cseq,
            req.sent_by(),
            method
        )
    }
}

fn merge_key(req: &Message) -> String {
    format!(
        "{}|{}|{}",
        req.from_tag().unwrap_or(""),
        req.call_id(),
        req.cseq
    )
}

fn client_key(branch: &str, method: &Method) -> String {
    format!("{branch}|{}", method.as_str())
}

/// The caller's number: P-Asserted-Identity when present, else From.
fn caller_user(req: &Message) -> Option<&str> {
    match req.values(Name::PAssertedIdentity).next() {
        Some(pai) => uri_user(uri_of(pai)),
        None => uri_user(uri_of(req.from())),
    }
}

/// A number from a URI user. Trunks send E.164 (`+86…`), which is read
/// directly: the index holds only validated numbers, so a `+digits` string
/// that is not a real number simply matches nothing. Anything else goes
/// through the full parser (national forms of the default region).
fn sip_number(user: &str, region: maskline_core::Region) -> Option<Number> {
    Number::from_e164(user)
        .or_else(|_| Number::parse(user, region))
        .ok()
}

/// A CDR of a call whose outbound leg was never placed: no direction and
/// no callee (as for every refusal).
fn unplaced(mut cdr: CallRecord) -> CallRecord {
    cdr.direction = None;
    cdr.callee = None;
    cdr
}

/// A failure from the outbound leg, as told to the caller.
fn map_failure(code: u16) -> (u16, ReleaseReason) {
    match code {
        486 | 600 => (486, ReleaseReason::Busy),
        603 => (603, ReleaseReason::Declined),
        408 | 480 => (480, ReleaseReason::NoAnswer),
        404 | 410 | 484 | 604 => (404, ReleaseReason::NotFound),
        // The gateway wants credentials or redirects: ours to fix, not the caller's.
        300..=399 | 401 | 407 => (503, ReleaseReason::Failed),
        c => (c, ReleaseReason::Failed),
    }
}

/// A refusal's SIP status and the text of its Reason header.
fn treatment(refusal: Refusal) -> (u16, &'static str) {
    match refusal {
        Refusal::DirectionForbidden => (403, "SIP;cause=403;text=\"direction forbidden\""),
        Refusal::NoBinding => (404, "SIP;cause=404;text=\"no binding\""),
        Refusal::Expired => (410, "SIP;cause=410;text=\"binding expired\""),
        Refusal::NoB => (404, "SIP;cause=404;text=\"no counterpart\""),
        Refusal::ExtensionRequired => (484, "SIP;cause=484;text=\"extension required\""),
        Refusal::InvalidNumber => (404, "SIP;cause=404;text=\"not a phone number\""),
        Refusal::NoGateway => (503, "SIP;cause=503;text=\"no outbound gateway\""),
        Refusal::Intercepted => (403, "SIP;cause=403;text=\"call not allowed\""),
    }
}

/// A bare 400 for a request too broken to parse, when it still has the
/// headers a response needs (§8.2.6.2); otherwise nothing can be sent.
fn bad_request_reply(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes.get(..bytes.len().min(message::MAX_HEAD))?).ok()?;
    let head = text.split("\r\n\r\n").next()?;
    let mut lines = head.lines();
    let first = lines.next()?;
    if first.starts_with("SIP/") || first.starts_with("ACK ") {
        return None;
    }
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        let canonical = match name.to_ascii_lowercase().as_str() {
            "via" | "v" => "Via",
            "from" | "f" => "From",
            "to" | "t" => "To",
            "call-id" | "i" => "Call-ID",
            "cseq" => "CSeq",
            _ => continue,
        };
        wanted.push((canonical, value.trim()));
    }
    for needed in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if !wanted.iter().any(|(n, _)| *n == needed) {
            return None;
        }
    }
    let mut b = Builder::response(400);
    for (name, value) in wanted {
        b.header(name, value);
    }
    Some(b.finish(b""))
}

impl Core {
    fn id(&mut self) -> Id {
        self.next_id += 1;
        self.next_id
    }

    fn trusted(&self, peer: &Peer) -> bool {
        self.cfg.trusted.iter().any(|c| c.contains(peer.addr.ip()))
    }

    /// An in-dialog request from the peer its leg runs over (the gateway,
    /// which need not be a trusted source of new calls, hangs up this way).
    fn sent_by_leg_peer(&self, req: &Message, peer: &Peer) -> bool {
        req.to_tag()
            .and_then(|tag| self.dialogs.get(tag))
            .and_then(|(id, side)| self.calls.get(id).map(|c| c.leg(*side).peer))
            .is_some_and(|leg| leg.addr.ip() == peer.addr.ip())
    }

    fn on_net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Opened { conn, addr, writer } => self.net.conns.opened(conn, addr, writer),
            NetEvent::Message { conn, addr, bytes } => {
                let peer = Peer {
                    transport: Transport::Tcp,
                    addr,
                    conn: Some(conn),
                };
                self.on_bytes(&bytes, peer);
            }
            NetEvent::Closed { conn } => self.on_closed(conn),
        }
    }

    /// A connection is gone: whatever waits on it fails now rather than at
    /// Timer B or F.
    fn on_closed(&mut self, conn: ConnId) {
        self.net.conns.closed(conn);
        let waiting: Vec<Id> = self
            .client
            .iter()
            .filter(|(_, tx)| tx.conn == Some(conn))
            .filter(|(_, tx)| match &tx.machine {
                ClientMachine::Invite(m) => matches!(m.state, State::Calling | State::Proceeding),
                ClientMachine::NonInvite(m) => matches!(m.state, State::Trying | State::Proceeding),
            })
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.abandon(id);
        }
    }

    fn on_bytes(&mut self, bytes: &[u8], peer: Peer) {
        self.received_at = Instant::now();
        match Message::parse(bytes) {
            Ok(msg) if msg.code().is_some() => self.on_response(msg),
            Ok(msg) => self.on_request(msg, peer),
            Err(e) => {
                metrics::counter!("maskline_sip_malformed_total").increment(1);
                tracing::debug!(addr = %peer.addr, error = %e, "malformed SIP message");
                if self.trusted(&peer)
                    && let Some(reply) = bad_request_reply(bytes)
                {
                    self.net.send(&peer, &reply);
                }
            }
        }
    }

    /// Answers without a transaction: for refusals that must stay cheap.
    fn reply_stateless(&mut self, req: &Message, peer: &Peer, code: u16, headers: &[(&str, &str)]) {
        let tag = token();
        let mut b = response_to(
            req,
            code,
            Some(tag.as_str()).filter(|_| req.to_tag().is_none()),
        );
        for (n, v) in headers {
            b.header(n, v);
        }
        let bytes = b.finish(b"");
        self.net.send(peer, &bytes);
    }

    fn on_request(&mut self, req: Message, peer: Peer) {
        let Some(method) = req.method().cloned() else {
            return;
        };
        if !self.trusted(&peer) && !self.sent_by_leg_peer(&req, &peer) {
            // Toll-fraud protection: nothing from an unknown source goes on.
            metrics::counter!("maskline_sip_untrusted_total").increment(1);
            tracing::debug!(addr = %peer.addr, method = method.as_str(), "request from an untrusted source refused");
            if method != Method::Ack {
                self.reply_stateless(&req, &peer, 403, &[]);
            }
            return;
        }
        match method {
            Method::Ack => self.on_ack(req),
            Method::Cancel => self.on_cancel(req, peer),
            _ => {
                let key = server_key(&req, &method);
                if let Some(&sid) = self.server_keys.get(&key) {
                    self.on_retransmission(sid);
                } else if req.to_tag().is_some() {
                    self.on_in_dialog(req, peer, key);
                } else {
                    match method {
                        Method::Invite => self.on_invite(req, peer, key),
                        Method::Options if self.draining => {
                            self.reply_stateless(&req, &peer, 503, &[("Retry-After", "30")])
                        }
                        Method::Options => self.reply_stateless(
                            &req,
                            &peer,
                            200,
                            &[("Allow", ALLOW), ("Accept", "application/sdp")],
                        ),
                        _ => self.reply_stateless(&req, &peer, 405, &[("Allow", ALLOW)]),
                    }
                }
            }
        }
    }

    fn on_retransmission(&mut self, sid: Id) {
        let Some(tx) = self.server.get(&sid) else {
            return;
        };
        let step = match &tx.machine {
            ServerMachine::Invite(m) => m.on_retransmission(),
            ServerMachine::NonInvite(m) => m.on_retransmission(),
        };
        if step.send {
            self.net.send(&tx.peer, &tx.last);
        }
    }

    fn new_server(
        &mut self,
        key: String,
        req: Message,
        peer: Peer,
        call: Option<Id>,
        role: Role,
    ) -> Id {
        let id = self.id();
        let reliable = peer.transport.is_reliable();
        let machine = if req.method() == Some(&Method::Invite) {
            ServerMachine::Invite(ServerInvite::new(reliable, &self.t))
        } else {
            ServerMachine::NonInvite(ServerNonInvite::new(reliable))
        };
        self.server_keys.insert(key.clone(), id);
        self.server.insert(
            id,
            ServerTx {
                key,
                machine,
                peer,
                req: Some(Box::new(req)),
                last: Vec::new(),
                call,
                role,
                relay: None,
                merge_key: None,
            },
        );
        id
    }

    /// Sends a response on a server transaction, if it still takes one.
    fn respond(&mut self, sid: Id, code: u16, opts: Resp<'_>) {
        let t = self.t;
        let Some(tx) = self.server.get_mut(&sid) else {
            return;
        };
        let Some(req) = tx.req.as_deref() else {
            return;
        };
        let mut b = response_to(req, code, opts.to_tag);
        if opts.record_route {
            for rr in req.raw_values(Name::RecordRoute) {
                b.header("Record-Route", rr);
            }
        }
        if let Some(contact) = opts.contact {
            b.header("Contact", contact);
        }
        for (n, v) in opts.headers {
            b.header(n, v);
        }
        let bytes = b.finish_with(opts.body);
        let step = match &mut tx.machine {
            ServerMachine::Invite(m) => m.respond(code, &t),
            ServerMachine::NonInvite(m) => m.respond(code, &t),
        };
        let Some(step) = step else {
            return;
        };
        tx.last = bytes;
        if code >= 200 {
            tx.req = None;
        }
        self.apply_server(sid, step);
    }

    fn apply_server(&mut self, sid: Id, step: Step) {
        let now = Instant::now();
        if let Some(tx) = self.server.get(&sid) {
            if step.send {
                self.net.send(&tx.peer, &tx.last);
            }
            for (timer, after) in step.arm.into_iter().flatten() {
                self.timers.arm(now + after, TimerRef::Server(sid, timer));
            }
        }
        if step.terminated
            && let Some(tx) = self.server.remove(&sid)
        {
            self.server_keys.remove(&tx.key);
            if let Some(merge) = &tx.merge_key {
                self.invites.remove(merge);
            }
            if step.timeout
                && tx.role == Role::Invite
                && let Some(call) = tx.call
                && matches!(&tx.machine, ServerMachine::Invite(m) if !m.is_acked())
                && self
                    .calls
                    .get(&call)
                    .is_some_and(|c| c.phase == Phase::Answered)
            {
                // §13.3.1.4: a 2xx never ACKed ends the session.
                tracing::debug!(call, "caller never acknowledged the answer");
                self.end_call(call, ReleasedBy::System, ReleaseReason::PeerTimeout, None);
            }
        }
    }

    fn new_client(
        &mut self,
        method: &Method,
        peer: Peer,
        branch: &str,
        request: Vec<u8>,
        base: Option<Box<ReqBase>>,
        (call, role): (Id, Role),
    ) -> Id {
        let id = self.id();
        let reliable = peer.transport.is_reliable();
        let (machine, step) = if *method == Method::Invite {
            let (m, s) = ClientInvite::start(reliable, &self.t);
            (ClientMachine::Invite(m), s)
        } else {
            let (m, s) = ClientNonInvite::start(reliable, &self.t);
            (ClientMachine::NonInvite(m), s)
        };
        let key = client_key(branch, method);
        self.client_keys.insert(key.clone(), id);
        self.client.insert(
            id,
            ClientTx {
                key,
                machine,
                peer,
                request,
                base,
                ack: None,
                got_2xx: false,
                cancelled: false,
                conn: None,
                call,
                role,
                holds: true,
            },
        );
        if let Some(c) = self.calls.get_mut(&call) {
            c.holds += 1;
        }
        self.apply_client(id, step);
        id
    }

    fn apply_client(&mut self, cid: Id, step: Step) {
        let now = Instant::now();
        if let Some(tx) = self.client.get_mut(&cid) {
            if step.send
                && let Some(conn) = self.net.send(&tx.peer, &tx.request)
            {
                tx.conn = Some(conn);
            }
            for (timer, after) in step.arm.into_iter().flatten() {
                self.timers.arm(now + after, TimerRef::Client(cid, timer));
            }
        }
        if step.terminated
            && let Some(tx) = self.client.remove(&cid)
        {
            self.client_keys.remove(&tx.key);
            if tx.holds {
                self.release(tx.call);
            }
            if step.timeout {
                self.client_timed_out(tx.call, tx.role);
            }
        }
    }

    fn release(&mut self, call: Id) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.holds = c.holds.saturating_sub(1);
        }
        self.maybe_reap(call);
    }

    fn maybe_reap(&mut self, call: Id) {
        let done = self
            .calls
            .get(&call)
            .is_some_and(|c| c.phase == Phase::Ended && c.holds == 0);
        if done && let Some(c) = self.calls.remove(&call) {
            for leg in &c.legs {
                self.dialogs.remove(&leg.local_tag);
            }
            metrics::gauge!("maskline_calls_active").set(self.calls.len() as f64);
        }
    }

    /// Ends a client transaction that will get no final response, as if it
    /// had timed out.
    fn abandon(&mut self, cid: Id) {
        let Some(tx) = self.client.remove(&cid) else {
            return;
        };
        self.client_keys.remove(&tx.key);
        if tx.holds {
            self.release(tx.call);
        }
        self.client_timed_out(tx.call, tx.role);
    }

    fn on_abandon_timer(&mut self, cid: Id) {
        let Some(tx) = self.client.get(&cid) else {
            return;
        };
        let pending = matches!(&tx.machine, ClientMachine::Invite(m) if matches!(m.state, State::Calling | State::Proceeding));
        if !pending {
            return;
        }
        if tx.cancelled {
            self.abandon(cid);
            return;
        }
        // Timer C on a relayed re-INVITE: give up on it and on the call.
        let (call, role) = (tx.call, tx.role);
        self.send_cancel(cid, call);
        if let Role::Relay { server, .. } = role {
            self.respond(server, 408, Resp::default());
        }
        tracing::debug!(call, "a leg left a re-INVITE unanswered: ending the call");
        self.end_call(call, ReleasedBy::System, ReleaseReason::PeerTimeout, None);
    }

    fn client_timer(&mut self, cid: Id, timer: Timer) {
        let t = self.t;
        let Some(tx) = self.client.get_mut(&cid) else {
            return;
        };
        let step = match &mut tx.machine {
            ClientMachine::Invite(m) => m.on_timer(timer, &t),
            ClientMachine::NonInvite(m) => m.on_timer(timer, &t),
        };
        self.apply_client(cid, step);
    }

    fn on_timer(&mut self, what: TimerRef) {
        match what {
            TimerRef::Server(sid, timer) => {
                let t = self.t;
                let Some(tx) = self.server.get_mut(&sid) else {
                    return;
                };
                let step = match &mut tx.machine {
                    ServerMachine::Invite(m) => m.on_timer(timer, &t),
                    ServerMachine::NonInvite(m) => m.on_timer(timer),
                };
                self.apply_server(sid, step);
            }
            TimerRef::Client(cid, timer) => self.client_timer(cid, timer),
            TimerRef::Abandon(cid) => self.on_abandon_timer(cid),
            TimerRef::Ring(call) => {
                if self
                    .calls
                    .get(&call)
                    .is_some_and(|c| c.phase == Phase::Early)
                {
                    tracing::debug!(call, "ring timeout");
                    self.end_call(call, ReleasedBy::System, ReleaseReason::NoAnswer, Some(480));
                }
            }
            TimerRef::MaxDuration(call) => {
                let Some(deadline) = self
                    .calls
                    .get(&call)
                    .filter(|c| c.phase == Phase::Answered)
                    .and_then(|c| c.deadline)
                else {
                    return;
                };
                let now = Instant::now();
                if now >= deadline {
                    tracing::debug!(call, "max_call_seconds reached");
                    self.end_call(call, ReleasedBy::System, ReleaseReason::MaxDuration, None);
                } else {
                    // Long limits are waited for in steps, so the timer of a
                    // call that ended early is gone within one step.
                    self.timers.arm(
                        deadline.min(now + MAX_TIMER_STEP),
                        TimerRef::MaxDuration(call),
                    );
                }
            }
            TimerRef::Grace => {
                let live: Vec<Id> = self
                    .calls
                    .iter()
                    .filter(|(_, c)| c.phase != Phase::Ended)
                    .map(|(id, _)| *id)
                    .collect();
                if !live.is_empty() {
                    tracing::warn!(calls = live.len(), "grace period over: ending calls");
                }
                for call in live {
                    self.end_call(call, ReleasedBy::System, ReleaseReason::Shutdown, Some(503));
                }
                self.hard_stop = Some(Instant::now() + CLOSE_AFTER_GRACE);
            }
        }
    }

    fn fire_due(&mut self, now: Instant) {
        while let Some(what) = self.timers.pop_due(now) {
            self.on_timer(what);
        }
    }

    fn start_draining(&mut self, grace: Duration) {
        self.draining = true;
        tracing::info!(calls = self.calls.len(), "SIP draining: new calls get 503");
        self.timers.arm(Instant::now() + grace, TimerRef::Grace);
    }

    // === a new call ===

    fn on_invite(&mut self, req: Message, peer: Peer, key: String) {
        let started = self.received_at;
        let invited_at = unix_ms();
        // §8.2.2.2: the same INVITE (From tag, Call-ID, CSeq) by another
        // path while the first is in progress.
        let merge = merge_key(&req);
        if self.invites.contains_key(&merge) {
            self.reply_stateless(&req, &peer, 482, &[]);
            return;
        }
        if req.header(Name::Require).is_some() {
            // §8.2.2.3: we support no extension that a caller may require
            // (100rel, precondition, timer...).
            let unsupported = req.values(Name::Require).collect::<Vec<_>>().join(", ");
            self.reply_stateless(&req, &peer, 420, &[("Unsupported", &unsupported)]);
            return;
        }
        let sid = self.new_server(key, req, peer, None, Role::Invite);
        self.invites.insert(merge.clone(), sid);
        if let Some(tx) = self.server.get_mut(&sid) {
            tx.merge_key = Some(merge);
        }
        let Some(req) = self.server.get(&sid).and_then(|tx| tx.req.as_deref()) else {
            return;
        };
        let region = self.cfg.region;
        // `<X>,<ext>`: a shared number's extension dialled with it.
        let (x_user, ext_digits) = match uri_user(req.uri())
            .map(|u| u.split_once(',').map_or((u, None), |(x, e)| (x, Some(e))))
        {
            Some((x, e)) => (Some(x), e),
            None => (None, None),
        };
        let extension = match ext_digits.map(str::parse::<maskline_core::Extension>) {
            None => Ok(None),
            Some(Ok(e)) => Ok(Some(e)),
            Some(Err(_)) => Err(()),
        };
        let x = x_user.and_then(|u| sip_number(u, region));
        let caller = caller_user(req).and_then(|u| sip_number(u, region));
        let max_forwards = req.max_forwards();
        let mut cdr = CallRecord {
            id: CallId(uuid::Uuid::now_v7().as_u128()),
            tenant: None,
            binding: None,
            direction: None,
            x,
            caller,
            callee: None,
            invited_at,
            ringing_at: None,
            answered_at: None,
            ended_at: invited_at,
            final_status: 0,
            released_by: ReleasedBy::System,
            release_reason: ReleaseReason::Refused,
            refusal: None,
        };
        if self.draining {
            self.refuse_shutdown(sid, cdr);
            return;
        }
        let max_forwards = match max_forwards {
            Ok(0) => {
                cdr.release_reason = ReleaseReason::Failed;
                self.refuse(sid, 483, &[], cdr);
                return;
            }
            Ok(n) => n - 1,
            Err(_) => {
                cdr.release_reason = ReleaseReason::Failed;
                self.refuse(sid, 400, &[], cdr);
                return;
            }
        };
        let (Some(x), Some(caller), Ok(extension)) = (x, caller, extension) else {
            self.refuse_with(sid, Refusal::InvalidNumber, cdr);
            return;
        };
        let decision = self.engine.decide(&Inbound {
            caller,
            called: x,
            extension,
            channel: Channel::Voice,
        });
        match decision {
            Decision::Connect(connect) => {
                cdr.tenant = Some(connect.tenant);
                cdr.binding = Some(connect.binding);
                cdr.direction = Some(connect.direction);
                cdr.callee = Some(connect.to);
                let intercept = self
                    .engine
                    .webhook(connect.tenant)
                    .and_then(|w| Some((w.intercept.clone()?, w.secret.clone())));
                match intercept {
                    Some((intercept, secret)) if self.cfg.outbound.is_some() => {
                        let pending = Intercepting {
                            connect,
                            cdr,
                            max_forwards,
                            started,
                        };
                        self.intercept(sid, pending, intercept, secret);
                    }
                    _ => self.connect(sid, connect, cdr, max_forwards, started, false),
                }
            }
            Decision::CollectExtension { tenant } => {
                cdr.tenant = Some(tenant);
                self.refuse_with(sid, Refusal::ExtensionRequired, cdr);
            }
            Decision::Announce {
                prompt,
                binding,
                tenant,
            } => {
                cdr.tenant = tenant;
                cdr.binding = binding;
                let refusal = match prompt {
                    Prompt::Expired => Refusal::Expired,
                    Prompt::NoBinding => Refusal::NoBinding,
                    Prompt::NoB => Refusal::NoB,
                };
                self.refuse_with(sid, refusal, cdr);
            }
            Decision::Reject {
                reason,
                binding,
                tenant,
            } => {
                cdr.tenant = Some(tenant);
                cdr.binding = Some(binding);
                let refusal = match reason {
                    RejectReason::DirectionForbidden | RejectReason::SmsDisabled => {
                        Refusal::DirectionForbidden
                    }
                };
                self.refuse_with(sid, refusal, cdr);
            }
        }
    }

    /// A new call while draining: 503, try again later (elsewhere).
    fn refuse_shutdown(&mut self, sid: Id, mut cdr: CallRecord) {
        cdr.release_reason = ReleaseReason::Shutdown;
        self.refuse(sid, 503, &[("Retry-After", "30")], cdr);
    }

    fn refuse_with(&mut self, sid: Id, refusal: Refusal, mut cdr: CallRecord) {
        let (code, reason) = treatment(refusal);
        cdr.refusal = Some(refusal);
        cdr.release_reason = ReleaseReason::Refused;
        self.refuse(sid, code, &[("Reason", reason)], cdr);
    }

    fn refuse(&mut self, sid: Id, code: u16, headers: &[(&str, &str)], mut cdr: CallRecord) {
        let tag = token();
        self.respond(
            sid,
            code,
            Resp {
                to_tag: Some(&tag),
                headers,
                ..Resp::default()
            },
        );
        cdr.final_status = code;
        cdr.ended_at = unix_ms();
        tracing::debug!(
            cdr = %cdr.id,
            caller = ?cdr.caller.map(Number::masked),
            x = ?cdr.x.map(Number::masked),
            status = code,
            refusal = cdr.refusal.map(Refusal::as_str),
            "call refused"
        );
        self.write_cdr(cdr);
    }

    fn write_cdr(&mut self, cdr: CallRecord) {
        metrics::counter!("maskline_calls_total", "outcome" => cdr.release_reason.as_str())
            .increment(1);
        let ack = self.engine.record_call(cdr);
        let _ = self.cdrs.send(ack);
    }

    /// Asks the tenant's intercept callback about a call, without waiting:
    /// the answer comes back as a [`Resume::Verdict`].
    fn intercept(&mut self, sid: Id, pending: Intercepting, intercept: Intercept, secret: String) {
        // The caller stops retransmitting while the tenant thinks.
        self.respond(sid, 100, Resp::default());
        let c = &pending.cdr;
        let request = InterceptRequest {
            call_id: c.id.to_string(),
            binding_id: pending.connect.binding.to_string(),
            direction: pending.connect.direction.as_str(),
            x: pending.connect.caller_id.to_string(),
            caller: c.caller.map(|n| n.to_string()).unwrap_or_default(),
            callee: pending.connect.to.to_string(),
            invited_at: rfc3339_millis(c.invited_at),
        };
        self.intercepting.insert(sid, pending);
        let interceptor = self.interceptor.clone();
        let resume = self.resume.clone();
        tokio::spawn(async move {
            let (verdict, _) = interceptor.ask(&intercept, &secret, &request).await;
            let _ = resume.send(Resume::Verdict(sid, verdict));
        });
    }

    fn on_resume(&mut self, resume: Resume) {
        match resume {
            Resume::Durable(call) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.events_durable += 1;
                }
                self.flush_held(call, false);
            }
            Resume::Verdict(sid, verdict) => {
                // Gone if the caller cancelled meanwhile.
                let Some(p) = self.intercepting.remove(&sid) else {
                    return;
                };
                match verdict {
                    Verdict::Allow if !self.draining => {
                        self.connect(sid, p.connect, p.cdr, p.max_forwards, p.started, true);
                    }
                    Verdict::Allow => self.refuse_shutdown(sid, unplaced(p.cdr)),
                    Verdict::Deny { reason } => {
                        tracing::debug!(cdr = %p.cdr.id, reason = reason.as_deref().unwrap_or(""), "intercept denied the call");
                        self.refuse_with(sid, Refusal::Intercepted, unplaced(p.cdr));
                    }
                }
            }
        }
    }

    /// At the end of a drain: INVITEs still waiting for their intercept
    /// verdict get 503.
    fn refuse_intercepting(&mut self) {
        for (sid, p) in std::mem::take(&mut self.intercepting) {
            self.refuse_shutdown(sid, unplaced(p.cdr));
        }
    }

    /// Records a progress event of `call`; responses relayed to the caller
    /// from now on wait until it is durable.
    fn record_progress(&mut self, call: Id, kind: EventType) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(ack) = self.engine.record_call_progress(kind, &c.cdr) {
            c.events_issued += 1;
            let _ = self.durable.send((ack, call));
        }
    }

    /// Relays a provisional or 2xx response to the caller once every
    /// progress event recorded before it is durable: what the caller has
    /// heard of, the platform will hear of, even across a crash.
    fn relay_held(&mut self, id: Id, code: u16, body: Option<Body>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.held.is_empty() && call.events_durable >= call.events_issued {
            let parts = a_response_parts(call);
            self.relay_to_caller(parts, code, body.as_ref());
        } else {
            call.held.push_back(Held {
                wait_for: call.events_issued,
                code,
                body,
            });
        }
    }

    /// Sends held responses whose events are durable (`all`: every one, as
    /// the call ends and its final word must follow them).
    fn flush_held(&mut self, id: Id, all: bool) {
        loop {
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            let ready = call
                .held
                .front()
                .is_some_and(|h| all || h.wait_for <= call.events_durable);
            if !ready {
                return;
            }
            let Some(h) = call.held.pop_front() else {
                return;
            };
            let parts = a_response_parts(call);
            self.relay_to_caller(parts, h.code, h.body.as_ref());
        }
    }

    fn connect(
        &mut self,
        sid: Id,
        connect: Connect,
        cdr: CallRecord,
        max_forwards: u32,
        started: Instant,
        trying_sent: bool,
    ) {
        let Some(out) = self.cfg.outbound else {
            self.refuse_with(sid, Refusal::NoGateway, cdr);
            return;
        };
        let Some(a_leg) = self.server.get(&sid).and_then(|tx| {
            let req = tx.req.as_deref()?;
            let a_tag = token();
            let contact = contact_value(&connect.caller_id, &self.cfg.advertise, tx.peer.transport);
            let target = req
                .values(Name::Contact)
                .next()
                .map_or_else(|| uri_of(req.from()), uri_of)
                .to_owned();
            Some(Leg {
                call_id: req.call_id().to_owned(),
                local: format!("{};tag={a_tag}", req.to()),
                local_tag: a_tag,
                remote: req.from().to_owned(),
                remote_tag: req.from_tag().map(str::to_owned),
                target,
                routes: req.values(Name::RecordRoute).map(str::to_owned).collect(),
                cseq: 0,
                peer: tx.peer,
                contact,
            })
        }) else {
            return;
        };
        let adv = &self.cfg.advertise;
        let x = connect.caller_id.to_string();
        let to = connect.to.to_string();
        let b_peer = Peer {
            transport: out.transport,
            addr: out.addr,
            conn: None,
        };
        let b_tag = token();
        let branch = new_branch();
        let mut call_id = token();
        call_id.push_str(&token());
        let uri = format!("sip:{to}@{};user=phone", out.addr);
        let from = format!("<sip:{x}@{adv}>;tag={b_tag}");
        let to_hdr = format!("<sip:{to}@{};user=phone>", out.addr);
        let via = via_value(adv, out.transport, &branch);
        let contact = contact_value(&connect.caller_id, adv, out.transport);
        let pai = format!("<sip:{x}@{adv}>");
        let mut b = Builder::request(&Method::Invite, &uri);
        b.header("Via", &via)
            .max_forwards(max_forwards)
            .header("From", &from)
            .header("To", &to_hdr)
            .header("Call-ID", &call_id)
            .cseq(1, &Method::Invite)
            .header("Contact", &contact)
            .header("P-Asserted-Identity", &pai)
            .header("Allow", ALLOW);
        let Some(req) = self.server.get(&sid).and_then(|tx| tx.req.as_deref()) else {
            return;
        };
        let numbers = [needle(cdr.caller), needle(Some(connect.to))];
        let scrub = [numbers[0].as_str(), numbers[1].as_str()];
        let bytes = b.finish_with(crossing_body(req, &scrub).as_ref());
        let base = ReqBase {
            uri: uri.clone(),
            via,
            branch: branch.clone(),
            from: from.clone(),
            to: to_hdr.clone(),
            call_id: call_id.clone(),
            cseq: 1,
            routes: Vec::new(),
        };
        let b_leg = Leg {
            call_id,
            local_tag: b_tag,
            local: from,
            remote: to_hdr,
            remote_tag: None,
            target: uri,
            routes: Vec::new(),
            cseq: 1,
            peer: b_peer,
            contact,
        };
        let call = self.id();
        self.dialogs
            .insert(a_leg.local_tag.clone(), (call, Side::A));
        self.dialogs
            .insert(b_leg.local_tag.clone(), (call, Side::B));
        if let Some(tx) = self.server.get_mut(&sid) {
            tx.call = Some(call);
        }
        tracing::debug!(
            call,
            cdr = %cdr.id,
            direction = connect.direction.as_str(),
            caller = %cdr.caller.map_or_else(String::new, |n| n.masked().to_string()),
            callee = %connect.to.masked(),
            "placing the outbound leg"
        );
        self.calls.insert(
            call,
            Call {
                cdr,
                phase: Phase::Early,
                legs: [a_leg, b_leg],
                a_invite: sid,
                b_invite: 0,
                b_responded: false,
                cancel_b: false,
                max_call_seconds: connect.max_call_seconds,
                deadline: None,
                numbers,
                acks: [None, None],
                holds: 0,
                events_issued: 0,
                events_durable: 0,
                held: VecDeque::new(),
            },
        );
        // Not awaited before the outbound INVITE (setup is not delayed);
        // the first progress relayed to the caller waits for it.
        self.record_progress(call, EventType::CallStarted);
        metrics::gauge!("maskline_calls_active").set(self.calls.len() as f64);
        let cid = self.new_client(
            &Method::Invite,
            b_peer,
            &branch,
            bytes,
            Some(Box::new(base)),
            (call, Role::Invite),
        );
        metrics::histogram!("maskline_sip_setup_delay_seconds")
            .record(started.elapsed().as_secs_f64());
        // §17.2.1: 100 Trying at once, so the caller stops retransmitting;
        // just after the outbound INVITE, which it would otherwise delay.
        // Refusals skip it: their final response goes out as fast.
        if !trying_sent {
            self.respond(sid, 100, Resp::default());
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.b_invite = cid;
        }
        self.timers
            .arm(Instant::now() + self.cfg.ring_timeout, TimerRef::Ring(call));
    }

    // === responses ===

    fn on_response(&mut self, resp: Message) {
        let key = client_key(resp.branch(), &resp.cseq_method);
        let Some(&cid) = self.client_keys.get(&key) else {
            return;
        };
        let t = self.t;
        let Some(code) = resp.code() else {
            return;
        };
        let Some(tx) = self.client.get_mut(&cid) else {
            return;
        };
        if (200..300).contains(&code) && tx.got_2xx {
            // A retransmitted 2xx: our ACK was lost.
            if let Some(ack) = &tx.ack {
                self.net.send(&tx.peer, ack);
            }
            return;
        }
        let step = match &mut tx.machine {
            ClientMachine::Invite(m) => m.on_response(code, &t),
            ClientMachine::NonInvite(m) => m.on_response(code, &t),
        };
        if step.send_ack {
            if tx.ack.is_none()
                && let Some(base) = &tx.base
            {
                tx.ack = Some(non_2xx_ack(base, resp.to()));
            }
            if let Some(ack) = &tx.ack {
                self.net.send(&tx.peer, ack);
            }
        }
        let mut released = false;
        if step.deliver && code >= 200 {
            // Only the ACK is re-sent from here on; the transaction lingers
            // for 64*T1 (RFC 6026), so keep nothing else.
            tx.request = Vec::new();
            tx.base = None;
            tx.got_2xx = code < 300;
            released = std::mem::replace(&mut tx.holds, false);
        }
        let (call, role) = (tx.call, tx.role);
        let deliver = step.deliver;
        self.apply_client(
            cid,
            Step {
                deliver: false,
                ..step
            },
        );
        if deliver {
            self.on_client_response(cid, call, role, &resp);
        }
        if released {
            self.release(call);
        }
    }

    fn on_client_response(&mut self, cid: Id, call: Id, role: Role, resp: &Message) {
        let Some(code) = resp.code() else {
            return;
        };
        match role {
            Role::Invite => self.on_b_invite_response(cid, call, code, resp),
            Role::Relay { server, to } => {
                self.on_relayed_response(cid, call, server, to, code, resp)
            }
            Role::Bye | Role::Cancel | Role::Local => {}
        }
    }

    fn on_b_invite_response(&mut self, cid: Id, id: Id, code: u16, resp: &Message) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.b_responded = true;
        if code < 300 {
            learn_remote(call.leg_mut(Side::B), resp, code >= 200);
        }
        if call.cancel_b && code < 200 {
            call.cancel_b = false;
            self.send_cancel(cid, id);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match (call.phase, code) {
            (_, 100) => {}
            (Phase::Early, 101..=199) => {
                let ringing = matches!(code, 180 | 183) && call.cdr.ringing_at.is_none();
                if ringing {
                    call.cdr.ringing_at = Some(unix_ms());
                }
                let body = crossing_body(resp, &call.scrub());
                if ringing {
                    self.record_progress(id, EventType::CallRinging);
                }
                self.relay_held(id, code, body);
            }
            (Phase::Early, 200..=299) => {
                call.phase = Phase::Answered;
                call.cdr.answered_at = Some(unix_ms());
                call.cdr.final_status = 200;
                let a_cseq = self
                    .server
                    .get(&call.a_invite)
                    .and_then(|tx| tx.req.as_deref())
                    .map_or(1, |r| r.cseq);
                call.acks[Side::A.index()] = Some(PendingAck {
                    cseq: a_cseq,
                    server: call.a_invite,
                    client: cid,
                    out_cseq: 1,
                });
                if let Some(secs) = call.max_call_seconds {
                    let deadline = Instant::now() + Duration::from_secs(u64::from(secs));
                    call.deadline = Some(deadline);
                    self.timers.arm(
                        deadline.min(Instant::now() + MAX_TIMER_STEP),
                        TimerRef::MaxDuration(id),
                    );
                }
                let body = crossing_body(resp, &call.scrub());
                self.record_progress(id, EventType::CallAnswered);
                self.relay_held(id, 200, body);
            }
            (Phase::Ended, 200..=299) => {
                // Answered after the caller left (CANCEL crossed the 200):
                // the dialog exists now and must be closed.
                self.send_2xx_ack(id, Side::B, cid, 1, None);
                self.send_bye(id, Side::B);
            }
            (Phase::Early, 300..) => {
                let (a_code, reason) = map_failure(code);
                self.end_call(id, ReleasedBy::Callee, reason, Some(a_code));
            }
            _ => {}
        }
    }

    /// A provisional or 2xx response from the callee, rebuilt for the
    /// caller's INVITE: our tag, our Contact, the caller's Record-Route, the
    /// callee's body.
    fn relay_to_caller(
        &mut self,
        (sid, tag, contact): (Id, String, String),
        code: u16,
        body: Option<&Body>,
    ) {
        self.respond(
            sid,
            code,
            Resp {
                to_tag: Some(&tag),
                contact: Some(&contact),
                record_route: true,
                body,
                ..Resp::default()
            },
        );
    }

    fn on_relayed_response(
        &mut self,
        cid: Id,
        id: Id,
        server: Id,
        to: Side,
        code: u16,
        resp: &Message,
    ) {
        if code == 100 {
            return;
        }
        let is_invite = resp.cseq_method == Method::Invite;
        let open = self.server.get(&server).is_some_and(|tx| tx.req.is_some());
        if !open {
            // The requester already has its answer (it cancelled): a late
            // 2xx still needs its ACK, or the far end keeps retransmitting.
            if is_invite && (200..300).contains(&code) {
                self.send_2xx_ack(id, to, cid, resp.cseq, None);
            }
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let from_side = to.other();
        if (200..300).contains(&code)
            && matches!(resp.cseq_method, Method::Invite | Method::Update)
            && let Some(contact) = resp.values(Name::Contact).next()
        {
            call.leg_mut(from_side.other()).target = uri_of(contact).to_owned();
        }
        if (200..300).contains(&code) && is_invite {
            let cseq = self
                .server
                .get(&server)
                .and_then(|tx| tx.req.as_deref())
                .map_or(0, |r| r.cseq);
            call.acks[from_side.index()] = Some(PendingAck {
                cseq,
                server,
                client: cid,
                out_cseq: resp.cseq,
            });
        }
        let contact = call.leg(from_side).contact.clone();
        let body = crossing_body(resp, &call.scrub());
        let wants_contact =
            code < 300 && matches!(resp.cseq_method, Method::Invite | Method::Update);
        self.respond(
            server,
            code,
            Resp {
                contact: wants_contact.then_some(contact.as_str()),
                body: body.as_ref(),
                ..Resp::default()
            },
        );
        if code == 481 || code == 408 {
            // The far leg has lost the dialog: end the call on both.
            self.end_call(id, ReleasedBy::System, ReleaseReason::PeerTimeout, None);
        }
    }

    fn client_timed_out(&mut self, id: Id, role: Role) {
        match role {
            Role::Invite => {
                if self.calls.get(&id).is_some_and(|c| c.phase == Phase::Early) {
                    self.end_call(
                        id,
                        ReleasedBy::System,
                        ReleaseReason::GatewayTimeout,
                        Some(408),
                    );
                }
            }
            Role::Relay { server, .. } => {
                self.respond(server, 408, Resp::default());
                if self.calls.get(&id).is_some_and(|c| c.phase != Phase::Ended) {
                    tracing::debug!(call = id, "a leg stopped answering: ending the call");
                    self.end_call(id, ReleasedBy::System, ReleaseReason::PeerTimeout, None);
                }
            }
            Role::Bye | Role::Cancel | Role::Local => {}
        }
    }

    // === requests on established calls ===

    fn on_ack(&mut self, req: Message) {
        let key = server_key(&req, &Method::Ack);
        if let Some(&sid) = self.server_keys.get(&key)
            && let Some(tx) = self.server.get_mut(&sid)
            && let ServerMachine::Invite(m) = &mut tx.machine
            && m.state == State::Completed
        {
            let step = m.on_ack(&self.t);
            self.apply_server(sid, step);
            return;
        }
        let Some(&(id, side)) = req.to_tag().and_then(|tag| self.dialogs.get(tag)) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(pending) = call.acks[side.index()].filter(|p| p.cseq == req.cseq) else {
            return;
        };
        call.acks[side.index()] = None;
        if let Some(tx) = self.server.get_mut(&pending.server)
            && let ServerMachine::Invite(m) = &mut tx.machine
        {
            m.acked_2xx();
            tx.last = Vec::new();
        }
        let body = crossing_body(&req, &call.scrub());
        self.send_2xx_ack(
            id,
            side.other(),
            pending.client,
            pending.out_cseq,
            body.as_ref(),
        );
    }

    /// ACKs a 2xx on `side` (end to end: carrying the other side's ACK body).
    fn send_2xx_ack(&mut self, id: Id, side: Side, client: Id, cseq: u32, body: Option<&Body>) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let leg = call.leg(side);
        let bytes = leg_request(
            &self.cfg.advertise,
            leg,
            &Method::Ack,
            cseq,
            &new_branch(),
            body,
        );
        let peer = leg.peer;
        self.net.send(&peer, &bytes);
        if let Some(tx) = self.client.get_mut(&client) {
            tx.ack = Some(bytes);
        }
    }

    fn on_cancel(&mut self, req: Message, peer: Peer) {
        let invite_key = server_key(&req, &Method::Invite);
        let Some(&invite) = self.server_keys.get(&invite_key) else {
            self.reply_stateless(&req, &peer, 481, &[]);
            return;
        };
        let key = server_key(&req, &Method::Cancel);
        if let Some(&sid) = self.server_keys.get(&key) {
            self.on_retransmission(sid);
            return;
        }
        let sid = self.new_server(key, req, peer, None, Role::Local);
        // §9.2: the 200 to a CANCEL carries the To tag of the INVITE's answer.
        let tag = self
            .server
            .get(&invite)
            .filter(|tx| tx.role == Role::Invite)
            .and_then(|tx| tx.call)
            .and_then(|call| self.calls.get(&call))
            .map(|call| call.leg(Side::A).local_tag.clone());
        self.respond(
            sid,
            200,
            Resp {
                to_tag: tag.as_deref(),
                ..Resp::default()
            },
        );
        let Some(tx) = self.server.get(&invite) else {
            return;
        };
        let pending =
            matches!(&tx.machine, ServerMachine::Invite(m) if m.state == State::Proceeding);
        if !pending {
            return;
        }
        match (tx.role, tx.call, tx.relay) {
            (Role::Invite, Some(call), _) => {
                tracing::debug!(call, "caller cancelled");
                self.end_call(
                    call,
                    ReleasedBy::Caller,
                    ReleaseReason::Cancelled,
                    Some(487),
                );
            }
            // §9.2: a CANCEL of a re-INVITE ends that request, not the call.
            (_, Some(call), Some(relay)) => {
                self.respond(invite, 487, Resp::default());
                let answered = self.client.get(&relay).is_some_and(|c| {
                    matches!(&c.machine, ClientMachine::Invite(m) if m.state == State::Proceeding)
                });
                if answered {
                    self.send_cancel(relay, call);
                }
            }
            _ => {
                self.respond(invite, 487, Resp::default());
                if let Some(p) = self.intercepting.remove(&invite) {
                    let mut cdr = unplaced(p.cdr);
                    cdr.released_by = ReleasedBy::Caller;
                    cdr.release_reason = ReleaseReason::Cancelled;
                    cdr.final_status = 487;
                    cdr.ended_at = unix_ms();
                    self.write_cdr(cdr);
                }
            }
        }
    }

    fn on_in_dialog(&mut self, req: Message, peer: Peer, key: String) {
        let found = req.to_tag().and_then(|tag| self.dialogs.get(tag)).copied();
        let Some((id, side)) = found.filter(|(id, side)| {
            self.calls
                .get(id)
                .is_some_and(|c| c.leg(*side).call_id == req.call_id())
        }) else {
            self.reply_stateless(&req, &peer, 481, &[]);
            return;
        };
        let Some(method) = req.method().cloned() else {
            return;
        };
        let sid = self.new_server(key, req, peer, Some(id), Role::Local);
        let phase = self.calls.get(&id).map_or(Phase::Ended, |c| c.phase);
        match method {
            Method::Bye => {
                self.respond(sid, 200, Resp::default());
                match phase {
                    Phase::Answered => {
                        tracing::debug!(call = id, by = side.released_by().as_str(), "hung up");
                        self.end_call(id, side.released_by(), ReleaseReason::Normal, None);
                    }
                    // A BYE in an early dialog ends the attempt like a CANCEL.
                    Phase::Early => {
                        self.end_call(id, side.released_by(), ReleaseReason::Cancelled, Some(487))
                    }
                    Phase::Ended => {}
                }
            }
            Method::Options => self.respond(
                sid,
                200,
                Resp {
                    headers: &[("Allow", ALLOW)],
                    ..Resp::default()
                },
            ),
            _ if phase == Phase::Ended => self.respond(sid, 481, Resp::default()),
            Method::Invite | Method::Update | Method::Info => {
                if method == Method::Invite {
                    self.respond(sid, 100, Resp::default());
                }
                self.relay(sid, id, side, &method);
            }
            _ => self.respond(
                sid,
                501,
                Resp {
                    headers: &[("Allow", ALLOW)],
                    ..Resp::default()
                },
            ),
        }
    }

    /// Sends a request that arrived on `side` to the other leg.
    fn relay(&mut self, sid: Id, id: Id, side: Side, method: &Method) {
        let cid = self.relay_request(sid, id, side, method);
        if let (Some(cid), Some(tx)) = (cid, self.server.get_mut(&sid)) {
            tx.relay = Some(cid);
        }
        if let Some(cid) = cid
            && *method == Method::Invite
        {
            // Timer C (RFC 3261 §16.6): a re-INVITE that gets a provisional
            // answer and then nothing must not wait forever.
            self.timers
                .arm(Instant::now() + self.t.t1 * 64, TimerRef::Abandon(cid));
        }
    }

    fn relay_request(&mut self, sid: Id, id: Id, side: Side, method: &Method) -> Option<Id> {
        let call = self.calls.get_mut(&id)?;
        let req = self.server.get(&sid).and_then(|tx| tx.req.as_deref())?;
        let body = crossing_body(req, &call.scrub());
        let other = call.leg_mut(side.other());
        if other.remote_tag.is_none() {
            // The other leg's dialog does not exist yet.
            self.respond(
                sid,
                500,
                Resp {
                    headers: &[("Retry-After", "1")],
                    ..Resp::default()
                },
            );
            return None;
        }
        other.cseq += 1;
        let cseq = other.cseq;
        let peer = other.peer;
        let branch = new_branch();
        let bytes = leg_request(
            &self.cfg.advertise,
            other,
            method,
            cseq,
            &branch,
            body.as_ref(),
        );
        let base = (*method == Method::Invite).then(|| {
            Box::new(ReqBase {
                uri: other.target.clone(),
                via: via_value(&self.cfg.advertise, other.peer.transport, &branch),
                branch: branch.clone(),
                from: other.local.clone(),
                to: other.remote.clone(),
                call_id: other.call_id.clone(),
                cseq,
                routes: other.routes.clone(),
            })
        });
        Some(self.new_client(
            method,
            peer,
            &branch,
            bytes,
            base,
            (
                id,
                Role::Relay {
                    server: sid,
                    to: side.other(),
                },
            ),
        ))
    }

    fn send_bye(&mut self, id: Id, side: Side) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let leg = call.leg_mut(side);
        leg.cseq += 1;
        let branch = new_branch();
        let bytes = leg_request(
            &self.cfg.advertise,
            leg,
            &Method::Bye,
            leg.cseq,
            &branch,
            None,
        );
        let peer = leg.peer;
        self.new_client(&Method::Bye, peer, &branch, bytes, None, (id, Role::Bye));
    }

    fn send_cancel(&mut self, b_invite: Id, id: Id) {
        let abandon_at = Instant::now() + self.t.t1 * 64;
        let Some(tx) = self.client.get_mut(&b_invite) else {
            return;
        };
        if tx.cancelled {
            return;
        }
        tx.cancelled = true;
        self.timers.arm(abandon_at, TimerRef::Abandon(b_invite));
        let Some(tx) = self.client.get(&b_invite) else {
            return;
        };
        let Some(base) = &tx.base else {
            return;
        };
        let peer = tx.peer;
        let mut b = Builder::request(&Method::Cancel, &base.uri);
        b.header("Via", &base.via)
            .max_forwards(70)
            .header("From", &base.from)
            .header("To", &base.to)
            .header("Call-ID", &base.call_id)
            .cseq(base.cseq, &Method::Cancel);
        for r in &base.routes {
            b.header("Route", r);
        }
        let bytes = b.finish(b"");
        let branch = base.branch.clone();
        self.new_client(
            &Method::Cancel,
            peer,
            &branch,
            bytes,
            None,
            (id, Role::Cancel),
        );
    }

    /// Ends a call once: answers or tears down each leg as needed and
    /// writes its CDR.
    fn end_call(&mut self, id: Id, by: ReleasedBy, reason: ReleaseReason, a_status: Option<u16>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let was = call.phase;
        if was == Phase::Ended {
            return;
        }
        // What the caller has not heard yet goes before the end.
        self.flush_held(id, true);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.phase = Phase::Ended;
        call.cdr.released_by = by;
        call.cdr.release_reason = reason;
        call.cdr.ended_at = unix_ms();
        match was {
            Phase::Early => {
                let code = a_status.unwrap_or(487);
                call.cdr.final_status = code;
                let (sid, tag, _) = a_response_parts(call);
                let b_invite = call.b_invite;
                self.respond(
                    sid,
                    code,
                    Resp {
                        to_tag: Some(&tag),
                        ..Resp::default()
                    },
                );
                // Cancel the outbound leg unless it already ended.
                let b_pending = self.client.get(&b_invite).is_some_and(|tx| {
                    matches!(&tx.machine, ClientMachine::Invite(m) if matches!(m.state, State::Calling | State::Proceeding))
                });
                if b_pending && by != ReleasedBy::Callee {
                    let responded = self.calls.get(&id).is_some_and(|c| c.b_responded);
                    if responded {
                        self.send_cancel(b_invite, id);
                    } else if let Some(c) = self.calls.get_mut(&id) {
                        c.cancel_b = true;
                    }
                }
            }
            Phase::Answered => {
                if by != ReleasedBy::Caller {
                    self.send_bye(id, Side::A);
                }
                if by != ReleasedBy::Callee {
                    self.send_bye(id, Side::B);
                }
            }
            Phase::Ended => {}
        }
        if let Some(call) = self.calls.get(&id) {
            let cdr = call.cdr.clone();
            tracing::debug!(
                call = id,
                cdr = %cdr.id,
                status = cdr.final_status,
                released_by = by.as_str(),
                reason = reason.as_str(),
                "call ended"
            );
            self.write_cdr(cdr);
        }
        self.maybe_reap(id);
    }
}

/// The A-leg server transaction, our tag on it and our Contact there.
fn a_response_parts(call: &Call) -> (Id, String, String) {
    let a = call.leg(Side::A);
    (call.a_invite, a.local_tag.clone(), a.contact.clone())
}

/// The digits to look for in a body: the number without up to three
/// leading (country code) digits, so national forms match too.
fn needle(number: Option<Number>) -> String {
    let Some(number) = number else {
        return String::new();
    };
    let digits = number.digits().to_string();
    let skip = digits.len().saturating_sub(7).min(3);
    digits[skip..].to_owned()
}

/// Learns the far end's tag, target and route set from a response that
/// creates (early) or confirms the dialog on the outbound leg.
fn learn_remote(leg: &mut Leg, resp: &Message, confirmed: bool) {
    let Some(tag) = resp.to_tag() else {
        return;
    };
    if leg.remote_tag.is_some() && !confirmed {
        return;
    }
    leg.remote_tag = Some(tag.to_owned());
    leg.remote = resp.to().to_owned();
    if let Some(contact) = resp.values(Name::Contact).next() {
        leg.target = uri_of(contact).to_owned();
    }
    // §12.1.2: the UAC's route set is the Record-Route in reverse.
    let mut routes: Vec<String> = resp.values(Name::RecordRoute).map(str::to_owned).collect();
    routes.reverse();
    leg.routes = routes;
}

fn contact_value(x: &Number, adv: &str, transport: Transport) -> String {
    match transport {
        Transport::Udp => format!("<sip:{x}@{adv}>"),
        Transport::Tcp => format!("<sip:{x}@{adv};transport=tcp>"),
    }
}

/// A fresh branch, with RFC 3261's magic cookie.
fn new_branch() -> String {
    format!("z9hG4bK{}", token())
}

fn via_value(adv: &str, transport: Transport, branch: &str) -> String {
    format!("SIP/2.0/{} {adv};branch={branch};rport", transport.as_str())
}

/// A request within a leg's dialog, carrying `body`'s body if given.
fn leg_request(
    adv: &str,
    leg: &Leg,
    method: &Method,
    cseq: u32,
    branch: &str,
    body: Option<&Body>,
) -> Vec<u8> {
    let mut b = Builder::request(method, &leg.target);
    b.header("Via", &via_value(adv, leg.peer.transport, branch))
        .max_forwards(70)
        .header("From", &leg.local)
        .header("To", &leg.remote)
        .header("Call-ID", &leg.call_id)
        .cseq(cseq, method);
    for r in &leg.routes {
        b.header("Route", r);
    }
    if matches!(method, Method::Invite | Method::Update) {
        b.header("Contact", &leg.contact);
    }
    b.finish_with(body)
}

/// §17.1.1.3: the ACK for a non-2xx final response, on the INVITE's branch.
fn non_2xx_ack(base: &ReqBase, to: &str) -> Vec<u8> {
    let mut b = Builder::request(&Method::Ack, &base.uri);
    b.header("Via", &base.via)
        .max_forwards(70)
        .header("From", &base.from)
        .header("To", to)
        .header("Call-ID", &base.call_id)
        .cseq(base.cseq, &Method::Ack);
    for r in &base.routes {
        b.header("Route", r);
    }
    b.finish(b"")
}
