//! Serde mirror of the gateway's part of the YAML file. No logic: defaults and
//! shapes only; `validate` turns these into a checked `Config`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    pub listen: String,
    /// Bearer token for admin writes; absent, writes are refused.
    pub token: Option<String>,
}

/// Limits on what a client may send and how long it may take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSpec {
    /// Total time allowed for a new connection to deliver its first request header.
    pub header_timeout_ms: u64,
    /// How long an idle keep-alive connection is kept open.
    pub keepalive_timeout_s: u64,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            header_timeout_ms: 10_000,
            keepalive_timeout_s: 60,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamKind {
    #[default]
    Http,
    Echo,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Random,
    ConsistentHash,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    Http,
    Tcp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    pub kind: HealthCheckKind,
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Host header of the probe; the target's address when absent.
    pub host: Option<String>,
    #[serde(default = "default_health_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_one")]
    pub consecutive_success: usize,
    #[serde(default = "default_one")]
    pub consecutive_failure: usize,
}

fn default_health_path() -> String {
    "/health".into()
}
fn default_health_interval_ms() -> u64 {
    1000
}
fn default_one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsSpec {
    pub connect_ms: u64,
    pub read_ms: u64,
    pub write_ms: u64,
}

impl Default for TimeoutsSpec {
    fn default() -> Self {
        TimeoutsSpec {
            connect_ms: 1000,
            read_ms: 5000,
            write_ms: 5000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    #[serde(default)]
    pub kind: UpstreamKind,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub balance: Balance,
    pub health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub timeouts: TimeoutsSpec,
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// One breaker per target; none when absent.
    pub breaker: Option<BreakerSpec>,
}

/// `failures` failures (connect errors, timeouts, 5xx) within `window_s` open a
/// target's breaker for `open_s`; then `half_open_requests` probes decide.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    #[serde(default = "default_breaker_failures")]
    pub failures: u32,
    #[serde(default = "default_breaker_window_s")]
    pub window_s: u64,
    #[serde(default = "default_breaker_open_s")]
    pub open_s: u64,
    #[serde(default = "default_one_u32")]
    pub half_open_requests: u32,
}

fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_window_s() -> u64 {
    60
}
fn default_breaker_open_s() -> u64 {
    30
}
fn default_one_u32() -> u32 {
    1
}

fn default_retries() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondSpec {
    pub status: u16,
    #[serde(default)]
    pub body: String,
    pub content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub name: String,
    pub path_prefix: String,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    pub upstream: Option<String>,
    pub respond: Option<RespondSpec>,
    #[serde(default)]
    pub strip_prefix: bool,
    pub max_body_bytes: Option<u64>,
    /// `required` when an `auth` section exists, else `none`.
    pub auth: Option<AuthPolicy>,
    pub tiers: Option<Vec<String>>,
    /// Tokens a request takes from its caller's bucket.
    #[serde(default = "default_cost")]
    pub cost: u32,
    pub global_limit: Option<GlobalLimitSpec>,
}

fn default_cost() -> u32 {
    1
}

/// The gateway's top-level keys, each deserialized on its own so that one bad
/// section does not hide the problems of the others.
pub type UpstreamSpecs = BTreeMap<String, serde_yaml::Value>;

/// Whether a route wants to know its caller.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthPolicy {
    /// Credentials needed: 401 without them.
    Required,
    /// Callers who present credentials are identified (bad ones are still a 401);
    /// the rest pass as anonymous.
    Optional,
    /// Credentials are not looked at.
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    pub jwt: Option<JwtSpec>,
    pub api_keys: Option<ApiKeysSpec>,
    /// The tier of a consumer whose token or key names none.
    #[serde(default = "default_tier")]
    pub default_tier: String,
}

fn default_tier() -> String {
    "free".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
    #[serde(default = "default_tier_claim")]
    pub tier_claim: String,
    #[serde(default)]
    pub keys: Vec<JwtKeySpec>,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    /// How often a JWKS file or URL is read again.
    #[serde(default = "default_jwks_refresh_s")]
    pub jwks_refresh_s: u64,
    /// Least time between two refreshes woken by an unknown `kid`.
    #[serde(default = "default_jwks_cooldown_s")]
    pub jwks_cooldown_s: u64,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    /// Verified tokens kept so a hot token is not verified again.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
}

fn default_leeway_s() -> u64 {
    30
}
fn default_consumer_claim() -> String {
    "sub".into()
}
fn default_tier_claim() -> String {
    "tier".into()
}
fn default_jwks_refresh_s() -> u64 {
    300
}
fn default_jwks_cooldown_s() -> u64 {
    30
}
fn default_cache_entries() -> usize {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeySpec {
    pub kid: Option<String>,
    pub alg: String,
    pub secret: Option<String>,
    pub public_key_file: Option<String>,
    /// An inline PEM public key.
    pub public_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysSpec {
    #[serde(default = "default_api_key_header")]
    pub header: String,
    pub keys: Vec<ApiKeySpec>,
}

fn default_api_key_header() -> String {
    "x-api-key".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    pub consumer: String,
    /// `sha256:<64 hex digits>`; `floodgate hash-key KEY` prints it.
    pub key: String,
    pub tier: Option<String>,
}

/// A token bucket: `rate` tokens per second, `burst` tokens at most.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    pub rate: f64,
    pub burst: f64,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GlobalLimitSpec {
    /// Requests admitted per `per_s` seconds across all instances.
    pub rate: u64,
    #[serde(default = "default_per_s")]
    pub per_s: u64,
}

fn default_per_s() -> u64 {
    1
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    pub url: String,
    #[serde(default = "default_sync_interval_ms")]
    pub sync_interval_ms: u64,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    #[serde(default = "default_on_unavailable")]
    pub on_unavailable: OnUnavailable,
}

fn default_sync_interval_ms() -> u64 {
    100
}
fn default_key_prefix() -> String {
    "floodgate".into()
}
fn default_on_unavailable() -> OnUnavailable {
    OnUnavailable::LocalShare
}

/// What to do when Redis cannot be reached (contract 4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Enforce limit ÷ instances last seen alive, on this instance's own counts.
    LocalShare,
    /// Drop the global check.
    Allow,
    /// Refuse every request of the route.
    Deny,
}
