//! The Prometheus side: every series the gateway exports, built and registered
//! here, and the text exposition. The per-request series are resolved to their
//! children once (per route and upstream, per route and limit scope or auth
//! failure reason) or on first use (per route, method and status), so recording a
//! request takes no registry lock and hashes no labels.

use super::RequestRecord;
use crate::vocab::ids::{ById, Id, RouteId, UpstreamId};
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Latency buckets (seconds) shared by the histograms and the live per-second
/// ring, so that live percentiles and Prometheus' are read off the same bounds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Method labels; anything else is counted as `OTHER`, so the label stays bounded.
const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "OTHER",
];
/// Statuses 100..=599 get a slot in a route's counter table.
const STATUSES: usize = 500;

fn method_index(method: &http::Method) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

/// A counter by route and one more label from a fixed set, every child resolved
/// at start (so each shows from the first scrape, at 0). A value outside the set
/// is still counted, through the vector.
struct FixedLabelCounters {
    vec: IntCounterVec,
    values: Vec<&'static str>,
    /// (route slot × values + value) → counter.
    children: Box<[IntCounter]>,
}

impl FixedLabelCounters {
    /// `routes`: the route labels by slot.
    fn new(vec: IntCounterVec, values: Vec<&'static str>, routes: &[&str]) -> Self {
        let children = routes
            .iter()
            .flat_map(|r| values.iter().map(move |v| [*r, *v]))
            .map(|labels| vec.with_label_values(&labels))
            .collect();
        FixedLabelCounters {
            vec,
            values,
            children,
        }
    }

    fn inc(&self, route_slot: usize, route: &str, value: &str) {
        let child = self
            .values
            .iter()
            .position(|v| *v == value)
            .and_then(|i| self.children.get(route_slot * self.values.len() + i));
        match child {
            Some(c) => c.inc(),
            None => self.vec.with_label_values(&[route, value]).inc(),
        }
    }
}

/// One route × method's counters, indexed by status − 100.
type StatusTable = Box<[OnceLock<IntCounter>]>;

/// `floodgate_requests_total`'s children, each resolved through the vector (a
/// lock and a hash of the labels) the first time it is seen and read lock-free after.
/// A route × method table of statuses is allocated on first use.
struct RequestCounters {
    vec: IntCounterVec,
    /// (route slot × METHODS + method) → status − 100 → counter.
    tables: Box<[OnceLock<StatusTable>]>,
}

impl RequestCounters {
    fn new(vec: IntCounterVec, route_slots: usize) -> Self {
        RequestCounters {
            vec,
            tables: (0..route_slots * METHODS.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    fn inc(&self, route_slot: usize, route: &str, method: usize, status: u16) {
        let code = http::StatusCode::from_u16(status).ok();
        let label = code.as_ref().map_or("000", http::StatusCode::as_str);
        let resolve = || self.vec.with_label_values(&[route, METHODS[method], label]);
        let slot = usize::from(status).checked_sub(100).filter(|s| *s < STATUSES);
        let table = self.tables.get(route_slot * METHODS.len() + method);
        match (table, slot) {
            (Some(table), Some(slot)) => {
                let table = table.get_or_init(|| (0..STATUSES).map(|_| OnceLock::new()).collect());
                table[slot].get_or_init(resolve).inc();
            }
            _ => resolve().inc(),
        }
    }

    /// Totals by route label, as a scrape would sum them: a `000` status (one
    /// `http` cannot represent) counts as a request but as neither error class.
    fn totals(&self) -> HashMap<String, RequestTotals> {
        let mut by_route: HashMap<String, RequestTotals> = HashMap::new();
        for family in self.vec.collect() {
            for m in family.get_metric() {
                let label = |name: &str| m.get_label().iter().find(|l| l.name() == name).map(|l| l.value());
                let Some(route) = label("route") else { continue };
                let n = m.get_counter().get_value() as u64;
                let totals = by_route.entry(route.to_owned()).or_default();
                totals.all += n;
                match label("status").and_then(|s| s.parse::<u16>().ok()) {
                    Some(s) if s >= 500 => totals.errors_5xx += n,
                    Some(s) if s >= 400 => totals.errors_4xx += n,
                    _ => {}
                }
            }
        }
        by_route
    }
}

/// Requests answered since start, summed over methods and statuses.
#[derive(Clone, Copy, Default)]
pub struct RequestTotals {
    pub all: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
}

/// One configured route's numbers since start.
pub struct RouteTotals<'a> {
    pub name: &'a str,
    pub requests: RequestTotals,
    /// Its request-duration histogram: the cumulative count at each of
    /// `LATENCY_BUCKETS`, and the count of all samples (slower ones too).
    pub latency_cumulative: Vec<u64>,
    pub latency_count: u64,
}

/// Registers `metric` and hands it back.
pub(super) fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> prometheus::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// The series written for every request, by `Telemetry::record`, and the registry
/// that every part registers into.
pub(super) struct Metrics {
    registry: Registry,
    route_names: ById<RouteId, String>,
    upstream_names: ById<UpstreamId, String>,
    requests: RequestCounters,
    route_duration: ById<RouteId, Histogram>,
    /// For requests that matched no route.
    unrouted_duration: Histogram,
    upstream_duration: ById<UpstreamId, Histogram>,
    ratelimited: FixedLabelCounters,
    auth_failures: FixedLabelCounters,
    /// WebSocket sessions that ended, and how long they lasted, by route: kept out
    /// of the request histograms, whose percentiles hours-long sessions would skew.
    websocket_sessions: ById<RouteId, IntCounter>,
    websocket_duration: ById<RouteId, Histogram>,
}

/// WebSocket session lengths: seconds to a day.
const SESSION_BUCKETS: [f64; 10] = [
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// The fixed label sets, from the components that own them (every limit scope,
/// every auth failure reason): their series are resolved at start.
pub struct FixedLabels {
    pub limit_scopes: Vec<&'static str>,
    pub auth_failure_reasons: Vec<&'static str>,
}

impl Metrics {
    pub(super) fn new(
        registry: Registry,
        route_names: ById<RouteId, String>,
        upstream_names: ById<UpstreamId, String>,
        fixed: FixedLabels,
    ) -> prometheus::Result<Self> {
        let buckets = LATENCY_BUCKETS.to_vec();
        let requests = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "floodgate_requests_total",
                    "Requests answered, by route, method and status",
                ),
                &["route", "method", "status"],
            )?,
        )?;
        let request_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "floodgate_request_duration_seconds",
                    "Time from request to last byte, by route",
                )
                .buckets(buckets.clone()),
                &["route"],
            )?,
        )?;
        let upstream_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "floodgate_upstream_duration_seconds",
                    "Time until the upstream's response header",
                )
                .buckets(buckets),
                &["upstream"],
            )?,
        )?;
        let ratelimited = registered(
            &registry,
            IntCounterVec::new(
                Opts::new("floodgate_ratelimited_total", "Requests refused with 429"),
                &["route", "scope"],
            )?,
        )?;
        let auth_failures = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "floodgate_auth_failures_total",
                    "Requests refused by authentication",
                ),
                &["route", "reason"],
            )?,
        )?;
        let websocket_sessions = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "floodgate_websocket_sessions_total",
                    "WebSocket sessions ended, by route",
                ),
                &["route"],
            )?,
        )?;
        let websocket_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "floodgate_websocket_session_duration_seconds",
                    "How long WebSocket sessions lasted, by route",
                )
                .buckets(SESSION_BUCKETS.to_vec()),
                &["route"],
            )?,
        )?;
        let websocket_sessions = route_names
            .iter()
            .map(|r| websocket_sessions.with_label_values(&[r.as_str()]))
            .collect();
        let websocket_duration = route_names
            .iter()
            .map(|r| websocket_duration.with_label_values(&[r.as_str()]))
            .collect();
        // Histograms resolved once per route and upstream: no label lookup per request.
        let route_duration = route_names
            .iter()
            .map(|r| request_duration.with_label_values(&[r.as_str()]))
            .collect();
        let unrouted_duration = request_duration.with_label_values(&["none"]);
        let upstream_duration = upstream_names
            .iter()
            .map(|u| upstream_duration.with_label_values(&[u.as_str()]))
            .collect();
        // Routes take slots 0..n by id; requests that matched none take slot n.
        let requests = RequestCounters::new(requests, route_names.len() + 1);
        let route_labels: Vec<&str> = route_names.iter().map(String::as_str).chain(["none"]).collect();
        let ratelimited = FixedLabelCounters::new(ratelimited, fixed.limit_scopes, &route_labels);
        let auth_failures = FixedLabelCounters::new(auth_failures, fixed.auth_failure_reasons, &route_labels);
        Ok(Metrics {
            registry,
            route_names,
            upstream_names,
            requests,
            route_duration,
            unrouted_duration,
            upstream_duration,
            ratelimited,
            auth_failures,
            websocket_sessions,
            websocket_duration,
        })
    }

    fn route_name(&self, route: Option<RouteId>) -> &str {
        route
            .and_then(|r| self.route_names.get(r))
            .map_or("none", String::as_str)
    }

    pub(super) fn upstream_name(&self, upstream: UpstreamId) -> &str {
        self.upstream_names.get(upstream).map_or("none", String::as_str)
    }

    pub(super) fn record(&self, r: &RequestRecord<'_>) {
        let route = self.route_name(r.route);
        let route_slot = r.route.map_or(self.route_names.len(), RouteId::position);
        self.requests
            .inc(route_slot, route, method_index(r.method), r.status);
        if r.status == 101 {
            if let Some(i) = r.route {
                self.websocket_sessions[i].inc();
                self.websocket_duration[i].observe(r.duration.as_secs_f64());
            }
            return;
        }
        let hist = r
            .route
            .and_then(|i| self.route_duration.get(i))
            .unwrap_or(&self.unrouted_duration);
        hist.observe(r.duration.as_secs_f64());
        if let (Some(u), Some(d)) = (r.upstream, r.upstream_duration) {
            if let Some(h) = self.upstream_duration.get(u) {
                h.observe(d.as_secs_f64());
            }
        }
        if let Some(scope) = r.limited {
            self.ratelimited.inc(route_slot, route, scope);
        }
        if let Some(reason) = r.auth_failure {
            self.auth_failures.inc(route_slot, route, reason);
        }
    }

    /// Every configured route, in the config's order. Totals are matched by route
    /// name, as on a scrape.
    pub(super) fn routes(&self) -> Vec<RouteTotals<'_>> {
        let totals = self.requests.totals();
        self.route_names
            .iter()
            .zip(&self.route_duration)
            .map(|(name, hist)| RouteTotals {
                name,
                requests: totals.get(name).copied().unwrap_or_default(),
                latency_cumulative: prometheus::core::Metric::metric(hist)
                    .get_histogram()
                    .get_bucket()
                    .iter()
                    .map(|b| b.cumulative_count())
                    .collect(),
                latency_count: hist.get_sample_count(),
            })
            .collect()
    }

    /// The Prometheus text exposition.
    pub(super) fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("metrics encoding failed: {e}");
        }
        out
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels() {
        let vec = IntCounterVec::new(Opts::new("t", "t"), &["route", "method", "status"]).expect("vec");
        let counters = RequestCounters::new(vec.clone(), 1);
        counters.inc(0, "r", 0, 429);
        counters.inc(0, "r", 0, 429);
        counters.inc(0, "r", 1, 200);
        counters.inc(0, "r", 0, 42);
        assert_eq!(vec.with_label_values(&["r", "GET", "429"]).get(), 2);
        assert_eq!(vec.with_label_values(&["r", "POST", "200"]).get(), 1);
        assert_eq!(vec.with_label_values(&["r", "GET", "000"]).get(), 1);
        let totals = counters.totals()["r"];
        assert_eq!((totals.all, totals.errors_4xx, totals.errors_5xx), (4, 2, 0));
        assert_eq!(
            method_index(&http::Method::from_bytes(b"BREW").expect("method")),
            9
        );
    }

    #[test]
    fn fixed_labels_are_resolved_per_route_and_others_still_counted() {
        let vec = IntCounterVec::new(Opts::new("t", "t"), &["route", "scope"]).expect("vec");
        let scopes = vec!["local", "route", "global", "quota"];
        let counters = FixedLabelCounters::new(vec.clone(), scopes, &["a", "b", "none"]);
        assert_eq!(
            vec.with_label_values(&["none", "quota"]).get(),
            0,
            "resolved at start"
        );
        counters.inc(1, "b", "global");
        counters.inc(2, "none", "local");
        counters.inc(0, "a", "unheard_of");
        counters.inc(7, "none", "route");
        assert_eq!(vec.with_label_values(&["b", "global"]).get(), 1);
        assert_eq!(vec.with_label_values(&["a", "global"]).get(), 0);
        assert_eq!(vec.with_label_values(&["none", "local"]).get(), 1);
        assert_eq!(vec.with_label_values(&["a", "unheard_of"]).get(), 1);
        assert_eq!(vec.with_label_values(&["none", "route"]).get(), 1);
    }
}
