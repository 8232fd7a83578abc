//! The sync's work for quotas: what this instance counted since the last round,
//! per consumer, route and period, goes to Redis (INCRBY, by zero for a key asked
//! for lately with nothing new; expiring a day after the period ends) and the
//! cluster's total comes back with it. A key's commands keep
//! to its own slot.

use super::round::{Batch, Queued, Replies};
use super::RedisSync;
use crate::ratelimit::quota::Push;

/// Keys per pipeline on a single server; one per pipeline in a cluster.
const KEYS_PER_PIPELINE: usize = 256;

/// A round's pushes, as they were split into pipelines, and where those sit.
pub(super) struct QuotaRound {
    queued: Queued,
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
        QuotaRound {
            queued: batch.queue(pipes),
            pushes,
            per_pipeline,
        }
    }

    /// Installs the totals of the pipelines that ran; pushes of a failed one go back.
    pub(super) fn quotas_install(&self, replies: &mut Replies, round: QuotaRound) {
        let mut results = replies.take(round.queued);
        let mut pushes = round.pushes.into_iter();
        loop {
            let chunk: Vec<Push> = pushes.by_ref().take(round.per_pipeline).collect();
            if chunk.is_empty() {
                return;
            }
            match results.next() {
                Some(Ok(totals)) => {
                    for (push, total) in chunk.iter().zip(totals.iter()) {
                        let total = redis::from_redis_value_ref::<u64>(total).unwrap_or(0);
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
