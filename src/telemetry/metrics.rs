//! The Prometheus side: the registry every series is registered into, the
//! series written for each request (built here; `counters` resolves a child the
//! first time a request produces it, so a route that saw no traffic has no
//! series, and later requests take no registry lock and hash no labels), and the
//! text exposition. Series that other parts keep are in `state_metrics`.

use super::counters::{method_index, FixedLabelCounters, PerSlot, RequestCounters, RequestTotals};
use super::RequestRecord;
use crate::vocab::auth_failure::Failure;
use crate::vocab::ids::{ById, Id, RouteId, UpstreamId};
use crate::vocab::limit_scope::Scope;
use prometheus::core::Collector;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

/// Latency buckets (seconds) shared by the histograms and the live per-second
/// ring, so that live percentiles and Prometheus' are read off the same bounds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// One route's numbers since start.
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
    /// Route slots are the routes' ids, and one more (the last) for requests
    /// that matched none, labelled `none`.
    requests: RequestCounters,
    route_duration: PerSlot<HistogramVec>,
    upstream_duration: PerSlot<HistogramVec>,
    ratelimited: FixedLabelCounters,
    auth_failures: FixedLabelCounters,
    /// WebSocket sessions that ended, and how long they lasted, by route: kept out
    /// of the request histograms, whose percentiles hours-long sessions would skew.
    websocket_sessions: PerSlot<IntCounterVec>,
    websocket_duration: PerSlot<HistogramVec>,
}

/// WebSocket session lengths: seconds to a day.
const SESSION_BUCKETS: [f64; 10] = [
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

impl Metrics {
    pub(super) fn registry(&self) -> &Registry {
        &self.registry
    }

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
        // Every table is empty until traffic fills it: see `counters`.
        let route_slots = route_names.len() + 1;
        let reasons = Failure::ALL.map(Failure::reason).to_vec();
        let scopes = Scope::ALL.map(Scope::as_str).to_vec();
        let upstream_duration = PerSlot::new(upstream_duration, upstream_names.len());
        Ok(Metrics {
            registry,
            route_names,
            upstream_names,
            requests: RequestCounters::new(requests, route_slots),
            route_duration: PerSlot::new(request_duration, route_slots),
            upstream_duration,
            ratelimited: FixedLabelCounters::new(ratelimited, scopes, route_slots),
            auth_failures: FixedLabelCounters::new(auth_failures, reasons, route_slots),
            websocket_sessions: PerSlot::new(websocket_sessions, route_slots),
            websocket_duration: PerSlot::new(websocket_duration, route_slots),
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
                let secs = r.duration.as_secs_f64();
                self.websocket_sessions.with(i.position(), route, |c| c.inc());
                self.websocket_duration
                    .with(i.position(), route, |h| h.observe(secs));
            }
            return;
        }
        let secs = r.duration.as_secs_f64();
        self.route_duration.with(route_slot, route, |h| h.observe(secs));
        if let (Some(u), Some(d)) = (r.upstream, r.upstream_duration) {
            let secs = d.as_secs_f64();
            self.upstream_duration
                .with(u.position(), self.upstream_name(u), |h| h.observe(secs));
        }
        if let Some(scope) = r.limited {
            self.ratelimited.inc(route_slot, route, scope.as_str());
        }
        if let Some(failure) = r.auth_failure {
            self.auth_failures.inc(route_slot, route, failure.reason());
        }
    }

    /// The configured routes that saw traffic, in the config's order. Totals are
    /// matched by route name, as on a scrape.
    pub(super) fn routes(&self) -> Vec<RouteTotals<'_>> {
        let totals = self.requests.totals();
        self.route_names
            .iter()
            .enumerate()
            .filter_map(|(slot, name)| {
                let requests = totals.get(name).copied()?;
                let hist = self.route_duration.get(slot);
                Some(RouteTotals {
                    name,
                    requests,
                    latency_cumulative: hist.map_or_else(
                        || vec![0; LATENCY_BUCKETS.len()],
                        |h| {
                            prometheus::core::Metric::metric(h)
                                .get_histogram()
                                .get_bucket()
                                .iter()
                                .map(|b| b.cumulative_count())
                                .collect()
                        },
                    ),
                    latency_count: hist.map_or(0, |h| h.get_sample_count()),
                })
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
