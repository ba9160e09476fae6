//! A real SMSC for the SMS tests: `tests/smsc/smsc.js`, the npm `smpp`
//! package in server mode (installed by `scripts/test` from its lockfile),
//! driven over stdin with one JSON command a line; what it sees comes back
//! as JSON events on stdout.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

pub const SYSTEM_ID: &str = "maskline";
pub const PASSWORD: &str = "secret";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/smsc")
}

pub struct Smsc {
    child: Child,
    stdin: ChildStdin,
    events: Arc<Mutex<Vec<Value>>>,
    pub port: u16,
}

impl Smsc {
    /// An SMSC on a free loopback port; `extra` goes to smsc.js
    /// (`--throttle N`, `--hold-submits`).
    pub async fn start(extra: &[&str]) -> Smsc {
        Smsc::start_on(super::free_port(), extra).await
    }

    /// An SMSC on `port` (a restart takes over the port it had).
    pub async fn start_on(port: u16, extra: &[&str]) -> Smsc {
        assert!(
            dir().join("node_modules/smpp").is_dir(),
            "the test SMSC's npm packages are missing: run scripts/test (it runs npm ci in {})",
            dir().display()
        );
        let mut child = Command::new("node")
            .current_dir(dir())
            .arg("smsc.js")
            .args(["--port", &port.to_string()])
            .args(["--system-id", SYSTEM_ID, "--password", PASSWORD])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (apt-get install -y nodejs)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().push(v);
                }
            }
        });
        let smsc = Smsc {
            child,
            stdin,
            events,
            port,
        };
        smsc.wait_for(10, "the SMSC to listen", |e| e["event"] == "listening")
            .await;
        smsc
    }

    /// The `MASKLINE_SMPP` value for this SMSC.
    pub fn url(&self) -> String {
        format!("smpp://{SYSTEM_ID}:{PASSWORD}@127.0.0.1:{}", self.port)
    }

    pub fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").expect("write to the SMSC");
        self.stdin.flush().expect("flush");
    }

    /// A text from `from` to `to`, in one deliver_sm or (`parts`) in
    /// concatenated ones; `encoding` is `gsm` or `ucs2`.
    pub fn deliver(
        &mut self,
        id: &str,
        from: &str,
        to: &str,
        text: &str,
        encoding: &str,
        parts: bool,
    ) {
        self.send(json!({
            "cmd": "deliver", "id": id, "from": from, "to": to, "text": text,
            "encoding": encoding, "parts": parts,
        }));
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().clone()
    }

    /// The submit_sm this SMSC accepted.
    pub fn submits(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "submit" && e["status"] == 0)
            .collect()
    }

    /// Polls the events until one matches, or panics after `secs` with all
    /// of them.
    pub async fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(e) = self.events.lock().iter().find(|e| pred(e)) {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the SMSC saw:\n{:#?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for `n` events matching `pred`.
    pub async fn wait_count(
        &self,
        secs: u64,
        what: &str,
        n: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got: Vec<Value> = self
                .events
                .lock()
                .iter()
                .filter(|e| pred(e))
                .cloned()
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} {what} (have {}); the SMSC saw:\n{:#?}",
                got.len(),
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The answer Maskline gave the deliver_sm(s) of command `id`.
    pub async fn deliver_status(&self, id: &str) -> i64 {
        let e = self
            .wait_for(15, &format!("the answer to {id}"), |e| {
                e["event"] == "deliver_resp" && e["id"] == id
            })
            .await;
        e["status"].as_i64().unwrap_or(-1)
    }

    pub async fn bound(&self) {
        self.wait_for(20, "Maskline to bind", |e| e["event"] == "bound")
            .await;
    }

    /// SIGKILL: the SMSC dies with whatever it had in flight.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reassembles the submits to `dest` into texts, by their UDH (8-bit
/// reference), in the order their first part came.
pub fn texts_to(submits: &[Value], dest: &str) -> Vec<String> {
    let dest = dest.trim_start_matches('+');
    // (reference and total of a concatenated text, its parts by seq)
    type Text = (Option<(u64, u64)>, Vec<(u64, String)>);
    let mut texts: Vec<Text> = Vec::new();
    for s in submits.iter().filter(|s| s["dest"] == dest) {
        let message = s["message"].as_str().unwrap_or("").to_owned();
        match s["udh"].as_str() {
            None => texts.push((None, vec![(1, message)])),
            Some(udh) => {
                let b: Vec<u64> = (0..udh.len() / 2)
                    .map(|i| u64::from_str_radix(&udh[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
                // The SMSC lists information elements without the header's
                // length: 00 03 ref total seq, or 08 04 ref ref total seq.
                let (reference, total, seq) = match b.as_slice() {
                    [0x00, 0x03, r, t, s, ..] => (*r, *t, *s),
                    [0x08, 0x04, r1, r2, t, s, ..] => (r1 * 256 + r2, *t, *s),
                    other => panic!("no concatenation element in {other:?}"),
                };
                match texts.iter_mut().find(|(k, parts)| {
                    *k == Some((reference, total)) && (parts.len() as u64) < total
                }) {
                    Some((_, parts)) => parts.push((seq, message)),
                    None => texts.push((Some((reference, total)), vec![(seq, message)])),
                }
            }
        }
    }
    texts
        .into_iter()
        .map(|(_, mut parts)| {
            parts.sort_by_key(|(seq, _)| *seq);
            parts.into_iter().map(|(_, m)| m).collect()
        })
        .collect()
}
