//! `redis`: the URL and timing of the background sync that shares global
//! windows and tier overrides between instances.

use super::model::Redis;
use super::problems::Problems;
use super::schema::RedisSpec;
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
    let url = spec.url.as_str();
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
        problems.add("redis.url", "must be a redis:// URL");
        return None;
    }
    match redis::Client::open(url) {
        Ok(client) => Some(Redis {
            client,
            sync_interval: Duration::from_millis(spec.sync_interval_ms),
            key_prefix: spec.key_prefix,
            on_unavailable: spec.on_unavailable,
        }),
        Err(e) => {
            problems.add("redis.url", e.to_string());
            None
        }
    }
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
        assert_eq!(
            problems("url: http://x\nsync_interval_ms: 5\nkey_prefix: \"\""),
            vec![
                "redis.sync_interval_ms: must be from 10 to 60000",
                "redis.key_prefix: must not be empty",
                "redis.url: must be a redis:// URL",
            ]
        );
        assert_eq!(
            problems("url: redis://h\non_unavailable: maybe")[0],
            "redis.on_unavailable: unknown variant `maybe`, expected one of `local_share`, `allow`, `deny`"
        );
    }
}
