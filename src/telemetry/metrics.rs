//! The Prometheus side: the registry every series is registered into, the
//! series written for each request (built here, resolved to their children by
//! `counters` and once per route and upstream, so recording a request takes no
//! registry lock and hashes no labels), and the text exposition. Series that
//! other parts keep are in `state_metrics`.

use super::counters::{method_index, FixedLabelCounters, RequestCounters, RequestTotals};
use super::RequestRecord;
use crate::vocab::auth_failure::Failure;
use crate::vocab::ids::{ById, Id, RouteId, UpstreamId};
use crate::vocab::limit_scope::Scope;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Latency buckets (seconds) shared by the histograms and the live per-second
/// ring, so that live percentiles and Prometheus' are read off the same bounds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

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

impl Metrics {
    pub(super) fn new(
        registry: Registry,
        route_names: ById<RouteId, String>,
        upstream_names: ById<UpstreamId, String>,
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
        let scopes = Scope::ALL.map(Scope::as_str).to_vec();
        let ratelimited = FixedLabelCounters::new(ratelimited, scopes, &route_labels);
        let reasons = Failure::ALL.map(Failure::reason).to_vec();
        let auth_failures = FixedLabelCounters::new(auth_failures, reasons, &route_labels);
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
            self.ratelimited.inc(route_slot, route, scope.as_str());
        }
        if let Some(failure) = r.auth_failure {
            self.auth_failures.inc(route_slot, route, failure.reason());
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
