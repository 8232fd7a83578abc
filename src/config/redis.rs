//! `redis`: where the background sync connects (one server, a Redis Cluster, or
//! Sentinels; TLS and ACL credentials) and how often and how much it syncs. What
//! passes here is what the client can connect to: TLS files are read and parsed now.

use super::model::{Redis, RedisTarget};
use super::problems::Problems;
use super::schema::{RedisSpec, RedisTlsSpec, SentinelSpec};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{ClientTlsConfig, TlsCertificates};
use serde_yaml::Value;
use std::time::Duration;

pub(super) fn redis(problems: &mut Problems, value: Option<Value>) -> Option<Redis> {
    let spec = problems.section::<RedisSpec>("redis", value?)?;
    if !(10..=60_000).contains(&spec.sync_interval_ms) {
        problems.add("redis.sync_interval_ms", "must be from 10 to 60000");
    }
    if spec.key_prefix.is_empty() {
        problems.add("redis.key_prefix", "must not be empty");
    }
    if !(100..=1_000_000).contains(&spec.max_keys_per_sync) {
        problems.add("redis.max_keys_per_sync", "must be from 100 to 1000000");
    }
    if !(1_000..=10_000_000).contains(&spec.consumers_log_entries) {
        problems.add("redis.consumers_log_entries", "must be from 1000 to 10000000");
    }
    let certificates = spec.tls.as_ref().and_then(|tls| certificates(problems, tls));
    let target = match (&spec.url, &spec.cluster, &spec.sentinel) {
        (Some(url), None, None) => single(problems, url, certificates),
        (None, Some(nodes), None) => cluster(problems, nodes, certificates),
        (None, None, Some(sentinel)) => sentinel_target(problems, sentinel, spec.tls.is_some()),
        _ => {
            problems.add("redis", "set exactly one of url, cluster and sentinel");
            None
        }
    }?;
    Some(Redis {
        target,
        sync_interval: Duration::from_millis(spec.sync_interval_ms),
        key_prefix: spec.key_prefix,
        on_unavailable: spec.on_unavailable,
        max_keys_per_sync: spec.max_keys_per_sync,
        consumers_log_entries: spec.consumers_log_entries,
    })
}

fn scheme_ok(url: &str, tls: bool) -> bool {
    if tls {
        url.starts_with("rediss://")
    } else {
        ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|s| url.starts_with(s))
    }
}

fn single(problems: &mut Problems, url: &str, certificates: Option<TlsCertificates>) -> Option<RedisTarget> {
    if !scheme_ok(url, certificates.is_some()) {
        let why = if certificates.is_some() {
            "redis.tls needs a rediss:// URL"
        } else {
            "must be a redis://, rediss:// or unix:// URL"
        };
        problems.add("redis.url", why);
        return None;
    }
    let client = match certificates {
        Some(certs) => redis::Client::build_with_tls(url, certs),
        None => redis::Client::open(url),
    };
    match client {
        Ok(client) => Some(RedisTarget::Single(client)),
        Err(e) => {
            problems.add("redis.url", e.to_string());
            None
        }
    }
}

fn cluster(
    problems: &mut Problems,
    nodes: &[String],
    certificates: Option<TlsCertificates>,
) -> Option<RedisTarget> {
    if nodes.is_empty() {
        problems.add("redis.cluster", "name at least one node");
        return None;
    }
    let tls = certificates.is_some() || nodes.iter().any(|n| n.starts_with("rediss://"));
    let mut ok = true;
    for (i, node) in nodes.iter().enumerate() {
        let wanted = if tls { "rediss://" } else { "redis://" };
        if !node.starts_with(wanted) {
            let why = if tls {
                "every node must be rediss:// when any is, or redis.tls is set"
            } else {
                "must be a redis:// URL"
            };
            problems.add(format!("redis.cluster[{i}]"), why);
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.to_vec());
    if let Some(certs) = certificates {
        builder = builder.certs(certs);
    }
    match builder.build() {
        Ok(client) => Some(RedisTarget::Cluster(client)),
        Err(e) => {
            problems.add("redis.cluster", e.to_string());
            None
        }
    }
}

fn sentinel_target(problems: &mut Problems, spec: &SentinelSpec, tls: bool) -> Option<RedisTarget> {
    if tls {
        problems.add("redis.tls", "is not supported with redis.sentinel");
        return None;
    }
    if spec.master_name.is_empty() {
        problems.add("redis.sentinel.master_name", "must not be empty");
    }
    if spec.nodes.is_empty() {
        problems.add("redis.sentinel.nodes", "name at least one sentinel");
        return None;
    }
    for (i, node) in spec.nodes.iter().enumerate() {
        if !node.starts_with("redis://") {
            problems.add(format!("redis.sentinel.nodes[{i}]"), "must be a redis:// URL");
            return None;
        }
    }
    let mut master = redis::RedisConnectionInfo::default().set_db(spec.db);
    if let Some(username) = &spec.username {
        master = master.set_username(username);
    }
    if let Some(password) = &spec.password {
        master = master.set_password(password);
    }
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
    match SentinelClient::build(
        spec.nodes.clone(),
        spec.master_name.clone(),
        Some(node),
        SentinelServerType::Master,
    ) {
        Ok(client) => Some(RedisTarget::Sentinel(client)),
        Err(e) => {
            problems.add("redis.sentinel", e.to_string());
            None
        }
    }
}

/// The CA and client certificate, read now so that a missing or unreadable file
/// is a start-up error naming its key.
fn certificates(problems: &mut Problems, tls: &RedisTlsSpec) -> Option<TlsCertificates> {
    let mut read = |key: &str, path: &Option<std::path::PathBuf>| -> Option<Option<Vec<u8>>> {
        let Some(path) = path else { return Some(None) };
        match std::fs::read(path) {
            Ok(bytes) => Some(Some(bytes)),
            Err(e) => {
                problems.add(format!("redis.tls.{key}"), format!("{}: {e}", path.display()));
                None
            }
        }
    };
    let root_cert = read("ca_file", &tls.ca_file)?;
    let cert = read("cert_file", &tls.cert_file)?;
    let key = read("key_file", &tls.key_file)?;
    let client_tls = match (cert, key) {
        (Some(client_cert), Some(client_key)) => Some(ClientTlsConfig {
            client_cert,
            client_key,
        }),
        (None, None) => None,
        _ => {
            problems.add("redis.tls", "cert_file and key_file go together");
            return None;
        }
    };
    Some(TlsCertificates {
        client_tls,
        root_cert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let mut problems = Problems::default();
        let value = serde_yaml::from_str(yaml).expect("yaml");
        redis(&mut problems, Some(value));
        problems.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn url_interval_and_prefix_are_checked() {
        assert!(problems("url: redis://127.0.0.1:6379").is_empty());
        assert!(problems("url: rediss://user:pw@127.0.0.1:6380/0").is_empty());
        assert_eq!(
            problems("url: http://x\nsync_interval_ms: 5\nkey_prefix: \"\""),
            vec![
                "redis.sync_interval_ms: must be from 10 to 60000",
                "redis.key_prefix: must not be empty",
                "redis.url: must be a redis://, rediss:// or unix:// URL",
            ]
        );
        assert_eq!(
            problems("url: redis://h\non_unavailable: maybe")[0],
            "redis.on_unavailable: unknown variant `maybe`, expected one of `local_share`, `allow`, `deny`"
        );
        assert_eq!(
            problems("url: redis://h\nmax_keys_per_sync: 5"),
            vec!["redis.max_keys_per_sync: must be from 100 to 1000000"]
        );
        assert!(problems("url: redis://h\nconsumers_log_entries: 1000").is_empty());
        assert_eq!(
            problems("url: redis://h\nconsumers_log_entries: 999"),
            vec!["redis.consumers_log_entries: must be from 1000 to 10000000"]
        );
    }

    #[test]
    fn one_target_of_three() {
        assert_eq!(
            problems("url: redis://h\ncluster: [\"redis://h:7000\"]"),
            vec!["redis: set exactly one of url, cluster and sentinel"]
        );
        assert!(problems("cluster: [\"redis://h:7000\", \"redis://h:7001\"]").is_empty());
        assert_eq!(
            problems("cluster: [\"rediss://h:7000\", \"redis://h:7001\"]"),
            vec!["redis.cluster[1]: every node must be rediss:// when any is, or redis.tls is set"]
        );
        assert!(
            problems("sentinel: { master_name: m, nodes: [\"redis://h:26379\"], password: pw }").is_empty()
        );
        assert_eq!(
            problems("sentinel: { master_name: m, nodes: [] }"),
            vec!["redis.sentinel.nodes: name at least one sentinel"]
        );
    }

    #[test]
    fn tls_files_are_read_and_parsed_at_load() {
        assert_eq!(
            problems("url: redis://h\ntls: {}"),
            vec!["redis.url: redis.tls needs a rediss:// URL"]
        );
        let missing = problems("url: rediss://h\ntls: { ca_file: /nonexistent/ca.pem }");
        assert!(
            missing[0].starts_with("redis.tls.ca_file: /nonexistent/ca.pem: "),
            "{missing:?}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let bad = problems(&format!(
            "url: rediss://h\ntls: {{ ca_file: {} }}",
            junk.display()
        ));
        assert!(bad[0].starts_with("redis.url: "), "{bad:?}");
        assert_eq!(
            problems(&format!(
                "url: rediss://h\ntls: {{ cert_file: {} }}",
                junk.display()
            )),
            vec!["redis.tls: cert_file and key_file go together"]
        );
    }
}
