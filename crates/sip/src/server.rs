//! The driver: sockets, a runtime of its own, the clock, and the
//! asynchronous work the call logic asks for (writes to await, intercept
//! questions). Everything else is [`B2bua`]'s.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use maskline_engine::Engine;
use maskline_media::relay::{Anchor, MediaEvent, Relay, SessionId, Update};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::call::{B2bua, Effect, MediaPlane, Question, Resume};
use crate::endpoint::Wire;
use crate::intercept::Intercepts;
use crate::transport::{self, ConnId, Connections, NetEvent, Peer};
use crate::{Config, Error, Transport};

/// Messages handled per wake-up before timers get their turn.
const BATCH: usize = 64;

/// A bound SIP server, ready to [`run`](SipServer::run).
pub struct SipServer {
    cfg: Config,
    engine: Arc<Engine>,
    intercepts: Arc<dyn Intercepts>,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    relay: Relay,
    media_events: mpsc::UnboundedReceiver<MediaEvent>,
}

impl MediaPlane for Relay {
    fn addr(&self) -> IpAddr {
        Relay::addr(self)
    }

    fn open(&mut self) -> Result<Anchor, maskline_media::Error> {
        Relay::open(self)
    }

    fn update(&mut self, id: SessionId, update: Update) {
        Relay::update(self, id, update);
    }
}

/// The sockets, as the endpoint's [`Wire`].
struct Net {
    udp: Arc<UdpSocket>,
    conns: Connections,
    events: mpsc::UnboundedSender<NetEvent>,
}

impl Wire for Net {
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

    fn opened(&mut self, conn: ConnId, addr: SocketAddr, writer: mpsc::UnboundedSender<Vec<u8>>) {
        self.conns.opened(conn, addr, writer);
    }

    fn closed(&mut self, conn: ConnId) {
        self.conns.closed(conn);
    }
}

impl SipServer {
    /// Binds UDP and TCP on `cfg.listen` (port 0 picks one port for both).
    /// Intercept callbacks are asked through `intercepts`.
    pub fn bind(
        mut cfg: Config,
        engine: Arc<Engine>,
        intercepts: Arc<dyn Intercepts>,
    ) -> Result<SipServer, Error> {
        let udp = transport::bind_udp(cfg.listen)?;
        let local = udp.local_addr().map_err(|source| Error::Bind {
            transport: "UDP",
            addr: cfg.listen,
            source,
        })?;
        let tcp = transport::bind_tcp(local)?;
        let (media_tx, media_events) = mpsc::unbounded_channel();
        let relay = Relay::start(cfg.media.clone(), move |event| {
            let _ = media_tx.send(event);
        })
        .map_err(Error::Media)?;
        if cfg.listen.port() == 0 {
            cfg.listen = local;
            if cfg.advertise.ends_with(":0") {
                cfg.advertise = format!("{}:{}", local.ip(), local.port());
            }
        }
        Ok(SipServer {
            cfg,
            engine,
            intercepts,
            udp,
            tcp,
            relay,
            media_events,
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
        let net = Net {
            udp: udp.clone(),
            conns: Connections::default(),
            events: net_tx,
        };
        let mut media_events = self.media_events;
        let mut core = B2bua::new(
            self.cfg,
            self.engine,
            Box::new(net),
            Box::new(self.relay),
            Instant::now(),
        );
        let effects = Effects {
            cdrs: cdr_tx,
            durable: durable_tx,
            resume: resume_tx,
            intercepts: self.intercepts,
        };
        let mut buf = vec![0u8; 65_536];
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        tokio::pin!(shutdown);
        let mut shutdown_seen = false;
        loop {
            let now = Instant::now();
            guarded(&mut core, &effects, |core| core.handle_timeout(now));
            if core.drained(now) {
                guarded(&mut core, &effects, B2bua::refuse_intercepting);
                break;
            }
            let next = core
                .poll_timeout()
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
                                guarded(&mut core, &effects, |core| {
                                    core.handle_bytes(bytes, peer, Instant::now());
                                });
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
                    guarded(&mut core, &effects, |core| core.handle_net(event, Instant::now()));
                    for _ in 1..BATCH {
                        match net_rx.try_recv() {
                            Ok(event) => guarded(&mut core, &effects, |core| {
                                core.handle_net(event, Instant::now());
                            }),
                            Err(_) => break,
                        }
                    }
                }
                Some(event) = media_events.recv() => {
                    guarded(&mut core, &effects, |core| core.handle_media(event, Instant::now()));
                    for _ in 1..BATCH {
                        match media_events.try_recv() {
                            Ok(event) => guarded(&mut core, &effects, |core| {
                                core.handle_media(event, Instant::now());
                            }),
                            Err(_) => break,
                        }
                    }
                }
                Some(resume) = resume_rx.recv() => {
                    guarded(&mut core, &effects, |core| core.handle_resume(resume, Instant::now()));
                }
                () = &mut sleep => {}
                () = &mut shutdown, if !shutdown_seen => {
                    shutdown_seen = true;
                    guarded(&mut core, &effects, |core| core.start_draining(grace, Instant::now()));
                }
            }
        }
        accept.abort();
        let calls_left = core.calls_left();
        if calls_left > 0 {
            tracing::warn!(calls_left, "SIP stopped with calls still closing");
        }
        drop(core);
        drop(effects);
        durable_task.abort();
        let _ = cdr_task.await;
    }
}

/// Where the call logic's effects go.
struct Effects {
    cdrs: mpsc::UnboundedSender<maskline_store::WriteAck>,
    /// Progress-event writes, awaited in order by `await_durable`.
    durable: mpsc::UnboundedSender<(maskline_store::WriteAck, crate::call::Id)>,
    resume: mpsc::UnboundedSender<Resume>,
    intercepts: Arc<dyn Intercepts>,
}

impl Effects {
    fn take(&self, core: &mut B2bua) {
        while let Some(effect) = core.poll_effect() {
            match effect {
                Effect::Write(ack) => {
                    let _ = self.cdrs.send(ack);
                }
                Effect::Progress(ack, call) => {
                    let _ = self.durable.send((ack, call));
                }
                Effect::Intercept(question) => {
                    let Question {
                        sid,
                        target,
                        secret,
                        request,
                    } = *question;
                    let ask = self.intercepts.ask(target, secret, request);
                    let resume = self.resume.clone();
                    tokio::spawn(async move {
                        let verdict = ask.await;
                        let _ = resume.send(Resume::Verdict(sid, verdict));
                    });
                }
            }
        }
    }
}

/// Awaits progress-event writes in queue order (the store applies them in
/// that order) and tells the SIP task each time one is durable.
async fn await_durable(
    mut acks: mpsc::UnboundedReceiver<(maskline_store::WriteAck, crate::call::Id)>,
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

/// Runs one handler, then hands its effects over; a panic in it (a bug) is
/// logged and counted, and the SIP thread goes on serving every other
/// call rather than dying with it.
fn guarded(core: &mut B2bua, effects: &Effects, f: impl FnOnce(&mut B2bua)) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(core)));
    if outcome.is_err() {
        metrics::counter!("maskline_sip_handler_panics_total").increment(1);
        // The panic's message is withheld: it may quote a number.
        tracing::error!("a SIP handler panicked; the message was dropped");
    }
    effects.take(core);
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
