//! JSON Web Tokens: every algorithm accepted, every bad token a 401 that never reaches the
//! upstream, what a verified token forwards, hand-made tokens with repeated keys or control
//! characters, claim types and times, and the `token` tool's tokens.

use super::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

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
        assert_invalid_token(&f, name, &token);
    }
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", "Bearer ")]);
    assert_eq!(r.status, 401, "empty bearer");
    assert_eq!(f.upstream.hits(), 0, "a bad token reached the upstream");
    // The good token still works after all that.
    let r = get_with(f.gw.addr, "/api/x", &[("Authorization", &bearer(&good))]);
    assert_eq!(r.status, 200);
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
