//! Every verdict `Decider::decide` can give, one test each, on a decider built
//! from config text as the gateway builds it, without a session or a server.

use super::{Decider, Verdict};
use crate::auth::Authenticator;
use crate::consumers::keys::RuntimeKeys;
use crate::consumers::overrides::TierOverrides;
use crate::proxy::ctx::RequestCtx;
use crate::ratelimit::route_state::RouteState;
use crate::ratelimit::RateLimiter;
use crate::routing::RouteTable;
use crate::vocab::answer::Answer;
use crate::vocab::auth_failure::Failure;
use crate::vocab::ids::TierId;
use crate::vocab::limit_scope::Scope;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use pingora_http::RequestHeader;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;

const SECOND: u64 = 1_000_000_000;
/// A moment in 2023, so that token expiry and quota periods are ordinary.
const T0: u64 = 1_700_000_000 * SECOND;
const JWT_SECRET: &str = "decide-test-secret-decide-test-secret-0123";
const ALICE_KEY: &str = "alice-key";
const BOB_KEY: &str = "bob-key";
/// The trusted proxy of every config here.
const PROXY: &str = "10.0.0.1";
/// The peer of a request sent straight to the gateway.
const CLIENT: &str = "192.0.2.10";
const ORIGIN: &str = "https://app.example";
/// The status `status()` reads when the request is forwarded.
const FORWARDED: Option<u16> = None;

/// A config with JWT and API-key auth (alice in `gold`, bob in the default
/// `free`), buckets that barely refill, one trusted proxy, one upstream, and `routes`.
fn config(routes: &str) -> String {
    let digest = |key: &str| hex::encode(Sha256::digest(key.as_bytes()));
    format!(
        r#"
listen: ["127.0.0.1:18080"]
admin: {{ listen: "127.0.0.1:19091" }}
trusted_proxies: ["{PROXY}"]
auth:
  jwt:
    keys: [{{ kid: k, alg: HS256, secret: "{JWT_SECRET}" }}]
  api_keys:
    keys:
      - {{ consumer: alice, key: "sha256:{alice}", tier: gold }}
      - {{ consumer: bob, key: "sha256:{bob}" }}
  default_tier: free
tiers:
  free: {{ rate: 0.001, burst: 1 }}
  gold: {{ rate: 0.001, burst: 2 }}
anonymous: {{ rate: 0.001, burst: 1 }}
upstreams:
  backend: {{ targets: ["127.0.0.1:18000"] }}
routes:
{routes}"#,
        alice = digest(ALICE_KEY),
        bob = digest(BOB_KEY),
    )
}

/// The decider `app::assemble` would build from `yaml`, with no runtime keys,
/// no tier overrides and no Redis.
fn decider(yaml: &str) -> Decider {
    let mut config = crate::config::parse(yaml, |_| None).unwrap_or_else(|p| panic!("{p:?}"));
    let tier_names = config.tier_names();
    let auth = config
        .auth
        .take()
        .map(|a| Authenticator::new(a, &tier_names, Arc::new(RuntimeKeys::default())));
    let routes = RouteTable::new(std::mem::take(&mut config.routes));
    let limiter = RateLimiter::new(
        config.tiers.clone(),
        config.anonymous,
        routes
            .routes()
            .iter()
            .map(|r| RouteState::new(&r.name, &r.limits))
            .collect(),
        None,
    );
    Decider {
        routes,
        auth,
        limiter: Arc::new(limiter),
        trusted_proxies: config.trusted_proxies.clone(),
        overrides: Arc::new(TierOverrides::default()),
    }
}

fn tier(d: &Decider, name: &str) -> TierId {
    d.limiter
        .tiers()
        .iter()
        .position(|t| t.name == name)
        .map(TierId)
        .expect("tier")
}

/// A request for `target` on the gateway's host, with `headers`.
fn request(method: &str, target: &[u8], headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build(method, target, None).expect("request");
    req.insert_header("host", "api.example.test").expect("host");
    for (name, value) in headers {
        req.append_header(name.to_string(), *value).expect("header");
    }
    req
}

fn get(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
    request("GET", path.as_bytes(), headers)
}

/// The decision on `req` from `peer`, and the context it leaves.
fn decide_from<'d>(d: &'d Decider, req: &RequestHeader, peer: &str, now: u64) -> (Verdict<'d>, RequestCtx) {
    let mut ctx = RequestCtx::default();
    let verdict = d.decide(req, Some(peer.parse::<IpAddr>().expect("peer")), &mut ctx, now);
    (verdict, ctx)
}

/// The decision on `req` sent straight from `CLIENT` at `T0`.
fn decide<'d>(d: &'d Decider, req: &RequestHeader) -> (Verdict<'d>, RequestCtx) {
    decide_from(d, req, CLIENT, T0)
}

/// A token for `consumer` in the default tier, valid until 2100: jsonwebtoken
/// checks `exp` against the system clock, not against the decision's time.
fn token(consumer: &str, secret: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k".into());
    let claims = serde_json::json!({"sub": consumer, "exp": 4_102_444_800u64});
    let token = encode(&header, &claims, &EncodingKey::from_secret(secret.as_bytes())).expect("sign");
    format!("Bearer {token}")
}

/// The gateway-made answer; `None` when the request goes upstream.
fn answer<'v, 'a>(v: &'v Verdict<'a>) -> Option<&'v Answer<'a>> {
    match v {
        Verdict::Proxy => None,
        Verdict::Answer(answer) => Some(answer),
    }
}

/// The status of a gateway-made answer; `FORWARDED` when the request goes upstream.
fn status(v: &Verdict) -> Option<u16> {
    answer(v).map(|a| a.status)
}

fn header<'v>(v: &'v Verdict, name: &str) -> Option<&'v str> {
    let (_, value) = answer(v)?.headers.iter().find(|(n, _)| *n == name)?;
    Some(value)
}

fn header_names<'v>(v: &'v Verdict) -> Vec<&'v str> {
    answer(v).map_or(Vec::new(), |a| a.headers.iter().map(|(n, _)| *n).collect())
}

fn content_type<'v>(v: &'v Verdict) -> &'v str {
    answer(v).expect("answered").content_type
}

fn body<'v>(v: &'v Verdict) -> &'v [u8] {
    &answer(v).expect("answered").body
}

/// The body of a gateway-made JSON answer.
fn json(v: &Verdict) -> serde_json::Value {
    serde_json::from_slice(body(v)).expect("a JSON body")
}

/// Whether the connection is closed after the answer.
fn closes(v: &Verdict) -> bool {
    answer(v).is_some_and(|a| a.close)
}

/// The name of the route the request was matched to.
fn routed<'d>(d: &'d Decider, ctx: &RequestCtx) -> Option<&'d str> {
    ctx.route.map(|i| d.routes.routes()[i].name.as_str())
}

const OPEN_ROUTE: &str = "  - { name: open, path_prefix: /api, upstream: backend, auth: none }\n";

#[test]
fn a_target_that_is_not_utf8_is_400_and_closes() {
    let d = decider(&config(OPEN_ROUTE));
    let (v, ctx) = decide(&d, &request("GET", b"/api/caf\xe9", &[]));
    assert_eq!(status(&v), Some(400));
    assert!(closes(&v), "the target was read as a lossy rendering");
    assert_eq!(routed(&d, &ctx), None);
}

#[test]
fn a_path_that_does_not_normalize_is_400() {
    let d = decider(&config(OPEN_ROUTE));
    let (v, _) = decide(&d, &get("/api/%zz", &[]));
    assert_eq!(status(&v), Some(400), "a broken percent-escape names no path");
    assert!(closes(&v));
}

#[test]
fn a_host_that_is_not_an_authority_is_400() {
    let d = decider(&config(OPEN_ROUTE));
    let mut req = get("/api/x", &[]);
    req.insert_header("host", "api.example.test:99999").expect("host");
    let (v, _) = decide(&d, &req);
    assert_eq!(status(&v), Some(400), "a port over 65535");
    assert!(closes(&v));
}

#[test]
fn no_route_is_404() {
    let d = decider(&config(OPEN_ROUTE));
    let (v, ctx) = decide(&d, &get("/elsewhere", &[]));
    assert_eq!(status(&v), Some(404));
    assert!(!closes(&v));
    assert_eq!(json(&v)["error"], "no_route");
    assert_eq!(routed(&d, &ctx), None);
}

#[test]
fn an_ambiguous_path_is_400_unless_the_route_allows_it() {
    let d = decider(&config(&format!(
        "{OPEN_ROUTE}  - {{ name: raw, path_prefix: /raw, upstream: backend, auth: none, allow_ambiguous_paths: true }}\n"
    )));
    let (v, ctx) = decide(&d, &get("/api/a%2Fb", &[]));
    // The upstream may decode %2F as a separator.
    assert_eq!(status(&v), Some(400));
    assert!(!closes(&v));
    assert_eq!(routed(&d, &ctx), Some("open"));
    let (v, _) = decide(&d, &get("/raw/a%2Fb", &[]));
    assert_eq!(status(&v), FORWARDED);
}

#[test]
fn an_address_outside_allow_ips_is_403_forbidden_address() {
    let d = decider(&config(
        "  - { name: inner, path_prefix: /api, upstream: backend, auth: none, allow_ips: [\"203.0.113.0/24\"] }\n",
    ));
    let forwarded = [("x-forwarded-for", "203.0.113.9")];
    let (v, ctx) = decide_from(&d, &get("/api/x", &forwarded), PROXY, T0);
    assert_eq!(status(&v), FORWARDED, "a trusted proxy names the client");
    assert_eq!(ctx.client_ip, Some("203.0.113.9".parse().expect("ip")));

    // An untrusted peer's X-Forwarded-For is not believed.
    let (v, ctx) = decide_from(&d, &get("/api/x", &forwarded), "198.51.100.7", T0);
    assert_eq!(status(&v), Some(403));
    assert_eq!(json(&v)["error"], "forbidden_address");
    assert_eq!(ctx.client_ip, Some("198.51.100.7".parse().expect("ip")));
}

#[test]
fn an_address_in_deny_ips_is_403_forbidden_address() {
    let d = decider(&config(
        "  - { name: open, path_prefix: /api, upstream: backend, auth: none, deny_ips: [\"203.0.113.66\"] }\n",
    ));
    let forwarded = [("x-forwarded-for", "203.0.113.66")];
    let (v, _) = decide_from(&d, &get("/api/x", &forwarded), PROXY, T0);
    assert_eq!(status(&v), Some(403));
    assert_eq!(json(&v)["error"], "forbidden_address");
    // From an untrusted peer, the peer is the client.
    let (v, _) = decide(&d, &get("/api/x", &forwarded));
    assert_eq!(status(&v), FORWARDED);
}

const CORS_ROUTE: &str = "  - name: posts\n    path_prefix: /api\n    methods: [POST]\n    upstream: backend\n    \
     cors: { origins: [\"https://app.example\"], methods: [GET, POST], headers: [x-trace], credentials: true, max_age_s: 600 }\n";

fn preflight(origin: &str) -> RequestHeader {
    request(
        "OPTIONS",
        b"/api/x",
        &[("origin", origin), ("access-control-request-method", "POST")],
    )
}

#[test]
fn a_preflight_from_an_allowed_origin_is_204_with_what_the_route_allows() {
    let d = decider(&config(CORS_ROUTE));
    let (v, ctx) = decide(&d, &preflight(ORIGIN));
    // Answered before auth, which the route requires; routed by the method it asks about.
    assert_eq!(status(&v), Some(204));
    assert_eq!(routed(&d, &ctx), Some("posts"));
    assert_eq!(header(&v, "vary"), Some("Origin"));
    assert_eq!(header(&v, "access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(header(&v, "access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(header(&v, "access-control-allow-headers"), Some("x-trace"));
    assert_eq!(header(&v, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&v, "access-control-max-age"), Some("600"));
    assert!(body(&v).is_empty());
}

#[test]
fn a_preflight_from_another_origin_is_204_with_only_vary() {
    let d = decider(&config(CORS_ROUTE));
    let (v, _) = decide(&d, &preflight("https://evil.example"));
    assert_eq!(status(&v), Some(204));
    assert_eq!(header_names(&v), ["vary"]);
    assert_eq!(header(&v, "vary"), Some("Origin"));
}

#[test]
fn an_options_request_that_is_no_preflight_is_routed_by_its_own_method() {
    let d = decider(&config(CORS_ROUTE));
    let (v, _) = decide(&d, &request("OPTIONS", b"/api/x", &[("origin", ORIGIN)]));
    assert_eq!(status(&v), Some(404), "the route takes POST only");
}

#[test]
fn a_request_from_an_allowed_origin_carries_it_in_ctx_even_when_refused() {
    let d = decider(&config(CORS_ROUTE));
    let origin = [("origin", ORIGIN), ("x-api-key", ALICE_KEY)];
    let (v, ctx) = decide(&d, &request("POST", b"/api/x", &origin));
    assert_eq!(status(&v), FORWARDED);
    assert_eq!(
        ctx.policy_notes.cors,
        Some((http::HeaderValue::from_static(ORIGIN), true))
    );

    let (v, ctx) = decide(&d, &request("POST", b"/api/x", &[("origin", ORIGIN)]));
    assert_eq!(status(&v), Some(401), "no credentials");
    assert!(
        ctx.policy_notes.cors.is_some(),
        "the browser may read the refusal"
    );

    let other = [("origin", "https://evil.example")];
    let (_, ctx) = decide(&d, &request("POST", b"/api/x", &other));
    assert_eq!(ctx.policy_notes.cors, None);
}

const PRIVATE_ROUTE: &str = "  - { name: private, path_prefix: /api, upstream: backend }\n";

#[test]
fn no_credentials_on_a_route_that_requires_them_is_401_with_www_authenticate() {
    let d = decider(&config(PRIVATE_ROUTE));
    let (v, ctx) = decide(&d, &get("/api/x", &[]));
    assert_eq!(status(&v), Some(401));
    assert_eq!(header(&v, "www-authenticate"), Some("Bearer"));
    assert_eq!(ctx.auth_failure.map(Failure::reason), Some("missing"));
    assert!(ctx.limit.is_none(), "refused before the limits");
}

#[test]
fn an_unknown_key_or_a_badly_signed_token_is_401_invalid_token() {
    let d = decider(&config(PRIVATE_ROUTE));
    let (v, ctx) = decide(&d, &get("/api/x", &[("x-api-key", "nobody's key")]));
    assert_eq!(status(&v), Some(401));
    assert_eq!(header(&v, "www-authenticate"), Some(INVALID_TOKEN));
    assert_eq!(ctx.auth_failure.map(Failure::reason), Some("unknown_api_key"));

    let forged = token("carol", "another-secret-another-secret-another-0123");
    let (v, ctx) = decide(&d, &get("/api/x", &[("authorization", &forged)]));
    assert_eq!(status(&v), Some(401));
    assert_eq!(header(&v, "www-authenticate"), Some(INVALID_TOKEN));
    assert_eq!(ctx.auth_failure.map(Failure::reason), Some("bad_signature"));
}

const INVALID_TOKEN: &str = "Bearer error=\"invalid_token\"";

const GOLD_ROUTE: &str = "  - { name: gold, path_prefix: /api, upstream: backend, tiers: [gold] }\n";

#[test]
fn a_tier_the_route_does_not_admit_is_403() {
    let d = decider(&config(GOLD_ROUTE));
    let (v, ctx) = decide(&d, &get("/api/x", &[("x-api-key", BOB_KEY)]));
    assert_eq!(status(&v), Some(403));
    assert_eq!(header(&v, "www-authenticate"), None);
    assert_eq!(ctx.auth_failure.map(Failure::reason), Some("tier_forbidden"));
    let (v, _) = decide(&d, &get("/api/x", &[("x-api-key", ALICE_KEY)]));
    assert_eq!(status(&v), FORWARDED);
}

#[test]
fn a_runtime_tier_override_applies_to_the_next_request() {
    let d = decider(&config(GOLD_ROUTE));
    let bob = [("x-api-key", BOB_KEY)];
    let (v, _) = decide(&d, &get("/api/x", &bob));
    assert_eq!(status(&v), Some(403), "bob's configured tier is free");
    d.overrides.set("bob", tier(&d, "gold"));
    let (v, ctx) = decide(&d, &get("/api/x", &bob));
    assert_eq!(status(&v), FORWARDED);
    assert_eq!(ctx.identity.map(|i| i.tier), Some(tier(&d, "gold")));
}

#[test]
fn optional_auth_passes_anonymous_callers_but_not_bad_credentials() {
    let d = decider(&config(
        "  - { name: maybe, path_prefix: /api, upstream: backend, auth: optional }\n",
    ));
    let (v, ctx) = decide(&d, &get("/api/x", &[]));
    assert_eq!(status(&v), FORWARDED);
    assert!(ctx.identity.is_none());
    assert!(ctx.limit.is_some(), "the anonymous bucket applies");

    let carol = token("carol", JWT_SECRET);
    let (v, ctx) = decide(&d, &get("/api/x", &[("authorization", &carol)]));
    assert_eq!(status(&v), FORWARDED);
    assert_eq!(ctx.identity.map(|i| i.consumer), Some(Arc::from("carol")));

    let (v, _) = decide(&d, &get("/api/x", &[("x-api-key", "nobody's key")]));
    assert_eq!(status(&v), Some(401));
}

#[test]
fn a_declared_body_over_max_body_bytes_is_413_and_spends_no_limit() {
    let d = decider(&config(
        "  - { name: upload, path_prefix: /api, upstream: backend, auth: none, max_body_bytes: 10 }\n",
    ));
    let (v, ctx) = decide(&d, &request("POST", b"/api/x", &[("content-length", "11")]));
    assert_eq!(status(&v), Some(413));
    assert!(closes(&v), "the body was not read");
    assert!(ctx.limit.is_none());
    let (v, _) = decide(&d, &request("POST", b"/api/x", &[("content-length", "10")]));
    assert_eq!(status(&v), FORWARDED, "the anonymous bucket of one is still full");
}

#[test]
fn max_body_bytes_is_not_checked_on_a_respond_route() {
    let d = decider(&config(
        "  - { name: canned, path_prefix: /api, auth: none, max_body_bytes: 10, respond: { status: 200 } }\n",
    ));
    let (v, _) = decide(&d, &request("POST", b"/api/x", &[("content-length", "11")]));
    assert_eq!(status(&v), Some(200));
}

/// Asserts `v` is a 429 by `scope`, with the rate-limit headers of the refusal.
fn assert_refused_by(v: &Verdict, ctx: &RequestCtx, scope: &str) {
    assert_eq!(status(v), Some(429));
    assert_eq!(json(v)["scope"], scope);
    assert_eq!(ctx.limited().map(Scope::as_str), Some(scope));
    let names = header_names(v);
    for name in [
        "ratelimit-policy",
        "ratelimit",
        "x-ratelimit-remaining",
        "retry-after",
    ] {
        assert!(names.contains(&name), "{name}");
    }
}

#[test]
fn an_empty_consumer_bucket_is_429_local() {
    let d = decider(&config(PRIVATE_ROUTE));
    let bob = [("x-api-key", BOB_KEY)];
    let (v, _) = decide(&d, &get("/api/x", &bob));
    assert_eq!(status(&v), FORWARDED);
    let (v, ctx) = decide(&d, &get("/api/x", &bob));
    assert_refused_by(&v, &ctx, "local");
    assert_eq!(json(&v)["error"], "rate_limited");
    assert!(header(&v, "ratelimit-policy").is_some_and(|p| p.contains("\"free\"")));
}

#[test]
fn an_empty_anonymous_bucket_is_429_local_per_client_address() {
    let d = decider(&config(OPEN_ROUTE));
    let (v, _) = decide(&d, &get("/api/x", &[]));
    assert_eq!(status(&v), FORWARDED);
    let (v, ctx) = decide(&d, &get("/api/x", &[]));
    assert_refused_by(&v, &ctx, "local");
    assert!(header(&v, "ratelimit-policy").is_some_and(|p| p.contains("\"anonymous\"")));
    let (v, _) = decide_from(&d, &get("/api/x", &[]), "192.0.2.11", T0);
    assert_eq!(status(&v), FORWARDED, "another address has its own bucket");
}

#[test]
fn a_routes_own_bucket_for_the_tier_is_429_route() {
    let d = decider(&config(
        "  - { name: search, path_prefix: /api, upstream: backend, limits: { gold: { rate: 0.001, burst: 1 } } }\n",
    ));
    let alice = [("x-api-key", ALICE_KEY)];
    let (v, _) = decide(&d, &get("/api/x", &alice));
    assert_eq!(status(&v), FORWARDED);
    let (v, ctx) = decide(&d, &get("/api/x", &alice));
    assert_refused_by(&v, &ctx, "route");
}

const WINDOW_ROUTE: &str =
    "  - { name: window, path_prefix: /api, upstream: backend, auth: none, global_limit: { rate: 1 } }\n";

#[test]
fn a_full_global_window_is_429_global() {
    let d = decider(&config(WINDOW_ROUTE));
    let (v, _) = decide(&d, &get("/api/x", &[]));
    assert_eq!(status(&v), FORWARDED);
    let (v, ctx) = decide_from(&d, &get("/api/x", &[]), "192.0.2.11", T0);
    assert_refused_by(&v, &ctx, "global");
    assert!(header(&v, "ratelimit-policy").is_some_and(|p| p.contains("\"global\"")));
}

#[test]
fn a_429_by_the_global_window_gives_back_the_bucket_token() {
    let d = decider(&config(WINDOW_ROUTE));
    let (v, _) = decide(&d, &get("/api/x", &[]));
    assert_eq!(status(&v), FORWARDED);
    let (v, _) = decide_from(&d, &get("/api/x", &[]), "192.0.2.11", T0);
    assert_eq!(status(&v), Some(429));
    // Two windows later the window is open again; the bucket (one token, barely
    // refilling) admits only if the refused request took nothing from it.
    let (v, _) = decide_from(&d, &get("/api/x", &[]), "192.0.2.11", T0 + 5 * SECOND);
    assert_eq!(status(&v), FORWARDED);
}

#[test]
fn a_used_up_quota_is_429_quota_exceeded() {
    let d = decider(&config(
        "  - { name: metered, path_prefix: /api, upstream: backend, quota: { per: day, requests: { gold: 1 } } }\n",
    ));
    let alice = [("x-api-key", ALICE_KEY)];
    let (v, _) = decide(&d, &get("/api/x", &alice));
    assert_eq!(status(&v), FORWARDED);
    let (v, ctx) = decide(&d, &get("/api/x", &alice));
    assert_refused_by(&v, &ctx, "quota");
    assert_eq!(json(&v)["error"], "quota_exceeded");
    assert!(header(&v, "ratelimit-policy").is_some_and(|p| p.contains("\"quota\"")));
}

#[test]
fn a_respond_route_answers_itself_with_the_rate_limit_headers() {
    let d = decider(&config(
        "  - { name: teapot, path_prefix: /api, auth: none, respond: { status: 418, body: short and stout, content_type: text/plain } }\n",
    ));
    let (v, ctx) = decide(&d, &get("/api/x", &[]));
    assert_eq!(status(&v), Some(418));
    assert_eq!(content_type(&v), "text/plain");
    assert_eq!(body(&v), b"short and stout");
    assert!(!closes(&v));
    assert!(header(&v, "ratelimit-policy").is_some_and(|p| p.contains("\"anonymous\"")));
    assert_eq!(header(&v, "retry-after"), None);
    assert_eq!(routed(&d, &ctx), Some("teapot"));
}

#[test]
fn an_admitted_request_on_a_proxy_route_is_forwarded_with_its_ctx_filled() {
    let d = decider(&config(PRIVATE_ROUTE));
    let carol = token("carol", JWT_SECRET);
    let (v, ctx) = decide(&d, &get("/api//a/./b", &[("authorization", &carol)]));
    assert_eq!(status(&v), FORWARDED);
    assert_eq!(routed(&d, &ctx), Some("private"));
    assert_eq!(ctx.normalized_path.as_deref(), Some("/api/a/b"));
    assert_eq!(ctx.client_ip, Some(CLIENT.parse().expect("ip")));
    assert_eq!(ctx.identity.map(|i| i.consumer), Some(Arc::from("carol")));
    assert!(ctx.limit.as_ref().is_some_and(|l| l.refused.is_none()));
    assert_eq!(ctx.auth_failure, None);
}

#[test]
fn give_back_limits_returns_what_an_admitted_request_took() {
    let d = decider(&config(PRIVATE_ROUTE));
    let bob = [("x-api-key", BOB_KEY)];
    let (_, ctx) = decide(&d, &get("/api/x", &bob));
    d.give_back_limits(&ctx);
    let (v, _) = decide(&d, &get("/api/x", &bob));
    assert_eq!(status(&v), FORWARDED, "bob's bucket of one is full again");
}

#[test]
fn give_back_limits_gives_nothing_for_a_refused_request() {
    let d = decider(&config(PRIVATE_ROUTE));
    let bob = [("x-api-key", BOB_KEY)];
    decide(&d, &get("/api/x", &bob));
    let (v, refused) = decide(&d, &get("/api/x", &bob));
    assert_eq!(status(&v), Some(429));
    d.give_back_limits(&refused);
    let (v, _) = decide(&d, &get("/api/x", &bob));
    assert_eq!(status(&v), Some(429));
}
