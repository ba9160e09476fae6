//! A new call: the INVITE's decision, the intercept question, refusals,
//! and placing the masked outbound leg.

use std::collections::VecDeque;
use std::time::Instant;

use maskline_core::{
    CallId, CallRecord, Channel, Connect, Decision, EventType, Inbound, Number, Prompt, Refusal,
    RejectReason, ReleaseReason, ReleasedBy, q850_text,
};
use maskline_events::payload::rfc3339_millis;
use maskline_events::unix_ms;

use maskline_media::prompts::PromptName;
use maskline_media::relay::Update;
use maskline_media::session::Leg;

use super::media::CallMedia;
use super::{
    B2bua, Call, CallTimer, Effect, Intercepting, Phase, Question, Resume, Role, ServerOwner, Side,
};
use crate::dialog::{Dialog, contact_value};
use crate::endpoint::{ALLOW, ReqBase, Resp, TxId, new_branch, token, via_value};
use crate::intercept::{Intercept, InterceptRequest, Verdict};
use crate::message::{Body, Builder, Message, Method, Name, sdp_of, uri_of, uri_user};
use crate::transport::Peer;

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
pub(super) fn unplaced(mut cdr: CallRecord) -> CallRecord {
    cdr.direction = None;
    cdr.callee = None;
    cdr
}

/// A refusal's SIP status and the text of its SIP Reason.
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
        Refusal::DestinationNotAllowed => (403, "SIP;cause=403;text=\"destination not allowed\""),
        Refusal::CallLimit => (503, "SIP;cause=503;text=\"call limit\""),
    }
}

/// Splits `<X>,<ext>` (a shared number's extension dialled with it).
fn split_extension(user: &str) -> (&str, Option<&str>) {
    user.split_once(',')
        .map_or((user, None), |(x, e)| (x, Some(e)))
}

/// A new INVITE's CDR as far as the request tells (X, caller), and the
/// extension dialled with X (`Err` when it is not one).
fn cdr_of(
    req: &Message,
    region: maskline_core::Region,
) -> (CallRecord, Result<Option<maskline_core::Extension>, ()>) {
    let invited_at = unix_ms();
    let (x_user, ext_digits) = match uri_user(req.uri()).map(split_extension) {
        Some((x, e)) => (Some(x), e),
        None => (None, None),
    };
    let extension = match ext_digits.map(str::parse::<maskline_core::Extension>) {
        None => Ok(None),
        Some(Ok(e)) => Ok(Some(e)),
        Some(Err(_)) => Err(()),
    };
    let cdr = CallRecord {
        id: CallId(uuid::Uuid::now_v7().as_u128()),
        tenant: None,
        binding: None,
        direction: None,
        x: x_user.and_then(|u| sip_number(u, region)),
        caller: caller_user(req).and_then(|u| sip_number(u, region)),
        callee: None,
        invited_at,
        ringing_at: None,
        answered_at: None,
        ended_at: invited_at,
        final_status: 0,
        released_by: ReleasedBy::System,
        release_reason: ReleaseReason::Refused,
        refusal: None,
        erased: Default::default(),
    };
    (cdr, extension)
}

impl B2bua {
    /// An INVITE the endpoint answered statelessly: recorded like any
    /// refused call, under the tenant and binding it would have reached.
    pub(super) fn on_refused(&mut self, req: &Message, code: u16) {
        let (mut cdr, extension) = cdr_of(req, self.cfg.region);
        if let (Some(x), Some(caller)) = (cdr.x, cdr.caller) {
            let (tenant, binding) = match self.engine.decide(&Inbound {
                caller,
                called: x,
                extension: extension.ok().flatten(),
                channel: Channel::Voice,
            }) {
                Decision::Connect(c) => (Some(c.tenant), Some(c.binding)),
                Decision::CollectExtension { tenant } => (Some(tenant), None),
                Decision::Announce {
                    tenant, binding, ..
                } => (tenant, binding),
                Decision::Reject {
                    tenant, binding, ..
                } => (Some(tenant), Some(binding)),
            };
            cdr.tenant = tenant;
            cdr.binding = binding;
        }
        cdr.release_reason = ReleaseReason::Failed;
        cdr.final_status = code;
        cdr.ended_at = unix_ms();
        self.write_cdr(cdr);
    }

    pub(super) fn on_invite(&mut self, sid: TxId) {
        let started = self.received_at;
        let Some(req) = self.ep.request(sid) else {
            return;
        };
        let (mut cdr, extension) = cdr_of(req, self.cfg.region);
        let (x, caller) = (cdr.x, cdr.caller);
        let max_forwards = req.max_forwards();
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
                self.proceed(sid, connect, cdr, (max_forwards, started), None);
            }
            Decision::CollectExtension { tenant } => {
                cdr.tenant = Some(tenant);
                self.collect_extension(sid, (tenant, x, caller), cdr, max_forwards, started);
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
                self.announce_then_refuse(sid, refusal, cdr);
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
                self.announce_then_refuse(sid, refusal, cdr);
            }
        }
    }

    /// A `connect` decision for INVITE `sid` (dialled with its extension,
    /// or after a prelude collected it: `early`, its media and tag): the
    /// CDR learns where the call goes, then the tenant's intercept is asked
    /// or the call is placed.
    pub(super) fn proceed(
        &mut self,
        sid: TxId,
        connect: Connect,
        mut cdr: CallRecord,
        (max_forwards, started): (u32, Instant),
        early: Option<(CallMedia, String)>,
    ) {
        cdr.tenant = Some(connect.tenant);
        cdr.binding = Some(connect.binding);
        // The tenant's rules as they are now (they may have changed since
        // the binding was made), and its caps: before anything is asked or
        // placed.
        let rules = self.engine.call_rules(connect.tenant);
        let refusal = if !rules.allows(connect.to) {
            Some(Refusal::DestinationNotAllowed)
        } else {
            match self.engine.admit_call(connect.tenant, rules.caps) {
                Ok(admission) => {
                    self.admitted.insert(cdr.id, admission);
                    None
                }
                Err(over) => {
                    metrics::counter!("maskline_call_limit_refusals_total", "cap" => match over {
                        maskline_core::OverCap::Concurrent => "concurrent",
                        maskline_core::OverCap::PerSecond => "per_second",
                    })
                    .increment(1);
                    Some(Refusal::CallLimit)
                }
            }
        };
        if let Some(refusal) = refusal {
            let tag = early.map(|(mut media, tag)| {
                media.close(&mut *self.media);
                tag
            });
            self.refuse_in(sid, refusal, cdr, tag);
            return;
        }
        cdr.direction = Some(connect.direction);
        cdr.callee = Some(connect.to);
        let intercept = self
            .engine
            .webhook(connect.tenant)
            .and_then(|w| Some((w.intercept.clone()?, w.secret.clone())))
            .filter(|_| self.cfg.outbound.is_some());
        match (intercept, early) {
            (Some((target, secret)), early) => {
                let pending = Intercepting {
                    connect,
                    cdr,
                    max_forwards,
                    started,
                    early,
                };
                self.intercept(sid, pending, target, secret);
            }
            (None, Some((media, tag))) => {
                self.connect_early(sid, connect, cdr, (max_forwards, started), media, tag);
            }
            (None, None) => self.connect(sid, connect, cdr, max_forwards, started, false),
        }
    }

    /// A new call while draining: 503, try again later (elsewhere).
    pub(super) fn refuse_shutdown(&mut self, sid: TxId, mut cdr: CallRecord) {
        cdr.release_reason = ReleaseReason::Shutdown;
        self.refuse(sid, 503, &[("Retry-After", "30")], cdr);
    }

    pub(super) fn refuse_with(&mut self, sid: TxId, refusal: Refusal, cdr: CallRecord) {
        self.refuse_in(sid, refusal, cdr, None);
    }

    /// Refuses, in the early dialog of `tag` when one was opened.
    pub(super) fn refuse_in(
        &mut self,
        sid: TxId,
        refusal: Refusal,
        mut cdr: CallRecord,
        tag: Option<String>,
    ) {
        let (code, sip) = treatment(refusal);
        let cause = refusal.q850();
        let q850 = format!("Q.850;cause={cause};text=\"{}\"", q850_text(cause));
        cdr.refusal = Some(refusal);
        cdr.release_reason = ReleaseReason::Refused;
        self.refuse_tagged(sid, code, &[("Reason", sip), ("Reason", &q850)], cdr, tag);
    }

    fn refuse(&mut self, sid: TxId, code: u16, headers: &[(&str, &str)], cdr: CallRecord) {
        self.refuse_tagged(sid, code, headers, cdr, None);
    }

    fn refuse_tagged(
        &mut self,
        sid: TxId,
        code: u16,
        headers: &[(&str, &str)],
        mut cdr: CallRecord,
        tag: Option<String>,
    ) {
        let tag = tag.unwrap_or_else(token);
        self.ep.respond(
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

    /// Asks the tenant's intercept callback about a call, without waiting:
    /// the answer comes back as a [`Resume::Verdict`].
    pub(super) fn intercept(
        &mut self,
        sid: TxId,
        pending: Intercepting,
        target: Intercept,
        secret: String,
    ) {
        // The caller stops retransmitting while the tenant thinks (after a
        // prelude's 183 it already has).
        if pending.early.is_none() {
            self.ep.respond(sid, 100, Resp::default());
        }
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
        self.effects.push_back(Effect::Intercept(Box::new(Question {
            sid,
            target,
            secret,
            request,
        })));
    }

    pub(super) fn on_resume(&mut self, resume: Resume) {
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
                let (early, tag) = match p.early {
                    Some((media, tag)) => (Some(media), Some(tag)),
                    None => (None, None),
                };
                match (verdict, early) {
                    (Verdict::Allow, Some(media)) if !self.draining => {
                        let tag = tag.unwrap_or_else(token);
                        let at = (p.max_forwards, p.started);
                        self.connect_early(sid, p.connect, p.cdr, at, media, tag);
                    }
                    (Verdict::Allow, None) if !self.draining => {
                        self.connect(sid, p.connect, p.cdr, p.max_forwards, p.started, true);
                    }
                    (verdict, early) => {
                        if let Some(mut media) = early {
                            media.close(&mut *self.media);
                        }
                        let cdr = unplaced(p.cdr);
                        match verdict {
                            Verdict::Allow => self.refuse_shutdown(sid, cdr),
                            Verdict::Deny { reason } => {
                                tracing::debug!(cdr = %cdr.id, reason = reason.as_deref().unwrap_or(""), "intercept denied the call");
                                self.refuse_in(sid, Refusal::Intercepted, cdr, tag);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Records a progress event of `call`; responses relayed to the caller
    /// from now on wait until it is durable.
    pub(super) fn record_progress(&mut self, call: super::Id, kind: EventType) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(ack) = self.engine.record_call_progress(kind, &c.cdr) {
            c.events_issued += 1;
            self.effects.push_back(Effect::Progress(ack, call));
        }
    }

    fn connect(
        &mut self,
        sid: TxId,
        connect: Connect,
        cdr: CallRecord,
        max_forwards: u32,
        started: Instant,
        trying_sent: bool,
    ) {
        if self.cfg.outbound.is_none() {
            self.refuse_with(sid, Refusal::NoGateway, cdr);
            return;
        }
        let cdr = if connect.pre_connect {
            // The caller hears pre_connect (early media in our own 183)
            // while the callee is called; without an offer to answer, the
            // call goes on without it.
            match self.open_prelude(sid, cdr) {
                Ok(id) => {
                    if let Some((_, media, tag, cdr)) = self.take_prelude(id) {
                        let prompt = self.prompt(cdr.tenant, PromptName::PreConnect);
                        self.media.update(
                            media.id,
                            Update::Play {
                                leg: Leg::A,
                                prompt,
                                plays: 1,
                            },
                        );
                        self.connect_early(sid, connect, cdr, (max_forwards, started), media, tag);
                    }
                    return;
                }
                Err(cdr) => *cdr,
            }
        } else {
            cdr
        };
        let mut media = match CallMedia::open(&mut *self.media) {
            Ok(media) => media,
            Err(e) => {
                // No port pair left: this node is full, another may not be.
                tracing::warn!(error = %e, "cannot anchor a call's media");
                metrics::counter!("maskline_media_refusals_total").increment(1);
                let mut cdr = unplaced(cdr);
                cdr.release_reason = ReleaseReason::Failed;
                self.refuse(sid, 503, &[("Retry-After", "5")], cdr);
                return;
            }
        };
        let Some(req) = self.ep.request(sid) else {
            media.close(&mut *self.media);
            self.admitted.remove(&cdr.id);
            return;
        };
        let offer = match sdp_of(req) {
            None => Ok(None),
            Some(sdp) => media.request(&mut *self.media, Side::A, sdp).map(Some),
        };
        let offer = match offer {
            Ok(offer) => offer,
            Err(refused) => {
                media.close(&mut *self.media);
                let mut cdr = unplaced(cdr);
                cdr.release_reason = ReleaseReason::Failed;
                self.refuse(
                    sid,
                    refused.status(),
                    &[("Warning", refused.warning())],
                    cdr,
                );
                return;
            }
        };
        self.place(
            sid,
            connect,
            cdr,
            (max_forwards, started, trying_sent),
            (media, offer, None),
        );
    }

    /// Places the call after a prelude collected its extension: the media
    /// and the early dialog with the caller exist already.
    pub(super) fn connect_early(
        &mut self,
        sid: TxId,
        connect: Connect,
        cdr: CallRecord,
        (max_forwards, started): (u32, Instant),
        mut media: CallMedia,
        tag: String,
    ) {
        if self.cfg.outbound.is_none() {
            media.close(&mut *self.media);
            self.refuse_in(sid, Refusal::NoGateway, cdr, Some(tag));
            return;
        }
        if self.draining {
            media.close(&mut *self.media);
            self.refuse_shutdown(sid, unplaced(cdr));
            return;
        }
        let offer = media.offer_to_callee(self.media.addr());
        self.place(
            sid,
            connect,
            cdr,
            (max_forwards, started, true),
            (media, offer, Some(tag)),
        );
    }

    /// Builds both legs and sends the outbound INVITE.
    fn place(
        &mut self,
        sid: TxId,
        connect: Connect,
        cdr: CallRecord,
        (max_forwards, started, trying_sent): (u32, Instant, bool),
        (mut media, offer, a_tag): (CallMedia, Option<Body>, Option<String>),
    ) {
        let (Some(out), Some(req), Some(a_peer)) =
            (self.cfg.outbound, self.ep.request(sid), self.ep.peer(sid))
        else {
            media.close(&mut *self.media);
            self.admitted.remove(&cdr.id);
            return;
        };
        let adv = self.cfg.advertise.as_str();
        let a_tag = a_tag.unwrap_or_else(token);
        let a_leg = Dialog {
            call_id: req.call_id().to_owned(),
            local: format!("{};tag={a_tag}", req.to()),
            local_tag: a_tag,
            remote: req.from().to_owned(),
            remote_tag: req.from_tag().map(str::to_owned),
            target: req
                .values(Name::Contact)
                .next()
                .map_or_else(|| uri_of(req.from()), uri_of)
                .to_owned(),
            routes: req.values(Name::RecordRoute).map(str::to_owned).collect(),
            cseq: 0,
            peer: a_peer,
            contact: contact_value(&connect.caller_id, adv, a_peer.transport),
        };
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
        let bytes = b.finish_with(offer.as_ref());
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
        let b_leg = Dialog {
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
        let call = self.new_call_id();
        self.by_media.insert(media.id, call);
        self.ep.add_dialog(
            a_leg.local_tag.clone(),
            a_leg.call_id.clone(),
            &a_leg.peer,
            (call, Side::A),
        );
        self.ep.add_dialog(
            b_leg.local_tag.clone(),
            b_leg.call_id.clone(),
            &b_leg.peer,
            (call, Side::B),
        );
        self.ep.set_server_owner(
            sid,
            ServerOwner {
                call: Some(call),
                relay: None,
            },
        );
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
                // A call no binding bounds still ends: an open line through
                // the carrier trunk is what toll fraud runs on.
                max_call_seconds: Some(
                    connect
                        .max_call_seconds
                        .unwrap_or(super::DEFAULT_MAX_CALL_SECONDS),
                ),
                record: connect.record,
                recording: false,
                callee_whisper: connect.callee_whisper,
                whispering: false,
                warn_before_end: connect.warn_before_end_seconds,
                deadline: None,
                media,
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
        let cid = self.start_client(
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
            self.ep.respond(sid, 100, Resp::default());
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.b_invite = cid;
        }
        let ring_at = self.ep.now() + self.cfg.ring_timeout;
        self.ep.arm(ring_at, CallTimer::Ring(call));
    }
}
