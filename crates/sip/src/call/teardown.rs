//! The end of a call: CANCEL, BYE, timeouts and limits, the drain at
//! shutdown, and the CDR.

use maskline_core::{ReleaseReason, ReleasedBy};
use maskline_events::unix_ms;

use super::invite::unplaced;
use super::{B2bua, CLOSE_AFTER_GRACE, CallTimer, Id, Phase, Role, ServerOwner, Side};
use crate::endpoint::{Resp, TxId, new_branch};
use crate::message::Method;

impl B2bua {
    pub(super) fn on_cancel(&mut self, sid: TxId, invite: TxId, pending: bool) {
        let owner = self.ep.server_owner(invite).unwrap_or_default();
        // The caller's INVITE of a call we placed (not a re-INVITE).
        let placed = owner
            .call
            .filter(|call| self.calls.get(call).is_some_and(|c| c.a_invite == invite));
        // §9.2: the 200 to a CANCEL carries the To tag of the INVITE's answer
        // (the caller's leg of a call, or a prelude's early dialog).
        let tag = placed
            .and_then(|call| self.calls.get(&call))
            .map(|call| call.leg(Side::A).local_tag.clone())
            .or_else(|| {
                owner
                    .call
                    .and_then(|id| self.preludes.get(&id))
                    .map(|p| p.tag.clone())
            });
        self.ep.respond(
            sid,
            200,
            Resp {
                to_tag: tag.as_deref(),
                ..Resp::default()
            },
        );
        if !pending {
            return;
        }
        match (placed, owner) {
            (Some(call), _) => {
                tracing::debug!(call, "caller cancelled");
                self.end_call(
                    call,
                    ReleasedBy::Caller,
                    ReleaseReason::Cancelled,
                    Some(487),
                );
            }
            // §9.2: a CANCEL of a re-INVITE ends that request, not the call.
            (
                None,
                ServerOwner {
                    call: Some(call),
                    relay: Some(relay),
                },
            ) => {
                self.ep.respond(invite, 487, Resp::default());
                if self.ep.client_proceeding(relay) {
                    self.cancel(relay, call);
                }
            }
            (None, ServerOwner { call: Some(id), .. }) if self.preludes.contains_key(&id) => {
                tracing::debug!(call = id, "caller cancelled during the prelude");
                self.prelude_cancelled(id);
            }
            _ => {
                let early_tag = self
                    .intercepting
                    .get(&invite)
                    .and_then(|p| p.early.as_ref())
                    .map(|(_, tag)| tag.clone());
                self.ep.respond(
                    invite,
                    487,
                    Resp {
                        to_tag: early_tag.as_deref(),
                        ..Resp::default()
                    },
                );
                if let Some(p) = self.intercepting.remove(&invite) {
                    if let Some((mut media, _)) = p.early {
                        media.close(&mut *self.media);
                    }
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

    pub(super) fn on_timer(&mut self, timer: CallTimer) {
        let now = self.ep.now();
        match timer {
            CallTimer::Ring(call) => {
                if self
                    .calls
                    .get(&call)
                    .is_some_and(|c| c.phase == Phase::Early)
                {
                    tracing::debug!(call, "ring timeout");
                    self.end_call(call, ReleasedBy::System, ReleaseReason::NoAnswer, Some(480));
                }
            }
            CallTimer::MaxDuration(call) => {
                let Some(deadline) = self
                    .calls
                    .get(&call)
                    .filter(|c| c.phase == Phase::Answered)
                    .and_then(|c| c.deadline)
                else {
                    return;
                };
                if now >= deadline {
                    tracing::debug!(call, "max_call_seconds reached");
                    self.end_call(call, ReleasedBy::System, ReleaseReason::MaxDuration, None);
                } else {
                    // Long limits are waited for in steps, so the timer of a
                    // call that ended early is gone within one step.
                    self.ep.arm(
                        deadline.min(now + super::MAX_TIMER_STEP),
                        CallTimer::MaxDuration(call),
                    );
                }
            }
            CallTimer::TimerC { cid, call, server } => {
                if !self.ep.client_pending(cid) || self.ep.client_cancelled(cid) {
                    return;
                }
                // Give up on the re-INVITE and on the call.
                self.cancel(cid, call);
                self.ep.respond(server, 408, Resp::default());
                tracing::debug!(call, "a leg left a re-INVITE unanswered: ending the call");
                self.end_call(call, ReleasedBy::System, ReleaseReason::PeerTimeout, None);
            }
            CallTimer::Digits { id, generation } => self.prelude_timeout(id, generation),
            CallTimer::LastMinute(call) => self.last_minute(call),
            CallTimer::PreludeLimit(id) => self.prelude_limit(id),
            CallTimer::Grace => {
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
                let preludes: Vec<Id> = self.preludes.keys().copied().collect();
                for id in preludes {
                    self.finish_prelude(id, |b2bua, sid, cdr, _| b2bua.refuse_shutdown(sid, cdr));
                }
                self.hard_stop = Some(now + CLOSE_AFTER_GRACE);
            }
        }
    }

    /// A client transaction of `id` got no final response.
    pub(super) fn client_timed_out(&mut self, id: Id, role: Role) {
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
                self.ep.respond(server, 408, Resp::default());
                if self.calls.get(&id).is_some_and(|c| c.phase != Phase::Ended) {
                    tracing::debug!(call = id, "a leg stopped answering: ending the call");
                    self.end_call(id, ReleasedBy::System, ReleaseReason::PeerTimeout, None);
                }
            }
            Role::Bye | Role::Cancel => {}
        }
    }

    /// A server INVITE transaction gave up waiting for its ACK.
    pub(super) fn on_server_timed_out(&mut self, sid: TxId, owner: ServerOwner, acked_2xx: bool) {
        let Some(call) = owner.call else {
            return;
        };
        let unacked_answer = !acked_2xx
            && self
                .calls
                .get(&call)
                .is_some_and(|c| c.a_invite == sid && c.phase == Phase::Answered);
        if unacked_answer {
            // §13.3.1.4: a 2xx never ACKed ends the session.
            tracing::debug!(call, "caller never acknowledged the answer");
            self.end_call(call, ReleasedBy::System, ReleaseReason::PeerTimeout, None);
        }
    }

    /// A client transaction of `call` will report no more.
    pub(super) fn release(&mut self, call: Id) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.holds = c.holds.saturating_sub(1);
        }
        self.maybe_reap(call);
    }

    /// Forgets an ended call once nothing will report to it any more.
    fn maybe_reap(&mut self, call: Id) {
        let done = self
            .calls
            .get(&call)
            .is_some_and(|c| c.phase == Phase::Ended && c.holds == 0);
        if done && let Some(c) = self.calls.remove(&call) {
            for leg in &c.legs {
                self.ep.remove_dialog(&leg.local_tag);
            }
            metrics::gauge!("maskline_calls_active").set(self.calls.len() as f64);
        }
    }

    pub(super) fn send_bye(&mut self, id: Id, side: Side) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let leg = call.leg_mut(side);
        leg.cseq += 1;
        let branch = new_branch();
        let bytes = leg.request(&self.cfg.advertise, &Method::Bye, leg.cseq, &branch, None);
        let peer = leg.peer;
        self.start_client(&Method::Bye, peer, &branch, bytes, None, (id, Role::Bye));
    }

    /// Ends a call once: answers or tears down each leg as needed and
    /// writes its CDR.
    pub(super) fn end_call(
        &mut self,
        id: Id,
        by: ReleasedBy,
        reason: ReleaseReason,
        a_status: Option<u16>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let was = call.phase;
        if was == Phase::Ended {
            return;
        }
        // The caller cancelled while the callee's answer was held for its
        // event: the caller never hears it, its INVITE gets the refusal.
        let unheard_answer = was == Phase::Answered
            && by == ReleasedBy::Caller
            && self.ep.request(call.a_invite).is_some();
        if unheard_answer {
            call.held.clear();
            call.cdr.final_status = a_status.unwrap_or(487);
            let (sid, tag) = (call.a_invite, call.leg(Side::A).local_tag.clone());
            // The callee's 200 is ACKed here: the caller's ACK never comes.
            let ack = call.acks[Side::A.index()].take();
            self.ep.respond(
                sid,
                a_status.unwrap_or(487),
                Resp {
                    to_tag: Some(&tag),
                    ..Resp::default()
                },
            );
            if let Some(p) = ack {
                self.send_2xx_ack(id, Side::B, p.client, p.out_cseq, None);
            }
        }
        // What the caller has not heard yet goes before the end.
        self.flush_held(id, true);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.phase = Phase::Ended;
        call.media.close(&mut *self.media);
        let media_id = call.media.id;
        self.by_media.remove(&media_id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.cdr.released_by = by;
        call.cdr.release_reason = reason;
        call.cdr.ended_at = unix_ms();
        match was {
            Phase::Early => {
                let code = a_status.unwrap_or(487);
                call.cdr.final_status = code;
                let sid = call.a_invite;
                let tag = call.leg(Side::A).local_tag.clone();
                let b_invite = call.b_invite;
                let b_responded = call.b_responded;
                self.ep.respond(
                    sid,
                    code,
                    Resp {
                        to_tag: Some(&tag),
                        ..Resp::default()
                    },
                );
                // Cancel the outbound leg unless it already ended.
                if self.ep.client_pending(b_invite) && by != ReleasedBy::Callee {
                    if b_responded {
                        self.cancel(b_invite, id);
                    } else if let Some(c) = self.calls.get_mut(&id) {
                        // §9.1: not before a provisional response.
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
            if call.recording {
                // Its `call.recorded` waits for the relay to finish the file.
                self.recorded.insert(call.media.id, cdr.clone());
            }
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
