//! Without Redis, quota counts outlive a restart in the state file: restored at
//! start-up, saved every few seconds when they changed, and once more at shutdown.
//! A crash loses at most the counts of the last interval.

use crate::consumers::stored::{Change, StoredQuota};
use crate::ratelimit::RateLimiter;
use crate::services::state_file::StateFileWriter;
use crate::vocab::clock::unix_now;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Counts the state file kept, back in the limiter. They are matched by route
/// name and period: only this period's counts matter, and a quota renamed or
/// changed drops them.
pub fn restore(limiter: &RateLimiter, saved: &[StoredQuota], now_s: u64) {
    for q in saved {
        let found = limiter.quotas().find(|(_, (name, quota))| {
            name.as_ref() == q.route.as_str()
                && quota.per.as_str() == q.per
                && quota.per.index(now_s) == q.period
        });
        if let Some((route, _)) = found {
            limiter
                .quota_counts
                .seed(route, Arc::from(q.consumer.as_str()), q.period, q.used);
        }
    }
}

pub struct QuotaSaver {
    pub limiter: Arc<RateLimiter>,
    pub file: Arc<StateFileWriter>,
}

impl QuotaSaver {
    fn counts(&self) -> Vec<StoredQuota> {
        let now_s = unix_now().as_secs();
        let mut counts: Vec<StoredQuota> = self
            .limiter
            .quota_counts
            .snapshot(|route| Some(self.limiter.quota(route)?.1.per.index(now_s)))
            .into_iter()
            .filter_map(|(route, consumer, period, used)| {
                let (name, quota) = self.limiter.quota(route)?;
                Some(StoredQuota {
                    route: name.to_string(),
                    consumer: consumer.to_string(),
                    per: quota.per.as_str().to_string(),
                    period,
                    used,
                })
            })
            .collect();
        counts.sort_by(|a, b| (&a.route, &a.consumer).cmp(&(&b.route, &b.consumer)));
        counts
    }

    fn save(&self, last: &mut Vec<StoredQuota>) {
        let counts = self.counts();
        if counts != *last {
            match self.file.save(&Change::Quotas(counts.clone())) {
                Ok(()) => *last = counts,
                Err(e) => log::warn!("quota counts not saved: {e}"),
            }
        }
    }
}

#[async_trait]
impl BackgroundService for QuotaSaver {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last = Vec::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    self.save(&mut last);
                    return;
                }
                _ = tokio::time::sleep(SAVE_EVERY) => self.save(&mut last),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Bucket, Period, Quota, Tier};
    use crate::ratelimit::route_state::RouteState;
    use crate::vocab::ids::RouteId;

    #[test]
    fn only_this_periods_counts_of_a_quota_still_there_come_back() {
        let tier = Tier {
            name: "free".into(),
            bucket: Bucket {
                rate: 1.0,
                burst: 1.0,
            },
        };
        let daily = |name: &str| RouteState {
            name: Arc::from(name),
            tier_buckets: None,
            global: None,
            quota: Some(Quota {
                per: Period::Day,
                by_tier: vec![Some(10)],
            }),
        };
        let limiter = RateLimiter::new(vec![tier], None, vec![daily("a"), daily("b")].into(), None);
        let now_s = 1_795_435_200;
        let today = Period::Day.index(now_s);
        let saved = |route: &str, per: &str, period: u64| StoredQuota {
            route: route.into(),
            consumer: "alice".into(),
            per: per.into(),
            period,
            used: 3,
        };
        restore(
            &limiter,
            &[
                saved("b", "day", today),
                saved("a", "day", today - 1),
                saved("a", "month", today),
                saved("gone", "day", today),
            ],
            now_s,
        );
        let alice: Arc<str> = Arc::from("alice");
        assert_eq!(
            limiter.quota_counts.used(RouteId(1), &alice, today),
            Some(3),
            "by name"
        );
        assert_eq!(limiter.quota_counts.used(RouteId(0), &alice, today), None);
    }
}
