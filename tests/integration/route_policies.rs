//! Per-route policies through the real gateway: client address allow and deny
//! lists (with and without a trusted proxy), CORS (preflights answered by the
//! gateway, actual answers and refusals readable by allowed origins only), header
//! rules, compression, per-route limits and quotas (with Redis and the state file).

use crate::common::*;
use std::time::Duration;

const KEY: &str = "policy-test-key";

/// The one consumer `app` (key `KEY`), on tier `free`.
fn app_key_auth() -> String {
    format!(
        "auth:\n  api_keys:\n    keys: [{{ consumer: app, key: \"{}\", tier: free }}]\n  default_tier: free\n",
        floodgate::auth::api_key::hash_key(KEY)
    )
}

fn body(upstream: &Upstream, trusted: &str) -> String {
    let auth = app_key_auth();
    format!(
        r#"
{auth}tiers:
  free: {{ rate: 1000, burst: 1000 }}
trusted_proxies: [{trusted}]
upstreams:
  backend: {{ targets: ["{}"] }}
routes:
  - name: internal
    path_prefix: /internal
    upstream: backend
    auth: none
    allow_ips: ["10.0.0.0/8", "2001:db8::/32"]
    deny_ips: ["10.6.6.0/24"]
  - name: api
    path_prefix: /api
    upstream: backend
    methods: [GET, POST]
    cors:
      origins: ["https://app.example.com", "https://*.example.com"]
      methods: [GET, POST]
      headers: [Authorization, Content-Type, X-API-Key]
      credentials: true
      max_age_s: 600
  - name: rules
    path_prefix: /rules
    upstream: backend
    auth: optional
    request_headers:
      set: {{ X-Tier: "$tier", X-Caller: "$consumer from $client_ip", X-Trace: "req-$request_id" }}
      add: {{ X-Via: floodgate }}
      remove: [Cookie]
    response_headers:
      set: {{ Cache-Control: no-store, X-Served-For: "$consumer" }}
      remove: [Content-Type]
  - {{ name: packed, path_prefix: /packed, upstream: backend, auth: none, compress: {{ min_bytes: 100, types: [application/json] }} }}
  - {{ name: big-only, path_prefix: /big-only, upstream: backend, auth: none, compress: {{ min_bytes: 1000000 }} }}
  - {{ name: text-only, path_prefix: /text-only, upstream: backend, auth: none, compress: {{ types: [text/plain], min_bytes: 1 }} }}
"#,
        upstream.addr
    )
}

#[test]
fn addresses_are_allowed_and_denied_by_the_resolved_client_address() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&body(&up, "\"127.0.0.1/32\""));
    let from = |ip: &str| get_with(gw.addr, "/internal/x", &[("x-forwarded-for", ip)]);
    assert_eq!(from("10.1.2.3").status, 200);
    assert_eq!(from("2001:db8::7").status, 200);
    let denied = from("10.6.6.7");
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["error"], "forbidden_address");
    assert_eq!(from("192.0.2.1").status, 403, "not in the allow list");
    assert_eq!(
        get(gw.addr, "/internal/x").status,
        403,
        "the proxy itself, 127.0.0.1, is not allowed"
    );
    // Without a trusted proxy the header is the client's claim, and is not believed.
    let untrusting = Gateway::start(&body(&up, ""));
    let claimed = get_with(untrusting.addr, "/internal/x", &[("x-forwarded-for", "10.1.2.3")]);
    assert_eq!(claimed.status, 403);
}

/// From a trusted proxy, a hop with a port (Azure Application Gateway appends one) or in
/// brackets is an address; any other hop ends the chain, so the client's own entries to
/// its left are never believed.
#[test]
fn forwarded_for_hops_with_ports_are_addresses_and_any_other_hop_ends_the_chain() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&body(&up, "\"127.0.0.1/32\""));
    let from = |lines: &[&str]| {
        let headers: Vec<(&str, &str)> = lines.iter().map(|l| ("x-forwarded-for", *l)).collect();
        get_with(gw.addr, "/internal/x", &headers).status
    };
    for (lines, status) in [
        // 10.1.2.3 is allowed: the client's own claim, to the left of its real address.
        (&["10.1.2.3, 198.51.100.7:5555"][..], 403),
        (&["10.1.2.3, [2001:db9::7]:5555"], 403),
        (&["10.1.2.3, [2001:db9::7]"], 403),
        (&["10.1.2.3, 10.6.6.7:5555"], 403),
        // The proxy did not know its client: everyone behind it is the proxy.
        (&["10.1.2.3, unknown"], 403),
        (&["10.1.2.3, fe80::1%eth0"], 403),
        (&["10.1.2.3, unknown, 127.0.0.1"], 403),
        (&["10.1.2.3", "unknown"], 403),
        (&["10.1.2.3:5555"], 200),
        (&["[2001:db8::7]:443"], 200),
        (&["[2001:db8::7]"], 200),
        (&["198.51.100.7, , 10.1.2.3:5555,"], 200),
    ] {
        assert_eq!(from(lines), status, "X-Forwarded-For: {lines:?}");
    }
}

#[test]
fn cors_preflights_are_answered_by_the_gateway_and_answers_carry_the_origin() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&body(&up, ""));
    let preflight = |origin: &str| {
        request(
            gw.addr,
            "OPTIONS",
            "/api/orders",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "authorization, content-type"),
            ],
            b"",
        )
    };
    let ok = preflight("https://app.example.com");
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(ok.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(
        ok.header("access-control-allow-headers"),
        Some("Authorization, Content-Type, X-API-Key")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(ok.header("access-control-max-age"), Some("600"));
    assert_eq!(ok.header("vary"), Some("Origin"));
    assert!(preflight("https://shop.example.com")
        .header("access-control-allow-origin")
        .is_some());
    for refused in [
        "https://example.com",
        "https://evil.test",
        "https://app.example.com.evil.test",
    ] {
        let r = preflight(refused);
        assert_eq!(r.status, 204, "{refused}");
        assert_eq!(r.header("access-control-allow-origin"), None, "{refused}");
    }
    assert_eq!(
        up.hits(),
        0,
        "preflights never reach the upstream nor need credentials"
    );

    let get_from = |origin: &str, key: Option<&str>| {
        let mut headers = vec![("origin", origin)];
        headers.extend(key.map(|k| ("x-api-key", k)));
        get_with(gw.addr, "/api/orders", &headers)
    };
    let answer = get_from("https://app.example.com", Some(KEY));
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(answer.header("access-control-allow-credentials"), Some("true"));
    assert!(answer
        .header("access-control-expose-headers")
        .is_some_and(|h| h.contains("RateLimit")));
    let refused = get_from("https://app.example.com", None);
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("https://app.example.com"),
        "a browser can read the gateway's refusal"
    );
    let foreign = get_from("https://evil.test", Some(KEY));
    assert_eq!(foreign.status, 200);
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    assert_eq!(
        foreign.header("vary"),
        Some("Origin"),
        "every answer of a CORS route varies by origin"
    );
    // An upstream that reflects any origin with credentials is overruled by the route's policy.
    let reflected = get_with(
        gw.addr,
        "/api/orders",
        &[
            ("origin", "https://evil.test"),
            ("x-api-key", KEY),
            ("x-reply-header", "Access-Control-Allow-Origin: https://evil.test"),
        ],
    );
    assert_eq!(reflected.status, 200);
    assert_eq!(reflected.header("access-control-allow-origin"), None);
}

#[test]
fn header_rules_reach_the_upstream_and_the_client_and_absent_variables_omit_the_header() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&body(&up, ""));
    let known = get_with(
        gw.addr,
        "/rules/x",
        &[
            ("x-api-key", KEY),
            ("cookie", "session=1"),
            ("x-request-id", "abc-1"),
            ("x-via", "forged-by-the-client"),
        ],
    );
    assert_eq!(known.status, 200);
    assert_eq!(known.upstream_header("x-tier").as_deref(), Some("free"));
    assert_eq!(
        known.upstream_header("x-caller").as_deref(),
        Some("app from 127.0.0.1")
    );
    assert_eq!(known.upstream_header("x-trace").as_deref(), Some("req-abc-1"));
    assert_eq!(
        known.upstream_header("x-via").as_deref(),
        Some("floodgate"),
        "a client's copy never rides along"
    );
    assert_eq!(known.upstream_header("cookie"), None);
    assert_eq!(known.header("cache-control"), Some("no-store"));
    assert_eq!(known.header("x-served-for"), Some("app"));
    assert_eq!(known.header("content-type"), None);
    // Anonymous: no consumer, so the headers that name it are not sent at all.
    let anonymous = get(gw.addr, "/rules/x");
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.upstream_header("x-caller"), None);
    assert_eq!(anonymous.upstream_header("x-tier"), None);
    assert_eq!(anonymous.upstream_header("x-via").as_deref(), Some("floodgate"));
    assert_eq!(anonymous.header("x-served-for"), None);
}

#[test]
fn bad_policies_are_config_errors_naming_the_key() {
    let up = Upstream::start("u");
    let text = body(&up, "")
        .replace("\"10.6.6.0/24\"", "\"10.6.6.0/33\"")
        .replace("\"https://*.example.com\"", "\"https://a*.example.com\"");
    let text = text.replace("X-Via: floodgate", "X-Consumer-Id: forged");
    let (ok, out) = check_config(&text, &[]);
    assert!(!ok);
    assert!(out.contains("routes[0].deny_ips[0]"), "{out}");
    assert!(out.contains("routes[1].cors.origins[1]"), "{out}");
    assert!(
        out.contains(
            "routes[2].request_headers.add.X-Consumer-Id: x-consumer-id is set by the gateway itself"
        ),
        "{out}"
    );
}

fn limits_body(redis: Option<&Redis>) -> String {
    let redis = redis.map_or(String::new(), |r| format!("redis: {{ url: \"{}\" }}", r.url()));
    let auth = app_key_auth();
    format!(
        r#"
{auth}tiers:
  free: {{ rate: 0.01, burst: 60 }}
  gold: {{ rate: 1000, burst: 1000 }}
routes:
  - {{ name: export, path_prefix: /export, respond: {{ status: 200, body: ok }}, limits: {{ free: {{ rate: 0.01, burst: 2 }} }} }}
  - {{ name: api, path_prefix: /api, respond: {{ status: 200, body: ok }} }}
  - {{ name: daily, path_prefix: /daily, respond: {{ status: 200, body: ok }}, quota: {{ per: day, requests: {{ free: 4 }} }} }}
{redis}
"#
    )
}

/// `n` requests of the consumer to `path`, alternating between two instances on one
/// Redis, `pace_ms` apart (pacing, not waiting): how many were admitted.
fn alternate(redis: &Redis, path: &str, n: usize, pace_ms: u64) -> usize {
    let gws = [
        Gateway::start(&limits_body(Some(redis))),
        Gateway::start(&limits_body(Some(redis))),
    ];
    let mut admitted = 0;
    for i in 0..n {
        let r = get_with(gws[i % 2].addr, path, &[("x-api-key", KEY)]);
        assert!(r.status == 200 || r.status == 429, "status {}", r.status);
        admitted += usize::from(r.status == 200);
        std::thread::sleep(std::time::Duration::from_millis(pace_ms));
    }
    admitted
}

#[test]
fn a_routes_tier_limit_sits_on_top_of_the_consumers_bucket() {
    let gw = Gateway::start(&limits_body(None));
    let call = |path: &str| get_with(gw.addr, path, &[("x-api-key", KEY)]);
    let first = call("/export/x");
    assert_eq!(first.status, 200);
    let policy = first.header("ratelimit-policy").expect("policy");
    assert!(
        policy.contains("\"free\";q=6") && policy.contains("\"export\";q=2"),
        "{policy}"
    );
    assert_eq!(call("/export/x").status, 200);
    let refused = call("/export/x");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["scope"], "route");
    // The overall bucket paid for the two the route admitted, not for the one it
    // refused: 58 of 60 left.
    for _ in 0..58 {
        assert_eq!(call("/api/x").status, 200);
    }
    let overall = call("/api/x");
    assert_eq!(overall.status, 429);
    assert_eq!(overall.json()["scope"], "local");
}

#[test]
fn a_routes_tier_limit_is_one_budget_across_instances() {
    let redis = Redis::start();
    // Paced over a few syncs, so leases move between the instances.
    let admitted = alternate(&redis, "/export/x", 40, 25);
    // A burst of 2 across both instances, plus at most the one-token advance the second
    // instance starts on before its first sync (the stated bound; repaid as debt).
    assert!((2..=3).contains(&admitted), "{admitted} admitted");
}

#[test]
fn responses_are_compressed_where_the_route_and_the_client_agree() {
    use std::io::Read;
    let up = Upstream::start("u");
    let gw = Gateway::start(&body(&up, ""));
    let packed = get_with(
        gw.addr,
        "/packed/some/long/path/to/make/the/echo/bigger",
        &[("accept-encoding", "gzip")],
    );
    assert_eq!(packed.status, 200);
    assert_eq!(packed.header("content-encoding"), Some("gzip"));
    assert!(packed
        .header("vary")
        .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")));
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&packed.body[..])
        .read_to_string(&mut plain)
        .expect("gzip");
    assert!(plain.contains("/packed/some/long/path"), "{plain}");
    let unasked = get(gw.addr, "/packed/some/long/path/to/make/the/echo/bigger");
    assert_eq!(
        unasked.header("content-encoding"),
        None,
        "no Accept-Encoding, no compression"
    );
    for path in ["/big-only/x", "/text-only/x"] {
        let r = get_with(gw.addr, path, &[("accept-encoding", "gzip")]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-encoding"),
            None,
            "{path}: under min_bytes or another type"
        );
    }
    let elsewhere = get_with(
        gw.addr,
        "/internal/x",
        &[("accept-encoding", "gzip"), ("x-forwarded-for", "10.1.1.1")],
    );
    assert_eq!(
        elsewhere.header("content-encoding"),
        None,
        "routes without compress"
    );
}

#[test]
fn a_daily_quota_refuses_past_its_requests_until_the_day_ends() {
    // The day must not end between the requests and the check of Retry-After.
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    };
    let left_today = 86_400 - unix_now() % 86_400;
    if left_today < 30 {
        std::thread::sleep(Duration::from_secs(left_today + 1));
    }
    let gw = Gateway::start(&limits_body(None));
    let call = || get_with(gw.addr, "/daily/x", &[("x-api-key", KEY)]);
    for i in 0..4 {
        let r = call();
        assert_eq!(r.status, 200, "request {i}");
        assert!(r
            .header("ratelimit-policy")
            .is_some_and(|p| p.contains("\"quota\";q=4;w=86400")));
    }
    let refused = call();
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"], "quota_exceeded");
    assert_eq!(refused.json()["scope"], "quota");
    let to_midnight = 86_400 - unix_now() % 86_400;
    let retry: u64 = refused
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!(
        retry.abs_diff(to_midnight) <= 2,
        "Retry-After {retry}, midnight UTC in {to_midnight}"
    );
}

#[test]
fn a_quota_is_shared_by_instances_through_redis() {
    let redis = Redis::start();
    // Paced over syncs: the stated bound is what the others admit in one period.
    let admitted = alternate(&redis, "/daily/x", 16, 150);
    // One quota of 4 across both instances, plus at most what the other instance admitted
    // within one sync period (the stated bound): at this pace, one request.
    assert!((4..=5).contains(&admitted), "{admitted} admitted");
    let keys = redis_cmd(redis.addr(), &["KEYS", "floodgate:q:daily:day:*"]).unwrap_or_default();
    assert!(keys.contains(":app"), "{keys}");
}

#[test]
fn without_redis_quota_counts_survive_a_restart_in_the_state_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let body = format!("{}state_file: \"{}\"\n", limits_body(None), path.display());
    let call = |gw: &Gateway| get_with(gw.addr, "/daily/x", &[("x-api-key", KEY)]).status;
    let gw = Gateway::start(&body);
    for _ in 0..3 {
        assert_eq!(call(&gw), 200);
    }
    // Saved within a few seconds of changing, as a line of the state file's journal.
    let journal = dir.path().join("state.json.journal");
    assert!(eventually(std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(&journal).is_ok_and(|f| f.contains("\"used\":3"))
    }));
    drop(gw);
    let gw = Gateway::start(&body);
    assert_eq!(call(&gw), 200, "the fourth of 4");
    assert_eq!(call(&gw), 429, "the count came back from the state file");
}
