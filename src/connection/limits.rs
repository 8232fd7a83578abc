//! Caps on open client connections: in all (`client.max_connections`) and per
//! client address (`client.max_connections_per_ip`, off by default: one load
//! balancer or NAT is many clients). A connection over a cap is closed before
//! a byte of it is read. Counted once per connection, never per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Per-address counts are split so that accepts on many cores rarely meet on a lock.
const SHARDS: usize = 16;

pub struct ConnectionLimits {
    max: usize,
    per_ip: Option<u32>,
    open: AtomicUsize,
    by_ip: Box<[Mutex<HashMap<IpAddr, u32>>]>,
    hasher: foldhash::fast::RandomState,
    /// Connections closed at once for being over a cap.
    pub refused: AtomicU64,
}

/// An admitted connection; dropping it frees its place.
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    ip: Option<IpAddr>,
}

impl ConnectionLimits {
    pub fn new(max: usize, per_ip: Option<u32>) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max,
            per_ip,
            open: AtomicUsize::new(0),
            by_ip: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            refused: AtomicU64::new(0),
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn shard(&self, ip: &IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        use std::hash::BuildHasher;
        let i = self.hasher.hash_one(ip) as usize % SHARDS;
        self.by_ip[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection from `ip`, or `None` when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let counted_ip = match (self.per_ip, ip) {
            (Some(cap), Some(ip)) => {
                let mut shard = self.shard(&ip);
                let n = shard.entry(ip).or_default();
                if *n >= cap {
                    drop(shard);
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                *n += 1;
                Some(ip)
            }
            _ => None,
        };
        Some(Slot {
            limits: self.clone(),
            ip: counted_ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut shard = self.limits.shard(&ip);
            if let Some(n) = shard.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    shard.remove(&ip);
                }
            }
        }
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_address() {
        let limits = ConnectionLimits::new(3, Some(2));
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let a1 = limits.admit(Some(a)).expect("a1");
        let _a2 = limits.admit(Some(a)).expect("a2");
        assert!(limits.admit(Some(a)).is_none(), "a third from one address");
        let _b1 = limits.admit(Some(b)).expect("b1");
        assert!(limits.admit(Some(b)).is_none(), "over the total");
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert!(limits.admit(Some(a)).is_some(), "a place freed");
        assert_eq!(limits.refused.load(Ordering::Relaxed), 2);
        let unlimited = ConnectionLimits::new(10, None);
        let slots: Vec<_> = (0..10).filter_map(|_| unlimited.admit(Some(a))).collect();
        assert_eq!(slots.len(), 10);
    }
}
