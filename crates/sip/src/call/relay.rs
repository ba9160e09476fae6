//! A call in progress: responses and in-dialog requests crossing from one
//! leg to the other, each rebuilt for the dialog it enters.
//!
//! In-dialog requests are sent to the leg's signalling peer (the trunk or
//! gateway the leg runs over), with the dialog's Request-URI and Route set:
//! trunks are configured peers, and this keeps a peer's Contact from
//! steering Maskline's traffic anywhere else.

use std::time::Duration;

use maskline_core::{EventType, ReleaseReason, ReleasedBy};
use maskline_events::unix_ms;

use super::{B2bua, CallTimer, Held, Id, PendingAck, Phase, Role, ServerOwner, Side};
use crate::endpoint::{ALLOW, ReqBase, Resp, TxId, new_branch, via_value};
use crate::message::{Body, Message, Method, Name, crossing_body, sdp_of, uri_of};

/// An INFO's DTMF, rebuilt rather than copied: nothing else a party put
/// in the body crosses.
fn dtmf_body(req: &Message) -> Option<Body> {
    let digit = super::prelude::info_digit(req)?;
    let duration = std::str::from_utf8(&req.body)
        .ok()
        .and_then(|b| {
            b.lines().find_map(|line| {
                let (name, value) = line.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("duration")
                    .then(|| value.trim().parse::<u32>().ok())?
            })
        })
        .unwrap_or(160)
        .min(10_000);
    Some(Body {
        content_type: "application/dtmf-relay",
        bytes: format!("Signal={}\r\nDuration={duration}\r\n", digit.as_char()).into_bytes(),
    })
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

impl B2bua {
    pub(super) fn on_client_response(&mut self, cid: TxId, call: Id, role: Role, resp: &Message) {
        let Some(code) = resp.code() else {
            return;
        };
        match role {
            Role::Invite => self.on_b_invite_response(cid, call, code, resp),
            Role::Relay { server, to } => {
                self.on_relayed_response(cid, call, server, to, code, resp)
            }
            Role::Bye | Role::Cancel => {}
        }
    }

    fn on_b_invite_response(&mut self, cid: TxId, id: Id, code: u16, resp: &Message) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.b_responded = true;
        if code < 300 {
            call.leg_mut(Side::B).learn_remote(resp, code >= 200);
        }
        if call.cancel_b && code < 200 {
            call.cancel_b = false;
            self.cancel(cid, id);
        }
        let now = self.ep.now();
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
                // Early media: an answer in a provisional response (one
                // we cannot use is ignored; the 2xx will say again).
                let body = sdp_of(resp).and_then(|sdp| {
                    call.media
                        .response(&mut *self.media, Side::B, sdp, false)
                        .ok()
                });
                if ringing {
                    self.record_progress(id, EventType::CallRinging);
                }
                self.relay_held(id, code, body);
            }
            (Phase::Early, 200..=299) => {
                let body = match sdp_of(resp) {
                    Some(sdp) => match call.media.response(&mut *self.media, Side::B, sdp, true) {
                        Ok(body) => Some(body),
                        Err(refused) => {
                            // Answered with media we cannot carry: the
                            // caller is refused, the callee's dialog closed.
                            tracing::debug!(
                                call = id,
                                status = refused.status(),
                                "callee answered with unusable SDP"
                            );
                            self.end_call(
                                id,
                                ReleasedBy::System,
                                ReleaseReason::Failed,
                                Some(refused.status()),
                            );
                            self.send_2xx_ack(id, Side::B, cid, 1, None);
                            self.send_bye(id, Side::B);
                            return;
                        }
                    },
                    None => {
                        call.media.final_without_sdp();
                        None
                    }
                };
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                call.media.answered(&mut *self.media);
                call.phase = Phase::Answered;
                self.answer_prompts(id, now);
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                call.cdr.answered_at = Some(unix_ms());
                call.cdr.final_status = 200;
                let a_cseq = self.ep.request(call.a_invite).map_or(1, |r| r.cseq);
                call.acks[Side::A.index()] = Some(PendingAck {
                    cseq: a_cseq,
                    server: call.a_invite,
                    client: cid,
                    out_cseq: 1,
                });
                if let Some(secs) = call.max_call_seconds {
                    let deadline = now + Duration::from_secs(u64::from(secs));
                    call.deadline = Some(deadline);
                    self.ep.arm(
                        deadline.min(now + super::MAX_TIMER_STEP),
                        CallTimer::MaxDuration(id),
                    );
                }
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

    /// Relays a provisional or 2xx response to the caller once every
    /// progress event recorded before it is durable: what the caller has
    /// heard of, the platform will hear of, even across a crash.
    fn relay_held(&mut self, id: Id, code: u16, body: Option<Body>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.held.is_empty() && call.events_durable >= call.events_issued {
            self.relay_to_caller(id, code, body.as_ref());
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
    pub(super) fn flush_held(&mut self, id: Id, all: bool) {
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
            self.relay_to_caller(id, h.code, h.body.as_ref());
        }
    }

    /// A provisional or 2xx response from the callee, rebuilt for the
    /// caller's INVITE: our tag, our Contact, the caller's Record-Route, the
    /// callee's body.
    fn relay_to_caller(&mut self, id: Id, code: u16, body: Option<&Body>) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let a = call.leg(Side::A);
        let (sid, tag, contact) = (call.a_invite, a.local_tag.clone(), a.contact.clone());
        self.ep.respond(
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
        cid: TxId,
        id: Id,
        server: TxId,
        to: Side,
        code: u16,
        resp: &Message,
    ) {
        if code == 100 {
            return;
        }
        let is_invite = resp.cseq_method == Method::Invite;
        let carries_sdp = matches!(resp.cseq_method, Method::Invite | Method::Update);
        let Some(cseq) = self.ep.request(server).map(|r| r.cseq) else {
            // The requester already has its answer (it cancelled): a late
            // 2xx still needs its ACK, or the far end keeps retransmitting;
            // its SDP still says what that leg now does.
            if let Some(call) = self.calls.get_mut(&id)
                && carries_sdp
                && code >= 200
            {
                match sdp_of(resp).filter(|_| code < 300) {
                    Some(sdp) => {
                        let _ = call.media.response(&mut *self.media, to, sdp, true);
                    }
                    None => call.media.offer_refused(),
                }
            }
            if is_invite && (200..300).contains(&code) {
                self.send_2xx_ack(id, to, cid, resp.cseq, None);
            }
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let from_side = to.other();
        if (200..300).contains(&code)
            && matches!(resp.cseq_method, Method::Invite | Method::Update)
            && let Some(contact) = resp.values(Name::Contact).next()
        {
            call.leg_mut(to).target = uri_of(contact).to_owned();
        }
        if (200..300).contains(&code) && is_invite {
            call.acks[from_side.index()] = Some(PendingAck {
                cseq,
                server,
                client: cid,
                out_cseq: resp.cseq,
            });
        }
        let contact = call.leg(from_side).contact.clone();
        let body = match sdp_of(resp).filter(|_| carries_sdp && code < 300) {
            Some(sdp) => call
                .media
                .response(&mut *self.media, to, sdp, code >= 200)
                .ok(),
            None => {
                if carries_sdp && code >= 300 {
                    call.media.offer_refused();
                } else if carries_sdp && code >= 200 {
                    call.media.final_without_sdp();
                }
                crossing_body(resp)
            }
        };
        let wants_contact =
            code < 300 && matches!(resp.cseq_method, Method::Invite | Method::Update);
        self.ep.respond(
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

    // === requests on established calls ===

    /// An ACK for a 2xx relayed to `side`: acknowledged there, and passed
    /// on (with its body) to the leg that sent the 2xx.
    pub(super) fn on_ack(&mut self, req: &Message, id: Id, side: Side) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(pending) = call.acks[side.index()].filter(|p| p.cseq == req.cseq) else {
            return;
        };
        call.acks[side.index()] = None;
        // An answer to an offer that came in a 2xx.
        let body = sdp_of(req)
            .filter(|_| call.media.awaits_answer_from(side))
            .and_then(|sdp| call.media.response(&mut *self.media, side, sdp, true).ok());
        self.ep.acked_2xx(pending.server);
        self.send_2xx_ack(
            id,
            side.other(),
            pending.client,
            pending.out_cseq,
            body.as_ref(),
        );
    }

    /// ACKs a 2xx on `side` (end to end: carrying the other side's ACK body).
    pub(super) fn send_2xx_ack(
        &mut self,
        id: Id,
        side: Side,
        client: TxId,
        cseq: u32,
        body: Option<&Body>,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let leg = call.leg(side);
        let bytes = leg.request(&self.cfg.advertise, &Method::Ack, cseq, &new_branch(), body);
        let peer = leg.peer;
        self.ep.send_2xx_ack(client, &peer, bytes);
    }

    pub(super) fn on_in_dialog(&mut self, sid: TxId, id: Id, side: Side, method: Method) {
        if self.preludes.contains_key(&id) {
            self.prelude_request(sid, id, &method);
            return;
        }
        self.ep.set_server_owner(
            sid,
            ServerOwner {
                call: Some(id),
                relay: None,
            },
        );
        let phase = self.calls.get(&id).map_or(Phase::Ended, |c| c.phase);
        match method {
            Method::Bye => {
                self.ep.respond(sid, 200, Resp::default());
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
            Method::Options => self.ep.respond(
                sid,
                200,
                Resp {
                    headers: &[("Allow", ALLOW)],
                    ..Resp::default()
                },
            ),
            _ if phase == Phase::Ended => self.ep.respond(sid, 481, Resp::default()),
            Method::Invite | Method::Update | Method::Info => {
                if method == Method::Invite {
                    self.ep.respond(sid, 100, Resp::default());
                }
                self.relay(sid, id, side, &method);
            }
            _ => self.ep.respond(
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
    fn relay(&mut self, sid: TxId, id: Id, side: Side, method: &Method) {
        let Some(cid) = self.relay_request(sid, id, side, method) else {
            return;
        };
        self.ep.set_server_owner(
            sid,
            ServerOwner {
                call: Some(id),
                relay: Some(cid),
            },
        );
        if *method == Method::Invite {
            // Timer C (RFC 3261 §16.6): a re-INVITE that gets a provisional
            // answer and then nothing must not wait forever.
            let at = self.ep.now() + self.ep.timers().t1 * 64;
            self.ep.arm(
                at,
                CallTimer::TimerC {
                    cid,
                    call: id,
                    server: sid,
                },
            );
        }
    }

    fn relay_request(&mut self, sid: TxId, id: Id, side: Side, method: &Method) -> Option<TxId> {
        let call = self.calls.get_mut(&id)?;
        if call.leg(side.other()).remote_tag.is_none() {
            // The other leg's dialog does not exist yet.
            self.ep.respond(
                sid,
                500,
                Resp {
                    headers: &[("Retry-After", "1")],
                    ..Resp::default()
                },
            );
            return None;
        }
        let req = self.ep.request(sid)?;
        let body = match sdp_of(req).filter(|_| matches!(method, Method::Invite | Method::Update)) {
            Some(sdp) => match call.media.request(&mut *self.media, side, sdp) {
                Ok(body) => Some(body),
                Err(refused) => {
                    self.ep.respond(
                        sid,
                        refused.status(),
                        Resp {
                            headers: &[("Warning", refused.warning())],
                            ..Resp::default()
                        },
                    );
                    return None;
                }
            },
            None => dtmf_body(req),
        };
        let other = call.leg_mut(side.other());
        other.cseq += 1;
        let cseq = other.cseq;
        let peer = other.peer;
        let branch = new_branch();
        let adv = &self.cfg.advertise;
        let bytes = other.request(adv, method, cseq, &branch, body.as_ref());
        let base = (*method == Method::Invite).then(|| {
            Box::new(ReqBase {
                uri: other.target.clone(),
                via: via_value(adv, other.peer.transport, &branch),
                branch: branch.clone(),
                from: other.local.clone(),
                to: other.remote.clone(),
                call_id: other.call_id.clone(),
                cseq,
                routes: other.routes.clone(),
            })
        });
        Some(self.start_client(
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
}
