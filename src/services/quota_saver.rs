//! Without Redis, quota counts outlive a restart in the state file: saved every
//! few seconds when they changed, and once more at shutdown. A crash loses at most
//! the counts of the last interval.

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
