//! `auth`: JWT keys (inline secrets, PEM files, a JWKS file or URL) and API-key
//! digests. Every key is loaded and self-tested here, once; what comes out is
//! ready to verify with.

use super::model::{ApiKey, ApiKeys, Auth, Jwks, JwksSource, Jwt, Tier};
use super::problems::Problems;
use super::schema::{ApiKeysSpec, AuthSpec, JwtKeySpec, JwtSpec};
use super::tiers::tier_id;
use super::verify_key::{self, VerifyKey};
use crate::vocab::consumer_id;
use crate::vocab::ids::TierId;
use http::HeaderName;
use serde_yaml::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// HMAC secrets shorter than the hash output are guessable (RFC 7518 3.2).
const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Header names with `_` are dropped from requests (CGI and WSGI read `-` and `_` alike).
const UNDERSCORE_HEADER: &str = "a header name with _ would be dropped from requests; use -";

/// Headers the gateway sets on upstream requests; a claim mapping may not forge them.
const RESERVED_UPSTREAM_HEADERS: &[&str] = &[
    "x-consumer-id",
    "x-consumer-tier",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "x-real-ip",
    "forwarded",
    "host",
    "authorization",
    "content-length",
    "transfer-encoding",
    "connection",
];

pub(super) fn auth(problems: &mut Problems, value: Option<Value>, tiers: &[Tier]) -> Option<Auth> {
    let spec = problems.section::<AuthSpec>("auth", value?)?;
    let default_tier = tier_id(problems, tiers, "auth.default_tier", &spec.default_tier);
    if spec.jwt.is_none() && spec.api_keys.is_none() {
        problems.add("auth", "needs jwt, api_keys or both");
    }
    let jwt = spec.jwt.map(|j| jwt(problems, j));
    // An unknown default tier is already a problem: the config will not load.
    let fallback_tier = default_tier.unwrap_or(TierId(0));
    let api_keys = spec.api_keys.map(|k| api_keys(problems, k, tiers, fallback_tier));
    Some(Auth {
        jwt,
        api_keys,
        default_tier: default_tier?,
    })
}

fn jwt(problems: &mut Problems, spec: JwtSpec) -> Jwt {
    if spec.keys.is_empty() && spec.jwks_file.is_none() && spec.jwks_url.is_none() {
        problems.add("auth.jwt", "needs keys, jwks_file or jwks_url");
    }
    let mut kids = HashSet::new();
    let mut keys = Vec::new();
    for (i, key) in spec.keys.iter().enumerate() {
        let path = format!("auth.jwt.keys[{i}]");
        if let Some(kid) = &key.kid {
            if !kids.insert(kid.clone()) {
                problems.add(format!("{path}.kid"), format!("duplicate kid \"{kid}\""));
            }
        }
        keys.extend(config_key(problems, &path, key));
    }
    if spec.jwks_refresh_s == 0 {
        problems.add("auth.jwt.jwks_refresh_s", "must be greater than 0");
    }
    if spec.cache_entries == 0 {
        problems.add("auth.jwt.cache_entries", "must be greater than 0");
    }
    let source = match (spec.jwks_file, spec.jwks_url) {
        (Some(_), Some(_)) => {
            problems.add("auth.jwt", "jwks_file and jwks_url: choose one");
            None
        }
        (Some(file), None) => Some(JwksSource::File(PathBuf::from(file))),
        (None, Some(url)) if url.starts_with("https://") || url.starts_with("http://") => {
            Some(JwksSource::Url(url))
        }
        (None, Some(_)) => {
            problems.add("auth.jwt.jwks_url", "must be an http:// or https:// URL");
            None
        }
        (None, None) => None,
    };
    let jwks = source.map(|source| Jwks {
        initial: match &source {
            JwksSource::File(file) => jwks_file(problems, file),
            JwksSource::Url(_) => Vec::new(),
        },
        source,
        refresh: Duration::from_secs(spec.jwks_refresh_s),
        cooldown: Duration::from_secs(spec.jwks_cooldown_s),
    });
    let mut claims_to_headers = Vec::new();
    for (claim, header) in spec.claims_to_headers {
        let path = format!("auth.jwt.claims_to_headers.{claim}");
        match HeaderName::from_bytes(header.as_bytes()) {
            Err(_) => problems.add(path, format!("\"{header}\" is not a header name")),
            Ok(name) if RESERVED_UPSTREAM_HEADERS.contains(&name.as_str()) => {
                problems.add(path, format!("{name} is set by the gateway itself"))
            }
            Ok(name) if name.as_str().contains('_') => problems.add(path, UNDERSCORE_HEADER),
            Ok(name) => claims_to_headers.push((claim, name)),
        }
    }
    Jwt {
        issuer: spec.issuer,
        audience: spec.audience,
        leeway_s: spec.leeway_s,
        consumer_claim: spec.consumer_claim,
        tier_claim: spec.tier_claim,
        keys,
        jwks,
        claims_to_headers,
        forward_token: spec.forward_token,
        cache_entries: spec.cache_entries,
    }
}

/// One `auth.jwt.keys[i]`: its shape, then the key itself, loaded and self-tested.
fn config_key(problems: &mut Problems, path: &str, key: &JwtKeySpec) -> Option<VerifyKey> {
    let Some(alg) = verify_key::algorithm(&key.alg) else {
        problems.add(
            format!("{path}.alg"),
            format!(
                "\"{}\" is not one of {}",
                key.alg,
                verify_key::ALGORITHMS.join(", ")
            ),
        );
        return None;
    };
    let loaded = match (
        key.alg.starts_with("HS"),
        &key.secret,
        &key.public_key_file,
        &key.public_key,
    ) {
        (true, Some(secret), None, None) if secret.len() < MIN_HMAC_SECRET_BYTES => {
            problems.add(
                format!("{path}.secret"),
                format!("must be at least {MIN_HMAC_SECRET_BYTES} bytes"),
            );
            return None;
        }
        (true, Some(secret), None, None) => verify_key::from_secret(key.kid.clone(), alg, secret),
        (true, ..) => {
            problems.add(path, format!("{} needs secret (and nothing else)", key.alg));
            return None;
        }
        (false, None, Some(file), None) => match std::fs::read(file) {
            Ok(pem) => verify_key::from_pem(key.kid.clone(), alg, &pem),
            Err(e) => {
                problems.add(
                    format!("{path}.public_key_file"),
                    format!("cannot read {file}: {e}"),
                );
                return None;
            }
        },
        (false, None, None, Some(pem)) => verify_key::from_pem(key.kid.clone(), alg, pem.as_bytes()),
        (false, ..) => {
            problems.add(
                path,
                format!(
                    "{} needs one of public_key_file or public_key (never a secret)",
                    key.alg
                ),
            );
            return None;
        }
    };
    loaded.map_err(|e| problems.add(path, e)).ok()
}

fn jwks_file(problems: &mut Problems, file: &PathBuf) -> Vec<VerifyKey> {
    let parsed = std::fs::read(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))
        .and_then(|text| verify_key::from_jwks(&text));
    match parsed {
        Ok((keys, skipped)) => {
            for s in skipped {
                log::warn!("{}: skipped key {s}", file.display());
            }
            keys
        }
        Err(message) => {
            problems.add("auth.jwt.jwks_file", message);
            Vec::new()
        }
    }
}

fn api_keys(problems: &mut Problems, spec: ApiKeysSpec, tiers: &[Tier], default_tier: TierId) -> ApiKeys {
    let header = match HeaderName::from_bytes(spec.header.as_bytes()) {
        Ok(name) if name.as_str().contains('_') => {
            problems.add("auth.api_keys.header", UNDERSCORE_HEADER);
            name
        }
        Ok(name) => name,
        Err(_) => {
            problems.add(
                "auth.api_keys.header",
                format!("\"{}\" is not a header name", spec.header),
            );
            HeaderName::from_static("x-api-key")
        }
    };
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    for (i, key) in spec.keys.into_iter().enumerate() {
        let path = format!("auth.api_keys.keys[{i}]");
        let tier = match &key.tier {
            Some(name) => tier_id(problems, tiers, &format!("{path}.tier"), name),
            None => Some(default_tier),
        };
        // The same rule as a token's or the admin API's: the id is X-Consumer-Id and a log field.
        if let Err(why) = consumer_id::check(&key.consumer) {
            problems.add(format!("{path}.consumer"), why);
        }
        let mut digest = [0u8; 32];
        let parsed = key
            .key
            .strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64)
            .is_some_and(|hex| hex::decode_to_slice(hex, &mut digest).is_ok());
        if !parsed {
            problems.add(
                format!("{path}.key"),
                "must be sha256:<64 hex digits>; `floodgate hash-key KEY` prints it",
            );
            continue;
        }
        if !seen.insert(digest) {
            problems.add(format!("{path}.key"), "duplicate key");
        }
        if let Some(tier) = tier {
            keys.push(ApiKey {
                consumer: key.consumer,
                digest,
                tier,
            });
        }
    }
    ApiKeys { header, keys }
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems_of;
    use super::super::{parse, Config};
    use crate::vocab::ids::TierId;

    const HEAD: &str = "listen: [\"127.0.0.1:8080\"]\nadmin: { listen: \"127.0.0.1:9091\" }\n\
                        routes: [{ name: r, path_prefix: /, respond: { status: 200 } }]\n";
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const DIGEST: &str = "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

    fn load(auth: &str) -> Config {
        parse(&format!("{HEAD}auth:\n{auth}"), |_| None).unwrap_or_else(|p| panic!("{p:?}"))
    }

    fn problems(auth: &str) -> Vec<String> {
        problems_of(&format!("{HEAD}auth:\n{auth}"))
    }

    #[test]
    fn keys_and_digests_come_out_ready_to_use() {
        let config = load(&format!(
            "  jwt: {{ keys: [{{ kid: a, alg: HS256, secret: \"{SECRET}\" }}], claims_to_headers: {{ org: X-Org }} }}\n  \
             api_keys: {{ keys: [{{ consumer: c, key: \"{DIGEST}\", tier: premium }}] }}\n"
        ));
        let auth = config.auth.expect("auth");
        let jwt = auth.jwt.expect("jwt");
        assert_eq!(jwt.keys.len(), 1);
        assert_eq!(jwt.claims_to_headers[0].1.as_str(), "x-org");
        let keys = auth.api_keys.expect("api keys");
        assert_eq!(keys.header.as_str(), "x-api-key");
        assert_eq!(keys.keys[0].digest[..2], [0x5e, 0x88]);
        assert_eq!(keys.keys[0].tier, TierId(2), "premium is the third seed tier");
        assert_eq!(auth.default_tier, TierId(0));
    }

    #[test]
    fn a_config_key_s_consumer_follows_the_consumer_id_rule() {
        let long = "c".repeat(257);
        for (consumer, ok) in [
            ("acme corp", true),
            ("\"\"", false),
            ("\"a\\u0001b\"", false),
            ("\"a\\u202Eb\"", false),
            ("\"a\\u00A0b\"", false),
            (long.as_str(), false),
        ] {
            let found = problems(&format!(
                "  api_keys: {{ keys: [{{ consumer: {consumer}, key: \"{DIGEST}\" }}] }}\n"
            ));
            let refused = found
                .iter()
                .any(|p| p.starts_with("auth.api_keys.keys[0].consumer: a consumer id "));
            assert_eq!(refused, !ok, "{consumer}: {found:?}");
        }
    }

    #[test]
    fn every_key_problem_names_its_key() {
        let found = problems(&format!(
            "  jwt:\n    keys:\n\
             \x20     - {{ kid: a, alg: HS256, secret: short }}\n\
             \x20     - {{ kid: a, alg: HS999, secret: \"{SECRET}\" }}\n\
             \x20     - {{ alg: HS256, public_key: x }}\n\
             \x20     - {{ alg: RS256, secret: \"{SECRET}\" }}\n\
             \x20     - {{ alg: ES256, public_key: \"not pem\" }}\n\
             \x20     - {{ alg: RS256, public_key_file: /nonexistent.pem }}\n\
             \x20   jwks_url: ftp://x\n\
             \x20   claims_to_headers: {{ a: X-Consumer-Id, b: x_org, c: \"bad header\" }}\n"
        ));
        let expected = [
            "auth.jwt.keys[0].secret: must be at least 32 bytes",
            "auth.jwt.keys[1].kid: duplicate kid \"a\"",
            "auth.jwt.keys[1].alg: \"HS999\" is not one of",
            "auth.jwt.keys[2]: HS256 needs secret (and nothing else)",
            "auth.jwt.keys[3]: RS256 needs one of public_key_file or public_key (never a secret)",
            "auth.jwt.keys[4]: not a ES256 public key in PEM form",
            "auth.jwt.keys[5].public_key_file: cannot read /nonexistent.pem",
            "auth.jwt.jwks_url: must be an http:// or https:// URL",
            "auth.jwt.claims_to_headers.a: x-consumer-id is set by the gateway itself",
            "auth.jwt.claims_to_headers.b: a header name with _ would be dropped",
            "auth.jwt.claims_to_headers.c: \"bad header\" is not a header name",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (got, want) in found.iter().zip(expected) {
            assert!(got.starts_with(want), "{got} should start with {want}");
        }
    }

    #[test]
    fn api_key_and_section_problems() {
        let found = problems(&format!(
            "  default_tier: gold\n  api_keys:\n    header: x_api_key\n    keys:\n\
             \x20     - {{ consumer: a, key: \"sha256:abc\" }}\n\
             \x20     - {{ consumer: b, key: \"{DIGEST}\", tier: nope }}\n\
             \x20     - {{ consumer: c, key: \"{DIGEST}\" }}\n"
        ));
        let expected = [
            "auth.default_tier: no tier named \"gold\"",
            "auth.api_keys.header: a header name with _ would be dropped",
            "auth.api_keys.keys[0].key: must be sha256:<64 hex digits>",
            "auth.api_keys.keys[1].tier: no tier named \"nope\"",
            "auth.api_keys.keys[2].key: duplicate key",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (got, want) in found.iter().zip(expected) {
            assert!(got.starts_with(want), "{got} should start with {want}");
        }
        assert_eq!(
            problems("  default_tier: free\n"),
            vec!["auth: needs jwt, api_keys or both"]
        );
        assert_eq!(
            problems("  jwt: { jwks_file: /a.json, jwks_url: \"https://x\" }\n"),
            vec!["auth.jwt: jwks_file and jwks_url: choose one"]
        );
    }
}
