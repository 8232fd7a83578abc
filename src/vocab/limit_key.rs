//! Who a limit applies to: the one key shared by the buckets, the Redis sync and
//! the "top limited" statistics.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// An authenticated consumer, or an anonymous client address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitKey {
    Consumer(Arc<str>),
    Ip(IpAddr),
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::Consumer(c) => f.write_str(c),
            LimitKey::Ip(ip) => ip.fmt(f),
        }
    }
}
