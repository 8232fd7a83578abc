//! Runtime consumers in Redis: API keys (one hash field per key id, a JSON record
//! holding only the digest) and tier overrides, under a version counter that every
//! write bumps. The admin API writes through Redis first, so a write Redis did not
//! take is refused, never lost; each sync round reads the counter (one small read)
//! and adopts both maps when it moved. An epoch marker tells a Redis that lost its
//! data (a restart without persistence, FLUSHALL): the instance then publishes what
//! it holds again, so only an explicit DELETE ever revokes.

use super::{Backend, RedisSync};
use crate::auth::runtime_keys::RuntimeKey;
use arc_swap::ArcSwapOption;
use redis::{Pipeline, RedisResult, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A runtime key as Redis stores it: never the key itself.
#[derive(Serialize, Deserialize)]
pub struct KeyRecord {
    pub consumer: String,
    pub digest: String,
    /// A tier name; `None`: the default tier.
    pub tier: Option<String>,
    pub created_at_s: u64,
    pub expires_at_s: Option<u64>,
}

/// The admin API's way to Redis, over the sync's connection.
#[derive(Clone)]
pub struct ConsumerStore {
    backend: Arc<ArcSwapOption<Backend>>,
    prefix: String,
}

impl ConsumerStore {
    fn key(&self, what: &str) -> String {
        format!("{{{}:consumers}}:{what}", self.prefix)
    }

    /// The sync's connection; at start-up, worth waiting a moment for.
    async fn connected(&self) -> Option<Arc<Backend>> {
        for _ in 0..20 {
            if let Some(backend) = self.backend.load_full() {
                return Some(backend);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// One write and the version bump, together; `Err` when Redis did not take it.
    async fn write(&self, build: impl FnOnce(&mut Pipeline)) -> Result<Vec<Value>, String> {
        let backend = self.connected().await.ok_or("redis is unreachable")?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        build(&mut pipe);
        pipe.incr(self.key("version"), 1).ignore();
        let mut replies = tokio::time::timeout(Duration::from_secs(2), backend.run(vec![pipe]))
            .await
            .map_err(|_| "redis did not answer in time".to_string())?;
        replies
            .pop()
            .unwrap_or(Ok(Vec::new()))
            .map_err(|e| format!("redis refused the write: {e}"))
    }

    pub async fn put_key(&self, key_id: &str, record: &KeyRecord) -> Result<(), String> {
        let json = serde_json::to_string(record).map_err(|e| e.to_string())?;
        self.write(|p| {
            p.hset(self.key("keys"), key_id, json).ignore();
        })
        .await
        .map(drop)
    }

    pub async fn delete_key(&self, key_id: &str) -> Result<(), String> {
        self.write(|p| {
            p.hdel(self.key("keys"), key_id).ignore();
        })
        .await
        .map(drop)
    }

    pub async fn set_tier(&self, consumer: &str, tier: Option<&str>) -> Result<(), String> {
        self.write(|p| {
            match tier {
                Some(t) => p.hset(self.key("tiers"), consumer, t).ignore(),
                None => p.hdel(self.key("tiers"), consumer).ignore(),
            };
        })
        .await
        .map(drop)
    }
}

impl RedisSync {
    pub fn consumer_store(&self) -> ConsumerStore {
        ConsumerStore {
            backend: self.backend.clone(),
            prefix: self.key_prefix.clone(),
        }
    }

    fn consumers_key(&self, what: &str) -> String {
        format!("{{{}:consumers}}:{what}", self.key_prefix)
    }

    /// The round's one small read: the version and the epoch marker.
    pub(super) fn consumers_round(&self) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.get(self.consumers_key("version"))
            .get(self.consumers_key("epoch"));
        pipe
    }

    /// After the round: adopt the maps if the version moved; publish ours again if
    /// Redis lost its data.
    pub(super) async fn consumers_follow(
        &self,
        backend: &Backend,
        reply: Result<Vec<Value>, ()>,
    ) -> RedisResult<()> {
        let Ok(reply) = reply else { return Ok(()) };
        let number =
            |v: Option<&Value>| v.and_then(|v| redis::from_redis_value_ref::<Option<u64>>(v).ok().flatten());
        let version = number(reply.first()).unwrap_or(0);
        let epoch = reply
            .get(1)
            .and_then(|v| redis::from_redis_value_ref::<Option<String>>(v).ok().flatten());
        // A new epoch (or none): Redis lost its data since this instance last looked.
        // What this instance holds goes back first, then everyone reads the union.
        let mut seen_epoch = self.seen_epoch.lock().await;
        if epoch.is_none() || epoch != *seen_epoch {
            self.republish(backend).await?;
            *seen_epoch = epoch;
            if seen_epoch.is_none() {
                return Ok(()); // the marker is read back next round
            }
        }
        if version == self.seen_version.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.hgetall(self.consumers_key("keys"))
            .hgetall(self.consumers_key("tiers"));
        let mut replies = backend.run(vec![pipe]).await;
        let maps = replies.pop().unwrap_or(Ok(Vec::new()))?;
        let mut maps = maps
            .into_iter()
            .map(redis::from_redis_value::<HashMap<String, String>>);
        let keys = maps.next().transpose().ok().flatten().unwrap_or_default();
        let tiers = maps.next().transpose().ok().flatten().unwrap_or_default();
        self.runtime_keys.replace(
            keys.into_iter()
                .filter_map(|(key_id, json)| self.parse_key(key_id, &json))
                .collect(),
        );
        self.overrides.replace(
            tiers
                .into_iter()
                .filter_map(|(consumer, tier)| {
                    let id = self.tier_names.iter().position(|t| *t == tier)?;
                    Some((Arc::from(consumer.as_str()), id))
                })
                .collect(),
        );
        self.seen_version.store(version, Ordering::Relaxed);
        Ok(())
    }

    fn parse_key(&self, key_id: String, json: &str) -> Option<RuntimeKey> {
        let record: KeyRecord = serde_json::from_str(json).ok()?;
        let digest: [u8; 32] = hex::decode(&record.digest).ok()?.try_into().ok()?;
        let tier = match &record.tier {
            Some(name) => Some(self.tier_names.iter().position(|t| t == name)?),
            None => None,
        };
        Some(RuntimeKey {
            key_id,
            consumer: Arc::from(record.consumer.as_str()),
            digest,
            tier,
            created_at_s: record.created_at_s,
            expires_at_s: record.expires_at_s,
            last_used_s: AtomicU64::new(0),
        })
    }

    /// What this instance holds goes back (keys and overrides, never overwriting),
    /// then the marker if there is none, then a version bump so every instance reads
    /// the union.
    async fn republish(&self, backend: &Backend) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in self.runtime_keys.all() {
            let record = KeyRecord {
                consumer: key.consumer.to_string(),
                digest: hex::encode(key.digest),
                tier: key.tier.and_then(|t| self.tier_names.get(t).cloned()),
                created_at_s: key.created_at_s,
                expires_at_s: key.expires_at_s,
            };
            if let Ok(json) = serde_json::to_string(&record) {
                pipe.hset_nx(self.consumers_key("keys"), &key.key_id, json)
                    .ignore();
            }
        }
        for (consumer, tier) in self.overrides.all() {
            if let Some(name) = self.tier_names.get(tier) {
                pipe.hset_nx(self.consumers_key("tiers"), consumer.as_ref(), name)
                    .ignore();
            }
        }
        pipe.set_nx(self.consumers_key("epoch"), &self.instance_id)
            .ignore();
        pipe.incr(self.consumers_key("version"), 1).ignore();
        let mut replies = backend.run(vec![pipe]).await;
        replies.pop().unwrap_or(Ok(Vec::new())).map(drop)
    }
}
