//! Another region's Redis as the region sync reaches it: connected on demand,
//! with the region script loaded, and whether the last round reached it (a region
//! not reached is cut off for that round, and counted when it goes).

use super::REGION_SOURCE;
use crate::config::RedisTarget;
use crate::services::redis_sync::{timed_out, Backend};
use crate::telemetry::RegionMetrics;
use arc_swap::ArcSwapOption;
use prometheus::{IntCounter, IntGauge};
use redis::{Pipeline, RedisError, RedisResult, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(super) struct PeerRegion {
    pub(super) name: String,
    target: tokio::sync::Mutex<RedisTarget>,
    backend: ArcSwapOption<Backend>,
    /// The last round reached it.
    up: AtomicBool,
    /// Reached at least once: a region never reached is not counted as lost.
    seen: AtomicBool,
    metrics: RegionMetrics,
    partitions: IntCounter,
    pub(super) bytes_sent: IntCounter,
    pub(super) bytes_received: IntCounter,
    pub(super) keys: IntCounter,
    pub(super) consumer_changes: IntCounter,
}

impl PeerRegion {
    pub(super) fn new(name: String, target: RedisTarget, metrics: &RegionMetrics) -> Self {
        let peer = [name.as_str()];
        PeerRegion {
            target: tokio::sync::Mutex::new(target),
            backend: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            seen: AtomicBool::new(false),
            metrics: metrics.clone(),
            partitions: metrics.partitions.with_label_values(&peer),
            bytes_sent: metrics.bytes.with_label_values(&[name.as_str(), "sent"]),
            bytes_received: metrics.bytes.with_label_values(&[name.as_str(), "received"]),
            keys: metrics.keys.with_label_values(&peer),
            consumer_changes: metrics.consumer_changes.with_label_values(&peer),
            name,
        }
    }

    pub(super) fn reachable(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.backend
            .load()
            .as_deref()
            .is_some_and(|b| matches!(b, Backend::Cluster(_)))
    }

    /// Connects (and loads the script) if not connected; a failure leaves it
    /// unreachable for this round.
    pub(super) async fn connect(&self, timeout: Duration) {
        if self.backend.load().is_some() {
            return;
        }
        let mut target = self.target.lock().await;
        let connected = tokio::time::timeout(timeout, async {
            let backend = Backend::connect(&mut target, timeout).await?;
            backend.load_script(REGION_SOURCE).await?;
            Ok::<_, RedisError>(backend)
        })
        .await;
        match connected {
            Ok(Ok(backend)) => self.backend.store(Some(Arc::new(backend))),
            Ok(Err(e)) => self.lost(&e.to_string()),
            Err(_) => self.lost("connecting timed out"),
        }
    }

    /// Runs the round's pipelines on the peer; `None` when it could not be reached
    /// in time (then it is cut off for the round).
    pub(super) async fn run(
        &self,
        pipelines: Vec<Pipeline>,
        timeout: Duration,
    ) -> Option<Vec<RedisResult<Vec<Value>>>> {
        let backend = self.backend.load_full()?;
        match tokio::time::timeout(timeout, backend.run(pipelines)).await {
            Ok(results) => {
                if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                        self.lost(&e.to_string());
                        self.backend.store(None);
                        return None;
                    }
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
                        // Loaded again at the next connect.
                        self.backend.store(None);
                    }
                }
                self.reached();
                Some(results)
            }
            Err(_) => {
                self.lost(&timed_out().to_string());
                // A frozen peer's connection may hold replies for later; start afresh.
                self.backend.store(None);
                None
            }
        }
    }

    /// Looked up each time: the series goes when the lease does.
    fn up_gauge(&self) -> IntGauge {
        self.metrics.peer_up.with_label_values(&[self.name.as_str()])
    }

    /// No longer the holder: its series go, so that a stale 0 raises no alert.
    pub(super) fn forget_reachability(&self) {
        let _ = self.metrics.peer_up.remove_label_values(&[self.name.as_str()]);
    }

    fn reached(&self) {
        self.seen.store(true, Ordering::Relaxed);
        self.up_gauge().set(1);
        if !self.up.swap(true, Ordering::Relaxed) {
            log::info!("region {}: reached", self.name);
        }
    }

    /// Not reached this round: a partition when it was reached the round before.
    fn lost(&self, why: &str) {
        self.up_gauge().set(0);
        let was_up = self.up.swap(false, Ordering::Relaxed);
        if was_up {
            self.partitions.inc();
        }
        if was_up || !self.seen.swap(true, Ordering::Relaxed) {
            log::warn!(
                "region {}: not reached ({why}); on_partition applies to the keys it shares",
                self.name
            );
        }
    }
}
