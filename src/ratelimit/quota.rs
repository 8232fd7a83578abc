//! Quotas: requests per consumer and route per calendar day or month (UTC),
//! decided in memory and, with Redis, counted across the cluster by the background
//! sync: every round, one INCRBY for each key touched in the last minute (by zero
//! when nothing new was admitted here), which also reads the cluster's total back.
//! Between rounds an instance does not see what the others admitted: the
//! over-admission is at most what they admit in one sync period.

use crate::config::Quota;
use crate::vocab::ids::{Id, RouteId, TierId};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;
/// Keys counted at most; past it the least recently asked are forgotten first.
const MAX_KEYS: usize = 1 << 20;
/// A key touched this recently has its cluster total read back every round.
const REFRESH_S: u64 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaDecision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the period ends (and the quota is whole again).
    pub reset_s: u64,
    pub period_s: u64,
    /// The period the request counted in, for a give-back.
    pub period: u64,
}

#[derive(Default, Clone, Copy)]
struct Count {
    period: u64,
    /// Admitted here this period.
    mine: u64,
    /// Of `mine`, not yet pushed to Redis.
    unpushed: u64,
    /// The cluster's total as of the last sync, and what of it was ours.
    cluster: u64,
    pushed: u64,
    listed: bool,
    /// Unix seconds of the last request that asked.
    touched_s: u64,
}

/// Forgets keys untouched for over a month (they hold no current period of either
/// kind), else the least recently asked one that is not waiting for a sync.
fn make_room(counts: &mut HashMap<(RouteId, Arc<str>), Count>, unix_s: u64) {
    counts.retain(|_, c| c.listed || unix_s.saturating_sub(c.touched_s) < 32 * 86_400);
    if counts.len() < MAX_KEYS / SHARDS {
        return;
    }
    let oldest = counts
        .iter()
        .filter(|(_, c)| !c.listed)
        .min_by_key(|(_, c)| c.touched_s)
        .map(|(k, _)| k.clone());
    if let Some(oldest) = oldest {
        counts.remove(&oldest);
    }
}

/// One key's counts to push: (route, consumer, period, delta).
pub type Push = (RouteId, Arc<str>, u64, u64);

pub struct QuotaCounter {
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
}

#[derive(Default)]
struct Shard {
    counts: HashMap<(RouteId, Arc<str>), Count>,
    listed: Vec<(RouteId, Arc<str>)>,
}

impl Default for QuotaCounter {
    fn default() -> Self {
        QuotaCounter {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl QuotaCounter {
    fn shard(&self, route: RouteId, consumer: &str) -> std::sync::MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one((route, consumer)) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `cost` against the quota if it fits.
    pub fn take(
        &self,
        route: RouteId,
        consumer: &Arc<str>,
        quota: &Quota,
        tier: TierId,
        cost: u64,
        unix_s: u64,
    ) -> Option<QuotaDecision> {
        let limit = (*tier.of(&quota.by_tier)?)?;
        let period = quota.per.index(unix_s);
        let end = quota.per.end_s(period);
        let mut shard = self.shard(route, consumer);
        let Shard { counts, listed } = &mut *shard;
        let key = (route, consumer.clone());
        // Room is made only for a new key, so a full shard costs a scan per new key,
        // never per request.
        if counts.len() >= MAX_KEYS / SHARDS && !counts.contains_key(&key) {
            make_room(counts, unix_s);
        }
        let count = counts.entry(key).or_default();
        if count.period != period {
            *count = Count {
                period,
                listed: count.listed,
                ..Count::default()
            };
        }
        let used = count.cluster.saturating_sub(count.pushed) + count.mine;
        let allowed = used + cost <= limit;
        if allowed {
            count.mine += cost;
            count.unpushed += cost;
        }
        // Refused or not, the key's total is read back while it is being asked for.
        count.touched_s = unix_s;
        if !count.listed {
            count.listed = true;
            listed.push((route, consumer.clone()));
        }
        let used = used + if allowed { cost } else { 0 };
        Some(QuotaDecision {
            allowed,
            limit,
            remaining: limit.saturating_sub(used),
            reset_s: end.saturating_sub(unix_s).max(1),
            period_s: end.saturating_sub(quota.per.end_s(period.saturating_sub(1))),
            period,
        })
    }

    /// Un-counts an admission the gateway refused after all, within its period and
    /// before it is pushed for a sync (once pushed, it stays counted).
    pub fn give_back(&self, route: RouteId, consumer: &Arc<str>, period: u64, cost: u64) {
        let mut shard = self.shard(route, consumer);
        if let Some(c) = shard
            .counts
            .get_mut(&(route, consumer.clone()))
            .filter(|c| c.period == period && c.unpushed >= cost)
        {
            c.mine -= cost;
            c.unpushed -= cost;
        }
    }

    /// What this instance counted since the last sync, by key and period, for every
    /// key touched in the last `REFRESH_S` (by zero for those with nothing new).
    pub fn take_pushes(&self, now_s: u64) -> Vec<Push> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let Shard { counts, listed } = &mut *shard;
            let mut still = Vec::new();
            for key in listed.drain(..) {
                if let Some(c) = counts.get_mut(&key) {
                    let delta = std::mem::take(&mut c.unpushed);
                    out.push((key.0, key.1.clone(), c.period, delta));
                    if now_s.saturating_sub(c.touched_s) < REFRESH_S {
                        still.push(key);
                    } else {
                        c.listed = false;
                    }
                }
            }
            *listed = still;
        }
        out
    }

    /// A push that did not reach Redis goes back (unless its period is over).
    pub fn restore(&self, (route, consumer, period, delta): Push) {
        let mut shard = self.shard(route, &consumer);
        let Shard { counts, listed } = &mut *shard;
        if let Some(c) = counts
            .get_mut(&(route, consumer.clone()))
            .filter(|c| c.period == period)
        {
            c.unpushed += delta;
            if !c.listed {
                c.listed = true;
                listed.push((route, consumer));
            }
        }
    }

    /// A push Redis took: its total for the period, this instance's part included.
    pub fn install(&self, (route, consumer, period, delta): &Push, total: u64) {
        let mut shard = self.shard(*route, consumer);
        if let Some(c) = shard
            .counts
            .get_mut(&(*route, consumer.clone()))
            .filter(|c| c.period == *period)
        {
            c.pushed += delta;
            c.cluster = total;
        }
    }

    /// Every count of the current period (`now_s`) that is not zero: for a state file.
    pub fn snapshot(&self, period_of: impl Fn(RouteId) -> Option<u64>) -> Vec<(RouteId, Arc<str>, u64, u64)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for ((route, consumer), c) in &shard.counts {
                let used = c.cluster.saturating_sub(c.pushed) + c.mine;
                if used > 0 && period_of(*route) == Some(c.period) {
                    out.push((*route, consumer.clone(), c.period, used));
                }
            }
        }
        out
    }

    /// A count kept from before a restart, as if admitted here.
    pub fn seed(&self, route: RouteId, consumer: Arc<str>, period: u64, used: u64) {
        let mut shard = self.shard(route, &consumer);
        shard.counts.insert(
            (route, consumer),
            Count {
                period,
                mine: used,
                ..Count::default()
            },
        );
    }

    /// Used this period as this instance knows it.
    pub fn used(&self, route: RouteId, consumer: &Arc<str>, period: u64) -> Option<u64> {
        let shard = self.shard(route, consumer);
        let c = shard.counts.get(&(route, consumer.clone()))?;
        (c.period == period).then(|| c.cluster.saturating_sub(c.pushed) + c.mine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Period;

    #[test]
    fn a_quota_admits_its_limit_per_period_and_starts_again_in_the_next() {
        let q = QuotaCounter::default();
        let quota = Quota {
            per: Period::Day,
            by_tier: vec![Some(3), None],
        };
        let alice: Arc<str> = Arc::from("alice");
        let day = 1_795_435_200;
        let admitted = (0..5)
            .filter(|_| {
                q.take(RouteId(0), &alice, &quota, TierId(0), 1, day)
                    .expect("quota")
                    .allowed
            })
            .count();
        assert_eq!(admitted, 3);
        let refused = q
            .take(RouteId(0), &alice, &quota, TierId(0), 1, day)
            .expect("quota");
        assert_eq!((refused.remaining, refused.reset_s), (0, 43_200));
        assert!(
            q.take(RouteId(0), &alice, &quota, TierId(1), 1, day).is_none(),
            "no quota for tier 1"
        );
        assert!(
            q.take(RouteId(0), &alice, &quota, TierId(0), 1, day + 43_200)
                .expect("quota")
                .allowed,
            "next day"
        );
    }

    #[test]
    fn the_clusters_count_is_included_and_failed_pushes_return() {
        let q = QuotaCounter::default();
        let quota = Quota {
            per: Period::Day,
            by_tier: vec![Some(10)],
        };
        let bob: Arc<str> = Arc::from("bob");
        let t = 1_795_435_200;
        q.take(RouteId(0), &bob, &quota, TierId(0), 2, t);
        let pushes = q.take_pushes(t);
        assert_eq!(pushes.len(), 1);
        assert_eq!(pushes[0].3, 2);
        // Redis says 9 in all: 7 from elsewhere. One more fits.
        q.install(&pushes[0], 9);
        assert!(
            q.take(RouteId(0), &bob, &quota, TierId(0), 1, t)
                .expect("q")
                .allowed
        );
        assert!(
            !q.take(RouteId(0), &bob, &quota, TierId(0), 1, t)
                .expect("q")
                .allowed
        );
        let again = q.take_pushes(t);
        q.restore(again[0].clone());
        assert_eq!(q.take_pushes(t)[0].3, 1, "kept for the next round");
    }
}
