//! Rate limiting through the real gateway: token buckets per consumer and per
//! anonymous address, the 429 and its headers, and the global window shared
//! through a real redis-server that tests kill, restart and freeze.

use crate::common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "rate-limit-test-secret-0123456789abcdef";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn token(sub: &str, tier: &str) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let claims = json!({"sub": sub, "tier": tier, "exp": exp});
    let auth = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    format!("Bearer {auth}")
}

/// Tiers: `free` is the seed tier; `tiny` refills so slowly a test never sees it.
fn config(extra: &str, upstream: &str) -> String {
    format!(
        r#"
auth:
  jwt:
    keys: [{{ alg: HS256, secret: "{SECRET}" }}]
  default_tier: free
tiers:
  free: {{ rate: 1, burst: 10 }}
  premium: {{ rate: 20, burst: 200 }}
  tiny: {{ rate: 0.01, burst: 50 }}
  quick: {{ rate: 2, burst: 2 }}
upstreams:
  backend: {{ targets: [{upstream}], retries: 1 }}
routes:
  - {{ name: api, path_prefix: /api, upstream: backend }}
  - {{ name: reports, path_prefix: /reports, upstream: backend, cost: 10 }}
  - {{ name: open, path_prefix: /open, upstream: backend, auth: none }}
  - {{ name: ping, path_prefix: /ping, respond: {{ status: 200, body: pong }}, auth: none }}
{extra}"#
    )
}

fn admin_token() -> String {
    format!("token: \"{ADMIN_TOKEN}\"")
}

fn start(extra: &str, upstream: &str) -> Gateway {
    Gateway::start_admin(&config(extra, upstream), &admin_token())
}

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

#[test]
fn a_global_limit_without_redis_is_enforced_by_the_single_instance() {
    let up = Upstream::start("u");
    let body = config("", &format!("\"{}\"", up.addr)).replace(
        "{ name: open, path_prefix: /open, upstream: backend, auth: none }",
        "{ name: open, path_prefix: /open, upstream: backend, auth: none, global_limit: { rate: 5, per_s: 60 } }",
    );
    let gw = Gateway::start(&body);
    let ok = (0..10).filter(|_| get(gw.addr, "/open/x").status == 200).count();
    assert_eq!(ok, 5);
    let r = get(gw.addr, "/open/x");
    assert_eq!(r.json()["scope"], "global");
    assert!(r
        .header("ratelimit")
        .is_some_and(|v| v.contains("\"global\";r=0")));
}

fn global_config(upstream: &Upstream, redis_url: &str, limit: u64, mode: &str) -> String {
    config(
        &format!("redis: {{ url: \"{redis_url}\", on_unavailable: {mode} }}"),
        &format!("\"{}\"", upstream.addr),
    )
    .replace(
        "{ name: open, path_prefix: /open, upstream: backend, auth: none }",
        &format!(
            "{{ name: open, path_prefix: /open, upstream: backend, auth: none, global_limit: {{ rate: {limit}, per_s: 1 }} }}"
        ),
    )
}

fn unix_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[test]
fn three_instances_sharing_redis_hold_the_global_limit_within_ten_percent() {
    let redis = Redis::start();
    let up = Upstream::start("u");
    let limit = 100u64;
    let gws = Arc::new(gateways(
        &global_config(&up, &redis.url(), limit, "local_share"),
        "",
        3,
    ));
    // Wait for every instance to have synced (all three heartbeats are in).
    assert!(eventually(Duration::from_secs(10), || {
        redis_cmd(redis.addr(), &["ZCARD", "floodgate:instances"]).is_some_and(|r| r.starts_with(":3"))
    }));
    let stop = Arc::new(AtomicBool::new(false));
    // Admissions stamped by their unix time, so counts can be read over whole windows.
    let stamps = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (gws, stop, stamps) = (gws.clone(), stop.clone(), stamps.clone());
            thread::spawn(move || {
                let gw = &gws[i % 3];
                while !stop.load(Ordering::SeqCst) {
                    let r = get(gw.addr, "/open/x");
                    assert!(r.status == 200 || r.status == 429, "unexpected {}", r.status);
                    if r.status == 200 {
                        stamps.lock().expect("stamps").push(unix_secs_f64());
                    }
                }
            })
        })
        .collect();
    // Not a wait: the load runs for six whole windows, and what is measured is its admissions.
    thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client");
    }
    let stamps = stamps.lock().expect("stamps");
    let first = stamps.iter().cloned().fold(f64::MAX, f64::min).floor();
    // Skip the first two windows (warm-up), count four whole windows.
    let (from, to) = (first + 2.0, first + 6.0);
    let admitted = stamps.iter().filter(|t| **t >= from && **t < to).count() as f64;
    let expected = (limit * 4) as f64;
    eprintln!("global window: {admitted} admitted over 4 windows of {limit}");
    assert!(
        (admitted - expected).abs() <= expected * 0.10,
        "{admitted} admitted over 4 windows, want {expected} ± 10%"
    );
}

/// Load on one gateway from a thread; returns (statuses seen, stop flag, handle).
fn drive(
    addr: std::net::SocketAddr,
) -> (
    Arc<std::sync::Mutex<Vec<u16>>>,
    Arc<AtomicBool>,
    thread::JoinHandle<()>,
) {
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (statuses.clone(), stop.clone());
    let handle = thread::spawn(move || {
        while !st.load(Ordering::SeqCst) {
            let status = get(addr, "/open/x").status;
            s.lock().expect("statuses").push(status);
            // Pacing, not waiting: steady traffic, not as much as the loop could send.
            thread::sleep(Duration::from_millis(5));
        }
    });
    (statuses, stop, handle)
}

#[test]
fn redis_killed_mid_run_requests_flow_and_sync_resumes_with_the_counts_taken_meanwhile() {
    let mut redis = Redis::start();
    let up = Upstream::start("u");
    let gw = Gateway::start(&global_config(&up, &redis.url(), 1000, "local_share"));
    let (statuses, stop, handle) = drive(gw.addr);
    assert!(eventually(Duration::from_secs(10), || {
        redis_cmd(redis.addr(), &["KEYS", "{floodgate:gl:open}:*"])
            .is_some_and(|r| r.contains("floodgate:gl:open}"))
    }));
    redis.kill();
    assert!(eventually(Duration::from_secs(10), || gw
        .log()
        .contains("redis sync failing")));
    // Requests taken during the outage: counts the sync has to push once Redis is back.
    let during = statuses.lock().expect("statuses").len() + 20;
    assert!(eventually(Duration::from_secs(10), || {
        statuses.lock().expect("statuses").len() >= during
    }));
    redis.restart(); // same port, empty
    assert!(eventually(Duration::from_secs(15), || gw
        .log()
        .contains("redis sync restored")));
    // The counts of the outage's current window were pushed to the fresh Redis.
    assert!(eventually(Duration::from_secs(5), || {
        redis_cmd(redis.addr(), &["KEYS", "{floodgate:gl:open}:*"])
            .is_some_and(|r| r.contains("floodgate:gl:open}"))
    }));
    stop.store(true, Ordering::SeqCst);
    handle.join().expect("driver");
    let statuses = statuses.lock().expect("statuses");
    assert!(statuses.len() > 50);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "requests failed during the outage"
    );
    assert_eq!(
        gw.log().matches("redis sync failing").count(),
        1,
        "one log line per outage"
    );
}

#[test]
fn a_frozen_redis_holds_up_no_request() {
    let redis = Redis::start();
    let up = Upstream::start("u");
    let gw = Gateway::start(&global_config(&up, &redis.url(), 1_000_000, "local_share"));
    assert!(eventually(Duration::from_secs(10), || {
        redis_cmd(redis.addr(), &["ZCARD", "floodgate:instances"]).is_some_and(|r| r.starts_with(":1"))
    }));
    redis.freeze();
    let started = Instant::now();
    let mut served = 0;
    // Requests keep being answered while the sync is stuck on the frozen server
    // (its calls time out and it degrades), however many there are.
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(get(gw.addr, "/open/x").status, 200);
        served += 1;
    }
    assert!(served > 20);
    assert!(eventually(Duration::from_secs(10), || gw
        .log()
        .contains("redis sync failing")));
    redis.thaw();
    assert!(eventually(Duration::from_secs(15), || gw
        .log()
        .contains("redis sync restored")));
}

#[test]
fn deny_and_allow_modes_when_redis_is_unreachable() {
    let up = Upstream::start("u");
    let closed = closed_port();
    let nowhere = format!("redis://{}/0", closed.addr);
    let deny = Gateway::start(&global_config(&up, &nowhere, 1000, "deny"));
    assert!(eventually(Duration::from_secs(10), || deny
        .log()
        .contains("redis sync failing")));
    let r = get(deny.addr, "/open/x");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["scope"], "global");
    assert_eq!(
        get(deny.addr, "/ping").status,
        200,
        "routes without a global limit are untouched"
    );

    let allow = Gateway::start(&global_config(&up, &nowhere, 3, "allow"));
    assert!(eventually(Duration::from_secs(10), || allow
        .log()
        .contains("redis sync failing")));
    assert!((0..10).all(|_| get(allow.addr, "/open/x").status == 200));
}

#[test]
fn tier_overrides_need_the_admin_token_and_are_shared_through_redis() {
    let redis = Redis::start();
    let up = Upstream::start("u");
    let body = global_config(&up, &redis.url(), 1000, "local_share");
    let gws = gateways(&body, &admin_token(), 2);
    let put = |gw: &Gateway, auth: Option<&str>, body: &str| {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        request(
            gw.admin,
            "PUT",
            "/admin/consumers/dave/tier",
            &headers,
            body.as_bytes(),
        )
    };
    let good = format!("Bearer {ADMIN_TOKEN}");
    assert_eq!(put(&gws[0], None, r#"{"tier":"premium"}"#).status, 401);
    assert_eq!(
        put(
            &gws[0],
            Some("Bearer wrong-token-000000"),
            r#"{"tier":"premium"}"#
        )
        .status,
        401
    );
    assert_eq!(put(&gws[0], Some(&good), r#"{"tier":"platinum"}"#).status, 400);
    assert_eq!(put(&gws[0], Some(&good), r#"{"tier":"premium"}"#).status, 200);

    // dave's token says free; the override wins, on this instance at once...
    let dave = token("dave", "free");
    let r = get_with(gws[0].addr, "/api/x", &[("Authorization", &dave)]);
    assert_eq!(r.upstream_header("x-consumer-tier").as_deref(), Some("premium"));
    assert_eq!(r.header("ratelimit-policy"), Some("\"premium\";q=200;w=10"));
    // ...and on the other through Redis.
    assert!(eventually(Duration::from_secs(10), || {
        let r = get_with(gws[1].addr, "/api/x", &[("Authorization", &dave)]);
        r.upstream_header("x-consumer-tier").as_deref() == Some("premium")
    }));
}

#[test]
fn admin_writes_are_refused_when_no_token_is_configured() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&config("", &format!("\"{}\"", up.addr)));
    let r = request(
        gw.admin,
        "PUT",
        "/admin/consumers/x/tier",
        &[("Authorization", "Bearer anything-at-all-0000")],
        br#"{"tier":"premium"}"#,
    );
    assert_eq!(r.status, 403);
}

/// A route whose window (40 a minute) is far below the caller's bucket (`tiny`: 50,
/// refilling too slowly to matter), and one without a window.
fn windowed(extra: &str) -> String {
    format!(
        "  - {{ name: windowed, path_prefix: /windowed, upstream: backend, global_limit: {{ rate: 40, per_s: 60 }} }}\n{extra}"
    )
}

/// Asks `path` `n` times as `who` on the gateways in turn: the statuses seen, counted.
fn statuses(gws: &[&Gateway], path: &str, who: &str, n: usize) -> std::collections::BTreeMap<u16, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..n {
        let status = get_with(gws[i % gws.len()].addr, path, &[("Authorization", who)]).status;
        *seen.entry(status).or_insert(0) += 1;
    }
    seen
}

/// Requests the window refuses spend nothing of the caller's bucket: 60 asked, 40
/// through the window, and the bucket still holds its last 10 for another route.
#[test]
fn requests_a_window_refuses_leave_the_callers_bucket_alone() {
    let up = Upstream::start("u");
    let gw = start(&windowed(""), &format!("\"{}\"", up.addr));
    let tiny = token("kira", "tiny");
    let windowed = statuses(&[&gw], "/windowed/x", &tiny, 60);
    assert_eq!(windowed.get(&200), Some(&40), "{windowed:?}");
    assert_eq!(windowed.get(&429), Some(&20), "{windowed:?}");
    let elsewhere = statuses(&[&gw], "/api/x", &tiny, 20);
    assert_eq!(
        elsewhere.get(&200),
        Some(&10),
        "the bucket kept what the window refused: {elsewhere:?}"
    );
}

/// The same on two instances sharing Redis: the window is the cluster's, the
/// bucket one budget, and the window's refusals on either instance give back.
#[test]
fn requests_a_window_refuses_leave_the_bucket_alone_across_two_instances() {
    let redis = Redis::start();
    let up = Upstream::start("u");
    let body = config(
        &windowed(&format!(
            "redis: {{ url: \"{}\", sync_interval_ms: 100 }}",
            redis.url()
        )),
        &format!("\"{}\"", up.addr),
    );
    let fleet = gateways(&body, &admin_token(), 2);
    let tiny = token("lena", "tiny");
    let pair = [&fleet[0], &fleet[1]];
    // Paced over sync rounds, so the window and the budget are the cluster's.
    let mut windowed = 0;
    for _ in 0..12 {
        windowed += statuses(&pair, "/windowed/x", &tiny, 10)
            .get(&200)
            .copied()
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(150));
    }
    // Within the window's stated bound: one sync round of the other instance.
    assert!(
        (40..=46).contains(&windowed),
        "admitted through the window: {windowed}"
    );
    // What is left of the budget (50 less what the window admitted) is there to
    // take, a sync round at a time.
    let mut elsewhere = 0;
    for _ in 0..10 {
        elsewhere += statuses(&pair, "/api/x", &tiny, 4)
            .get(&200)
            .copied()
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(150));
    }
    let left = 50 - windowed;
    eprintln!(
        "two instances: {windowed} through the window, {elsewhere} of the {left} left admitted elsewhere"
    );
    assert!(
        elsewhere + 2 >= left && elsewhere <= left + 2,
        "the budget had {left} left, {elsewhere} were admitted"
    );
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
