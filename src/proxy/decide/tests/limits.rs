//! The limits, all or none, and what every step admitted: 413, 429 by each
//! limit, a `respond` route's answer, a forwarded request, and giving back.

use super::*;

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
