//! The RTP relay: sockets and threads for [`Session`]s.
//!
//! Each anchored call gets two UDP sockets on the media address (one per
//! leg, even ports from the configured range) and lives on one of a few
//! worker threads, each an epoll loop (`mio`) over its sessions' sockets:
//! the packet path never touches the signalling runtime, takes no lock and
//! allocates nothing per packet. The signalling side talks to a session
//! through [`Relay`] (commands over a channel, then a wake-up) and hears
//! back through the event callback given to [`Relay::start`].
//!
//! Ports: a call takes a pair (the even port for RTP, the odd one left
//! free for the RTCP a party may send there, which is not relayed: it
//! carries CNAMEs that can name a host). Freed pairs go to the back of the
//! queue, so a port is reused as late as possible and stray packets of an
//! ended call do not reach the next. No free pair is
//! [`Error::PortsExhausted`], which the SIP layer answers with 503.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;

use crate::player::{FRAME_DURATION, FRAME_SAMPLES, Prompt};
use crate::session::{Leg, LegMedia, Output, Session, SessionEvent, StreamSeeds};
use crate::{Error, Result};

/// Where and how the relay runs.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The address sockets bind to and SDP names.
    pub addr: IpAddr,
    pub ports: RangeInclusive<u16>,
    /// Silence on a leg for this long is reported.
    pub rtp_timeout: Duration,
    /// Worker threads.
    pub workers: usize,
    /// Run the worker threads under `SCHED_FIFO` at this priority (1–99),
    /// so that a packet is relayed when it arrives, not when the scheduler
    /// next gets round to a thread that shares the cores with signalling,
    /// the database or anything else. `None`: ordinary scheduling. Needs
    /// `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO`); without it the workers warn
    /// and run ordinarily. Under a flood they cannot carry, they take the
    /// cores they run on (see [`realtime`]).
    pub realtime_priority: Option<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SessionId(pub u64);

/// An anchored call's media: its id and the local port of each leg.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Anchor {
    pub id: SessionId,
    /// The local RTP port facing A, then B.
    pub ports: [u16; 2],
}

/// Where a recording's audio goes, a frame at a time.
pub trait RecordingSink: Send {
    fn write_frame(&mut self, caller: &[i16], callee: &[i16]) -> Result<()>;
    /// Makes what was written so far readable (and kept across a crash).
    fn flush(&mut self) -> Result<()>;
    /// The audio written, in sample frames, once it is complete.
    fn finish(self: Box<Self>) -> Result<u32>;
}

impl<W: std::io::Write + std::io::Seek + Send> RecordingSink for crate::wav::RecordingWriter<W> {
    fn write_frame(&mut self, caller: &[i16], callee: &[i16]) -> Result<()> {
        crate::wav::RecordingWriter::write_frame(self, caller, callee)
    }

    fn flush(&mut self) -> Result<()> {
        crate::wav::RecordingWriter::flush(self)
    }

    fn finish(self: Box<Self>) -> Result<u32> {
        let frames = self.frames();
        (*self).finish()?;
        Ok(frames)
    }
}

/// What can be changed in a running session.
pub enum Update {
    Leg(Leg, LegMedia),
    Bridge(bool),
    /// Counts RTP silence from now on (the call was answered).
    WatchSilence,
    Play {
        leg: Leg,
        prompt: Prompt,
        plays: u32,
    },
    Stop(Leg),
    Collect(Leg, bool),
    /// Records both legs into the sink `create` makes. It runs on the
    /// recorder's thread (creating a file may wait on the disk); failing,
    /// it is reported as `Recorded(id, None)`.
    Record(CreateSink),
    /// Ends the session: its ports are freed, a recording finished.
    Close,
}

/// What a session reports, with the session.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MediaEvent {
    Session(SessionId, SessionEvent),
    /// A recording was finished as its session closed (`frames` of audio,
    /// or `None` when writing it failed).
    Recorded(SessionId, Option<u32>),
}

type EventSink = Arc<dyn Fn(MediaEvent) + Send + Sync>;

/// Makes a recording's sink.
pub type CreateSink = Box<dyn FnOnce() -> Result<Box<dyn RecordingSink>> + Send>;

/// Most frames waiting for the recorder (about 80 s of one call): beyond
/// them frames are dropped rather than memory grown, or a worker stalled.
const MAX_QUEUED_FRAMES: usize = 4096;

/// What the workers hand the recorder.
enum Recording {
    Start(SessionId, CreateSink),
    Frame(SessionId, Box<([i16; FRAME_SAMPLES], [i16; FRAME_SAMPLES])>),
    Finish(SessionId),
}

/// The recorder: one thread that owns every recording's sink, so that the
/// packet path never waits on a disk.
struct Recorder {
    tx: Sender<Recording>,
    queued: Arc<AtomicUsize>,
}

impl Clone for Recorder {
    fn clone(&self) -> Recorder {
        Recorder {
            tx: self.tx.clone(),
            queued: self.queued.clone(),
        }
    }
}

impl Recorder {
    fn start(events: EventSink) -> Result<(Recorder, JoinHandle<()>)> {
        let (tx, rx) = channel::<Recording>();
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = queued.clone();
        let thread = std::thread::Builder::new()
            .name("maskline-rec".into())
            .spawn(move || record(rx, counter, events))?;
        Ok((Recorder { tx, queued }, thread))
    }

    fn send(&self, recording: Recording) {
        let _ = self.tx.send(recording);
    }

    /// Queues a frame, unless the recorder is that far behind.
    fn frame(&self, id: SessionId, a: [i16; FRAME_SAMPLES], b: [i16; FRAME_SAMPLES]) {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED_FRAMES {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!("maskline_recording_frames_dropped_total").increment(1);
            return;
        }
        self.send(Recording::Frame(id, Box::new((a, b))));
    }
}

/// The recorder's loop: writes frames, makes each file valid every second,
/// finishes recordings as their sessions close.
fn record(rx: Receiver<Recording>, queued: Arc<AtomicUsize>, events: EventSink) {
    let mut sinks: HashMap<SessionId, (Box<dyn RecordingSink>, Instant)> = HashMap::new();
    let fail = |sinks: &mut HashMap<SessionId, (Box<dyn RecordingSink>, Instant)>, id| {
        sinks.remove(&id);
        tracing::error!("a recording could not be written; it stops here");
        events(MediaEvent::Recorded(id, None));
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(Recording::Start(id, create)) => match create() {
                Ok(sink) => {
                    sinks.insert(id, (sink, Instant::now()));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a recording");
                    events(MediaEvent::Recorded(id, None));
                }
            },
            Ok(Recording::Frame(id, frame)) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                let failed = sinks
                    .get_mut(&id)
                    .is_some_and(|(sink, _)| sink.write_frame(&frame.0, &frame.1).is_err());
                if failed {
                    fail(&mut sinks, id);
                }
            }
            Ok(Recording::Finish(id)) => {
                if let Some((sink, _)) = sinks.remove(&id) {
                    events(MediaEvent::Recorded(id, sink.finish().ok()));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                for (id, (sink, _)) in sinks.drain() {
                    events(MediaEvent::Recorded(id, sink.finish().ok()));
                }
                return;
            }
        }
        let now = Instant::now();
        let due: Vec<SessionId> = sinks
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) >= Duration::from_secs(1))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let failed = sinks.get_mut(&id).is_some_and(|(sink, at)| {
                *at = now;
                sink.flush().is_err()
            });
            if failed {
                fail(&mut sinks, id);
            }
        }
    }
}

/// Puts the calling thread under `SCHED_FIFO` at `priority`. A worker
/// waits in `epoll` whenever its sockets are empty, so at any load it can
/// carry it leaves the rest to other threads; a flood it cannot carry keeps
/// it running, and then only the kernel's real-time throttling (by default
/// 5 % of each second) is left to the threads of ordinary priority.
fn realtime(priority: u8) {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let set = ThreadPriorityValue::try_from(priority)
        .map_err(|e| e.to_string())
        .and_then(|value| {
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Crossplatform(value),
                ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
            )
            .map_err(|e| format!("{e:?}"))
        });
    match set {
        Ok(()) => tracing::debug!(priority, "RTP worker runs under SCHED_FIFO"),
        Err(e) => tracing::warn!(
            priority,
            error = %e,
            "cannot run the RTP worker under SCHED_FIFO (needs CAP_SYS_NICE); it runs ordinarily"
        ),
    }
}

enum Command {
    Open {
        id: SessionId,
        sockets: Box<[std::net::UdpSocket; 2]>,
        ports: [u16; 2],
    },
    Update(SessionId, Update),
    Shutdown,
}

struct WorkerHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// The pairs of ports not in use, oldest-freed first.
struct PortPool {
    free: VecDeque<u16>,
}

/// The relay's handle: open sessions, change them, close them.
pub struct Relay {
    recorder: Option<JoinHandle<()>>,
    addr: IpAddr,
    rtp_timeout: Duration,
    ports: Arc<Mutex<PortPool>>,
    workers: Vec<WorkerHandle>,
    next_id: AtomicU64,
}

const WAKER: Token = Token(usize::MAX);
/// How often silence is looked for when no session needs frame ticks.
const SLOW_TICK: Duration = Duration::from_millis(500);

impl Relay {
    /// Starts the worker threads. `events` is called on them: it must not
    /// block (hand the event to a channel).
    pub fn start(
        cfg: RelayConfig,
        events: impl Fn(MediaEvent) + Send + Sync + 'static,
    ) -> Result<Relay> {
        let start = cfg.ports.start() + cfg.ports.start() % 2;
        let free: VecDeque<u16> = (start..=*cfg.ports.end())
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|odd| odd <= *cfg.ports.end()))
            .collect();
        let ports = Arc::new(Mutex::new(PortPool { free }));
        let events: EventSink = Arc::new(events);
        let (recorder, recorder_thread) = Recorder::start(events.clone())?;
        let mut workers = Vec::new();
        for n in 0..cfg.workers.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = channel();
            let worker = Worker {
                poll,
                commands: rx,
                slots: Vec::new(),
                free_slots: Vec::new(),
                by_id: HashMap::new(),
                events: events.clone(),
                recorder: recorder.clone(),
                ports: ports.clone(),
                rtp_timeout: cfg.rtp_timeout,
            };
            let priority = cfg.realtime_priority;
            let thread = std::thread::Builder::new()
                .name(format!("maskline-rtp-{n}"))
                .spawn(move || {
                    if let Some(p) = priority {
                        realtime(p);
                    }
                    worker.run()
                })?;
            workers.push(WorkerHandle {
                commands: tx,
                waker,
                thread: Some(thread),
            });
        }
        // The workers hold the only senders: the recorder finishes every
        // recording and stops once they are gone.
        drop(recorder);
        Ok(Relay {
            recorder: Some(recorder_thread),
            addr: cfg.addr,
            rtp_timeout: cfg.rtp_timeout,
            ports,
            workers,
            next_id: AtomicU64::new(1),
        })
    }

    /// The address that SDP names.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn rtp_timeout(&self) -> Duration {
        self.rtp_timeout
    }

    /// Pairs of ports free.
    pub fn ports_free(&self) -> usize {
        self.ports.lock().map_or(0, |p| p.free.len())
    }

    /// Anchors a new call: binds a socket per leg and hands them to a
    /// worker.
    pub fn open(&self) -> Result<Anchor> {
        let sockets = self.bind_pair()?;
        let ports = [sockets.0, sockets.1];
        let id = SessionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.send(
            id,
            Command::Open {
                id,
                sockets: Box::new([sockets.2, sockets.3]),
                ports,
            },
        );
        Ok(Anchor { id, ports })
    }

    pub fn update(&self, id: SessionId, update: Update) {
        self.send(id, Command::Update(id, update));
    }

    fn send(&self, id: SessionId, command: Command) {
        let Some(worker) = self
            .workers
            .get((id.0 % self.workers.len().max(1) as u64) as usize)
        else {
            return;
        };
        if worker.commands.send(command).is_ok() {
            let _ = worker.waker.wake();
        }
    }

    /// Two sockets (A's and B's) on free even ports.
    fn bind_pair(&self) -> Result<(u16, u16, std::net::UdpSocket, std::net::UdpSocket)> {
        let a = self.bind_one()?;
        match self.bind_one() {
            Ok(b) => Ok((a.0, b.0, a.1, b.1)),
            Err(e) => {
                self.release(a.0);
                Err(e)
            }
        }
    }

    fn bind_one(&self) -> Result<(u16, std::net::UdpSocket)> {
        let mut pool = self.ports.lock().map_err(|_| Error::PortsExhausted)?;
        // Each free pair is tried at most once: one taken by another
        // program goes to the back of the queue.
        for _ in 0..pool.free.len() {
            let Some(port) = pool.free.pop_front() else {
                break;
            };
            match std::net::UdpSocket::bind(SocketAddr::new(self.addr, port)) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    return Ok((port, socket));
                }
                Err(e) if e.kind() == ErrorKind::AddrInUse => pool.free.push_back(port),
                Err(e) => {
                    pool.free.push_front(port);
                    return Err(e.into());
                }
            }
        }
        Err(Error::PortsExhausted)
    }

    fn release(&self, port: u16) {
        if let Ok(mut pool) = self.ports.lock() {
            pool.free.push_back(port);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            if worker.commands.send(Command::Shutdown).is_ok() {
                let _ = worker.waker.wake();
            }
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
        if let Some(thread) = self.recorder.take() {
            let _ = thread.join();
        }
    }
}

// === the worker ===

struct Slot {
    id: SessionId,
    session: Session,
    sockets: [UdpSocket; 2],
    ports: [u16; 2],
    /// Recorded since then, a frame at a time.
    recording: Option<Instant>,
}

struct Worker {
    poll: Poll,
    commands: Receiver<Command>,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<usize>,
    by_id: HashMap<SessionId, usize>,
    events: EventSink,
    recorder: Recorder,
    ports: Arc<Mutex<PortPool>>,
    rtp_timeout: Duration,
}

/// Datagrams read by one `recvmmsg`.
const BATCH: usize = 4;
const DATAGRAM: usize = 2048;

/// Buffers for reading a socket a batch at a time. A socket usually holds
/// one packet (one per 20 ms), and a batch that comes back shorter than
/// asked for means the queue is empty: the edge-triggered socket is drained
/// in one system call instead of a `recvfrom` for the packet and another
/// that only answers `EAGAIN` (a third of the relay's system calls).
struct Inbox {
    headers: MultiHeaders<SockaddrStorage>,
    buffers: Box<[[u8; DATAGRAM]; BATCH]>,
    got: [(usize, Option<SocketAddr>); BATCH],
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            headers: MultiHeaders::preallocate(BATCH, None),
            buffers: Box::new([[0u8; DATAGRAM]; BATCH]),
            got: [(0, None); BATCH],
        }
    }

    /// Reads up to a batch: how many came, or `None` when none was waiting
    /// (or the socket keeps failing).
    fn read(&mut self, socket: &UdpSocket) -> Option<usize> {
        let mut errors = 0;
        loop {
            let mut slices = self
                .buffers
                .each_mut()
                .map(|buffer| [IoSliceMut::new(buffer)]);
            match recvmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(results) => {
                    let mut count = 0;
                    for (got, message) in self.got.iter_mut().zip(results) {
                        *got = (message.bytes, message.address.and_then(socket_addr));
                        count += 1;
                    }
                    return (count > 0).then_some(count);
                }
                Err(Errno::EAGAIN) => return None,
                Err(Errno::EINTR) => {}
                // ICMP errors from earlier sends surface here, one each;
                // anything that keeps failing is not spun on.
                Err(_) => {
                    errors += 1;
                    if errors > 16 {
                        return None;
                    }
                }
            }
        }
    }
}

fn socket_addr(address: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// A session's output: datagrams leave by its sockets, events by the sink.
struct SlotOutput<'a> {
    id: SessionId,
    sockets: &'a [UdpSocket; 2],
    events: &'a EventSink,
}

impl Output for SlotOutput<'_> {
    fn send(&mut self, leg: Leg, to: SocketAddr, packet: &[u8]) {
        // A full socket buffer drops the packet, as the network would.
        let _ = self.sockets[leg.index()].send_to(packet, to);
    }

    fn event(&mut self, event: SessionEvent) {
        (self.events)(MediaEvent::Session(self.id, event));
    }
}

fn seeds() -> StreamSeeds {
    StreamSeeds {
        ssrc: [rand::random(), rand::random()],
        sequence: [rand::random(), rand::random()],
        timestamp: [rand::random(), rand::random()],
    }
}

impl Worker {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        // Made here: its headers hold raw pointers and stay on this thread.
        let mut inbox = Inbox::new();
        let mut next_frame = Instant::now();
        let mut next_slow = Instant::now();
        // Whether some session needs frame ticks: it changes only with
        // commands and ticks, so it is looked for then, not at every
        // wake-up (a scan of every session per packet burst otherwise).
        let mut ticking = false;
        loop {
            let now = Instant::now();
            let wake = if ticking {
                next_frame.min(next_slow)
            } else {
                next_slow
            };
            let timeout = wake.saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "RTP worker cannot poll; stopping");
                return;
            }
            for event in &events {
                if event.token() == WAKER {
                    continue;
                }
                self.readable(&mut inbox, event.token());
            }
            let (more, commanded) = self.commands();
            if !more {
                return;
            }
            let now = Instant::now();
            let mut ticked = false;
            if now >= next_frame {
                // Every session that needs frames gets one per 20 ms.
                while next_frame <= now {
                    next_frame += FRAME_DURATION;
                }
                self.tick(now, true);
                ticked = true;
            }
            if now >= next_slow {
                next_slow = now + SLOW_TICK;
                self.tick(now, false);
                ticked = true;
            }
            if commanded || ticked {
                ticking = self.slots.iter().flatten().any(|s| s.session.needs_ticks());
            }
        }
    }

    fn readable(&mut self, inbox: &mut Inbox, token: Token) {
        let (index, leg) = (
            token.0 / 2,
            if token.0.is_multiple_of(2) {
                Leg::A
            } else {
                Leg::B
            },
        );
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        let now = Instant::now();
        while let Some(count) = inbox.read(&slot.sockets[leg.index()]) {
            for (&(len, from), buffer) in inbox.got.iter().zip(inbox.buffers.iter_mut()).take(count)
            {
                let Some(from) = from else { continue };
                let mut out = SlotOutput {
                    id: slot.id,
                    sockets: &slot.sockets,
                    events: &self.events,
                };
                slot.session
                    .receive(leg, from, &mut buffer[..len.min(DATAGRAM)], now, &mut out);
            }
            if count < BATCH {
                break;
            }
        }
    }

    /// Applies every queued command: whether to go on (`false` once told
    /// to stop), and whether there was any.
    fn commands(&mut self) -> (bool, bool) {
        let mut any = false;
        while let Ok(command) = self.commands.try_recv() {
            any = true;
            match command {
                Command::Open { id, sockets, ports } => self.open(id, *sockets, ports),
                Command::Update(id, update) => self.update(id, update),
                Command::Shutdown => return (false, true),
            }
        }
        (true, any)
    }

    fn open(&mut self, id: SessionId, sockets: [std::net::UdpSocket; 2], ports: [u16; 2]) {
        let index = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let [a, b] = sockets;
        let mut sockets = [UdpSocket::from_std(a), UdpSocket::from_std(b)];
        for (leg, socket) in sockets.iter_mut().enumerate() {
            if let Err(e) =
                self.poll
                    .registry()
                    .register(socket, Token(index * 2 + leg), Interest::READABLE)
            {
                tracing::error!(error = %e, "cannot watch an RTP socket");
            }
        }
        let now = Instant::now();
        let slot = Slot {
            id,
            session: Session::new(seeds(), self.rtp_timeout, now),
            sockets,
            ports,
            recording: None,
        };
        if let Some(place) = self.slots.get_mut(index) {
            *place = Some(slot);
            self.by_id.insert(id, index);
        }
    }

    fn update(&mut self, id: SessionId, update: Update) {
        let Some(&index) = self.by_id.get(&id) else {
            return;
        };
        let now = Instant::now();
        if let Update::Close = update {
            self.close(index);
            return;
        }
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        let session = &mut slot.session;
        match update {
            Update::Leg(leg, media) => session.set_leg(leg, media),
            Update::Bridge(on) => session.bridge(on),
            Update::WatchSilence => session.watch_silence(now),
            Update::Play { leg, prompt, plays } => session.play(leg, prompt, plays, now),
            Update::Stop(leg) => session.stop(leg),
            Update::Collect(leg, on) => session.collect(leg, on),
            Update::Record(create) => {
                session.record(true);
                slot.recording = Some(now);
                self.recorder.send(Recording::Start(id, create));
            }
            Update::Close => {}
        }
    }

    fn close(&mut self, index: usize) {
        let Some(mut slot) = self.slots.get_mut(index).and_then(Option::take) else {
            return;
        };
        self.free_slots.push(index);
        self.by_id.remove(&slot.id);
        for socket in &mut slot.sockets {
            let _ = self.poll.registry().deregister(socket);
        }
        if slot.recording.take().is_some() {
            self.recorder.send(Recording::Finish(slot.id));
        }
        if let Ok(mut pool) = self.ports.lock() {
            pool.free.extend(slot.ports);
        }
    }

    fn tick(&mut self, now: Instant, frames: bool) {
        for slot in self.slots.iter_mut().flatten() {
            if frames != slot.session.needs_ticks() {
                continue;
            }
            let mut out = SlotOutput {
                id: slot.id,
                sockets: &slot.sockets,
                events: &self.events,
            };
            slot.session.tick(now, &mut out);
            let Some(until) = slot.recording.as_mut() else {
                continue;
            };
            while *until + FRAME_DURATION <= now {
                *until += FRAME_DURATION;
                if let Some((a, b)) = slot.session.record_frame() {
                    self.recorder.frame(slot.id, a, b);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket as StdSocket;
    use std::sync::mpsc;

    use super::*;
    use crate::Codec;
    use crate::rtp::{HEADER_LEN, RtpHeader, RtpPacket};

    fn config(ports: RangeInclusive<u16>) -> RelayConfig {
        RelayConfig {
            realtime_priority: None,
            addr: "127.0.0.1".parse().unwrap(),
            ports,
            rtp_timeout: Duration::from_secs(60),
            workers: 1,
        }
    }

    fn peer() -> StdSocket {
        let s = StdSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    fn leg(socket: &StdSocket) -> LegMedia {
        LegMedia {
            remote: Some(socket.local_addr().unwrap()),
            codec: Codec::Pcmu,
            audio_pt: 0,
            event_pt: None,
            rx_event_pt: None,
            sends: true,
        }
    }

    /// A PCMU packet of 20 ms, silent, number `sequence` of stream `ssrc`.
    fn pcmu(sequence: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + 160];
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence,
            timestamp: u32::from(sequence) * 160,
            ssrc,
        }
        .write(&mut p)
        .unwrap();
        p
    }

    /// A small range somewhere no other test is likely to be: the tests
    /// run in parallel, and other test processes too.
    fn free_range(pairs: u16) -> RangeInclusive<u16> {
        let base = 42_000 + 16 * rand::random_range(0..1_000u16);
        base..=base + 2 * pairs - 1
    }

    #[test]
    fn a_bridged_session_relays_real_datagrams_both_ways() {
        relays_both_ways(config(free_range(8)));
    }

    #[test]
    fn workers_asked_to_run_under_sched_fifo_relay_the_same() {
        // Under SCHED_FIFO where allowed (root, CAP_SYS_NICE), warned and
        // ordinary where not: either way the packets go through.
        relays_both_ways(RelayConfig {
            realtime_priority: Some(10),
            ..config(free_range(8))
        });
    }

    fn relays_both_ways(cfg: RelayConfig) {
        let relay = Relay::start(cfg, |_| {}).unwrap();
        let (a, b) = (peer(), peer());
        let anchor = relay.open().unwrap();
        assert!(anchor.ports.iter().all(|p| p % 2 == 0));
        relay.update(anchor.id, Update::Leg(Leg::A, leg(&a)));
        relay.update(anchor.id, Update::Leg(Leg::B, leg(&b)));
        relay.update(anchor.id, Update::Bridge(true));
        let to_a_port = SocketAddr::new(relay.addr(), anchor.ports[0]);
        let to_b_port = SocketAddr::new(relay.addr(), anchor.ports[1]);
        let mut buf = [0u8; 2048];
        for i in 0..20u16 {
            let p = pcmu(i, 0xA);
            a.send_to(&p, to_a_port).unwrap();
            let (n, from) = b.recv_from(&mut buf).unwrap();
            assert_eq!(from, to_b_port, "the callee hears Maskline, not the caller");
            let got = RtpPacket::parse(&buf[..n]).unwrap();
            assert_ne!(got.header.ssrc, 0xA);
            b.send_to(&p, to_b_port).unwrap();
            let (_, from) = a.recv_from(&mut buf).unwrap();
            assert_eq!(from, to_a_port);
        }
        relay.update(anchor.id, Update::Close);
    }

    #[test]
    fn a_burst_longer_than_a_batch_is_relayed_whole_and_in_order() {
        let relay = Relay::start(config(free_range(8)), |_| {}).unwrap();
        let (a, b) = (peer(), peer());
        let anchor = relay.open().unwrap();
        relay.update(anchor.id, Update::Leg(Leg::A, leg(&a)));
        relay.update(anchor.id, Update::Leg(Leg::B, leg(&b)));
        relay.update(anchor.id, Update::Bridge(true));
        let to_a_port = SocketAddr::new(relay.addr(), anchor.ports[0]);
        // More than two batches, sent before the worker can read one.
        let burst = 3 * BATCH as u16 - 1;
        for i in 0..burst {
            let mut p = pcmu(i, 0xB);
            p[HEADER_LEN] = i as u8;
            a.send_to(&p, to_a_port).unwrap();
        }
        let mut buf = [0u8; 2048];
        let mut last = None::<u16>;
        for i in 0..burst {
            let (n, _) = b.recv_from(&mut buf).unwrap();
            let got = RtpPacket::parse(&buf[..n]).unwrap();
            assert_eq!(got.payload[0], i as u8, "packet {i} relayed in order");
            if let Some(last) = last {
                assert_eq!(got.header.sequence, last.wrapping_add(1));
            }
            last = Some(got.header.sequence);
        }
        relay.update(anchor.id, Update::Close);
    }

    #[test]
    fn an_exhausted_range_is_an_error_and_closing_frees_it() {
        let relay = Relay::start(config(free_range(2)), |_| {}).unwrap();
        let first = relay.open().unwrap();
        assert!(matches!(relay.open(), Err(Error::PortsExhausted)));
        relay.update(first.id, Update::Close);
        let deadline = Instant::now() + Duration::from_secs(5);
        while relay.ports_free() < 2 {
            assert!(Instant::now() < deadline, "ports never freed");
            std::thread::sleep(Duration::from_millis(5));
        }
        relay.open().unwrap();
    }

    #[test]
    fn a_prompt_reaches_the_leg_and_its_end_is_reported() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let relay = Relay::start(config(free_range(4)), move |e| {
            let _ = tx.lock().unwrap().send(e);
        })
        .unwrap();
        let a = peer();
        let anchor = relay.open().unwrap();
        relay.update(anchor.id, Update::Leg(Leg::A, leg(&a)));
        relay.update(
            anchor.id,
            Update::Play {
                leg: Leg::A,
                prompt: Prompt::new(vec![2000i16; 800]),
                plays: 1,
            },
        );
        let mut buf = [0u8; 2048];
        for _ in 0..5 {
            let (n, _) = a.recv_from(&mut buf).unwrap();
            assert_eq!(n, HEADER_LEN + 160);
        }
        let event = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            event,
            MediaEvent::Session(anchor.id, SessionEvent::PromptDone(Leg::A))
        );
    }

    #[test]
    fn a_recording_is_written_off_the_packet_path_and_finished_at_close() {
        use crate::recordings::{DirRecordings, RecordingKey, Recordings};

        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DirRecordings::new(dir.path()).unwrap());
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let relay = Relay::start(config(free_range(4)), move |e| {
            let _ = tx.lock().unwrap().send(e);
        })
        .unwrap();
        let (a, b) = (peer(), peer());
        let anchor = relay.open().unwrap();
        relay.update(anchor.id, Update::Leg(Leg::A, leg(&a)));
        relay.update(anchor.id, Update::Leg(Leg::B, leg(&b)));
        relay.update(anchor.id, Update::Bridge(true));
        let key = RecordingKey::new("t", "c").unwrap();
        let (creator, k) = (store.clone(), key.clone());
        relay.update(
            anchor.id,
            Update::Record(Box::new(move || creator.create(&k))),
        );
        let to_a_port = SocketAddr::new(relay.addr(), anchor.ports[0]);
        let mut buf = [0u8; 2048];
        for i in 0..25u16 {
            let mut p = pcmu(i, 7);
            p[HEADER_LEN..].fill(0x55);
            a.send_to(&p, to_a_port).unwrap();
            b.recv_from(&mut buf).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        relay.update(anchor.id, Update::Close);
        let frames = loop {
            match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
                MediaEvent::Recorded(id, frames) if id == anchor.id => break frames,
                _ => {}
            }
        };
        let frames = frames.expect("finished");
        assert!(frames >= 8000 / 4, "{frames} frames recorded");
        let stored = store.open(&key).unwrap().unwrap();
        let samples = crate::wav::read_recording(stored.reader, 1 << 24).unwrap();
        assert_eq!(samples.len() as u32, frames);
        assert!(samples.iter().any(|s| s[0] != 0), "the caller's audio");
    }
}
