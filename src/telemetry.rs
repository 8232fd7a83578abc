//! Metrics, access log and live stats, all recorded once per request in the
//! proxy's `logging` phase (which also runs for the gateway's own 401/403/429s).
//!
//! Labels are bounded: route names, methods (unknown ones as `OTHER`), statuses,
//! upstream names and targets from the config, scopes and reasons from fixed sets.
//! Never a raw path, a consumer or a client address. The access log is handed to
//! a writer task through a bounded channel: a full channel drops the line and
//! counts it, and never holds up a request.

use crate::vocab::limit_key::LimitKey;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Latency buckets (seconds) shared by the histograms and the live stats ring.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Seconds of live history kept for `/admin/stats`.
const RING_SECONDS: usize = 64;
/// Distinct limited callers remembered per period: a flood cannot grow it.
const MAX_TOP_KEYS: usize = 10_000;
/// The "top limited" lists cover the current and the previous period.
const TOP_PERIOD_S: u64 = 300;
pub const ACCESS_LOG_QUEUE: usize = 16_384;

/// One finished request, as the `logging` phase saw it.
pub struct RequestRecord<'a> {
    pub route: Option<usize>,
    pub method: &'a http::Method,
    pub status: u16,
    pub duration: Duration,
    pub upstream: Option<usize>,
    pub upstream_duration: Option<Duration>,
    pub limited: Option<&'static str>,
    pub auth_failure: Option<&'static str>,
    /// Who got limited, for the top lists: a consumer id or a client address.
    pub limited_key: Option<LimitKey>,
}

/// One access-log line, borrowed from the request's state and
/// serialized straight into the one buffer that is queued.
#[derive(Serialize)]
pub struct AccessLine<'a> {
    #[serde(rename = "time", serialize_with = "as_rfc3339")]
    pub time_ms: u64,
    pub request_id: &'a str,
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    #[serde(serialize_with = "display_opt")]
    pub upstream: Option<std::net::SocketAddr>,
    pub consumer: Option<&'a str>,
    pub limited: Option<&'static str>,
    #[serde(serialize_with = "display_opt")]
    pub client_ip: Option<IpAddr>,
}

fn as_rfc3339<S: serde::Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&rfc3339(*ms))
}

fn display_opt<T: std::fmt::Display, S: serde::Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Per-second counts for the last minute, without locks: each slot remembers which
/// second it holds and is reset by the first writer of a new second.
struct Ring {
    second: [AtomicU64; RING_SECONDS],
    requests: [AtomicU64; RING_SECONDS],
    limited: [AtomicU64; RING_SECONDS],
    errors: [AtomicU64; RING_SECONDS],
    latency: [[AtomicU64; LATENCY_BUCKETS.len() + 1]; RING_SECONDS],
}

impl Ring {
    fn new() -> Self {
        Ring {
            second: std::array::from_fn(|_| AtomicU64::new(0)),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            limited: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    fn slot(&self, now_s: u64) -> usize {
        let i = (now_s % RING_SECONDS as u64) as usize;
        let held = self.second[i].load(Ordering::Acquire);
        if held != now_s
            && self.second[i]
                .compare_exchange(held, now_s, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // Counts of a request racing this reset may land in the old second: stats only.
            self.requests[i].store(0, Ordering::Relaxed);
            self.limited[i].store(0, Ordering::Relaxed);
            self.errors[i].store(0, Ordering::Relaxed);
            for b in &self.latency[i] {
                b.store(0, Ordering::Relaxed);
            }
        }
        i
    }

    fn record(&self, now_s: u64, status: u16, duration: Duration) {
        let i = self.slot(now_s);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        if status == 429 {
            self.limited[i].fetch_add(1, Ordering::Relaxed);
        }
        if status >= 500 {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
        let secs = duration.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[i][bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The completed second `s`, if the ring still holds it.
    fn second(&self, s: u64) -> Option<usize> {
        let i = (s % RING_SECONDS as u64) as usize;
        (self.second[i].load(Ordering::Acquire) == s).then_some(i)
    }
}

#[derive(Default)]
struct TopLimited {
    period: u64,
    current: HashMap<String, u64>,
    previous: HashMap<String, u64>,
}

impl TopLimited {
    fn add(&mut self, key: String, now_s: u64) {
        let period = now_s / TOP_PERIOD_S;
        if period != self.period {
            self.previous = if period == self.period + 1 {
                std::mem::take(&mut self.current)
            } else {
                HashMap::new()
            };
            self.current.clear();
            self.period = period;
        }
        let len = self.current.len();
        match self.current.get_mut(&key) {
            Some(n) => *n += 1,
            None if len < MAX_TOP_KEYS => {
                self.current.insert(key, 1);
            }
            None => {}
        }
    }

    fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut sum: HashMap<&str, u64> = HashMap::new();
        for (k, v) in self.current.iter().chain(self.previous.iter()) {
            *sum.entry(k.as_str()).or_default() += v;
        }
        let mut all: Vec<(String, u64)> = sum.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

pub struct Telemetry {
    registry: Registry,
    route_names: Vec<String>,
    upstream_names: Vec<String>,
    requests: RequestCounters,
    route_duration: Vec<Histogram>,
    /// For requests that matched no route.
    unrouted_duration: Histogram,
    upstream_duration: Vec<Histogram>,
    ratelimited: IntCounterVec,
    auth_failures: IntCounterVec,
    pub inflight: IntGauge,
    pub breaker_state: IntGaugeVec,
    pub breaker_transitions: IntCounterVec,
    pub upstream_healthy: IntGaugeVec,
    pub redis_sync_errors: IntCounter,
    pub redis_last_sync: IntGauge,
    pub global_limit_degraded: IntGauge,
    access_log_dropped: IntCounter,
    access_log: Option<SyncSender<Vec<u8>>>,
    ring: Ring,
    top_consumers: Mutex<TopLimited>,
    top_ips: Mutex<TopLimited>,
}

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
}

/// Registers `metric` and hands it back.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> prometheus::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Telemetry {
    /// `route_names` in route-table order, `upstream_names` in pool order.
    pub fn new(
        route_names: Vec<String>,
        upstream_names: Vec<String>,
        access_log: Option<SyncSender<Vec<u8>>>,
    ) -> prometheus::Result<Self> {
        let registry = Registry::new();
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
        let inflight = registered(
            &registry,
            IntGauge::new("floodgate_inflight_requests", "Requests in progress")?,
        )?;
        let breaker_state = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("floodgate_circuit_breaker_state", "0 closed, 1 half-open, 2 open"),
                &["upstream", "target"],
            )?,
        )?;
        let breaker_transitions = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "floodgate_circuit_breaker_transitions_total",
                    "Breaker state changes, by new state",
                ),
                &["upstream", "target", "to"],
            )?,
        )?;
        let upstream_healthy = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "floodgate_upstream_healthy",
                    "1 when the target passes its health check",
                ),
                &["upstream", "target"],
            )?,
        )?;
        let redis_sync_errors = registered(
            &registry,
            IntCounter::new("floodgate_redis_sync_errors_total", "Failed Redis syncs")?,
        )?;
        let redis_last_sync = registered(
            &registry,
            IntGauge::new(
                "floodgate_redis_last_sync_timestamp_seconds",
                "Unix time of the last good Redis sync",
            )?,
        )?;
        let global_limit_degraded = registered(
            &registry,
            IntGauge::new(
                "floodgate_global_limit_degraded",
                "1 while Redis is unreachable and global limits run degraded",
            )?,
        )?;
        let access_log_dropped = registered(
            &registry,
            IntCounter::new(
                "floodgate_access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind",
            )?,
        )?;
        // Histograms resolved once per route and upstream: no label lookup per request.
        let route_duration = route_names
            .iter()
            .map(|r| request_duration.with_label_values(&[r.as_str()]))
            .collect();
        let unrouted_duration = request_duration.with_label_values(&["none"]);
        let upstream_hist = upstream_names
            .iter()
            .map(|u| upstream_duration.with_label_values(&[u.as_str()]))
            .collect();
        let requests = RequestCounters::new(requests, route_names.len() + 1);
        Ok(Telemetry {
            registry,
            route_names,
            upstream_names,
            requests,
            route_duration,
            unrouted_duration,
            upstream_duration: upstream_hist,
            ratelimited,
            auth_failures,
            inflight,
            breaker_state,
            breaker_transitions,
            upstream_healthy,
            redis_sync_errors,
            redis_last_sync,
            global_limit_degraded,
            access_log_dropped,
            access_log,
            ring: Ring::new(),
            top_consumers: Mutex::new(TopLimited::default()),
            top_ips: Mutex::new(TopLimited::default()),
        })
    }

    pub fn route_name(&self, route: Option<usize>) -> &str {
        route
            .and_then(|r| self.route_names.get(r))
            .map_or("none", String::as_str)
    }

    pub fn upstream_name(&self, upstream: usize) -> &str {
        self.upstream_names.get(upstream).map_or("none", String::as_str)
    }

    pub fn access_log_enabled(&self) -> bool {
        self.access_log.is_some()
    }

    pub fn record(&self, r: &RequestRecord<'_>, now_s: u64) {
        let route = self.route_name(r.route);
        // Routes take slots 0..n; requests that matched none take slot n.
        let route_slot = r.route.unwrap_or(self.route_names.len());
        self.requests
            .inc(route_slot, route, method_index(r.method), r.status);
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
            self.ratelimited.with_label_values(&[route, scope]).inc();
        }
        if let Some(reason) = r.auth_failure {
            self.auth_failures.with_label_values(&[route, reason]).inc();
        }
        self.ring.record(now_s, r.status, r.duration);
        match &r.limited_key {
            Some(LimitKey::Consumer(c)) => lock(&self.top_consumers).add(c.to_string(), now_s),
            Some(LimitKey::Ip(ip)) => lock(&self.top_ips).add(ip.to_string(), now_s),
            None => {}
        }
    }

    /// Queue an access-log line; never waits.
    pub fn log_access(&self, line: &AccessLine<'_>) {
        if let Some(tx) = &self.access_log {
            let mut buf = Vec::with_capacity(320);
            if serde_json::to_writer(&mut buf, line).is_ok() {
                buf.push(b'\n');
                if tx.try_send(buf).is_err() {
                    self.access_log_dropped.inc();
                }
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("metrics encoding failed: {e}");
        }
        out
    }

    /// `/admin/stats`: per route totals and percentiles (from the histograms), live
    /// rates (from the per-second ring) and the top limited callers.
    pub fn stats(&self, now_s: u64) -> serde_json::Value {
        let families = self.registry.gather();
        let mut routes = Vec::new();
        for (i, name) in self.route_names.iter().enumerate() {
            let mut total = 0u64;
            let mut errors = 0u64;
            let mut client_errors = 0u64;
            for f in families.iter().filter(|f| f.name() == "floodgate_requests_total") {
                for m in f.get_metric() {
                    let labels: HashMap<&str, &str> =
                        m.get_label().iter().map(|l| (l.name(), l.value())).collect();
                    if labels.get("route") != Some(&name.as_str()) {
                        continue;
                    }
                    let n = m.get_counter().get_value() as u64;
                    total += n;
                    match labels.get("status").and_then(|s| s.parse::<u16>().ok()) {
                        Some(s) if s >= 500 => errors += n,
                        Some(s) if s >= 400 => client_errors += n,
                        _ => {}
                    }
                }
            }
            let hist = &self.route_duration[i];
            let cumulative: Vec<u64> = {
                let proto = prometheus::core::Metric::metric(hist);
                proto
                    .get_histogram()
                    .get_bucket()
                    .iter()
                    .map(|b| b.cumulative_count())
                    .collect()
            };
            let count = hist.get_sample_count();
            routes.push(serde_json::json!({
                "route": name,
                "requests": total,
                "errors_5xx": errors,
                "errors_4xx": client_errors,
                "error_rate": if total == 0 { 0.0 } else { errors as f64 / total as f64 },
                "latency_ms": percentiles(&cumulative, count),
            }));
        }
        let last = now_s.saturating_sub(1);
        let per_second = |counts: &[AtomicU64; RING_SECONDS]| {
            self.ring
                .second(last)
                .map_or(0, |i| counts[i].load(Ordering::Relaxed))
        };
        // Percentiles over the last 10 seconds, this one included.
        let mut recent = vec![0u64; LATENCY_BUCKETS.len() + 1];
        for s in now_s.saturating_sub(9)..=now_s {
            if let Some(i) = self.ring.second(s) {
                for (b, c) in recent.iter_mut().zip(&self.ring.latency[i]) {
                    *b += c.load(Ordering::Relaxed);
                }
            }
        }
        let mut running = 0;
        let cumulative: Vec<u64> = recent[..LATENCY_BUCKETS.len()]
            .iter()
            .map(|c| {
                running += c;
                running
            })
            .collect();
        let recent_count: u64 = recent.iter().sum();
        let top = |t: &Mutex<TopLimited>| -> Vec<serde_json::Value> {
            lock(t)
                .top(10)
                .into_iter()
                .map(|(k, n)| serde_json::json!({"key": k, "limited": n}))
                .collect()
        };
        serde_json::json!({
            "time": now_s,
            "rps": per_second(&self.ring.requests),
            "limited_per_s": per_second(&self.ring.limited),
            "errors_5xx_per_s": per_second(&self.ring.errors),
            "recent_latency_ms": percentiles(&cumulative, recent_count),
            "inflight": self.inflight.get(),
            "routes": routes,
            "top_limited_consumers": top(&self.top_consumers),
            "top_limited_ips": top(&self.top_ips),
        })
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T10:49:30.123Z`.
pub fn rfc3339(unix_ms: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(unix_ms))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// p50/p90/p95/p99 in ms from cumulative bucket counts, interpolated linearly
/// within the bucket that holds each rank (as Prometheus' histogram_quantile does).
fn percentiles(cumulative: &[u64], count: u64) -> serde_json::Value {
    let at = |q: f64| -> Option<f64> {
        if count == 0 {
            return None;
        }
        let rank = q * count as f64;
        let i = cumulative.iter().position(|c| *c as f64 >= rank)?;
        let (lo, below) = if i == 0 {
            (0.0, 0)
        } else {
            (LATENCY_BUCKETS[i - 1], cumulative[i - 1])
        };
        let hi = LATENCY_BUCKETS[i];
        let inside = (cumulative[i] - below).max(1) as f64;
        Some((lo + (hi - lo) * (rank - below as f64) / inside) * 1000.0)
    };
    serde_json::json!({"p50": at(0.5), "p90": at(0.9), "p95": at(0.95), "p99": at(0.99)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_within_buckets() {
        // 100 samples: 50 in (0, 0.5ms], 40 in (1ms, 2.5ms], 10 in (5ms, 10ms].
        let mut per_bucket = [0u64; LATENCY_BUCKETS.len()];
        per_bucket[0] = 50;
        per_bucket[2] = 40;
        per_bucket[4] = 10;
        let mut running = 0;
        let cumulative: Vec<u64> = per_bucket
            .iter()
            .map(|c| {
                running += c;
                running
            })
            .collect();
        let p = percentiles(&cumulative, 100);
        assert!((p["p50"].as_f64().unwrap_or(0.0) - 0.5).abs() < 1e-9);
        assert!((p["p90"].as_f64().unwrap_or(0.0) - 2.5).abs() < 1e-9);
        assert!((p["p99"].as_f64().unwrap_or(0.0) - 9.5).abs() < 1e-9);
        assert!(percentiles(&cumulative, 0)["p50"].is_null());
    }

    #[test]
    fn top_limited_is_bounded_and_sorted() {
        let mut t = TopLimited::default();
        for i in 0..(MAX_TOP_KEYS + 100) {
            t.add(format!("k{i}"), 1000);
        }
        for _ in 0..5 {
            t.add("hot".into(), 1000);
        }
        assert!(t.current.len() <= MAX_TOP_KEYS);
        assert_eq!(t.top(1)[0].0, "k0");
        let mut t = TopLimited::default();
        t.add("a".into(), 0);
        t.add("b".into(), 0);
        t.add("b".into(), TOP_PERIOD_S); // the next period: both still count
        assert_eq!(t.top(2), vec![("b".to_string(), 2), ("a".to_string(), 1)]);
        t.add("c".into(), TOP_PERIOD_S * 5); // long after: forgotten
        assert_eq!(t.top(5), vec![("c".to_string(), 1)]);
    }

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
        assert_eq!(
            method_index(&http::Method::from_bytes(b"BREW").expect("method")),
            9
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_430_970_123).to_string(), "2026-11-23T10:49:30.123Z");
        assert_eq!(rfc3339(951_782_400_000).to_string(), "2000-02-29T00:00:00.000Z");
    }
}
