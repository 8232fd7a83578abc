//! Which routes need credentials and what they take: required, optional and no auth, tiers,
//! API keys by digest, every spelling of a required path; and what auth never does: write a
//! token, key or secret to a log line, or start on a config it cannot use.

use super::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

#[test]
fn route_policies_missing_credentials_optional_and_tiers() {
    let f = start("jwks_file: \"{dir}/jwks.json\"", "info");
    let r = get(f.gw.addr, "/api/x");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", "Basic dXNlcjpwYXNz")]);
    assert_eq!(r.status, 401);

    assert_eq!(get(f.gw.addr, "/public/x").status, 200);
    let r = get(f.gw.addr, "/opt/x");
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-consumer-id"), None);
    let good = sign(Algorithm::HS256, Some("hs"), &claims(json!({})));
    let r = get_with(f.gw.addr, "/opt/x", &[("Authorization", &bearer(&good))]);
    assert_eq!(r.upstream_header("x-consumer-id").as_deref(), Some("alice"));
    let expired = sign(
        Algorithm::HS256,
        Some("hs"),
        &claims(json!({"exp": now() - 3600})),
    );
    let r = get_with(f.gw.addr, "/opt/x", &[("Authorization", &bearer(&expired))]);
    assert_eq!(r.status, 401, "optional still refuses bad credentials");

    let free = sign(Algorithm::HS256, Some("hs"), &claims(json!({"tier": "free"})));
    let r = get_with(f.gw.addr, "/paid/x", &[("Authorization", &bearer(&free))]);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "forbidden");
    let r = get_with(f.gw.addr, "/paid/x", &[("Authorization", &bearer(&good))]);
    assert_eq!(r.status, 200);
    assert_eq!(get(f.gw.addr, "/paid/x").status, 401);
}

#[test]
fn api_keys_identify_by_digest_and_are_not_forwarded() {
    let f = start("jwks_file: \"{dir}/jwks.json\"", "info");
    let r = get_with(f.gw.addr, "/paid/x", &[("X-API-Key", API_KEY)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-consumer-id").as_deref(), Some("acme"));
    assert_eq!(
        r.upstream_header("x-consumer-tier").as_deref(),
        Some("enterprise")
    );
    assert_eq!(r.upstream_header("x-api-key"), None, "the key went upstream");

    let r = get_with(f.gw.addr, "/api/x", &[("X-API-Key", "not-a-key")]);
    assert_eq!(r.status, 401);
    // Two copies, of either credential, are never first-wins.
    let r = get_with(f.gw.addr, "/api/x", &[("X-API-Key", API_KEY), ("X-API-Key", "x")]);
    assert_eq!(r.status, 400);
    let good = sign(Algorithm::HS256, Some("hs"), &claims(json!({})));
    let r = get_with(
        f.gw.addr,
        "/api/x",
        &[("Authorization", &bearer(&good)), ("Authorization", "Bearer x")],
    );
    assert_eq!(r.status, 400);
    assert_eq!(f.upstream.hits(), 1);
}

#[test]
fn no_spelling_of_a_path_reaches_a_required_route_without_credentials() {
    let f = start("jwks_file: \"{dir}/jwks.json\"", "info");
    for path in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "/public/%2E%2E/api/x",
        "//api/x",
        "/%61pi/x",
        "/./api/x",
        "/public/./../api/x",
    ] {
        let r = get(f.gw.addr, path);
        assert_eq!(r.status, 401, "{path} got {}", r.status);
    }
    assert_eq!(f.upstream.hits(), 0);
}

#[test]
fn no_token_key_or_secret_appears_in_any_log_line() {
    let f = start("jwks_file: \"{dir}/jwks.json\"", "debug");
    let good = sign(Algorithm::HS256, Some("hs"), &claims(json!({})));
    let expired = sign(
        Algorithm::HS256,
        Some("hs"),
        &claims(json!({"exp": now() - 3600})),
    );
    for headers in [
        vec![("Authorization", bearer(&good))],
        vec![("Authorization", bearer(&expired))],
        vec![("X-API-Key", API_KEY.to_string())],
        vec![("X-API-Key", "wrong-key-value-123".to_string())],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        get_with(f.gw.addr, "/api/x", &headers);
    }
    let log = f.gw.log();
    assert!(log.lines().count() > 5, "expected debug logging: {log}");
    for secret in [
        SECRET,
        API_KEY,
        "wrong-key-value-123",
        good.split('.').nth(2).unwrap_or_default(),
        expired.split('.').nth(2).unwrap_or_default(),
    ] {
        let line = log.lines().find(|l| l.contains(secret));
        assert!(line.is_none(), "a secret is in the log: {line:?}");
    }
}

#[test]
fn bad_auth_configs_fail_naming_the_key() {
    let base = |auth: &str| {
        format!(
            "version: 1\nlisten: [\"127.0.0.1:1\"]\nadmin: {{ listen: \"127.0.0.1:2\" }}\n\
             upstreams:\n  demo: {{ kind: echo }}\n\
             routes:\n  - {{ name: a, path_prefix: /, upstream: demo }}\n{auth}"
        )
    };
    let cases = [
        (
            "auth:\n  jwt:\n    keys:\n      - { alg: HS256, secret: short }\n",
            vec!["auth.jwt.keys[0].secret: must be at least 32 bytes"],
        ),
        (
            "auth:\n  jwt:\n    keys:\n      - { alg: RS256, public_key_file: /nonexistent.pem }\n",
            vec!["auth.jwt.keys[0].public_key_file: cannot read /nonexistent.pem"],
        ),
        (
            "auth:\n  jwt:\n    keys:\n      - { alg: RS256, public_key: not-a-pem }\n",
            vec!["auth.jwt.keys[0]: not a RS256 public key"],
        ),
        (
            "auth:\n  jwt:\n    keys:\n      - { alg: RS256, secret: \"0123456789abcdef0123456789abcdef\" }\n",
            vec!["auth.jwt.keys[0]: RS256 needs one of public_key_file or public_key"],
        ),
        ("auth:\n  jwt:\n    keys:\n      - { alg: none, secret: x }\n", vec!["auth.jwt.keys[0].alg"]),
        (
            "auth:\n  api_keys:\n    keys:\n      - { consumer: a, key: plaintext }\n  default_tier: gold\n",
            vec!["auth.api_keys.keys[0].key: must be sha256:", "auth.default_tier: no tier named \"gold\""],
        ),
        ("auth:\n  jwt:\n    jwks_file: /nonexistent.json\n", vec!["auth.jwt.jwks_file: cannot read"]),
    ];
    for (auth, expected) in cases {
        let (ok, out) = check_config(&base(auth), &[]);
        assert!(!ok, "accepted: {auth}");
        for e in expected {
            assert!(out.contains(e), "expected {e:?} in: {out}");
        }
    }
    // A route asking for auth without an auth section.
    let text = "version: 1\nlisten: [\"127.0.0.1:1\"]\nadmin: { listen: \"127.0.0.1:2\" }\n\
                upstreams:\n  demo: { kind: echo }\n\
                routes:\n  - { name: a, path_prefix: /, upstream: demo, auth: required, tiers: [gold] }\n";
    let (ok, out) = check_config(text, &[]);
    assert!(
        !ok && out.contains("routes[0].auth: needs a top-level auth section"),
        "{out}"
    );
    assert!(
        out.contains("routes[0].tiers[0]: no tier named \"gold\""),
        "{out}"
    );
}
