//! The call logic of the back-to-back user agent, sans I/O.
//!
//! [`B2bua`] owns the calls and drives an [`Endpoint`]: each inbound
//! INVITE is decided by the engine from memory; on `connect` a new INVITE
//! is built from scratch for the outbound leg (fresh Call-ID, tags and
//! branch, From = X; of the caller's INVITE only what
//! `message::crossing_body` lets through, and our own SDP: `media` anchors
//! every call), and from then on every message on one leg is answered by a
//! message built for the other.
//!
//! One file per phase: `invite` (a new INVITE, its decision, the intercept
//! question, refusals, placing the outbound leg), `relay` (responses and
//! in-dialog requests crossing between the legs), `teardown` (CANCEL, BYE,
//! timeouts, limits, the end of a call and its CDR).
//!
//! It owns no socket, thread or clock: the driver (`server`) feeds it
//! bytes, network events, resumptions and the time, and takes the
//! [`Effect`]s it asks for (writes to await, questions to ask). Tests
//! drive it in-process with a fake clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use maskline_core::{CallRecord, Connect, ReleaseReason, ReleasedBy};
use maskline_engine::Engine;
use maskline_media::relay::{MediaEvent, SessionId, Update};
use maskline_media::session::{Leg, SessionEvent};
use maskline_store::WriteAck;

pub(crate) use self::media::MediaPlane;
use crate::Config;
use crate::dialog::Dialog;
use crate::endpoint::{Endpoint, Event, Layer, ReqBase, TxId, Wire};
use crate::intercept::{Intercept, InterceptRequest, Verdict};
use crate::message::{Body, Method};
use crate::transport::{NetEvent, Peer};

mod invite;
mod media;
mod prelude;
mod relay;
mod teardown;
#[cfg(test)]
mod tests;

/// How long calls may take to close after the grace period has ended them.
const CLOSE_AFTER_GRACE: Duration = Duration::from_secs(2);
/// The longest a call timer waits: limits longer than this are re-armed,
/// so the timer heap never holds stale timers for longer.
const MAX_TIMER_STEP: Duration = Duration::from_secs(300);

pub(crate) type Id = u64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
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
    server: TxId,
    client: TxId,
    out_cseq: u32,
}

struct Call {
    cdr: CallRecord,
    phase: Phase,
    legs: [Dialog; 2],
    a_invite: TxId,
    b_invite: TxId,
    b_responded: bool,
    cancel_b: bool,
    max_call_seconds: Option<u32>,
    /// `controls.record`: both directions into one two-channel WAV.
    record: bool,
    /// A recording was started.
    recording: bool,
    /// The callee hears `callee_whisper` as it answers.
    callee_whisper: bool,
    /// The whisper plays: the legs are not bridged until it ends.
    whispering: bool,
    /// Both hear `last_minute` this long before `max_call_seconds`.
    warn_before_end: Option<u32>,
    /// When an answered call must end (from `max_call_seconds`).
    deadline: Option<Instant>,
    media: media::CallMedia,
    acks: [Option<PendingAck>; 2],
    /// Client transactions that will still report to this call.
    holds: u32,
    /// Progress events recorded, and how many of them are durable: the
    /// caller hears of progress only once its event is (see `relay_held`).
    events_issued: u32,
    events_durable: u32,
    held: VecDeque<Held>,
}

impl Call {
    fn leg(&self, side: Side) -> &Dialog {
        &self.legs[side.index()]
    }

    fn leg_mut(&mut self, side: Side) -> &mut Dialog {
        &mut self.legs[side.index()]
    }
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
    /// When a prelude collected the extension: its media and early
    /// dialog's tag.
    early: Option<(media::CallMedia, String)>,
}

/// What a client transaction does for its call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    /// The outbound INVITE.
    Invite,
    /// A request relayed from the other leg's server transaction; `to` is
    /// the leg this client transaction runs on.
    Relay {
        server: TxId,
        to: Side,
    },
    Bye,
    Cancel,
}

/// What a server transaction belongs to.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct ServerOwner {
    call: Option<Id>,
    /// For a relayed request: the client transaction on the other leg.
    relay: Option<TxId>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum CallTimer {
    Ring(Id),
    MaxDuration(Id),
    /// Timer C (RFC 3261 §16.6) of a relayed re-INVITE.
    TimerC {
        cid: TxId,
        call: Id,
        server: TxId,
    },
    Grace,
    /// A prelude's wait for the caller's next digit.
    Digits {
        id: Id,
        generation: u32,
    },
    /// `warn_before_end_seconds` before an answered call's end.
    LastMinute(Id),
    /// The longest a prelude may keep a caller.
    PreludeLimit(Id),
}

pub(crate) struct CallLayer;

impl Layer for CallLayer {
    type Server = ServerOwner;
    type Client = (Id, Role);
    type Dialog = (Id, Side);
    type Timer = CallTimer;
}

/// What the driver must do for the call logic.
pub(crate) enum Effect {
    /// A CDR or event write: await it (failures are counted and logged).
    Write(WriteAck),
    /// A progress event write: once durable, resume with
    /// [`Resume::Durable`] (in the order given: the store applies them so).
    Progress(WriteAck, Id),
    /// Ask the tenant's intercept callback; resume with
    /// [`Resume::Verdict`].
    Intercept(Box<Question>),
}

/// An intercept question for the driver to ask.
pub(crate) struct Question {
    pub sid: TxId,
    pub target: Intercept,
    pub secret: String,
    pub request: InterceptRequest,
}

/// What asynchronous work hands back.
pub(crate) enum Resume {
    /// The oldest progress event of this call not yet durable now is.
    Durable(Id),
    /// The tenant's intercept callback decided about this INVITE.
    Verdict(TxId, Verdict),
}

/// How long an answered call may last when its binding sets no
/// `max_call_seconds`.
pub(crate) const DEFAULT_MAX_CALL_SECONDS: u32 = 3600;

pub(crate) struct B2bua {
    ep: Endpoint<CallLayer>,
    media: Box<dyn MediaPlane>,
    /// Calls by their media session.
    by_media: HashMap<SessionId, Id>,
    /// Ended calls whose recording is being finished, by media session.
    recorded: HashMap<SessionId, CallRecord>,
    engine: Arc<Engine>,
    cfg: Config,
    next_call: Id,
    calls: HashMap<Id, Call>,
    /// By the INVITE's server transaction.
    intercepting: HashMap<TxId, Intercepting>,
    /// INVITEs answered with early media before any outbound leg.
    preludes: HashMap<Id, prelude::Prelude>,
    /// Calls counted against their tenant's caps, by CDR: from the connect
    /// decision until the CDR is written (the call ended or was refused),
    /// not until its transactions have run out.
    admitted: HashMap<maskline_core::CallId, maskline_engine::Admission>,
    effects: VecDeque<Effect>,
    draining: bool,
    hard_stop: Option<Instant>,
    /// When the message being handled arrived, by the real clock (the
    /// setup delay metric starts here).
    received_at: Instant,
}

impl B2bua {
    pub fn new(
        cfg: Config,
        engine: Arc<Engine>,
        wire: Box<dyn Wire + Send>,
        media: Box<dyn MediaPlane>,
        now: Instant,
    ) -> B2bua {
        let mut ep = Endpoint::new(wire, cfg.timers, cfg.trusted.clone(), now);
        ep.set_limits(cfg.limits);
        B2bua {
            ep,
            media,
            by_media: HashMap::new(),
            recorded: HashMap::new(),
            engine,
            cfg,
            next_call: 0,
            calls: HashMap::new(),
            intercepting: HashMap::new(),
            preludes: HashMap::new(),
            admitted: HashMap::new(),
            effects: VecDeque::new(),
            draining: false,
            hard_stop: None,
            received_at: Instant::now(),
        }
    }

    // === driver interface ===

    pub fn handle_bytes(&mut self, bytes: &[u8], peer: Peer, now: Instant) {
        self.received_at = Instant::now();
        self.ep.handle_bytes(bytes, peer, now);
        self.pump();
    }

    pub fn handle_net(&mut self, event: NetEvent, now: Instant) {
        self.received_at = Instant::now();
        self.ep.handle_net(event, now);
        self.pump();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        self.pump();
    }

    /// What the media relay reports.
    pub fn handle_media(&mut self, event: MediaEvent, now: Instant) {
        self.ep.set_now(now);
        self.on_media(event);
        self.pump();
    }

    pub fn handle_resume(&mut self, resume: Resume, now: Instant) {
        self.ep.set_now(now);
        self.on_resume(resume);
        self.pump();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ep.next_timeout()
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// New INVITEs get 503 from now on; calls in progress have `grace` to
    /// finish before they are ended.
    pub fn start_draining(&mut self, grace: Duration, now: Instant) {
        self.ep.set_now(now);
        self.draining = true;
        self.ep.set_draining();
        tracing::info!(calls = self.calls.len(), "SIP draining: new calls get 503");
        self.ep.arm(now + grace, CallTimer::Grace);
    }

    /// Draining is over: every call is gone, or the grace period and the
    /// time to close after it have passed.
    pub fn drained(&self, now: Instant) -> bool {
        self.draining
            && ((self.calls.is_empty() && self.intercepting.is_empty() && self.preludes.is_empty())
                || self.hard_stop.is_some_and(|at| now >= at))
    }

    pub fn calls_left(&self) -> usize {
        self.calls.len()
    }

    /// At the end of a drain: INVITEs still waiting for their intercept
    /// verdict get 503.
    pub fn refuse_intercepting(&mut self) {
        for (sid, p) in std::mem::take(&mut self.intercepting) {
            if let Some((mut media, _)) = p.early {
                media.close(&mut *self.media);
            }
            self.refuse_shutdown(sid, invite::unplaced(p.cdr));
        }
        self.pump();
    }

    // === events ===

    fn pump(&mut self) {
        while let Some(event) = self.ep.poll_event() {
            self.on_event(event);
        }
    }

    fn on_event(&mut self, event: Event<CallLayer>) {
        match event {
            Event::Invite { sid } => self.on_invite(sid),
            Event::InDialog {
                sid,
                dialog: (call, side),
                method,
            } => self.on_in_dialog(sid, call, side, method),
            Event::Ack {
                req,
                dialog: (call, side),
            } => self.on_ack(&req, call, side),
            Event::Cancel {
                sid,
                invite,
                pending,
            } => self.on_cancel(sid, invite, pending),
            Event::Response {
                cid,
                owner: (call, role),
                resp,
            } => self.on_client_response(cid, call, role, &resp),
            Event::ClientDone {
                owner: (call, role),
                timed_out,
            } => {
                self.release(call);
                if timed_out {
                    self.client_timed_out(call, role);
                }
            }
            Event::ServerTimedOut {
                sid,
                owner,
                acked_2xx,
            } => self.on_server_timed_out(sid, owner, acked_2xx),
            Event::Timer(timer) => self.on_timer(timer),
            Event::Refused { req, code } => self.on_refused(&req, code),
        }
    }

    fn new_call_id(&mut self) -> Id {
        self.next_call += 1;
        self.next_call
    }

    /// Starts a client transaction for `call`, which then waits for it.
    fn start_client(
        &mut self,
        method: &Method,
        peer: Peer,
        branch: &str,
        request: Vec<u8>,
        base: Option<Box<ReqBase>>,
        (call, role): (Id, Role),
    ) -> TxId {
        let cid = self
            .ep
            .start_client(method, peer, branch, request, base, (call, role));
        if let Some(c) = self.calls.get_mut(&call) {
            c.holds += 1;
        }
        cid
    }

    /// Cancels client INVITE `cid` of `call`.
    fn cancel(&mut self, cid: TxId, call: Id) {
        if self.ep.cancel(cid, (call, Role::Cancel)).is_some()
            && let Some(c) = self.calls.get_mut(&call)
        {
            c.holds += 1;
        }
    }

    fn on_media(&mut self, event: MediaEvent) {
        if let MediaEvent::Recorded(session, frames) = event {
            self.on_recorded(session, frames);
            return;
        }
        let session = match event {
            MediaEvent::Session(session, _) | MediaEvent::Recorded(session, _) => session,
        };
        let Some(&id) = self.by_media.get(&session) else {
            return;
        };
        if self.preludes.contains_key(&id) {
            match event {
                MediaEvent::Session(_, SessionEvent::Digit(Leg::A, digit)) => {
                    self.prelude_digit(id, digit);
                }
                MediaEvent::Session(_, SessionEvent::PromptDone(Leg::A)) => {
                    self.prelude_prompt_done(id);
                }
                _ => {}
            }
            return;
        }
        match event {
            MediaEvent::Session(_, SessionEvent::Silent(_)) => {
                let call = id;
                if self
                    .calls
                    .get(&call)
                    .is_some_and(|c| c.phase == Phase::Answered)
                {
                    tracing::debug!(call, "no RTP for the timeout: ending the call");
                    self.end_call(call, ReleasedBy::System, ReleaseReason::MediaTimeout, None);
                }
            }
            MediaEvent::Session(session, SessionEvent::PromptDone(Leg::B)) => {
                // The whisper is over: the parties hear each other now.
                if let Some(call) = self.calls.get_mut(&id)
                    && std::mem::replace(&mut call.whispering, false)
                    && call.phase == Phase::Answered
                {
                    self.media.update(session, Update::Bridge(true));
                }
            }
            MediaEvent::Session(_, _) | MediaEvent::Recorded(..) => {}
        }
    }

    fn write_cdr(&mut self, cdr: CallRecord) {
        // The call no longer counts against its tenant's caps.
        self.admitted.remove(&cdr.id);
        metrics::counter!("maskline_calls_total", "outcome" => cdr.release_reason.as_str())
            .increment(1);
        let ack = self.engine.record_call(cdr);
        self.effects.push_back(Effect::Write(ack));
    }
}
