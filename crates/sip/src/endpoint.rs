//! The endpoint: transactions, dialog matching and timers, sans I/O.
//!
//! It owns every server and client transaction, matches what arrives to
//! them (§17.1.3, §17.2.3) or to a dialog (§12.2), answers what needs no
//! call logic (retransmissions, stray CANCELs, OPTIONS, untrusted sources,
//! merged requests, unsupported methods and extensions, garbage), and
//! tells its user the rest as [`Event`]s. It knows no call policy: what a
//! transaction or dialog belongs to is the user's [`Layer`] data, opaque
//! here.
//!
//! It owns no socket and no clock: bytes go out through a [`Wire`], time
//! comes in with every input (`now`), and [`Endpoint::next_timeout`] says
//! when to call [`Endpoint::handle_timeout`]. Tests drive it with a fake
//! clock and a recording wire.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hashbrown::HashMap;
use rand::Rng;
use tokio::sync::mpsc;

use crate::message::{self, Body, Builder, Message, Method, Name, response_to};
use crate::transaction::{
    ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, State, Step, Timer, Timers,
};
use crate::transport::{ConnId, NetEvent, Peer};
use crate::{Cidr, Transport};

/// The methods Maskline takes part in.
pub(crate) const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO";

pub(crate) type TxId = u64;

/// Where bytes leave the endpoint.
pub(crate) trait Wire {
    /// Sends; on TCP, returns the connection used (or `None` when it is
    /// gone and the message was not sent).
    fn send(&mut self, peer: &Peer, bytes: &[u8]) -> Option<ConnId>;
    /// A TCP connection is open (accepted, or dialled by `send`).
    fn opened(&mut self, conn: ConnId, addr: SocketAddr, writer: mpsc::UnboundedSender<Vec<u8>>);
    fn closed(&mut self, conn: ConnId);
}

/// What the endpoint's user attaches to transactions, dialogs and timers.
pub(crate) trait Layer {
    /// A server transaction's owner (set by the user once it knows it).
    type Server: Copy + Default;
    /// A client transaction's owner, given when it is started.
    type Client: Copy;
    type Dialog: Copy;
    type Timer: Copy;
}

/// What the endpoint tells its user.
pub(crate) enum Event<L: Layer> {
    /// A new INVITE outside any dialog, on server transaction `sid`.
    Invite { sid: TxId },
    /// A request (not ACK or CANCEL) in a known dialog.
    InDialog {
        sid: TxId,
        dialog: L::Dialog,
        method: Method,
    },
    /// An ACK for a 2xx: end to end, in no transaction (§13.2.2.4).
    Ack {
        req: Box<Message>,
        dialog: L::Dialog,
    },
    /// A CANCEL for server INVITE `invite`, on its own transaction `sid`
    /// (not yet answered). `pending`: the INVITE had no final response.
    Cancel {
        sid: TxId,
        invite: TxId,
        pending: bool,
    },
    /// A response from client transaction `cid`.
    Response {
        cid: TxId,
        owner: L::Client,
        resp: Box<Message>,
    },
    /// A client transaction reports no more: it delivered its final
    /// response, or ended without one (`timed_out`: Timer B or F, a closed
    /// connection, or no answer 64*T1 after our CANCEL).
    ClientDone { owner: L::Client, timed_out: bool },
    /// A server INVITE transaction timed out (Timer H or L): its final
    /// response was never acknowledged.
    ServerTimedOut {
        sid: TxId,
        owner: L::Server,
        acked_2xx: bool,
    },
    /// A timer the user armed.
    Timer(L::Timer),
    /// An INVITE from a trusted source answered here, statelessly, with
    /// `code` (merged, unsupported `Require`, over the limits): the call
    /// layer records it like any refused call.
    Refused { req: Box<Message>, code: u16 },
}

/// Options of a response built for a server transaction.
#[derive(Default)]
pub(crate) struct Resp<'a> {
    pub to_tag: Option<&'a str>,
    pub contact: Option<&'a str>,
    /// Copy the request's Record-Route (a dialog-creating response).
    pub record_route: bool,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a Body>,
}

/// What an ACK or CANCEL for a client INVITE is built from.
pub(crate) struct ReqBase {
    pub uri: String,
    pub via: String,
    /// The branch in `via`, which a CANCEL shares.
    pub branch: String,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: u32,
    pub routes: Vec<String>,
}

enum ServerMachine {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

struct ServerTx<S> {
    key: String,
    machine: ServerMachine,
    peer: Peer,
    /// Kept until the final response: responses are built from it.
    req: Option<Box<Message>>,
    last: Vec<u8>,
    owner: S,
    /// For an inbound INVITE: its entry in `Endpoint::invites`.
    merge_key: Option<String>,
}

enum ClientMachine {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

impl ClientMachine {
    /// An INVITE still waiting for its final response.
    fn invite_pending(&self) -> bool {
        matches!(self, ClientMachine::Invite(m) if matches!(m.state, State::Calling | State::Proceeding))
    }
}

struct ClientTx<C> {
    key: String,
    /// A response must carry it too: the branch and CSeq method alone
    /// could be guessed by whoever can reach our port.
    call_id: String,
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
    owner: C,
    /// `ClientDone` was told.
    reported: bool,
}

struct DialogEntry<D> {
    owner: D,
    call_id: String,
    /// The address the dialog's signalling runs over: requests from it
    /// are accepted even if it is not a trusted source of new calls.
    peer_ip: IpAddr,
}

#[derive(Clone, Copy, Debug)]
enum TimerRef<K> {
    Server(TxId, Timer),
    Client(TxId, Timer),
    /// A cancelled client INVITE still without a final response 64*T1
    /// later is given up (§9.1).
    Cancelled(TxId),
    User(K),
}

struct Due<K> {
    at: Instant,
    seq: u64,
    what: TimerRef<K>,
}

impl<K> PartialEq for Due<K> {
    fn eq(&self, other: &Due<K>) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<K> Eq for Due<K> {}
impl<K> PartialOrd for Due<K> {
    fn partial_cmp(&self, other: &Due<K>) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Due<K> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Due<K>) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Timers are never cancelled: a stale one finds its transaction gone or
/// in another state and does nothing.
struct TimerQueue<K> {
    heap: BinaryHeap<Due<K>>,
    seq: u64,
}

impl<K> TimerQueue<K> {
    fn arm(&mut self, at: Instant, what: TimerRef<K>) {
        self.seq += 1;
        self.heap.push(Due {
            at,
            seq: self.seq,
            what,
        });
    }

    fn pop_due(&mut self, now: Instant) -> Option<TimerRef<K>> {
        if self.heap.peek()?.at <= now {
            return self.heap.pop().map(|d| d.what);
        }
        None
    }
}

pub(crate) struct Endpoint<L: Layer> {
    wire: Box<dyn Wire + Send>,
    t: Timers,
    trusted: Vec<Cidr>,
    /// OPTIONS outside a dialog get 503: the node is going away.
    draining: bool,
    now: Instant,
    next_id: TxId,
    server: HashMap<TxId, ServerTx<L::Server>>,
    server_keys: HashMap<String, TxId>,
    client: HashMap<TxId, ClientTx<L::Client>>,
    client_keys: HashMap<String, TxId>,
    /// By our local tag.
    dialogs: HashMap<String, DialogEntry<L::Dialog>>,
    /// Inbound INVITEs in progress by From tag, Call-ID and CSeq.
    invites: HashMap<String, TxId>,
    timers: TimerQueue<L::Timer>,
    events: VecDeque<Event<L>>,
    limits: Limits,
}

/// How much state peers can make us hold. Beyond it, new requests outside
/// a dialog get a stateless `503` with `Retry-After` (requests within a
/// dialog, BYE among them, still pass: they free what is held).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Server and client transactions, lingering ones included (a
    /// non-INVITE one lingers 64×T1 after its answer on UDP).
    pub max_transactions: usize,
    /// Dialog table entries (about one per call leg).
    pub max_dialogs: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_transactions: 1_000_000,
            max_dialogs: 200_000,
        }
    }
}

// === helpers ===

fn hex(mut v: u64, out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for b in buf.iter_mut().rev() {
        *b = DIGITS[(v & 15) as usize];
        v >>= 4;
    }
    out.extend(buf.iter().map(|&b| b as char));
}

/// 64 random bits in hex: tags, Call-IDs, branches.
pub(crate) fn token() -> String {
    let mut s = String::with_capacity(16);
    hex(rand::rng().next_u64(), &mut s);
    s
}

/// A fresh branch, with RFC 3261's magic cookie.
pub(crate) fn new_branch() -> String {
    format!("z9hG4bK{}", token())
}

pub(crate) fn via_value(adv: &str, transport: Transport, branch: &str) -> String {
    format!("SIP/2.0/{} {adv};branch={branch};rport", transport.as_str())
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

/// The Call-ID of a request we built (long or compact form).
fn call_id_of(request: &[u8]) -> Option<&str> {
    let head = std::str::from_utf8(request.get(..request.len().min(message::MAX_HEAD))?).ok()?;
    head.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
                .then(|| value.trim())
        })
}

fn client_key(branch: &str, method: &Method) -> String {
    format!("{branch}|{}", method.as_str())
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

// === impl Endpoint ===

impl<L: Layer> Endpoint<L> {
    pub fn new(wire: Box<dyn Wire + Send>, t: Timers, trusted: Vec<Cidr>, now: Instant) -> Self {
        Endpoint {
            wire,
            t,
            trusted,
            draining: false,
            now,
            next_id: 0,
            server: HashMap::new(),
            server_keys: HashMap::new(),
            client: HashMap::new(),
            client_keys: HashMap::new(),
            dialogs: HashMap::new(),
            invites: HashMap::new(),
            timers: TimerQueue {
                heap: BinaryHeap::new(),
                seq: 0,
            },
            events: VecDeque::new(),
            limits: Limits::default(),
        }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Whether a new request outside a dialog would exceed the limits.
    fn full(&self, method: &Method) -> bool {
        self.server.len() + self.client.len() >= self.limits.max_transactions
            || (*method == Method::Invite && self.dialogs.len() >= self.limits.max_dialogs)
    }

    /// The time of the input being handled.
    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn timers(&self) -> &Timers {
        &self.t
    }

    pub fn poll_event(&mut self) -> Option<Event<L>> {
        self.events.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.heap.peek().map(|d| d.at)
    }

    pub fn set_draining(&mut self) {
        self.draining = true;
    }

    pub fn arm(&mut self, at: Instant, timer: L::Timer) {
        self.timers.arm(at, TimerRef::User(timer));
    }

    fn trusted(&self, peer: &Peer) -> bool {
        self.trusted.iter().any(|c| c.contains(peer.addr.ip()))
    }

    fn id(&mut self) -> TxId {
        self.next_id += 1;
        self.next_id
    }

    // === input ===

    /// A message off the wire (a UDP datagram or a framed TCP message).
    pub fn handle_bytes(&mut self, bytes: &[u8], peer: Peer, now: Instant) {
        self.now = now;
        match Message::parse(bytes) {
            Ok(msg) if msg.code().is_some() => self.on_response(msg),
            Ok(msg) => self.on_request(msg, peer),
            Err(e) => {
                metrics::counter!("maskline_sip_malformed_total").increment(1);
                tracing::debug!(addr = %peer.addr, error = %e, "malformed SIP message");
                if self.trusted(&peer)
                    && let Some(reply) = bad_request_reply(bytes)
                {
                    self.wire.send(&peer, &reply);
                }
            }
        }
    }

    /// What the TCP tasks report.
    pub fn handle_net(&mut self, event: NetEvent, now: Instant) {
        match event {
            NetEvent::Opened { conn, addr, writer } => self.wire.opened(conn, addr, writer),
            NetEvent::Message { conn, addr, bytes } => {
                let peer = Peer {
                    transport: Transport::Tcp,
                    addr,
                    conn: Some(conn),
                };
                self.handle_bytes(&bytes, peer, now);
            }
            NetEvent::Closed { conn } => {
                self.wire.closed(conn);
                self.handle_closed(conn, now);
            }
        }
    }

    /// For inputs from the user's side (resumptions, draining).
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// A TCP connection is gone: whatever waits on it fails now rather
    /// than at Timer B or F.
    fn handle_closed(&mut self, conn: ConnId, now: Instant) {
        self.now = now;
        let waiting: Vec<TxId> = self
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

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        while let Some(what) = self.timers.pop_due(now) {
            match what {
                TimerRef::Server(sid, timer) => self.server_timer(sid, timer),
                TimerRef::Client(cid, timer) => self.client_timer(cid, timer),
                TimerRef::Cancelled(cid) => {
                    if self
                        .client
                        .get(&cid)
                        .is_some_and(|tx| tx.machine.invite_pending())
                    {
                        self.abandon(cid);
                    }
                }
                TimerRef::User(k) => self.events.push_back(Event::Timer(k)),
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
        self.wire.send(peer, &bytes);
    }

    /// An in-dialog request from the peer its dialog runs over (the
    /// gateway, which need not be a trusted source of new calls, hangs up
    /// this way).
    fn sent_by_dialog_peer(&self, req: &Message, peer: &Peer) -> bool {
        req.to_tag()
            .and_then(|tag| self.dialogs.get(tag))
            .is_some_and(|d| d.peer_ip == peer.addr.ip())
    }

    fn on_request(&mut self, req: Message, peer: Peer) {
        let Some(method) = req.method().cloned() else {
            return;
        };
        if !self.trusted(&peer) && !self.sent_by_dialog_peer(&req, &peer) {
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
                    self.on_in_dialog(req, peer, key, method);
                } else if self.full(&method) {
                    metrics::counter!("maskline_sip_overload_total").increment(1);
                    tracing::warn!(
                        method = method.as_str(),
                        transactions = self.server.len() + self.client.len(),
                        dialogs = self.dialogs.len(),
                        "SIP state limit reached; refused with 503"
                    );
                    self.reply_stateless(&req, &peer, 503, &[("Retry-After", "5")]);
                    self.refused(req, 503);
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

    /// Tells the layer of an INVITE refused here (other requests leave no
    /// record).
    fn refused(&mut self, req: Message, code: u16) {
        if req.method() == Some(&Method::Invite) {
            self.events.push_back(Event::Refused {
                req: Box::new(req),
                code,
            });
        }
    }

    fn on_invite(&mut self, req: Message, peer: Peer, key: String) {
        // §8.2.2.2: the same INVITE (From tag, Call-ID, CSeq) by another
        // path while the first is in progress.
        let merge = merge_key(&req);
        if self.invites.contains_key(&merge) {
            self.reply_stateless(&req, &peer, 482, &[]);
            self.refused(req, 482);
            return;
        }
        if req.header(Name::Require).is_some() {
            // §8.2.2.3: we support no extension that a caller may require
            // (100rel, precondition, timer...).
            let unsupported = req.values(Name::Require).collect::<Vec<_>>().join(", ");
            self.reply_stateless(&req, &peer, 420, &[("Unsupported", &unsupported)]);
            self.refused(req, 420);
            return;
        }
        let sid = self.new_server(key, req, peer);
        self.invites.insert(merge.clone(), sid);
        if let Some(tx) = self.server.get_mut(&sid) {
            tx.merge_key = Some(merge);
        }
        self.events.push_back(Event::Invite { sid });
    }

    fn on_in_dialog(&mut self, req: Message, peer: Peer, key: String, method: Method) {
        let dialog = req
            .to_tag()
            .and_then(|tag| self.dialogs.get(tag))
            .filter(|d| d.call_id == req.call_id())
            .map(|d| d.owner);
        let Some(dialog) = dialog else {
            self.reply_stateless(&req, &peer, 481, &[]);
            return;
        };
        let sid = self.new_server(key, req, peer);
        self.events.push_back(Event::InDialog {
            sid,
            dialog,
            method,
        });
    }

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
        let Some(dialog) = req
            .to_tag()
            .and_then(|tag| self.dialogs.get(tag))
            .map(|d| d.owner)
        else {
            return;
        };
        self.events.push_back(Event::Ack {
            req: Box::new(req),
            dialog,
        });
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
        let pending = self.server.get(&invite).is_some_and(
            |tx| matches!(&tx.machine, ServerMachine::Invite(m) if m.state == State::Proceeding),
        );
        let sid = self.new_server(key, req, peer);
        self.events.push_back(Event::Cancel {
            sid,
            invite,
            pending,
        });
    }

    fn on_retransmission(&mut self, sid: TxId) {
        let Some(tx) = self.server.get(&sid) else {
            return;
        };
        let step = match &tx.machine {
            ServerMachine::Invite(m) => m.on_retransmission(),
            ServerMachine::NonInvite(m) => m.on_retransmission(),
        };
        if step.send {
            self.wire.send(&tx.peer, &tx.last);
        }
    }

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
        if resp.call_id() != tx.call_id {
            metrics::counter!("maskline_sip_stray_responses_total").increment(1);
            tracing::debug!("a response matched a branch but not its Call-ID; dropped");
            return;
        }
        if (200..300).contains(&code) && tx.got_2xx {
            // A retransmitted 2xx: our ACK was lost.
            if let Some(ack) = &tx.ack {
                self.wire.send(&tx.peer, ack);
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
                self.wire.send(&tx.peer, ack);
            }
        }
        let mut done = false;
        if step.deliver && code >= 200 {
            // Only the ACK is re-sent from here on; the transaction lingers
            // for 64*T1 (RFC 6026), so keep nothing else.
            tx.request = Vec::new();
            tx.base = None;
            tx.got_2xx = code < 300;
            done = !std::mem::replace(&mut tx.reported, true);
        }
        let owner = tx.owner;
        let deliver = step.deliver;
        self.apply_client(
            cid,
            Step {
                deliver: false,
                ..step
            },
        );
        if deliver {
            self.events.push_back(Event::Response {
                cid,
                owner,
                resp: Box::new(resp),
            });
        }
        if done {
            self.events.push_back(Event::ClientDone {
                owner,
                timed_out: false,
            });
        }
    }

    // === server transactions ===

    fn new_server(&mut self, key: String, req: Message, peer: Peer) -> TxId {
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
                owner: L::Server::default(),
                merge_key: None,
            },
        );
        id
    }

    /// The request of a server transaction that has no final response yet.
    pub fn request(&self, sid: TxId) -> Option<&Message> {
        self.server.get(&sid)?.req.as_deref()
    }

    pub fn peer(&self, sid: TxId) -> Option<Peer> {
        self.server.get(&sid).map(|tx| tx.peer)
    }

    pub fn server_owner(&self, sid: TxId) -> Option<L::Server> {
        self.server.get(&sid).map(|tx| tx.owner)
    }

    pub fn set_server_owner(&mut self, sid: TxId, owner: L::Server) {
        if let Some(tx) = self.server.get_mut(&sid) {
            tx.owner = owner;
        }
    }

    /// The ACK for a 2xx sent on server INVITE `sid` arrived (end to end,
    /// so it is the user who tells): stop retransmitting the 2xx.
    pub fn acked_2xx(&mut self, sid: TxId) {
        if let Some(tx) = self.server.get_mut(&sid)
            && let ServerMachine::Invite(m) = &mut tx.machine
        {
            m.acked_2xx();
            tx.last = Vec::new();
        }
    }

    /// Sends a response on a server transaction, if it still takes one.
    pub fn respond(&mut self, sid: TxId, code: u16, opts: Resp<'_>) {
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

    fn server_timer(&mut self, sid: TxId, timer: Timer) {
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

    fn apply_server(&mut self, sid: TxId, step: Step) {
        let now = self.now;
        if let Some(tx) = self.server.get(&sid) {
            if step.send {
                self.wire.send(&tx.peer, &tx.last);
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
                && let ServerMachine::Invite(m) = &tx.machine
            {
                self.events.push_back(Event::ServerTimedOut {
                    sid,
                    owner: tx.owner,
                    acked_2xx: m.is_acked(),
                });
            }
        }
    }

    // === client transactions ===

    /// Starts a client transaction and sends its request.
    pub fn start_client(
        &mut self,
        method: &Method,
        peer: Peer,
        branch: &str,
        request: Vec<u8>,
        base: Option<Box<ReqBase>>,
        owner: L::Client,
    ) -> TxId {
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
        let call_id = call_id_of(&request).unwrap_or_default().to_owned();
        self.client_keys.insert(key.clone(), id);
        self.client.insert(
            id,
            ClientTx {
                key,
                call_id,
                machine,
                peer,
                request,
                base,
                ack: None,
                got_2xx: false,
                cancelled: false,
                conn: None,
                owner,
                reported: false,
            },
        );
        self.apply_client(id, step);
        id
    }

    /// A client INVITE still waiting for its final response.
    pub fn client_pending(&self, cid: TxId) -> bool {
        self.client
            .get(&cid)
            .is_some_and(|tx| tx.machine.invite_pending())
    }

    /// A client INVITE that has had a provisional response (and so may be
    /// cancelled, §9.1) and no final one.
    pub fn client_proceeding(&self, cid: TxId) -> bool {
        self.client.get(&cid).is_some_and(
            |tx| matches!(&tx.machine, ClientMachine::Invite(m) if m.state == State::Proceeding),
        )
    }

    pub fn client_cancelled(&self, cid: TxId) -> bool {
        self.client.get(&cid).is_some_and(|tx| tx.cancelled)
    }

    /// Sends an ACK for a 2xx (its own transaction, §13.2.2.4) and keeps it
    /// to re-send should client INVITE `cid`'s 2xx be retransmitted.
    pub fn send_2xx_ack(&mut self, cid: TxId, peer: &Peer, bytes: Vec<u8>) {
        self.wire.send(peer, &bytes);
        if let Some(tx) = self.client.get_mut(&cid) {
            tx.ack = Some(bytes);
        }
    }

    /// Cancels client INVITE `cid` (§9.1), once; the CANCEL runs as a
    /// client transaction of `owner`. Returns it.
    pub fn cancel(&mut self, cid: TxId, owner: L::Client) -> Option<TxId> {
        let abandon_at = self.now + self.t.t1 * 64;
        let tx = self.client.get_mut(&cid)?;
        if tx.cancelled {
            return None;
        }
        tx.cancelled = true;
        self.timers.arm(abandon_at, TimerRef::Cancelled(cid));
        let tx = self.client.get(&cid)?;
        let base = tx.base.as_deref()?;
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
        Some(self.start_client(&Method::Cancel, peer, &branch, bytes, None, owner))
    }

    /// Ends a client transaction that will get no final response, as if it
    /// had timed out.
    fn abandon(&mut self, cid: TxId) {
        let Some(tx) = self.client.remove(&cid) else {
            return;
        };
        self.client_keys.remove(&tx.key);
        self.events.push_back(Event::ClientDone {
            owner: tx.owner,
            timed_out: true,
        });
    }

    fn client_timer(&mut self, cid: TxId, timer: Timer) {
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

    fn apply_client(&mut self, cid: TxId, step: Step) {
        let now = self.now;
        if let Some(tx) = self.client.get_mut(&cid) {
            if step.send
                && let Some(conn) = self.wire.send(&tx.peer, &tx.request)
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
            if !tx.reported {
                self.events.push_back(Event::ClientDone {
                    owner: tx.owner,
                    timed_out: step.timeout,
                });
            }
        }
    }

    // === dialogs ===

    /// Routes in-dialog requests with our tag `local_tag` and `call_id` to
    /// `owner`, and accepts them from `peer`'s address.
    pub fn add_dialog(
        &mut self,
        local_tag: String,
        call_id: String,
        peer: &Peer,
        owner: L::Dialog,
    ) {
        self.dialogs.insert(
            local_tag,
            DialogEntry {
                owner,
                call_id,
                peer_ip: peer.addr.ip(),
            },
        );
    }

    pub fn remove_dialog(&mut self, local_tag: &str) {
        self.dialogs.remove(local_tag);
    }

    /// How many transactions and dialogs are held (tests check that a
    /// finished call leaves none behind).
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize, usize) {
        (self.server.len(), self.client.len(), self.dialogs.len())
    }
}
