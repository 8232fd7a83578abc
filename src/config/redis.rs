//! `redis`: where the background sync connects (one server, a Redis Cluster, or
//! Sentinels; TLS and ACL credentials) and how often and how much it syncs. What
//! passes here is what the client can connect to: TLS files are read and parsed now.
//! With `region`, each other region's Redis (`peers`) is built the same way, its
//! problems named under `redis.region.peers.<name>`.

use super::model::{Peer, Redis, RedisTarget, Region};
use super::names::is_region_name;
use super::problems::Problems;
use super::schema::{PeerSpec, RedisSpec, RedisTlsSpec, RegionSpec, SentinelSpec};
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
    let own = Target {
        url: spec.url.as_deref(),
        cluster: spec.cluster.as_deref(),
        sentinel: spec.sentinel.as_ref(),
        tls: spec.tls.as_ref(),
    };
    let target = own.build(problems, "redis");
    // Checked even when the region's own target is not, so every problem shows at once.
    let region = match spec.region {
        Some(region_spec) => Some(region(problems, region_spec)?),
        None => None,
    };
    Some(Redis {
        target: target?,
        sync_interval: Duration::from_millis(spec.sync_interval_ms),
        key_prefix: spec.key_prefix,
        on_unavailable: spec.on_unavailable,
        max_keys_per_sync: spec.max_keys_per_sync,
        consumers_log_entries: spec.consumers_log_entries,
        region,
    })
}

/// `redis.region`: the name, and each peer's Redis built as `redis`'s own is.
fn region(problems: &mut Problems, spec: RegionSpec) -> Option<Region> {
    const PATH: &str = "redis.region";
    let name_rule = "must be 1 to 32 characters of a-z, 0-9, _ and -";
    let mut ok = true;
    if !is_region_name(&spec.name) {
        problems.add(format!("{PATH}.name"), name_rule);
        ok = false;
    }
    if spec.peers.is_empty() {
        problems.add(format!("{PATH}.peers"), "name at least one other region");
        ok = false;
    }
    if !(100..=60_000).contains(&spec.sync_interval_ms) {
        problems.add(format!("{PATH}.sync_interval_ms"), "must be from 100 to 60000");
        ok = false;
    }
    let mut peers = Vec::with_capacity(spec.peers.len());
    // A BTreeMap: the peers come sorted by name.
    for (name, value) in spec.peers {
        let path = format!("{PATH}.peers.{name}");
        if !is_region_name(&name) {
            problems.add(path.as_str(), format!("a region's name {name_rule}"));
            ok = false;
        } else if name == spec.name {
            problems.add(path.as_str(), "is this instance's own region (redis.region.name)");
            ok = false;
        }
        match peer_target(problems, &path, value) {
            Some(target) => peers.push(Peer { name, target }),
            None => ok = false,
        }
    }
    ok.then_some(Region {
        name: spec.name,
        peers,
        sync_interval: Duration::from_millis(spec.sync_interval_ms),
        on_partition: spec.on_partition,
    })
}

/// A peer's Redis: a URL, or a map of `redis`'s connection options.
fn peer_target(problems: &mut Problems, path: &str, value: Value) -> Option<RedisTarget> {
    match value {
        Value::String(url) => Target {
            url: Some(&url),
            ..Target::default()
        }
        .build(problems, path),
        value @ Value::Mapping(_) => {
            let spec = problems.section::<PeerSpec>(path, value)?;
            Target {
                url: spec.url.as_deref(),
                cluster: spec.cluster.as_deref(),
                sentinel: spec.sentinel.as_ref(),
                tls: spec.tls.as_ref(),
            }
            .build(problems, path)
        }
        _ => {
            problems.add(path, "must be a URL or a map of url, cluster, sentinel and tls");
            None
        }
    }
}

/// Where one Redis is and how to reach it, as `redis` and each peer spell it.
#[derive(Default)]
struct Target<'a> {
    url: Option<&'a str>,
    cluster: Option<&'a [String]>,
    sentinel: Option<&'a SentinelSpec>,
    tls: Option<&'a RedisTlsSpec>,
}

impl Target<'_> {
    /// The client, or None with each problem recorded under `path` (`redis`, or
    /// `redis.region.peers.<name>`).
    fn build(&self, problems: &mut Problems, path: &str) -> Option<RedisTarget> {
        let certificates = self.tls.and_then(|tls| certificates(problems, path, tls));
        match (self.url, self.cluster, self.sentinel) {
            (Some(url), None, None) => single(problems, path, url, certificates),
            (None, Some(nodes), None) => cluster(problems, path, nodes, certificates),
            (None, None, Some(sentinel)) => sentinel_target(problems, path, sentinel, self.tls.is_some()),
            _ => {
                problems.add(path, "set exactly one of url, cluster and sentinel");
                None
            }
        }
    }
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

fn single(
    problems: &mut Problems,
    path: &str,
    url: &str,
    certificates: Option<TlsCertificates>,
) -> Option<RedisTarget> {
    if !scheme_ok(url, certificates.is_some()) {
        let why = if certificates.is_some() {
            format!("{path}.tls needs a rediss:// URL")
        } else {
            "must be a redis://, rediss:// or unix:// URL".to_string()
        };
        problems.add(format!("{path}.url"), why);
        return None;
    }
    let client = match certificates {
        Some(certs) => redis::Client::build_with_tls(url, certs),
        None => redis::Client::open(url),
    };
    match client {
        Ok(client) => Some(RedisTarget::Single(client)),
        Err(e) => {
            problems.add(format!("{path}.url"), e.to_string());
            None
        }
    }
}

fn cluster(
    problems: &mut Problems,
    path: &str,
    nodes: &[String],
    certificates: Option<TlsCertificates>,
) -> Option<RedisTarget> {
    if nodes.is_empty() {
        problems.add(format!("{path}.cluster"), "name at least one node");
        return None;
    }
    let tls = certificates.is_some() || nodes.iter().any(|n| n.starts_with("rediss://"));
    let mut ok = true;
    for (i, node) in nodes.iter().enumerate() {
        let wanted = if tls { "rediss://" } else { "redis://" };
        if !node.starts_with(wanted) {
            let why = if tls {
                format!("every node must be rediss:// when any is, or {path}.tls is set")
            } else {
                "must be a redis:// URL".to_string()
            };
            problems.add(format!("{path}.cluster[{i}]"), why);
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
            problems.add(format!("{path}.cluster"), e.to_string());
            None
        }
    }
}

fn sentinel_target(
    problems: &mut Problems,
    path: &str,
    spec: &SentinelSpec,
    tls: bool,
) -> Option<RedisTarget> {
    if tls {
        problems.add(
            format!("{path}.tls"),
            format!("is not supported with {path}.sentinel"),
        );
        return None;
    }
    if spec.master_name.is_empty() {
        problems.add(format!("{path}.sentinel.master_name"), "must not be empty");
    }
    if spec.nodes.is_empty() {
        problems.add(format!("{path}.sentinel.nodes"), "name at least one sentinel");
        return None;
    }
    for (i, node) in spec.nodes.iter().enumerate() {
        if !node.starts_with("redis://") {
            problems.add(format!("{path}.sentinel.nodes[{i}]"), "must be a redis:// URL");
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
            problems.add(format!("{path}.sentinel"), e.to_string());
            None
        }
    }
}

/// The CA and client certificate, read now so that a missing or unreadable file
/// is a start-up error naming its key.
fn certificates(problems: &mut Problems, path: &str, tls: &RedisTlsSpec) -> Option<TlsCertificates> {
    let mut read = |key: &str, file: &Option<std::path::PathBuf>| -> Option<Option<Vec<u8>>> {
        let Some(file) = file else { return Some(None) };
        match std::fs::read(file) {
            Ok(bytes) => Some(Some(bytes)),
            Err(e) => {
                problems.add(format!("{path}.tls.{key}"), format!("{}: {e}", file.display()));
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
            problems.add(format!("{path}.tls"), "cert_file and key_file go together");
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
    use super::super::model::OnPartition;
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

    const REGION: &str = "url: redis://ny-redis:6379\nregion:\n  name: ny\n  peers:\n";

    fn region_of(yaml: &str) -> Region {
        let mut problems = Problems::default();
        let value = serde_yaml::from_str(yaml).expect("yaml");
        let redis = redis(&mut problems, Some(value));
        assert!(problems.is_empty(), "{:?}", problems.0);
        redis.and_then(|r| r.region).expect("region")
    }

    #[test]
    fn a_region_with_a_url_peer_and_a_map_peer_parses() {
        let region = region_of(&format!(
            "{REGION}    sg: redis://sg-redis.example:6379\n    \
             fra: {{ url: \"rediss://fra-redis.example:6380\" }}\n    \
             lon: {{ cluster: [\"redis://lon:7000\", \"redis://lon:7001\"] }}\n"
        ));
        assert_eq!(region.name, "ny");
        let names: Vec<&str> = region.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["fra", "lon", "sg"]);
        assert!(matches!(region.peers[1].target, RedisTarget::Cluster(_)));
        assert!(matches!(region.peers[2].target, RedisTarget::Single(_)));
        assert_eq!(region.sync_interval, Duration::from_millis(1000));
        assert_eq!(region.on_partition, OnPartition::SafeShare);
        let region = region_of(&format!(
            "{REGION}    sg: redis://sg:6379\n  sync_interval_ms: 100\n  on_partition: last_share\n"
        ));
        assert_eq!(region.sync_interval, Duration::from_millis(100));
        assert_eq!(region.on_partition, OnPartition::LastShare);
        assert!(problems("url: redis://h").is_empty());
    }

    #[test]
    fn a_bad_peer_is_named_by_its_key() {
        assert_eq!(
            problems(&format!("{REGION}    sg: http://sg:6379\n")),
            vec!["redis.region.peers.sg.url: must be a redis://, rediss:// or unix:// URL"]
        );
        assert_eq!(
            problems(&format!("{REGION}    sg: {{ url: \"ftp://sg\" }}\n")),
            vec!["redis.region.peers.sg.url: must be a redis://, rediss:// or unix:// URL"]
        );
        let missing = problems(&format!(
            "{REGION}    fra: {{ url: \"rediss://fra:6380\", tls: {{ ca_file: /nonexistent/fra-ca.pem }} }}\n"
        ));
        assert!(
            missing[0].starts_with("redis.region.peers.fra.tls.ca_file: /nonexistent/fra-ca.pem: "),
            "{missing:?}"
        );
        assert_eq!(
            problems(&format!(
                "{REGION}    sg: {{ cluster: [\"redis://a:7000\", \"http://b:7001\"] }}\n"
            )),
            vec!["redis.region.peers.sg.cluster[1]: must be a redis:// URL"]
        );
        assert_eq!(
            problems(&format!(
                "{REGION}    sg: {{ url: \"redis://sg\", sync_interval_ms: 5 }}\n"
            )),
            vec![
                "redis.region.peers.sg.sync_interval_ms: unknown field `sync_interval_ms`, \
                 expected one of `url`, `cluster`, `sentinel`, `tls`"
            ]
        );
        assert_eq!(
            problems(&format!("{REGION}    sg: {{ tls: {{}} }}\n")),
            vec!["redis.region.peers.sg: set exactly one of url, cluster and sentinel"]
        );
        assert_eq!(
            problems(&format!("{REGION}    sg: [redis://sg]\n")),
            vec!["redis.region.peers.sg: must be a URL or a map of url, cluster, sentinel and tls"]
        );
    }

    #[test]
    fn region_names_intervals_and_on_partition_are_checked() {
        assert_eq!(
            problems(&format!("{REGION}    ny: redis://other:6379\n")),
            vec!["redis.region.peers.ny: is this instance's own region (redis.region.name)"]
        );
        assert_eq!(
            problems(&format!("{REGION}    SG: redis://sg:6379\n")),
            vec!["redis.region.peers.SG: a region's name must be 1 to 32 characters of a-z, 0-9, _ and -"]
        );
        assert_eq!(
            problems(
                &REGION
                    .replace("name: ny", "name: New.York")
                    .replace("  peers:\n", "  peers: { sg: redis://sg }\n")
            ),
            vec!["redis.region.name: must be 1 to 32 characters of a-z, 0-9, _ and -"]
        );
        let long = "a".repeat(33);
        assert_eq!(
            problems(&format!(
                "url: redis://h\nregion: {{ name: {long}, peers: {{ sg: redis://sg }} }}"
            )),
            vec!["redis.region.name: must be 1 to 32 characters of a-z, 0-9, _ and -"]
        );
        assert_eq!(
            problems("url: redis://h\nregion: { name: ny, peers: {} }"),
            vec!["redis.region.peers: name at least one other region"]
        );
        assert_eq!(
            problems("url: redis://h\nregion: { name: ny }"),
            vec!["redis.region.peers: name at least one other region"]
        );
        assert_eq!(
            problems("url: redis://h\nregion: { name: ny, peers: { sg: redis://sg }, on_partition: maybe }"),
            vec![
                "redis.region.on_partition: unknown variant `maybe`, \
                 expected one of `safe_share`, `last_share`, `allow`, `deny`"
            ]
        );
        for ms in [99, 60_001] {
            assert_eq!(
                problems(&format!(
                    "url: redis://h\nregion: {{ name: ny, peers: {{ sg: redis://sg }}, sync_interval_ms: {ms} }}"
                )),
                vec!["redis.region.sync_interval_ms: must be from 100 to 60000"]
            );
        }
        assert_eq!(
            problems("url: redis://h\nregion: { name: ny, peers: { sg: redis://sg }, colour: blue }")[0],
            "redis.region.colour: unknown field `colour`, expected one of `name`, `peers`, `sync_interval_ms`, `on_partition`"
        );
        // The region's own target and its region are both checked.
        assert_eq!(
            problems("url: http://h\nregion: { name: ny, peers: { sg: http://sg } }"),
            vec![
                "redis.url: must be a redis://, rediss:// or unix:// URL",
                "redis.region.peers.sg.url: must be a redis://, rediss:// or unix:// URL",
            ]
        );
    }
}
