//! `upstreams`: targets (addresses, or names looked up in the background),
//! balancing, health checks, timeouts, retries and circuit breakers.

use super::model::{BreakerSettings, HealthCheck, TargetSpec, Upstream, UpstreamKind};
use super::problems::Problems;
use super::schema::{TimeoutsSpec, UpstreamSpec, UpstreamTlsSpec};
use crate::tls::certs;
use crate::tls::upstream::{Transport, UpstreamTls};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// More retries than this only multiply the load on a failing upstream.
const MAX_RETRIES: u32 = 10;

pub(super) fn upstreams(problems: &mut Problems, value: Option<Value>) -> Vec<Upstream> {
    let Some(value) = value else { return Vec::new() };
    let Some(map): Option<BTreeMap<String, Value>> = problems.section("upstreams", value) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(name, spec)| {
            let path = format!("upstreams.{name}");
            let spec = problems.section::<UpstreamSpec>(&path, spec)?;
            Some(upstream(problems, &path, name, spec))
        })
        .collect()
}

fn upstream(problems: &mut Problems, path: &str, name: String, spec: UpstreamSpec) -> Upstream {
    let targets: Vec<TargetSpec> = spec
        .targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| target(problems, &format!("{path}.targets[{i}]"), t))
        .collect();
    if spec.resolve_interval_s == 0 {
        problems.add(format!("{path}.resolve_interval_s"), "must be at least 1");
    }
    match spec.kind {
        UpstreamKind::Http if spec.targets.is_empty() => problems.add(
            format!("{path}.targets"),
            "needs at least one host:port target (or kind: echo)",
        ),
        UpstreamKind::Echo if !spec.targets.is_empty() || spec.health_check.is_some() => problems.add(
            path,
            "kind: echo is served in-process and takes no targets or health_check",
        ),
        _ => {}
    }
    let health_check = spec.health_check.map(|hc| {
        if hc.interval_ms == 0 {
            problems.add(
                format!("{path}.health_check.interval_ms"),
                "must be greater than 0",
            );
        }
        let uri = match http::Uri::try_from(hc.path.as_str()) {
            Ok(uri) if hc.path.starts_with('/') => uri,
            _ => {
                problems.add(
                    format!("{path}.health_check.path"),
                    "must be a path starting with /",
                );
                http::Uri::from_static("/")
            }
        };
        HealthCheck {
            kind: hc.kind,
            path: uri,
            host: hc.host,
            interval: Duration::from_millis(hc.interval_ms),
            consecutive_success: hc.consecutive_success,
            consecutive_failure: hc.consecutive_failure,
        }
    });
    let TimeoutsSpec {
        connect_ms,
        read_ms,
        write_ms,
    } = spec.timeouts;
    for (key, v) in [
        ("connect_ms", connect_ms),
        ("read_ms", read_ms),
        ("write_ms", write_ms),
    ] {
        if v == 0 {
            problems.add(format!("{path}.timeouts.{key}"), "must be greater than 0");
        }
    }
    if spec.retries > MAX_RETRIES {
        problems.add(format!("{path}.retries"), format!("at most {MAX_RETRIES}"));
    }
    let breaker = spec.breaker.map(|b| {
        if b.failures == 0 || b.window_s == 0 || b.open_s == 0 || b.half_open_requests == 0 {
            problems.add(
                format!("{path}.breaker"),
                "failures, window_s, open_s and half_open_requests must be at least 1",
            );
        }
        BreakerSettings {
            failures: b.failures,
            window: Duration::from_secs(b.window_s),
            open: Duration::from_secs(b.open_s),
            half_open_requests: b.half_open_requests,
        }
    });
    let transport = Transport {
        tls: spec
            .tls
            .and_then(|tls| upstream_tls(problems, path, tls, &targets)),
        http2: spec.http2,
    };
    Upstream {
        name,
        kind: spec.kind,
        transport,
        targets,
        resolve_interval: Duration::from_secs(spec.resolve_interval_s),
        refuse_private_answers: spec.refuse_private_answers,
        balance: spec.balance,
        health_check,
        connect_timeout: Duration::from_millis(connect_ms),
        read_timeout: Duration::from_millis(read_ms),
        write_timeout: Duration::from_millis(write_ms),
        retries: spec.retries,
        breaker,
    }
}

/// An address is taken as it is; a name is checked here and looked up at start
/// and then every `resolve_interval_s`, never on the request path.
fn target(problems: &mut Problems, path: &str, text: &str) -> Option<TargetSpec> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Some(TargetSpec::Addr(a));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        problems.add(path, format!("\"{text}\" needs a port (host:port)"));
        return None;
    };
    let Ok(port) = port.parse::<u16>() else {
        problems.add(path, format!("\"{text}\": the port must be a number up to 65535"));
        return None;
    };
    if !is_host_name(host) {
        problems.add(
            path,
            format!("\"{text}\": \"{host}\" is neither an IP address nor a DNS name"),
        );
        return None;
    }
    Some(TargetSpec::Name {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// An upstream's TLS, its files read and checked now. With verification on, an
/// SNI is needed (Pingora skips verification without one): the configured one,
/// else the first named target's host.
fn upstream_tls(
    problems: &mut Problems,
    path: &str,
    spec: UpstreamTlsSpec,
    targets: &[TargetSpec],
) -> Option<Arc<UpstreamTls>> {
    let mut names: Vec<String> = targets
        .iter()
        .filter_map(|t| match t {
            TargetSpec::Name { host, .. } => Some(host.trim_end_matches('.').to_string()),
            TargetSpec::Addr(_) => None,
        })
        .collect();
    names.dedup();
    if spec.verify && spec.sni.is_none() && names.len() > 1 {
        problems.add(
            format!("{path}.tls.sni"),
            "required when the targets have different names: the one name every target's certificate carries",
        );
        return None;
    }
    if spec.verify && spec.sni.as_deref() == Some("") {
        problems.add(format!("{path}.tls.sni"), "must not be empty while verify is on");
        return None;
    }
    let sni = match spec.sni.or(names.into_iter().next()) {
        Some(sni) => sni,
        None if spec.verify => {
            problems.add(
                format!("{path}.tls.sni"),
                "required to verify targets given by address: the name their certificate carries",
            );
            return None;
        }
        None => String::new(),
    };
    let ca = match &spec.ca_file {
        Some(file) => match certs::load_chain(file) {
            Ok(chain) => Some(chain),
            Err(why) => {
                problems.add(format!("{path}.tls.ca_file"), why);
                return None;
            }
        },
        None => None,
    };
    let client = match (&spec.cert_file, &spec.key_file) {
        (Some(cert), Some(key)) => match certs::load_pair(cert, key) {
            Ok(pair) => Some(pair),
            Err(why) => {
                problems.add(format!("{path}.tls.cert_file"), why);
                return None;
            }
        },
        (None, None) => None,
        _ => {
            problems.add(
                format!("{path}.tls"),
                "cert_file and key_file go together (the client certificate and its key)",
            );
            return None;
        }
    };
    Some(Arc::new(UpstreamTls::new(sni, spec.verify, ca, client.as_ref())))
}

/// RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens
/// (underscores too, as Kubernetes SRV-style names carry them), a trailing dot allowed.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> (Vec<Upstream>, Vec<String>) {
        let mut problems = Problems::default();
        let ups = upstreams(&mut problems, Some(serde_yaml::from_str(yaml).expect("yaml")));
        (ups, problems.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_valid_upstream_becomes_runtime_values() {
        let (ups, problems) = parse(
            "b:\n  targets: [\"127.0.0.1:9000\", \"localhost:9001\"]\n  \
             health_check: { kind: http, interval_ms: 250 }\n  \
             breaker: { failures: 3, open_s: 2 }\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let b = &ups[0];
        assert_eq!(
            b.targets,
            vec![
                TargetSpec::Addr("127.0.0.1:9000".parse().expect("addr")),
                TargetSpec::Name {
                    host: "localhost".into(),
                    port: 9001
                },
            ]
        );
        assert_eq!(b.resolve_interval, Duration::from_secs(5));
        assert!(!b.refuse_private_answers, "off by default");
        assert_eq!(b.read_timeout, Duration::from_secs(5));
        assert_eq!(
            b.health_check.as_ref().map(|h| h.interval),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            b.breaker.map(|s| (s.failures, s.open)),
            Some((3, Duration::from_secs(2)))
        );
    }

    #[test]
    fn refuse_private_answers_is_a_bool() {
        let (ups, problems) = parse("b: { targets: [\"api.internal:80\"], refuse_private_answers: true }\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(ups[0].refuse_private_answers);
        let (_, problems) = parse("b: { targets: [\"api.internal:80\"], refuse_private_answers: maybe }\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("upstreams.b.refuse_private_answers: "),
            "{problems:?}"
        );
    }

    #[test]
    fn every_problem_names_its_key() {
        let (_, problems) = parse(
            "a: { targets: [\"nohost\", \"bad_-.x:80\", \"h:http\"], timeouts: { read_ms: 0 }, retries: 11, resolve_interval_s: 0 }\n\
             e: { kind: echo, targets: [\"127.0.0.1:1\"] }\n\
             h: { targets: [] , health_check: { kind: tcp, path: x, interval_ms: 0 }, breaker: { failures: 0 } }\n",
        );
        assert_eq!(
            problems,
            vec![
                "upstreams.a.targets[0]: \"nohost\" needs a port (host:port)",
                "upstreams.a.targets[1]: \"bad_-.x:80\": \"bad_-.x\" is neither an IP address nor a DNS name",
                "upstreams.a.targets[2]: \"h:http\": the port must be a number up to 65535",
                "upstreams.a.resolve_interval_s: must be at least 1",
                "upstreams.a.timeouts.read_ms: must be greater than 0",
                "upstreams.a.retries: at most 10",
                "upstreams.e: kind: echo is served in-process and takes no targets or health_check",
                "upstreams.h.targets: needs at least one host:port target (or kind: echo)",
                "upstreams.h.health_check.interval_ms: must be greater than 0",
                "upstreams.h.health_check.path: must be a path starting with /",
                "upstreams.h.breaker: failures, window_s, open_s and half_open_requests must be at least 1",
            ]
        );
    }
}
