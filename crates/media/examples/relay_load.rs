//! Load for the RTP relay: Maskline's [`Relay`] against rtpengine in
//! userspace mode, driven by the same generator in the same run
//! (BENCHMARKS.md §8, `bench/media_relay.sh`).
//!
//! ```text
//! relay_load drive --target maskline|rtpengine|direct --calls N --secs S
//!     [--warmup 3] [--workers 1] [--ports 14000-25999] [--sockets 2]
//!     [--senders 1] [--receivers 1] [--slice-us 100] [--tx-batch 16]
//!     [--rx-nap-us 200]
//!     [--rcvbuf-mb 16] [--rtpengine rtpengine] [--rtpengine-threads 2]
//!     [--relay-cpus LIST] [--rt-priority 0: the relay's threads under SCHED_FIFO]
//! relay_load serve-maskline --calls N [--ports 14000-25999] [--workers 1]
//!     [--max-secs 600] [--rt-priority 0]
//! ```
//!
//! `drive` is the load generator. Each call is two G.711 streams, the
//! caller's and the callee's: 172-byte RTP (12-byte header, 160 bytes of
//! PCMU) every 20 ms, sent to the relay's port facing that leg, and
//! received relayed from the relay's port facing the other leg. 100
//! packets/s a call; 2,000 calls are 200,000 packets/s.
//!
//! The generator is built to cost little per packet, so that the relay
//! under test gets the cores: it does not have two sockets per call but
//! `--sockets` (2) on each side, all on 127.0.0.1. Call `c` uses caller-side
//! socket `c % sockets` and callee-side socket `c % sockets`; the relay is
//! told those addresses as the legs' remotes (Maskline: `LegMedia.remote`;
//! rtpengine: the SDP of the offer and the answer), so every call names
//! the same few generator addresses. Each socket has a large receive buffer
//! (`SO_RCVBUFFORCE`, `--rcvbuf-mb`; `SO_RCVBUF` when not allowed) so that a
//! receiver's nap does not overflow it.
//!
//! - Sending: `--senders` threads (1) spread the streams evenly over each
//!   20 ms. A sender wakes every `--slice-us` (100 µs, more with the timer
//!   slack), takes every packet that is due (never one early), and sends
//!   them with `sendmmsg`, one call per socket and at most `--tx-batch`
//!   (16) packets a call (each message has its own destination). A
//!   packet's payload carries its stream, its sequence number, whether it
//!   is in the measured window, and its send stamp: `CLOCK_REALTIME`, read
//!   just before the `sendmmsg` that carries it (so a packet later in the
//!   call left up to that call's length after its stamp; the result
//!   reports the calls' mean and largest length).
//! - Receiving: `--receivers` threads (1) read their sockets with
//!   `recvmmsg` (64 a call, non-blocking) until a short batch, then nap
//!   `--rx-nap-us` (200) instead of waiting in epoll, so a packet's arrival
//!   wakes no thread: on loopback the relay's `sendto` would otherwise pay
//!   for waking the generator (on a real network it wakes nobody). Arrival
//!   is the kernel's receive stamp (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`,
//!   taken when the relay's send hands the packet to the loopback device),
//!   so the nap and the batching do not add to the measured delay; a packet
//!   without one (counted) gets the time `recvmmsg` returned.
//! - Checks, per stream (identified by the stamp in its payload): loss
//!   (sent in the window − received), duplicates, reordering, packets that
//!   arrived on another socket than the one the stream's receiving leg
//!   uses, or from another source than the relay's port facing that leg
//!   (`direct`: the sending socket), packets that are not ours, send
//!   errors; the one-way delay (arrival − send stamp) and the jitter: for
//!   consecutive packets of a stream, |arrival interval − sending interval|
//!   (RFC 3550's D), against the real send stamps. Both over the packets
//!   sent after `--warmup` (3 s); CPU over the same `--secs` window. At the
//!   end it reads the drop counters of every UDP socket (`/proc/net/udp`)
//!   to tell where lost packets were dropped: in the generator's sockets
//!   or the relay's.
//!
//! The relay runs in a process of its own so that its CPU
//! (`/proc/PID/stat`, utime + stime over the measured window) and memory
//! (`VmRSS` with no call, then with N calls set up) can be read; the tool
//! reads its own CPU too (it shares the cores), and the machine's busy
//! time, to tell a quiet run from a disturbed one:
//!
//! - `maskline:W`: this program's `serve-maskline` mode as a child, a
//!   `maskline_media::relay::Relay` with `--workers` threads; its sessions
//!   get both legs (PCMU) and `Update::Bridge(true)` over stdin.
//! - `rtpengine:T`: `rtpengine --table=-1` (userspace only, no kernel
//!   forwarding), started under `timeout`, each call made with an ng
//!   `offer` and `answer` naming the generator's sockets.
//! - `direct`: no relay; the caller-side sockets send straight to the
//!   callee-side ones and back. What the generator itself costs and adds
//!   to delay and jitter on this machine.
//!
//! One `result` line of `key=value` pairs is printed at the end.
//!
//! Bounded: all traffic is on 127.0.0.1; the run has a deadline (setup
//! 120 s + warmup + secs + 30 s) after which a watchdog stops the relay and
//! exits; the relay is stopped on every exit path (the Maskline child also
//! exits when its stdin closes, rtpengine when its `timeout` expires).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, ErrorKind, IoSlice, IoSliceMut, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use maskline_media::Codec;
use maskline_media::relay::{Relay, RelayConfig, Update};
use maskline_media::session::{Leg, LegMedia};
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, getsockopt, recvmmsg,
    sendmmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;

type Res<T> = Result<T, String>;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PERIOD_NS: u64 = 20_000_000;
const HEADER: usize = 12;
const PAYLOAD: usize = 160;
const PACKET: usize = HEADER + PAYLOAD;
const MAGIC: u32 = 0x4d4c_5242;
const DEFAULT_PORTS: (u16, u16) = (14_000, 25_999);
/// Messages a `sendmmsg` or `recvmmsg` carries at most.
const BATCH: usize = 64;
/// A receive buffer: larger than a packet, so a larger datagram shows.
const RX_BUF: usize = 512;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("serve-maskline") => serve(&argv[1..]),
        Some("drive") => {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                stop_children();
                previous(info);
            }));
            let r = drive(&argv[1..]);
            stop_children();
            r
        }
        _ => Err(
            "usage: relay_load drive --target maskline|rtpengine|direct --calls N --secs S \
                  | relay_load serve-maskline --calls N --ports A-B"
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("relay_load: {e}");
        std::process::exit(1);
    }
}

// === arguments ===

struct Args(HashMap<String, String>);

impl Args {
    fn parse(args: &[String]) -> Res<Args> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {key:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_string(), value.clone());
        }
        Ok(Args(map))
    }

    fn str<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.0.get(key).map_or(default, String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Res<T> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{key}: not a number: {v}")),
        }
    }

    fn range(&self, key: &str, default: (u16, u16)) -> Res<(u16, u16)> {
        let Some(v) = self.0.get(key) else {
            return Ok(default);
        };
        let (a, b) = v
            .split_once('-')
            .ok_or_else(|| format!("--{key}: expected A-B, got {v}"))?;
        let parse = |s: &str| {
            s.parse::<u16>()
                .map_err(|_| format!("--{key}: bad port {s}"))
        };
        Ok((parse(a)?, parse(b)?))
    }
}

fn io(context: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{context}: {e}")
}

// === serve-maskline: the relay under test, in its own process ===

fn serve(args: &[String]) -> Res<()> {
    let args = Args::parse(args)?;
    let calls: usize = args.num("calls", 0)?;
    let (lo, hi) = args.range("ports", DEFAULT_PORTS)?;
    let workers: usize = args.num("workers", 1)?;
    let max_secs: u64 = args.num("max-secs", 600)?;
    // `MASKLINE_RTP_PRIORITY`: the workers under SCHED_FIFO; 0: ordinary.
    let rt_priority: u8 = args.num("rt-priority", 0)?;
    thread::spawn(move || {
        thread::sleep(Duration::from_secs(max_secs));
        eprintln!("serve-maskline: time limit of {max_secs} s reached");
        std::process::exit(3);
    });
    let relay = Relay::start(
        RelayConfig {
            addr: LOOPBACK,
            ports: lo..=hi,
            rtp_timeout: Duration::from_secs(3600),
            workers,
            realtime_priority: (rt_priority > 0).then_some(rt_priority),
        },
        |_| {},
    )
    .map_err(|e| format!("relay: {e}"))?;
    let mut lines = std::io::stdin().lock().lines();
    let mut next = move || -> Res<String> {
        lines
            .next()
            .ok_or("stdin closed")?
            .map_err(io("reading stdin"))
    };
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| -> Res<()> {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(io("writing stdout"))
    };
    say("ready".into())?;
    if next()? != "open" {
        return Err("expected `open`".into());
    }
    let mut anchors = Vec::with_capacity(calls);
    for _ in 0..calls {
        let anchor = relay
            .open()
            .map_err(|e| format!("opening a session: {e}"))?;
        say(format!("anchor {} {}", anchor.ports[0], anchor.ports[1]))?;
        anchors.push(anchor);
    }
    say("opened".into())?;
    for anchor in &anchors {
        let line = next()?;
        let mut words = line.split_whitespace();
        if words.next() != Some("leg") {
            return Err(format!("expected `leg A B`, got {line:?}"));
        }
        for leg in Leg::BOTH {
            let remote: SocketAddr = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("bad address in {line:?}"))?;
            if !remote.ip().is_loopback() {
                return Err(format!("{remote} is not on 127.0.0.1"));
            }
            let media = LegMedia {
                remote: Some(remote),
                codec: Codec::Pcmu,
                audio_pt: 0,
                event_pt: None,
                rx_event_pt: None,
                sends: true,
            };
            relay.update(anchor.id, Update::Leg(leg, media));
        }
        relay.update(anchor.id, Update::Bridge(true));
    }
    say("bridged".into())?;
    // Relays until told to quit or until stdin closes (the driver is gone).
    while let Ok(line) = next() {
        if line == "quit" {
            break;
        }
    }
    drop(relay);
    Ok(())
}

// === children: stopped on every exit path ===

struct Kid {
    child: Child,
    /// rtpengine's pid when `child` is the `timeout` that runs it.
    inner: Option<u32>,
}

static KIDS: Mutex<Vec<Kid>> = Mutex::new(Vec::new());

fn keep_child(kid: Kid) {
    KIDS.lock().unwrap_or_else(|e| e.into_inner()).push(kid);
}

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn is_rtpengine(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "rtpengine")
}

fn stop_children() {
    let kids = std::mem::take(&mut *KIDS.lock().unwrap_or_else(|e| e.into_inner()));
    for mut kid in kids {
        match kid.inner {
            // rtpengine shuts down on SIGTERM; `timeout` exits with it.
            Some(pid) if is_rtpengine(pid) => signal("TERM", pid),
            _ => {
                let _ = kid.child.kill();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(kid.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(20));
        }
        if let Some(pid) = kid.inner
            && is_rtpengine(pid)
        {
            signal("KILL", pid);
        }
        let _ = kid.child.kill();
        let _ = kid.child.wait();
    }
}

// === /proc ===

fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted after the command's ')'.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn status_kb(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The whole machine's busy time (all CPUs: user, nice, system, irq,
/// softirq, steal), in clock ticks.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy = fields.iter().take(8).sum::<u64>() - fields.get(3)? - fields.get(4)?;
    Some(busy)
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

// === drive ===

/// Where a call's two streams go: the caller-side socket sends to `to[0]`
/// (the relay's port facing the caller), the callee-side one to `to[1]`.
struct Setup {
    relay_pid: Option<u32>,
    rss_base_kb: Option<u64>,
    rss_calls_kb: Option<u64>,
    to: Vec<[SocketAddr; 2]>,
}

struct Load {
    /// The schedule's origin (monotonic, for pacing).
    t0: Instant,
    warmup_rounds: u32,
    rounds: u32,
}

/// The generator's sockets: `--sockets` on each side, caller side first.
/// Socket `side * per_side + i` is side `side`'s socket `i`.
struct Sockets {
    all: Vec<UdpSocket>,
    per_side: usize,
}

impl Sockets {
    /// The socket a call's leg on `side` uses.
    fn of(&self, call: usize, side: usize) -> usize {
        side * self.per_side + call % self.per_side
    }
}

fn v4(addr: SocketAddr) -> Res<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => Err(format!("{a} is not IPv4")),
    }
}

/// A UDP socket on 127.0.0.1 with large buffers and kernel receive stamps.
fn generator_socket(buffer: usize) -> Res<(UdpSocket, usize)> {
    let socket = UdpSocket::bind(SocketAddr::new(LOOPBACK, 0)).map_err(io("binding"))?;
    socket.set_nonblocking(true).map_err(io("nonblocking"))?;
    // SO_RCVBUFFORCE goes past net.core.rmem_max (needs CAP_NET_ADMIN).
    if setsockopt(&socket, sockopt::RcvBufForce, &buffer).is_err() {
        let _ = setsockopt(&socket, sockopt::RcvBuf, &buffer);
    }
    if setsockopt(&socket, sockopt::SndBufForce, &buffer).is_err() {
        let _ = setsockopt(&socket, sockopt::SndBuf, &buffer);
    }
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true)
        .map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
    let got = getsockopt(&socket, sockopt::RcvBuf).map_err(|e| format!("SO_RCVBUF: {e}"))?;
    Ok((socket, got))
}

fn drive(args: &[String]) -> Res<()> {
    let args = Args::parse(args)?;
    let target = args.str("target", "maskline").to_string();
    let calls: usize = args.num("calls", 100)?;
    let secs: u64 = args.num("secs", 10)?;
    let warmup: u64 = args.num("warmup", 3)?;
    let workers: usize = args.num("workers", 1)?;
    let per_side: usize = args.num::<usize>("sockets", 2)?.clamp(1, 64);
    let senders: usize = args.num::<usize>("senders", 1)?.max(1);
    let receivers: usize = args.num::<usize>("receivers", 1)?.clamp(1, 2 * per_side);
    let slice_ns: u64 = args.num::<u64>("slice-us", 100)? * 1000;
    let tx_batch: usize = args.num::<usize>("tx-batch", 16)?.clamp(1, BATCH);
    let nap = Duration::from_micros(args.num("rx-nap-us", 200)?);
    let rcvbuf: usize = args.num::<usize>("rcvbuf-mb", 16)? << 20;
    let ports = args.range("ports", DEFAULT_PORTS)?;
    if calls == 0 || secs == 0 {
        return Err("--calls and --secs must be positive".into());
    }
    if target != "direct" && usize::from(ports.1 - ports.0) + 1 < 4 * calls {
        return Err(format!(
            "--ports {}-{} is too small: 4 ports a call",
            ports.0, ports.1
        ));
    }
    let limit = 120 + warmup + secs + 30;
    thread::spawn(move || {
        thread::sleep(Duration::from_secs(limit));
        eprintln!("relay_load: time limit of {limit} s reached; stopping");
        stop_children();
        std::process::exit(3);
    });

    let mut all = Vec::with_capacity(2 * per_side);
    let mut rcvbuf_got = 0;
    for _ in 0..2 * per_side {
        let (socket, got) = generator_socket(rcvbuf)?;
        all.push(socket);
        rcvbuf_got = got;
    }
    let sockets = Sockets { all, per_side };
    let addrs: Vec<SocketAddr> = sockets
        .all
        .iter()
        .map(|s| s.local_addr().map_err(io("local_addr")))
        .collect::<Res<_>>()?;
    // Each call's two legs: the generator's addresses the relay sends to.
    let local: Vec<[SocketAddr; 2]> = (0..calls)
        .map(|c| [addrs[sockets.of(c, 0)], addrs[sockets.of(c, 1)]])
        .collect();

    // The relay's CPUs (`taskset -c` list); a generator pinned with
    // taskset must give them, or the relay inherits its CPUs.
    let cpus = args.0.get("relay-cpus").map(String::as_str);
    let setup_started = Instant::now();
    let setup = match target.as_str() {
        "maskline" => setup_maskline(
            cpus,
            calls,
            ports,
            workers,
            args.num("rt-priority", 0)?,
            limit,
            &local,
        )?,
        "rtpengine" => setup_rtpengine(&args, cpus, calls, ports, limit, &local)?,
        "direct" => Setup {
            relay_pid: None,
            rss_base_kb: None,
            rss_calls_kb: None,
            to: local.iter().map(|&[a, b]| [b, a]).collect(),
        },
        other => return Err(format!("unknown --target {other}")),
    };
    let setup_secs = setup_started.elapsed().as_secs_f64();
    for to in setup.to.iter().flatten() {
        if !to.ip().is_loopback() {
            return Err(format!("the relay named {to}, not 127.0.0.1")); // never elsewhere
        }
    }

    // Streams: 2c is call c's caller (side 0), 2c + 1 its callee (side 1).
    // Stream k leaves by its side's socket to `to[c][side]`, and arrives
    // on the other side's socket from `to[c][1 - side]`: the relay's port
    // facing the receiving leg (`direct`: the sending socket).
    let streams = 2 * calls;
    let expect: Vec<(usize, SocketAddrV4)> = (0..streams)
        .map(|k| {
            let (c, side) = (k / 2, k % 2);
            Ok((sockets.of(c, 1 - side), v4(setup.to[c][1 - side])?))
        })
        .collect::<Res<_>>()?;
    let expect = Arc::new(expect);
    let my_ports: HashSet<u16> = addrs.iter().map(SocketAddr::port).collect();
    let relay_ports: HashSet<u16> = setup.to.iter().flatten().map(SocketAddr::port).collect();

    let warmup_rounds = (warmup * 1_000_000_000 / PERIOD_NS) as u32;
    let rounds = warmup_rounds + (secs * 1_000_000_000 / PERIOD_NS) as u32;
    let load = Arc::new(Load {
        // A moment to start the threads.
        t0: Instant::now() + Duration::from_millis(100),
        warmup_rounds,
        rounds,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sockets = Arc::new(sockets);

    // Receivers: thread r reads sockets r, r + receivers, ...
    let rx_threads: Vec<_> = (0..receivers)
        .map(|r| {
            let (load, stop, sockets, expect) =
                (load.clone(), stop.clone(), sockets.clone(), expect.clone());
            thread::Builder::new()
                .name("rx".into())
                .spawn(move || {
                    let mine: Vec<usize> = (r..sockets.all.len()).step_by(receivers).collect();
                    receive(&sockets, &mine, &expect, &load, &stop, nap)
                })
                .map_err(io("spawn"))
        })
        .collect::<Res<_>>()?;
    let mut outs: Vec<Vec<Out>> = (0..senders).map(|_| Vec::new()).collect();
    for k in 0..streams {
        let (c, side) = (k / 2, k % 2);
        outs[k % senders].push(Out {
            socket: sockets.of(c, side),
            to: SockaddrIn::from(v4(setup.to[c][side])?),
            stream: k as u32,
            phase_ns: k as u64 * PERIOD_NS / streams as u64,
        });
    }
    let tx_threads: Vec<_> = outs
        .into_iter()
        .map(|outs| {
            let (load, sockets) = (load.clone(), sockets.clone());
            thread::Builder::new()
                .name("tx".into())
                .spawn(move || send(outs, &sockets, &load, slice_ns, tx_batch))
                .map_err(io("spawn"))
        })
        .collect::<Res<_>>()?;

    // CPU over the measured window.
    let relay_pid = setup.relay_pid.map(|p| p.to_string());
    let sleep_until = |t: Instant| thread::sleep(t.saturating_duration_since(Instant::now()));
    let window_start = load.t0 + Duration::from_secs(warmup);
    let window_end = window_start + Duration::from_secs(secs);
    sleep_until(window_start);
    let relay_t0 = relay_pid.as_deref().and_then(cpu_ticks);
    let self_t0 = cpu_ticks("self");
    let machine_t0 = machine_busy_ticks();
    let snmp_t0 = udp_snmp();
    let load_t0 = loadavg();
    sleep_until(window_end);
    let relay_t1 = relay_pid.as_deref().and_then(cpu_ticks);
    let self_t1 = cpu_ticks("self");
    let machine_t1 = machine_busy_ticks();
    let snmp_t1 = udp_snmp();
    let rss_end_kb = relay_pid.as_deref().and_then(|p| status_kb(p, "VmRSS"));
    let hwm_kb = relay_pid.as_deref().and_then(|p| status_kb(p, "VmHWM"));

    let mut sent = SendStats::default();
    for t in tx_threads {
        sent.add(&t.join().map_err(|_| "a sender panicked")?);
    }
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut got = RecvStats::new();
    for t in rx_threads {
        got.add(&t.join().map_err(|_| "a receiver panicked")?);
    }
    // Where packets were dropped for a full receive buffer, over the whole
    // run: read while the relay's sockets still exist.
    let drops = udp_drops();
    let gen_drops: u64 = drops
        .iter()
        .filter(|(p, _)| my_ports.contains(p))
        .map(|(_, d)| d)
        .sum();
    let relay_drops: u64 = drops
        .iter()
        .filter(|(p, _)| relay_ports.contains(p) && !my_ports.contains(p))
        .map(|(_, d)| d)
        .sum();
    stop_children();

    let tck = clock_ticks() as f64;
    let cpu_pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some((b - a) as f64 / tck / secs as f64 * 100.0),
        _ => None,
    };
    let relay_cpu = cpu_pct(relay_t0, relay_t1);
    let gen_cpu = cpu_pct(self_t0, self_t1);
    let machine_cpu = cpu_pct(machine_t0, machine_t1);
    // What else ran: the machine's busy time less the relay's and ours.
    let other_cpu = machine_cpu.map(|m| m - relay_cpu.unwrap_or(0.0) - gen_cpu.unwrap_or(0.0));
    let lost = sent.measured as i64 - got.received as i64;
    let relayed_pps = got.received as f64 / secs as f64;
    // What the senders achieved: the measured packets over the time they
    // took (longer than --secs when the generator fell behind).
    let sending_secs =
        (sent.last_ns.saturating_sub(warmup * 1_000_000_000) as f64 / 1e9).max(secs as f64 - 0.02);
    let achieved_pps = sent.measured as f64 / sending_secs;
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    let per_call_kb = match (setup.rss_base_kb, setup.rss_calls_kb) {
        (Some(a), Some(b)) => Some((b as f64 - a as f64) / calls as f64),
        _ => None,
    };
    let us_per_pkt = relay_cpu.map(|c| c / 100.0 * 1e6 / relayed_pps.max(1.0));
    let us_per_call_s = relay_cpu.map(|c| c / 100.0 * 1e6 / calls as f64);
    // The generator's CPU a packet it handled (sent, and received).
    let gen_us_per_pkt = gen_cpu.map(|c| c / 100.0 * 1e6 / (achieved_pps + relayed_pps).max(1.0));
    let snmp = |i: usize| match (&snmp_t0, &snmp_t1) {
        (Some(a), Some(b)) => b
            .get(i)
            .zip(a.get(i))
            .map_or("-".into(), |(b, a)| b.saturating_sub(*a).to_string()),
        _ => "-".to_string(),
    };
    let kb = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    println!(
        "result target={target} workers={w} calls={calls} secs={secs} setup_s={setup_secs:.1} \
         sockets={per_side} rcvbuf_kb={rcvbuf_kb} \
         offered_pps={offered} achieved_pps={achieved_pps:.0} sent={sent_n} received={received} lost={lost} \
         loss_pct={loss_pct:.4} dups={dups} reorders={reorders} misrouted={misrouted} \
         wrong_socket={wrong_socket} wrong_source={wrong_source} foreign={foreign} \
         send_errors={send_errors} late_sends={late} max_send_lag_us={lag} \
         tx_calls={tx_calls} tx_batch={tx_batch_avg:.1} tx_call_us={tx_call_us:.1} tx_call_max_us={tx_call_max_us} \
         rx_calls={rx_calls} rx_batch={rx_batch:.1} user_stamps={user_stamps} \
         gen_sock_drops={gen_drops} relay_sock_drops={relay_drops} udp_rcvbuf_errors={rcvbuf_errors} udp_in_errors={in_errors} \
         lat_p50_us={lp50} lat_p99_us={lp99} lat_max_us={lmax} \
         jit_p50_us={jp50} jit_p99_us={jp99} jit_p999_us={jp999} jit_max_us={jmax} \
         relay_cpu_pct={rcpu} relay_us_per_pkt={upp} relay_us_per_call_s={upc} \
         gen_cpu_pct={gcpu} gen_us_per_pkt={gupp} machine_cpu_pct={mcpu} other_cpu_pct={ocpu} \
         rss_base_kb={rb} rss_calls_kb={rc} rss_end_kb={re} hwm_kb={hwm} \
         kb_per_call={kpc} load1={load1}",
        w = if target == "maskline" {
            workers.to_string()
        } else if target == "rtpengine" {
            args.str("rtpengine-threads", "2").to_string()
        } else {
            "-".into()
        },
        rcvbuf_kb = rcvbuf_got / 1024,
        offered = streams as u64 * 1_000_000_000 / PERIOD_NS,
        sent_n = sent.measured,
        received = got.received,
        loss_pct = lost as f64 * 100.0 / sent.measured.max(1) as f64,
        dups = got.dups,
        reorders = got.reorders,
        misrouted = got.wrong_socket + got.wrong_source,
        wrong_socket = got.wrong_socket,
        wrong_source = got.wrong_source,
        foreign = got.foreign,
        send_errors = sent.errors,
        late = sent.late,
        lag = sent.max_lag_ns / 1000,
        tx_calls = sent.calls,
        tx_batch_avg = sent.packets as f64 / sent.calls.max(1) as f64,
        tx_call_us = sent.call_ns as f64 / 1000.0 / sent.calls.max(1) as f64,
        tx_call_max_us = sent.call_max_ns / 1000,
        rx_calls = got.calls,
        rx_batch = got.packets as f64 / got.calls.max(1) as f64,
        user_stamps = got.user_stamps,
        rcvbuf_errors = snmp(4),
        in_errors = snmp(2),
        lp50 = got.latency.quantile_us(0.5),
        lp99 = got.latency.quantile_us(0.99),
        lmax = got.latency.max_ns / 1000,
        jp50 = got.jitter.quantile_us(0.5),
        jp99 = got.jitter.quantile_us(0.99),
        jp999 = got.jitter.quantile_us(0.999),
        jmax = got.jitter.max_ns / 1000,
        rcpu = opt(relay_cpu, 1),
        upp = opt(us_per_pkt, 2),
        upc = opt(us_per_call_s, 1),
        gcpu = opt(gen_cpu, 1),
        gupp = opt(gen_us_per_pkt, 2),
        mcpu = opt(machine_cpu, 1),
        ocpu = opt(other_cpu, 1),
        rb = kb(setup.rss_base_kb),
        rc = kb(setup.rss_calls_kb),
        re = kb(rss_end_kb),
        hwm = kb(hwm_kb),
        kpc = opt(per_call_kb, 2),
        load1 = load_t0,
    );
    Ok(())
}

/// The `Udp:` counters of `/proc/net/snmp` (this network namespace):
/// InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors ...
fn udp_snmp() -> Option<Vec<u64>> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let line = snmp.lines().filter(|l| l.starts_with("Udp: ")).nth(1)?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect(),
    )
}

/// Every IPv4 UDP socket's local port and drop count (`/proc/net/udp`).
fn udp_drops() -> Vec<(u16, u64)> {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields.get(1)?.rsplit_once(':')?.1;
            let port = u16::from_str_radix(port, 16).ok()?;
            let drops = fields.last()?.parse().ok()?;
            Some((port, drops))
        })
        .collect()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "-".into())
}

/// `program`, under `taskset -c CPUS` when given (taskset execs it: the
/// pid is the program's).
fn pinned(program: &std::ffi::OsStr, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn read_line(from: &mut BufReader<ChildStdout>, what: &str) -> Res<String> {
    let mut line = String::new();
    match from.read_line(&mut line) {
        Ok(0) => Err(format!("the relay exited before {what}")),
        Ok(_) => Ok(line.trim_end().to_string()),
        Err(e) => Err(format!("reading the relay ({what}): {e}")),
    }
}

fn setup_maskline(
    cpus: Option<&str>,
    calls: usize,
    ports: (u16, u16),
    workers: usize,
    rt_priority: u8,
    limit: u64,
    local: &[[SocketAddr; 2]],
) -> Res<Setup> {
    let exe = std::env::current_exe().map_err(io("current_exe"))?;
    let mut child = pinned(exe.as_os_str(), cpus)
        .args(["serve-maskline", "--calls", &calls.to_string()])
        .args(["--ports", &format!("{}-{}", ports.0, ports.1)])
        .args(["--workers", &workers.to_string()])
        .args(["--rt-priority", &rt_priority.to_string()])
        .args(["--max-secs", &limit.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io("starting serve-maskline"))?;
    let pid = child.id();
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        return Err("no pipes to the child".into());
    };
    keep_child(Kid { child, inner: None });
    let mut stdout = BufReader::new(stdout);
    if read_line(&mut stdout, "ready")? != "ready" {
        return Err("serve-maskline did not start".into());
    }
    thread::sleep(Duration::from_millis(200));
    let rss_base_kb = status_kb(&pid.to_string(), "VmRSS");
    writeln!(stdin, "open").map_err(io("to the relay"))?;
    let mut to = Vec::with_capacity(calls);
    for _ in 0..calls {
        let line = read_line(&mut stdout, "its anchors")?;
        let mut words = line.split_whitespace().skip(1);
        let mut port = || -> Res<u16> {
            words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("bad anchor line {line:?}"))
        };
        let (a, b) = (port()?, port()?);
        to.push([SocketAddr::new(LOOPBACK, a), SocketAddr::new(LOOPBACK, b)]);
    }
    if read_line(&mut stdout, "opened")? != "opened" {
        return Err("serve-maskline did not open its sessions".into());
    }
    let mut legs = String::with_capacity(calls * 40);
    for [caller, callee] in local.iter().take(calls) {
        legs.push_str(&format!("leg {caller} {callee}\n"));
    }
    stdin
        .write_all(legs.as_bytes())
        .and_then(|()| stdin.flush())
        .map_err(io("to the relay"))?;
    if read_line(&mut stdout, "bridged")? != "bridged" {
        return Err("serve-maskline did not bridge".into());
    }
    // The workers apply the commands after the child answers.
    thread::sleep(Duration::from_millis(500));
    let rss_calls_kb = status_kb(&pid.to_string(), "VmRSS");
    // The pipe stays open for the child's life: closing it stops it.
    std::mem::forget(stdin);
    Ok(Setup {
        relay_pid: Some(pid),
        rss_base_kb,
        rss_calls_kb,
        to,
    })
}

fn setup_rtpengine(
    args: &Args,
    cpus: Option<&str>,
    calls: usize,
    ports: (u16, u16),
    limit: u64,
    local: &[[SocketAddr; 2]],
) -> Res<Setup> {
    let ng = std::net::UdpSocket::bind(SocketAddr::new(LOOPBACK, 0)).map_err(io("ng socket"))?;
    let ng_port = {
        let probe =
            std::net::UdpSocket::bind(SocketAddr::new(LOOPBACK, 0)).map_err(io("ng probe"))?;
        probe.local_addr().map_err(io("ng probe"))?.port()
    };
    let log = std::env::temp_dir().join(format!("relay_load-rtpengine-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).map_err(io("rtpengine log"))?;
    let mut command = Command::new("timeout");
    command.args(["-k", "5", &limit.to_string()]);
    if let Some(cpus) = cpus {
        command.args(["taskset", "-c", cpus]);
    }
    let child = command
        .arg(args.str("rtpengine", "rtpengine"))
        .args([
            "--config-file=none",
            "--table=-1",
            "--interface=127.0.0.1",
            "--foreground",
            "--log-stderr",
            "--log-level=5",
        ])
        .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
        .arg(format!("--port-min={}", ports.0))
        .arg(format!("--port-max={}", ports.1))
        .arg(format!(
            "--num-threads={}",
            args.str("rtpengine-threads", "2")
        ))
        // The same real-time scheduling as Maskline's workers get.
        .args(match args.num::<u8>("rt-priority", 0)? {
            0 => Vec::new(),
            p => vec!["--scheduling=fifo".to_owned(), format!("--priority={p}")],
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(io("starting rtpengine under timeout"))?;
    let timeout_pid = child.id();
    keep_child(Kid { child, inner: None });
    // rtpengine is `timeout`'s only child.
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        let children =
            std::fs::read_to_string(format!("/proc/{timeout_pid}/task/{timeout_pid}/children"))
                .unwrap_or_default();
        if let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            break pid;
        }
        if Instant::now() > deadline {
            return Err("rtpengine did not start".into());
        }
        thread::sleep(Duration::from_millis(10));
    };
    if let Some(kid) = KIDS.lock().unwrap_or_else(|e| e.into_inner()).last_mut() {
        kid.inner = Some(pid);
    }
    let mut ng = Ng {
        socket: ng,
        to: SocketAddr::new(LOOPBACK, ng_port),
        cookie: 0,
    };
    ng.socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(io("ng"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ng.call(&[("command", B::s("ping"))]) {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("rtpengine does not answer ping: {e}\n{tail}"));
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
    thread::sleep(Duration::from_millis(200));
    let pid_s = pid.to_string();
    let rss_base_kb = status_kb(&pid_s, "VmRSS");
    let mut to = Vec::with_capacity(calls);
    let run = std::process::id();
    for (c, [caller, callee]) in local.iter().enumerate().take(calls) {
        let call_id = format!("relay-load-{run}-{c}");
        let from_tag = format!("caller-{c}");
        let to_tag = format!("callee-{c}");
        let offer = ng.call(&[
            ("command", B::s("offer")),
            ("call-id", B::s(&call_id)),
            ("from-tag", B::s(&from_tag)),
            ("sdp", B::s(&sdp(*caller, c))),
        ])?;
        // The offer as rtpengine rewrote it goes to the callee: it names
        // the port the callee sends to.
        let to_callee_side = sdp_address(&offer)?;
        let answer = ng.call(&[
            ("command", B::s("answer")),
            ("call-id", B::s(&call_id)),
            ("from-tag", B::s(&from_tag)),
            ("to-tag", B::s(&to_tag)),
            ("sdp", B::s(&sdp(*callee, c))),
        ])?;
        let to_caller_side = sdp_address(&answer)?;
        to.push([to_caller_side, to_callee_side]);
    }
    thread::sleep(Duration::from_millis(500));
    let rss_calls_kb = status_kb(&pid_s, "VmRSS");
    let _ = std::fs::remove_file(&log);
    Ok(Setup {
        relay_pid: Some(pid),
        rss_base_kb,
        rss_calls_kb,
        to,
    })
}

fn sdp(at: SocketAddr, session: usize) -> String {
    format!(
        "v=0\r\no=- {session} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        ip = at.ip(),
        port = at.port()
    )
}

/// The connection address and audio port of rtpengine's answer to a
/// command.
fn sdp_address(reply: &B) -> Res<SocketAddr> {
    let text = reply
        .get("sdp")
        .and_then(B::as_str)
        .ok_or("a reply without SDP")?;
    let mut ip = None;
    let mut port = None;
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = c.trim().parse::<IpAddr>().ok();
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            port = m
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
        _ => Err(format!("no address in rtpengine's SDP: {text:?}")),
    }
}

// === rtpengine's ng protocol: "cookie bencoded-dictionary" over UDP ===

#[derive(Debug, Clone, PartialEq)]
enum B {
    Int(i64),
    Str(Vec<u8>),
    List(Vec<B>),
    Dict(Vec<(Vec<u8>, B)>),
}

impl B {
    fn s(text: &str) -> B {
        B::Str(text.as_bytes().to_vec())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            B::Int(n) => out.extend_from_slice(format!("i{n}e").as_bytes()),
            B::Str(s) => {
                out.extend_from_slice(format!("{}:", s.len()).as_bytes());
                out.extend_from_slice(s);
            }
            B::List(items) => {
                out.push(b'l');
                items.iter().for_each(|i| i.encode(out));
                out.push(b'e');
            }
            B::Dict(pairs) => {
                out.push(b'd');
                for (k, v) in pairs {
                    B::Str(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// One value from the front of `input`, and what follows it.
    fn decode(input: &[u8]) -> Res<(B, &[u8])> {
        let bad = || format!("bad bencode: {:?}", String::from_utf8_lossy(input));
        match input.first() {
            Some(b'i') => {
                let end = input.iter().position(|&c| c == b'e').ok_or_else(bad)?;
                let n = std::str::from_utf8(&input[1..end])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)?;
                Ok((B::Int(n), &input[end + 1..]))
            }
            Some(b'l') | Some(b'd') => {
                let dict = input[0] == b'd';
                let mut rest = &input[1..];
                let mut items = Vec::new();
                let mut pairs = Vec::new();
                loop {
                    if rest.first() == Some(&b'e') {
                        rest = &rest[1..];
                        break;
                    }
                    let (v, r) = B::decode(rest)?;
                    rest = r;
                    if dict {
                        let B::Str(key) = v else {
                            return Err(bad());
                        };
                        let (v, r) = B::decode(rest)?;
                        rest = r;
                        pairs.push((key, v));
                    } else {
                        items.push(v);
                    }
                }
                Ok((if dict { B::Dict(pairs) } else { B::List(items) }, rest))
            }
            Some(c) if c.is_ascii_digit() => {
                let colon = input.iter().position(|&c| c == b':').ok_or_else(bad)?;
                let len: usize = std::str::from_utf8(&input[..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)?;
                let body = input.get(colon + 1..colon + 1 + len).ok_or_else(bad)?;
                Ok((B::Str(body.to_vec()), &input[colon + 1 + len..]))
            }
            _ => Err(bad()),
        }
    }

    fn get(&self, key: &str) -> Option<&B> {
        match self {
            B::Dict(pairs) => pairs
                .iter()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            B::Str(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }
}

struct Ng {
    socket: std::net::UdpSocket,
    to: SocketAddr,
    cookie: u64,
}

impl Ng {
    /// Sends a command and returns the reply's dictionary once its result
    /// is "ok" (retried with the same cookie, which rtpengine de-duplicates).
    fn call(&mut self, pairs: &[(&str, B)]) -> Res<B> {
        self.cookie += 1;
        let cookie = format!("rl{}", self.cookie);
        let mut message = format!("{cookie} ").into_bytes();
        B::Dict(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
        )
        .encode(&mut message);
        let mut buf = vec![0u8; 65_536];
        for _ in 0..5 {
            self.socket
                .send_to(&message, self.to)
                .map_err(io("ng send"))?;
            let deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < deadline {
                let n = match self.socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        break;
                    }
                    Err(e) => return Err(format!("ng recv: {e}")),
                };
                let Some(body) = buf[..n].strip_prefix(format!("{cookie} ").as_bytes()) else {
                    continue; // a late reply to an earlier try
                };
                let (reply, _) = B::decode(body)?;
                return match reply.get("result").and_then(B::as_str) {
                    Some("ok") | Some("pong") => Ok(reply),
                    other => Err(format!(
                        "rtpengine answered {other:?}: {:?}",
                        reply.get("error-reason").and_then(B::as_str)
                    )),
                };
            }
        }
        Err("no answer from rtpengine's ng port".into())
    }
}

// === senders ===

struct Out {
    /// Index into the generator's sockets.
    socket: usize,
    to: SockaddrIn,
    stream: u32,
    phase_ns: u64,
}

#[derive(Default)]
struct SendStats {
    /// Sent in the measured window.
    measured: u64,
    errors: u64,
    /// Sent more than 2 ms after their time.
    late: u64,
    max_lag_ns: u64,
    /// When the last packet went, from the start.
    last_ns: u64,
    /// `sendmmsg` calls, the packets they carried, and their length
    /// (from the stamp to the call's return).
    calls: u64,
    packets: u64,
    call_ns: u64,
    call_max_ns: u64,
}

impl SendStats {
    fn add(&mut self, o: &SendStats) {
        self.measured += o.measured;
        self.errors += o.errors;
        self.late += o.late;
        self.max_lag_ns = self.max_lag_ns.max(o.max_lag_ns);
        self.last_ns = self.last_ns.max(o.last_ns);
        self.calls += o.calls;
        self.packets += o.packets;
        self.call_ns += o.call_ns;
        self.call_max_ns = self.call_max_ns.max(o.call_max_ns);
    }
}

fn ns_since(t0: Instant) -> u64 {
    Instant::now().saturating_duration_since(t0).as_nanos() as u64
}

/// `CLOCK_REALTIME` in ns: the clock of the kernel's receive stamps.
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The packets due for one socket, sent by one `sendmmsg` (or more, past
/// [`BATCH`]).
struct Pending {
    packets: Vec<[u8; PACKET]>,
    to: Vec<Option<SockaddrIn>>,
    /// Each packet's due time (from `t0`) and whether it is measured.
    due: Vec<(u64, bool)>,
    headers: MultiHeaders<SockaddrIn>,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            packets: Vec::with_capacity(BATCH),
            to: Vec::with_capacity(BATCH),
            due: Vec::with_capacity(BATCH),
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    fn push(&mut self, out: &Out, round: u32, due: u64, measured: bool) {
        let mut packet = [0xFFu8; PACKET];
        // RTP: version 2, PCMU, sequence and timestamp of this stream.
        packet[0] = 0x80;
        packet[1] = 0;
        packet[2..4].copy_from_slice(&(round as u16).to_be_bytes());
        packet[4..8].copy_from_slice(&round.wrapping_mul(160).to_be_bytes());
        packet[8..12].copy_from_slice(&out.stream.to_be_bytes());
        // The stamp: magic, stream, sequence, measured, send time.
        packet[12..16].copy_from_slice(&MAGIC.to_be_bytes());
        packet[16..20].copy_from_slice(&out.stream.to_be_bytes());
        packet[20..24].copy_from_slice(&round.to_be_bytes());
        packet[24] = u8::from(measured);
        self.packets.push(packet);
        self.to.push(Some(out.to));
        self.due.push((due, measured));
    }

    /// Sends the pending packets, at most `per_call` a `sendmmsg`, each
    /// call's packets stamped with the time just before it.
    fn flush(&mut self, socket: &UdpSocket, load: &Load, per_call: usize, stats: &mut SendStats) {
        if self.packets.is_empty() {
            return;
        }
        let now = ns_since(load.t0);
        for &(due, _) in &self.due {
            let lag = now.saturating_sub(due);
            stats.max_lag_ns = stats.max_lag_ns.max(lag);
            if lag > 2_000_000 {
                stats.late += 1;
            }
        }
        stats.last_ns = now;
        let n = self.packets.len();
        let mut done = 0;
        while done < n {
            let end = n.min(done + per_call);
            let stamp = wall_ns();
            for packet in &mut self.packets[done..end] {
                packet[25..33].copy_from_slice(&stamp.to_be_bytes());
            }
            let slices: Vec<[IoSlice; 1]> = self.packets[done..end]
                .iter()
                .map(|p| [IoSlice::new(p)])
                .collect();
            let no_cmsgs: [ControlMessage; 0] = [];
            let result = sendmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                &slices,
                &self.to[done..end],
                no_cmsgs,
                MsgFlags::MSG_DONTWAIT,
            )
            .map(Iterator::count);
            match result {
                Ok(k) if k > 0 => {
                    let measured = self.due[done..done + k].iter().filter(|d| d.1).count();
                    stats.measured += measured as u64;
                    stats.packets += k as u64;
                    done += k;
                }
                Err(Errno::EINTR) => {}
                // The first message failed (a full buffer, or an ICMP
                // error from an earlier send): it is counted and skipped.
                Ok(_) | Err(_) => {
                    stats.errors += 1;
                    done += 1;
                }
            }
            let took = wall_ns().saturating_sub(stamp);
            stats.calls += 1;
            stats.call_ns += took;
            stats.call_max_ns = stats.call_max_ns.max(took);
        }
        self.packets.clear();
        self.to.clear();
        self.due.clear();
    }
}

fn send(
    mut outs: Vec<Out>,
    sockets: &Sockets,
    load: &Load,
    slice_ns: u64,
    per_call: usize,
) -> SendStats {
    outs.sort_by_key(|o| o.phase_ns);
    let mut stats = SendStats::default();
    if outs.is_empty() {
        return stats;
    }
    let mut pending: Vec<Pending> = sockets.all.iter().map(|_| Pending::new()).collect();
    let due = |round: u32, out: &Out| u64::from(round) * PERIOD_NS + out.phase_ns;
    let (mut round, mut next) = (0u32, 0usize);
    while round < load.rounds {
        let woke = ns_since(load.t0);
        // Everything due by now, never a packet early.
        while round < load.rounds && due(round, &outs[next]) <= woke {
            let out = &outs[next];
            let batch = &mut pending[out.socket];
            batch.push(out, round, due(round, out), round >= load.warmup_rounds);
            if batch.packets.len() == BATCH {
                batch.flush(&sockets.all[out.socket], load, per_call, &mut stats);
            }
            next += 1;
            if next == outs.len() {
                next = 0;
                round += 1;
            }
        }
        for (batch, socket) in pending.iter_mut().zip(&sockets.all) {
            batch.flush(socket, load, per_call, &mut stats);
        }
        if round >= load.rounds {
            break;
        }
        // The next slice, or the next packet if it is due later.
        let wake = due(round, &outs[next]).max(woke + slice_ns);
        let now = ns_since(load.t0);
        if wake > now {
            thread::sleep(Duration::from_nanos(wake - now));
        }
    }
    stats
}

// === receivers ===

/// Microseconds: 1 µs buckets below 10 ms, 100 µs ones up to 1 s.
struct Hist {
    counts: Vec<u64>,
    total: u64,
    max_ns: u64,
}

const FINE: u64 = 10_000;
const COARSE: u64 = 9_900;

impl Hist {
    fn new() -> Hist {
        Hist {
            counts: vec![0; (FINE + COARSE + 1) as usize],
            total: 0,
            max_ns: 0,
        }
    }

    fn record(&mut self, ns: u64) {
        let us = ns / 1000;
        let i = if us < FINE {
            us
        } else {
            (FINE + (us - FINE) / 100).min(FINE + COARSE)
        };
        self.counts[i as usize] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    fn add(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.total += o.total;
        self.max_ns = self.max_ns.max(o.max_ns);
    }

    /// The bucket's upper bound, in µs.
    fn quantile_us(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let i = i as u64;
                return if i < FINE {
                    i + 1
                } else {
                    FINE + (i - FINE + 1) * 100
                };
            }
        }
        self.max_ns / 1000
    }
}

struct StreamRx {
    last: Option<(u32, i64)>,
    max_seq: Option<u32>,
    seen: Vec<u64>,
}

struct RecvStats {
    received: u64,
    dups: u64,
    reorders: u64,
    /// Ours, but on another socket than the stream's receiving leg uses.
    wrong_socket: u64,
    /// On the right socket, from another address than the relay's port
    /// facing that leg.
    wrong_source: u64,
    /// Not a packet of this run (size, magic or stream).
    foreign: u64,
    /// Packets without a kernel receive stamp.
    user_stamps: u64,
    /// `recvmmsg` calls that returned packets, and the packets.
    calls: u64,
    packets: u64,
    latency: Hist,
    jitter: Hist,
}

impl RecvStats {
    fn new() -> RecvStats {
        RecvStats {
            received: 0,
            dups: 0,
            reorders: 0,
            wrong_socket: 0,
            wrong_source: 0,
            foreign: 0,
            user_stamps: 0,
            calls: 0,
            packets: 0,
            latency: Hist::new(),
            jitter: Hist::new(),
        }
    }

    fn add(&mut self, o: &RecvStats) {
        self.received += o.received;
        self.dups += o.dups;
        self.reorders += o.reorders;
        self.wrong_socket += o.wrong_socket;
        self.wrong_source += o.wrong_source;
        self.foreign += o.foreign;
        self.user_stamps += o.user_stamps;
        self.calls += o.calls;
        self.packets += o.packets;
        self.latency.add(&o.latency);
        self.jitter.add(&o.jitter);
    }
}

/// One datagram as `recvmmsg` returned it: length, source, kernel stamp,
/// truncated.
type Got = (usize, Option<SocketAddrV4>, Option<u64>, bool);

/// Reads up to [`BATCH`] datagrams from a socket into `buffers`: how many
/// came (0 when none was waiting), or `None` when the socket fails.
fn read_batch(
    socket: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrIn>,
    buffers: &mut [[u8; RX_BUF]; BATCH],
    got: &mut [Got; BATCH],
) -> Option<usize> {
    loop {
        let mut slices = buffers.each_mut().map(|b| [IoSliceMut::new(b)]);
        match recvmmsg(
            socket.as_raw_fd(),
            headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(results) => {
                let mut count = 0;
                for (slot, message) in got.iter_mut().zip(results) {
                    let stamp = message.cmsgs().ok().and_then(|mut cmsgs| {
                        cmsgs.find_map(|c| match c {
                            ControlMessageOwned::ScmTimestampns(t) => {
                                Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
                            }
                            _ => None,
                        })
                    });
                    *slot = (
                        message.bytes,
                        message.address.map(SocketAddrV4::from),
                        stamp,
                        message.flags.contains(MsgFlags::MSG_TRUNC),
                    );
                    count += 1;
                }
                return Some(count);
            }
            Err(Errno::EAGAIN) => return Some(0),
            Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

fn receive(
    sockets: &Sockets,
    mine: &[usize],
    expect: &[(usize, SocketAddrV4)],
    load: &Load,
    stop: &AtomicBool,
    nap: Duration,
) -> RecvStats {
    let words = (load.rounds as usize).div_ceil(64);
    let mut streams: Vec<StreamRx> = (0..expect.len())
        .map(|_| StreamRx {
            last: None,
            max_seq: None,
            seen: vec![0; words],
        })
        .collect();
    let mut stats = RecvStats::new();
    let mut headers =
        MultiHeaders::<SockaddrIn>::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec)));
    let mut buffers = Box::new([[0u8; RX_BUF]; BATCH]);
    let mut got: [Got; BATCH] = [(0, None, None, false); BATCH];
    let mut errors = 0u32;
    loop {
        let mut any = false;
        for &s in mine {
            let socket = &sockets.all[s];
            loop {
                let Some(count) = read_batch(socket, &mut headers, &mut buffers, &mut got) else {
                    // An ICMP error from an earlier send surfaces once;
                    // anything that keeps failing is not spun on.
                    errors += 1;
                    if errors > 1000 {
                        break;
                    }
                    continue;
                };
                if count == 0 {
                    break;
                }
                any = true;
                let read_at = wall_ns();
                stats.calls += 1;
                stats.packets += count as u64;
                for (&(len, from, stamp, truncated), buf) in
                    got.iter().zip(buffers.iter()).take(count)
                {
                    account(
                        &mut stats,
                        &mut streams,
                        expect,
                        s,
                        (len, from, stamp, truncated),
                        buf,
                        read_at,
                    );
                }
                if count < BATCH {
                    break;
                }
            }
        }
        if !any && stop.load(Ordering::Relaxed) {
            break;
        }
        // Lets packets gather while this thread is not waiting in epoll:
        // their arrival then wakes no thread (a wake-up costs more than
        // the packet). Their arrival time is the kernel's stamp, so the
        // nap does not add to it.
        thread::sleep(nap);
    }
    stats
}

/// Checks and counts one datagram that arrived on socket `at`.
fn account(
    stats: &mut RecvStats,
    streams: &mut [StreamRx],
    expect: &[(usize, SocketAddrV4)],
    at: usize,
    (len, from, stamp, truncated): Got,
    buf: &[u8; RX_BUF],
    read_at: u64,
) {
    let word = |r: std::ops::Range<usize>| -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&buf[r]);
        u32::from_be_bytes(b)
    };
    if len != PACKET || truncated || word(12..16) != MAGIC {
        stats.foreign += 1;
        return;
    }
    let (stream, seq) = (word(16..20) as usize, word(20..24));
    let (Some(&(socket, source)), Some(rx)) = (expect.get(stream), streams.get_mut(stream)) else {
        stats.foreign += 1;
        return;
    };
    if socket != at {
        stats.wrong_socket += 1;
        return;
    }
    if from != Some(source) {
        stats.wrong_source += 1;
        return;
    }
    let arrived = stamp.unwrap_or_else(|| {
        stats.user_stamps += 1;
        read_at
    });
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&buf[25..33]);
    let transit = arrived as i64 - u64::from_be_bytes(sent) as i64;
    let measured = buf[24] == 1;
    if let Some((last_seq, last_transit)) = rx.last
        && last_seq.wrapping_add(1) == seq
        && measured
    {
        stats.jitter.record((transit - last_transit).unsigned_abs());
    }
    rx.last = Some((seq, transit));
    if !measured {
        return;
    }
    let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
    let Some(word) = rx.seen.get_mut(w) else {
        stats.foreign += 1;
        return;
    };
    if *word & bit != 0 {
        stats.dups += 1;
        return;
    }
    *word |= bit;
    stats.received += 1;
    stats.latency.record(transit.max(0) as u64);
    if rx.max_seq.is_some_and(|m| seq < m) {
        stats.reorders += 1;
    } else {
        rx.max_seq = Some(seq);
    }
}
