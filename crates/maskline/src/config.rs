//! Configuration: an optional TOML file, then `MASKLINE_*` environment
//! variables, which win. Everything is validated here, before any port is
//! bound; a bad value is reported with the key that holds it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use maskline_core::Region;

/// A configuration problem, naming the key at fault.
#[derive(Debug)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        message: message.into(),
    }
}

pub use maskline_sip::Cidr;

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The master key's file (`<data_dir>/master.key` unless set).
    pub master_key_file: PathBuf,
    pub database_url: Option<String>,
    pub database_pool_size: u32,
    pub database_statement_timeout_ms: u64,
    pub http_listen: SocketAddr,
    pub admin_key: Option<String>,
    pub switch_key: Option<String>,
    /// Bearer `/metrics` wants; unset: open.
    pub metrics_key: Option<String>,
    pub http_header_timeout_secs: u64,
    pub http_request_timeout_secs: u64,
    pub http_max_connections: usize,
    /// Requests a second per tenant; 0: unlimited.
    pub rate_limit: u32,
    pub default_region: Region,
    pub sip_listen: SocketAddr,
    pub sip_outbound: Option<String>,
    pub sip_outbound_transport: maskline_sip::Transport,
    pub sip_advertise: String,
    pub sip_trusted: Vec<Cidr>,
    pub sip_ring_timeout_secs: u64,
    pub sip_t1_ms: u64,
    pub sip_t2_ms: u64,
    /// SIP transactions held at most (new requests get 503 beyond).
    pub sip_max_transactions: usize,
    /// SIP dialog entries held at most (new INVITEs get 503 beyond).
    pub sip_max_dialogs: usize,
    pub media_addr: std::net::IpAddr,
    pub rtp_ports: std::ops::RangeInclusive<u16>,
    pub rtp_timeout_secs: u64,
    pub media_threads: usize,
    /// `SCHED_FIFO` priority of the RTP workers; `None` (0): ordinary.
    pub rtp_priority: Option<u8>,
    pub cooldown_secs: i64,
    pub default_ttl_secs: i64,
    pub max_ttl_secs: i64,
    pub extension_length: u8,
    pub shutdown_grace_secs: u64,
    /// Ended records older than this many days are purged; 0: never.
    pub retention_days: u32,
    /// A node without a heartbeat this long is gone: another closes its
    /// calls.
    pub node_timeout_secs: u32,
    /// Webhook and intercept URLs may point at loopback, private and other
    /// non-public addresses (refused otherwise: SSRF).
    pub webhook_allow_private: bool,
    /// Serve the web console at `/console`.
    pub console: bool,
    /// The console's cookies are always `Secure`, not only when a proxy
    /// says the request came over TLS.
    pub console_secure_cookie: bool,
    pub log_format: LogFormat,
    pub webhook_timeout_ms: u64,
    pub webhook_retry_window_secs: u64,
    pub webhook_first_retry_ms: u64,
    pub webhook_max_backoff_secs: u64,
    pub webhook_concurrency: u64,
    pub smpp: Vec<maskline_sms::SmscUrl>,
    pub smpp_window: usize,
    pub smpp_enquire_secs: u64,
    pub smpp_response_timeout_secs: u64,
    pub smpp_reconnect_max_secs: u64,
    pub sms_affinity_hours: i64,
    pub sms_relay_timeout_secs: u64,
    pub sms_relay_lease_secs: u64,
    pub sms_parts_timeout_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

// Secrets never reach Debug output.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("master_key_file", &self.master_key_file)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("database_pool_size", &self.database_pool_size)
            .field(
                "database_statement_timeout_ms",
                &self.database_statement_timeout_ms,
            )
            .field("http_listen", &self.http_listen)
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<set>"))
            .field("switch_key", &self.switch_key.as_ref().map(|_| "<set>"))
            .field("metrics_key", &self.metrics_key.as_ref().map(|_| "<set>"))
            .field("http_header_timeout_secs", &self.http_header_timeout_secs)
            .field("http_request_timeout_secs", &self.http_request_timeout_secs)
            .field("http_max_connections", &self.http_max_connections)
            .field("rate_limit", &self.rate_limit)
            .field("default_region", &self.default_region)
            .field("sip_listen", &self.sip_listen)
            .field("sip_outbound", &self.sip_outbound)
            .field("sip_outbound_transport", &self.sip_outbound_transport)
            .field("sip_advertise", &self.sip_advertise)
            .field("sip_trusted", &self.sip_trusted)
            .field("sip_ring_timeout_secs", &self.sip_ring_timeout_secs)
            .field("sip_t1_ms", &self.sip_t1_ms)
            .field("sip_t2_ms", &self.sip_t2_ms)
            .field("sip_max_transactions", &self.sip_max_transactions)
            .field("sip_max_dialogs", &self.sip_max_dialogs)
            .field("cooldown_secs", &self.cooldown_secs)
            .field("retention_days", &self.retention_days)
            .field("node_timeout_secs", &self.node_timeout_secs)
            .field("default_ttl_secs", &self.default_ttl_secs)
            .field("max_ttl_secs", &self.max_ttl_secs)
            .field("extension_length", &self.extension_length)
            .field("webhook_timeout_ms", &self.webhook_timeout_ms)
            .field("webhook_retry_window_secs", &self.webhook_retry_window_secs)
            .field("webhook_first_retry_ms", &self.webhook_first_retry_ms)
            .field("webhook_max_backoff_secs", &self.webhook_max_backoff_secs)
            .field("webhook_concurrency", &self.webhook_concurrency)
            .field("webhook_allow_private", &self.webhook_allow_private)
            .field("console", &self.console)
            .field("console_secure_cookie", &self.console_secure_cookie)
            // SmscUrl's Debug hides the passwords.
            .field("smpp", &self.smpp)
            .field("smpp_window", &self.smpp_window)
            .field("sms_affinity_hours", &self.sms_affinity_hours)
            .finish_non_exhaustive()
    }
}

/// One configuration key: its name in the TOML file (the variable is
/// `MASKLINE_` and the name in upper case) and its default as a variable
/// would hold it (`None`: unset; lists comma-separated). These are the
/// defaults `Config::from_sources` applies; the shipped configuration
/// (`debian/maskline.toml`) lists every key with them.
pub struct Key {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

const fn key(name: &'static str, default: Option<&'static str>) -> Key {
    Key { name, default }
}

pub const KEYS: &[Key] = &[
    key("data_dir", Some("./maskline-data")),
    key("database_url", None),
    key("master_key_file", None),
    key("database_pool_size", Some("8")),
    key("database_statement_timeout_ms", Some("10000")),
    key("http_listen", Some("127.0.0.1:8080")),
    key("http_header_timeout_secs", Some("10")),
    key("http_request_timeout_secs", Some("60")),
    key("http_max_connections", Some("4096")),
    key("rate_limit", Some("5000")),
    key("metrics_key", None),
    key("admin_key", None),
    key("switch_key", None),
    key("default_region", Some("CN")),
    key("sip_listen", Some("127.0.0.1:5060")),
    key("sip_advertise", None),
    key("sip_outbound", None),
    key("sip_outbound_transport", Some("udp")),
    key("sip_trusted", Some("127.0.0.1/32")),
    key("sip_ring_timeout_secs", Some("60")),
    key("sip_t1_ms", Some("500")),
    key("sip_t2_ms", Some("4000")),
    key("sip_max_transactions", Some("1000000")),
    key("sip_max_dialogs", Some("200000")),
    key("media_addr", None),
    key("rtp_ports", Some("20000-29999")),
    key("rtp_timeout_secs", Some("60")),
    key("media_threads", Some("1")),
    key("rtp_priority", Some("0")),
    key("cooldown_secs", Some("3600")),
    key("retention_days", Some("180")),
    key("node_timeout_secs", Some("300")),
    key("default_ttl_secs", Some("86400")),
    key("max_ttl_secs", Some("15552000")),
    key("extension_length", Some("4")),
    key("webhook_timeout_ms", Some("5000")),
    key("webhook_retry_window_secs", Some("86400")),
    key("webhook_first_retry_ms", Some("2000")),
    key("webhook_max_backoff_secs", Some("3600")),
    key("webhook_concurrency", Some("16")),
    key("webhook_allow_private", Some("false")),
    key("console", Some("true")),
    key("console_secure_cookie", Some("false")),
    key("shutdown_grace_secs", Some("10")),
    key("log_format", Some("text")),
    key("smpp", None),
    key("smpp_window", Some("10")),
    key("smpp_enquire_secs", Some("30")),
    key("smpp_response_timeout_secs", Some("10")),
    key("smpp_reconnect_max_secs", Some("30")),
    key("sms_affinity_hours", Some("72")),
    key("sms_relay_timeout_secs", Some("86400")),
    key("sms_relay_lease_secs", Some("30")),
    key("sms_parts_timeout_secs", Some("600")),
];

/// A TOML value as the text a variable would hold: strings as they are,
/// arrays joined with commas.
fn toml_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(toml_text)
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

impl Config {
    /// Reads `file` (if given) and then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("MASKLINE_"))
            .collect();
        Config::from_sources(file, &env)
    }

    pub fn from_sources(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        // key -> (value, where it came from, for messages)
        let mut values: BTreeMap<&str, (String, String)> = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| err("--config", format!("cannot read {}: {e}", path.display())))?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| {
                // The message only, with the line number: toml's own
                // rendering quotes the line, which may hold a key.
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                let at = line.map_or_else(String::new, |l| format!(" (line {l})"));
                err(
                    &path.display().to_string(),
                    format!("{}{at}", e.message().trim()),
                )
            })?;
            for (name, value) in &table {
                let src = format!("{name} (config file)");
                let Some(key) = KEYS.iter().find(|k| k.name == name) else {
                    return Err(err(&src, "is not a configuration key"));
                };
                let text = toml_text(value)
                    .ok_or_else(|| err(&src, "must be a string, a number or a list"))?;
                values.insert(key.name, (text, src));
            }
        }
        for key in KEYS {
            let var = format!("MASKLINE_{}", key.name.to_ascii_uppercase());
            if let Some(v) = env.get(&var) {
                values.insert(key.name, (v.clone(), var));
            }
            if let Some(default) = key.default {
                values
                    .entry(key.name)
                    .or_insert_with(|| (default.to_owned(), key.name.to_owned()));
            }
        }

        let get = |key: &str| values.get(key).map(|(v, src)| (v.trim(), src.as_str()));
        let text = |key: &str| {
            get(key)
                .map(|(v, _)| v.to_owned())
                .filter(|v| !v.is_empty())
        };
        // Every key these two read has a default, so a value.
        let addr = |key: &str| -> Result<SocketAddr, ConfigError> {
            let (v, src) = get(key).unwrap_or(("", key));
            v.parse()
                .map_err(|_| err(src, format!("{v:?} is not an address like 127.0.0.1:8080")))
        };
        let flag = |key: &str| -> Result<bool, ConfigError> {
            let (v, src) = get(key).unwrap_or(("", key));
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(err(src, format!("{v:?} must be true or false"))),
            }
        };
        let int = |key: &str, min: i64, max: i64| -> Result<i64, ConfigError> {
            let (v, src) = get(key).unwrap_or(("", key));
            match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(err(
                    src,
                    format!("{v:?} must be an integer from {min} to {max}"),
                )),
            }
        };

        let database_url = text("database_url");
        if let Some(url) = &database_url {
            let src = get("database_url").map_or("database_url", |(_, s)| s);
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(err(src, "must be a postgres:// URL"));
            }
            // The URL itself is not quoted back: it may hold a password.
            if let Err(e) = maskline_store::PgOptions::from_url(url, 0) {
                return Err(err(src, format!("is not a valid PostgreSQL URL ({e})")));
            }
        }
        let default_region = match get("default_region") {
            None => Region::default(),
            Some((v, src)) => v
                .parse()
                .map_err(|_| err(src, format!("{v:?} is not a region code like CN or US")))?,
        };
        let sip_trusted = {
            let (v, src) = get("sip_trusted").unwrap_or(("", "sip_trusted"));
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    Cidr::parse(s)
                        .ok_or_else(|| err(src, format!("{s:?} is not an IP address or CIDR")))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let sip_outbound = text("sip_outbound");
        if let Some(o) = &sip_outbound {
            let src = get("sip_outbound").map_or("sip_outbound", |(_, s)| s);
            let ok = o.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(err(src, format!("{o:?} is not host:port")));
            }
        }
        let cooldown_secs = int("cooldown_secs", 0, 365 * 86_400)?;
        let max_ttl_secs = int("max_ttl_secs", 1, 10 * 365 * 86_400)?;
        let default_ttl_secs = int("default_ttl_secs", 1, 10 * 365 * 86_400)?;
        if default_ttl_secs > max_ttl_secs {
            let src = get("default_ttl_secs").map_or("default_ttl_secs", |(_, s)| s);
            return Err(err(src, "must not exceed max_ttl_secs"));
        }
        let log_format = match get("log_format") {
            None => LogFormat::Text,
            Some(("text", _)) => LogFormat::Text,
            Some(("json", _)) => LogFormat::Json,
            Some((v, src)) => return Err(err(src, format!("{v:?} must be text or json"))),
        };
        let sip_outbound_transport = match get("sip_outbound_transport") {
            None | Some(("udp", _)) => maskline_sip::Transport::Udp,
            Some(("tcp", _)) => maskline_sip::Transport::Tcp,
            Some((v, src)) => return Err(err(src, format!("{v:?} must be udp or tcp"))),
        };
        let sip_listen = addr("sip_listen")?;
        let sip_advertise = match text("sip_advertise") {
            Some(a) => a,
            None if sip_listen.ip().is_unspecified() => {
                let src = get("sip_listen").map_or("sip_listen", |(_, s)| s);
                return Err(err(
                    src,
                    "listens on every address: set MASKLINE_SIP_ADVERTISE to the host:port peers reach",
                ));
            }
            None => sip_listen.to_string(),
        };
        let sip_t1_ms = int("sip_t1_ms", 10, 10_000)? as u64;
        let sip_t2_ms = int("sip_t2_ms", 10, 60_000)? as u64;
        if sip_t2_ms < sip_t1_ms {
            let src = get("sip_t2_ms").map_or("sip_t2_ms", |(_, s)| s);
            return Err(err(src, "must not be less than sip_t1_ms"));
        }
        let media_addr = match get("media_addr").filter(|(v, _)| !v.is_empty()) {
            Some((v, src)) => v
                .parse::<std::net::IpAddr>()
                .ok()
                .filter(|ip| !ip.is_unspecified())
                .ok_or_else(|| err(src, format!("{v:?} is not an IP address to put in SDP")))?,
            None if sip_listen.ip().is_unspecified() => {
                let src = get("sip_listen").map_or("sip_listen", |(_, s)| s);
                return Err(err(
                    src,
                    "listens on every address: set MASKLINE_MEDIA_ADDR to the IP parties send RTP to",
                ));
            }
            None => sip_listen.ip(),
        };
        let rtp_ports = {
            let (v, src) = get("rtp_ports").unwrap_or(("", "rtp_ports"));
            let range = v.split_once('-').and_then(|(lo, hi)| {
                Some((
                    lo.trim().parse::<u16>().ok()?,
                    hi.trim().parse::<u16>().ok()?,
                ))
            });
            match range {
                // Room for one call: two pairs of ports.
                Some((lo, hi)) if lo >= 1024 && hi >= lo.saturating_add(3) => lo..=hi,
                _ => {
                    return Err(err(
                        src,
                        format!(
                            "{v:?} must be a range like 20000-29999 of at least 4 ports from 1024"
                        ),
                    ));
                }
            }
        };
        for key in ["admin_key", "switch_key", "metrics_key"] {
            if let (Some(v), Some((_, src))) = (text(key), get(key))
                && v.len() < 16
            {
                return Err(err(src, "must be at least 16 characters"));
            }
        }
        let smpp = match text("smpp") {
            None => Vec::new(),
            Some(list) => {
                let src = get("smpp").map_or("smpp", |(_, s)| s);
                // The URL is not quoted back: it holds a password.
                maskline_sms::SmscUrl::parse_list(&list)
                    .map_err(|(i, e)| err(src, format!("link {}: {e}", i + 1)))?
            }
        };
        let data_dir = text("data_dir").ok_or_else(|| {
            let src = get("data_dir").map_or("data_dir", |(_, s)| s);
            err(src, "must not be empty")
        })?;
        let master_key_file = text("master_key_file")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(&data_dir).join("master.key"));
        Ok(Config {
            data_dir: PathBuf::from(data_dir),
            master_key_file,
            database_url,
            database_pool_size: int("database_pool_size", 1, 256)? as u32,
            database_statement_timeout_ms: int("database_statement_timeout_ms", 0, 3600000)? as u64,
            http_listen: addr("http_listen")?,
            admin_key: text("admin_key"),
            switch_key: text("switch_key"),
            metrics_key: text("metrics_key"),
            http_header_timeout_secs: int("http_header_timeout_secs", 1, 3600)? as u64,
            http_request_timeout_secs: int("http_request_timeout_secs", 1, 86400)? as u64,
            http_max_connections: int("http_max_connections", 1, 1_000_000)? as usize,
            rate_limit: int("rate_limit", 0, i64::from(maskline_engine::MAX_RATE_LIMIT))? as u32,
            default_region,
            sip_listen,
            sip_outbound,
            sip_outbound_transport,
            sip_advertise,
            sip_trusted,
            sip_ring_timeout_secs: int("sip_ring_timeout_secs", 1, 3600)? as u64,
            sip_t1_ms,
            sip_t2_ms,
            sip_max_transactions: int("sip_max_transactions", 100, 100_000_000)? as usize,
            sip_max_dialogs: int("sip_max_dialogs", 10, 100_000_000)? as usize,
            media_addr,
            rtp_ports,
            rtp_timeout_secs: int("rtp_timeout_secs", 1, 86400)? as u64,
            media_threads: int("media_threads", 1, 64)? as usize,
            rtp_priority: match int("rtp_priority", 0, 99)? {
                0 => None,
                p => Some(p as u8),
            },
            cooldown_secs,
            retention_days: int("retention_days", 0, 36_500)? as u32,
            // Above the 5 s heartbeat, with room for a slow database.
            node_timeout_secs: int("node_timeout_secs", 15, 86_400)? as u32,
            default_ttl_secs,
            max_ttl_secs,
            extension_length: int(
                "extension_length",
                1,
                i64::from(maskline_core::MAX_EXTENSION_LEN),
            )? as u8,
            shutdown_grace_secs: int("shutdown_grace_secs", 0, 3600)? as u64,
            log_format,
            webhook_timeout_ms: int("webhook_timeout_ms", 100, 60000)? as u64,
            webhook_retry_window_secs: int("webhook_retry_window_secs", 60, 2592000)? as u64,
            webhook_first_retry_ms: int("webhook_first_retry_ms", 10, 600000)? as u64,
            webhook_max_backoff_secs: int("webhook_max_backoff_secs", 1, 86400)? as u64,
            webhook_concurrency: int("webhook_concurrency", 1, 256)? as u64,
            webhook_allow_private: flag("webhook_allow_private")?,
            console: flag("console")?,
            console_secure_cookie: flag("console_secure_cookie")?,
            smpp,
            smpp_window: int("smpp_window", 1, 1000)? as usize,
            smpp_enquire_secs: int("smpp_enquire_secs", 1, 3600)? as u64,
            smpp_response_timeout_secs: int("smpp_response_timeout_secs", 1, 300)? as u64,
            smpp_reconnect_max_secs: int("smpp_reconnect_max_secs", 1, 3600)? as u64,
            sms_affinity_hours: int("sms_affinity_hours", 0, 8760)?,
            sms_relay_timeout_secs: int("sms_relay_timeout_secs", 60, 30 * 86400)? as u64,
            sms_relay_lease_secs: int("sms_relay_lease_secs", 1, 3600)? as u64,
            sms_parts_timeout_secs: int("sms_parts_timeout_secs", 10, 86400)? as u64,
        })
    }

    pub fn edge(&self) -> maskline_api::edge::EdgeConfig {
        use std::time::Duration;
        maskline_api::edge::EdgeConfig {
            header_timeout: Duration::from_secs(self.http_header_timeout_secs),
            request_timeout: Duration::from_secs(self.http_request_timeout_secs),
            max_connections: self.http_max_connections,
            rate_limit: std::num::NonZeroU32::new(self.rate_limit),
        }
    }

    pub fn callbacks(&self) -> maskline_callbacks::Guard {
        maskline_callbacks::Guard::new(self.webhook_allow_private)
    }

    pub fn delivery(&self) -> maskline_callbacks::DeliveryConfig {
        use std::time::Duration;
        maskline_callbacks::DeliveryConfig {
            timeout: Duration::from_millis(self.webhook_timeout_ms),
            retry_window: Duration::from_secs(self.webhook_retry_window_secs),
            first_retry: Duration::from_millis(self.webhook_first_retry_ms),
            max_backoff: Duration::from_secs(self.webhook_max_backoff_secs),
            concurrency: self.webhook_concurrency as usize,
            ..maskline_callbacks::DeliveryConfig::default()
        }
    }

    /// The PostgreSQL back end's settings, when `database_url` is set.
    pub fn postgres(&self) -> Option<maskline_store::PgOptions> {
        let url = self.database_url.as_deref()?;
        let mut options = maskline_store::PgOptions::from_url(url, self.cooldown_secs).ok()?;
        options.pool_size = self.database_pool_size;
        options.statement_timeout =
            std::time::Duration::from_millis(self.database_statement_timeout_ms);
        Some(options)
    }

    pub fn engine(&self) -> maskline_engine::Config {
        maskline_engine::Config {
            cooldown_secs: self.cooldown_secs,
            default_ttl_secs: self.default_ttl_secs,
            max_ttl_secs: self.max_ttl_secs,
            extension_len: self.extension_length,
            sms_affinity_secs: self.sms_affinity_hours * 3600,
            sms_relay_lease_ms: self.sms_relay_lease_secs as i64 * 1000,
            retention_days: self.retention_days,
            node_timeout_secs: self.node_timeout_secs,
            default_region: self.default_region,
            ..maskline_engine::Config::default()
        }
    }

    /// The SMPP links' settings.
    pub fn sms(&self) -> maskline_sms::Config {
        use std::time::Duration;
        maskline_sms::Config {
            links: self.smpp.clone(),
            session: maskline_sms::SessionConfig {
                window: self.smpp_window,
                enquire_interval: Duration::from_secs(self.smpp_enquire_secs),
                response_timeout: Duration::from_secs(self.smpp_response_timeout_secs),
                ..maskline_sms::SessionConfig::default()
            },
            region: self.default_region,
            reconnect_max: Duration::from_secs(self.smpp_reconnect_max_secs),
            relay_lease: Duration::from_secs(self.sms_relay_lease_secs),
            relay_timeout: Duration::from_secs(self.sms_relay_timeout_secs),
            parts_timeout: Duration::from_secs(self.sms_parts_timeout_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::from_sources(None, &env(&[])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./maskline-data"));
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.sip_listen.to_string(), "127.0.0.1:5060");
        assert_eq!(c.default_region.as_str(), "CN");
        assert_eq!(c.cooldown_secs, 3600);
        assert_eq!(c.sip_trusted, vec![Cidr::parse("127.0.0.1/32").unwrap()]);
        assert!(c.admin_key.is_none() && c.switch_key.is_none() && c.sip_outbound.is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(
            &path,
            "http_listen = \"127.0.0.1:9000\"\ncooldown_secs = 5\n",
        )
        .unwrap();
        let c =
            Config::from_sources(Some(&path), &env(&[("MASKLINE_COOLDOWN_SECS", "7")])).unwrap();
        assert_eq!(c.http_listen.port(), 9000);
        assert_eq!(c.cooldown_secs, 7);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (var, value) in [
            ("MASKLINE_HTTP_LISTEN", "nonsense"),
            ("MASKLINE_COOLDOWN_SECS", "-1"),
            ("MASKLINE_DEFAULT_REGION", "ZZ"),
            ("MASKLINE_SIP_TRUSTED", "10.0.0.0/99"),
            ("MASKLINE_SIP_OUTBOUND", "nohostport"),
            ("MASKLINE_ADMIN_KEY", "short"),
            ("MASKLINE_DATABASE_URL", "mysql://x"),
        ] {
            let e = Config::from_sources(None, &env(&[(var, value)]))
                .err()
                .unwrap();
            assert_eq!(e.key, var, "{var}={value}: {e}");
        }
    }

    #[test]
    fn file_errors_do_not_quote_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "admin_key = \"secret-value-0123456789\" oops\n").unwrap();
        let e = Config::from_sources(Some(&path), &env(&[])).err().unwrap();
        assert!(!e.to_string().contains("secret-value"), "{e}");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "http_lsten = \"127.0.0.1:9000\"\n").unwrap();
        assert!(Config::from_sources(Some(&path), &env(&[])).is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = Config::from_sources(
            None,
            &env(&[
                ("MASKLINE_ADMIN_KEY", "super-secret-admin-key"),
                ("MASKLINE_SWITCH_KEY", "super-secret-switch"),
            ]),
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("super-secret"));
    }

    /// The package's /etc/maskline/maskline.toml: valid, every key listed
    /// once, commented with its default unless the package sets it.
    #[test]
    fn shipped_config_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/maskline.toml");
        let c = Config::from_sources(Some(&path), &env(&[])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/maskline"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut seen = BTreeMap::new();
        for line in text.lines() {
            let (commented, rest) = match line.strip_prefix("# ") {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let Some((name, value)) = rest.split_once(" = ") else {
                continue;
            };
            let Some(key) = KEYS.iter().find(|k| k.name == name) else {
                continue;
            };
            assert!(
                seen.insert(name, commented).is_none(),
                "{name} listed twice"
            );
            let value: toml::Table = toml::from_str(&format!("v = {value}")).unwrap();
            let value = toml_text(&value["v"]).unwrap();
            match (commented, key.default) {
                (true, Some(default)) => assert_eq!(value, default, "{name}: not its default"),
                (true, None) => {}
                (false, None) => panic!("{name} has no default and must stay commented"),
                (false, Some(_)) => assert_eq!(name, "data_dir", "set by the package"),
            }
        }
        let missing: Vec<_> = KEYS
            .iter()
            .filter(|k| !seen.contains_key(k.name))
            .map(|k| k.name)
            .collect();
        assert!(
            missing.is_empty(),
            "not in the shipped configuration: {missing:?}"
        );
    }
}
