//! `GET /admin/stats`, the JSON the dashboard polls: totals and percentiles
//! since start (from the histograms) of the routes with the most requests, live
//! rates and recent percentiles (from the per-second counts) and the top limited
//! callers. Its size is bounded whatever the number of routes.
//! Telemetry keeps the numbers; this shapes them.

use crate::telemetry::{SecondCounts, Telemetry, LATENCY_BUCKETS};
use serde_json::{json, Value};

/// Seconds behind `recent_latency_ms`, the current one included (telemetry keeps
/// about a minute).
const RECENT_SECONDS: u64 = 10;
/// Entries in each top-limited list.
const TOP_LIMITED: usize = 10;
/// Routes listed: those with the most requests since start.
const TOP_ROUTES: usize = 50;

pub(super) fn stats(t: &Telemetry, now_s: u64) -> Value {
    let mut active = t.routes();
    let routes_with_traffic = active.len();
    // Stable: ties keep the config's order.
    active.sort_by_key(|r| std::cmp::Reverse(r.requests.all));
    active.truncate(TOP_ROUTES);
    let routes: Vec<Value> = active
        .into_iter()
        .map(|r| {
            let n = r.requests;
            json!({
                "route": r.name,
                "requests": n.all,
                "errors_5xx": n.errors_5xx,
                "errors_4xx": n.errors_4xx,
                "error_rate": if n.all == 0 { 0.0 } else { n.errors_5xx as f64 / n.all as f64 },
                "latency_ms": percentiles(&r.latency_cumulative, r.latency_count),
            })
        })
        .collect();
    // Rates are those of the last completed second: the current one is still filling.
    let last = t.second(now_s.saturating_sub(1));
    let per_second = |count: fn(&SecondCounts) -> u64| last.as_ref().map_or(0, count);
    let mut recent = [0u64; LATENCY_BUCKETS.len() + 1];
    for s in now_s.saturating_sub(RECENT_SECONDS - 1)..=now_s {
        if let Some(second) = t.second(s) {
            for (sum, n) in recent.iter_mut().zip(second.latency) {
                *sum += n;
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
    let top = |limited: Vec<(String, u64)>| -> Vec<Value> {
        limited
            .into_iter()
            .map(|(k, n)| json!({"key": k, "limited": n}))
            .collect()
    };
    json!({
        "time": now_s,
        "rps": per_second(|s| s.requests),
        "limited_per_s": per_second(|s| s.limited),
        "errors_5xx_per_s": per_second(|s| s.errors_5xx),
        "recent_latency_ms": percentiles(&cumulative, recent_count),
        "inflight": t.state.inflight.get(),
        "routes": routes,
        "routes_with_traffic": routes_with_traffic,
        "top_limited_consumers": top(t.top_limited_consumers(TOP_LIMITED)),
        "top_limited_ips": top(t.top_limited_ips(TOP_LIMITED)),
    })
}

/// p50/p90/p95/p99 in ms from cumulative bucket counts, interpolated linearly
/// within the bucket that holds each rank (as Prometheus' histogram_quantile does).
fn percentiles(cumulative: &[u64], count: u64) -> Value {
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
    json!({"p50": at(0.5), "p90": at(0.9), "p95": at(0.95), "p99": at(0.99)})
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
}
