//! SIP for Maskline: the voice path.
//!
//! Layered as RFC 3261 is, one file per layer:
//! - [`message`]: parsing (spans over the text) and building messages;
//! - [`transaction`]: the §17 state machines, sans I/O, timers A–M;
//! - `transport`: UDP and TCP sockets and stream framing;
//! - `endpoint`: every transaction, dialog matching and timers, sans I/O
//!   (bytes out through a `Wire`, time in with each input); no call policy;
//! - `dialog`: one dialog's state and the requests built within it;
//! - `call`: the back-to-back user agent's call logic, sans I/O, one file
//!   per phase (`invite`: the decision and the masked outbound leg;
//!   `relay`: messages crossing between the legs; `teardown`: CANCEL,
//!   BYE, limits, the CDR); it asks the engine for a route decision per
//!   INVITE and writes one CDR per inbound INVITE;
//! - [`intercept`]: the tenant's intercept callback as a trait (its HTTP
//!   implementation is the binary's);
//! - `server`: the driver: sockets, the SIP thread and its runtime, the
//!   clock, and the asynchronous work the call logic asks for.
//!
//! The stack is our own rather than a crate's: see ARCHITECTURE.md for the
//! measurements behind that choice.

#![forbid(unsafe_code)]
// Input must never reach a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use maskline_core::Region;

mod call;
mod dialog;
mod endpoint;
pub mod intercept;
pub mod message;
mod server;
pub mod transaction;
mod transport;

pub use endpoint::Limits;
pub use intercept::Intercepts;
pub use server::SipServer;
pub use transaction::Timers;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed SIP message: {0}")]
    Malformed(&'static str),
    #[error("cannot start the media relay: {0}")]
    Media(maskline_media::Error),
    #[error("missing or empty {0} header")]
    Missing(&'static str),
    #[error("cannot bind SIP {transport} on {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How messages travel to a peer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    pub fn is_reliable(self) -> bool {
        self == Transport::Tcp
    }
}

/// An IPv4/IPv6 network in CIDR form (trusted trunk sources).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr: ip, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Where outbound legs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outbound {
    pub addr: SocketAddr,
    pub transport: Transport,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// UDP and TCP are both bound here.
    pub listen: SocketAddr,
    /// `host:port` written in our Via and Contact headers.
    pub advertise: String,
    /// `None`: no call is placed (connect decisions are answered 503).
    pub outbound: Option<Outbound>,
    pub trusted: Vec<Cidr>,
    pub timers: Timers,
    /// An outbound leg not answered within this is cancelled.
    pub ring_timeout: Duration,
    /// For caller and called numbers in national form.
    pub region: Region,
    /// The RTP relay every call is anchored in.
    pub media: maskline_media::relay::RelayConfig,
    /// The language of the built-in prompts.
    pub language: maskline_media::prompts::Language,
    /// Transactions and dialogs held at most.
    pub limits: Limits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
    }
}
