//! Who a limit applies to: the one key shared by the buckets, the Redis sync and
//! the "top limited" statistics.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// An authenticated consumer, an anonymous client address, or a consumer on a
/// route with its own per-tier limit (route name, consumer).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitKey {
    Consumer(Arc<str>),
    Ip(IpAddr),
    Route(Arc<str>, Arc<str>),
}

impl LimitKey {
    /// An anonymous caller's key. An IPv6 caller is keyed by its /64: one host
    /// commonly holds a whole /64, and would otherwise mint fresh buckets at will.
    pub fn anonymous(ip: IpAddr) -> LimitKey {
        match ip {
            IpAddr::V4(_) => LimitKey::Ip(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => LimitKey::Ip(IpAddr::V4(v4)),
                None => LimitKey::Ip(IpAddr::V6(Ipv6Addr::from_bits(
                    v6.to_bits() & !((1u128 << 64) - 1),
                ))),
            },
        }
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::Consumer(c) => f.write_str(c),
            LimitKey::Route(route, c) => write!(f, "{route}:{c}"),
            LimitKey::Ip(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            LimitKey::Ip(ip) => ip.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_callers_share_their_64_and_mapped_ipv4_is_ipv4() {
        let a = LimitKey::anonymous("2001:db8:1:2:aaaa::1".parse().expect("ip"));
        let b = LimitKey::anonymous("2001:db8:1:2:ffff::9".parse().expect("ip"));
        let other = LimitKey::anonymous("2001:db8:1:3::1".parse().expect("ip"));
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        let mapped = LimitKey::anonymous("::ffff:192.0.2.7".parse().expect("ip"));
        assert_eq!(mapped, LimitKey::Ip([192, 0, 2, 7].into()));
        assert_eq!(mapped.to_string(), "192.0.2.7");
    }
}
