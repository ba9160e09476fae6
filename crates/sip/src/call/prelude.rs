//! Before a call, or instead of one: Maskline answers the caller itself
//! with early media (`183` with our SDP), to announce why a call is
//! refused before refusing it, or to collect the extension of a shared
//! (`axe`) number: `enter_extension`, digits by RFC 4733, in-band tones or
//! SIP INFO, ended by `#` or the extension's length, `invalid_extension`
//! and three tries. The early dialog's tag becomes the call's if it
//! connects.

use std::time::{Duration, Instant};

use maskline_core::{
    CallRecord, Channel, Decision, Extension, Inbound, Number, Refusal, ReleaseReason, ReleasedBy,
    TenantId,
};
use maskline_events::unix_ms;
use maskline_media::dtmf::Digit;
use maskline_media::prompts::PromptName;
use maskline_media::relay::Update;
use maskline_media::session::Leg;

use super::media::CallMedia;
use super::{B2bua, CallTimer, Id, ServerOwner, Side};
use crate::dialog::contact_value;
use crate::endpoint::{Resp, TxId, token};
use crate::message::{Message, Name, sdp_of};

/// How long the caller may pause between digits, or before the first once
/// the prompt has ended.
const DIGIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Wrong or missing extensions before the call is refused.
const TRIES: u8 = 3;
/// The longest a caller is kept in a prelude, whatever it keys.
const PRELUDE_LIMIT: Duration = Duration::from_secs(60);

pub(super) struct Prelude {
    pub sid: TxId,
    pub media: CallMedia,
    /// Our To tag in the early dialog with the caller.
    pub tag: String,
    pub cdr: CallRecord,
    state: State,
    /// Bumped at every step, so that a stale timer does nothing.
    generation: u32,
}

enum State {
    /// Playing the reason for a refusal; then the final response.
    Announcing(Refusal),
    Collecting(Collecting),
}

struct Collecting {
    tenant: TenantId,
    x: Number,
    caller: Number,
    digits: String,
    tries: u8,
    /// A prompt plays: digits interrupt it.
    playing: bool,
    max_forwards: u32,
    started: Instant,
}

/// The prompt that announces a refusal, if it has one.
pub(super) fn announcement(refusal: Refusal) -> Option<PromptName> {
    match refusal {
        Refusal::Expired => Some(PromptName::Expired),
        Refusal::NoBinding | Refusal::NoB => Some(PromptName::NoBinding),
        Refusal::DirectionForbidden | Refusal::Intercepted | Refusal::DestinationNotAllowed => {
            Some(PromptName::Forbidden)
        }
        Refusal::ExtensionRequired
        | Refusal::InvalidNumber
        | Refusal::NoGateway
        | Refusal::CallLimit => None,
    }
}

/// A digit from an INFO body (`application/dtmf-relay`'s `Signal=`, or
/// `application/dtmf`'s bare digit).
pub(super) fn info_digit(req: &Message) -> Option<Digit> {
    let body = std::str::from_utf8(&req.body).ok()?;
    let content_type = req.header(Name::ContentType)?.to_ascii_lowercase();
    let signal = if content_type.starts_with("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?
    } else if content_type.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let mut chars = signal.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Digit::from_char(c),
        _ => None,
    }
}

impl B2bua {
    /// Answers the caller's INVITE `sid` with early media. Gives the CDR
    /// back when that cannot be (no SDP offer, no port, an offer we cannot
    /// take): the caller is then answered without a prompt.
    pub(super) fn open_prelude(
        &mut self,
        sid: TxId,
        cdr: CallRecord,
    ) -> Result<Id, Box<CallRecord>> {
        let Some(x) = cdr.x else {
            return Err(Box::new(cdr));
        };
        let Ok(mut media) = CallMedia::open(&mut *self.media) else {
            return Err(Box::new(cdr));
        };
        let (Some(req), Some(peer)) = (self.ep.request(sid), self.ep.peer(sid)) else {
            media.close(&mut *self.media);
            return Err(Box::new(cdr));
        };
        let call_id = req.call_id().to_owned();
        let answer = sdp_of(req)
            .ok_or(())
            .and_then(|sdp| {
                media
                    .request(&mut *self.media, Side::A, sdp)
                    .map_err(|_| ())
            })
            .and_then(|_| media.answer_here(&mut *self.media).map_err(|_| ()));
        let Ok(answer) = answer else {
            media.close(&mut *self.media);
            return Err(Box::new(cdr));
        };
        let tag = token();
        let contact = contact_value(&x, &self.cfg.advertise, peer.transport);
        self.ep.respond(
            sid,
            183,
            Resp {
                to_tag: Some(&tag),
                contact: Some(&contact),
                record_route: true,
                body: Some(&answer),
                ..Resp::default()
            },
        );
        let id = self.new_call_id();
        self.ep
            .add_dialog(tag.clone(), call_id, &peer, (id, Side::A));
        self.ep.set_server_owner(
            sid,
            ServerOwner {
                call: Some(id),
                relay: None,
            },
        );
        self.by_media.insert(media.id, id);
        let limit = self.ep.now() + PRELUDE_LIMIT;
        self.ep.arm(limit, CallTimer::PreludeLimit(id));
        self.preludes.insert(
            id,
            Prelude {
                sid,
                media,
                tag,
                cdr,
                state: State::Announcing(Refusal::NoBinding),
                generation: 0,
            },
        );
        Ok(id)
    }

    fn play(&mut self, id: Id, name: PromptName) {
        let Some(p) = self.preludes.get(&id) else {
            return;
        };
        let prompt = self.prompt(p.cdr.tenant, name);
        self.media.update(
            p.media.id,
            Update::Play {
                leg: Leg::A,
                prompt,
                plays: 1,
            },
        );
    }

    /// Turns prelude `id` into the start of a call: its media and early
    /// dialog, and its CDR.
    pub(super) fn take_prelude(&mut self, id: Id) -> Option<(TxId, CallMedia, String, CallRecord)> {
        let p = self.preludes.remove(&id)?;
        self.by_media.remove(&p.media.id);
        self.ep.remove_dialog(&p.tag);
        Some((p.sid, p.media, p.tag, p.cdr))
    }

    /// Refuses with `refusal`, after its announcement when there is one
    /// and the caller can hear it.
    pub(super) fn announce_then_refuse(&mut self, sid: TxId, refusal: Refusal, cdr: CallRecord) {
        let Some(name) = announcement(refusal) else {
            self.refuse_with(sid, refusal, cdr);
            return;
        };
        match self.open_prelude(sid, cdr) {
            Ok(id) => {
                if let Some(p) = self.preludes.get_mut(&id) {
                    p.state = State::Announcing(refusal);
                }
                self.play(id, name);
            }
            Err(cdr) => self.refuse_with(sid, refusal, *cdr),
        }
    }

    /// Asks the caller of a shared number for the extension.
    pub(super) fn collect_extension(
        &mut self,
        sid: TxId,
        (tenant, x, caller): (TenantId, Number, Number),
        cdr: CallRecord,
        max_forwards: u32,
        started: Instant,
    ) {
        let id = match self.open_prelude(sid, cdr) {
            Ok(id) => id,
            Err(cdr) => {
                self.refuse_with(sid, Refusal::ExtensionRequired, *cdr);
                return;
            }
        };
        let Some(p) = self.preludes.get_mut(&id) else {
            return;
        };
        p.state = State::Collecting(Collecting {
            tenant,
            x,
            caller,
            digits: String::new(),
            tries: 0,
            playing: true,
            max_forwards,
            started,
        });
        let media = p.media.id;
        self.media.update(media, Update::Collect(Leg::A, true));
        self.play(id, PromptName::EnterExtension);
    }

    /// A prompt of prelude `id` ended.
    pub(super) fn prelude_prompt_done(&mut self, id: Id) {
        let Some(p) = self.preludes.get_mut(&id) else {
            return;
        };
        match &mut p.state {
            State::Announcing(refusal) => {
                let refusal = *refusal;
                self.finish_prelude(id, |b2bua, sid, cdr, tag| {
                    b2bua.refuse_in(sid, refusal, cdr, Some(tag));
                });
            }
            State::Collecting(c) => {
                c.playing = false;
                p.generation += 1;
                let generation = p.generation;
                let at = self.ep.now() + DIGIT_TIMEOUT;
                self.ep.arm(at, CallTimer::Digits { id, generation });
            }
        }
    }

    /// A digit from the caller of prelude `id`.
    pub(super) fn prelude_digit(&mut self, id: Id, digit: Digit) {
        let ext_len = usize::from(self.engine.config().extension_len);
        let Some(p) = self.preludes.get_mut(&id) else {
            return;
        };
        let State::Collecting(c) = &mut p.state else {
            return;
        };
        if c.playing {
            // Barge-in: the caller knows what to do.
            c.playing = false;
            self.media.update(p.media.id, Update::Stop(Leg::A));
        }
        p.generation += 1;
        let generation = p.generation;
        match digit.as_char() {
            '#' => return self.submit_extension(id),
            '*' => c.digits.clear(),
            d if d.is_ascii_digit() => {
                c.digits.push(d);
                if c.digits.len() >= ext_len {
                    return self.submit_extension(id);
                }
            }
            _ => {}
        }
        let at = self.ep.now() + DIGIT_TIMEOUT;
        self.ep.arm(at, CallTimer::Digits { id, generation });
    }

    /// The caller of prelude `id` stopped keying.
    pub(super) fn prelude_timeout(&mut self, id: Id, generation: u32) {
        let waiting = self.preludes.get(&id).is_some_and(|p| {
            p.generation == generation && matches!(&p.state, State::Collecting(c) if !c.playing)
        });
        if waiting {
            self.submit_extension(id);
        }
    }

    fn submit_extension(&mut self, id: Id) {
        let Some(p) = self.preludes.get_mut(&id) else {
            return;
        };
        let State::Collecting(c) = &mut p.state else {
            return;
        };
        p.generation += 1;
        let digits = std::mem::take(&mut c.digits);
        let extension = digits.parse::<Extension>().ok();
        let decision = extension.map(|extension| {
            self.engine.decide(&Inbound {
                caller: c.caller,
                called: c.x,
                extension: Some(extension),
                channel: Channel::Voice,
            })
        });
        match decision {
            Some(Decision::Connect(connect)) => {
                let (max_forwards, started) = (c.max_forwards, c.started);
                let Some((sid, media, tag, cdr)) = self.take_prelude(id) else {
                    return;
                };
                self.media.update(media.id, Update::Collect(Leg::A, false));
                // The tenant's intercept is asked as for any call.
                self.proceed(
                    sid,
                    connect,
                    cdr,
                    (max_forwards, started),
                    Some((media, tag)),
                );
            }
            _ => {
                c.tries += 1;
                tracing::debug!(call = id, tries = c.tries, "no such extension");
                if c.tries >= TRIES {
                    let tenant = c.tenant;
                    self.finish_prelude(id, move |b2bua, sid, mut cdr, tag| {
                        cdr.tenant = Some(tenant);
                        b2bua.refuse_in(sid, Refusal::NoBinding, cdr, Some(tag));
                    });
                } else {
                    c.playing = true;
                    self.play(id, PromptName::InvalidExtension);
                }
            }
        }
    }

    /// Ends prelude `id`: its media, its early dialog; `then` answers the
    /// INVITE (in the early dialog the 183 opened: its tag is given) and
    /// writes the CDR.
    pub(super) fn finish_prelude(
        &mut self,
        id: Id,
        then: impl FnOnce(&mut B2bua, TxId, CallRecord, String),
    ) {
        let Some(mut p) = self.preludes.remove(&id) else {
            return;
        };
        p.media.close(&mut *self.media);
        self.by_media.remove(&p.media.id);
        self.ep.remove_dialog(&p.tag);
        let mut cdr = p.cdr;
        cdr.ended_at = unix_ms();
        then(self, p.sid, cdr, p.tag);
    }

    /// Prelude `id` has lasted too long: refused as it would have been,
    /// or for want of an extension.
    pub(super) fn prelude_limit(&mut self, id: Id) {
        let Some(p) = self.preludes.get(&id) else {
            return;
        };
        let refusal = match p.state {
            State::Announcing(refusal) => refusal,
            State::Collecting(_) => Refusal::ExtensionRequired,
        };
        tracing::debug!(call = id, "prelude limit reached");
        self.finish_prelude(id, move |b2bua, sid, cdr, tag| {
            b2bua.refuse_in(sid, refusal, cdr, Some(tag));
        });
    }

    /// The caller gave up (CANCEL, or BYE in the early dialog).
    pub(super) fn prelude_cancelled(&mut self, id: Id) {
        self.finish_prelude(id, |b2bua, sid, mut cdr, tag| {
            b2bua.ep.respond(
                sid,
                487,
                Resp {
                    to_tag: Some(&tag),
                    ..Resp::default()
                },
            );
            cdr.released_by = ReleasedBy::Caller;
            cdr.release_reason = ReleaseReason::Cancelled;
            cdr.final_status = 487;
            b2bua.write_cdr(cdr);
        });
    }

    /// A request in a prelude's early dialog.
    pub(super) fn prelude_request(&mut self, sid: TxId, id: Id, method: &crate::message::Method) {
        use crate::message::Method;
        match method {
            Method::Info => {
                let digit = self.ep.request(sid).and_then(info_digit);
                self.ep.respond(sid, 200, Resp::default());
                if let Some(digit) = digit {
                    self.prelude_digit(id, digit);
                }
            }
            Method::Bye => {
                self.ep.respond(sid, 200, Resp::default());
                self.prelude_cancelled(id);
            }
            _ => self.ep.respond(sid, 481, Resp::default()),
        }
    }
}
