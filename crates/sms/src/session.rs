//! One SMPP 3.4 session as a transceiver ESME, without I/O: fed the bytes
//! the SMSC sent and the current time, it says what to send
//! ([`Session::take_output`]), what happened ([`Session::poll_event`]) and
//! when to wake it ([`Session::deadline`]). The link driver (`link.rs`)
//! owns the socket; tests drive a session with a fake clock.
//!
//! What it keeps: the bind, sequence numbers, the window of our requests
//! awaiting responses (with a response timeout that ends the session),
//! `enquire_link` when the link is quiet, a pause after `ESME_RTHROTTLED`
//! or `ESME_RMSGQFUL` that doubles while they last, and a precise refusal
//! for every malformed or unexpected PDU (the session survives it unless
//! its framing is lost).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rusmpp::decode::{DecodeError, DecodeErrorKind, DecodeWithLength};
use rusmpp::encode::{Encode, Length};
use rusmpp::fields::SmppField;
use rusmpp::pdus::{BindTransceiver, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};

/// Longest PDU accepted (a `message_payload` of 64 KiB would be more than
/// any text needs; a length beyond this means the framing is lost).
pub const MAX_PDU: usize = 16 * 1024;
const HEADER: usize = 16;

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    /// Most `submit_sm`s awaiting their response at once.
    pub window: usize,
    /// A quiet link is probed this often.
    pub enquire_interval: Duration,
    /// A request unanswered this long ends the session.
    pub response_timeout: Duration,
    /// First pause after the SMSC says it is throttled or full; doubles
    /// while it keeps saying so, up to `throttle_max`.
    pub throttle_min: Duration,
    pub throttle_max: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            system_id: String::new(),
            password: String::new(),
            system_type: String::new(),
            window: 10,
            enquire_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
            throttle_min: Duration::from_millis(200),
            throttle_max: Duration::from_secs(10),
        }
    }
}

/// What a session tells its driver.
#[derive(Debug)]
pub enum Event {
    Bound,
    /// A `deliver_sm` to answer with [`Session::respond`].
    Deliver {
        seq: u32,
        sm: Box<DeliverSm>,
    },
    /// The SMSC took a `submit_sm`.
    Submitted {
        tag: u64,
        smsc_id: String,
    },
    /// The SMSC refused one; `retry` when it only asked to wait.
    SubmitRefused {
        tag: u64,
        status: CommandStatus,
        retry: bool,
    },
    /// The session is over; submits still in flight are in `unanswered`.
    Closed {
        reason: CloseReason,
        unanswered: Vec<u64>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloseReason {
    BindRefused(CommandStatus),
    /// The SMSC unbound.
    PeerUnbound,
    /// We unbound (shutdown) and it answered.
    Unbound,
    /// A request went unanswered.
    Timeout,
    /// A PDU length that cannot be: the byte stream cannot be followed.
    Framing,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Binding,
    Bound,
    Unbinding,
    Closed,
}

#[derive(Clone, Copy, Debug)]
enum Request {
    Bind,
    Enquire,
    Submit(u64),
    Unbind,
}

pub struct Session {
    cfg: SessionConfig,
    state: State,
    next_seq: u32,
    pending: HashMap<u32, (Request, Instant)>,
    submits: usize,
    last_heard: Instant,
    throttled_until: Option<Instant>,
    throttle: Duration,
    input: BytesMut,
    output: Vec<u8>,
    events: VecDeque<Event>,
}

impl Session {
    /// A session on a new connection: the bind is the first thing to send.
    pub fn new(cfg: SessionConfig, now: Instant) -> Session {
        let throttle = cfg.throttle_min;
        let mut s = Session {
            cfg,
            state: State::Binding,
            next_seq: 1,
            pending: HashMap::new(),
            submits: 0,
            last_heard: now,
            throttled_until: None,
            throttle,
            input: BytesMut::new(),
            output: Vec::new(),
            events: VecDeque::new(),
        };
        let bind = BindTransceiver::builder()
            .system_id(c_string(&s.cfg.system_id))
            .password(c_string(&s.cfg.password))
            .system_type(c_string(&s.cfg.system_type))
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .build();
        s.request(Request::Bind, Pdu::BindTransceiver(bind), now);
        s
    }

    pub fn is_bound(&self) -> bool {
        self.state == State::Bound
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// `submit_sm`s awaiting their response.
    pub fn in_flight(&self) -> usize {
        self.submits
    }

    /// How many more `submit_sm`s may go now.
    pub fn room(&self, now: Instant) -> usize {
        if self.state != State::Bound || self.throttled_until.is_some_and(|t| now < t) {
            return 0;
        }
        self.cfg.window.saturating_sub(self.submits)
    }

    /// Sends a `submit_sm` if the window and any throttling allow; `false`
    /// (and nothing sent) otherwise.
    pub fn submit(&mut self, tag: u64, sm: SubmitSm, now: Instant) -> bool {
        if self.room(now) == 0 {
            return false;
        }
        self.submits += 1;
        self.request(Request::Submit(tag), Pdu::SubmitSm(sm), now);
        true
    }

    /// Answers a `deliver_sm` (once its text is safe, or refused).
    pub fn respond(&mut self, seq: u32, status: CommandStatus) {
        if self.state == State::Closed {
            return;
        }
        let resp = DeliverSmResp::builder().build();
        self.send(&Command::new(status, seq, Pdu::DeliverSmResp(resp)));
    }

    /// Ends the session politely (shutdown): `unbind`, then closed when the
    /// SMSC answers or the response timeout passes.
    pub fn unbind(&mut self, now: Instant) {
        if matches!(self.state, State::Binding | State::Bound) {
            self.state = State::Unbinding;
            self.request(Request::Unbind, Pdu::Unbind, now);
        }
    }

    /// Bytes from the SMSC, in any slices the socket gives.
    pub fn receive(&mut self, data: &[u8], now: Instant) {
        self.input.extend_from_slice(data);
        self.last_heard = now;
        while self.state != State::Closed && self.input.len() >= 4 {
            let len =
                u32::from_be_bytes([self.input[0], self.input[1], self.input[2], self.input[3]])
                    as usize;
            if !(HEADER..=MAX_PDU).contains(&len) {
                // Nothing after this can be framed: say why and end.
                let seq = if self.input.len() >= HEADER {
                    u32::from_be_bytes([
                        self.input[12],
                        self.input[13],
                        self.input[14],
                        self.input[15],
                    ])
                } else {
                    0
                };
                self.nack(seq, CommandStatus::EsmeRinvcmdlen);
                self.close(CloseReason::Framing);
                return;
            }
            if self.input.len() < len {
                return;
            }
            let frame = self.input.split_to(len);
            self.frame(&frame, now);
        }
    }

    /// Timers: responses overdue end the session; a quiet bound link is
    /// probed; a throttle pause ends.
    pub fn tick(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.pending.values().any(|(_, due)| *due <= now) {
            let reason = if self.state == State::Unbinding {
                CloseReason::Unbound
            } else {
                CloseReason::Timeout
            };
            self.close(reason);
            return;
        }
        if self.throttled_until.is_some_and(|t| t <= now) {
            self.throttled_until = None;
        }
        if self.state == State::Bound
            && !self.probing()
            && now >= self.last_heard + self.cfg.enquire_interval
        {
            self.request(Request::Enquire, Pdu::EnquireLink, now);
        }
    }

    /// When [`Session::tick`] has something to do next.
    pub fn deadline(&self) -> Instant {
        // Far enough to mean "nothing to do": the driver waits for input.
        let mut at = self.last_heard + Duration::from_secs(24 * 3600);
        if self.state == State::Bound && !self.probing() {
            at = self.last_heard + self.cfg.enquire_interval;
        }
        for (_, due) in self.pending.values() {
            at = at.min(*due);
        }
        if let Some(t) = self.throttled_until {
            at = at.min(t);
        }
        at
    }

    /// Bytes to write to the SMSC.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // === impl Session: internals ===

    /// An `enquire_link` of ours awaits its answer.
    fn probing(&self) -> bool {
        self.pending
            .values()
            .any(|(r, _)| matches!(r, Request::Enquire))
    }

    fn request(&mut self, kind: Request, pdu: Pdu, now: Instant) {
        let seq = self.next_seq;
        self.next_seq = if self.next_seq >= 0x7fff_ffff {
            1
        } else {
            self.next_seq + 1
        };
        self.pending
            .insert(seq, (kind, now + self.cfg.response_timeout));
        self.send(&Command::new(CommandStatus::EsmeRok, seq, pdu));
    }

    fn send(&mut self, cmd: &Command) {
        let len = 4 + cmd.length();
        let start = self.output.len();
        self.output.resize(start + len, 0);
        self.output[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        cmd.encode(&mut self.output[start + 4..]);
    }

    fn nack(&mut self, seq: u32, status: CommandStatus) {
        self.send(&Command::new(status, seq, Pdu::GenericNack));
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        let mut unanswered: Vec<u64> = self
            .pending
            .drain()
            .filter_map(|(_, (r, _))| match r {
                Request::Submit(tag) => Some(tag),
                _ => None,
            })
            .collect();
        unanswered.sort_unstable();
        self.submits = 0;
        self.events.push_back(Event::Closed { reason, unanswered });
    }

    fn frame(&mut self, frame: &[u8], now: Instant) {
        let word = |at: usize| {
            u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
        };
        let (id, status, seq) = (word(4), word(8), word(12));
        let mut body = BytesMut::from(&frame[4..]);
        match Command::decode(&mut body, frame.len() - 4) {
            Ok((cmd, _)) => self.command(cmd, now),
            Err(e) if id & 0x8000_0000 == 0 => {
                // A request we cannot read: answer it with why.
                let status = refusal(&e);
                tracing::debug!(command_id = id, ?status, "malformed request refused");
                if id == u32::from(CommandId::DeliverSm) {
                    self.respond(seq, status);
                } else {
                    self.nack(seq, status);
                }
            }
            Err(_) => {
                // A response we cannot read: what its header says still
                // settles the request.
                tracing::debug!(command_id = id, "malformed response");
                if let Some((Request::Submit(tag), _)) = self.pending.remove(&seq) {
                    self.submits -= 1;
                    let status = CommandStatus::from(status);
                    self.events.push_back(if status == CommandStatus::EsmeRok {
                        Event::Submitted {
                            tag,
                            smsc_id: String::new(),
                        }
                    } else {
                        Event::SubmitRefused {
                            tag,
                            status,
                            retry: false,
                        }
                    });
                }
            }
        }
    }

    fn command(&mut self, cmd: Command, now: Instant) {
        let (seq, status) = (cmd.sequence_number(), cmd.status());
        let Some(pdu) = cmd.pdu() else {
            self.nack(seq, CommandStatus::EsmeRinvcmdid);
            return;
        };
        match pdu {
            Pdu::BindTransceiverResp(_) => match self.pending.remove(&seq) {
                Some((Request::Bind, _)) if status == CommandStatus::EsmeRok => {
                    self.state = State::Bound;
                    self.events.push_back(Event::Bound);
                }
                Some((Request::Bind, _)) => self.close(CloseReason::BindRefused(status)),
                other => self.unexpected(seq, other),
            },
            Pdu::SubmitSmResp(resp) => match self.pending.remove(&seq) {
                Some((Request::Submit(tag), _)) => {
                    self.submits -= 1;
                    self.submit_answered(tag, status, resp.message_id().as_str(), now);
                }
                other => self.unexpected(seq, other),
            },
            Pdu::GenericNack => match self.pending.remove(&seq) {
                Some((Request::Submit(tag), _)) => {
                    self.submits -= 1;
                    self.submit_answered(tag, status, "", now);
                }
                Some((Request::Bind, _)) => self.close(CloseReason::BindRefused(status)),
                Some((Request::Unbind, _)) => self.close(CloseReason::Unbound),
                Some((Request::Enquire, _)) => {}
                None => tracing::debug!(seq, ?status, "generic_nack for nothing we sent"),
            },
            Pdu::EnquireLinkResp => match self.pending.remove(&seq) {
                Some((Request::Enquire, _)) => {}
                other => self.unexpected(seq, other),
            },
            Pdu::UnbindResp => match self.pending.remove(&seq) {
                Some((Request::Unbind, _)) => self.close(CloseReason::Unbound),
                other => self.unexpected(seq, other),
            },
            Pdu::EnquireLink => self.send(&Command::new(
                CommandStatus::EsmeRok,
                seq,
                Pdu::EnquireLinkResp,
            )),
            Pdu::Unbind => {
                self.send(&Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp));
                self.close(CloseReason::PeerUnbound);
            }
            Pdu::DeliverSm(sm) => {
                if self.state == State::Bound {
                    self.events.push_back(Event::Deliver {
                        seq,
                        sm: Box::new(sm.clone()),
                    });
                } else {
                    self.respond(seq, CommandStatus::EsmeRinvbndsts);
                }
            }
            // Sent to an ESME, but no answer is due.
            Pdu::AlertNotification(_) => {}
            _ if u32::from(cmd.id()) & 0x8000_0000 == 0 => {
                // A request an ESME does not serve (data_sm, query_sm, ...).
                self.nack(seq, CommandStatus::EsmeRinvcmdid);
            }
            _ => {
                let waiting = self.pending.remove(&seq);
                self.unexpected(seq, waiting);
            }
        }
    }

    fn submit_answered(&mut self, tag: u64, status: CommandStatus, smsc_id: &str, now: Instant) {
        match status {
            CommandStatus::EsmeRok => {
                self.throttle = self.cfg.throttle_min;
                self.events.push_back(Event::Submitted {
                    tag,
                    smsc_id: smsc_id.to_owned(),
                });
            }
            CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful => {
                // Slow down: nothing more until the pause ends, and a longer
                // pause if the SMSC is still unhappy then.
                self.throttled_until = Some(now + self.throttle);
                self.throttle = (self.throttle * 2).min(self.cfg.throttle_max);
                metrics::counter!("maskline_smpp_throttled_total").increment(1);
                self.events.push_back(Event::SubmitRefused {
                    tag,
                    status,
                    retry: true,
                });
            }
            _ => self.events.push_back(Event::SubmitRefused {
                tag,
                status,
                retry: false,
            }),
        }
    }

    /// A response to nothing we are waiting for (late, or never sent): the
    /// request it answered, if any, is put back.
    fn unexpected(&mut self, seq: u32, request: Option<(Request, Instant)>) {
        tracing::debug!(seq, "response to no request we are waiting for");
        if let Some(r) = request {
            self.pending.insert(seq, r);
        }
    }
}

/// The status that tells the SMSC what is wrong with a PDU we could not
/// read (SMPP 3.4 §5.1.3).
fn refusal(e: &DecodeError) -> CommandStatus {
    let checks = [
        (SmppField::source_addr, CommandStatus::EsmeRinvsrcadr),
        (SmppField::destination_addr, CommandStatus::EsmeRinvdstadr),
        (SmppField::esm_class, CommandStatus::EsmeRinvesmclass),
        (SmppField::data_coding, CommandStatus::EsmeRinvdcs),
        (SmppField::sm_length, CommandStatus::EsmeRinvmsglen),
        (SmppField::short_message, CommandStatus::EsmeRinvmsglen),
        (SmppField::service_type, CommandStatus::EsmeRinvsertyp),
        (
            SmppField::schedule_delivery_time,
            CommandStatus::EsmeRinvsched,
        ),
        (SmppField::validity_period, CommandStatus::EsmeRinvexpiry),
        (
            SmppField::registered_delivery,
            CommandStatus::EsmeRinvregdlvflg,
        ),
        (SmppField::tlvs, CommandStatus::EsmeRinvtlvstream),
    ];
    for (field, status) in checks {
        if e.field_exists(field) {
            return status;
        }
    }
    match e.kind() {
        DecodeErrorKind::UnexpectedEof => CommandStatus::EsmeRinvcmdlen,
        DecodeErrorKind::UnsupportedKey { .. } => CommandStatus::EsmeRinvcmdid,
        _ => CommandStatus::EsmeRsyserr,
    }
}

/// A C-octet string field from configuration, cut to what fits.
fn c_string<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    let fit: String = s.chars().take(MAX.saturating_sub(1)).collect();
    COctetString::from_string(fit).unwrap_or_default()
}
