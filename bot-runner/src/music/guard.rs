//! What a Discord user can make the bot fetch: public addresses only, checked after DNS
//! resolution and again on every redirect, so `/play http://127.0.0.1:8080/status.mp3`,
//! a name that resolves to the cluster's pods or the cloud's metadata address, or a public
//! page redirecting to one of those, are all refused. Private media servers (and the
//! tests) are reached through an explicit allow-list.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

/// Most redirects followed for one fetch.
const MAX_REDIRECTS: usize = 5;

/// Addresses no user-given URL may reach unless allowed: loopback, private, link-local
/// (where cloud metadata services answer), CGNAT, unique-local, multicast, reserved and
/// documentation ranges. Pod and service ranges of clusters are within these; a cluster
/// that uses public ranges for them adds those with `--media-deny`.
const INTERNAL: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Which addresses media may come from.
#[derive(Clone, Debug)]
pub struct MediaPolicy {
    internal: Vec<IpNet>,
    allow: Vec<IpNet>,
}

impl Default for MediaPolicy {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new())
    }
}

impl MediaPolicy {
    /// `allow` opens ranges (a private media server); `deny` closes more (public pod ranges).
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        let mut internal: Vec<IpNet> = INTERNAL.iter().map(|n| n.parse().expect("static ranges parse")).collect();
        internal.extend(deny);
        Self { internal, allow }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        // An IPv4 address written as IPv6 (::ffff:127.0.0.1) is judged as IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allow.iter().any(|n| n.contains(&ip)) || !self.internal.iter().any(|n| n.contains(&ip))
    }

    /// A URL whose host is an address literal: it never reaches the resolver.
    pub fn permits_url(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => self.permits(ip),
            Err(_) => true,
        }
    }
}

/// Resolves names with the system's resolver and keeps the permitted addresses only; a
/// name with none is refused before any connection is made.
struct GuardedResolver(Arc<MediaPolicy>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found.into_iter().filter(|a| policy.permits(a.ip())).collect();
            if permitted.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// The error a refused address becomes; replies say only this.
#[derive(Debug, thiserror::Error)]
#[error("that address is not a public one")]
pub struct Refused;

/// Whether `e` (from the client below) is a refusal of the policy, at any depth.
pub fn is_refusal(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<Refused>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// Timeouts of every media fetch: connecting, and each read (a server that stops sending,
/// or trickles slower than this, is given up).
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    pub connect: Duration,
    pub read: Duration,
}

/// The HTTP client of media fetches: the policy on every address and redirect, the
/// limits on every connection. Extra CAs (`MUSICBOT_CA_FILE`) apply here too.
pub fn client(policy: Arc<MediaPolicy>, limits: FetchLimits) -> reqwest::Client {
    let on_redirect = policy.clone();
    let redirects = redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if !on_redirect.permits_url(attempt.url()) {
            attempt.error(Refused)
        } else {
            attempt.follow()
        }
    });
    crate::ca::http_client_builder()
        .dns_resolver(Arc::new(GuardedResolver(policy)))
        .redirect(redirects)
        .connect_timeout(limits.connect)
        .read_timeout(limits.read)
        .build()
        .unwrap_or_else(|e| {
            // Only a broken CA file gets here; the guard stays on regardless.
            tracing::warn!(error = %e, "the media client with the extra CAs failed to build; using the system's roots");
            reqwest::Client::builder()
                .redirect(redirect::Policy::none())
                .connect_timeout(limits.connect)
                .read_timeout(limits.read)
                .build()
                .expect("a plain client builds")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_permitted() {
        let p = MediaPolicy::default();
        for internal in [
            "127.0.0.1",
            "10.244.0.7",
            "172.20.1.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "224.0.0.1",
        ] {
            assert!(!p.permits(ip(internal)), "{internal} must be refused");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(p.permits(ip(public)), "{public} must be permitted");
        }
    }

    #[test]
    fn the_allow_list_opens_and_the_deny_list_closes_ranges() {
        let p = MediaPolicy::new(vec!["10.244.0.1/32".parse().unwrap()], vec!["203.0.0.0/16".parse().unwrap()]);
        assert!(p.permits(ip("10.244.0.1")));
        assert!(!p.permits(ip("10.244.0.2")));
        assert!(!p.permits(ip("203.0.9.9")));
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(p.permits_url(&url("http://10.244.0.1:8080/a.mp3")));
        assert!(!p.permits_url(&url("http://[::1]:8080/a.mp3")));
        assert!(p.permits_url(&url("https://media.example/a.mp3")), "names are checked when resolved");
    }
}
