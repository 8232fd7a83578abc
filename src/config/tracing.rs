//! `tracing`: the collector, its protocol and TLS, and how many traces are recorded.

use super::model::{OtlpProtocol, OtlpTls, Tracing};
use super::problems::Problems;
use super::schema::TracingSpec;
use crate::tls::certs;
use serde_yaml::Value;
use std::time::Duration;

const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=60_000;
/// The queue's slots are allocated up front (24 bytes each).
const MAX_QUEUE: std::ops::RangeInclusive<usize> = 1..=100_000;

pub(super) fn tracing(problems: &mut Problems, value: Option<Value>) -> Option<Tracing> {
    let spec: TracingSpec = problems.section("tracing", value?)?;
    let before = problems.0.len();
    let otlp = spec.otlp;
    let protocol = match otlp.protocol.as_str() {
        "http/protobuf" => OtlpProtocol::HttpProtobuf,
        "grpc" => OtlpProtocol::Grpc,
        other => {
            problems.add(
                "tracing.otlp.protocol",
                format!("\"{other}\": use http/protobuf or grpc"),
            );
            OtlpProtocol::HttpProtobuf
        }
    };
    let endpoint = otlp.endpoint.trim_end_matches('/').to_string();
    let https = match endpoint.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some() && matches!(uri.scheme_str(), Some("http" | "https")) => {
            if uri.query().is_some() || otlp.endpoint.contains('#') {
                problems.add(
                    "tracing.otlp.endpoint",
                    "no query or fragment: the path /v1/traces is appended",
                );
            } else if protocol == OtlpProtocol::Grpc && uri.path() != "/" && !uri.path().is_empty() {
                problems.add(
                    "tracing.otlp.endpoint",
                    "a gRPC endpoint is scheme, host and port only (the service path is fixed)",
                );
            }
            uri.scheme_str() == Some("https")
        }
        _ => {
            problems.add(
                "tracing.otlp.endpoint",
                format!("\"{}\": an http:// or https:// URL with a host", otlp.endpoint),
            );
            false
        }
    };
    let mut headers = Vec::new();
    for (name, value) in &otlp.headers {
        let path = format!("tracing.otlp.headers.{name}");
        // gRPC metadata keys are lower-case; HTTP names are case-insensitive anyway.
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || name.bytes().any(|b| b.is_ascii_uppercase())
        {
            problems.add(path, "not a valid lower-case header name");
        } else if protocol == OtlpProtocol::Grpc && name.ends_with("-bin") {
            problems.add(path, "gRPC sends -bin metadata as binary: not a header value");
        } else if http::HeaderValue::from_str(value).is_err() {
            problems.add(path, "not a valid header value (visible ASCII only)");
        } else {
            headers.push((name.clone(), value.clone()));
        }
    }
    if !TIMEOUT_MS.contains(&otlp.timeout_ms) {
        problems.add(
            "tracing.otlp.timeout_ms",
            format!(
                "{} is out of range {}..={}",
                otlp.timeout_ms,
                TIMEOUT_MS.start(),
                TIMEOUT_MS.end()
            ),
        );
    }
    let tls = otlp.tls.and_then(|spec| {
        if !https {
            problems.add("tracing.otlp.tls", "needs an https:// endpoint");
        }
        let mut read = |key: &str, file: &str| match std::fs::read(file) {
            Ok(pem) => Some(pem),
            Err(e) => {
                problems.add(format!("tracing.otlp.tls.{key}"), format!("{file}: {e}"));
                None
            }
        };
        let ca_pem = match spec.ca_file.as_deref() {
            Some(file) => match certs::load_chain(file) {
                Ok(_) => Some(read("ca_file", file)?),
                Err(why) => {
                    problems.add("tracing.otlp.tls.ca_file", why);
                    return None;
                }
            },
            None => None,
        };
        let client_pem = match (spec.cert_file.as_deref(), spec.key_file.as_deref()) {
            (Some(cert), Some(key)) => match certs::load_pair(cert, key) {
                Ok(_) => Some((read("cert_file", cert)?, read("key_file", key)?)),
                Err(why) => {
                    problems.add("tracing.otlp.tls.cert_file", why);
                    return None;
                }
            },
            (None, None) => None,
            _ => {
                problems.add("tracing.otlp.tls", "cert_file and key_file go together");
                return None;
            }
        };
        Some(OtlpTls { ca_pem, client_pem })
    });
    if spec.service_name.trim().is_empty() {
        problems.add("tracing.service_name", "must not be empty");
    }
    if !(0.0..=1.0).contains(&spec.sample_ratio) {
        problems.add(
            "tracing.sample_ratio",
            format!("{} is out of range 0..=1", spec.sample_ratio),
        );
    }
    if !MAX_QUEUE.contains(&spec.max_queue) {
        problems.add(
            "tracing.max_queue",
            format!(
                "{} is out of range {}..={}",
                spec.max_queue,
                MAX_QUEUE.start(),
                MAX_QUEUE.end()
            ),
        );
    }
    (problems.0.len() == before).then(|| Tracing {
        endpoint,
        protocol,
        headers,
        timeout: Duration::from_millis(otlp.timeout_ms),
        tls,
        service_name: spec.service_name,
        sample_ratio: spec.sample_ratio,
        parent_based: spec.parent_based,
        max_queue: spec.max_queue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> (Option<Tracing>, Vec<String>) {
        let mut problems = Problems::default();
        let value = serde_yaml::from_str(yaml).expect("yaml");
        let tracing = tracing(&mut problems, Some(value));
        let found = problems
            .0
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        (tracing, found)
    }

    #[test]
    fn defaults_follow_the_issue() {
        let (tracing, problems) = parse("otlp: { endpoint: http://collector:4318/ }");
        assert!(problems.is_empty(), "{problems:?}");
        let t = tracing.expect("tracing");
        assert_eq!(t.endpoint, "http://collector:4318");
        assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(t.timeout, Duration::from_millis(5000));
        assert_eq!(t.service_name, "floodgate");
        assert_eq!(t.sample_ratio, 0.05);
        assert!(t.parent_based);
        assert_eq!(t.max_queue, 2048);
        assert!(t.tls.is_none() && t.headers.is_empty());
    }

    #[test]
    fn every_mistake_is_named_by_its_key() {
        let (tracing, problems) = parse(
            "otlp:\n  endpoint: collector:4318\n  protocol: thrift\n  timeout_ms: 10\n  headers: { Authorization: x, x-ok: \"a\\nb\" }\n\
             service_name: \" \"\nsample_ratio: 1.5\nmax_queue: 0\n",
        );
        assert!(tracing.is_none());
        for key in [
            "tracing.otlp.endpoint",
            "tracing.otlp.protocol",
            "tracing.otlp.timeout_ms",
            "tracing.otlp.headers.Authorization",
            "tracing.otlp.headers.x-ok",
            "tracing.service_name",
            "tracing.sample_ratio",
            "tracing.max_queue",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(&format!("{key}: "))),
                "{key}: {problems:?}"
            );
        }
        let (_, problems) = parse("otlp: { endpoint: http://c:4317, protcol: grpc }");
        assert!(
            problems[0].starts_with("tracing.otlp.protcol: unknown field"),
            "{problems:?}"
        );
        let (_, problems) = parse("otlp: { endpoint: \"http://c:4317/x\", protocol: grpc }");
        assert!(problems[0].starts_with("tracing.otlp.endpoint: "), "{problems:?}");
        let (_, problems) = parse("otlp: { endpoint: \"http://c:4318?x=1\" }");
        assert!(
            problems[0].starts_with("tracing.otlp.endpoint: no query"),
            "{problems:?}"
        );
        let (_, problems) =
            parse("otlp: { endpoint: \"http://c:4317\", protocol: grpc, headers: { x-key-bin: a } }");
        assert!(
            problems[0].starts_with("tracing.otlp.headers.x-key-bin: "),
            "{problems:?}"
        );
        let (_, problems) = parse("otlp: { endpoint: \"http://c:4317\" }\nmax_queue: 100001");
        assert!(problems[0].starts_with("tracing.max_queue: "), "{problems:?}");
    }

    #[test]
    fn tls_needs_https_and_readable_files() {
        let (_, problems) = parse("otlp: { endpoint: http://c:4318, tls: { ca_file: /nonexistent/ca.pem } }");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("tracing.otlp.tls: needs an https://")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("tracing.otlp.tls.ca_file: /nonexistent/ca.pem")),
            "{problems:?}"
        );
        let (_, problems) = parse("otlp: { endpoint: https://c:4318, tls: { cert_file: /x.pem } }");
        assert_eq!(problems, ["tracing.otlp.tls: cert_file and key_file go together"]);
    }
}
