//! Several regions (`redis.region`): each region runs its own fleet and Redis, and
//! once a region sync interval one instance of the region, the holder of a lease
//! in the region's Redis, exchanges with every other region's Redis: the budgets
//! of the keys the region's instances named (shared with another region, or
//! asking more than the region's share of their tier, or refused: budgets.rs) and
//! the runtime consumers' changes made there (consumers.rs). Requests never wait
//! on it: it only rewrites what the region's Redis holds, which the instances'
//! own sync reads as before. One holder per region means the cross-region links
//! are regions × (regions − 1), whatever the fleets' sizes.

mod budgets;
mod consumers;
mod counters;
mod peer;

pub use counters::{region_counters_key, world_counts, world_key};

use crate::config::{OnPartition, Region};
use crate::services::redis_sync::Backend;
use crate::telemetry::RegionMetrics;
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use peer::PeerRegion;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use redis::{RedisResult, Script};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

const REGION_SOURCE: &str = include_str!("region.lua");
static REGION_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REGION_SOURCE));

/// Takes or renews the region's lease: held by whoever set it last, until it lapses.
const HOLD_SOURCE: &str = "local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

pub struct RegionSync {
    name: String,
    interval: Duration,
    on_partition: OnPartition,
    key_prefix: String,
    instance_id: String,
    /// `redis.consumers_log_entries`, the retention of the changes applied here.
    consumers_log_entries: usize,
    /// The region's own Redis, the connection the instance's sync keeps.
    local: Arc<ArcSwapOption<Backend>>,
    peers: Vec<PeerRegion>,
    metrics: RegionMetrics,
    /// The region script must be loaded into the region's Redis (again).
    local_script_missing: AtomicBool,
}

impl RegionSync {
    pub fn new(
        region: Region,
        key_prefix: String,
        instance_id: String,
        consumers_log_entries: usize,
        local: Arc<ArcSwapOption<Backend>>,
        metrics: RegionMetrics,
    ) -> Self {
        let peers = region
            .peers
            .into_iter()
            .map(|p| PeerRegion::new(p.name, p.target, &metrics))
            .collect();
        RegionSync {
            name: region.name,
            interval: region.sync_interval,
            on_partition: region.on_partition,
            key_prefix,
            instance_id,
            consumers_log_entries,
            local,
            peers,
            metrics,
            local_script_missing: AtomicBool::new(true),
        }
    }

    /// A peer's answers must come within this, or it counts as cut off for the
    /// round: long enough for a round trip across the world and the peer's work.
    fn peer_timeout(&self) -> Duration {
        self.interval
            .clamp(Duration::from_millis(500), Duration::from_secs(5))
    }

    /// A region not heard of for a key this long no longer shares it (it stopped
    /// exchanging it: idle there), unless it is cut off.
    fn stale(&self) -> Duration {
        self.interval * 5 + self.peer_timeout() * 2
    }

    fn lease_key(&self) -> String {
        format!("{{{}:rg}}:holder", self.key_prefix)
    }

    /// The lease outlives the longest round (a connect, and a step that times out
    /// after each of the round's own steps) and then 3 intervals: a holder that died
    /// hands over within that.
    fn lease_ms(&self) -> u64 {
        (self.interval * 3 + self.peer_timeout() * 6).as_millis() as u64
    }

    /// Takes or renews the lease; when it lapses (a holder that died) another
    /// instance takes over.
    async fn hold(&self, local: &Backend) -> RedisResult<bool> {
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL")
            .arg(HOLD_SOURCE)
            .arg(1)
            .arg(self.lease_key())
            .arg(&self.instance_id)
            .arg(self.lease_ms());
        let reply = tokio::time::timeout(self.peer_timeout(), local.run(vec![pipe]))
            .await
            .map_err(|_| crate::services::redis_sync::timed_out())?
            .pop()
            .unwrap_or(Ok(Vec::new()))?;
        Ok(matches!(reply.first(), Some(redis::Value::Int(1))))
    }

    async fn round(&self, local: &Backend) -> RedisResult<bool> {
        if self.local_script_missing.load(Ordering::Relaxed) {
            tokio::time::timeout(self.peer_timeout(), local.load_script(REGION_SOURCE))
                .await
                .map_err(|_| crate::services::redis_sync::timed_out())??;
            self.local_script_missing.store(false, Ordering::Relaxed);
        }
        // A region cut off costs the round one timeout, not one per step.
        futures::future::join_all(self.peers.iter().map(|p| p.connect(self.peer_timeout()))).await;
        let (budgets, counters, consumers) = futures::join!(
            self.budgets_round(local),
            self.counters_round(local),
            self.consumers_round(local)
        );
        if let Err(e) = &budgets {
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
                self.local_script_missing.store(true, Ordering::Relaxed);
            }
        }
        budgets?;
        counters?;
        consumers?;
        Ok(self.peers.iter().all(PeerRegion::reachable))
    }
}

impl RegionSync {
    /// Up to `most` names the instances put in `set` for this round.
    async fn take_named(&self, local: &Backend, set: &str, most: usize) -> RedisResult<Vec<String>> {
        let mut take = redis::pipe();
        take.cmd("SPOP").arg(set).arg(most);
        let mut reply = tokio::time::timeout(self.peer_timeout(), local.run(vec![take]))
            .await
            .map_err(|_| crate::services::redis_sync::timed_out())?;
        match reply.pop().transpose()?.and_then(|mut r| r.pop()) {
            Some(names) => Ok(redis::from_redis_value(names)?),
            None => Ok(Vec::new()),
        }
    }

    /// Names a failed round took go back for the next (best effort: this Redis is failing).
    async fn name_again(&self, local: &Backend, set: &str, names: &[String]) {
        let mut again = redis::pipe();
        again.sadd(set, names).ignore();
        let _ = tokio::time::timeout(self.peer_timeout(), local.run(vec![again])).await;
    }

    /// One round as the service runs it, for benchmarks: `Ok(false)` when another
    /// instance holds the lease or a region was not reached.
    pub async fn round_once(&self) -> RedisResult<bool> {
        let local = self
            .local
            .load_full()
            .ok_or_else(crate::services::redis_sync::timed_out)?;
        if !self.hold(&local).await? {
            return Ok(false);
        }
        self.round(&local).await
    }
}

#[async_trait]
impl BackgroundService for RegionSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut holding = false;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
            // The instance's own sync connects; until it has, there is nothing to do.
            let Some(local) = self.local.load_full() else {
                continue;
            };
            let held = self.hold(&local).await.unwrap_or(false);
            if held != holding {
                holding = held;
                self.metrics.leaseholder.set(i64::from(held));
                if held {
                    log::info!("region {}: this instance talks to the other regions", self.name);
                } else {
                    // Reachability is the holder's to report.
                    for peer in &self.peers {
                        peer.forget_reachability();
                    }
                }
            }
            if !held {
                continue;
            }
            let started = Instant::now();
            let result = self.round(&local).await;
            self.metrics.duration.observe(started.elapsed().as_secs_f64());
            let outcome = match result {
                Ok(true) => "ok",
                Ok(false) => "partial",
                Err(e) => {
                    log::debug!("region sync round failed on this region's redis: {e}");
                    "failed"
                }
            };
            self.metrics.rounds.with_label_values(&[outcome]).inc();
        }
    }
}
