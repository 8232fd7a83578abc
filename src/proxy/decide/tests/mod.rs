//! Every verdict `Decider::decide` can give, one test each, on a decider built
//! from config text as the gateway builds it, without a session or a server:
//! the refusals before the limits (`refusals`), then the limits and what is
//! admitted (`limits`).

mod limits;
mod refusals;

use super::{Decider, Verdict};
use crate::auth::Authenticator;
use crate::consumers::keys::RuntimeKeys;
use crate::consumers::overrides::TierOverrides;
use crate::proxy::ctx::RequestCtx;
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
    let limiter = RateLimiter::from_config(&config, routes.routes().iter());
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

/// A route that requires credentials.
const PRIVATE_ROUTE: &str = "  - { name: private, path_prefix: /api, upstream: backend }\n";
const OPEN_ROUTE: &str = "  - { name: open, path_prefix: /api, upstream: backend, auth: none }\n";
