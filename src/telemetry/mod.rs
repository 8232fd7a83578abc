//! What the gateway records about its traffic. Each request is recorded once, in
//! the proxy's `logging` phase (which also runs for the gateway's own
//! 401/403/429s): Prometheus series (`metrics`), live per-second counts and top
//! limited callers (`live`), and a queued JSON access-log line (`access_log`).
//! The admin service reads all three: `/metrics`, and `/admin/stats` through the
//! read-only accessors below.
//!
//! Labels are bounded: route names, methods (unknown ones as `OTHER`), statuses,
//! upstream names and targets from the config, scopes and reasons from fixed sets.
//! Never a raw path, a consumer or a client address.

mod access_log;
mod counters;
mod live;
mod metrics;
mod region_metrics;
mod state_metrics;

pub use access_log::{rfc3339, AccessLine, ACCESS_LOG_QUEUE, LINE_CAPACITY};
pub use counters::RequestTotals;
pub use live::SecondCounts;
pub use metrics::{RouteTotals, LATENCY_BUCKETS};

use crate::vocab::auth_failure::Failure;
use crate::vocab::ids::{ById, RouteId, UpstreamId};
use crate::vocab::limit_key::LimitKey;
use crate::vocab::limit_scope::Scope;
use access_log::AccessLog;
use live::Live;
use metrics::Metrics;
use prometheus::Registry;
pub use region_metrics::RegionMetrics;
pub use state_metrics::StateMetrics;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// One finished request, as the `logging` phase saw it.
pub struct RequestRecord<'a> {
    pub route: Option<RouteId>,
    pub method: &'a http::Method,
    pub status: u16,
    pub duration: Duration,
    pub upstream: Option<UpstreamId>,
    pub upstream_duration: Option<Duration>,
    pub limited: Option<Scope>,
    pub auth_failure: Option<Failure>,
    /// Who got limited, for the top lists: a consumer id (alone or on a route's own
    /// limit) or a client address.
    pub limited_key: Option<&'a LimitKey>,
}

pub struct Telemetry {
    metrics: Metrics,
    live: Live,
    access_log: AccessLog,
    /// Series others keep: the proxy keeps `inflight`, the admin service copies the
    /// rest from the pools, the connection caps and the Redis sync when scraped.
    pub state: StateMetrics,
    pub region: RegionMetrics,
}

impl Telemetry {
    pub fn new(
        route_names: ById<RouteId, String>,
        upstream_names: ById<UpstreamId, String>,
        access_log: Option<SyncSender<Vec<u8>>>,
    ) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let state = StateMetrics::new(&registry)?;
        let region = RegionMetrics::new(&registry)?;
        Ok(Telemetry {
            access_log: AccessLog::new(access_log, &registry)?,
            metrics: Metrics::new(registry, route_names, upstream_names)?,
            live: Live::new(),
            state,
            region,
        })
    }

    pub fn record(&self, r: &RequestRecord<'_>, now_s: u64) {
        self.metrics.record(r);
        // A WebSocket session is not a request of the second it ends in.
        if r.status != 101 {
            self.live.record(r, now_s);
        }
    }

    pub fn access_log_enabled(&self) -> bool {
        self.access_log.enabled()
    }

    /// Queue an access-log line; never waits.
    pub fn log_access(&self, line: &AccessLine<'_>) {
        self.access_log.send(line);
    }

    /// The registry `/metrics` renders, for series kept elsewhere (the span export's).
    pub fn registry(&self) -> &Registry {
        self.metrics.registry()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        self.metrics.render()
    }

    pub fn upstream_name(&self, upstream: UpstreamId) -> &str {
        self.metrics.upstream_name(upstream)
    }

    /// The totals and latency histogram of every route that saw traffic, in the config's order.
    pub fn routes(&self) -> Vec<RouteTotals<'_>> {
        self.metrics.routes()
    }

    /// Second `s`'s live counts, while it is within the last minute or so.
    pub fn second(&self, s: u64) -> Option<SecondCounts> {
        self.live.second(s)
    }

    /// The `n` consumers limited most over the current and the previous five-minute period.
    pub fn top_limited_consumers(&self, n: usize) -> Vec<(String, u64)> {
        self.live.top_consumers(n)
    }

    /// The `n` client addresses limited most over the current and the previous five-minute period.
    pub fn top_limited_ips(&self, n: usize) -> Vec<(String, u64)> {
        self.live.top_ips(n)
    }
}
