//! Serde mirror of `upstreams[]`: targets, balancing, health checks, timeouts,
//! breakers and TLS.

use crate::config::model::{Balance, HealthCheckKind, UpstreamKind};
use serde::Deserialize;

/// How an upstream is reached over TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct UpstreamTlsSpec {
    /// The first named target's host when absent.
    pub(in crate::config) sni: Option<String>,
    #[serde(default = "super::default_true")]
    pub(in crate::config) verify: bool,
    /// Trusted CAs instead of the system's.
    pub(in crate::config) ca_file: Option<String>,
    /// A client certificate to present (with `key_file`).
    pub(in crate::config) cert_file: Option<String>,
    pub(in crate::config) key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct HealthCheckSpec {
    pub(in crate::config) kind: HealthCheckKind,
    #[serde(default = "default_health_path")]
    pub(in crate::config) path: String,
    /// Host header of the probe; the first target as configured when absent.
    pub(in crate::config) host: Option<String>,
    #[serde(default = "default_health_interval_ms")]
    pub(in crate::config) interval_ms: u64,
    #[serde(default = "default_one")]
    pub(in crate::config) consecutive_success: usize,
    #[serde(default = "default_one")]
    pub(in crate::config) consecutive_failure: usize,
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
pub(in crate::config) struct TimeoutsSpec {
    pub(in crate::config) connect_ms: u64,
    pub(in crate::config) read_ms: u64,
    pub(in crate::config) write_ms: u64,
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
pub(in crate::config) struct UpstreamSpec {
    #[serde(default)]
    pub(in crate::config) kind: UpstreamKind,
    #[serde(default)]
    pub(in crate::config) targets: Vec<String>,
    /// How often names among the targets are looked up again.
    #[serde(default = "default_resolve_interval_s")]
    pub(in crate::config) resolve_interval_s: u64,
    /// Drop addresses in DNS answers that no public upstream has (loopback, private, ...).
    #[serde(default)]
    pub(in crate::config) refuse_private_answers: bool,
    #[serde(default)]
    pub(in crate::config) balance: Balance,
    pub(in crate::config) health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub(in crate::config) timeouts: TimeoutsSpec,
    #[serde(default = "default_retries")]
    pub(in crate::config) retries: u32,
    /// One breaker per target; none when absent.
    pub(in crate::config) breaker: Option<BreakerSpec>,
    pub(in crate::config) tls: Option<UpstreamTlsSpec>,
    /// Speak HTTP/2 to the targets (ALPN h2 over TLS, h2c without).
    #[serde(default)]
    pub(in crate::config) http2: bool,
}

/// `failures` failures (connect errors, timeouts, 5xx) within `window_s` open a
/// target's breaker for `open_s`; then `half_open_requests` probes decide.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct BreakerSpec {
    #[serde(default = "default_breaker_failures")]
    pub(in crate::config) failures: u32,
    #[serde(default = "default_breaker_window_s")]
    pub(in crate::config) window_s: u64,
    #[serde(default = "default_breaker_open_s")]
    pub(in crate::config) open_s: u64,
    #[serde(default = "default_one_u32")]
    pub(in crate::config) half_open_requests: u32,
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

fn default_resolve_interval_s() -> u64 {
    5
}
