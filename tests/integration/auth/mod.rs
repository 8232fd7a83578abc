//! Authentication through the real gateway: JWT (HS256, RS256, ES256, JWKS file and URL), API
//! keys, route policies and tiers. Here: the keys (generated per run), the tokens signed with
//! them, and the gateway every file of the area starts from.

mod jwks;
mod jwt;
mod policies;

use crate::common::*;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;

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
