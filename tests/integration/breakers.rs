//! Circuit breakers through the real gateway against real failing upstreams.

use crate::common::*;
use serde_json::Value;
use std::time::Duration;

fn config(targets: &str, breaker: &str) -> String {
    format!(
        "upstreams:\n  backend: {{ targets: [{targets}], retries: 1, breaker: {breaker} }}\n\
         routes:\n  - {{ name: all, path_prefix: /, upstream: backend }}\n"
    )
}

/// A gateway whose admin listener publishes the breakers without a token.
fn start_public(body: &str) -> Gateway {
    Gateway::start_admin(body, "public_stats: true")
}

/// The breaker of `target` as `GET /admin/circuit-breakers` shows it.
fn breaker(gw: &Gateway, target: &std::net::SocketAddr) -> Value {
    let all = get(gw.admin, "/admin/circuit-breakers").json();
    all["upstreams"][0]["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["target"] == target.to_string()))
        .map(|t| t["breaker"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn opens_after_n_failures_then_answers_503_without_touching_the_upstream() {
    let up = Upstream::start("u");
    up.set_mode(Mode::Status(500));
    let gw = start_public(&config(
        &format!("\"{}\"", up.addr),
        "{ failures: 3, window_s: 60, open_s: 2, half_open_requests: 1 }",
    ));
    for _ in 0..3 {
        assert_eq!(
            get(gw.addr, "/x").status,
            500,
            "5xx answers pass through until it opens"
        );
    }
    assert_eq!(breaker(&gw, &up.addr)["state"], "open");
    let hits = up.hits();
    for _ in 0..10 {
        let r = get(gw.addr, "/x");
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["error"], "unavailable");
        let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(up.hits(), hits, "an open breaker let requests through");
    let metrics = get(gw.admin, "/metrics").text();
    let labels = format!("target=\"{}\",upstream=\"backend\"", up.addr);
    assert!(
        metrics.contains(&format!("floodgate_circuit_breaker_state{{{labels}}} 2")),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "floodgate_circuit_breaker_transitions_total{{target=\"{}\",to=\"open\",upstream=\"backend\"}} 1",
        up.addr
    )));
    assert_eq!(
        gw.log().matches("closed -> open").count(),
        1,
        "one log line per transition"
    );

    // After open_s one probe goes through; it fails, so the breaker opens again at once.
    assert!(eventually(Duration::from_secs(5), || get(gw.addr, "/x").status == 500));
    assert_eq!(up.hits(), hits + 1, "exactly one probe");
    assert_eq!(get(gw.addr, "/x").status, 503);
    assert_eq!(breaker(&gw, &up.addr)["state"], "open");
    assert!(gw.log().contains("half_open -> open"));

    // The upstream recovers: the next probe closes the breaker.
    up.set_mode(Mode::Echo);
    assert!(eventually(Duration::from_secs(5), || get(gw.addr, "/x").status == 200));
    assert_eq!(breaker(&gw, &up.addr)["state"], "closed");
    assert!(gw.log().contains("half_open -> closed"));
    assert!((0..10).all(|_| get(gw.addr, "/x").status == 200));
}

#[test]
fn four_xx_answers_do_not_open_it() {
    let up = Upstream::start("u");
    up.set_mode(Mode::Status(404));
    let gw = start_public(&config(
        &format!("\"{}\"", up.addr),
        "{ failures: 2, window_s: 60, open_s: 30 }",
    ));
    for _ in 0..10 {
        assert_eq!(get(gw.addr, "/x").status, 404);
    }
    assert_eq!(breaker(&gw, &up.addr)["state"], "closed");
    assert_eq!(up.hits(), 10);
}

#[test]
fn a_dead_target_is_routed_around_with_no_client_visible_error_and_its_breaker_opens() {
    let good = Upstream::start("good");
    let closed = closed_port();
    let dead = closed.addr;
    let gw = start_public(&config(
        &format!("\"{}\", \"{dead}\"", good.addr),
        "{ failures: 2, window_s: 60, open_s: 30 }",
    ));
    for i in 0..20 {
        let r = get(gw.addr, "/x");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    assert_eq!(breaker(&gw, &dead)["state"], "open");
    assert_eq!(breaker(&gw, &good.addr)["state"], "closed");
    let json = get(gw.admin, "/admin/circuit-breakers").json();
    assert_eq!(json["upstreams"][0]["name"], "backend");
    assert!(breaker(&gw, &dead)["half_open_in_s"]
        .as_f64()
        .is_some_and(|s| s > 0.0 && s <= 30.0));
}

#[test]
fn an_upstream_timeout_counts_as_a_failure() {
    let up = Upstream::start("slow");
    up.set_mode(Mode::Slow(Duration::from_millis(800)));
    let body = config(
        &format!("\"{}\"", up.addr),
        "{ failures: 2, window_s: 60, open_s: 30 }",
    )
    .replace("retries: 1,", "retries: 0, timeouts: { read_ms: 200 },");
    let gw = start_public(&body);
    assert_eq!(get(gw.addr, "/x").status, 504);
    assert_eq!(get(gw.addr, "/x").status, 504);
    assert_eq!(get(gw.addr, "/x").status, 503);
    assert_eq!(breaker(&gw, &up.addr)["state"], "open");
}
