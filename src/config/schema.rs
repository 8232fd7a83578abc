//! Serde mirror of the gateway's part of the YAML file. No logic: defaults and
//! shapes only; the section validators turn these into the `model` types, and no
//! type here is seen outside `config`. Routes and upstreams, the big sections,
//! have files of their own.

mod routes;
mod tracing;
mod upstreams;

pub(super) use routes::{CompressSpec, CorsSpec, HeaderRulesSpec, QuotaPer, RouteSpec};
pub(super) use tracing::TracingSpec;
pub(super) use upstreams::{TimeoutsSpec, UpstreamSpec, UpstreamTlsSpec};

use super::model::{OnPartition, OnUnavailable};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A `listen` entry in its map form (the plain form is an address string).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenerSpec {
    pub(super) addr: String,
    pub(super) tls: Option<ListenerTlsSpec>,
    #[serde(default)]
    pub(super) h2c: bool,
    #[serde(default)]
    pub(super) proxy_protocol: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenerTlsSpec {
    pub(super) certs: Vec<CertSpec>,
    #[serde(default = "default_true")]
    pub(super) h2: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CertSpec {
    pub(super) cert_file: String,
    pub(super) key_file: String,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminSpec {
    pub(super) listen: String,
    /// Bearer token for admin writes; absent, writes are refused.
    pub(super) token: Option<String>,
    /// Stats and breakers (consumers, client addresses, targets) without the token.
    #[serde(default)]
    pub(super) public_stats: bool,
}

/// Limits on what a client may send and how long it may take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ClientSpec {
    /// Total time allowed for a new connection to deliver its first request header.
    pub(super) header_timeout_ms: u64,
    /// How long an idle keep-alive connection is kept open.
    pub(super) keepalive_timeout_s: u64,
    pub(super) max_header_bytes: usize,
    pub(super) max_headers: usize,
    /// A write to a client that makes no progress for this long ends the connection.
    pub(super) send_timeout_ms: u64,
    pub(super) max_connections: usize,
    /// Off by default: behind one load balancer or NAT, one address is many clients.
    pub(super) max_connections_per_ip: Option<u32>,
    /// Bytes per second a client must read a response at; off by default.
    pub(super) min_send_rate_bps: Option<u64>,
    /// Bytes per second a client must send a request body at; off by default.
    pub(super) min_receive_rate_bps: Option<u64>,
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            header_timeout_ms: 10_000,
            keepalive_timeout_s: 60,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            send_timeout_ms: 60_000,
            max_connections: 100_000,
            max_connections_per_ip: None,
            min_send_rate_bps: None,
            min_receive_rate_bps: None,
        }
    }
}

/// The resolver for upstream names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DnsSpec {
    /// `ip:port` of each nameserver; the system's (`/etc/resolv.conf`) when empty.
    #[serde(default)]
    pub(super) nameservers: Vec<String>,
    #[serde(default = "default_dns_timeout_ms")]
    pub(super) timeout_ms: u64,
}

fn default_dns_timeout_ms() -> u64 {
    2000
}

/// No `dns` section: the system's nameservers and the default timeout.
impl Default for DnsSpec {
    fn default() -> Self {
        DnsSpec {
            nameservers: Vec::new(),
            timeout_ms: default_dns_timeout_ms(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthSpec {
    pub(super) jwt: Option<JwtSpec>,
    pub(super) api_keys: Option<ApiKeysSpec>,
    /// The tier of a consumer whose token or key names none.
    #[serde(default = "default_tier")]
    pub(super) default_tier: String,
}

fn default_tier() -> String {
    "free".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JwtSpec {
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<String>,
    #[serde(default = "default_leeway_s")]
    pub(super) leeway_s: u64,
    #[serde(default = "default_consumer_claim")]
    pub(super) consumer_claim: String,
    #[serde(default = "default_tier_claim")]
    pub(super) tier_claim: String,
    #[serde(default)]
    pub(super) keys: Vec<JwtKeySpec>,
    pub(super) jwks_file: Option<String>,
    pub(super) jwks_url: Option<String>,
    /// How often a JWKS file or URL is read again.
    #[serde(default = "default_jwks_refresh_s")]
    pub(super) jwks_refresh_s: u64,
    /// Least time between two refreshes woken by an unknown `kid`.
    #[serde(default = "default_jwks_cooldown_s")]
    pub(super) jwks_cooldown_s: u64,
    #[serde(default)]
    pub(super) claims_to_headers: BTreeMap<String, String>,
    /// Whether the upstream receives the `Authorization` header of a verified token.
    #[serde(default = "default_true")]
    pub(super) forward_token: bool,
    /// Verified tokens kept so a hot token is not verified again.
    #[serde(default = "default_cache_entries")]
    pub(super) cache_entries: usize,
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
pub(super) struct JwtKeySpec {
    pub(super) kid: Option<String>,
    pub(super) alg: String,
    pub(super) secret: Option<String>,
    pub(super) public_key_file: Option<String>,
    /// An inline PEM public key.
    pub(super) public_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiKeysSpec {
    #[serde(default = "default_api_key_header")]
    pub(super) header: String,
    pub(super) keys: Vec<ApiKeySpec>,
}

fn default_api_key_header() -> String {
    "x-api-key".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiKeySpec {
    pub(super) consumer: String,
    /// `sha256:<64 hex digits>`; `floodgate hash-key KEY` prints it.
    pub(super) key: String,
    pub(super) tier: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RedisSpec {
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) cluster: Option<Vec<String>>,
    #[serde(default)]
    pub(super) sentinel: Option<SentinelSpec>,
    #[serde(default)]
    pub(super) tls: Option<RedisTlsSpec>,
    #[serde(default = "default_sync_interval_ms")]
    pub(super) sync_interval_ms: u64,
    #[serde(default = "default_key_prefix")]
    pub(super) key_prefix: String,
    #[serde(default = "default_on_unavailable")]
    pub(super) on_unavailable: OnUnavailable,
    #[serde(default = "default_max_keys_per_sync")]
    pub(super) max_keys_per_sync: usize,
    #[serde(default = "default_consumers_log_entries")]
    pub(super) consumers_log_entries: usize,
    #[serde(default)]
    pub(super) region: Option<RegionSpec>,
}

/// `redis.region`: this instance's region and every other region's Redis.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RegionSpec {
    pub(super) name: String,
    /// Each value a URL string or a [`PeerSpec`] map, read one by one so that a
    /// problem names its peer's key (an untagged enum's error would not).
    #[serde(default)]
    pub(super) peers: BTreeMap<String, serde_yaml::Value>,
    #[serde(default = "default_region_sync_interval_ms")]
    pub(super) sync_interval_ms: u64,
    #[serde(default = "default_on_partition")]
    pub(super) on_partition: OnPartition,
}

/// A peer region's Redis in its map form: the connection options of `redis`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct PeerSpec {
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) cluster: Option<Vec<String>>,
    #[serde(default)]
    pub(super) sentinel: Option<SentinelSpec>,
    #[serde(default)]
    pub(super) tls: Option<RedisTlsSpec>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct SentinelSpec {
    pub(super) master_name: String,
    pub(super) nodes: Vec<String>,
    /// The master's ACL credentials and database (the sentinels' own go in their URLs).
    #[serde(default)]
    pub(super) username: Option<String>,
    #[serde(default)]
    pub(super) password: Option<String>,
    #[serde(default)]
    pub(super) db: i64,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RedisTlsSpec {
    #[serde(default)]
    pub(super) ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub(super) cert_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub(super) key_file: Option<std::path::PathBuf>,
}

fn default_sync_interval_ms() -> u64 {
    100
}
fn default_max_keys_per_sync() -> usize {
    5_000
}
fn default_consumers_log_entries() -> usize {
    100_000
}
fn default_key_prefix() -> String {
    "floodgate".into()
}
fn default_on_unavailable() -> OnUnavailable {
    OnUnavailable::LocalShare
}
fn default_region_sync_interval_ms() -> u64 {
    1000
}
fn default_on_partition() -> OnPartition {
    OnPartition::SafeShare
}
