//! Series that other parts of the gateway keep: gauges and counters of the
//! proxy, the pools, the connection caps and the Redis sync, registered here.

use super::metrics::registered;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Series that others write: the proxy keeps `inflight`; the admin service copies
/// breaker, health, connection and Redis-sync state into the rest when scraped.
pub struct StateMetrics {
    pub inflight: IntGauge,
    pub breaker_state: IntGaugeVec,
    pub breaker_transitions: IntCounterVec,
    pub upstream_healthy: IntGaugeVec,
    pub upstream_resolve_errors: IntCounterVec,
    pub upstream_refused_answers: IntCounterVec,
    pub redis_sync_errors: IntCounter,
    pub redis_last_sync: IntGauge,
    pub global_limit_degraded: IntGauge,
    pub redis_sync_keys: IntGauge,
    pub redis_sync_keys_waiting: IntGauge,
    pub redis_sync_duration: Histogram,
    pub admin_writes: IntCounterVec,
    pub open_connections: IntGauge,
    pub connections_refused: IntCounter,
    pub websockets_open: IntGauge,
}

impl StateMetrics {
    pub(super) fn new(registry: &Registry) -> prometheus::Result<Self> {
        Ok(StateMetrics {
            inflight: registered(
                registry,
                IntGauge::new("floodgate_inflight_requests", "Requests in progress")?,
            )?,
            breaker_state: registered(
                registry,
                IntGaugeVec::new(
                    Opts::new("floodgate_circuit_breaker_state", "0 closed, 1 half-open, 2 open"),
                    &["upstream", "target"],
                )?,
            )?,
            breaker_transitions: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "floodgate_circuit_breaker_transitions_total",
                        "Breaker state changes, by new state",
                    ),
                    &["upstream", "target", "to"],
                )?,
            )?,
            upstream_healthy: registered(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "floodgate_upstream_healthy",
                        "1 when the target passes its health check",
                    ),
                    &["upstream", "target"],
                )?,
            )?,
            upstream_resolve_errors: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "floodgate_upstream_resolve_errors_total",
                        "Lookups of upstream target names that failed or found no address (the last good addresses stay)",
                    ),
                    &["upstream"],
                )?,
            )?,
            upstream_refused_answers: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "floodgate_upstream_refused_answers_total",
                        "Addresses dropped from DNS answers by refuse_private_answers",
                    ),
                    &["upstream"],
                )?,
            )?,
            redis_sync_errors: registered(
                registry,
                IntCounter::new("floodgate_redis_sync_errors_total", "Failed Redis syncs")?,
            )?,
            redis_last_sync: registered(
                registry,
                IntGauge::new(
                    "floodgate_redis_last_sync_timestamp_seconds",
                    "Unix time of the last good Redis sync",
                )?,
            )?,
            global_limit_degraded: registered(
                registry,
                IntGauge::new(
                    "floodgate_global_limit_degraded",
                    "1 while Redis is unreachable and shared limits (global windows, cluster budgets) run degraded",
                )?,
            )?,
            redis_sync_keys: registered(
                registry,
                IntGauge::new(
                    "floodgate_redis_sync_keys",
                    "Bucket keys (consumers, client addresses) settled by the last Redis sync",
                )?,
            )?,
            redis_sync_keys_waiting: registered(
                registry,
                IntGauge::new(
                    "floodgate_redis_sync_keys_waiting",
                    "Active bucket keys left for the next sync (over redis.max_keys_per_sync)",
                )?,
            )?,
            admin_writes: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "floodgate_admin_writes_total",
                        "Admin API writes that took effect, by action",
                    ),
                    &["action"],
                )?,
            )?,
            redis_sync_duration: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "floodgate_redis_sync_duration_seconds",
                        "Time of one Redis sync round, successful or not",
                    )
                    .buckets(vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
                )?,
            )?,
            websockets_open: registered(
                registry,
                IntGauge::new("floodgate_websocket_sessions_open", "WebSocket sessions open now")?,
            )?,
            open_connections: registered(
                registry,
                IntGauge::new("floodgate_open_connections", "Open client connections")?,
            )?,
            connections_refused: registered(
                registry,
                IntCounter::new(
                    "floodgate_connections_refused_total",
                    "Client connections closed unread for being over max_connections or max_connections_per_ip",
                )?,
            )?,
        })
    }
}
