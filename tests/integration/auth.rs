//! Authentication through the real gateway: JWT (HS256, RS256, ES256, JWKS file and
//! URL), API keys, route policies and tiers. Keys are generated here, per run.

use crate::common::*;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

const SECRET: &str = "test-secret-that-is-long-enough-0123456789";

const API_KEY: &str = "acme-api-key-7f3a";

const ISS: &str = "https://auth.test";

const AUD: &str = "floodgate";

struct Keys {
    rsa_private_pem: String,
    rsa_public_pem: String,
    rsa_n: String,
    rsa_e: String,
    rsa2_private_pem: String,
    rsa2_n: String,
    rsa2_e: String,
    ec_private_pem: String,
    ec_public_pem: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::thread_rng();
        let rsa = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("rsa key");
        let rsa2 = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("rsa key");
        let ec = p256::SecretKey::random(&mut rng);
        Keys {
            rsa_private_pem: rsa.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
            rsa_public_pem: rsa
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem"),
            rsa_n: b64(&rsa.n().to_bytes_be()),
            rsa_e: b64(&rsa.e().to_bytes_be()),
            rsa2_private_pem: rsa2.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
            rsa2_n: b64(&rsa2.n().to_bytes_be()),
            rsa2_e: b64(&rsa2.e().to_bytes_be()),
            ec_private_pem: ec.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
            ec_public_pem: ec.public_key().to_public_key_pem(LineEnding::LF).expect("pem"),
        }
    })
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Standard good claims, with `extra` merged over them (a `null` removes a claim).
fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "tier": "premium", "iss": ISS, "aud": AUD,
                       "exp": now() + 600, "email": "alice@example.test"});
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(keys().rsa_private_pem.as_bytes()).expect("rsa"),
        Algorithm::ES256 => EncodingKey::from_ec_pem(keys().ec_private_pem.as_bytes()).expect("ec"),
        other => panic!("no test key for {other:?}"),
    };
    encode(&header, claims, &key).expect("sign")
}

fn rsa_jwk(kid: &str, n: &str, e: &str) -> Value {
    json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": n, "e": e})
}

struct Fixture {
    upstream: Upstream,
    gw: Gateway,
    keys_dir: tempfile::TempDir,
}

impl Fixture {
    fn jwks_path(&self) -> PathBuf {
        self.keys_dir.path().join("jwks.json")
    }
}

fn start(jwks_source: &str, rust_log: &str) -> Fixture {
    start_with(jwks_source, |body| Gateway::start_logging(body, rust_log))
}

/// The fixture's config with `jwks_source`, the gateway started on it by `launch`.
fn start_with(jwks_source: &str, launch: impl FnOnce(&str) -> Gateway) -> Fixture {
    let k = keys();
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let rs_path = keys_dir.path().join("rs256.pub.pem");
    std::fs::write(&rs_path, &k.rsa_public_pem).expect("write pem");
    let jwks = json!({"keys": [rsa_jwk("j1", &k.rsa_n, &k.rsa_e)]});
    std::fs::write(keys_dir.path().join("jwks.json"), jwks.to_string()).expect("write jwks");
    let jwks_source = jwks_source.replace("{dir}", &keys_dir.path().display().to_string());
    let ec_pem = k.ec_public_pem.trim_end().replace('\n', "\n          ");
    let upstream = Upstream::start("backend");
    let body = format!(
        r#"
upstreams:
  backend: {{ targets: ["{up}"] }}
auth:
  jwt:
    issuer: {ISS}
    audience: {AUD}
    leeway_s: 5
    keys:
      - {{ kid: hs, alg: HS256, secret: "{SECRET}" }}
      - {{ kid: rs, alg: RS256, public_key_file: "{rs}" }}
      - kid: es
        alg: ES256
        public_key: |
          {ec_pem}
    {jwks_source}
    claims_to_headers: {{ email: X-User-Email }}
  api_keys:
    header: X-API-Key
    keys:
      - {{ consumer: acme, key: "{digest}", tier: enterprise }}
  default_tier: free
routes:
  - {{ name: public, path_prefix: /public, upstream: backend, auth: none }}
  - {{ name: api, path_prefix: /api, upstream: backend, auth: required }}
  - {{ name: optional, path_prefix: /opt, upstream: backend, auth: optional }}
  - {{ name: paid, path_prefix: /paid, upstream: backend, tiers: [premium, enterprise] }}
"#,
        up = upstream.addr,
        rs = rs_path.display(),
        digest = floodgate::auth::api_key::hash_key(API_KEY),
    );
    let gw = launch(&body);
    Fixture {
        upstream,
        gw,
        keys_dir,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn valid_tokens_of_every_algorithm_identify_the_caller_upstream() {
    let f = start("jwks_file: \"{dir}/jwks.json\"", "info");
    for (alg, kid) in [
        (Algorithm::HS256, Some("hs")),
        (Algorithm::RS256, Some("rs")),
        (Algorithm::ES256, Some("es")),
        (Algorithm::RS256, Some("j1")),
        // Without a kid the key is chosen by algorithm.
        (Algorithm::ES256, None),
    ] {
        let token = sign(alg, kid, &claims(json!({})));
        let r = get_with(
            f.gw.addr,
            "/api/x",
            &[
                ("Authorization", &bearer(&token)),
                ("X-Consumer-Id", "mallory"),
                ("X-Consumer-Tier", "enterprise"),
                ("X-User-Email", "forged@example.test"),
            ],
        );
        assert_eq!(r.status, 200, "{alg:?} {kid:?}: {}", r.text());
        assert_eq!(r.upstream_header("x-consumer-id").as_deref(), Some("alice"));
        assert_eq!(r.upstream_header("x-consumer-tier").as_deref(), Some("premium"));
        assert_eq!(
            r.upstream_header("x-user-email").as_deref(),
            Some("alice@example.test")
        );
    }
    // No tier claim: the default tier.
    let token = sign(Algorithm::HS256, Some("hs"), &claims(json!({"tier": null})));
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&token))]);
    assert_eq!(r.upstream_header("x-consumer-tier").as_deref(), Some("free"));
}

#[test]
fn every_bad_token_is_a_401_that_never_reaches_the_upstream() {
    let f = start("jwks_file: \"{dir}/jwks.json\"", "info");
    let k = keys();
    let good = sign(Algorithm::HS256, Some("hs"), &claims(json!({})));
    let parts: Vec<&str> = good.split('.').collect();
    let none_token = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    // The RS256 public key used as an HMAC secret: the classic algorithm confusion.
    let confused = |kid: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_secret(k.rsa_public_pem.as_bytes());
        encode(&header, &claims(json!({})), &key).expect("sign")
    };
    let tampered = {
        let payload = b64(claims(json!({"sub": "admin"})).to_string().as_bytes());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let wrong_key = {
        let key = EncodingKey::from_secret(b"another-secret-another-secret-another-secret");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("hs".into());
        encode(&header, &claims(json!({})), &key).expect("sign")
    };
    let crit = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("hs".into());
        header.crit = Some(vec!["exp".into()]);
        encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign")
    };
    let hs = |extra: Value| sign(Algorithm::HS256, Some("hs"), &claims(extra));
    let cases: Vec<(&str, String)> = vec![
        ("alg none", none_token),
        ("RS256 key as HS256 secret, kid", confused(Some("rs"))),
        ("RS256 key as HS256 secret, no kid", confused(None)),
        ("wrong signature", wrong_key),
        ("tampered payload", tampered),
        ("expired", hs(json!({"exp": now() - 3600}))),
        ("nbf in the future", hs(json!({"nbf": now() + 3600}))),
        ("missing exp", hs(json!({"exp": null}))),
        ("wrong iss", hs(json!({"iss": "https://evil.test"}))),
        ("missing iss", hs(json!({"iss": null}))),
        ("wrong aud", hs(json!({"aud": "someone-else"}))),
        ("missing aud", hs(json!({"aud": null}))),
        (
            "unknown kid",
            sign(Algorithm::HS256, Some("nope"), &claims(json!({}))),
        ),
        ("crit header", crit),
        ("sub of the wrong type", hs(json!({"sub": 42}))),
        ("missing sub", hs(json!({"sub": null}))),
        ("tier of the wrong type", hs(json!({"tier": ["premium"]}))),
        ("unknown tier", hs(json!({"tier": "platinum"}))),
        ("exp of the wrong type", hs(json!({"exp": "tomorrow"}))),
        ("malformed base64", format!("{}.!!!.{}", parts[0], parts[2])),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("four parts", format!("{good}.x")),
        ("not a JWT", "hello".to_string()),
        (
            "20 KB token",
            format!("{}.{}.{}", parts[0], "A".repeat(20 * 1024), parts[2]),
        ),
    ];
    for (name, token) in cases {
        let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&token))]);
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        assert_eq!(r.json()["error"], "unauthorized", "{name}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{name}"
        );
    }
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", "Bearer ")]);
    assert_eq!(r.status, 401, "empty bearer");
    assert_eq!(f.upstream.hits(), 0, "a bad token reached the upstream");
    // The good token still works after all that.
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&good))]);
    assert_eq!(r.status, 200);
}

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
fn a_verified_token_goes_upstream_unless_forward_token_is_false() {
    let token = bearer(&sign(Algorithm::HS256, Some("hs"), &claims(json!({}))));
    let auth = [("Authorization", token.as_str())];
    let forwarding = start("jwks_file: \"{dir}/jwks.json\"", "info");
    let r = get_with(forwarding.gw.addr, "/api/x", &auth);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("authorization").as_deref(),
        Some(token.as_str())
    );

    let keeping = start("jwks_file: \"{dir}/jwks.json\"\n    forward_token: false", "info");
    for path in ["/api/x", "/opt/x"] {
        let r = get_with(keeping.gw.addr, path, &auth);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(
            r.upstream_header("x-consumer-id").as_deref(),
            Some("alice"),
            "{path}"
        );
        assert_eq!(
            r.upstream_header("authorization"),
            None,
            "{path}: the token went upstream"
        );
    }
    // A route without auth verified nothing: what the client sent is the upstream's business.
    let r = get_with(keeping.gw.addr, "/public/x", &auth);
    assert_eq!(
        r.upstream_header("authorization").as_deref(),
        Some(token.as_str())
    );
}

/// One rule for consumer ids: a token's `sub` the admin API could not name (it refuses the
/// id) is an invalid token, and both refuse what would hide or reorder text in a log line.
#[test]
fn a_consumer_id_that_hides_or_reorders_text_is_refused_by_tokens_and_the_admin_api() {
    const ADMIN_TOKEN: &str = "admin-token-0123456789";
    let f = start_with("jwks_file: \"{dir}/jwks.json\"", |body| {
        Gateway::start_admin(body, &format!("token: \"{ADMIN_TOKEN}\""))
    });
    let admin_bearer = bearer(ADMIN_TOKEN);
    let admin = [
        ("Authorization", admin_bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let set_tier = |encoded: &str| {
        let path = format!("/admin/consumers/{encoded}/tier");
        request(f.gw.admin, "PUT", &path, &admin, br#"{"tier": "free"}"#)
    };
    let sub = |id: &str| hand_signed(HS_HEADER, &claims_text(&format!("\"sub\":{},", json!(id))));
    let plain = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&sub("a b")))]);
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(set_tier("a%20b").status, 200);
    for (name, c) in [
        ("right-to-left override", '\u{202E}'),
        ("right-to-left mark", '\u{200F}'),
        ("right-to-left isolate", '\u{2067}'),
        ("arabic letter mark", '\u{061C}'),
        ("line separator", '\u{2028}'),
        ("paragraph separator", '\u{2029}'),
        ("no-break space", '\u{00A0}'),
        ("combining grapheme joiner", '\u{034F}'),
        ("soft hyphen", '\u{00AD}'),
        ("zero-width space", '\u{200B}'),
        ("byte order mark", '\u{FEFF}'),
    ] {
        let id = format!("a{c}b");
        assert_invalid_token(&f, name, &sub(&id));
        let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        let r = set_tier(&encoded);
        assert_eq!(r.status, 400, "{name}: {}", r.text());
    }
    assert_eq!(f.upstream.hits(), 1, "a refused token reached the upstream");
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
fn a_key_added_to_the_jwks_file_is_accepted_after_the_refresh() {
    let f = start(
        "jwks_file: \"{dir}/jwks.json\"\n    jwks_refresh_s: 3600\n    jwks_cooldown_s: 1",
        "info",
    );
    let k = keys();
    let rotated = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("j2".into());
        let key = EncodingKey::from_rsa_pem(k.rsa2_private_pem.as_bytes()).expect("rsa");
        encode(&header, &claims(json!({})), &key).expect("sign")
    };
    let auth = bearer(&rotated);
    assert_eq!(
        get_with(f.gw.addr, "/api/x", &[("Authorization", &auth)]).status,
        401
    );
    let jwks = json!({"keys": [rsa_jwk("j1", &k.rsa_n, &k.rsa_e), rsa_jwk("j2", &k.rsa2_n, &k.rsa2_e)]});
    std::fs::write(f.jwks_path(), jwks.to_string()).expect("rotate");
    // The unknown kid wakes one refresh (the periodic one is an hour away).
    let accepted = eventually(Duration::from_secs(10), || {
        get_with(f.gw.addr, "/api/x", &[("Authorization", &auth)]).status == 200
    });
    assert!(accepted, "the rotated key was never picked up: {}", f.gw.log());
    let old = sign(Algorithm::RS256, Some("j1"), &claims(json!({})));
    assert_eq!(
        get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&old))]).status,
        200
    );

    // A broken file keeps the last good key set.
    std::fs::write(f.jwks_path(), "{ broken").expect("break");
    let unknown = sign(Algorithm::HS256, Some("wake-it"), &claims(json!({})));
    // Each unknown kid may wake a refresh once the cooldown has passed.
    assert!(eventually(Duration::from_secs(10), || {
        get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&unknown))]);
        f.gw.log().contains("keeping the last good key set")
    }));
    assert_eq!(
        get_with(f.gw.addr, "/api/x", &[("Authorization", &auth)]).status,
        200
    );
}

#[test]
fn jwks_url_is_fetched_in_the_background_and_unknown_kids_do_not_cause_a_fetch_storm() {
    let k = keys();
    let server = jwks_server(json!({"keys": [rsa_jwk("j1", &k.rsa_n, &k.rsa_e)]}));
    let f = start(
        &format!(
            "jwks_url: \"{}\"\n    jwks_refresh_s: 3600\n    jwks_cooldown_s: 2",
            server.url
        ),
        "info",
    );
    let token = sign(Algorithm::RS256, Some("j1"), &claims(json!({})));
    assert!(eventually(Duration::from_secs(10), || {
        get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&token))]).status == 200
    }));
    let before = *server.fetches.lock().expect("count");
    // A burst of unknown kids wakes at most one fetch per cooldown.
    let unknown = sign(Algorithm::RS256, Some("ghost"), &claims(json!({})));
    for _ in 0..50 {
        let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&unknown))]);
        assert_eq!(r.status, 401);
    }
    // Not a wait for something to happen: what is checked is that nothing more happens, so a
    // fetch storm (if any) is given half a second to show.
    std::thread::sleep(Duration::from_millis(500));
    let after = *server.fetches.lock().expect("count");
    assert!(
        after - before <= 1,
        "{} fetches for 50 unknown kids",
        after - before
    );

    // Rotation through the URL.
    let rotated = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("j2".into());
        let key = EncodingKey::from_rsa_pem(k.rsa2_private_pem.as_bytes()).expect("rsa");
        encode(&header, &claims(json!({})), &key).expect("sign")
    };
    *server.doc.lock().expect("doc") =
        json!({"keys": [rsa_jwk("j1", &k.rsa_n, &k.rsa_e), rsa_jwk("j2", &k.rsa2_n, &k.rsa2_e)]}).to_string();
    assert!(eventually(Duration::from_secs(15), || {
        get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&rotated))]).status == 200
    }));
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
fn the_token_tool_mints_tokens_the_gateway_accepts() {
    let f = start("jwks_file: \"{dir}/jwks.json\"", "info");
    let out = std::process::Command::new(BIN)
        .args([
            "token",
            "--secret-env",
            "FG_TEST_SECRET",
            "--sub",
            "bob",
            "--tier",
            "basic",
        ])
        .args(["--aud", AUD, "--iss", ISS, "--kid", "hs", "--ttl", "60"])
        .env("FG_TEST_SECRET", SECRET)
        .output()
        .expect("run token");
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&token))]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-consumer-id").as_deref(), Some("bob"));
    assert_eq!(r.upstream_header("x-consumer-tier").as_deref(), Some("basic"));

    let out = std::process::Command::new(BIN)
        .args(["hash-key", "password"])
        .output()
        .expect("run hash-key");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
    );
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

/// A token built by hand, as an attacker would: the header and claims exactly as the JSON text
/// given (duplicate keys and all), base64url-encoded, and signed with HS256 over that very text
/// with the config's `hs` secret, so its signature is good and only its content can be wrong.
fn hand_signed(header: &str, claims: &str) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{message}.{signature}")
}

const HS_HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"hs"}"#;

/// Claims as JSON text: `members` (each followed by a comma) and then a good iss, aud and exp.
fn claims_text(members: &str) -> String {
    format!(
        r#"{{{members}"iss":"{ISS}","aud":"{AUD}","exp":{}}}"#,
        now() + 600
    )
}

/// The token is refused as an invalid token: 401 with the bearer challenge naming it.
fn assert_invalid_token(f: &Fixture, name: &str, token: &str) {
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(token))]);
    assert_eq!(r.status, 401, "{name}: {}", r.text());
    assert_eq!(r.json()["error"], "unauthorized", "{name}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{name}"
    );
}

#[test]
fn a_validly_signed_token_repeating_a_key_anywhere_is_refused() {
    let f = start("jwks_file: \"{dir}/jwks.json\"", "info");
    // The hand-built token itself is fine: without a duplicate it is accepted.
    let clean = hand_signed(HS_HEADER, &claims_text(r#""sub":"alice","tier":"enterprise","#));
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&clean))]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-consumer-tier").as_deref(),
        Some("enterprise")
    );
    let claims = |members: &str| hand_signed(HS_HEADER, &claims_text(members));
    let header = |header: &str| hand_signed(header, &claims_text(r#""sub":"alice","#));
    let cases = [
        (
            "tier twice",
            claims(r#""sub":"alice","tier":"free","tier":"enterprise","#),
        ),
        ("sub twice", claims(r#""sub":"alice","sub":"admin","#)),
        // The first copy has expired, the last (after the iss and aud) has not.
        ("exp twice", claims(r#""sub":"alice","exp":1,"#)),
        ("iss twice", claims(r#""sub":"alice","iss":"https://evil.test","#)),
        (
            "tier twice, once spelled with an escape",
            claims(r#""sub":"alice","tier":"free","t\u0069er":"enterprise","#),
        ),
        (
            "a key twice in a nested object",
            claims(r#""sub":"alice","ext":{"role":"user","role":"admin"},"#),
        ),
        (
            "a key twice in an object in an array",
            claims(r#""sub":"alice","ext":[{"a":1,"a":2}],"#),
        ),
        (
            "kid twice in the header, same value",
            header(r#"{"alg":"HS256","typ":"JWT","kid":"hs","kid":"hs"}"#),
        ),
        (
            "kid twice in the header, different values",
            header(r#"{"alg":"HS256","typ":"JWT","kid":"nope","kid":"hs"}"#),
        ),
        (
            "alg twice in the header",
            header(r#"{"alg":"none","alg":"HS256","kid":"hs"}"#),
        ),
    ];
    for (name, token) in &cases {
        assert_invalid_token(&f, name, token);
    }
    assert_eq!(
        f.upstream.hits(),
        1,
        "a token with a duplicate key reached the upstream"
    );
}

#[test]
fn control_characters_in_the_consumer_or_a_mapped_claim_are_an_invalid_token() {
    let f = start("jwks_file: \"{dir}/jwks.json\"", "info");
    let token = |members: &str| hand_signed(HS_HEADER, &claims_text(members));
    let clean = token(r#""sub":"alice","email":"alice@example.test","#);
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&clean))]);
    assert_eq!(r.status, 200, "{}", r.text());
    // The JSON escapes decode to CR, LF and NUL in the claim's value.
    for (name, members) in [
        ("CR LF in sub", r#""sub":"a\r\nx-consumer-id: admin","#),
        ("NUL in sub", r#""sub":"a\u0000","#),
        ("LF in sub", r#""sub":"a\nb","#),
        ("CR in sub", r#""sub":"a\rb","#),
        (
            "CR LF in a claim mapped to a header",
            r#""sub":"alice","email":"a@example.test\r\nx-consumer-id: admin","#,
        ),
        (
            "NUL in a claim mapped to a header",
            r#""sub":"alice","email":"a@example.test\u0000","#,
        ),
        (
            "LF in a claim mapped to a header",
            r#""sub":"alice","email":"a@example.test\nx: y","#,
        ),
    ] {
        assert_invalid_token(&f, name, &token(members));
    }
    assert_eq!(f.upstream.hits(), 1);
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&clean))]);
    assert_eq!(r.status, 200, "still serving: {}", r.text());
}

#[test]
fn iss_must_be_a_string_and_iat_must_not_be_in_the_future() {
    // leeway_s: 5 in the fixture.
    let f = start("jwks_file: \"{dir}/jwks.json\"", "info");
    let exp = now() + 600;
    let token = |iss: &str, iat: &str| {
        hand_signed(
            HS_HEADER,
            &format!(r#"{{"sub":"alice","iss":{iss},"aud":"{AUD}","exp":{exp}{iat}}}"#),
        )
    };
    let string_iss = format!("\"{ISS}\"");
    let accepted = [
        ("iss as a string", token(&string_iss, "")),
        (
            "iat in the past",
            token(&string_iss, &format!(",\"iat\":{}", now() - 60)),
        ),
        // The gateway's clock is at or past this test's `now()`.
        (
            "iat 1 s ahead, within the leeway",
            token(&string_iss, &format!(",\"iat\":{}", now() + 1)),
        ),
    ];
    for (name, token) in &accepted {
        let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(token))]);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
    }
    let refused = [
        (
            "iss as an array holding the issuer",
            token(&format!("[\"{ISS}\"]"), ""),
        ),
        (
            "iss as an array holding the issuer and another",
            token(&format!("[\"{ISS}\",\"https://evil.test\"]"), ""),
        ),
        (
            "iat an hour ahead",
            token(&string_iss, &format!(",\"iat\":{}", now() + 3600)),
        ),
        (
            "iat a minute ahead",
            token(&string_iss, &format!(",\"iat\":{}", now() + 60)),
        ),
        ("iat not a number", token(&string_iss, ",\"iat\":\"yesterday\"")),
    ];
    for (name, token) in &refused {
        assert_invalid_token(&f, name, token);
    }
    assert_eq!(f.upstream.hits(), accepted.len());
}

#[test]
fn ready_waits_for_the_first_jwks_fetch_so_its_keys_work_once_ready() {
    let k = keys();
    // The identity provider takes a second (well within the 5 s fetch timeout): a /ready that
    // did not wait for the fetch would come before the JWKS key works.
    let server = jwks_server_after(
        json!({"keys": [rsa_jwk("j1", &k.rsa_n, &k.rsa_e)]}),
        Duration::from_secs(1),
    );
    let f = start(
        &format!("jwks_url: \"{}\"\n    jwks_refresh_s: 3600", server.url),
        "info",
    );
    // `start` returned on the first 200 from /ready: no waiting here.
    let jwks_token = sign(Algorithm::RS256, Some("j1"), &claims(json!({})));
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&jwks_token))]);
    assert_eq!(r.status, 200, "JWKS key not in force at ready: {}", r.text());
    let inline = sign(Algorithm::HS256, Some("hs"), &claims(json!({})));
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&inline))]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(*server.fetches.lock().expect("count") >= 1);
    assert!(!f.gw.log().contains("not loaded yet"), "{}", f.gw.log());
}

#[test]
fn with_a_jwks_url_that_never_answers_inline_keys_work_throughout_and_ready_comes_after_the_timeout() {
    let silent = SilentServer::start();
    let url = &silent.url;
    let f = start_with(
        &format!("jwks_url: \"{url}\"\n    jwks_refresh_s: 3600"),
        |body| Gateway::start_unready(body, "info"),
    );
    let ready = || get(f.gw.admin, "/ready").status;
    assert_eq!(ready(), 503, "ready before the JWKS fetch was over");
    let inline = sign(Algorithm::HS256, Some("hs"), &claims(json!({})));
    let inline_ok = || {
        let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&inline))]);
        assert_eq!(r.status, 200, "inline key refused: {}", r.text());
    };
    // The proxy listener may come up a moment after the admin one.
    assert!(eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(f.gw.addr).is_ok()
    }));
    // The very first request, while not ready, with the JWKS fetch hanging.
    inline_ok();
    // Ready after the 5 s fetch timeout: 15 s is a liveness bound, not a speed check.
    let became_ready = eventually(Duration::from_secs(15), || {
        inline_ok();
        ready() == 200
    });
    assert!(became_ready, "never ready: {}", f.gw.log());
    inline_ok();
    assert!(
        f.gw.log().contains("not loaded yet"),
        "the log does not say the JWKS is not loaded: {}",
        f.gw.log()
    );
    assert!(
        !silent.accepted.lock().expect("held").is_empty(),
        "the JWKS URL was never tried"
    );
    // The JWKS's keys are not in force; the request is answered, not held on the fetch.
    let jwks_token = sign(Algorithm::RS256, Some("j1"), &claims(json!({})));
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&jwks_token))]);
    assert_eq!(r.status, 401);
}

#[test]
fn with_an_unreachable_jwks_url_inline_keys_work_and_the_log_says_the_jwks_is_not_loaded() {
    let nowhere = closed_port();
    let f = start(
        &format!(
            "jwks_url: \"http://{}/jwks.json\"\n    jwks_refresh_s: 3600",
            nowhere.addr
        ),
        "info",
    );
    for (alg, kid) in [
        (Algorithm::HS256, "hs"),
        (Algorithm::RS256, "rs"),
        (Algorithm::ES256, "es"),
    ] {
        let token = sign(alg, Some(kid), &claims(json!({})));
        let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&token))]);
        assert_eq!(r.status, 200, "{kid}: {}", r.text());
    }
    let log = f.gw.log();
    assert!(log.contains("not loaded yet"), "{log}");
    assert!(log.contains("JWKS refresh failed"), "{log}");
}
