//! The client address that limits, logs and `X-Forwarded-For` use: the peer,
//! unless the peer is a trusted proxy, in which case the right-most untrusted
//! `X-Forwarded-For` hop, so a client cannot pick its own address.

use http::HeaderValue;
use ipnet::IpNet;
use std::cell::RefCell;
use std::net::IpAddr;

thread_local! {
    /// The last address this worker formatted: a connection's requests all come from one.
    static LAST_FORMATTED: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
}

/// `ip` as text, for `X-Forwarded-For`, `X-Real-IP` and the access log: formatted
/// once per run of requests from one address on a worker, then shared.
pub fn text(ip: IpAddr) -> HeaderValue {
    LAST_FORMATTED.with_borrow_mut(|last| match last {
        Some((seen, text)) if *seen == ip => text.clone(),
        _ => {
            let text = HeaderValue::try_from(ip.to_string()).expect("an address is a header value");
            *last = Some((ip, text.clone()));
            text
        }
    })
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = forwarded_for
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !self.contains(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_text() {
        for ip in ["10.0.0.1", "10.0.0.1", "::1", "10.0.0.2"] {
            assert_eq!(text(ip.parse().expect("ip")), ip);
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted = TrustedProxies::new(vec![
            "10.0.0.0/8".parse().expect("cidr"),
            "127.0.0.1/32".parse().expect("cidr"),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // An untrusted peer's header is ignored: it cannot pick its own key.
        assert_eq!(
            trusted.client_ip(ip("203.0.113.9"), ["1.2.3.4"].into_iter()),
            ip("203.0.113.9")
        );
        // From a trusted proxy: the right-most untrusted hop.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.5"), ["6.6.6.6, 198.51.100.7, 10.0.0.9"].into_iter()),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), ["10.1.1.1"].into_iter()),
            ip("10.1.1.1")
        );
        assert_eq!(
            trusted.client_ip(ip("::ffff:127.0.0.1"), std::iter::empty()),
            ip("::ffff:127.0.0.1")
        );
    }
}
