//! Balancing, health checks, retries and upstream failures through the real gateway.

use crate::common::*;
use std::time::Duration;

fn gateway_for(targets: &[&Upstream], extra: &str) -> Gateway {
    let list: Vec<String> = targets.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    Gateway::start(&format!(
        r#"
upstreams:
  backend:
    targets: [{}]
{extra}
routes:
  - {{ name: api, path_prefix: /, upstream: backend }}
"#,
        list.join(", ")
    ))
}

#[test]
fn round_robin_spreads_evenly() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = gateway_for(&[&a, &b], "    balance: round_robin");
    served_by(&gw, 40);
    assert_eq!((a.hits(), b.hits()), (20, 20));
}

#[test]
fn random_uses_every_target() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = gateway_for(&[&a, &b], "    balance: random");
    served_by(&gw, 60);
    // Each side has probability 2^-60 of getting nothing: a real spread, not luck.
    assert!(a.hits() > 0 && b.hits() > 0, "a={} b={}", a.hits(), b.hits());
    assert_eq!(a.hits() + b.hits(), 60);
}

#[test]
fn consistent_hash_keeps_a_client_on_one_target() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = gateway_for(&[&a, &b], "    balance: consistent_hash");
    let names = served_by(&gw, 20);
    assert!(names.iter().all(|n| n == &names[0]), "{names:?}");
}

#[test]
fn unhealthy_target_stops_getting_traffic_and_gets_it_back() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = gateway_for(
        &[&a, &b],
        "    health_check: { kind: http, path: /health, interval_ms: 100 }",
    );
    served_by(&gw, 10);
    assert!(a.hits() > 0 && b.hits() > 0);

    b.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    // Wait for the background check to see it: the first 20 in a row served by `a`.
    assert!(eventually(Duration::from_secs(10), || served_by(&gw, 2)
        .iter()
        .all(|n| n == "a")));
    let before = b.hits();
    served_by(&gw, 20);
    assert_eq!(b.hits(), before, "an unhealthy target got traffic");

    b.healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(10), || served_by(&gw, 2)
        .iter()
        .any(|n| n == "b")));
}

#[test]
fn tcp_health_check_marks_a_dead_target_down() {
    let (a, mut b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = gateway_for(
        &[&a, &b],
        "    health_check: { kind: tcp, interval_ms: 100 }\n    retries: 0",
    );
    b.kill();
    // With no retries, only the health check keeps requests off the dead target.
    assert!(eventually(Duration::from_secs(10), || (0..4).all(|_| get(
        gw.addr, "/x"
    )
    .status
        == 200)));
    b.restart();
    assert!(eventually(Duration::from_secs(10), || served_by(&gw, 2)
        .iter()
        .any(|n| n == "b")));
}

#[test]
fn a_dead_target_is_retried_around() {
    let (a, mut b) = (Upstream::start("a"), Upstream::start("b"));
    b.kill();
    let gw = gateway_for(&[&a, &b], "    retries: 1");
    // No health check: every request that picks `b` fails to connect and is retried on `a`.
    let names = served_by(&gw, 20);
    assert!(names.iter().all(|n| n == "a"));
    assert_eq!(a.hits(), 20);
}

#[test]
fn every_target_dead_is_a_502_after_bounded_retries() {
    let (mut a, mut b) = (Upstream::start("a"), Upstream::start("b"));
    a.kill();
    b.kill();
    let gw = gateway_for(&[&a, &b], "    retries: 1");
    let r = get(gw.addr, "/x");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"], "bad_gateway");
    assert_eq!(r.json()["request_id"].as_str(), r.header("x-request-id"));
}

#[test]
fn no_healthy_target_is_a_503_with_retry_after() {
    let a = Upstream::start("a");
    a.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    let gw = gateway_for(&[&a], "    health_check: { kind: http, interval_ms: 100 }");
    assert!(eventually(Duration::from_secs(10), || get(gw.addr, "/x").status == 503));
    let hits = a.hits();
    let r = get(gw.addr, "/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "unavailable");
    let retry_after: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry_after >= 1);
    assert_eq!(a.hits(), hits, "a 503 must not touch the upstream");
}

#[test]
fn slow_upstream_is_a_504() {
    let a = Upstream::start("a");
    a.set_mode(Mode::Slow(Duration::from_millis(1500)));
    let gw = gateway_for(&[&a], "    timeouts: { connect_ms: 500, read_ms: 300 }");
    let r = get(gw.addr, "/x");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"], "upstream_timeout");
    assert_eq!(a.hits(), 1, "a timed-out request is not retried");
    a.set_mode(Mode::Echo);
    assert_eq!(get(gw.addr, "/x").status, 200);
}

#[test]
fn upstream_errors_pass_through_unchanged() {
    let a = Upstream::start("a");
    a.set_mode(Mode::Status(500));
    let gw = gateway_for(&[&a], "");
    let r = get(gw.addr, "/x");
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["upstream"], "a", "the upstream's own body is passed on");
    assert!(r.header("x-request-id").is_some());
}

#[test]
fn an_upstream_that_dies_and_returns_is_served_again() {
    let mut a = Upstream::start("a");
    let gw = gateway_for(&[&a], "    retries: 0");
    assert_eq!(get(gw.addr, "/x").status, 200);
    a.kill();
    assert_eq!(get(gw.addr, "/x").status, 502);
    a.restart();
    assert!(eventually(Duration::from_secs(5), || get(gw.addr, "/x").status == 200));
}
