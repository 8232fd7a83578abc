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

    /// The peer, or, from a trusted proxy, the right-most `X-Forwarded-For` hop
    /// (header lines joined in order) that is not itself trusted. A hop that is
    /// not an address (`unknown`, a zone id) ends the chain: nothing to its left
    /// was written by a trusted proxy, so the client is the nearest trusted hop to
    /// its right, or the peer.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut nearest = peer;
        let hops = forwarded_for
            .rev()
            .flat_map(|line| line.rsplit(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|hop| !hop.is_empty());
        for hop in hops {
            match hop_address(hop) {
                Some(ip) if self.contains(ip) => nearest = ip,
                Some(ip) => return ip,
                None => return nearest,
            }
        }
        nearest
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// An `X-Forwarded-For` hop's address: `ip`, or with the port some proxies append
/// (Azure Application Gateway): `ip:port`, `[v6]`, `[v6]:port`.
fn hop_address(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?;
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    let (ip, port) = match hop.strip_prefix('[') {
        Some(bracketed) => {
            let (v6, rest) = bracketed.split_once(']')?;
            let port = if rest.is_empty() {
                None
            } else {
                Some(rest.strip_prefix(':')?)
            };
            (IpAddr::V6(v6.parse().ok()?), port)
        }
        None => {
            let (v4, port) = hop.split_once(':')?;
            (IpAddr::V4(v4.parse().ok()?), Some(port))
        }
    };
    // Digits only: `u16` parsing would take `+80` too.
    let port_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok();
    port.is_none_or(port_ok).then_some(ip)
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
        let lines = |l: &'static [&'static str]| l.iter().map(|s| s.as_bytes());
        assert_eq!(
            trusted.client_ip(ip("203.0.113.9"), lines(&["1.2.3.4"])),
            ip("203.0.113.9")
        );
        // From a trusted proxy: the right-most untrusted hop.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.5"), lines(&["6.6.6.6, 198.51.100.7, 10.0.0.9"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), lines(&["10.1.1.1"])),
            ip("10.1.1.1")
        );
        assert_eq!(
            trusted.client_ip(ip("::ffff:127.0.0.1"), std::iter::empty()),
            ip("::ffff:127.0.0.1")
        );
    }

    #[test]
    fn hops_with_a_port_or_brackets_are_addresses() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        for (hop, address) in [
            ("198.51.100.7", ip("198.51.100.7")),
            ("198.51.100.7:5555", ip("198.51.100.7")),
            ("2001:db8::7", ip("2001:db8::7")),
            ("[2001:db8::7]", ip("2001:db8::7")),
            ("[2001:db8::7]:5555", ip("2001:db8::7")),
            ("unknown", None),
            ("fe80::1%eth0", None),
            ("[fe80::1%eth0]:80", None),
            ("198.51.100.7:", None),
            ("198.51.100.7:99999", None),
            ("198.51.100.7:+80", None),
            ("[2001:db8::7]x", None),
            ("[2001:db8::7]:", None),
            ("[198.51.100.7]", None),
        ] {
            assert_eq!(hop_address(hop.as_bytes()), address, "{hop}");
        }
        assert_eq!(hop_address(b"10.0.0.1\xff"), None);
    }

    /// A hop that is not an address ends the chain: the client's own entries to its
    /// left are never believed.
    #[test]
    fn a_hop_that_is_not_an_address_ends_the_chain() {
        let trusted = TrustedProxies::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let peer = ip("127.0.0.1");
        let client = |lines: &[&str]| trusted.client_ip(peer, lines.iter().map(|l| l.as_bytes()));
        for (lines, expected) in [
            (&["127.0.0.5, 198.51.100.7:5555"][..], "198.51.100.7"),
            (&["127.0.0.5, [2001:db8::7]:5555"], "2001:db8::7"),
            (&["127.0.0.5, [2001:db8::7]"], "2001:db8::7"),
            (&["127.0.0.5,, 198.51.100.7 ,"], "198.51.100.7"),
            (&["127.0.0.5, unknown"], "127.0.0.1"),
            (&["127.0.0.5, fe80::1%eth0"], "127.0.0.1"),
            (&["127.0.0.5, unknown, 127.0.0.9"], "127.0.0.9"),
            (&["198.51.100.7, unknown, 127.0.0.9, 127.0.0.8"], "127.0.0.9"),
            // Lines are one list, in order: the last line holds the nearest hops.
            (&["127.0.0.5", "unknown"], "127.0.0.1"),
            (&["unknown", "203.0.113.4"], "203.0.113.4"),
            (&["127.0.0.5, 203.0.113.4", "127.0.0.9"], "203.0.113.4"),
            // Every hop trusted: the farthest of them.
            (&["127.0.0.5, 127.0.0.9"], "127.0.0.5"),
            (&[""], "127.0.0.1"),
        ] {
            assert_eq!(client(lines), ip(expected), "{lines:?}");
        }
        assert_eq!(
            trusted.client_ip(peer, [&b"127.0.0.5, 10.0.0.1\xff"[..]].into_iter()),
            peer,
            "a hop that is not UTF-8 is not an address"
        );
    }
}
