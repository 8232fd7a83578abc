//! The sync's work for quotas: what this instance counted since the last round,
//! per consumer, route and period, goes to Redis (INCRBY, by zero for a key asked
//! for lately with nothing new; expiring a day after the period ends) and the
//! cluster's total comes back with it. A key's commands keep
//! to its own slot.

use super::round::{Batch, Queued, Replies};
use super::RedisSync;
use crate::ratelimit::quota::Push;
use crate::services::region_sync::{region_counters_key, world_counts, world_key};

/// Keys per pipeline on a single server; one per pipeline in a cluster.
const KEYS_PER_PIPELINE: usize = 256;

/// A round's pushes, as they were split into pipelines, and where those sit.
pub(super) struct QuotaRound {
    queued: Queued,
    /// With regions: the other regions' counts of each chunk's keys, and the
    /// pipeline naming the keys for the region sync.
    worldwide: Option<(Queued, Queued)>,
    pub(super) pushes: Vec<Push>,
    per_pipeline: usize,
}

impl RedisSync {
    fn quota_key(&self, push: &Push) -> Option<String> {
        let (route, consumer, period, _) = push;
        let (name, quota) = self.limiter.quota(*route)?;
        Some(format!(
            "{}:q:{}:{}:{}:{}",
            self.key_prefix,
            name,
            quota.per.as_str(),
            period,
            consumer
        ))
    }

    pub(super) fn quotas_round(&self, cluster: bool, batch: &mut Batch) -> QuotaRound {
        let pushes: Vec<Push> = self
            .limiter
            .quota_counts
            .take_pushes(crate::vocab::clock::unix_now().as_secs())
            .into_iter()
            .filter(|p| self.quota_key(p).is_some())
            .collect();
        let per_pipeline = if cluster { 1 } else { KEYS_PER_PIPELINE };
        let pipes: Vec<_> = pushes
            .chunks(per_pipeline)
            .map(|chunk| {
                let mut pipe = redis::pipe();
                for push in chunk {
                    let Some(key) = self.quota_key(push) else { continue };
                    let expire_at_s = self
                        .limiter
                        .quota(push.0)
                        .map_or(0, |(_, q)| q.per.end_s(push.2) + 86_400);
                    pipe.incr(&key, push.3)
                        .expire_at(&key, expire_at_s as i64)
                        .ignore();
                }
                pipe
            })
            .collect();
        let queued = batch.queue(pipes);
        // Quotas count worldwide: the region sync brings the other regions' counts
        // of the keys named here (a key of its own slot in a cluster, hence apart).
        let worldwide = self.region.as_ref().map(|_| {
            let keys: Vec<String> = pushes.iter().filter_map(|p| self.quota_key(p)).collect();
            let others = keys.chunks(per_pipeline).map(|chunk| {
                let mut pipe = redis::pipe();
                for key in chunk {
                    pipe.hgetall(world_key(key));
                }
                pipe
            });
            let others = batch.queue(others.collect::<Vec<_>>());
            let mut name = redis::pipe();
            if !keys.is_empty() {
                name.sadd(region_counters_key(&self.key_prefix), &keys).ignore();
            }
            (others, batch.queue([name]))
        });
        QuotaRound {
            queued,
            worldwide,
            pushes,
            per_pipeline,
        }
    }

    /// Installs the totals of the pipelines that ran; pushes of a failed one go back.
    pub(super) fn quotas_install(&self, replies: &mut Replies, round: QuotaRound) {
        let elsewhere: Vec<u64> = match round.worldwide {
            Some((others, name)) => {
                replies.take(name).for_each(drop);
                let me = self.region.as_ref().map_or("", |r| r.name.as_str());
                let sizes = round.pushes.chunks(round.per_pipeline).map(<[Push]>::len);
                // A chunk whose read failed counts nothing elsewhere this round.
                replies
                    .take(others)
                    .zip(sizes)
                    .flat_map(|(r, size)| {
                        let counts = r.unwrap_or_default();
                        (0..size).map(move |i| world_counts(counts.get(i), me).0)
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let mut elsewhere = elsewhere.into_iter();
        let mut results = replies.take(round.queued);
        let mut pushes = round.pushes.into_iter();
        loop {
            let chunk: Vec<Push> = pushes.by_ref().take(round.per_pipeline).collect();
            if chunk.is_empty() {
                return;
            }
            // Taken whatever the chunk's fate, so that the next chunk gets its own.
            let theirs: Vec<u64> = elsewhere.by_ref().take(chunk.len()).collect();
            match results.next() {
                Some(Ok(totals)) => {
                    for (i, (push, total)) in chunk.iter().zip(totals.iter()).enumerate() {
                        let total = redis::from_redis_value_ref::<u64>(total).unwrap_or(0);
                        let total = total + theirs.get(i).copied().unwrap_or(0);
                        self.limiter.quota_counts.install(push, total);
                    }
                }
                _ => chunk
                    .into_iter()
                    .for_each(|p| self.limiter.quota_counts.restore(p)),
            }
        }
    }

    pub(super) fn quotas_give_back(&self, round: QuotaRound) {
        for push in round.pushes {
            self.limiter.quota_counts.restore(push);
        }
    }
}
