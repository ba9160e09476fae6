//! Real `sipp` processes as Maskline's SIP peers: a UAC plays the trusted
//! trunk that sends calls to X, a UAS plays the outbound gateway (the
//! callee). Each process logs every message it sent and received
//! (`-trace_msg`), so a test asserts on what the peers actually saw.
//!
//! The scenarios live in `tests/sipp/*.xml`; each file's header comment
//! says what it plays and which `-s`/`-key`/`-d` it takes.
//!
//! SIPp 3.6's message log (`-trace_msg -message_file F`) is a sequence of
//! entries, each:
//!
//! ```text
//! ----------------------------------------------- 2026-11-23 00:51:19.468877
//! UDP message sent (545 bytes):
//!
//! INVITE sip:+8657100000001@127.0.0.1:15070 SIP/2.0
//! ...the message, CRLF line endings...
//! ```
//!
//! with `TCP message received [254] bytes :` for a received one. An
//! unexpected message is logged a second time, after a bare line of 47
//! dashes, as `Unexpected UDP message received:`; [`parse_trace`] skips
//! those repeats.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How a peer talks SIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// SIPp's `-t`: one socket for everything.
    fn sipp_mode(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }

    /// The value of `MASKLINE_SIP_OUTBOUND_TRANSPORT`.
    pub fn env(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// As it appears in a Via header and in the message log.
    pub fn upper(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// A scenario file in `tests/sipp/`.
pub fn scenario(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name);
    assert!(path.is_file(), "no sipp scenario {}", path.display());
    path
}

/// A loopback port free for both UDP and TCP (SIP listens on both).
pub fn free_sip_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral TCP port");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// A loopback UDP port (for SIPp's control socket, `-cp`).
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    s.local_addr().expect("local addr").port()
}

/// Whether something listens on `127.0.0.1:port` (TCP) or has it bound
/// (UDP). Reads `/proc/net`, so the probe never takes the port itself.
pub fn port_bound(transport: Transport, port: u16) -> bool {
    let (file, listening) = match transport {
        Transport::Udp => ("/proc/net/udp", None),
        Transport::Tcp => ("/proc/net/tcp", Some("0A")),
    };
    let table = std::fs::read_to_string(file).unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    table.lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.len() > 3
            && (cols[1] == local || cols[1] == any)
            && listening.is_none_or(|s| cols[3] == s)
    })
}

/// One message in a SIPp message log.
#[derive(Clone, Debug)]
pub struct Entry {
    /// `true` for a message the process sent, `false` for one it received.
    pub sent: bool,
    /// `UDP` or `TCP`.
    pub transport: String,
    /// The SIP message as it went on the wire (CRLF line endings).
    pub text: String,
    /// When sipp logged it: seconds since midnight (the log's clock).
    pub at: f64,
}

/// Parses a `-trace_msg` log (format in the module comment).
pub fn parse_trace(log: &str) -> Vec<Entry> {
    fn is_separator(line: &str) -> bool {
        let line = line.trim_end_matches('\r');
        line.len() >= 47
            && line.as_bytes()[..47].iter().all(|&b| b == b'-')
            && (line.len() == 47 || line.as_bytes()[47] == b' ')
    }
    // "UDP message sent (545 bytes):" / "TCP message received [254] bytes :"
    fn kind(line: &str) -> Option<(bool, String)> {
        let (transport, rest) = line.split_once(' ')?;
        if rest.starts_with("message sent") {
            Some((true, transport.to_owned()))
        } else if rest.starts_with("message received") {
            Some((false, transport.to_owned()))
        } else {
            None
        }
    }

    // "...------- 2026-11-23 02:27:28.835249": the time of day, in seconds.
    fn time_of(line: &str) -> f64 {
        let clock = line.trim_end_matches('\r').rsplit(' ').next().unwrap_or("");
        let mut parts = clock.split(':').map(|p| p.parse::<f64>().unwrap_or(0.0));
        let (h, m, s) = (
            parts.next().unwrap_or(0.0),
            parts.next().unwrap_or(0.0),
            parts.next().unwrap_or(0.0),
        );
        h * 3600.0 + m * 60.0 + s
    }

    let lines: Vec<&str> = log.split('\n').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if is_separator(lines[i])
            && let Some((sent, transport)) = lines.get(i + 1).and_then(|l| kind(l))
        {
            let mut j = i + 2;
            while j < lines.len() && !is_separator(lines[j]) {
                j += 1;
            }
            let block = lines[i + 2..j].join("\n");
            for text in split_messages(&block) {
                out.push(Entry {
                    sent,
                    transport: transport.clone(),
                    text,
                    at: time_of(lines[i]),
                });
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Splits a logged block into SIP messages by Content-Length (a stream
/// read may in principle hold more than one).
fn split_messages(block: &str) -> Vec<String> {
    let mut rest = block.trim_start_matches(['\r', '\n']);
    let mut out = Vec::new();
    while !rest.trim().is_empty() {
        let (head_len, sep_len) = match (rest.find("\r\n\r\n"), rest.find("\n\n")) {
            (Some(a), Some(b)) if b < a => (b, 2),
            (Some(a), _) => (a, 4),
            (None, Some(b)) => (b, 2),
            (None, None) => (rest.len(), 0),
        };
        let head = &rest[..head_len];
        let body_len = header(head, "Content-Length")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(rest.len());
        let end = (head_len + sep_len + body_len).min(rest.len());
        let end = (end..=rest.len())
            .find(|&e| rest.is_char_boundary(e))
            .unwrap_or(rest.len());
        out.push(rest[..end].trim_end().to_owned());
        rest = rest[end..].trim_start_matches(['\r', '\n']);
    }
    out
}

// === SIP message helpers ===

/// The first line of a message.
pub fn start_line(msg: &str) -> &str {
    msg.lines().next().unwrap_or("").trim()
}

/// The method of a request, `None` for a response.
pub fn method(msg: &str) -> Option<&str> {
    let first = start_line(msg);
    if first.starts_with("SIP/2.0") {
        None
    } else {
        first.split_whitespace().next()
    }
}

/// The status code of a response, `None` for a request.
pub fn status(msg: &str) -> Option<u16> {
    let first = start_line(msg);
    first
        .strip_prefix("SIP/2.0 ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|c| c.parse().ok())
}

/// The Request-URI of a request.
pub fn request_uri(msg: &str) -> Option<&str> {
    method(msg)?;
    start_line(msg).split_whitespace().nth(1)
}

fn compact(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "from" => "f",
        "to" => "t",
        "via" => "v",
        "call-id" => "i",
        "contact" => "m",
        "content-length" => "l",
        "content-type" => "c",
        "supported" => "k",
        "subject" => "s",
        _ => return None,
    })
}

/// Every value of header `name` (case-insensitive, compact forms too),
/// in order; a comma-separated list stays one value.
pub fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    let short = compact(name);
    let mut out = Vec::new();
    for line in msg.lines().skip(1) {
        if line.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            let n = n.trim();
            if n.eq_ignore_ascii_case(name) || short.is_some_and(|s| n.eq_ignore_ascii_case(s)) {
                out.push(v.trim());
            }
        }
    }
    out
}

/// The first value of header `name`.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    headers(msg, name).into_iter().next()
}

/// The user part of the first SIP/tel URI in `s` (a Request-URI or a
/// From/To/Contact/P-Asserted-Identity value).
pub fn uri_user(s: &str) -> Option<&str> {
    let lower = s.to_ascii_lowercase();
    let (start, tel) = ["sip:", "sips:", "tel:"]
        .iter()
        .filter_map(|scheme| {
            lower
                .find(scheme)
                .map(|i| (i + scheme.len(), *scheme == "tel:"))
        })
        .min()?;
    let rest = &s[start..];
    if tel {
        let end = rest.find([';', '>', ' ']).unwrap_or(rest.len());
        return Some(&rest[..end]);
    }
    let end = rest.find(['>', ' ']).unwrap_or(rest.len());
    let uri = &rest[..end];
    let at = uri.find('@')?;
    let user = &uri[..at];
    Some(user.split(';').next().unwrap_or(user))
}

/// The `tag` parameter of a From/To value.
pub fn tag(value: &str) -> Option<&str> {
    let after = &value[value.rfind('>').map_or(0, |i| i + 1)..];
    after
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("tag"))
        .map(|(_, v)| v.trim())
}

/// The `branch` of every Via in a message.
pub fn via_branches(msg: &str) -> Vec<&str> {
    headers(msg, "Via")
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter_map(|via| {
            via.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case("branch"))
                .map(|(_, b)| b.trim())
        })
        .collect()
}

/// The method in a message's CSeq.
pub fn cseq_method(msg: &str) -> Option<&str> {
    header(msg, "CSeq")?.split_whitespace().nth(1)
}

/// The body of a message (after the blank line), as logged (SIPp's log
/// and [`parse_trace`] drop trailing line ends).
pub fn body(msg: &str) -> &str {
    match (msg.find("\r\n\r\n"), msg.find("\n\n")) {
        (Some(a), Some(b)) if b < a => &msg[b + 2..],
        (Some(a), _) => &msg[a + 4..],
        (None, Some(b)) => &msg[b + 2..],
        (None, None) => "",
    }
}

// === a raw UDP peer ===

/// A bare UDP socket on 127.0.0.1 for messages no SIP stack would send
/// (malformed, garbage): the test writes the bytes itself.
pub struct RawUdp {
    socket: UdpSocket,
    /// Where datagrams go (Maskline's SIP address).
    target: String,
}

impl RawUdp {
    pub fn new(target: &str) -> RawUdp {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
        RawUdp {
            socket,
            target: target.to_owned(),
        }
    }

    /// This socket's `127.0.0.1:PORT`, for Via and Contact.
    pub fn local(&self) -> String {
        self.socket.local_addr().expect("local addr").to_string()
    }

    pub fn send(&self, bytes: &[u8]) {
        self.socket
            .send_to(bytes, &self.target)
            .expect("send a datagram");
    }

    /// The next datagram received, as text; `None` when none comes within
    /// `timeout` (a deadline, not a delay: returns as soon as one arrives).
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.socket
                .set_read_timeout(Some(left))
                .expect("set a read timeout");
            match self.socket.recv_from(&mut buf) {
                Ok((n, _)) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("receive a datagram: {e}"),
            }
        }
    }
}

// === the process ===

/// One `sipp` process placing or answering exactly one call (`-m 1`).
pub struct Sipp {
    /// The local SIP port (UDP or TCP, per the transport).
    pub port: u16,
    pub transport: Transport,
    label: String,
    args: Vec<String>,
    child: Option<Child>,
    status: Option<ExitStatus>,
    dir: tempfile::TempDir,
}

/// A generous safety net: a stuck sipp fails on its own after this, and
/// [`Sipp::wait`] kills it anyway when its own deadline passes.
const SIPP_TIMEOUT: &str = "60s";

impl Sipp {
    /// A UAS on `127.0.0.1:<port>` running `scenario` for one call. Returns
    /// once the port is bound. `extra` goes last on the command line, so it
    /// can override the defaults (e.g. `-timeout 5s`); pass `-s <number>`
    /// for the callee's own number and `-d <ms>` where the scenario pauses.
    pub fn uas(scenario_name: &str, transport: Transport, extra: &[&str]) -> Sipp {
        let port = free_sip_port();
        let mut args: Vec<String> =
            vec!["-sf".into(), scenario(scenario_name).display().to_string()];
        args.extend(common_args(port, transport));
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut sipp = Sipp::spawn(format!("uas {scenario_name}"), port, transport, args);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !port_bound(transport, port) {
            if let Some(status) = sipp.try_status() {
                panic!(
                    "sipp {} exited at start ({status})\n{}",
                    sipp.label,
                    sipp.report()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sipp {} did not bind {port}\n{}",
                sipp.label,
                sipp.report()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        sipp
    }

    /// A UAC placing one call to `target` (`127.0.0.1:PORT`, Maskline's SIP
    /// address) from a fresh port on 127.0.0.1: Request-URI user `service`
    /// (`-s`), and `keys` as `-key name value` (e.g. `("caller", A)`).
    pub fn uac(
        scenario_name: &str,
        target: &str,
        transport: Transport,
        service: &str,
        keys: &[(&str, &str)],
        extra: &[&str],
    ) -> Sipp {
        let port = free_sip_port();
        let mut args: Vec<String> = vec![
            "-sf".into(),
            scenario(scenario_name).display().to_string(),
            target.into(),
        ];
        args.extend(common_args(port, transport));
        args.extend(["-s".to_string(), service.to_string()]);
        for (k, v) in keys {
            args.extend(["-key".to_string(), k.to_string(), v.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Sipp::spawn(format!("uac {scenario_name}"), port, transport, args)
    }

    fn spawn(label: String, port: u16, transport: Transport, mut args: Vec<String>) -> Sipp {
        let dir = tempfile::tempdir().expect("sipp temp dir");
        let file = |n: &str| dir.path().join(n).display().to_string();
        args.extend([
            "-trace_msg".into(),
            "-message_file".into(),
            file("messages.log"),
            "-trace_err".into(),
            "-error_file".into(),
            file("errors.log"),
        ]);
        let out = std::fs::File::create(dir.path().join("screen.log")).expect("sipp screen file");
        let err = out.try_clone().expect("sipp screen file");
        let child = Command::new("sipp")
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn sipp (is it installed?)");
        Sipp {
            port,
            transport,
            label,
            args,
            child: Some(child),
            status: None,
            dir,
        }
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.status = Some(status);
            self.child = None;
        }
        self.status
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits for sipp to exit; kills it when `timeout` passes first. SIPp
    /// exits 0 when its call succeeded, 1 when it failed, 255 on its own
    /// `-timeout` and 99 when no call was processed.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                return self.status.expect("killed sipp has a status");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most `secs`) and asserts that the scenario completed.
    pub async fn succeeds(&mut self, secs: u64) {
        let status = self.wait(Duration::from_secs(secs)).await;
        assert!(
            status.code() == Some(0),
            "sipp {} did not complete its scenario ({status})\n{}",
            self.label,
            self.report()
        );
    }

    /// Kills the process (if running) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.status = Some(status);
            }
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The raw message log.
    pub fn messages(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("messages.log")).unwrap_or_default()
    }

    /// SIPp's error log (unexpected messages, timeouts), empty when none.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("errors.log")).unwrap_or_default()
    }

    /// Every message sent and received, in order.
    pub fn entries(&self) -> Vec<Entry> {
        parse_trace(&self.messages())
    }

    /// Only the messages this process received.
    /// A file the scenario wrote in its working directory (an `<exec
    /// command>`), once it is there and complete (ends with a newline).
    pub fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join(name))
            .ok()
            .filter(|s| s.ends_with('\n'))
    }

    pub fn received(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| !e.sent)
            .map(|e| e.text)
            .collect()
    }

    /// Only the messages this process sent.
    pub fn sent(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| e.sent)
            .map(|e| e.text)
            .collect()
    }

    /// The received requests with this method.
    pub fn received_requests(&self, m: &str) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|msg| method(msg) == Some(m))
            .collect()
    }

    /// The sent requests with this method.
    pub fn sent_requests(&self, m: &str) -> Vec<String> {
        self.sent()
            .into_iter()
            .filter(|msg| method(msg) == Some(m))
            .collect()
    }

    /// The status codes of the received responses to `m` requests, in order.
    pub fn received_statuses(&self, m: &str) -> Vec<u16> {
        self.received()
            .iter()
            .filter(|msg| cseq_method(msg) == Some(m))
            .filter_map(|msg| status(msg))
            .collect()
    }

    /// The final status the INVITE got (the first received ≥ 200).
    pub fn invite_final_status(&self) -> Option<u16> {
        self.received_statuses("INVITE")
            .into_iter()
            .find(|&s| s >= 200)
    }

    /// Everything worth printing when an assertion about this peer fails.
    pub fn report(&self) -> String {
        let screen =
            std::fs::read_to_string(self.dir.path().join("screen.log")).unwrap_or_default();
        let tail: Vec<&str> = screen.lines().rev().take(40).collect();
        let flow: Vec<String> = self
            .entries()
            .iter()
            .map(|e| {
                format!(
                    "  {} {} {}",
                    if e.sent { "->" } else { "<-" },
                    e.transport,
                    start_line(&e.text)
                )
            })
            .collect();
        format!(
            "--- sipp {} on port {}: sipp {}\n--- flow:\n{}\n--- errors:\n{}\n--- messages:\n{}\n--- screen (tail):\n{}",
            self.label,
            self.port,
            self.args.join(" "),
            flow.join("\n"),
            self.errors(),
            self.messages(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        )
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        self.kill();
    }
}

fn common_args(port: u16, transport: Transport) -> Vec<String> {
    [
        "-i",
        "127.0.0.1",
        "-bind_local",
        "-p",
        &port.to_string(),
        "-t",
        transport.sipp_mode(),
        "-m",
        "1",
        "-cp",
        &free_udp_port().to_string(),
        "-nostdin",
        "-aa",
        "-timeout",
        SIPP_TIMEOUT,
        "-timeout_error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
