//! Background sync of the global windows and tier overrides with Redis. Every
//! `redis.sync_interval_ms`, one pipeline: push this instance's counts (INCRBY + EXPIRE
//! per window key), read the cluster totals, heartbeat into the instance set and
//! count the live instances, write pending tier overrides. Requests never wait on
//! any of it; they read what the last good sync installed.
//!
//! On failure (Redis down, or frozen: every call has a timeout) the drained counts
//! go back to be pushed later, the state turns degraded (one log line per outage)
//! and reconnection is retried with backoff.

use crate::ratelimit::global::{Drained, GlobalWindow};
use crate::ratelimit::RateLimiter;
use crate::vocab::clock::unix_now;
use crate::vocab::identity::TierOverrides;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Tier overrides are read back from Redis every this many syncs.
const OVERRIDES_EVERY: u64 = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct RedisSync {
    pub client: redis::Client,
    pub interval: Duration,
    pub key_prefix: String,
    pub limiter: Arc<RateLimiter>,
    pub overrides: Arc<TierOverrides>,
    pub tier_names: Vec<String>,
    pub instance_id: String,
}

impl RedisSync {
    fn window_key(&self, window: &GlobalWindow, index: u64) -> String {
        format!("{}:gl:{}:{}", self.key_prefix, window.route, index)
    }

    /// A reply deadline well past the interval but short enough that a frozen
    /// Redis is noticed within a few syncs.
    fn timeout(&self) -> Duration {
        (self.interval * 5).clamp(Duration::from_millis(200), Duration::from_secs(2))
    }

    async fn connect(&self) -> redis::RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout()))
            .set_response_timeout(Some(self.timeout()))
            .set_number_of_retries(1)
            .set_max_delay(MAX_BACKOFF);
        ConnectionManager::new_with_config(self.client.clone(), config).await
    }

    async fn sync_once(&self, conn: &mut ConnectionManager, round: u64) -> redis::RedisResult<()> {
        let now_ms = unix_now().as_millis() as u64;
        let windows: Vec<&Arc<GlobalWindow>> = self.limiter.globals().collect();
        let drained: Vec<Drained> = windows.iter().map(|w| w.drain()).collect();
        let overrides = self.overrides.take_unpushed();
        let instances_key = format!("{}:instances", self.key_prefix);
        let tiers_key = format!("{}:tiers", self.key_prefix);
        let heartbeat_ttl_ms = (self.interval.as_millis() as u64 * 10).max(3000);

        let mut pipe = redis::pipe();
        for (window, drained) in windows.iter().zip(&drained) {
            let expire_s = (window.window_ms / 1000) * 2 + 5;
            for (index, count) in &drained.deltas {
                let key = self.window_key(window, *index);
                pipe.incr(&key, *count)
                    .ignore()
                    .expire(&key, expire_s as i64)
                    .ignore();
            }
            let current = window.window_of(now_ms);
            pipe.get(self.window_key(window, current));
            pipe.get(self.window_key(window, current.saturating_sub(1)));
        }
        pipe.zadd(&instances_key, &self.instance_id, now_ms).ignore();
        pipe.zrembyscore(&instances_key, 0, now_ms.saturating_sub(heartbeat_ttl_ms))
            .ignore();
        pipe.zcard(&instances_key);
        for (consumer, tier) in &overrides {
            if let Some(name) = self.tier_names.get(*tier) {
                pipe.hset(&tiers_key, consumer, name).ignore();
            }
        }
        let read_overrides = round.is_multiple_of(OVERRIDES_EVERY);
        if read_overrides {
            pipe.hgetall(&tiers_key);
        }

        let reply = tokio::time::timeout(self.timeout(), pipe.query_async::<Vec<redis::Value>>(conn)).await;
        let values = match reply {
            Ok(Ok(values)) => values,
            Ok(Err(e)) => {
                self.give_back(&windows, drained, overrides);
                return Err(e);
            }
            Err(_) => {
                self.give_back(&windows, drained, overrides);
                return Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "redis did not answer in time",
                )));
            }
        };
        let mut values = values.into_iter();
        let mut number = || -> u64 {
            values
                .next()
                .and_then(|v| redis::from_redis_value::<Option<u64>>(v).ok().flatten())
                .unwrap_or(0)
        };
        let totals: Vec<(u64, u64)> = windows.iter().map(|_| (number(), number())).collect();
        let instances = number().max(1);
        for ((window, drained), (cur, prev)) in windows.iter().zip(&drained).zip(totals) {
            window.install(drained, window.window_of(now_ms), cur, prev);
        }
        if read_overrides {
            if let Some(Ok(map)) = values
                .next()
                .map(redis::from_redis_value::<HashMap<String, String>>)
            {
                let resolved = map
                    .into_iter()
                    .filter_map(|(consumer, tier)| {
                        let id = self.tier_names.iter().position(|t| *t == tier)?;
                        Some((Arc::from(consumer.as_str()), id))
                    })
                    .collect();
                self.overrides.replace(resolved);
            }
        }
        let state = &self.limiter.sync;
        state.instances.store(instances, Ordering::Relaxed);
        state.last_sync_ms.store(now_ms, Ordering::Relaxed);
        Ok(())
    }

    fn give_back(
        &self,
        windows: &[&Arc<GlobalWindow>],
        drained: Vec<Drained>,
        overrides: Vec<(String, usize)>,
    ) {
        for (window, drained) in windows.iter().zip(drained) {
            window.restore(drained);
        }
        self.overrides.restore_unpushed(overrides);
    }

    fn failed(&self, what: &str, e: &redis::RedisError) {
        let state = &self.limiter.sync;
        state.errors.fetch_add(1, Ordering::Relaxed);
        if !state.degraded.swap(true, Ordering::Relaxed) {
            log::warn!("redis sync failing ({what}: {e}); global limits degraded until it returns");
        }
    }
}

#[async_trait]
impl BackgroundService for RedisSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut conn: Option<ConnectionManager> = None;
        let mut backoff = self.interval;
        let mut round = 0u64;
        loop {
            let wait = if self.limiter.sync.degraded.load(Ordering::Relaxed) {
                backoff
            } else {
                self.interval
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if conn.is_none() {
                match tokio::time::timeout(self.timeout(), self.connect()).await {
                    Ok(Ok(c)) => conn = Some(c),
                    Ok(Err(e)) => self.failed("connect", &e),
                    Err(_) => self.failed(
                        "connect",
                        &redis::RedisError::from(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "connect timed out",
                        )),
                    ),
                }
            }
            let Some(c) = conn.as_mut() else {
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            };
            match self.sync_once(c, round).await {
                Ok(()) => {
                    round += 1;
                    backoff = self.interval;
                    if self.limiter.sync.degraded.swap(false, Ordering::Relaxed) {
                        log::info!("redis sync restored; counts taken meanwhile were pushed");
                    }
                }
                Err(e) => {
                    self.failed("sync", &e);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
