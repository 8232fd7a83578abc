//! Where floodgate listens and what it accepts from clients: `listen` (plain,
//! TLS, h2c, PROXY protocol), `admin`, `client` and `trusted_proxies`.

use super::model::{Admin, ClientLimits, Listener, ListenerTls};
use super::problems::Problems;
use super::schema::{AdminSpec, ClientSpec, ListenerSpec};
use crate::tls::certs;
use crate::vocab::client_addr::TrustedProxies;
use serde_yaml::Value;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// How long before its expiry a certificate is warned about (`-t` and at start).
const CERT_EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Shortest admin token accepted: a guessable token is an open admin API.
const MIN_ADMIN_TOKEN_CHARS: usize = 16;

pub(super) fn socket_addr(problems: &mut Problems, path: &str, text: &str) -> Option<SocketAddr> {
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.add(path, format!("\"{text}\" is not an IP:port address"));
            None
        }
    }
}

pub(super) fn listen(problems: &mut Problems, value: Option<Value>) -> Vec<Listener> {
    let Some(value) = value else {
        problems.add(
            "listen",
            "required: the proxy's listen addresses, e.g. [\"0.0.0.0:8080\"]",
        );
        return Vec::new();
    };
    let entries: Vec<Value> = problems.section("listen", value).unwrap_or_default();
    if entries.is_empty() {
        problems.add("listen", "needs at least one address");
    }
    entries
        .into_iter()
        .enumerate()
        .filter_map(|(i, entry)| listener(problems, &format!("listen[{i}]"), entry))
        .collect()
}

/// One `listen` entry: an address string (plain HTTP/1.1), or a map with `addr`.
fn listener(problems: &mut Problems, path: &str, entry: Value) -> Option<Listener> {
    if let Value::String(text) = &entry {
        return Some(Listener {
            addr: socket_addr(problems, path, text)?,
            tls: None,
            h2c: false,
            proxy_protocol: false,
        });
    }
    let spec = problems.section::<ListenerSpec>(path, entry)?;
    let addr = socket_addr(problems, &format!("{path}.addr"), &spec.addr);
    if spec.h2c && spec.tls.is_some() {
        problems.add(
            format!("{path}.h2c"),
            "is for plain listeners: on TLS, HTTP/2 is agreed by ALPN (tls.h2)",
        );
    }
    let tls = spec.tls.map(|tls| {
        if tls.certs.is_empty() {
            problems.add(
                format!("{path}.tls.certs"),
                "needs at least one cert_file/key_file pair",
            );
        }
        let certs = tls
            .certs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                certs::load_pair(&c.cert_file, &c.key_file)
                    .map_err(|why| problems.add(format!("{path}.tls.certs[{i}]"), why))
                    .ok()
            })
            .collect();
        ListenerTls { certs, h2: tls.h2 }
    });
    Some(Listener {
        addr: addr?,
        tls,
        h2c: spec.h2c,
        proxy_protocol: spec.proxy_protocol,
    })
}

/// Certificates served by the listeners that have expired or expire within 14 days.
pub fn expiring_certificates(listen: &[Listener], now: SystemTime) -> Vec<String> {
    listen
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .flat_map(|tls| &tls.certs)
        .filter_map(|cert| cert.expiry_warning(now, CERT_EXPIRY_WARNING))
        .collect()
}

pub(super) fn admin(problems: &mut Problems, value: Option<Value>) -> Option<Admin> {
    let Some(value) = value else {
        problems.add("admin", "required: admin: { listen: 127.0.0.1:9091 }");
        return None;
    };
    let spec = problems.section::<AdminSpec>("admin", value)?;
    if spec
        .token
        .as_ref()
        .is_some_and(|t| t.chars().count() < MIN_ADMIN_TOKEN_CHARS)
    {
        problems.add(
            "admin.token",
            format!("must be at least {MIN_ADMIN_TOKEN_CHARS} characters"),
        );
    }
    Some(Admin {
        listen: socket_addr(problems, "admin.listen", &spec.listen)?,
        token: spec.token,
        public_stats: spec.public_stats,
    })
}

pub(super) fn client(problems: &mut Problems, value: Option<Value>) -> Option<ClientLimits> {
    let spec = match value {
        None => ClientSpec::default(),
        Some(v) => problems.section::<ClientSpec>("client", v)?,
    };
    if spec.header_timeout_ms == 0 {
        problems.add("client.header_timeout_ms", "must be greater than 0");
    }
    if spec.send_timeout_ms == 0 {
        problems.add("client.send_timeout_ms", "must be greater than 0");
    }
    if spec.max_connections == 0 {
        problems.add("client.max_connections", "must be greater than 0");
    }
    if spec.max_connections_per_ip == Some(0) {
        problems.add(
            "client.max_connections_per_ip",
            "must be greater than 0 (or left out)",
        );
    }
    for (key, rate) in [
        ("client.min_send_rate_bps", spec.min_send_rate_bps),
        ("client.min_receive_rate_bps", spec.min_receive_rate_bps),
    ] {
        if rate == Some(0) {
            problems.add(key, "must be greater than 0 (or left out)");
        }
    }
    if spec.max_headers == 0 || spec.max_header_bytes < 1024 {
        problems.add(
            "client",
            "max_headers must be > 0 and max_header_bytes at least 1024",
        );
    }
    Some(ClientLimits {
        header_timeout: Duration::from_millis(spec.header_timeout_ms),
        keepalive_timeout_s: spec.keepalive_timeout_s,
        max_header_bytes: spec.max_header_bytes,
        max_headers: spec.max_headers,
        send_timeout: Duration::from_millis(spec.send_timeout_ms),
        max_connections: spec.max_connections,
        max_connections_per_ip: spec.max_connections_per_ip,
        min_send_rate_bps: spec.min_send_rate_bps,
        min_receive_rate_bps: spec.min_receive_rate_bps,
    })
}

pub(super) fn trusted_proxies(problems: &mut Problems, value: Option<Value>) -> TrustedProxies {
    let texts = value
        .and_then(|v| problems.section::<Vec<String>>("trusted_proxies", v))
        .unwrap_or_default();
    let nets = texts
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            if net.is_err() {
                problems.add(
                    format!("trusted_proxies[{i}]"),
                    format!("\"{text}\" is not an address or CIDR"),
                );
            }
            net.ok()
        })
        .collect();
    TrustedProxies::new(nets)
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems_of;

    #[test]
    fn addresses_tokens_and_client_limits_name_their_key() {
        let problems = problems_of(
            "listen: [\"127.0.0.1:8080\", \"nope\"]\n\
             admin: { listen: \"127.0.0.1\", token: short }\n\
             client: { header_timeout_ms: 0, max_header_bytes: 10, min_send_rate_bps: 0, min_receive_rate_bps: 0 }\n\
             trusted_proxies: [\"10.0.0.0/8\", \"10.0.0.1\", \"bogus\"]\n\
             routes: [{ name: r, path_prefix: /, respond: { status: 200 } }]\n",
        );
        assert_eq!(
            problems,
            vec![
                "listen[1]: \"nope\" is not an IP:port address",
                "admin.token: must be at least 16 characters",
                "admin.listen: \"127.0.0.1\" is not an IP:port address",
                "client.header_timeout_ms: must be greater than 0",
                "client.min_send_rate_bps: must be greater than 0 (or left out)",
                "client.min_receive_rate_bps: must be greater than 0 (or left out)",
                "client: max_headers must be > 0 and max_header_bytes at least 1024",
                "trusted_proxies[2]: \"bogus\" is not an address or CIDR",
            ]
        );
    }

    #[test]
    fn listen_and_admin_are_required() {
        let problems = problems_of("routes: [{ name: r, path_prefix: /, respond: { status: 200 } }]\n");
        assert!(problems[0].starts_with("listen: required"), "{problems:?}");
        assert!(problems[1].starts_with("admin: required"), "{problems:?}");
    }
}
