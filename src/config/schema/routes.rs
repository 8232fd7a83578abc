//! Serde mirror of `routes[]`: what a route matches, what it does, and the
//! policies and limits it carries.

use crate::config::model::{AuthPolicy, Bucket, GlobalScope};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct WebSocketSpec {
    #[serde(default = "default_websocket_idle_s")]
    pub(in crate::config) idle_timeout_s: u64,
}
fn default_websocket_idle_s() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RespondSpec {
    pub(in crate::config) status: u16,
    #[serde(default)]
    pub(in crate::config) body: String,
    pub(in crate::config) content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RouteSpec {
    pub(in crate::config) name: String,
    pub(in crate::config) path_prefix: String,
    pub(in crate::config) host: Option<String>,
    pub(in crate::config) methods: Option<Vec<String>>,
    pub(in crate::config) upstream: Option<String>,
    pub(in crate::config) respond: Option<RespondSpec>,
    #[serde(default)]
    pub(in crate::config) strip_prefix: bool,
    pub(in crate::config) max_body_bytes: Option<u64>,
    /// Forward paths upstreams may decode differently (`%2F`, `%5C`, `\`, `;`, `%00`)
    /// instead of refusing them.
    #[serde(default)]
    pub(in crate::config) allow_ambiguous_paths: bool,
    /// Forward header names with `_` instead of dropping them.
    #[serde(default)]
    pub(in crate::config) allow_underscore_headers: bool,
    /// `required` when an `auth` section exists, else `none`.
    pub(in crate::config) auth: Option<AuthPolicy>,
    pub(in crate::config) tiers: Option<Vec<String>>,
    /// Tokens a request takes from its caller's bucket.
    #[serde(default = "default_cost")]
    pub(in crate::config) cost: u32,
    pub(in crate::config) global_limit: Option<GlobalLimitSpec>,
    /// Client addresses (CIDRs) that may call the route; absent: all not denied.
    pub(in crate::config) allow_ips: Option<Vec<String>>,
    #[serde(default)]
    pub(in crate::config) deny_ips: Vec<String>,
    pub(in crate::config) cors: Option<CorsSpec>,
    pub(in crate::config) request_headers: Option<HeaderRulesSpec>,
    pub(in crate::config) response_headers: Option<HeaderRulesSpec>,
    /// This route's own bucket per tier, on top of the consumer's overall one.
    pub(in crate::config) limits: Option<BTreeMap<String, Bucket>>,
    pub(in crate::config) compress: Option<CompressSpec>,
    pub(in crate::config) quota: Option<QuotaSpec>,
    pub(in crate::config) websocket: Option<WebSocketSpec>,
    /// From the request head to the response's last byte; off by default.
    pub(in crate::config) response_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct QuotaSpec {
    pub(in crate::config) per: QuotaPer,
    pub(in crate::config) requests: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(in crate::config) enum QuotaPer {
    Day,
    Month,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct CompressSpec {
    #[serde(default = "default_compress_min_bytes")]
    pub(in crate::config) min_bytes: u64,
    #[serde(default = "default_compress_types")]
    pub(in crate::config) types: Vec<String>,
    #[serde(default = "default_compress_level")]
    pub(in crate::config) level: u32,
}

fn default_compress_min_bytes() -> u64 {
    1024
}
fn default_compress_types() -> Vec<String> {
    [
        "application/json",
        "text/plain",
        "text/html",
        "text/css",
        "application/javascript",
    ]
    .map(String::from)
    .to_vec()
}
fn default_compress_level() -> u32 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct HeaderRulesSpec {
    #[serde(default)]
    pub(in crate::config) set: BTreeMap<String, String>,
    #[serde(default)]
    pub(in crate::config) add: BTreeMap<String, String>,
    #[serde(default)]
    pub(in crate::config) remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct CorsSpec {
    pub(in crate::config) origins: Vec<String>,
    #[serde(default = "default_cors_methods")]
    pub(in crate::config) methods: Vec<String>,
    #[serde(default)]
    pub(in crate::config) headers: Vec<String>,
    #[serde(default)]
    pub(in crate::config) credentials: bool,
    pub(in crate::config) max_age_s: Option<u64>,
}

fn default_cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}

fn default_cost() -> u32 {
    1
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct GlobalLimitSpec {
    /// Requests admitted per `per_s` seconds across all instances.
    pub(in crate::config) rate: u64,
    #[serde(default = "default_per_s")]
    pub(in crate::config) per_s: u64,
    /// This region's instances or every region's (`world` needs `redis.region`).
    #[serde(default)]
    pub(in crate::config) scope: GlobalScope,
}

fn default_per_s() -> u64 {
    1
}
