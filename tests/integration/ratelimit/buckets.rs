//! Token buckets per consumer and per anonymous address: the burst, the 429 and its headers,
//! refill and cost, a spoofed forwarded address, and the refusals that spend nothing.

use super::{admin_token, config, start, token};
use crate::common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The burst, then a 429 with a JSON body naming the scope and when to retry, Retry-After, and the
/// rate-limit headers (RateLimit-Policy, RateLimit, X-RateLimit-Limit/-Remaining) on every answer.
#[test]
fn burst_then_429_with_its_rate_limit_headers() {
    let up = Upstream::start("u");
    let gw = start("", &format!("\"{}\"", up.addr));
    let free = token("alice", "free");
    for i in 0..10 {
        let r = get_with(gw.addr, "/api/x", &[("Authorization", &free)]);
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("ratelimit-policy"), Some("\"free\";q=10;w=10"));
        assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some((9 - i).to_string().as_str())
        );
        assert!(r
            .header("ratelimit")
            .is_some_and(|v| v.starts_with(&format!("\"free\";r={};t=", 9 - i))));
    }
    let r = get_with(gw.addr, "/api/x", &[("Authorization", &free)]);
    assert_eq!(r.status, 429);
    let body = r.json();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["scope"], "local");
    assert_eq!(body["retry_after_s"], 1);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert!(r
        .header("ratelimit")
        .is_some_and(|v| v.starts_with("\"free\";r=0;t=")));
    assert!(r.header("x-request-id").is_some());
    assert_eq!(up.hits(), 10, "a refused request reached the upstream");

    // Other consumers and other tiers are independent.
    let premium = token("bob", "premium");
    for _ in 0..20 {
        assert_eq!(
            get_with(gw.addr, "/api/x", &[("Authorization", &premium)]).status,
            200
        );
    }
    assert_eq!(
        get_with(gw.addr, "/api/x", &[("Authorization", &token("carol", "free"))]).status,
        200
    );
}

#[test]
fn two_hundred_concurrent_requests_of_one_consumer_with_burst_50_admit_exactly_50() {
    let up = Upstream::start("u");
    let gw = Arc::new(start("", &format!("\"{}\"", up.addr)));
    let auth = Arc::new(token("hot", "tiny"));
    let admitted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (gw, auth, admitted, refused) = (gw.clone(), auth.clone(), admitted.clone(), refused.clone());
            thread::spawn(move || {
                for _ in 0..10 {
                    match get_with(gw.addr, "/api/x", &[("Authorization", &auth)]).status {
                        200 => admitted.fetch_add(1, Ordering::SeqCst),
                        429 => refused.fetch_add(1, Ordering::SeqCst),
                        other => panic!("unexpected {other}"),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    assert_eq!(admitted.load(Ordering::SeqCst), 50);
    assert_eq!(refused.load(Ordering::SeqCst), 150);
}

#[test]
fn refill_cost_and_what_takes_no_tokens() {
    let up = Upstream::start("u");
    // The second target is dead: every other request is retried on the live one.
    let dead = closed_port();
    let gw = start(
        "anonymous: { rate: 0.01, burst: 3 }",
        &format!("\"{}\", \"{}\"", up.addr, dead.addr),
    );
    // Refill: 2/s, burst 2.
    let quick = token("q", "quick");
    let first_taken = Instant::now();
    for _ in 0..2 {
        assert_eq!(
            get_with(gw.addr, "/api/x", &[("Authorization", &quick)]).status,
            200
        );
    }
    let r = get_with(gw.addr, "/api/x", &[("Authorization", &quick)]);
    assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
    let refused = Instant::now();
    // A refused request takes nothing, so asking again and again does not delay the refill.
    let (mut sent, mut answered) = (refused, refused);
    let refilled = eventually(Duration::from_secs(5), || {
        sent = Instant::now();
        let status = get_with(gw.addr, "/api/x", &[("Authorization", &quick)]).status;
        answered = Instant::now();
        status == 200
    });
    assert!(refilled, "no token came back");
    // The bucket refills at 2/s from the first take on (it was full until then), so a whole
    // token exists again half a second after it: not before (the passing request was answered
    // after its token existed), and by the second Retry-After promised (with 0.1 s to spare,
    // as a client sleeping 1.1 s would see it).
    let early = answered - first_taken;
    assert!(early >= Duration::from_millis(500), "refilled after {early:?}");
    let late = sent - refused;
    assert!(
        late <= Duration::from_millis(1100),
        "still refused {late:?} after the 429"
    );

    // A retried upstream attempt takes its tokens once: 3 requests, some retried, all pass.
    let tiny = token("retry", "tiny");
    let before = up.hits();
    for _ in 0..3 {
        assert_eq!(
            get_with(gw.addr, "/api/x", &[("Authorization", &tiny)]).status,
            200
        );
    }
    assert_eq!(up.hits() - before, 3);

    // Route cost 10 against free's burst of 10: one fits, the next is refused.
    let free = token("costly", "free");
    assert_eq!(
        get_with(gw.addr, "/reports/x", &[("Authorization", &free)]).status,
        200
    );
    let r = get_with(gw.addr, "/reports/x", &[("Authorization", &free)]);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("10"), "10 tokens at 1/s");

    // A 401 takes nothing: not from the anonymous bucket (burst 3), not from anyone's.
    for _ in 0..10 {
        let r = get_with(gw.addr, "/api/x", &[("Authorization", "Bearer not.a.token")]);
        assert_eq!(r.status, 401);
    }
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/open/x").status, 200);
    }
    assert_eq!(get(gw.addr, "/open/x").status, 429);
    // Static routes are limited too, with the headers.
    let r = get(gw.addr, "/ping");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("ratelimit-policy"), Some("\"anonymous\";q=3;w=300"));
}

#[test]
fn spoofed_forwarded_for_cannot_evade_the_anonymous_limit_but_a_trusted_proxy_feeds_it() {
    let up = Upstream::start("u");
    let untrusted = start("anonymous: { rate: 0.01, burst: 2 }", &format!("\"{}\"", up.addr));
    let statuses: Vec<u16> = (0..4)
        .map(|i| {
            get_with(
                untrusted.addr,
                "/open/x",
                &[("X-Forwarded-For", &format!("10.9.9.{i}"))],
            )
            .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429, 429]);

    let trusted = start(
        "anonymous: { rate: 0.01, burst: 2 }\ntrusted_proxies: [\"127.0.0.1/32\"]",
        &format!("\"{}\"", up.addr),
    );
    for i in 0..4 {
        let r = get_with(
            trusted.addr,
            "/open/x",
            &[("X-Forwarded-For", &format!("198.51.100.{i}"))],
        );
        assert_eq!(r.status, 200, "each real client has its own bucket");
    }
    // The right-most untrusted hop is the client: a forged left part changes nothing.
    let statuses: Vec<u16> = (0..3)
        .map(|i| {
            let xff = format!("6.6.6.{i}, 203.0.113.5");
            get_with(trusted.addr, "/open/x", &[("X-Forwarded-For", &xff)]).status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
}

/// Refusals the gateway makes itself spend nothing: a declared body over the
/// route's limit (413, decided before the limits), and no healthy target (503).
#[test]
fn a_413_and_a_503_for_no_healthy_target_spend_nothing() {
    let up = Upstream::start("u");
    let dead = Upstream::start("dead");
    dead.healthy.store(false, Ordering::SeqCst);
    let extra = "  - { name: small, path_prefix: /small, upstream: backend, max_body_bytes: 10 }\n  - { name: down, path_prefix: /down, upstream: down }\n";
    let body = config(extra, &format!("\"{}\"", up.addr)).replace(
        "upstreams:\n",
        &format!(
            "upstreams:\n  down: {{ targets: [\"{}\"], health_check: {{ kind: http, interval_ms: 100 }} }}\n",
            dead.addr
        ),
    );
    let gw = Gateway::start_admin(&body, &admin_token());
    let free = token("mia", "free");
    let remaining = || {
        get_with(gw.addr, "/api/x", &[("Authorization", &free)])
            .header("x-ratelimit-remaining")
            .map(str::to_string)
    };
    assert!(eventually(Duration::from_secs(10), || {
        get_with(
            gw.addr,
            "/down/x",
            &[("Authorization", &token("probe", "premium"))],
        )
        .status
            == 503
    }));
    assert_eq!(remaining().as_deref(), Some("9"));
    for _ in 0..5 {
        let r = request(
            gw.addr,
            "POST",
            "/small/x",
            &[("Authorization", &free), ("Content-Length", "100")],
            b"",
        );
        assert_eq!(r.status, 413);
        assert_eq!(
            get_with(gw.addr, "/down/x", &[("Authorization", &free)]).status,
            503
        );
    }
    // Ten refusals later, one more request: the bucket moved by that one alone.
    assert_eq!(remaining().as_deref(), Some("8"));
}
