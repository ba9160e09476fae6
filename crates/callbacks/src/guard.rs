//! Where callbacks may go: a tenant's webhook or intercept URL must not
//! turn Maskline into a client of the operator's own network (SSRF).
//!
//! The check runs twice: when the URL is `PUT` (resolved, every address
//! must be public) and at every connection (the resolver below hands the
//! HTTP client only public addresses, so a name that resolves elsewhere
//! later, DNS rebinding included, reaches nothing). An address written in
//! the URL itself never goes through a resolver, so [`Guard::literal`] is
//! asked before each request as well.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest a `PUT`'s name resolution may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a URL is refused. Never names an address: the answer goes to the
/// tenant and into stored delivery errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    #[error(
        "the URL's host is a loopback, private, link-local, multicast or otherwise non-public address"
    )]
    Address,
    #[error(
        "the URL's host name resolves to a loopback, private, link-local or otherwise non-public address"
    )]
    Resolved,
    #[error("the URL is not a valid http(s) URL")]
    Url,
}

/// Why a callback URL cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Not a well-formed http(s) URL (the events crate's check says why).
    #[error("{0}")]
    Invalid(maskline_events::Error),
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
}

/// The callback address policy of a node.
#[derive(Clone, Copy, Debug, Default)]
pub struct Guard {
    /// `MASKLINE_WEBHOOK_ALLOW_PRIVATE`: every address is allowed (tests,
    /// and operators whose receivers are on their own network).
    pub allow_private: bool,
}

impl Guard {
    pub fn new(allow_private: bool) -> Guard {
        Guard { allow_private }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    /// The check before each request: a host written as an address is
    /// judged here (names are judged by [`Guard::resolver`]).
    pub fn literal(&self, url: &str) -> Result<(), NotAllowed> {
        let url = reqwest::Url::parse(url).map_err(|_| NotAllowed::Url)?;
        match url.host() {
            Some(url::Host::Ipv4(ip)) if !self.allows(IpAddr::V4(ip)) => Err(NotAllowed::Address),
            Some(url::Host::Ipv6(ip)) if !self.allows(IpAddr::V6(ip)) => Err(NotAllowed::Address),
            Some(_) => Ok(()),
            None => Err(NotAllowed::Url),
        }
    }

    /// The check at `PUT`: the address in the URL, or every address its
    /// name resolves to now. A name that does not resolve (yet) is
    /// accepted: nothing is reached through it, and each connection is
    /// checked again.
    pub async fn check(&self, url: &str) -> Result<(), NotAllowed> {
        self.literal(url)?;
        if self.allow_private {
            return Ok(());
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| NotAllowed::Url)?;
        let Some(url::Host::Domain(name)) = parsed.host() else {
            return Ok(());
        };
        let port = parsed.port_or_known_default().unwrap_or(443);
        let lookup = tokio::net::lookup_host((name, port));
        match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(Ok(mut addrs)) => {
                if addrs.any(|a| !is_public(a.ip())) {
                    return Err(NotAllowed::Resolved);
                }
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Ok(()),
        }
    }

    /// A URL as typed, ready to be set as a webhook or intercept URL: well
    /// formed (trimmed, as stored), then [`Guard::check`]ed. The one check
    /// every way of setting one goes through (the API, the console).
    pub async fn accept(&self, raw: &str) -> Result<String, Refused> {
        let url = maskline_events::validate_url(raw.trim()).map_err(Refused::Invalid)?;
        self.check(&url).await?;
        Ok(url)
    }

    /// A resolver for the HTTP client that drops every address this
    /// policy refuses (and fails when none is left).
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { guard: *self })
    }
}

/// See [`Guard::resolver`].
pub struct GuardedResolver {
    guard: Guard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard;
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|a| guard.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(
                    Box::new(NotAllowed::Resolved) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is an address on the public internet. Everything else is
/// refused: loopback, private, shared (CGNAT), link-local, multicast,
/// broadcast, unspecified, reserved and documentation ranges, and IPv6
/// forms that carry such an IPv4 address (mapped, compatible, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network", 0.0.0.0 included
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4 inside IPv6: judged as the IPv4 address it carries.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, and :: and ::1)
        return s[5] == 0xffff && is_public_v4(embedded(s[6], s[7]))
            || s[5] == 0 && s[6] != 0 && is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48)
        return s[2..6] == [0; 4] && is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address is in the second and third groups
        return is_public_v4(embedded(s[1], s[2]));
    }
    let refused = (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo: tunnels to anywhere
        || (s[0] == 0x0100 && s[1..4] == [0; 3]); // discard-only
    !refused
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(v4(ip)), "{ip}");
        }
        for ip in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001:0:4136:e378::1",
            "100::1",
        ] {
            assert!(!is_public(v6(ip)), "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "223.5.5.5",
        ] {
            assert!(is_public(v4(ip)), "{ip}");
        }
        for ip in [
            "2400:3200::1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(v6(ip)), "{ip}");
        }
    }

    proptest! {
        /// An IPv4 address gets the same answer in every IPv6 form that
        /// carries it.
        #[test]
        fn ipv6_forms_of_an_ipv4_address_agree(raw: u32) {
            let ip = Ipv4Addr::from(raw);
            let expected = is_public_v4(ip);
            prop_assert_eq!(is_public(IpAddr::V6(ip.to_ipv6_mapped())), expected);
            let [a, b, c, d] = ip.octets();
            let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            prop_assert_eq!(is_public(IpAddr::V6(nat64)), expected);
            let six_to_four = Ipv6Addr::new(0x2002, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), 1, 0, 0, 0, 1);
            prop_assert_eq!(is_public(IpAddr::V6(six_to_four)), expected);
        }

        /// Every address of the private and loopback blocks is refused.
        #[test]
        fn private_blocks_are_refused_throughout(low: u32) {
            for (base, bits) in [(0x0a00_0000u32, 8), (0x7f00_0000, 8), (0xac10_0000, 12), (0xc0a8_0000, 16), (0xa9fe_0000, 16)] {
                let ip = Ipv4Addr::from(base | (low >> bits));
                prop_assert!(!is_public_v4(ip), "{}", ip);
            }
        }
    }

    #[test]
    fn urls_with_literal_addresses_are_judged_before_any_request() {
        let guard = Guard::default();
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0:8080/",
            "http://10.0.0.1/",
        ] {
            assert_eq!(guard.literal(url), Err(NotAllowed::Address), "{url}");
        }
        assert_eq!(guard.literal("https://8.8.8.8/"), Ok(()));
        assert_eq!(guard.literal("https://hooks.example.com/"), Ok(()));
        assert_eq!(Guard::new(true).literal("http://127.0.0.1/"), Ok(()));
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_at_put() {
        let guard = Guard::default();
        assert_eq!(
            guard.check("http://localhost:9000/hook").await,
            Err(NotAllowed::Resolved)
        );
        assert_eq!(
            Guard::new(true).check("http://localhost:9000/").await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn the_resolver_hands_out_no_refused_address() {
        let resolver = Guard::default().resolver();
        let name: Name = "localhost".parse().unwrap();
        assert!(resolver.resolve(name).await.is_err());
        let open = Guard::new(true).resolver();
        let addrs: Vec<_> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
