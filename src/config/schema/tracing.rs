//! The `tracing` section as written: OpenTelemetry spans exported over OTLP.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct TracingSpec {
    pub(in crate::config) otlp: OtlpSpec,
    #[serde(default = "default_service_name")]
    pub(in crate::config) service_name: String,
    #[serde(default = "default_sample_ratio")]
    pub(in crate::config) sample_ratio: f64,
    #[serde(default = "super::default_true")]
    pub(in crate::config) parent_based: bool,
    #[serde(default = "default_max_queue")]
    pub(in crate::config) max_queue: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct OtlpSpec {
    pub(in crate::config) endpoint: String,
    #[serde(default = "default_protocol")]
    pub(in crate::config) protocol: String,
    #[serde(default)]
    pub(in crate::config) headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout_ms")]
    pub(in crate::config) timeout_ms: u64,
    pub(in crate::config) tls: Option<OtlpTlsSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct OtlpTlsSpec {
    pub(in crate::config) ca_file: Option<String>,
    pub(in crate::config) cert_file: Option<String>,
    pub(in crate::config) key_file: Option<String>,
}

fn default_service_name() -> String {
    "floodgate".into()
}

fn default_sample_ratio() -> f64 {
    0.05
}

fn default_max_queue() -> usize {
    2048
}

fn default_protocol() -> String {
    "http/protobuf".into()
}

fn default_timeout_ms() -> u64 {
    5000
}
