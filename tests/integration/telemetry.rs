//! Metrics, access log, stats and the dashboard, after real traffic through the
//! real gateway.

use crate::common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

const SECRET: &str = "telemetry-test-secret-0123456789abcdef";

fn token(sub: &str) -> String {
    hs256_bearer(SECRET, sub, "tiny")
}

struct Fixture {
    gw: Gateway,
    _ok: Upstream,
    _failing: Upstream,
    _slow: Upstream,
}

fn start(extra: &str) -> Fixture {
    let ok = Upstream::start("ok");
    let failing = Upstream::start("failing");
    failing.set_mode(Mode::Status(503));
    let slow = Upstream::start("slow");
    slow.set_mode(Mode::Slow(Duration::from_millis(60)));
    let body = format!(
        r#"
auth:
  jwt:
    keys: [{{ alg: HS256, secret: "{SECRET}" }}]
  default_tier: tiny
tiers:
  tiny: {{ rate: 0.01, burst: 2 }}
anonymous: {{ rate: 0.01, burst: 3 }}
upstreams:
  ok: {{ targets: ["{ok}"] }}
  failing: {{ targets: ["{failing}"] }}
  slow: {{ targets: ["{slow}"] }}
routes:
  - {{ name: api, path_prefix: /api, upstream: ok }}
  - {{ name: broken, path_prefix: /broken, upstream: failing, auth: none }}
  - {{ name: slow, path_prefix: /slow, upstream: slow, auth: none }}
{extra}"#,
        ok = ok.addr,
        failing = failing.addr,
        slow = slow.addr,
    );
    Fixture {
        gw: Gateway::start_admin(&body, "public_stats: true"),
        _ok: ok,
        _failing: failing,
        _slow: slow,
    }
}

/// The value of one sample line of the Prometheus text, by its exact labels.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == name_and_labels).then(|| value.parse().ok()).flatten()
    })
}

#[test]
fn counters_and_histograms_carry_bounded_labels_and_the_right_values() {
    let s = start("access_log: off");
    let gw = &s.gw;
    let alice = token("alice-secret-consumer");
    for _ in 0..2 {
        assert_eq!(
            get_with(gw.addr, "/api/x", &[("Authorization", &alice)]).status,
            200
        );
    }
    assert_eq!(
        get_with(gw.addr, "/api/x", &[("Authorization", &alice)]).status,
        429
    );
    assert_eq!(get(gw.addr, "/api/x").status, 401);
    assert_eq!(
        get_with(gw.addr, "/api/x", &[("Authorization", "Bearer bad.token.x")]).status,
        401
    );
    assert_eq!(get(gw.addr, "/nowhere/unique-path-123").status, 404);
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/broken/x").status, 503);
    }
    assert_eq!(get(gw.addr, "/broken/x").status, 429, "anonymous burst of 3");
    let m = get(gw.admin, "/metrics").text();

    let cases = [
        (
            r#"floodgate_requests_total{method="GET",route="api",status="200"}"#,
            2.0,
        ),
        (
            r#"floodgate_requests_total{method="GET",route="api",status="429"}"#,
            1.0,
        ),
        (
            r#"floodgate_requests_total{method="GET",route="api",status="401"}"#,
            2.0,
        ),
        (
            r#"floodgate_requests_total{method="GET",route="none",status="404"}"#,
            1.0,
        ),
        (
            r#"floodgate_requests_total{method="GET",route="broken",status="503"}"#,
            3.0,
        ),
        (r#"floodgate_ratelimited_total{route="api",scope="local"}"#, 1.0),
        (
            r#"floodgate_ratelimited_total{route="broken",scope="local"}"#,
            1.0,
        ),
        (
            r#"floodgate_auth_failures_total{reason="missing",route="api"}"#,
            1.0,
        ),
        (
            r#"floodgate_auth_failures_total{reason="malformed",route="api"}"#,
            1.0,
        ),
        (r#"floodgate_request_duration_seconds_count{route="api"}"#, 5.0),
        (r#"floodgate_upstream_duration_seconds_count{upstream="ok"}"#, 2.0),
        (
            r#"floodgate_upstream_duration_seconds_count{upstream="failing"}"#,
            3.0,
        ),
        ("floodgate_inflight_requests", 0.0),
        ("floodgate_global_limit_degraded", 0.0),
    ];
    for (name, want) in cases {
        assert_eq!(sample(&m, name), Some(want), "{name} in:\n{m}");
    }
    let healthy = m
        .lines()
        .any(|l| l.starts_with("floodgate_upstream_healthy{") && l.ends_with(" 1"));
    assert!(healthy);
    for family in [
        "floodgate_circuit_breaker_state",
        "floodgate_redis_sync_errors_total",
        "floodgate_redis_last_sync_timestamp_seconds",
    ] {
        assert!(m.contains(&format!("# TYPE {family}")) || family == "floodgate_circuit_breaker_state");
    }
    for private in [
        "alice-secret-consumer",
        "unique-path-123",
        "/api/x",
        "127.0.0.1\"",
    ] {
        assert!(!m.contains(private), "{private} leaked into /metrics");
    }
}

#[test]
fn access_log_lines_are_json_with_the_request_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let s = start(&format!("access_log: \"{}\"", path.display()));
    let mut ids = HashSet::new();
    for p in ["/api/x", "/nowhere", "/broken/x"] {
        let r = get(s.gw.addr, p);
        ids.insert(r.header("x-request-id").expect("request id").to_string());
    }
    let alice = token("alice");
    let r = get_with(s.gw.addr, "/api/x?q=1", &[("Authorization", &alice)]);
    ids.insert(r.header("x-request-id").expect("request id").to_string());
    let lines = || std::fs::read_to_string(&path).unwrap_or_default();
    assert!(eventually(Duration::from_secs(5), || lines().lines().count() >= 4));
    let parsed: Vec<Value> = lines()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let logged: HashSet<String> = parsed
        .iter()
        .filter_map(|v| v["request_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(logged, ids);
    let ok = parsed.iter().find(|v| v["status"] == 200).expect("the 200");
    assert_eq!(ok["route"], "api");
    assert_eq!(ok["consumer"], "alice");
    assert_eq!(ok["path"], "/api/x");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["client_ip"], "127.0.0.1");
    assert!(ok["upstream"]
        .as_str()
        .is_some_and(|u| u.starts_with("127.0.0.1:")));
    assert!(ok["latency_ms"].as_f64().is_some_and(|l| l > 0.0));
    assert!(ok["time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 24));
    let missing = parsed.iter().find(|v| v["status"] == 401).expect("the 401");
    assert!(missing["consumer"].is_null());
    let unknown = parsed.iter().find(|v| v["status"] == 404).expect("the 404");
    assert!(unknown["route"].is_null());
    // The token never reaches the access log.
    assert!(!lines().contains(alice.trim_start_matches("Bearer ")));
}

#[test]
fn stats_percentiles_follow_the_traffic_and_name_the_top_limited() {
    let s = start("access_log: off");
    let statuses: Vec<u16> = (0..20).map(|_| get(s.gw.addr, "/slow/x").status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 17);
    let stats = get(s.gw.admin, "/admin/stats").json();
    let slow = stats["routes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["route"] == "slow"))
        .cloned()
        .expect("slow route");
    assert_eq!(slow["requests"], 20);
    // 3 answered by the upstream after 60 ms, 17 refused at once: p50 fast, p99 slow.
    let p50 = slow["latency_ms"]["p50"].as_f64().expect("p50");
    let p99 = slow["latency_ms"]["p99"].as_f64().expect("p99");
    assert!(p50 < 50.0, "p50 {p50}");
    assert!((50.0..=100.0).contains(&p99), "p99 {p99}");
    let top = &stats["top_limited_ips"][0];
    assert_eq!(top["key"], "127.0.0.1");
    assert_eq!(top["limited"], 17);
    assert!(stats["recent_latency_ms"]["p99"].as_f64().is_some());
}

#[test]
fn the_dashboard_renders_live_data_in_headless_chromium() {
    let s = start("access_log: off");
    for _ in 0..5 {
        get(s.gw.addr, "/broken/x");
    }
    let page = get(s.gw.admin, "/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<canvas"));
    assert!(
        !page.text().contains("http://") && !page.text().contains("https://"),
        "no CDN"
    );
    let dom = rendered_dom(&format!("http://{}/", s.gw.admin));
    assert!(dom.contains("data-updated="), "the page never loaded data: {dom}");
    assert!(dom.contains("live · updated"), "{dom}");
    assert!(
        dom.contains("<td>broken</td>"),
        "routes table not rendered: {dom}"
    );
    assert!(
        dom.contains("<td>127.0.0.1</td>"),
        "top limited addresses not rendered: {dom}"
    );
}

#[test]
fn ten_thousand_routes_cost_no_series_until_their_first_request() {
    let up = Upstream::start("ok");
    let mut body = format!(
        r#"
auth:
  default_tier: free
  api_keys:
    keys:
      - {{ consumer: bench, key: "sha256:88e25f587f42453eeca4edbd33293e4d348d9a594b23c649f70bb5169c80592a", tier: free }}
tiers:
  free: {{ rate: 1000, burst: 1000 }}
upstreams:
  ok: {{ targets: ["{}"] }}
access_log: off
routes:
"#,
        up.addr
    );
    for i in 0..10_000 {
        body.push_str(&format!(
            "  - {{ name: r{i}, path_prefix: /r{i}/, upstream: ok, limits: {{ free: {{ rate: 100, burst: 100 }} }} }}\n"
        ));
    }
    let gw = Gateway::start_admin(&body, "public_stats: true");
    let before = get(gw.admin, "/metrics").text();
    assert!(before.len() < 2_000_000, "{} bytes", before.len());
    assert!(
        !before.contains("route=\""),
        "a route series before any traffic:\n{before}"
    );
    let stats = get(gw.admin, "/admin/stats").text();
    assert!(stats.len() < 2_000, "{} bytes of stats", stats.len());

    let key = [("X-API-Key", "bench-key-0123456789")];
    assert_eq!(get_with(gw.addr, "/r7/x", &key).status, 200);
    assert_eq!(get(gw.addr, "/r8/x").status, 401);
    let m = get(gw.admin, "/metrics").text();
    for (name, want) in [
        (
            r#"floodgate_requests_total{method="GET",route="r7",status="200"}"#,
            1.0,
        ),
        (r#"floodgate_request_duration_seconds_count{route="r7"}"#, 1.0),
        (
            r#"floodgate_requests_total{method="GET",route="r8",status="401"}"#,
            1.0,
        ),
        (
            r#"floodgate_auth_failures_total{reason="missing",route="r8"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&m, name), Some(want), "{name} in:\n{m}");
    }
    let route_lines = |route: &str, family: &str| {
        m.lines()
            .filter(|l| l.starts_with(family) && l.contains(&format!("route=\"{route}\"")))
            .count()
    };
    assert_eq!(route_lines("r7", "floodgate_auth_failures_total"), 0);
    assert_eq!(
        route_lines("r8", "floodgate_auth_failures_total"),
        1,
        "only its own reason"
    );
    assert_eq!(route_lines("r7", "floodgate_ratelimited_total"), 0);
    assert_eq!(route_lines("r7", "floodgate_websocket"), 0);
    assert_eq!(route_lines("r9", "floodgate_"), 0, "a route with no traffic");

    let stats = get(gw.admin, "/admin/stats").json();
    assert_eq!(stats["routes_with_traffic"], 2);
    let listed: Vec<&str> = stats["routes"]
        .as_array()
        .map(|rs| rs.iter().filter_map(|r| r["route"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, ["r7", "r8"]);
}
