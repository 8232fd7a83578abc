//! Serde mirror of the gateway's part of the YAML file. No logic: defaults and
//! shapes only; `validate` turns these into a checked `Config`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    pub listen: String,
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
}

/// The gateway's top-level keys, each deserialized on its own so that one bad
/// section does not hide the problems of the others.
pub type UpstreamSpecs = BTreeMap<String, serde_yaml::Value>;
