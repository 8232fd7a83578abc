//! Rate limiting through the real gateway: token buckets per consumer and per anonymous
//! address, the global window shared through a real redis-server, and requests flowing while
//! that Redis fails. Here: the config and the tokens every file of the area starts from.

mod buckets;
mod global;
mod redis_outages;

use crate::common::*;

const SECRET: &str = "rate-limit-test-secret-0123456789abcdef";

const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn token(sub: &str, tier: &str) -> String {
    hs256_bearer(SECRET, sub, tier)
}

/// Tiers: `free` is the seed tier; `tiny` refills so slowly a test never sees it.
fn config(extra: &str, upstream: &str) -> String {
    format!(
        r#"
auth:
  jwt:
    keys: [{{ alg: HS256, secret: "{SECRET}" }}]
  default_tier: free
tiers:
  free: {{ rate: 1, burst: 10 }}
  premium: {{ rate: 20, burst: 200 }}
  tiny: {{ rate: 0.01, burst: 50 }}
  quick: {{ rate: 2, burst: 2 }}
upstreams:
  backend: {{ targets: [{upstream}], retries: 1 }}
routes:
  - {{ name: api, path_prefix: /api, upstream: backend }}
  - {{ name: reports, path_prefix: /reports, upstream: backend, cost: 10 }}
  - {{ name: open, path_prefix: /open, upstream: backend, auth: none }}
  - {{ name: ping, path_prefix: /ping, respond: {{ status: 200, body: pong }}, auth: none }}
{extra}"#
    )
}

fn admin_token() -> String {
    format!("token: \"{ADMIN_TOKEN}\"")
}

fn start(extra: &str, upstream: &str) -> Gateway {
    Gateway::start_admin(&config(extra, upstream), &admin_token())
}

fn global_config(upstream: &Upstream, redis_url: &str, limit: u64, mode: &str) -> String {
    config(
        &format!("redis: {{ url: \"{redis_url}\", on_unavailable: {mode} }}"),
        &format!("\"{}\"", upstream.addr),
    )
    .replace(
        "{ name: open, path_prefix: /open, upstream: backend, auth: none }",
        &format!(
            "{{ name: open, path_prefix: /open, upstream: backend, auth: none, global_limit: {{ rate: {limit}, per_s: 1 }} }}"
        ),
    )
}
