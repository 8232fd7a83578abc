//! Background sync with Redis: every `redis.sync_interval_ms`, one round of
//! pipelines sent together: the routes' global windows and the instance heartbeat
//! (windows.rs), the runtime consumers' version and change log (consumers/), the quotas'
//! counts (quotas.rs) and the cluster budgets of the callers active since the last
//! round (budgets.rs). Each kind queues its own pipelines and reads its own
//! replies back (round.rs).
//! Requests never wait on any of it; they read what the last good round installed.
//!
//! On failure (Redis down, or frozen: every round has a deadline) what was taken
//! for the round goes back to be pushed later, the state turns degraded (one log
//! line per outage) and reconnection is retried with backoff.

mod backend;
pub mod budgets;
pub mod consumers;
mod quotas;
mod round;
mod windows;

pub use backend::Backend;

use crate::config::RedisTarget;
use crate::consumers::keys::RuntimeKeys;
use crate::consumers::overrides::TierOverrides;
use crate::ratelimit::RateLimiter;
use crate::vocab::clock::unix_now;
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use budgets::{BudgetRound, BudgetsDone};
use consumers::{Following, LogQueued, LogRead};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use quotas::QuotaRound;
use redis::{RedisError, RedisResult};
use round::{Batch, Replies};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use windows::{WindowRound, WindowsDone};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A round's requests, one per kind of work, each with the handle of its pipelines.
struct Round {
    windows: WindowRound,
    consumers: LogQueued,
    quotas: QuotaRound,
    budgets: BudgetRound,
}

/// What a round brought back, per kind of work (the quotas' totals are installed
/// and report nothing).
struct RoundResult {
    windows: WindowsDone,
    consumers: Option<(LogRead, u64)>,
    budgets: BudgetsDone,
}

pub struct RedisSync {
    /// Sentinel discovery needs it mutable; only this service connects.
    pub target: tokio::sync::Mutex<RedisTarget>,
    pub interval: Duration,
    pub key_prefix: String,
    pub max_keys_per_sync: usize,
    pub limiter: Arc<RateLimiter>,
    pub overrides: Arc<TierOverrides>,
    pub runtime_keys: Arc<RuntimeKeys>,
    pub tier_names: Vec<String>,
    pub instance_id: String,
    /// Change-log entries Redis keeps (`redis.consumers_log_entries`).
    pub consumers_log_entries: usize,
    /// The epoch marker seen and the place in the change log.
    following: std::sync::Mutex<Following>,
    /// Admin writes through this instance the log has not reached yet.
    local_writes: Arc<consumers::LocalWrites>,
    /// The highest version this instance knows Redis reached (followed, or made by
    /// its own admin writes): a version below it means Redis went back.
    reached_version: Arc<AtomicU64>,
    /// The last round could not follow, reload or repair the runtime consumers.
    consumers_failing: AtomicBool,
    /// Set once the runtime consumers are loaded, or Redis fails to answer a round:
    /// `/ready` waits for it.
    first_round: tokio::sync::watch::Sender<bool>,
    /// The live connection, which the admin API's budget view borrows.
    pub backend: Arc<ArcSwapOption<Backend>>,
    pub sync_duration: prometheus::Histogram,
    /// The settle script must be (re)loaded: at start and after Redis lost it.
    script_missing: AtomicBool,
    /// With several regions: what the settles need of them (`redis.region`).
    pub region: Option<RegionSettle>,
}

/// The budgets' side of the regions: the script grants from this region's share
/// and names the keys the region sync is to exchange, which the next round hands
/// over.
pub struct RegionSettle {
    /// This region's name, under which the others hold its counts.
    pub name: String,
    pub regions: u32,
    pub interval: Duration,
    pub due: std::sync::Mutex<Vec<String>>,
}

impl RedisSync {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        target: RedisTarget,
        interval: Duration,
        key_prefix: String,
        max_keys_per_sync: usize,
        limiter: Arc<RateLimiter>,
        overrides: Arc<TierOverrides>,
        runtime_keys: Arc<RuntimeKeys>,
        tier_names: Vec<String>,
        instance_id: String,
        sync_duration: prometheus::Histogram,
        consumers_log_entries: usize,
    ) -> Self {
        let interval_ms = interval.as_millis() as u64;
        limiter.sync.interval_ms.store(interval_ms, Ordering::Relaxed);
        RedisSync {
            target: tokio::sync::Mutex::new(target),
            interval,
            key_prefix,
            max_keys_per_sync,
            limiter,
            overrides,
            runtime_keys,
            tier_names,
            instance_id,
            consumers_log_entries,
            following: Default::default(),
            local_writes: Default::default(),
            reached_version: Arc::new(AtomicU64::new(0)),
            consumers_failing: AtomicBool::new(false),
            first_round: tokio::sync::watch::Sender::new(false),
            backend: Arc::new(ArcSwapOption::empty()),
            sync_duration,
            script_missing: AtomicBool::new(true),
            region: None,
        }
    }

    /// Turns true once the runtime consumers are loaded or Redis failed a round.
    pub fn first_round(&self) -> tokio::sync::watch::Receiver<bool> {
        self.first_round.subscribe()
    }

    /// A reply deadline well past the interval but short enough that a frozen
    /// Redis is noticed within a few syncs; a big batch of keys earns more.
    fn timeout(&self, keys: usize) -> Duration {
        let base = (self.interval * 5).clamp(Duration::from_millis(200), Duration::from_secs(2));
        base.max(Duration::from_micros(50) * keys as u32)
    }

    pub async fn sync_once(&self, backend: &Backend) -> RedisResult<()> {
        if self.script_missing.load(Ordering::Relaxed) {
            tokio::time::timeout(self.timeout(0), backend.load_script(budgets::SETTLE_SOURCE))
                .await
                .map_err(|_| timed_out())??;
            self.script_missing.store(false, Ordering::Relaxed);
        }
        let now_ms = unix_now().as_millis() as u64;
        let cluster = matches!(backend, Backend::Cluster(_));
        // All of the round's pipelines go together: one round trip per node.
        let mut batch = Batch::default();
        let round = Round {
            windows: self.windows_round(now_ms, &mut batch),
            consumers: self.consumers_round(&mut batch),
            quotas: self.quotas_round(cluster, &mut batch),
            budgets: self.budgets_round(cluster, &mut batch),
        };
        // The round's deadline grows with everything it carries, quotas included.
        let load = round.budgets.reports.len() + round.quotas.pushes.len();
        let Ok(results) = tokio::time::timeout(self.timeout(load), backend.run(batch.into_pipelines())).await
        else {
            // Whether Redis ran any of it is unknown: all of it is pushed again.
            self.windows_give_back(round.windows);
            self.quotas_give_back(round.quotas);
            self.budgets_give_back(round.budgets);
            return Err(timed_out());
        };
        let mut replies = Replies::new(results);
        if replies.script_lost {
            self.script_missing.store(true, Ordering::Relaxed);
        }
        let done = self.install(&mut replies, round);
        if let Some(e) = replies.first_error {
            return Err(e);
        }
        let state = &self.limiter.sync;
        // Runtime consumers then lag a round or more; the limits synced and stay so.
        match self.consumers_follow(backend, done.consumers).await {
            Ok(()) => {
                if self.consumers_failing.swap(false, Ordering::Relaxed) {
                    log::info!("runtime consumers follow redis again");
                }
            }
            Err(e) => {
                state.errors.fetch_add(1, Ordering::Relaxed);
                if !self.consumers_failing.swap(true, Ordering::Relaxed) {
                    log::warn!("runtime consumers could not follow redis ({e}); retried every round");
                }
            }
        }
        if let Some(instances) = done.windows.instances {
            state.instances.store(instances, Ordering::Relaxed);
        }
        state.last_sync_ms.store(now_ms, Ordering::Relaxed);
        state
            .keys_synced
            .store(done.budgets.keys as u64, Ordering::Relaxed);
        state
            .keys_waiting
            .store(done.budgets.waiting as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Each kind reads its own replies: pipelines that failed give their part
    /// back, those that ran are installed.
    fn install(&self, replies: &mut Replies, round: Round) -> RoundResult {
        let windows = self.windows_install(replies, round.windows);
        let consumers = Self::consumers_read(replies, round.consumers);
        self.quotas_install(replies, round.quotas);
        let budgets = self.budgets_install(replies, round.budgets, unix_now().as_nanos() as u64);
        RoundResult {
            windows,
            consumers,
            budgets,
        }
    }

    fn failed(&self, what: &str, e: &RedisError) {
        let state = &self.limiter.sync;
        state.errors.fetch_add(1, Ordering::Relaxed);
        if !state.degraded.swap(true, Ordering::Relaxed) {
            log::warn!("redis sync failing ({what}: {e}); shared limits degraded until it returns");
        }
    }
}

pub(crate) fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis did not answer in time",
    ))
}

#[async_trait]
impl BackgroundService for RedisSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut backoff = self.interval;
        // The first round runs at once: runtime consumers are read before traffic comes.
        let mut first = true;
        loop {
            let wait = if first {
                Duration::ZERO
            } else if self.limiter.sync.degraded.load(Ordering::Relaxed) {
                backoff
            } else {
                self.interval
            };
            first = false;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let backend = match self.backend.load_full() {
                Some(b) => b,
                None => {
                    let mut target = self.target.lock().await;
                    match tokio::time::timeout(
                        self.timeout(0),
                        Backend::connect(&mut target, self.timeout(0)),
                    )
                    .await
                    {
                        Ok(Ok(b)) => {
                            let b = Arc::new(b);
                            self.backend.store(Some(b.clone()));
                            self.script_missing.store(true, Ordering::Relaxed);
                            b
                        }
                        Ok(Err(e)) => {
                            self.first_round.send_replace(true);
                            self.failed("connect", &e);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                        Err(_) => {
                            self.first_round.send_replace(true);
                            self.failed("connect", &timed_out());
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                    }
                }
            };
            let started = Instant::now();
            let result = self.sync_once(&backend).await;
            self.sync_duration.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    backoff = self.interval;
                    if self.limiter.sync.degraded.swap(false, Ordering::Relaxed) {
                        log::info!("redis sync restored; what was taken meanwhile was pushed");
                    }
                }
                Err(e) => {
                    self.first_round.send_replace(true);
                    self.failed("sync", &e);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // A single server's manager reconnects by itself; a cluster or a
                    // Sentinel's master is looked up afresh (a failover moves it).
                    if !matches!(*backend, Backend::Single(_)) {
                        self.backend.store(None);
                    }
                }
            }
        }
    }
}
