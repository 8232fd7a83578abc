//! Token buckets per caller, decided in memory under one shard's lock (never a
//! global one): refill, compare and take happen together, so concurrent requests
//! of one consumer can never both spend the same token (the check-then-act race
//! of Kong#2629). Memory is bounded: a shard at capacity first forgets the buckets
//! that have refilled to full and owe the cluster nothing (they would be recreated
//! identical), then, under a flood of distinct keys, arbitrary ones.
//!
//! With Redis, a bucket is this instance's part of one cluster-wide budget (see
//! `Supply` and services::redis_sync::budgets): tokens arrive as leases at each
//! sync instead of refilling here, and each key touched since the last sync is
//! listed once for the next report, unless its lease covers its demand with room
//! to spare: then its report is put off (report_schedule.rs) until the round the
//! lease was granted for, or until it runs low or refuses.

use super::report_schedule::ReportSchedule;
use crate::config::Bucket;
pub use crate::vocab::limit_key::LimitKey;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
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

/// Where a bucket's tokens come from right now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Supply {
    /// No Redis: the whole tier, refilled here.
    Alone,
    /// Redis down under `allow`: the whole tier, refilled here, and recorded to be
    /// charged to the cluster when Redis returns.
    Full,
    /// Synced: tokens are leased from the key's cluster pool at each sync. A key
    /// released when idle starts again on an advance of the pool as last known ÷
    /// `instances`; a key new here, which may be busy elsewhere, on `first_s` of
    /// its rate (at least one token, at most its burst ÷ `instances`). Advances are
    /// charged to the pool at the next sync.
    Leased { instances: u64, first_s: f64 },
    /// Redis down under `local_share`: refilled here at the key's last share of
    /// the tier, or tier ÷ `instances` for a key this instance never leased.
    LocalShare { instances: u64 },
}

/// One key's consumption since its last report, for the cluster sync.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub key: LimitKey,
    pub bucket: Bucket,
    /// Tokens admitted.
    pub used: f64,
    /// Tokens asked for, admitted or not: the key's demand here.
    pub asked: f64,
    /// The largest cost refused: a lease smaller than it admits nothing.
    pub need: f64,
    /// The sync rounds these counts cover (more than one for a key put off).
    pub rounds: u32,
}

impl Report {
    /// The key's demand per round, which shares are weighed by whenever it reports.
    pub fn asked_per_round(&self) -> f64 {
        self.asked / f64::from(self.rounds.max(1))
    }
}

/// What the cluster granted a key at its settlement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lease {
    pub tokens: f64,
    /// This instance's share of the key's demand, 0..=1.
    pub share: f64,
    /// Tokens left in the cluster pool after this lease.
    pub pool: f64,
    /// The rounds the lease covers the key's demand for, twice over: its next
    /// report is due then (1: every round).
    pub rounds: u32,
}

/// This instance's view of a key's cluster budget, as of its last settlement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShareView {
    pub tokens: f64,
    pub share: f64,
    /// The tier it was last asked under.
    pub bucket: Bucket,
}

/// One key's bucket as it stands.
struct TokenState {
    key: LimitKey,
    /// The key's hash: picks the shard and places it in the shard's table, computed once.
    hash: u64,
    /// The tier it was last asked under, which its report carries.
    bucket: Bucket,
    tokens: f64,
    last_ns: u64,
    full_at_ns: u64,
    cluster: ClusterPart,
}

/// The cluster bookkeeping of a bucket; untouched without Redis.
#[derive(Clone, Copy, Default)]
struct ClusterPart {
    /// Holds a lease: tokens come from the pool, nothing is advanced.
    leased: bool,
    /// An advance was taken since the last settlement.
    advanced: bool,
    /// Listed for the next report.
    listed: bool,
    share: f32,
    used: f64,
    asked: f64,
    need: f32,
    /// The pool as of the last settlement, and when (for the advance estimate).
    pool: f32,
    pool_at_ns: u64,
    /// The round its put-off report is due in; 0 when not put off.
    due_round: u32,
    /// The round it was last settled in: its next report covers the rounds since.
    settled_round: u32,
    /// Its demand per round at its last report: a put-off key reports early once
    /// its tokens would not cover that until its due round.
    asked_per_round: f32,
    /// When Redis stops counting a put-off key's lease (less a margin): rounds
    /// that run slow must not keep it spending tokens the pool has back.
    lapse_at_ns: u64,
}

struct Shard {
    table: HashTable<TokenState>,
    /// Keys touched since their last report, oldest first.
    listed: Vec<LimitKey>,
    /// Keys whose report is put off, by the round it is due.
    put_off: ReportSchedule,
}

pub struct LocalLimiter {
    shards: Box<[Mutex<Shard>]>,
    /// Where the next report round starts, so that a backlog drains from every shard.
    next_report_shard: AtomicUsize,
    /// Report rounds taken so far (u32: 13 years of rounds at 100 ms).
    round: AtomicU32,
    max_per_shard: usize,
    /// Seeded per process, so callers cannot aim their keys at one shard.
    hasher: foldhash::fast::RandomState,
}

impl LocalLimiter {
    /// `max_buckets` bounds memory across all shards.
    pub fn new(max_buckets: usize) -> Self {
        LocalLimiter {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        table: HashTable::new(),
                        listed: Vec::new(),
                        put_off: ReportSchedule::default(),
                    })
                })
                .collect(),
            max_per_shard: (max_buckets / SHARDS).max(16),
            next_report_shard: AtomicUsize::new(0),
            round: AtomicU32::new(0),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        // Middle bits pick the shard: the table itself uses the low bits (slot) and
        // the top seven (tag), which must keep varying within a shard.
        let shard = &self.shards[(hash >> 40) as usize % SHARDS];
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.table.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refill (when this instance refills), then take `cost` tokens if they are there.
    pub fn take(&self, key: &LimitKey, params: Bucket, cost: f64, now_ns: u64, supply: Supply) -> Decision {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        let Shard { table, listed, .. } = &mut *shard;
        if table.len() >= self.max_per_shard && table.find(hash, |b| b.key == *key).is_none() {
            evict(table, now_ns, self.max_per_shard);
        }
        let bucket = match table.find_mut(hash, |b| b.key == *key) {
            Some(b) => b,
            None => table
                .insert_unique(
                    hash,
                    TokenState {
                        key: key.clone(),
                        hash,
                        bucket: params,
                        tokens: match supply {
                            Supply::Alone | Supply::Full => params.burst,
                            Supply::Leased { instances, first_s } => (params.rate * first_s)
                                .max(1.0)
                                .min(params.burst / instances.max(1) as f64),
                            Supply::LocalShare { instances } => params.burst / instances.max(1) as f64,
                        },
                        last_ns: now_ns,
                        full_at_ns: now_ns,
                        cluster: ClusterPart {
                            advanced: matches!(supply, Supply::Leased { .. }),
                            pool_at_ns: now_ns,
                            settled_round: self.round.load(Ordering::Relaxed),
                            ..ClusterPart::default()
                        },
                    },
                    |b| b.hash,
                )
                .into_mut(),
        };
        bucket.bucket = params;
        // The rate and size this instance refills at; a lease does not refill here.
        let (rate, burst) = match supply {
            Supply::Alone | Supply::Full => (params.rate, params.burst),
            Supply::LocalShare { instances } => {
                let share = bucket.cluster.share_or(instances);
                (params.rate * share, params.burst * share)
            }
            Supply::Leased { instances, .. } => {
                if bucket.cluster.due_round != 0 && now_ns >= bucket.cluster.lapse_at_ns {
                    bucket.lapse();
                }
                let c = &mut bucket.cluster;
                if !c.leased && !c.advanced && bucket.tokens < cost {
                    bucket.tokens += c.pool_estimate(params, now_ns) / instances.max(1) as f64;
                    c.advanced = true;
                }
                let share = c.share_or(instances);
                (params.rate * share, params.burst * share)
            }
        };
        let elapsed_s = now_ns.saturating_sub(bucket.last_ns) as f64 / 1e9;
        if !matches!(supply, Supply::Leased { .. }) && bucket.tokens < burst {
            bucket.tokens = (bucket.tokens + elapsed_s * rate).min(burst);
        }
        bucket.last_ns = bucket.last_ns.max(now_ns);
        let allowed = bucket.tokens >= cost;
        if allowed {
            bucket.tokens -= cost;
        }
        let tokens = bucket.tokens;
        let c = &mut bucket.cluster;
        if supply != Supply::Alone {
            c.asked += cost;
            if allowed {
                c.used += cost;
            } else {
                c.need = c.need.max(cost as f32);
            }
            // A key put off stays so while its lease holds out at the demand it
            // reported; running low or refusing lists it for the next round, as
            // does any other supply.
            let put_off = c.due_round != 0
                && matches!(supply, Supply::Leased { .. })
                && allowed
                && tokens >= f64::from(c.asked_per_round) * self.rounds_until(c.due_round);
            if !c.listed && !put_off {
                c.listed = true;
                c.due_round = 0;
                listed.push(key.clone());
            }
        }
        // A lease refills at the next sync, not at the share's rate: waits are in the
        // tier's rate (a small share would otherwise promise a long one).
        let rate = if matches!(supply, Supply::Leased { .. }) {
            params.rate
        } else {
            rate
        };
        let missing_s = ((burst - bucket.tokens) / rate).max(0.0);
        bucket.full_at_ns = bucket.last_ns + (missing_s * 1e9) as u64;
        Decision {
            allowed,
            remaining: bucket.tokens.max(0.0).floor() as u64,
            full_in_s: missing_s.ceil() as u64,
            retry_after_s: if allowed {
                0
            } else {
                (((cost - bucket.tokens) / rate).ceil() as u64).max(1)
            },
        }
    }

    /// Gives back tokens taken for a request that a later limit or the gateway
    /// refused. A synced bucket reports less used at the next sync (less than zero
    /// when the take was already reported: the pool gets it back).
    pub fn give_back(&self, key: &LimitKey, cost: f64) {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        let Some(b) = shard.table.find_mut(hash, |b| b.key == *key) else {
            return;
        };
        b.tokens += cost;
        let c = &mut b.cluster;
        if !c.leased {
            b.tokens = b.tokens.min(b.bucket.burst);
        }
        if c.listed || c.leased {
            c.used -= cost;
            c.asked = (c.asked - cost).max(0.0);
        }
    }

    fn rounds_until(&self, round: u32) -> f64 {
        f64::from(round.saturating_sub(self.round.load(Ordering::Relaxed)))
    }

    /// Up to `max` keys touched since their last report (or put off until this
    /// round), with what they used and asked since; those counts start again from
    /// zero. Keys beyond `max` wait for the next round (oldest first within a
    /// shard; each round starts at the next shard).
    pub fn take_reports(&self, max: usize) -> Vec<Report> {
        let round = self.round.fetch_add(1, Ordering::Relaxed) + 1;
        // Every shard's keys due now join its list, however many are reported:
        // a slot not drained in its round would keep its keys put off for good.
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let Shard {
                table,
                listed,
                put_off,
            } = &mut *shard;
            for (due, key) in put_off.take_due(round) {
                let hash = self.hasher.hash_one(&key);
                let Some(b) = table.find_mut(hash, |b| b.key == key) else {
                    continue;
                };
                let c = &mut b.cluster;
                if c.due_round != due || c.listed {
                    continue;
                }
                if c.asked > 0.0 || c.used != 0.0 {
                    c.due_round = 0;
                    c.listed = true;
                    listed.push(key);
                } else {
                    // Idle since its report: its lease lapses here and, counted as
                    // spent, in Redis; a settle to hand it back would cost more
                    // than the tokens are worth to a quiet key.
                    b.lapse();
                }
            }
        }
        let mut reports = Vec::new();
        let start = self.next_report_shard.fetch_add(1, Ordering::Relaxed);
        for i in 0..SHARDS {
            if reports.len() >= max {
                break;
            }
            let shard = &self.shards[(start + i) % SHARDS];
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let Shard { table, listed, .. } = &mut *shard;
            let n = listed.len().min(max - reports.len());
            for key in listed.drain(..n) {
                let hash = self.hasher.hash_one(&key);
                if let Some(b) = table.find_mut(hash, |b| b.key == key) {
                    let c = &mut b.cluster;
                    reports.push(Report {
                        key,
                        bucket: b.bucket,
                        used: std::mem::take(&mut c.used),
                        asked: std::mem::take(&mut c.asked),
                        need: f64::from(std::mem::take(&mut c.need)),
                        rounds: round.saturating_sub(c.settled_round).max(1),
                    });
                }
            }
        }
        reports
    }

    /// Keys listed for a report and not yet taken.
    pub fn waiting(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.listed.len()))
            .sum()
    }

    /// A report that did not reach Redis: its counts go back, to be pushed later.
    pub fn restore(&self, report: Report) {
        let hash = self.hasher.hash_one(&report.key);
        let mut shard = self.shard(hash);
        let Shard { table, listed, .. } = &mut *shard;
        if let Some(b) = table.find_mut(hash, |b| b.key == report.key) {
            b.cluster.used += report.used;
            b.cluster.asked += report.asked;
            b.cluster.need = b.cluster.need.max(report.need as f32);
            listed.push(report.key);
        }
    }

    /// The cluster's answer to a report: the new lease replaces what is left of the
    /// old one (spent meanwhile counts against it). A key that asked for nothing and
    /// holds nothing is released and leaves the report list; one whose lease covers
    /// its demand for more rounds than the next leaves it until then, or until
    /// `lapse_at_ns`, when Redis stops counting its lease. `asked` is the report's
    /// demand per round.
    pub fn settle(&self, key: &LimitKey, lease: Lease, asked: f64, now_ns: u64, lapse_at_ns: u64) {
        let hash = self.hasher.hash_one(key);
        let round = self.round.load(Ordering::Relaxed);
        let mut shard = self.shard(hash);
        let Shard {
            table,
            listed,
            put_off,
        } = &mut *shard;
        let Some(b) = table.find_mut(hash, |b| b.key == *key) else {
            return;
        };
        let c = &mut b.cluster;
        b.tokens = lease.tokens - c.used;
        c.share = lease.share as f32;
        c.leased = lease.share > 0.0;
        c.advanced = false;
        c.pool = lease.pool as f32;
        c.pool_at_ns = now_ns;
        c.settled_round = round;
        let refill_s = (f64::from(b.bucket.burst as f32 - c.pool) / b.bucket.rate).max(0.0);
        b.full_at_ns = now_ns + (refill_s * 1e9) as u64;
        let covered = asked * f64::from(lease.rounds);
        if c.leased && lease.rounds >= 2 && c.need == 0.0 && b.tokens >= covered {
            c.due_round = round + lease.rounds;
            c.asked_per_round = asked as f32;
            c.lapse_at_ns = lapse_at_ns;
            c.listed = false;
            put_off.put(c.due_round, key.clone());
        } else if c.leased || c.asked > 0.0 {
            listed.push(key.clone());
        } else {
            c.listed = false;
        }
    }

    /// What this instance holds of `key`'s budget, if it has a bucket for it.
    pub fn view(&self, key: &LimitKey) -> Option<ShareView> {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        shard.table.find(hash, |b| b.key == *key).map(|b| ShareView {
            tokens: b.tokens,
            share: f64::from(b.cluster.share),
            bucket: b.bucket,
        })
    }
}

impl TokenState {
    /// A put-off lease lapses: its tokens are the pool's again.
    fn lapse(&mut self) {
        self.tokens = 0.0;
        let c = &mut self.cluster;
        c.leased = false;
        c.share = 0.0;
        c.due_round = 0;
    }
}

impl ClusterPart {
    fn share_or(&self, instances: u64) -> f64 {
        if self.share > 0.0 {
            f64::from(self.share)
        } else {
            1.0 / instances.max(1) as f64
        }
    }

    /// The pool as last settled, refilled at the tier's rate since (the pool
    /// refills in Redis whether or not anyone syncs).
    fn pool_estimate(&self, params: Bucket, now_ns: u64) -> f64 {
        let elapsed_s = now_ns.saturating_sub(self.pool_at_ns) as f64 / 1e9;
        (f64::from(self.pool) + elapsed_s * params.rate).clamp(0.0, params.burst)
    }
}

fn evict(table: &mut HashTable<TokenState>, now_ns: u64, max: usize) {
    // A listed or put-off bucket owes the cluster its report.
    let owes = |b: &TokenState| b.cluster.listed || b.cluster.due_round != 0;
    table.retain(|b| b.full_at_ns > now_ns || owes(b));
    // Still full of active keys: a flood. Forget an eighth (they restart full),
    // those that owe nothing first: what a forgotten bucket owes is lost.
    for spare_owing in [true, false] {
        if table.len() < max {
            return;
        }
        let mut dropped = 0;
        table.retain(|b| {
            if spare_owing && owes(b) || dropped > max / 8 {
                return true;
            }
            dropped += 1;
            false
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
    const THREE: Supply = Supply::Leased {
        instances: 3,
        first_s: 0.2,
    };

    fn consumer(name: &str) -> LimitKey {
        LimitKey::Consumer(Arc::from(name))
    }

    fn admitted(limiter: &LocalLimiter, key: &LimitKey, n: usize, now_ns: u64, supply: Supply) -> usize {
        (0..n)
            .filter(|_| limiter.take(key, FREE, 1.0, now_ns, supply).allowed)
            .count()
    }

    #[test]
    fn burst_then_refusal_then_refill_at_the_rate() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        for i in 0..10 {
            let d = limiter.take(&key, FREE, 1.0, 0, Supply::Alone);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 9 - i);
        }
        let refused = limiter.take(&key, FREE, 1.0, 0, Supply::Alone);
        assert!(!refused.allowed);
        assert_eq!((refused.retry_after_s, refused.full_in_s), (1, 10));
        // Half a second later: still half a token short.
        assert!(!limiter.take(&key, FREE, 1.0, S / 2, Supply::Alone).allowed);
        assert!(limiter.take(&key, FREE, 1.0, S, Supply::Alone).allowed);
        assert!(!limiter.take(&key, FREE, 1.0, S, Supply::Alone).allowed);
        // A long idle time refills to the burst, never beyond.
        let d = limiter.take(&key, FREE, 1.0, 1000 * S, Supply::Alone);
        assert_eq!(d.remaining, 9);
        assert!(
            limiter.take_reports(10).is_empty(),
            "nothing to report without Redis"
        );
    }

    #[test]
    fn cost_and_retry_after_count_the_missing_tokens() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        assert!(limiter.take(&key, FREE, 8.0, 0, Supply::Alone).allowed);
        let d = limiter.take(&key, FREE, 5.0, 0, Supply::Alone);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_s, 3, "2 tokens left, 5 needed at 1/s");
        assert_eq!(d.remaining, 2, "a refused request takes nothing");
    }

    #[test]
    fn consumers_are_independent() {
        let limiter = LocalLimiter::new(1000);
        assert_eq!(admitted(&limiter, &consumer("a"), 11, 0, Supply::Alone), 10);
        assert!(limiter.take(&consumer("b"), FREE, 1.0, 0, Supply::Alone).allowed);
        let ip = LimitKey::Ip([10, 0, 0, 1].into());
        assert!(limiter.take(&ip, FREE, 1.0, 0, Supply::Alone).allowed);
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
                        .filter(|_| {
                            limiter
                                .take(&consumer("hot"), params, 1.0, 0, Supply::Alone)
                                .allowed
                        })
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
            limiter.take(&LimitKey::Ip(ip), FREE, 1.0, u64::from(i), Supply::Alone);
        }
        assert!(limiter.len() <= 64 * 100, "{} buckets", limiter.len());
    }

    #[test]
    fn full_buckets_are_forgotten_before_active_ones() {
        let limiter = LocalLimiter::new(0); // 16 per shard
        for i in 0..10_000u32 {
            let ip = LimitKey::Ip(IpAddr::from(i.to_be_bytes()));
            limiter.take(&ip, FREE, 1.0, 0, Supply::Alone);
        }
        // 50 s later every one-off bucket is full again: room is made from those,
        // and a consumer that emptied its slow bucket keeps it.
        let slow = Bucket {
            rate: 0.001,
            burst: 10.0,
        };
        let busy = consumer("busy");
        for _ in 0..10 {
            assert!(limiter.take(&busy, slow, 1.0, 50 * S, Supply::Alone).allowed);
        }
        assert!(limiter.len() < 10_000);
        assert!(
            !limiter.take(&busy, slow, 1.0, 60 * S, Supply::Alone).allowed,
            "the busy bucket was forgotten"
        );
    }

    #[test]
    fn a_key_new_to_a_synced_instance_starts_on_a_small_advance() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        assert_eq!(
            admitted(&limiter, &key, 10, 0, THREE),
            1,
            "0.2 s of 1/s, at least one"
        );
        let fast = Bucket {
            rate: 100.0,
            burst: 30.0,
        };
        let other = consumer("b");
        let n = (0..50)
            .filter(|_| limiter.take(&other, fast, 1.0, 0, THREE).allowed)
            .count();
        assert_eq!(n, 10, "20 tokens of rate, capped at 30 ÷ 3 instances");
        // No refill here between syncs, however long: the pool refills in Redis.
        assert_eq!(admitted(&limiter, &key, 10, 5 * S, THREE), 0);
        let reports = limiter.take_reports(100);
        let mine = reports.iter().find(|r| r.key == key).expect("reported");
        assert_eq!(
            *mine,
            Report {
                key: key.clone(),
                bucket: FREE,
                used: 1.0,
                asked: 20.0,
                need: 1.0,
                rounds: 1,
            }
        );
        assert!(limiter.take_reports(100).is_empty(), "listed once per report");
    }

    #[test]
    fn a_lease_replaces_the_tokens_and_spending_after_the_report_counts_against_it() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        admitted(&limiter, &key, 3, 0, THREE);
        limiter.take_reports(100);
        // Spent between the report and its answer: charged to the new lease.
        assert_eq!(admitted(&limiter, &key, 1, 0, THREE), 0, "the advance is spent");
        let lease = Lease {
            tokens: 6.0,
            share: 1.0,
            pool: 1.0,
            rounds: 1,
        };
        limiter.settle(&key, lease, 1.0, S, u64::MAX);
        assert_eq!(admitted(&limiter, &key, 10, S, THREE), 6);
        let next = limiter.take_reports(100);
        assert_eq!((next[0].used, next[0].asked), (6.0, 11.0));
    }

    #[test]
    fn an_idle_key_is_released_and_its_next_request_advances_on_the_refilled_pool() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        admitted(&limiter, &key, 3, 0, THREE);
        limiter.take_reports(100);
        let held = Lease {
            tokens: 4.0,
            share: 1.0,
            pool: 0.0,
            rounds: 1,
        };
        limiter.settle(&key, held, 1.0, 0, u64::MAX);
        assert_eq!(
            limiter.take_reports(100).len(),
            1,
            "a lease is settled even when idle"
        );
        let released = Lease {
            tokens: 0.0,
            share: 0.0,
            pool: 3.0,
            rounds: 1,
        };
        limiter.settle(&key, released, 1.0, S, u64::MAX);
        assert!(
            limiter.take_reports(100).is_empty(),
            "released: nothing to report"
        );
        // 3 s later the pool holds about 3 + 3 = 6: an advance of a third of it.
        assert_eq!(admitted(&limiter, &key, 10, 4 * S, THREE), 2);
        assert_eq!(limiter.take_reports(100)[0].used, 2.0);
    }

    #[test]
    fn a_failed_report_keeps_its_counts_for_the_next() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        admitted(&limiter, &key, 5, 0, THREE);
        let reports = limiter.take_reports(100);
        limiter.restore(reports[0].clone());
        admitted(&limiter, &key, 1, 0, THREE);
        let again = limiter.take_reports(100);
        assert_eq!((again[0].used, again[0].asked), (1.0, 6.0));
    }

    #[test]
    fn reports_are_bounded_per_round_and_the_rest_wait() {
        let limiter = LocalLimiter::new(100_000);
        for i in 0..1000u32 {
            let ip = LimitKey::Ip(IpAddr::from(i.to_be_bytes()));
            limiter.take(&ip, FREE, 1.0, 0, THREE);
        }
        assert_eq!(limiter.take_reports(300).len(), 300);
        assert_eq!(limiter.waiting(), 700);
        assert_eq!(limiter.take_reports(10_000).len(), 700);
    }

    #[test]
    fn a_backlog_drains_from_every_shard_in_turn() {
        let limiter = LocalLimiter::new(1 << 20);
        for i in 0..10_000u32 {
            let ip = LimitKey::Ip(IpAddr::from(i.to_be_bytes()));
            limiter.take(&ip, FREE, 1.0, 0, THREE);
        }
        // Rounds of 100 never reach past the first shard if each starts at shard 0.
        let mut reported = std::collections::HashSet::new();
        for _ in 0..64 {
            for r in limiter.take_reports(100) {
                reported.insert(r.key);
            }
        }
        assert!(
            reported.len() >= 64 * 100 - 100,
            "{} keys reported",
            reported.len()
        );
    }

    #[test]
    fn a_give_back_lowers_what_the_next_report_says_was_used() {
        let limiter = LocalLimiter::new(1024);
        let key = consumer("alice");
        let bucket = Bucket {
            rate: 1.0,
            burst: 10.0,
        };
        let leased = Supply::Leased {
            instances: 1,
            first_s: 10.0,
        };
        assert!(limiter.take(&key, bucket, 3.0, 0, leased).allowed);
        limiter.give_back(&key, 1.0);
        let report = limiter.take_reports(10).pop().expect("report");
        assert_eq!((report.used, report.asked), (2.0, 2.0));
        // Given back after its take was reported: the next report returns it to the pool.
        let lease = Lease {
            tokens: 5.0,
            share: 1.0,
            pool: 5.0,
            rounds: 1,
        };
        limiter.settle(&key, lease, 1.0, 0, u64::MAX);
        assert!(limiter.take(&key, bucket, 1.0, 0, leased).allowed);
        limiter.take_reports(10);
        limiter.settle(&key, lease, 1.0, 0, u64::MAX);
        limiter.give_back(&key, 1.0);
        let report = limiter.take_reports(10).pop().expect("report");
        assert_eq!(report.used, -1.0);
    }

    #[test]
    fn a_refused_cost_is_reported_as_the_need() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        assert!(
            !limiter.take(&key, FREE, 5.0, 0, THREE).allowed,
            "an advance of 1 token"
        );
        let report = &limiter.take_reports(10)[0];
        assert_eq!((report.used, report.asked, report.need), (0.0, 5.0, 5.0));
    }

    /// A lease granted for `rounds` rounds.
    fn lease_for(tokens: f64, rounds: u32) -> Lease {
        Lease {
            tokens,
            share: 1.0,
            pool: 0.0,
            rounds,
        }
    }

    #[test]
    fn a_key_whose_lease_covers_its_demand_reports_when_due_with_every_round_since() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("quiet");
        admitted(&limiter, &key, 1, 0, THREE);
        limiter.take_reports(100);
        limiter.settle(&key, lease_for(8.0, 4), 1.0, 0, u64::MAX);
        // Rounds 2 and 3: a request each, well within the lease: nothing reported.
        for _ in 0..2 {
            assert_eq!(admitted(&limiter, &key, 1, 0, THREE), 1);
            assert!(limiter.take_reports(100).is_empty());
        }
        assert!(limiter.take_reports(100).is_empty(), "round 4: idle");
        let due = limiter.take_reports(100);
        assert_eq!(due.len(), 1, "round 5: due");
        assert_eq!((due[0].used, due[0].asked, due[0].rounds), (2.0, 2.0, 4));
        assert_eq!(due[0].asked_per_round(), 0.5);
    }

    #[test]
    fn a_key_idle_since_its_report_lets_its_lease_lapse_without_one() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("gone quiet");
        admitted(&limiter, &key, 1, 0, THREE);
        limiter.take_reports(100);
        limiter.settle(&key, lease_for(8.0, 3), 1.0, 0, u64::MAX);
        for round in 2..=6 {
            assert!(limiter.take_reports(100).is_empty(), "round {round}");
        }
        assert_eq!(limiter.view(&key).map(|v| v.tokens), Some(0.0), "lapsed");
        // Its next request starts on an advance, reported the next round.
        assert_eq!(admitted(&limiter, &key, 1, 4 * S, THREE), 1);
        assert_eq!(limiter.take_reports(100).len(), 1);
    }

    #[test]
    fn a_key_put_off_past_the_time_redis_counts_its_lease_lapses_however_few_rounds_ran() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("slow rounds");
        admitted(&limiter, &key, 1, 0, THREE);
        limiter.take_reports(100);
        // Granted for 10 rounds; Redis counts it for 2 s.
        limiter.settle(&key, lease_for(8.0, 10), 0.5, 0, 2 * S);
        assert_eq!(
            admitted(&limiter, &key, 1, S, THREE),
            1,
            "within: spent from the lease"
        );
        assert!(limiter.take_reports(100).is_empty());
        // Round 3 only, but 2 s on: the 7 tokens left are the pool's again; the
        // request starts on an advance (a third of the pool's 0 + 3 s of refill)
        // and the key is reported next round.
        assert_eq!(admitted(&limiter, &key, 2, 3 * S, THREE), 1);
        assert_eq!(limiter.take_reports(100).len(), 1);
    }

    #[test]
    fn a_key_put_off_reports_at_once_when_its_lease_runs_low_or_refuses() {
        let limiter = LocalLimiter::new(1000);
        let low = consumer("low");
        let refused = consumer("refused");
        for key in [&low, &refused] {
            admitted(&limiter, key, 1, 0, THREE);
        }
        limiter.take_reports(100);
        limiter.settle(&low, lease_for(8.0, 10), 0.5, 0, u64::MAX);
        limiter.settle(&refused, lease_for(8.0, 10), 0.5, 0, u64::MAX);
        assert_eq!(admitted(&limiter, &low, 3, 0, THREE), 3);
        assert!(
            limiter.take_reports(100).is_empty(),
            "5 left: 0.5 a round until round 11"
        );
        assert_eq!(admitted(&limiter, &low, 2, 0, THREE), 2);
        let costly = limiter.take(&refused, FREE, 9.0, 0, THREE);
        assert!(!costly.allowed);
        let mut reported: Vec<_> = limiter.take_reports(100).into_iter().map(|r| r.key).collect();
        reported.sort_by_key(|k| k.to_string());
        assert_eq!(reported, vec![low, refused], "3 left for 4.5, and a refusal");
    }

    #[test]
    fn a_key_rescheduled_early_comes_back_only_at_its_new_round() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        admitted(&limiter, &key, 1, 0, THREE);
        limiter.take_reports(100); // round 1
        limiter.settle(&key, lease_for(8.0, 3), 1.0, 0, u64::MAX); // due in round 4
        assert_eq!(admitted(&limiter, &key, 6, 0, THREE), 6, "runs low");
        assert_eq!(limiter.take_reports(100).len(), 1, "round 2: early");
        limiter.settle(&key, lease_for(8.0, 5), 1.0, 0, u64::MAX); // due in round 7
        assert_eq!(admitted(&limiter, &key, 1, 0, THREE), 1);
        let reported_in: Vec<usize> = (3..=8)
            .filter(|_| !limiter.take_reports(100).is_empty())
            .collect();
        assert_eq!(reported_in, vec![7], "the first schedule's round 4 is stale");
    }

    #[test]
    fn a_key_put_off_is_never_forgotten_to_make_room() {
        let limiter = LocalLimiter::new(0); // 16 per shard
        let key = consumer("quiet");
        admitted(&limiter, &key, 1, 0, THREE);
        limiter.take_reports(100);
        limiter.settle(&key, lease_for(8.0, 10), 0.5, 0, u64::MAX);
        assert_eq!(admitted(&limiter, &key, 1, 0, THREE), 1);
        // Much later, a flood of full one-off buckets: room comes from those.
        for i in 0..2_000u32 {
            let ip = LimitKey::Ip(IpAddr::from(i.to_be_bytes()));
            limiter.take(&ip, FREE, 1.0, 100 * S, Supply::Alone);
        }
        for _ in 0..9 {
            limiter.take_reports(0);
        }
        let due = limiter.take_reports(100);
        assert!(due.iter().any(|r| r.key == key), "its report still comes");
    }

    #[test]
    fn an_outage_refills_at_the_last_share_and_records_for_later() {
        let limiter = LocalLimiter::new(1000);
        let key = consumer("a");
        admitted(&limiter, &key, 1, 0, THREE);
        limiter.take_reports(100);
        let half = Lease {
            tokens: 0.0,
            share: 0.5,
            pool: 0.0,
            rounds: 1,
        };
        limiter.settle(&key, half, 1.0, 0, u64::MAX);
        let outage = Supply::LocalShare { instances: 3 };
        // 4 s at half the rate: 2 tokens; the bucket holds at most half the burst.
        assert_eq!(admitted(&limiter, &key, 10, 4 * S, outage), 2);
        assert_eq!(admitted(&limiter, &key, 10, 100 * S, outage), 5);
        // Never seen: a third of the tier.
        assert_eq!(admitted(&limiter, &consumer("b"), 10, 0, outage), 3);
        let used: f64 = limiter.take_reports(100).iter().map(|r| r.used).sum();
        assert_eq!(
            used, 10.0,
            "what the outage admitted is pushed when Redis returns"
        );
    }
}
