//! One SMSC link: connects, binds (a [`Session`]), sends relays from the
//! shared queue within the window, hands `deliver_sm`s to [`Shared`] and
//! answers them once what they carried is safe, and reconnects with a
//! growing pause when the SMSC goes away.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use maskline_core::MessageReason;
use maskline_engine::Relay;
use maskline_store::Submit;
use rand::RngExt;
use rusmpp::pdus::SubmitSm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::relays::Shared;
use crate::session::{CloseReason, Event, Session, SessionConfig};
use crate::url::SmscUrl;
use crate::{outbound, unix_ms};

/// How long a link's first reconnect waits; it doubles up to the
/// configured maximum while the SMSC stays away.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shutdown waits for texts being kept before it unbinds.
const DRAIN: Duration = Duration::from_secs(5);

pub(crate) struct LinkConfig {
    pub url: SmscUrl,
    pub session: SessionConfig,
    pub reconnect_max: Duration,
}

/// Runs the link until `shutdown`.
pub(crate) async fn run(cfg: LinkConfig, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let name = cfg.url.name();
    let mut retry = FIRST_RETRY;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let addr = format!("{}:{}", cfg.url.host, cfg.url.port);
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await;
        match connected {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let mut session_cfg = cfg.session.clone();
                session_cfg.system_id = cfg.url.system_id.clone();
                session_cfg.password = cfg.url.password.clone();
                let mut conn = Connection::new(&name, session_cfg, shared.clone());
                let reason = conn.serve(stream, &mut shutdown).await;
                if conn.was_bound {
                    // It worked once: the next outage starts over.
                    retry = FIRST_RETRY;
                }
                if *shutdown.borrow() {
                    return;
                }
                tracing::warn!(link = %name, ?reason, "SMPP link lost; reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(link = %name, error = %e, "cannot connect to the SMSC"),
            Err(_) => tracing::warn!(link = %name, "connecting to the SMSC timed out"),
        }
        metrics::counter!("maskline_smpp_reconnects_total").increment(1);
        // Jittered, so that several links (or nodes) do not come back at once.
        let pause = retry.mul_f64(rand::rng().random_range(0.5..1.0));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
        retry = (retry * 2).min(cfg.reconnect_max);
    }
}

/// A relay on this link: its parts, and what the SMSC made of them.
struct Flight {
    relay: Relay,
    parts: Vec<SubmitSm>,
    /// Parts not yet sent (first in line first).
    unsent: VecDeque<usize>,
    ids: Vec<Option<String>>,
}

struct Connection {
    name: String,
    session: Session,
    shared: Arc<Shared>,
    flights: HashMap<u64, Flight>,
    next_flight: u64,
    /// Flights with parts to send, oldest first.
    sending: VecDeque<u64>,
    /// `deliver_sm`s being kept (their answer waits for the store).
    keeping: usize,
    was_bound: bool,
}

/// A part's tag: its flight and its index.
fn tag(flight: u64, part: usize) -> u64 {
    (flight << 8) | part as u64
}

fn untag(tag: u64) -> (u64, usize) {
    (tag >> 8, (tag & 0xff) as usize)
}

impl Connection {
    fn new(name: &str, cfg: SessionConfig, shared: Arc<Shared>) -> Connection {
        Connection {
            name: name.to_owned(),
            session: Session::new(cfg, Instant::now()),
            shared,
            flights: HashMap::new(),
            next_flight: 1,
            sending: VecDeque::new(),
            keeping: 0,
            was_bound: false,
        }
    }

    /// Serves one TCP connection until the session ends; returns why.
    async fn serve(
        &mut self,
        stream: TcpStream,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<CloseReason> {
        let (mut rd, mut wr) = stream.into_split();
        let (answers_tx, mut answers) = mpsc::unbounded_channel::<(u32, rusmpp::CommandStatus)>();
        let mut buf = vec![0u8; 64 * 1024];
        let mut draining: Option<Instant> = None;
        let shared = self.shared.clone();
        let reason = loop {
            // Listening before looking: a relay queued meanwhile wakes us.
            let queue = shared.queue.notify.notified();
            let now = Instant::now();
            // What the SMSC said first: a part it took frees the window, a
            // text it took is handed over.
            let closed = self.drain_events(Some(&answers_tx));
            if closed.is_none() {
                match draining {
                    None => self.fill_window(now),
                    Some(since) if self.keeping == 0 || now >= since + DRAIN => {
                        self.session.unbind(now)
                    }
                    Some(_) => {}
                }
            }
            // Written even when the session just closed: it may owe the
            // SMSC an answer to its unbind.
            let out = self.session.take_output();
            if !out.is_empty() && wr.write_all(&out).await.is_err() {
                break closed;
            }
            if closed.is_some() {
                break closed;
            }
            if self.session.is_closed() {
                break None;
            }
            let deadline = tokio::time::Instant::from_std(self.session.deadline());
            let can_send = self.session.room(now) > 0 && draining.is_none();
            tokio::select! {
                read = rd.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => self.session.receive(&buf[..n], Instant::now()),
                },
                Some((seq, status)) = answers.recv() => {
                    self.keeping -= 1;
                    self.session.respond(seq, status);
                }
                _ = tokio::time::sleep_until(deadline) => self.session.tick(Instant::now()),
                _ = queue, if can_send => {}
                _ = shutdown.changed(), if draining.is_none() => draining = Some(Instant::now()),
            }
        };
        let _ = wr.shutdown().await;
        // Submits the SMSC answered in the last bytes read are settled
        // before the rest is put back (else they would be sent twice).
        // Texts it delivered can no longer be answered: it delivers them
        // again.
        let _ = self.drain_events(None);
        if self.was_bound {
            self.shared.bound.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!("maskline_smpp_links_bound").decrement(1.0);
        }
        // What the SMSC did not confirm goes to the next link (or this one,
        // back): a part it took without saying so may arrive twice.
        let unfinished: Vec<Relay> = std::mem::take(&mut self.flights)
            .into_values()
            .map(|f| f.relay)
            .collect();
        self.shared.queue.put_back(unfinished);
        reason
    }

    /// Sends what the window allows: parts of relays in flight, then new
    /// relays from the queue.
    fn fill_window(&mut self, now: Instant) {
        while self.session.room(now) > 0 {
            if let Some(&id) = self.sending.front() {
                let Some(f) = self.flights.get_mut(&id) else {
                    self.sending.pop_front();
                    continue;
                };
                let Some(part) = f.unsent.pop_front() else {
                    self.sending.pop_front();
                    continue;
                };
                let sm = f.parts[part].clone();
                if !self.session.submit(tag(id, part), sm, now) {
                    f.unsent.push_front(part);
                    return;
                }
                continue;
            }
            let Some(relay) = self.shared.queue.pop(unix_ms()) else {
                return;
            };
            let reference = rand::rng().random::<u8>();
            match outbound::submits(relay.from, relay.to, &relay.text, reference) {
                Ok(parts) => {
                    let id = self.next_flight;
                    self.next_flight += 1;
                    self.flights.insert(
                        id,
                        Flight {
                            ids: vec![None; parts.len()],
                            unsent: (0..parts.len()).collect(),
                            parts,
                            relay,
                        },
                    );
                    self.sending.push_back(id);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a relay cannot be sent");
                    self.fail(relay);
                }
            }
        }
    }

    /// Handles what the session reported; `answers` is `None` once the
    /// connection is gone (deliveries are then left unanswered).
    fn drain_events(
        &mut self,
        answers: Option<&mpsc::UnboundedSender<(u32, rusmpp::CommandStatus)>>,
    ) -> Option<CloseReason> {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Bound => {
                    tracing::info!(link = %self.name, "SMPP link bound");
                    self.was_bound = true;
                    self.shared.bound.fetch_add(1, Ordering::Relaxed);
                    metrics::gauge!("maskline_smpp_links_bound").increment(1.0);
                }
                Event::Deliver { seq, sm } => {
                    let Some(answers) = answers else { continue };
                    self.keeping += 1;
                    let (shared, link, answers) =
                        (self.shared.clone(), self.name.clone(), answers.clone());
                    tokio::spawn(async move {
                        let status = shared.deliver(&link, &sm).await;
                        let _ = answers.send((seq, status));
                    });
                }
                Event::Submitted { tag, smsc_id } => {
                    metrics::counter!("maskline_smpp_submits_total", "outcome" => "accepted")
                        .increment(1);
                    let (id, part) = untag(tag);
                    let Some(f) = self.flights.get_mut(&id) else {
                        continue;
                    };
                    if let Some(slot) = f.ids.get_mut(part) {
                        *slot = Some(smsc_id);
                    }
                    if f.ids.iter().all(Option::is_some)
                        && let Some(f) = self.flights.remove(&id)
                    {
                        self.submitted(f);
                    }
                }
                Event::SubmitRefused { tag, status, retry } => {
                    let (id, part) = untag(tag);
                    if retry {
                        metrics::counter!("maskline_smpp_submits_total", "outcome" => "throttled")
                            .increment(1);
                        if let Some(f) = self.flights.get_mut(&id) {
                            f.unsent.push_front(part);
                            if !self.sending.contains(&id) {
                                self.sending.push_front(id);
                            }
                        }
                    } else {
                        metrics::counter!("maskline_smpp_submits_total", "outcome" => "refused")
                            .increment(1);
                        tracing::warn!(link = %self.name, ?status, "the SMSC refused a relay");
                        if let Some(f) = self.flights.remove(&id) {
                            self.fail(f.relay);
                        }
                    }
                }
                Event::Closed { reason, .. } => return Some(reason),
            }
        }
        None
    }

    /// Every part was taken: the text is handed over (durably recorded in a
    /// task: the link does not wait for the store). A part the SMSC gave no
    /// id for can get no receipt, and is not waited for.
    fn submitted(&self, f: Flight) {
        let parts = f.ids.len() as u8;
        let submits = f
            .ids
            .into_iter()
            .enumerate()
            .filter_map(|(i, id)| {
                Some(Submit {
                    link: self.name.clone(),
                    smsc_id: id.filter(|id| !id.is_empty())?,
                    part: (i + 1) as u8,
                })
            })
            .collect();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let message = f.relay.message;
            if let Err(e) = shared.engine.relay_submitted(message, parts, submits).await {
                tracing::warn!(error = %e, "recording a handed-over relay failed");
            }
            shared.queue.done(message);
        });
    }

    fn fail(&self, relay: Relay) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Err(e) = shared
                .engine
                .relay_failed(&relay, MessageReason::SubmitFailed)
                .await
            {
                tracing::warn!(error = %e, "recording a failed relay failed");
            }
            shared.queue.done(relay.message);
        });
    }
}
