//! The one place where text becomes trusted values: YAML text → `${VAR}`
//! interpolation → the serde mirror (`schema`, per section, so one bad section
//! does not hide the problems of the others) → one validator per section →
//! the runtime-ready [`Config`] of `model`. Every problem is reported with its
//! key path, all at once. Imports no runtime module.

mod access_log;
mod auth;
mod dns;
mod header_rules;
mod interpolate;
mod listen;
mod model;
mod names;
mod problems;
mod quota;
mod redis;
mod route_policies;
mod routes;
mod schema;
mod state_file;
mod tiers;
mod tracing;
mod upstreams;
pub mod verify_key;

pub use listen::expiring_certificates;
pub use model::*;
pub use quota::{Period, Quota};

use crate::error::{ConfigProblem, StartupError};
use pingora_core::server::configuration::ServerConf;
use problems::Problems;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashSet};

/// The gateway's top-level keys; every other key must be one of Pingora's.
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
    "state_file",
    "dns",
    "tracing",
];

/// Read and validate a config file: what `-t` checks and what the server runs.
/// The state file it names is read by `read_state` (its format is the runtime
/// consumers'), and what is wrong with it is reported with the config's problems.
pub fn load<S>(path: &str, read_state: ReadState<S>) -> Result<(Config, Option<S>), StartupError> {
    let text = std::fs::read_to_string(path).map_err(|source| StartupError::ReadConfig {
        path: path.to_string(),
        source,
    })?;
    parse_with_state(&text, |name| std::env::var(name).ok(), read_state).map_err(StartupError::Invalid)
}

/// Reads the state file at a path for the config's tier names; `Err` says what is
/// wrong with it, one problem a line.
pub type ReadState<S> = fn(&std::path::Path, &[String]) -> Result<S, Vec<String>>;

/// Validate config text; `env` answers `${VAR}` look-ups (injected for tests).
/// The state file is not read.
pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, Vec<ConfigProblem>> {
    parse_with_state(text, env, |_, _| Ok(())).map(|(config, _)| config)
}

fn parse_with_state<S>(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
    read_state: ReadState<S>,
) -> Result<(Config, Option<S>), Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    let mut root: Value = serde_yaml::from_str(text).map_err(|e| {
        vec![ConfigProblem {
            path: String::new(),
            message: format!("not valid YAML: {e}"),
        }]
    })?;
    interpolate::interpolate(&mut root, "", &env, &mut problems);
    let Value::Mapping(root) = root else {
        return Err(vec![ConfigProblem {
            path: String::new(),
            message: "the config file must be a YAML mapping of keys".into(),
        }]);
    };
    let (server_map, mut gateway) = split_top_level(&mut problems, root);

    let server: Option<ServerConf> = problems.section("", Value::Mapping(server_map));
    if server.as_ref().is_some_and(|s| s.daemon_wait_for_ready) {
        // The starting process would wait for a readiness signal floodgate never sends
        // (it bootstraps before daemonizing) and exit 1 while the daemon runs on.
        problems.add("daemon_wait_for_ready", "not supported: leave it out or false");
    }
    let mut take = |key: &str| gateway.remove(key);
    let listen = listen::listen(&mut problems, take("listen"));
    let admin = listen::admin(&mut problems, take("admin"));
    let client = listen::client(&mut problems, take("client"));
    let upstreams = upstreams::upstreams(&mut problems, take("upstreams"));
    let dns = dns::dns(&mut problems, take("dns"));
    let tiers = tiers::tiers(&mut problems, take("tiers"));
    let auth = auth::auth(&mut problems, take("auth"), &tiers);
    let anonymous = tiers::anonymous(&mut problems, take("anonymous"));
    let trusted_proxies = listen::trusted_proxies(&mut problems, take("trusted_proxies"));
    if trusted_proxies.is_empty() {
        for (i, _) in listen.iter().enumerate().filter(|(_, l)| l.proxy_protocol) {
            problems.add(
                format!("listen[{i}].proxy_protocol"),
                "needs trusted_proxies: only they may send a PROXY header",
            );
        }
    }
    let redis_value = take("redis");
    // From the text, so that a `redis.region` with problems of its own does not
    // also make every `world` limit a problem.
    let region_configured = redis_value.as_ref().and_then(|r| r.get("region")).is_some();
    let redis = redis::redis(&mut problems, redis_value);
    let names: Vec<String> = tiers.iter().map(|t| t.name.clone()).collect();
    let state_file = state_file::state_file(&mut problems, take("state_file"), redis.is_some(), |path| {
        read_state(path, &names)
    });
    let (state_file, state) = state_file.unzip();
    let access_log = access_log::access_log(&mut problems, take("access_log"));
    let tracing = tracing::tracing(&mut problems, take("tracing"));
    let known = routes::Known {
        upstreams: &upstreams,
        tiers: &tiers,
        auth_configured: auth.is_some(),
        region_configured,
        claims: auth
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|j| j.claims_to_headers.clone())
            .unwrap_or_default(),
    };
    let routes = routes::routes(&mut problems, take("routes"), &known);

    if let Some(admin) = admin.as_ref().filter(|_| problems.is_empty()) {
        if listen.iter().any(|l| l.addr == admin.listen) {
            problems.add(
                "admin.listen",
                format!("{} is also a proxy listen address", admin.listen),
            );
        }
    }
    match (server, admin, client) {
        (Some(server), Some(admin), Some(client)) if problems.is_empty() => Ok(Config {
            server,
            listen,
            admin,
            client,
            upstreams,
            dns,
            routes,
            auth,
            tiers,
            anonymous,
            trusted_proxies,
            redis,
            access_log,
            state_file,
            tracing,
        }),
        _ => Err(problems.0),
    }
    .map(|config| (config, state))
}

/// Pingora's server keys and the gateway's sections; any other key is a problem.
fn split_top_level(problems: &mut Problems, root: Mapping) -> (Mapping, BTreeMap<String, Value>) {
    let pingora_keys = pingora_server_keys();
    let mut server_map = Mapping::new();
    let mut gateway = BTreeMap::new();
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
    (server_map, gateway)
}

/// Pingora's own server keys, read off its config type so they never drift.
fn pingora_server_keys() -> HashSet<String> {
    match serde_yaml::to_value(ServerConf::default()) {
        Ok(Value::Mapping(m)) => m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect(),
        _ => HashSet::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every problem `parse` finds in `text`, as `path: message` lines.
    pub(crate) fn problems_of(text: &str) -> Vec<String> {
        match parse(text, |_| None) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    const MINIMAL: &str = "listen: [\"127.0.0.1:8080\"]\nadmin: { listen: \"127.0.0.1:9091\" }\n\
                           routes: [{ name: r, path_prefix: /, respond: { status: 200 } }]\n";

    #[test]
    fn a_minimal_config_loads_with_defaults() {
        let config = parse(MINIMAL, |_| None).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(config.tiers.len(), 4);
        assert_eq!(config.client.max_headers, 100);
        assert_eq!(config.access_log, AccessLogTarget::Stdout);
    }

    #[test]
    fn unknown_keys_pingora_keys_and_bad_yaml() {
        assert_eq!(
            problems_of(&format!("{MINIMAL}colour: blue\n")),
            vec!["colour: unknown key"]
        );
        assert!(problems_of(&format!("{MINIMAL}threads: 2\n")).is_empty());
        assert_eq!(
            problems_of(&format!("{MINIMAL}daemon_wait_for_ready: true\n")),
            vec!["daemon_wait_for_ready: not supported: leave it out or false"]
        );
        assert!(problems_of("listen: [")[0].starts_with("not valid YAML"));
        assert_eq!(
            problems_of("- a\n- b\n"),
            vec!["the config file must be a YAML mapping of keys"]
        );
    }

    #[test]
    fn the_admin_address_may_not_be_a_proxy_address() {
        let text = MINIMAL.replace("9091", "8080");
        assert_eq!(
            problems_of(&text),
            vec!["admin.listen: 127.0.0.1:8080 is also a proxy listen address"]
        );
    }
}
