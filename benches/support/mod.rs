//! What the request-path benches share: a gateway assembled from config text
//! (without a server), a prepared request head, and a signed token.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use pingora_http::RequestHeader;

/// The HMAC secret of the benches' JWT key `k`.
pub const SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";

/// A gateway config: JWT auth with key `k`, an unlimited tier, one upstream, and `routes`.
pub fn config_with(routes: &str) -> String {
    format!(
        r#"
listen: ["127.0.0.1:18080"]
admin: {{ listen: "127.0.0.1:19091" }}
access_log: "off"
auth:
  jwt:
    keys: [{{ kid: k, alg: HS256, secret: "{SECRET}" }}]
  default_tier: bench
tiers:
  bench: {{ rate: 1000000000, burst: 1000000000 }}
upstreams:
  backend: {{ targets: ["127.0.0.1:18000"] }}
routes:
{routes}"#
    )
}

pub fn gateway(text: &str) -> floodgate::proxy::Gateway {
    let mut config = floodgate::config::parse(text, |_| None).unwrap_or_else(|p| panic!("{p:?}"));
    let mut services = Vec::new();
    floodgate::app::assemble(&mut config, None, &mut services)
        .unwrap_or_else(|e| panic!("{e}"))
        .gateway
}

pub fn request(path: &str, token: Option<&str>) -> RequestHeader {
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).expect("request");
    req.insert_header("host", "api.example.test").expect("host");
    req.insert_header("user-agent", "bench/1.0").expect("ua");
    req.insert_header("accept", "application/json").expect("accept");
    if let Some(t) = token {
        req.insert_header("authorization", format!("Bearer {t}"))
            .expect("auth");
    }
    req
}

/// A token for `consumer-42`, valid for an hour from `now_s`, signed with key `k`.
pub fn token(now_s: u64) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k".into());
    let claims = serde_json::json!({"sub": "consumer-42", "exp": now_s + 3600});
    encode(&header, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("sign")
}
