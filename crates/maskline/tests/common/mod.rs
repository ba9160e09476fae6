//! Test harness: runs the real `maskline` binary on loopback with a
//! temporary data directory and talks to it over HTTP.

#![allow(dead_code)]

pub mod console;
pub mod receiver;
pub mod sipp;
pub mod smsc;
pub mod voice;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const SWITCH_KEY: &str = "test-switch-key-0123456789";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_maskline")
}

/// An HTTP client (reqwest needs its TLS provider installed first).
pub fn http() -> reqwest::Client {
    maskline_callbacks::install_crypto_provider();
    reqwest::Client::new()
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

pub struct Server {
    pub child: Option<Child>,
    pub base: String,
    pub port: u16,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub client: reqwest::Client,
    starts: u32,
}

impl Server {
    /// Starts a server with the admin and switch keys set.
    pub async fn start(dir: &Path) -> Server {
        Server::start_with(
            dir,
            &[
                ("MASKLINE_ADMIN_KEY", ADMIN_KEY),
                ("MASKLINE_SWITCH_KEY", SWITCH_KEY),
            ],
        )
        .await
    }

    pub async fn start_with(dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut server = Server {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            port,
            dir: dir.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            client: http(),
            starts: 0,
        };
        server.spawn().await;
        server
    }

    pub fn stdout_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("stdout-{n}.log"))
    }

    pub fn stderr_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("stderr-{n}.log"))
    }

    /// Every log line the server wrote, over all its starts.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for n in 1..=self.starts {
            for p in [self.stdout_path(n), self.stderr_path(n)] {
                all.push_str(&std::fs::read_to_string(p).unwrap_or_default());
            }
        }
        all
    }

    async fn spawn(&mut self) {
        // A port from `free_port` is free only when it is chosen: until the
        // server binds it, another process's outgoing connection may take
        // it as its ephemeral port. A start that fails on that alone is
        // tried again, on a new SIP port and, on a first start, a new HTTP
        // port (a restart keeps its HTTP address, which tests hold).
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.starts += 1;
            let out = std::fs::File::create(self.stdout_path(self.starts)).expect("stdout file");
            let err = std::fs::File::create(self.stderr_path(self.starts)).expect("stderr file");
            let mut cmd = Command::new(bin());
            cmd.arg("serve")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("MASKLINE_DATA_DIR", self.dir.join("data"))
                .env("MASKLINE_HTTP_LISTEN", format!("127.0.0.1:{}", self.port))
                .env("MASKLINE_SIP_LISTEN", format!("127.0.0.1:{}", free_port()))
                .env("MASKLINE_LOG", "debug")
                // The tests' receivers listen on loopback; the SSRF tests set
                // it back to false.
                .env("MASKLINE_WEBHOOK_ALLOW_PRIVATE", "true")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            self.child = Some(cmd.spawn().expect("spawn maskline"));
            match self.wait_ready().await {
                Ok(()) => return,
                Err(status) => {
                    let this_start = format!(
                        "{}{}",
                        std::fs::read_to_string(self.stdout_path(self.starts)).unwrap_or_default(),
                        std::fs::read_to_string(self.stderr_path(self.starts)).unwrap_or_default()
                    );
                    let port_taken = this_start.contains("Address already in use");
                    assert!(
                        port_taken && attempts < 5,
                        "maskline exited during start-up ({status}):\n{}",
                        self.logs()
                    );
                    if self.starts == attempts {
                        self.port = free_port();
                        self.base = format!("http://127.0.0.1:{}", self.port);
                    } else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }

    /// Waits for `/healthz`; the exit status if the server exited first.
    async fn wait_ready(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "maskline did not become ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `maskline <args>` on this server's data directory and
    /// variables (as an operator on its machine would), and asserts that it
    /// succeeded.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new(bin())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MASKLINE_DATA_DIR", self.dir.join("data"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("run maskline");
        assert!(
            out.status.success(),
            "maskline {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("maskline did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM without waiting: the server drains while the test goes on.
    /// Pair with [`Server::wait_exit`].
    pub fn sigterm(&self) {
        let child = self.child.as_ref().expect("server is running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (polling, at most `secs`) for the server to exit and returns
    /// its status; panics with the logs if it is still running then.
    pub async fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let child = self.child.as_mut().expect("server was started");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("maskline did not exit within {secs}s:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "graceful stop exits 0, got {status}");
        }
        self.spawn().await;
    }

    pub async fn restart_after_kill9(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    // === HTTP helpers ===

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let mut req = self.client.request(method.parse().expect("method"), url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) => panic!(
                "{method} {path} did not reach the server: {e:?}\n{}",
                self.logs()
            ),
        };
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Every item of a list endpoint, following `next_cursor` page by page.
    pub async fn list_all(&self, path: &str, key: &str, limit: u32) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
                None => format!("{path}{sep}limit={limit}"),
            };
            let (st, page) = self.call("GET", &url, Some(key), None).await;
            assert_eq!(st, 200, "{page}");
            let items = page["items"].as_array().expect("items");
            assert!(items.len() <= limit as usize);
            out.extend(items.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    pub async fn create_tenant(&self, name: &str) -> (String, String) {
        let (s, v) = self
            .call(
                "POST",
                "/v1/tenants",
                Some(ADMIN_KEY),
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        (
            v["id"].as_str().unwrap().to_owned(),
            v["api_key"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn import(&self, key: &str, numbers: &[&str]) {
        let entries: Vec<Value> = numbers.iter().map(|n| json!({ "number": n })).collect();
        let (s, v) = self
            .call(
                "POST",
                "/v1/numbers",
                Some(key),
                Some(json!({ "numbers": entries })),
            )
            .await;
        assert!(s == 201 || s == 200, "{s} {v}");
    }

    pub async fn bind(&self, key: &str, body: Value) -> (u16, Value) {
        self.call("POST", "/v1/bindings", Some(key), Some(body))
            .await
    }

    pub async fn route(&self, caller: &str, called: &str, extension: Option<&str>) -> Value {
        let mut body = json!({ "caller": caller, "called": called });
        if let Some(e) = extension {
            body["extension"] = json!(e);
        }
        let (s, v) = self
            .call("POST", "/v1/route", Some(SWITCH_KEY), Some(body))
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Hangzhou fixed-line virtual numbers: `+86571000000NN`.
pub fn x(n: u32) -> String {
    format!("+86571{n:08}")
}

/// A mobile party number.
pub fn party(n: u32) -> String {
    format!("+86138{n:08}")
}

/// Every file under `dir` (recursively) that holds any of `needles`, with
/// the needle.
pub fn files_holding(
    dir: &std::path::Path,
    needles: &[String],
) -> Vec<(std::path::PathBuf, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            found.extend(
                holding(&bytes, needles)
                    .into_iter()
                    .map(|n| (path.clone(), n)),
            );
        }
    }
    found
}

/// A party's digits as they could leak: E.164, national, the last eight.
pub fn digit_forms(e164: &str) -> Vec<String> {
    let digits = e164.trim_start_matches('+');
    vec![
        digits.to_owned(),
        digits[2..].to_owned(),
        digits[digits.len() - 8..].to_owned(),
    ]
}

/// Which of `needles` occur in `bytes`.
pub fn holding(bytes: &[u8], needles: &[String]) -> Vec<String> {
    needles
        .iter()
        .filter(|n| bytes.windows(n.len()).any(|w| w == n.as_bytes()))
        .cloned()
        .collect()
}

/// Polls `f` until it returns `Some`, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
