//! Texts through X at the carrier edge: SMPP 3.4 links to SMSCs.
//!
//! Maskline binds as a transceiver ESME to every SMSC configured; each
//! link ([`link`]) runs a sans-I/O [`session::Session`] (bind, window,
//! `enquire_link`, throttling, precise refusals) over its own TCP
//! connection and reconnects with a growing pause. A `deliver_sm`
//! ([`inbound`]) is a text, a part of one (reassembled once all parts are
//! kept) or a delivery receipt; it is answered only once the engine has made
//! what it carried durable. Relays go out as `submit_sm`s ([`outbound`]),
//! from X, in parts when long, GSM 7-bit or UTF-16 ([`alphabet`]). What the
//! links share ([`relays`]): the queue of relays, and the background work
//! that claims relays no node sent in time.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod alphabet;
pub mod inbound;
mod link;
pub mod outbound;
mod relays;
pub mod session;
mod url;

use std::sync::Arc;
use std::time::Duration;

use maskline_core::Region;
use maskline_engine::Engine;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use session::SessionConfig;
pub use url::{SmscUrl, UrlError};

/// The SMS edge's settings (validated by the binary's config).
#[derive(Clone, Debug)]
pub struct Config {
    pub links: Vec<SmscUrl>,
    /// Window, timers and throttling of every session (credentials come
    /// from each link).
    pub session: SessionConfig,
    pub region: Region,
    /// Longest pause between reconnects.
    pub reconnect_max: Duration,
    /// How long a node holds a relay it claimed before another may.
    pub relay_lease: Duration,
    /// A relay not handed to a carrier within this fails.
    pub relay_timeout: Duration,
    /// A concatenated text missing parts this long is relayed as it is.
    pub parts_timeout: Duration,
}

/// The running SMS edge.
pub struct Sms {
    tasks: JoinSet<()>,
    shared: Arc<relays::Shared>,
}

impl Sms {
    /// Starts a link per SMSC and the relay work; everything stops when
    /// `shutdown` turns true (links unbind after the texts they are keeping).
    pub fn start(engine: Arc<Engine>, config: Config, shutdown: watch::Receiver<bool>) -> Sms {
        let shared = Arc::new(relays::Shared::new(
            engine,
            config.region,
            config.relay_lease,
        ));
        let mut tasks = JoinSet::new();
        tasks.spawn(relays::pump(
            shared.clone(),
            config.links.len(),
            shutdown.clone(),
        ));
        tasks.spawn(relays::recover(
            shared.clone(),
            config.relay_lease,
            config.relay_timeout,
            config.parts_timeout,
            shutdown.clone(),
        ));
        for url in &config.links {
            let cfg = link::LinkConfig {
                url: url.clone(),
                session: config.session.clone(),
                reconnect_max: config.reconnect_max,
            };
            tasks.spawn(link::run(cfg, shared.clone(), shutdown.clone()));
        }
        Sms { tasks, shared }
    }

    /// Links bound right now.
    pub fn bound_links(&self) -> usize {
        self.shared.bound.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for every link and task to stop (after `shutdown`).
    pub async fn stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Wall-clock Unix milliseconds.
pub(crate) fn unix_ms() -> maskline_core::UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
