//! Media anchoring: every call's RTP runs through Maskline, so each leg's
//! SDP is ours, rendered from what the negotiation needs and nothing of the
//! other party's.
//!
//! Offer/answer crosses the B2BUA as it would a proxy, but rebuilt: an
//! offer from one side becomes our offer to the other (our address and that
//! leg's port, the offerer's codecs, or once the call has one, only that
//! codec: there is no transcoding); the answer becomes our answer to the
//! offerer. An offer may come in an INVITE, a re-INVITE or UPDATE, or (when
//! a request had none) in the 2xx, answered in the ACK. The relay's legs are
//! set once an answer fixes the codec.

use std::net::IpAddr;

use maskline_core::TenantId;
use maskline_media::player::Prompt;
use maskline_media::prompts::{PromptName, builtin};
use maskline_media::recordings::RecordingKey;
use maskline_media::relay::{Anchor, SessionId, Update};
use maskline_media::sdp::{LocalAudio, LocalMedia, LocalSdp, Negotiated, PayloadCodec, Sdp};
use maskline_media::session::{Leg, LegMedia};
use maskline_media::{Codec, Error as MediaError};

use super::Side;
use crate::message::Body;

/// The media relay, as the call logic sees it.
pub(crate) trait MediaPlane: Send {
    /// The address our SDP names.
    fn addr(&self) -> IpAddr;
    /// Anchors a new call: a session with a port per leg.
    fn open(&mut self) -> Result<Anchor, MediaError>;
    fn update(&mut self, id: SessionId, update: Update);
}

/// Why a party's SDP cannot be used, as a SIP status.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Refused {
    /// 400: not SDP as RFC 4566 has it, or too large.
    Malformed,
    /// 488: well formed, but nothing we can carry (no PCMU/PCMA over
    /// RTP/AVP, or not the codec the call already has).
    NotAcceptable,
    /// 491: an offer while another is unanswered (RFC 3261 §14.2).
    Glare,
}

impl Refused {
    pub fn status(self) -> u16 {
        match self {
            Refused::Malformed => 400,
            Refused::NotAcceptable => 488,
            Refused::Glare => 491,
        }
    }

    pub fn warning(self) -> &'static str {
        match self {
            Refused::Malformed => "399 maskline \"malformed SDP\"",
            Refused::NotAcceptable => "304 maskline \"no common codec\"",
            Refused::Glare => "399 maskline \"an offer is pending\"",
        }
    }
}

impl From<MediaError> for Refused {
    fn from(e: MediaError) -> Refused {
        match e {
            MediaError::NotAcceptable(_) => Refused::NotAcceptable,
            _ => Refused::Malformed,
        }
    }
}

fn leg(side: Side) -> Leg {
    match side {
        Side::A => Leg::A,
        Side::B => Leg::B,
    }
}

fn sdp_body(sdp: &LocalSdp) -> Body {
    Body {
        content_type: "application/sdp",
        bytes: sdp.render().into_bytes(),
    }
}

/// An offer relayed and not yet answered.
struct Pending {
    /// Who offered.
    from: Side,
    sdp: Sdp,
    negotiated: Negotiated,
}

/// One call's anchored media.
pub(super) struct CallMedia {
    pub id: SessionId,
    ports: [u16; 2],
    /// Our `o=` session id on each leg.
    session_ids: [u64; 2],
    /// The description we last sent on each leg.
    sent: [Option<LocalSdp>; 2],
    /// What each party last agreed to.
    agreed: [Option<Negotiated>; 2],
    pending: Option<Pending>,
    /// The pending offer was answered in a provisional response.
    provisional_answer: bool,
    /// The codec both legs carry, once an answer fixed it.
    codec: Option<Codec>,
    bridged: bool,
    closed: bool,
}

impl CallMedia {
    pub fn open(plane: &mut dyn MediaPlane) -> Result<CallMedia, MediaError> {
        let anchor = plane.open()?;
        Ok(CallMedia {
            id: anchor.id,
            ports: anchor.ports,
            // Small enough to read in a trace, random enough not to say
            // how many calls came before.
            session_ids: [
                u64::from(rand::random::<u32>()),
                u64::from(rand::random::<u32>()),
            ],
            sent: [None, None],
            agreed: [None, None],
            pending: None,
            provisional_answer: false,
            codec: None,
            bridged: false,
            closed: false,
        })
    }

    /// Whether an answer from `side` is awaited.
    pub fn awaits_answer_from(&self, side: Side) -> bool {
        self.pending.as_ref().is_some_and(|p| p.from != side)
    }

    /// SDP in a request from `side` (INVITE, re-INVITE, UPDATE): always an
    /// offer; one while another offer is still unanswered is glare.
    /// Returns our offer for the other side.
    pub fn request(
        &mut self,
        plane: &mut dyn MediaPlane,
        side: Side,
        sdp: &[u8],
    ) -> Result<Body, Refused> {
        if self.pending.is_some() {
            return Err(Refused::Glare);
        }
        self.offer(plane.addr(), side, sdp)
    }

    /// SDP in a response (or an ACK) from `side`: the answer to the offer we
    /// relayed to it, or else an offer of its own (a request sent without
    /// one). Returns our SDP for the other side. `last` is false for an
    /// answer in a provisional response (the final one may repeat it).
    pub fn response(
        &mut self,
        plane: &mut dyn MediaPlane,
        side: Side,
        sdp: &[u8],
        last: bool,
    ) -> Result<Body, Refused> {
        if self.awaits_answer_from(side) {
            let answered = self.answer(plane, side, sdp, last);
            if answered.is_err() && last {
                self.pending = None;
            }
            answered
        } else if self.pending.is_some() {
            Err(Refused::Glare)
        } else {
            self.offer(plane.addr(), side, sdp)
        }
    }

    /// A final 2xx without SDP: an answer given in a provisional response
    /// stands; without one, the offer stays open for the ACK.
    pub fn final_without_sdp(&mut self) {
        if self.provisional_answer {
            self.pending = None;
            self.provisional_answer = false;
        }
    }

    /// The offer we relayed was refused (a non-2xx final response): the
    /// call keeps what it had.
    pub fn offer_refused(&mut self) {
        self.pending = None;
        self.provisional_answer = false;
    }

    fn offer(&mut self, addr: IpAddr, side: Side, sdp: &[u8]) -> Result<Body, Refused> {
        let parsed = Sdp::parse(sdp)?;
        let negotiated = parsed.negotiate()?;
        let codecs = match self.codec {
            None => negotiated
                .codecs
                .iter()
                .map(|c| PayloadCodec::new(c.codec))
                .collect(),
            Some(codec) if negotiated.codecs.iter().any(|c| c.codec == codec) => {
                vec![PayloadCodec::new(codec)]
            }
            Some(_) => return Err(Refused::NotAcceptable),
        };
        let to = side.other();
        let audio = LocalAudio {
            port: self.ports[to.index()],
            codecs,
            telephone_event: negotiated.telephone_event,
            ptime: negotiated.ptime,
            direction: negotiated.direction,
        };
        let ours = self.revise(
            to,
            LocalSdp::offer(self.session_ids[to.index()], 1, addr, audio),
        );
        self.pending = Some(Pending {
            from: side,
            sdp: parsed,
            negotiated,
        });
        Ok(sdp_body(&ours))
    }

    fn answer(
        &mut self,
        plane: &mut dyn MediaPlane,
        side: Side,
        sdp: &[u8],
        last: bool,
    ) -> Result<Body, Refused> {
        let parsed = Sdp::parse(sdp)?;
        let negotiated = parsed.negotiate()?;
        let Some(pending) = &self.pending else {
            return Err(Refused::NotAcceptable);
        };
        // The answerer's first codec that was offered (a sloppy answer
        // may list others too).
        let (chosen, offered) = negotiated
            .codecs
            .iter()
            .find_map(|answered| {
                pending
                    .negotiated
                    .codecs
                    .iter()
                    .find(|c| c.codec == answered.codec)
                    .map(|offered| (answered.codec, *offered))
            })
            .ok_or(Refused::NotAcceptable)?;
        let offerer = pending.from;
        let audio = LocalAudio {
            port: self.ports[offerer.index()],
            codecs: vec![offered],
            // Events cross only if the answerer takes them too.
            telephone_event: negotiated
                .telephone_event
                .and(pending.negotiated.telephone_event),
            ptime: pending.negotiated.ptime,
            direction: negotiated.direction,
        };
        let answer = LocalSdp::answer(
            self.session_ids[offerer.index()],
            1,
            plane.addr(),
            &pending.sdp,
            &pending.negotiated,
            audio,
        );
        let offer_negotiated = pending.negotiated.clone();
        let ours = self.revise(offerer, answer);
        self.agreed[offerer.index()] = Some(offer_negotiated);
        self.agreed[side.index()] = Some(negotiated);
        self.codec = Some(chosen);
        if last {
            self.pending = None;
            self.provisional_answer = false;
        } else {
            self.provisional_answer = true;
        }
        self.apply(plane);
        Ok(sdp_body(&ours))
    }

    /// Answers the caller's offer here, before any callee is called (to
    /// play it prompts as early media): the first codec it offered, which
    /// the call then keeps.
    pub fn answer_here(&mut self, plane: &mut dyn MediaPlane) -> Result<Body, Refused> {
        let pending = self
            .pending
            .as_ref()
            .filter(|p| p.from == Side::A)
            .ok_or(Refused::NotAcceptable)?;
        let offered = *pending
            .negotiated
            .codecs
            .first()
            .ok_or(Refused::NotAcceptable)?;
        let audio = LocalAudio {
            port: self.ports[Side::A.index()],
            codecs: vec![offered],
            telephone_event: pending.negotiated.telephone_event,
            ptime: pending.negotiated.ptime,
            direction: pending.negotiated.direction.reversed(),
        };
        let answer = LocalSdp::answer(
            self.session_ids[Side::A.index()],
            1,
            plane.addr(),
            &pending.sdp,
            &pending.negotiated,
            audio,
        );
        let agreed = pending.negotiated.clone();
        let ours = self.revise(Side::A, answer);
        self.agreed[Side::A.index()] = Some(agreed);
        self.codec = Some(offered.codec);
        self.apply(plane);
        Ok(sdp_body(&ours))
    }

    /// Our offer to the callee after [`answer_here`](Self::answer_here):
    /// the codec the caller already has, and nothing else.
    pub fn offer_to_callee(&mut self, addr: IpAddr) -> Option<Body> {
        let pending = self.pending.as_ref().filter(|p| p.from == Side::A)?;
        let codec = self.codec?;
        let audio = LocalAudio {
            port: self.ports[Side::B.index()],
            codecs: vec![PayloadCodec::new(codec)],
            telephone_event: pending.negotiated.telephone_event,
            ptime: pending.negotiated.ptime,
            direction: pending.negotiated.direction,
        };
        let ours = self.revise(
            Side::B,
            LocalSdp::offer(self.session_ids[Side::B.index()], 1, addr, audio),
        );
        Some(sdp_body(&ours))
    }

    /// Keeps `sdp`'s version if it says what we last sent on `to`, else
    /// the next one; records it as sent.
    fn revise(&mut self, to: Side, sdp: LocalSdp) -> LocalSdp {
        let sdp = match &self.sent[to.index()] {
            Some(previous) => sdp.revision_of(previous),
            None => sdp,
        };
        self.sent[to.index()] = Some(sdp.clone());
        sdp
    }

    /// Tells the relay what each leg now carries.
    fn apply(&mut self, plane: &mut dyn MediaPlane) {
        let Some(codec) = self.codec else {
            return;
        };
        for side in [Side::A, Side::B] {
            let Some(agreed) = &self.agreed[side.index()] else {
                continue;
            };
            let audio_pt = agreed
                .codecs
                .iter()
                .find(|c| c.codec == codec)
                .map_or(codec.payload_type(), |c| c.payload_type);
            // The party sends events under the number our SDP gave it.
            let rx_event_pt = self.sent[side.index()].as_ref().and_then(|sdp| {
                sdp.media.iter().find_map(|m| match m {
                    LocalMedia::Audio(a) => a.telephone_event.map(|t| t.payload_type),
                    LocalMedia::Rejected(_) => None,
                })
            });
            plane.update(
                self.id,
                Update::Leg(
                    leg(side),
                    LegMedia {
                        remote: agreed.remote,
                        codec,
                        audio_pt,
                        event_pt: agreed.telephone_event.map(|t| t.payload_type),
                        rx_event_pt,
                        sends: agreed.direction.sends() && agreed.remote.is_some(),
                    },
                ),
            );
        }
        // Both legs must be known to relay: a caller hearing prompts
        // before the callee is called has only its own.
        if !self.bridged && self.agreed.iter().all(Option::is_some) {
            self.bridged = true;
            plane.update(self.id, Update::Bridge(true));
        }
    }

    /// The call was answered: silence counts from now.
    pub fn answered(&self, plane: &mut dyn MediaPlane) {
        plane.update(self.id, Update::WatchSilence);
    }

    pub fn close(&mut self, plane: &mut dyn MediaPlane) {
        if !std::mem::replace(&mut self.closed, true) {
            plane.update(self.id, Update::Close);
        }
    }
}

// === recording ===

impl super::B2bua {
    /// What the parties hear as call `id` is answered: the callee its
    /// whisper, both the recording notice (the callee not over its
    /// whisper), and, armed now, the last-minute warning.
    pub(super) fn answer_prompts(&mut self, id: super::Id, now: std::time::Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let (tenant, media, whisper) = (call.cdr.tenant, call.media.id, call.callee_whisper);
        if let (Some(max), Some(warn)) = (call.max_call_seconds, call.warn_before_end)
            && warn < max
        {
            let at = now + std::time::Duration::from_secs(u64::from(max - warn));
            self.ep.arm(at, super::CallTimer::LastMinute(id));
        }
        let mut notice_to = vec![Leg::A];
        if whisper {
            // Before bridging: the caller hears nothing of the callee (nor
            // the callee of the caller) until the whisper ends.
            if let Some(call) = self.calls.get_mut(&id) {
                call.whispering = true;
            }
            self.media.update(media, Update::Bridge(false));
            let prompt = self.prompt(tenant, PromptName::CalleeWhisper);
            self.play_to(media, Leg::B, prompt);
        } else {
            notice_to.push(Leg::B);
        }
        if self.calls.get(&id).is_some_and(|c| c.record) && self.start_recording(id) {
            let notice = self.prompt(tenant, PromptName::RecordingNotice);
            for leg in notice_to {
                self.play_to(media, leg, notice.clone());
            }
        }
    }

    /// Both parties hear that the call ends soon.
    pub(super) fn last_minute(&mut self, id: super::Id) {
        let Some(call) = self
            .calls
            .get(&id)
            .filter(|c| c.phase == super::Phase::Answered)
        else {
            return;
        };
        let (tenant, media) = (call.cdr.tenant, call.media.id);
        let prompt = self.prompt(tenant, PromptName::LastMinute);
        for leg in [Leg::A, Leg::B] {
            self.play_to(media, leg, prompt.clone());
        }
    }

    fn play_to(&mut self, media: SessionId, leg: Leg, prompt: Prompt) {
        self.media.update(
            media,
            Update::Play {
                leg,
                prompt,
                plays: 1,
            },
        );
    }

    /// Starts recording answered call `id` (both directions, one
    /// two-channel WAV); whether it could.
    fn start_recording(&mut self, id: super::Id) -> bool {
        let Some(recordings) = self.engine.recordings().cloned() else {
            tracing::warn!(
                call = id,
                "a call asks to be recorded, but no storage is set"
            );
            return false;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let (Some(tenant), media) = (call.cdr.tenant, call.media.id) else {
            return false;
        };
        let Some(key) = RecordingKey::new(&tenant.to_string(), &call.cdr.id.to_string()) else {
            return false;
        };
        // The file is made on the recorder's thread: creating it may wait
        // on the disk, which this thread must not.
        call.recording = true;
        self.media.update(
            media,
            Update::Record(Box::new(move || recordings.create(&key))),
        );
        true
    }

    /// A call's recording is complete (or failed: `frames` is `None`).
    pub(super) fn on_recorded(&mut self, session: SessionId, frames: Option<u32>) {
        if let Some(call) = self
            .by_media
            .get(&session)
            .and_then(|id| self.calls.get_mut(id))
        {
            // Failed while the call goes on: it is not recorded any more.
            call.recording = false;
            metrics::counter!("maskline_recording_failures_total").increment(1);
            tracing::error!(cdr = %call.cdr.id, "a recording failed during its call");
            return;
        }
        let Some(cdr) = self.recorded.remove(&session) else {
            return;
        };
        let Some(frames) = frames else {
            metrics::counter!("maskline_recording_failures_total").increment(1);
            tracing::error!(cdr = %cdr.id, "a recording could not be finished");
            return;
        };
        let duration_ms = u64::from(frames) * 1000 / u64::from(maskline_media::SAMPLE_RATE);
        if let Some(ack) = self.engine.record_call_recorded(&cdr, duration_ms) {
            self.effects.push_back(super::Effect::Write(ack));
        }
    }

    /// The prompt `name` as `tenant` recorded it, else the built-in one.
    pub(super) fn prompt(&self, tenant: Option<TenantId>, name: PromptName) -> Prompt {
        tenant
            .and_then(|t| self.engine.prompt(t, name))
            .unwrap_or_else(|| builtin(name, self.cfg.language))
    }
}
