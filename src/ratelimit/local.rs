//! Token buckets per caller, decided in memory under one shard's lock (never a
//! global one): refill, compare and take happen together, so concurrent requests
//! of one consumer can never both spend the same token (the check-then-act race
//! of Kong#2629). Memory is bounded: a shard at capacity first forgets the buckets
//! that have refilled to full (they would be recreated identical), then, under a
//! flood of distinct keys, arbitrary ones.

use crate::config::Bucket;
pub use crate::vocab::limit_key::LimitKey;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::Mutex;

const SHARDS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole tokens left after this request.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub full_in_s: u64,
    /// Seconds until `cost` tokens exist (0 when allowed; at least 1 otherwise).
    pub retry_after_s: u64,
}

/// One key's bucket as it stands.
struct TokenState {
    key: LimitKey,
    /// The key's hash: picks the shard and places it in the shard's table, computed once.
    hash: u64,
    tokens: f64,
    last_ns: u64,
    full_at_ns: u64,
}

pub struct LocalLimiter {
    shards: Box<[Mutex<HashTable<TokenState>>]>,
    max_per_shard: usize,
    /// Seeded per process, so callers cannot aim their keys at one shard.
    hasher: foldhash::fast::RandomState,
}

impl LocalLimiter {
    /// `max_buckets` bounds memory across all shards.
    pub fn new(max_buckets: usize) -> Self {
        LocalLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            max_per_shard: (max_buckets / SHARDS).max(16),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |m| m.len())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refill, then take `cost` tokens if they are there.
    pub fn take(&self, key: &LimitKey, params: Bucket, cost: f64, now_ns: u64) -> Decision {
        let hash = self.hasher.hash_one(key);
        // Middle bits pick the shard: the table itself uses the low bits (slot) and
        // the top seven (tag), which must keep varying within a shard.
        let shard = &self.shards[(hash >> 40) as usize % SHARDS];
        let mut table = shard.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= self.max_per_shard && table.find(hash, |b| b.key == *key).is_none() {
            evict(&mut table, now_ns, self.max_per_shard);
        }
        let bucket = match table.find_mut(hash, |b| b.key == *key) {
            Some(b) => b,
            None => table
                .insert_unique(
                    hash,
                    TokenState {
                        key: key.clone(),
                        hash,
                        tokens: params.burst,
                        last_ns: now_ns,
                        full_at_ns: now_ns,
                    },
                    |b| b.hash,
                )
                .into_mut(),
        };
        let elapsed_s = now_ns.saturating_sub(bucket.last_ns) as f64 / 1e9;
        bucket.tokens = (bucket.tokens + elapsed_s * params.rate).min(params.burst);
        bucket.last_ns = bucket.last_ns.max(now_ns);
        let allowed = bucket.tokens >= cost;
        if allowed {
            bucket.tokens -= cost;
        }
        let missing_s = (params.burst - bucket.tokens) / params.rate;
        bucket.full_at_ns = bucket.last_ns + (missing_s * 1e9) as u64;
        Decision {
            allowed,
            remaining: bucket.tokens.max(0.0).floor() as u64,
            full_in_s: missing_s.ceil() as u64,
            retry_after_s: if allowed {
                0
            } else {
                (((cost - bucket.tokens) / params.rate).ceil() as u64).max(1)
            },
        }
    }
}

fn evict(table: &mut HashTable<TokenState>, now_ns: u64, max: usize) {
    table.retain(|b| b.full_at_ns > now_ns);
    if table.len() >= max {
        // Still full of active keys: a flood. Forget an eighth; they restart full.
        let mut dropped = 0;
        table.retain(|_| {
            dropped += 1;
            dropped > max / 8 + 1
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::sync::Arc;

    const S: u64 = 1_000_000_000;
    const FREE: Bucket = Bucket {
        rate: 1.0,
        burst: 10.0,
    };

    fn consumer(name: &str) -> LimitKey {
        LimitKey::Consumer(Arc::from(name))
    }

    #[test]
    fn burst_then_refusal_then_refill_at_the_rate() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        for i in 0..10 {
            let d = limiter.take(&key, FREE, 1.0, 0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 9 - i);
        }
        let refused = limiter.take(&key, FREE, 1.0, 0);
        assert!(!refused.allowed);
        assert_eq!((refused.retry_after_s, refused.full_in_s), (1, 10));
        // Half a second later: still half a token short.
        assert!(!limiter.take(&key, FREE, 1.0, S / 2).allowed);
        assert!(limiter.take(&key, FREE, 1.0, S).allowed);
        assert!(!limiter.take(&key, FREE, 1.0, S).allowed);
        // A long idle time refills to the burst, never beyond.
        let d = limiter.take(&key, FREE, 1.0, 1000 * S);
        assert_eq!(d.remaining, 9);
    }

    #[test]
    fn cost_and_retry_after_count_the_missing_tokens() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        assert!(limiter.take(&key, FREE, 8.0, 0).allowed);
        let d = limiter.take(&key, FREE, 5.0, 0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_s, 3, "2 tokens left, 5 needed at 1/s");
        assert_eq!(d.remaining, 2, "a refused request takes nothing");
    }

    #[test]
    fn consumers_are_independent() {
        let limiter = LocalLimiter::new(1000);
        for _ in 0..10 {
            assert!(limiter.take(&consumer("a"), FREE, 1.0, 0).allowed);
        }
        assert!(!limiter.take(&consumer("a"), FREE, 1.0, 0).allowed);
        assert!(limiter.take(&consumer("b"), FREE, 1.0, 0).allowed);
        assert!(
            limiter
                .take(&LimitKey::Ip([10, 0, 0, 1].into()), FREE, 1.0, 0)
                .allowed
        );
    }

    #[test]
    fn concurrent_takes_never_exceed_the_burst() {
        let limiter = Arc::new(LocalLimiter::new(1000));
        let params = Bucket {
            rate: 0.001,
            burst: 50.0,
        };
        let admitted: usize = (0..8)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .filter(|_| limiter.take(&consumer("hot"), params, 1.0, 0).allowed)
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .sum();
        assert_eq!(admitted, 50);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_keys() {
        let limiter = LocalLimiter::new(64 * 100);
        for i in 0..200_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            limiter.take(&LimitKey::Ip(ip), FREE, 1.0, u64::from(i));
        }
        assert!(limiter.len() <= 64 * 100, "{} buckets", limiter.len());
    }

    #[test]
    fn full_buckets_are_forgotten_before_active_ones() {
        let limiter = LocalLimiter::new(0); // 16 per shard
        for i in 0..10_000u32 {
            limiter.take(&LimitKey::Ip(IpAddr::from(i.to_be_bytes())), FREE, 1.0, 0);
        }
        // 50 s later every one-off bucket is full again: room is made from those,
        // and a consumer that emptied its slow bucket keeps it.
        let slow = Bucket {
            rate: 0.001,
            burst: 10.0,
        };
        let busy = consumer("busy");
        for _ in 0..10 {
            assert!(limiter.take(&busy, slow, 1.0, 50 * S).allowed);
        }
        assert!(limiter.len() < 10_000);
        assert!(
            !limiter.take(&busy, slow, 1.0, 60 * S).allowed,
            "the busy bucket was forgotten"
        );
    }
}
