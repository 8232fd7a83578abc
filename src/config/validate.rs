//! Turns the YAML text into a checked [`Config`], collecting every problem with
//! its key path instead of stopping at the first.

use super::schema::{
    AdminSpec, AuthPolicy, AuthSpec, Balance, BreakerSpec, ClientSpec, GlobalLimitSpec, HealthCheckSpec,
    RedisSpec, RouteSpec, TierSpec, TimeoutsSpec, UpstreamKind, UpstreamSpec,
};
use crate::error::{ConfigProblem, StartupError};
use http::Method;
use pingora_core::server::configuration::ServerConf;
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The whole validated configuration: Pingora's server keys and the gateway's.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConf,
    pub listen: Vec<SocketAddr>,
    pub admin_listen: SocketAddr,
    pub client: ClientSpec,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    pub auth: Option<AuthSpec>,
    /// Tier names and buckets; a tier's id is its index here.
    pub tiers: Vec<(String, TierSpec)>,
    /// Bucket for callers without credentials, keyed by client address; none = unlimited.
    pub anonymous: Option<TierSpec>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub redis: Option<RedisSpec>,
    pub admin_token: Option<String>,
    pub access_log: AccessLogTarget,
}

/// Where access-log lines go: `stdout` (default), `off`, or a file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Off,
    File(std::path::PathBuf),
}

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub kind: UpstreamKind,
    /// Resolved once here: the request path never does DNS.
    pub targets: Vec<SocketAddr>,
    pub balance: Balance,
    pub health_check: Option<HealthCheckSpec>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub retries: u32,
    pub breaker: Option<BreakerSpec>,
}

#[derive(Debug)]
pub enum RouteAction {
    Proxy {
        upstream: usize,
        strip_prefix: bool,
    },
    Respond {
        status: u16,
        body: String,
        content_type: String,
    },
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub path_prefix: String,
    /// Lower-case host without port.
    pub host: Option<String>,
    pub methods: Option<Vec<Method>>,
    pub action: RouteAction,
    pub max_body_bytes: Option<u64>,
    pub auth: AuthPolicy,
    /// Tier ids allowed on this route; `None` allows every tier and anonymous callers.
    pub tiers: Option<Vec<usize>>,
    pub cost: u32,
    pub global_limit: Option<GlobalLimitSpec>,
}

const GATEWAY_TOP: &[&str] = &[
    "listen",
    "admin",
    "client",
    "upstreams",
    "routes",
    "auth",
    "tiers",
    "anonymous",
    "trusted_proxies",
    "redis",
    "access_log",
];

/// The seed tiers, used when the config names none.
const SEED_TIERS: [(&str, f64, f64); 4] = [
    ("free", 1.0, 10.0),
    ("basic", 5.0, 50.0),
    ("premium", 20.0, 200.0),
    ("enterprise", 100.0, 1000.0),
];

/// JWT algorithms floodgate verifies.
pub const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
    "EdDSA",
];
/// HMAC secrets shorter than the hash output are guessable (RFC 7518 3.2).
const MIN_HMAC_SECRET_BYTES: usize = 32;

struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Deserialize one section; on error record it under `path` and return None.
    fn section<T: DeserializeOwned>(&mut self, path: &str, value: Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                // The path inside the section, so the message names the exact key.
                let inner = e.path().to_string();
                let full = if inner == "." {
                    path.to_string()
                } else {
                    join(path, &inner)
                };
                self.add(full, e.into_inner().to_string());
                None
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Read and validate a config file.
pub fn load(path: &str) -> Result<Config, StartupError> {
    let text = std::fs::read_to_string(path).map_err(|source| StartupError::ReadConfig {
        path: path.to_string(),
        source,
    })?;
    parse(&text, |name| std::env::var(name).ok()).map_err(StartupError::Invalid)
}

/// Validate config text; `env` answers `${VAR}` look-ups (injected for tests).
pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Problems(Vec::new());
    let mut root: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Err(vec![ConfigProblem {
                path: String::new(),
                message: format!("not valid YAML: {e}"),
            }])
        }
    };
    interpolate(&mut root, "", &env, &mut problems);
    let Value::Mapping(root) = root else {
        return Err(vec![ConfigProblem {
            path: String::new(),
            message: "the config file must be a YAML mapping of keys".into(),
        }]);
    };

    let pingora_keys = pingora_server_keys();
    let mut server_map = Mapping::new();
    let mut gateway: BTreeMap<String, Value> = BTreeMap::new();
    for (key, value) in root {
        let Some(name) = key.as_str().map(str::to_owned) else {
            problems.add("", format!("keys must be strings, found {key:?}"));
            continue;
        };
        if GATEWAY_TOP.contains(&name.as_str()) {
            gateway.insert(name, value);
        } else if pingora_keys.contains(&name) {
            server_map.insert(Value::String(name), value);
        } else {
            problems.add(name, "unknown key");
        }
    }

    let server: Option<ServerConf> = problems.section("", Value::Mapping(server_map));
    if server.as_ref().is_some_and(|s| s.daemon_wait_for_ready) {
        // The starting process would wait for a readiness signal floodgate never sends
        // (it bootstraps before daemonizing) and exit 1 while the daemon runs on.
        problems.add("daemon_wait_for_ready", "not supported: leave it out or false");
    }

    let listen = match gateway.remove("listen") {
        None => {
            problems.add(
                "listen",
                "required: the proxy's listen addresses, e.g. [\"0.0.0.0:8080\"]",
            );
            Vec::new()
        }
        Some(v) => {
            let list: Vec<String> = problems.section("listen", v).unwrap_or_default();
            if list.is_empty() {
                problems.add("listen", "needs at least one address");
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, s)| socket_addr(&mut problems, &format!("listen[{i}]"), s))
                .collect()
        }
    };

    let mut admin_token = None;
    let admin_listen = match gateway.remove("admin") {
        None => {
            problems.add("admin", "required: admin: { listen: 127.0.0.1:9091 }");
            None
        }
        Some(v) => {
            let admin = problems.section::<AdminSpec>("admin", v);
            if let Some(token) = admin.as_ref().and_then(|a| a.token.as_ref()) {
                if token.len() < 16 {
                    problems.add("admin.token", "must be at least 16 characters");
                }
            }
            admin_token = admin.as_ref().and_then(|a| a.token.clone());
            admin.and_then(|a| socket_addr(&mut problems, "admin.listen", &a.listen))
        }
    };

    let client = match gateway.remove("client") {
        None => Some(ClientSpec::default()),
        Some(v) => problems.section::<ClientSpec>("client", v),
    };
    if let Some(c) = &client {
        if c.header_timeout_ms == 0 {
            problems.add("client.header_timeout_ms", "must be greater than 0");
        }
        if c.max_headers == 0 || c.max_header_bytes < 1024 {
            problems.add(
                "client",
                "max_headers must be > 0 and max_header_bytes at least 1024",
            );
        }
    }

    let upstreams = validate_upstreams(&mut problems, gateway.remove("upstreams"));
    let tiers = validate_tiers(&mut problems, gateway.remove("tiers"));
    let auth = gateway
        .remove("auth")
        .and_then(|v| problems.section::<AuthSpec>("auth", v));
    if let Some(auth) = &auth {
        validate_auth(&mut problems, auth, &tiers);
    }
    let anonymous = gateway
        .remove("anonymous")
        .and_then(|v| problems.section::<TierSpec>("anonymous", v));
    if let Some(a) = &anonymous {
        check_bucket(&mut problems, "anonymous", a);
    }
    let trusted_proxies = gateway
        .remove("trusted_proxies")
        .and_then(|v| problems.section::<Vec<String>>("trusted_proxies", v))
        .unwrap_or_default()
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
    let redis = gateway
        .remove("redis")
        .and_then(|v| problems.section::<RedisSpec>("redis", v));
    if let Some(r) = &redis {
        if !(r.url.starts_with("redis://") || r.url.starts_with("rediss://") || r.url.starts_with("unix://"))
        {
            problems.add("redis.url", "must be a redis:// URL");
        } else if let Err(e) = redis::Client::open(r.url.as_str()) {
            problems.add("redis.url", e.to_string());
        }
        if r.sync_interval_ms < 10 || r.sync_interval_ms > 60_000 {
            problems.add("redis.sync_interval_ms", "must be from 10 to 60000");
        }
        if r.key_prefix.is_empty() {
            problems.add("redis.key_prefix", "must not be empty");
        }
    }
    let access_log = match gateway
        .remove("access_log")
        .and_then(|v| problems.section::<String>("access_log", v))
        .as_deref()
    {
        None | Some("stdout") => AccessLogTarget::Stdout,
        Some("off") => AccessLogTarget::Off,
        Some(path) if path.starts_with('/') || path.starts_with('.') => AccessLogTarget::File(path.into()),
        Some(other) => {
            problems.add(
                "access_log",
                format!("\"{other}\": use stdout, off, or a file path starting with / or ."),
            );
            AccessLogTarget::Off
        }
    };
    let routes = validate_routes(
        &mut problems,
        gateway.remove("routes"),
        &upstreams,
        &tiers,
        auth.is_some(),
    );

    if let (Some(admin), true) = (admin_listen, problems.0.is_empty()) {
        if listen.contains(&admin) {
            problems.add("admin.listen", format!("{admin} is also a proxy listen address"));
        }
    }

    match (server, admin_listen, client) {
        (Some(server), Some(admin_listen), Some(client)) if problems.0.is_empty() => Ok(Config {
            server,
            listen,
            admin_listen,
            client,
            upstreams,
            routes,
            auth,
            tiers,
            anonymous,
            trusted_proxies,
            redis,
            admin_token,
            access_log,
        }),
        _ => Err(problems.0),
    }
}

/// Pingora's own server keys, read off its config type so they never drift.
fn pingora_server_keys() -> HashSet<String> {
    match serde_yaml::to_value(ServerConf::default()) {
        Ok(Value::Mapping(m)) => m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect(),
        _ => HashSet::new(),
    }
}

fn socket_addr(problems: &mut Problems, path: &str, text: &str) -> Option<SocketAddr> {
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.add(path, format!("\"{text}\" is not an IP:port address"));
            None
        }
    }
}

/// Resolve a target once, at load; a name that does not resolve is a config error,
/// never a panic inside `HttpPeer::new` at request time.
fn resolve_target(problems: &mut Problems, path: &str, text: &str) -> Option<SocketAddr> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Some(a);
    }
    if !text.contains(':') {
        problems.add(path, format!("\"{text}\" needs a port (host:port)"));
        return None;
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => Some(a),
            None => {
                problems.add(path, format!("\"{text}\" resolves to no address"));
                None
            }
        },
        Err(e) => {
            problems.add(path, format!("cannot resolve \"{text}\": {e}"));
            None
        }
    }
}

fn validate_upstreams(problems: &mut Problems, value: Option<Value>) -> Vec<Upstream> {
    let Some(value) = value else { return Vec::new() };
    let Some(map): Option<BTreeMap<String, Value>> = problems.section("upstreams", value) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, spec) in map {
        let path = format!("upstreams.{name}");
        let Some(spec) = problems.section::<UpstreamSpec>(&path, spec) else {
            continue;
        };
        let targets: Vec<SocketAddr> = spec
            .targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| resolve_target(problems, &format!("{path}.targets[{i}]"), t))
            .collect();
        match spec.kind {
            UpstreamKind::Http if spec.targets.is_empty() => problems.add(
                format!("{path}.targets"),
                "needs at least one host:port target (or kind: echo)",
            ),
            UpstreamKind::Echo if !spec.targets.is_empty() || spec.health_check.is_some() => problems.add(
                path.clone(),
                "kind: echo is served in-process and takes no targets or health_check",
            ),
            _ => {}
        }
        if let Some(hc) = &spec.health_check {
            if hc.interval_ms == 0 {
                problems.add(
                    format!("{path}.health_check.interval_ms"),
                    "must be greater than 0",
                );
            }
            if !hc.path.starts_with('/') {
                problems.add(format!("{path}.health_check.path"), "must start with /");
            }
        }
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
        if spec.retries > 10 {
            problems.add(format!("{path}.retries"), "at most 10");
        }
        if let Some(b) = &spec.breaker {
            if b.failures == 0 || b.window_s == 0 || b.open_s == 0 || b.half_open_requests == 0 {
                problems.add(
                    format!("{path}.breaker"),
                    "failures, window_s, open_s and half_open_requests must be at least 1",
                );
            }
        }
        out.push(Upstream {
            name,
            kind: spec.kind,
            targets,
            balance: spec.balance,
            health_check: spec.health_check,
            connect_timeout: Duration::from_millis(connect_ms),
            read_timeout: Duration::from_millis(read_ms),
            write_timeout: Duration::from_millis(write_ms),
            retries: spec.retries,
            breaker: spec.breaker,
        });
    }
    out
}

fn validate_tiers(problems: &mut Problems, value: Option<Value>) -> Vec<(String, TierSpec)> {
    let Some(value) = value else {
        return SEED_TIERS
            .iter()
            .map(|(name, rate, burst)| {
                (
                    name.to_string(),
                    TierSpec {
                        rate: *rate,
                        burst: *burst,
                    },
                )
            })
            .collect();
    };
    let Some(map): Option<BTreeMap<String, TierSpec>> = problems.section("tiers", value) else {
        return Vec::new();
    };
    if map.is_empty() {
        problems.add(
            "tiers",
            "needs at least one tier (or leave it out for the seed tiers)",
        );
    }
    for (name, tier) in &map {
        check_bucket(problems, &format!("tiers.{name}"), tier);
    }
    map.into_iter().collect()
}

fn check_bucket(problems: &mut Problems, path: &str, bucket: &TierSpec) {
    if !(bucket.rate > 0.0 && bucket.rate.is_finite()) {
        problems.add(format!("{path}.rate"), "must be a number greater than 0");
    }
    if !(bucket.burst >= 1.0 && bucket.burst.is_finite()) {
        problems.add(format!("{path}.burst"), "must be at least 1");
    }
}

fn tier_id(tiers: &[(String, TierSpec)], name: &str) -> Option<usize> {
    tiers.iter().position(|(n, _)| n == name)
}

fn unknown_tier(tiers: &[(String, TierSpec)], name: &str) -> String {
    let known: Vec<&str> = tiers.iter().map(|(n, _)| n.as_str()).collect();
    format!("no tier named \"{name}\" (tiers: {})", known.join(", "))
}

fn validate_auth(problems: &mut Problems, auth: &AuthSpec, tiers: &[(String, TierSpec)]) {
    if tier_id(tiers, &auth.default_tier).is_none() {
        problems.add("auth.default_tier", unknown_tier(tiers, &auth.default_tier));
    }
    if auth.jwt.is_none() && auth.api_keys.is_none() {
        problems.add("auth", "needs jwt, api_keys or both");
    }
    if let Some(jwt) = &auth.jwt {
        if jwt.keys.is_empty() && jwt.jwks_file.is_none() && jwt.jwks_url.is_none() {
            problems.add("auth.jwt", "needs keys, jwks_file or jwks_url");
        }
        for (i, key) in jwt.keys.iter().enumerate() {
            let path = format!("auth.jwt.keys[{i}]");
            if !JWT_ALGORITHMS.contains(&key.alg.as_str()) {
                problems.add(
                    format!("{path}.alg"),
                    format!("\"{}\" is not one of {}", key.alg, JWT_ALGORITHMS.join(", ")),
                );
                continue;
            }
            let sources = [
                key.secret.is_some(),
                key.public_key_file.is_some(),
                key.public_key.is_some(),
            ];
            let hmac = key.alg.starts_with("HS");
            match (hmac, sources) {
                (true, [true, false, false]) => {
                    if key
                        .secret
                        .as_ref()
                        .is_some_and(|s| s.len() < MIN_HMAC_SECRET_BYTES)
                    {
                        problems.add(
                            format!("{path}.secret"),
                            format!("must be at least {MIN_HMAC_SECRET_BYTES} bytes"),
                        );
                    }
                }
                (true, _) => problems.add(
                    path.clone(),
                    format!("{} needs secret (and nothing else)", key.alg),
                ),
                (false, [false, true, false] | [false, false, true]) => {}
                (false, _) => problems.add(
                    path.clone(),
                    format!(
                        "{} needs one of public_key_file or public_key (never a secret)",
                        key.alg
                    ),
                ),
            }
            if let Some(kid) = &key.kid {
                if jwt.keys[..i].iter().any(|k| k.kid.as_ref() == Some(kid)) {
                    problems.add(format!("{path}.kid"), format!("duplicate kid \"{kid}\""));
                }
            }
        }
        if let Some(url) = &jwt.jwks_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.add("auth.jwt.jwks_url", "must be an http:// or https:// URL");
            }
        }
        if jwt.jwks_refresh_s == 0 {
            problems.add("auth.jwt.jwks_refresh_s", "must be greater than 0");
        }
        if jwt.cache_entries == 0 {
            problems.add("auth.jwt.cache_entries", "must be greater than 0");
        }
        for (claim, header) in &jwt.claims_to_headers {
            let path = format!("auth.jwt.claims_to_headers.{claim}");
            match http::HeaderName::from_bytes(header.as_bytes()) {
                Err(_) => problems.add(path, format!("\"{header}\" is not a header name")),
                Ok(name) if RESERVED_UPSTREAM_HEADERS.contains(&name.as_str()) => {
                    problems.add(path, format!("{name} is set by the gateway itself"))
                }
                Ok(_) => {}
            }
        }
    }
    if let Some(api) = &auth.api_keys {
        if http::HeaderName::from_bytes(api.header.as_bytes()).is_err() {
            problems.add(
                "auth.api_keys.header",
                format!("\"{}\" is not a header name", api.header),
            );
        }
        let mut seen = HashSet::new();
        for (i, key) in api.keys.iter().enumerate() {
            let path = format!("auth.api_keys.keys[{i}]");
            match key.key.strip_prefix("sha256:") {
                Some(digest) if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    if !seen.insert(digest.to_ascii_lowercase()) {
                        problems.add(format!("{path}.key"), "duplicate key");
                    }
                }
                _ => problems.add(
                    format!("{path}.key"),
                    "must be sha256:<64 hex digits>; `floodgate hash-key KEY` prints it",
                ),
            }
            if let Some(tier) = &key.tier {
                if tier_id(tiers, tier).is_none() {
                    problems.add(format!("{path}.tier"), unknown_tier(tiers, tier));
                }
            }
        }
    }
}

/// Headers the gateway sets on upstream requests; a claim mapping may not forge them.
pub const RESERVED_UPSTREAM_HEADERS: &[&str] = &[
    "x-consumer-id",
    "x-consumer-tier",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "host",
    "authorization",
    "content-length",
    "transfer-encoding",
    "connection",
];

fn validate_routes(
    problems: &mut Problems,
    value: Option<Value>,
    upstreams: &[Upstream],
    tiers: &[(String, TierSpec)],
    auth_configured: bool,
) -> Vec<Route> {
    let Some(value) = value else {
        problems.add("routes", "required: at least one route");
        return Vec::new();
    };
    let Some(items): Option<Vec<Value>> = problems.section("routes", value) else {
        return Vec::new();
    };
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("routes[{i}]");
        let Some(spec) = problems.section::<RouteSpec>(&path, item) else {
            continue;
        };
        if !names.insert(spec.name.clone()) {
            problems.add(
                format!("{path}.name"),
                format!("duplicate route name \"{}\"", spec.name),
            );
        }
        if !spec.path_prefix.starts_with('/') {
            problems.add(format!("{path}.path_prefix"), "must start with /");
        } else if crate::routing::normalize_path(&spec.path_prefix).as_deref()
            != Some(spec.path_prefix.as_str())
        {
            problems.add(
                format!("{path}.path_prefix"),
                "must be in normalized form (no //, /./, /../ or percent-encoded unreserved characters)",
            );
        }
        let methods = spec.methods.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(
                    |(j, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                        Ok(m) => Some(m),
                        Err(_) => {
                            problems.add(
                                format!("{path}.methods[{j}]"),
                                format!("\"{m}\" is not an HTTP method"),
                            );
                            None
                        }
                    },
                )
                .collect()
        });
        let action = match (&spec.upstream, spec.respond) {
            (Some(_), Some(_)) => {
                problems.add(path.clone(), "has both upstream and respond; choose one");
                continue;
            }
            (None, None) => {
                problems.add(path.clone(), "needs an upstream or a respond");
                continue;
            }
            (Some(name), None) => match upstreams.iter().position(|u| &u.name == name) {
                Some(upstream) => RouteAction::Proxy {
                    upstream,
                    strip_prefix: spec.strip_prefix,
                },
                None => {
                    problems.add(
                        format!("{path}.upstream"),
                        format!("no upstream named \"{name}\""),
                    );
                    continue;
                }
            },
            (None, Some(r)) => {
                if !(100..=599).contains(&r.status) {
                    problems.add(
                        format!("{path}.respond.status"),
                        "must be an HTTP status from 100 to 599",
                    );
                }
                RouteAction::Respond {
                    status: r.status,
                    body: r.body,
                    content_type: r
                        .content_type
                        .unwrap_or_else(|| "text/plain; charset=utf-8".into()),
                }
            }
        };
        let auth = spec.auth.unwrap_or(if auth_configured {
            AuthPolicy::Required
        } else {
            AuthPolicy::None
        });
        if auth != AuthPolicy::None && !auth_configured {
            problems.add(format!("{path}.auth"), "needs a top-level auth section");
        }
        let route_tiers = spec.tiers.as_ref().map(|names| {
            if auth == AuthPolicy::None {
                problems.add(format!("{path}.tiers"), "needs auth: required or optional");
            }
            names
                .iter()
                .enumerate()
                .filter_map(|(j, name)| {
                    let id = tier_id(tiers, name);
                    if id.is_none() {
                        problems.add(format!("{path}.tiers[{j}]"), unknown_tier(tiers, name));
                    }
                    id
                })
                .collect()
        });
        if spec.cost == 0 {
            problems.add(format!("{path}.cost"), "must be at least 1");
        }
        if let Some(g) = &spec.global_limit {
            if g.rate == 0 || g.per_s == 0 {
                problems.add(
                    format!("{path}.global_limit"),
                    "rate and per_s must be at least 1",
                );
            }
        }
        out.push(Route {
            name: spec.name,
            path_prefix: spec.path_prefix,
            host: spec.host.map(|h| h.to_ascii_lowercase()),
            methods,
            action,
            max_body_bytes: spec.max_body_bytes,
            auth,
            tiers: route_tiers,
            cost: spec.cost,
            global_limit: spec.global_limit,
        });
    }
    out
}

/// Replace `${VAR}` in every string; a missing variable is a problem at that key.
fn interpolate(
    value: &mut Value,
    path: &str,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    match value {
        Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    problems.add(path, "unterminated ${ in value");
                    return;
                };
                let name = &after[..end];
                match env(name) {
                    Some(v) => out.push_str(&v),
                    None => problems.add(path, format!("environment variable {name} is not set")),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), env, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned);
                interpolate(v, &join(path, &key), env, problems);
            }
        }
        _ => {}
    }
}
