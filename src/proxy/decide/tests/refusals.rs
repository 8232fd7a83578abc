//! Refused before the limits: bad targets, no route, address rules, CORS
//! preflights and authentication.

use super::*;

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
