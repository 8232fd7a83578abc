//! Runtime consumers in Redis: API keys (one hash field per key id, a JSON record
//! holding only the digest) and tier overrides, under a version counter that every
//! write bumps. The admin API writes through Redis first, so a write Redis did not
//! take is refused, never lost; each sync round reads the counter (one small read)
//! and adopts both maps when it moved. An epoch marker tells a Redis that lost its
//! data (a restart without persistence, FLUSHALL): the instance then publishes what
//! it holds again, once, so only an explicit DELETE ever revokes.

use super::round::{Batch, Queued, Replies};
use super::{Backend, RedisSync};
use crate::consumers::keys::RuntimeKey;
use crate::consumers::stored::{Change, StoredKey};
use crate::vocab::ids::{Id, TierId};
use arc_swap::ArcSwapOption;
use redis::{Pipeline, RedisResult, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The republication of what an instance holds, in one step (republish.lua).
const REPUBLISH: &str = include_str!("republish.lua");

/// The runtime consumers' version and epoch marker, as a round read them.
pub(super) struct ConsumersSeen {
    version: u64,
    epoch: Option<String>,
}

/// The consumers' Redis keys share one hash slot, so a write's transaction is one slot's.
fn consumers_key(prefix: &str, what: &str) -> String {
    format!("{{{prefix}:consumers}}:{what}")
}

/// The admin API's way to Redis, over the sync's connection.
#[derive(Clone)]
pub struct ConsumerStore {
    backend: Arc<ArcSwapOption<Backend>>,
    prefix: String,
    /// The sync's record of the highest version Redis reached, raised by each write.
    reached_version: Arc<AtomicU64>,
}

impl ConsumerStore {
    fn key(&self, what: &str) -> String {
        consumers_key(&self.prefix, what)
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
    async fn write(&self, build: impl FnOnce(&mut Pipeline)) -> Result<(), String> {
        let backend = self.connected().await.ok_or("redis is unreachable")?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        build(&mut pipe);
        pipe.incr(self.key("version"), 1);
        let mut replies = tokio::time::timeout(Duration::from_secs(2), backend.run(vec![pipe]))
            .await
            .map_err(|_| {
                "redis did not answer in time; the write may or may not have been taken: check with GET"
                    .to_string()
            })?;
        let mut replies = replies
            .pop()
            .unwrap_or(Ok(Vec::new()))
            .map_err(|e| format!("redis refused the write: {e}"))?;
        if let Some(version) = replies.pop().and_then(|v| redis::from_redis_value::<u64>(v).ok()) {
            self.reached_version.fetch_max(version, Ordering::Relaxed);
        }
        Ok(())
    }

    /// One admin write, and the version bump with it. A timeout leaves the outcome
    /// unknown, and says so.
    pub async fn apply(&self, change: &Change) -> Result<(), String> {
        if matches!(change, Change::Quotas(_)) {
            return Ok(()); // with Redis, quotas are counted there by the sync
        }
        let record = match change {
            Change::AddKey(key) => serde_json::to_string(key).map_err(|e| e.to_string())?,
            _ => String::new(),
        };
        // A revocation or a cleared override leaves a tombstone, which a republication
        // after a data loss never writes over.
        self.write(|p| {
            match change {
                Change::AddKey(key) => p.hset(self.key("keys"), &key.key_id, &record),
                Change::RevokeKey { key_id } => {
                    p.hdel(self.key("keys"), key_id)
                        .ignore()
                        .hset(self.key("revoked"), key_id, 1)
                }
                Change::SetTier { consumer, tier } => p
                    .hset(self.key("tiers"), consumer, tier)
                    .ignore()
                    .hdel(self.key("cleared"), consumer),
                Change::ClearTier { consumer } => {
                    p.hdel(self.key("tiers"), consumer)
                        .ignore()
                        .hset(self.key("cleared"), consumer, 1)
                }
                Change::Quotas(_) => return,
            }
            .ignore();
        })
        .await
    }
}

impl RedisSync {
    pub fn consumer_store(&self) -> ConsumerStore {
        ConsumerStore {
            backend: self.backend.clone(),
            prefix: self.key_prefix.clone(),
            reached_version: self.reached_version.clone(),
        }
    }

    /// The sync's deadline, grown with the consumers a step carries.
    async fn within_deadline<T>(&self, work: impl std::future::Future<Output = T>) -> RedisResult<T> {
        let load = self.runtime_keys.len() + self.runtime_keys.revoked_len() + self.overrides.len();
        tokio::time::timeout(self.timeout(load), work)
            .await
            .map_err(|_| super::timed_out())
    }

    fn consumers_key(&self, what: &str) -> String {
        consumers_key(&self.key_prefix, what)
    }

    /// The round's one small read: the version and the epoch marker.
    pub(super) fn consumers_round(&self, batch: &mut Batch) -> Queued {
        let mut pipe = redis::pipe();
        pipe.get(self.consumers_key("version"))
            .get(self.consumers_key("epoch"));
        batch.queue([pipe])
    }

    /// What the round's read found; `None` when it failed.
    pub(super) fn consumers_read(replies: &mut Replies, queued: Queued) -> Option<ConsumersSeen> {
        let reply = replies.take(queued).next()?.ok()?;
        let number =
            |v: Option<&Value>| v.and_then(|v| redis::from_redis_value_ref::<Option<u64>>(v).ok().flatten());
        Some(ConsumersSeen {
            version: number(reply.first()).unwrap_or(0),
            epoch: reply
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<Option<String>>(v).ok().flatten()),
        })
    }

    /// After the round: publish ours again if Redis lost its data, then adopt the
    /// maps if the version moved.
    pub(super) async fn consumers_follow(
        &self,
        backend: &Backend,
        seen: Option<ConsumersSeen>,
    ) -> RedisResult<()> {
        let Some(ConsumersSeen { mut version, epoch }) = seen else {
            return Ok(());
        };
        let mut seen_epoch = self.seen_epoch.lock().await;
        let seen_version = self.seen_version.load(Ordering::Relaxed);
        let reached = self.reached_version.load(Ordering::Relaxed);
        // Redis lost data since this instance last looked when it has no marker (new,
        // flushed, restarted empty), another marker than the one seen (lost, and
        // republished by another instance meanwhile), or a version gone backwards (a
        // snapshot restored, a replica that was behind). A first look at a Redis with
        // a marker only adopts: a restarted instance must not bring back what was
        // revoked while it was away.
        let lost = match (&epoch, &*seen_epoch) {
            (None, _) => true,
            (Some(now), Some(seen)) => now != seen || version < reached,
            (Some(_), None) => false,
        };
        if lost {
            let (published_epoch, published_version) =
                self.within_deadline(self.republish(backend)).await??;
            *seen_epoch = Some(published_epoch);
            version = published_version;
            self.reached_version.store(version, Ordering::Relaxed);
            // Adopted below; if that is put off, the next round adopts whatever it reads.
            self.seen_version.store(0, Ordering::Relaxed);
        } else {
            *seen_epoch = epoch;
            if version == seen_version {
                return Ok(());
            }
        }
        // The maps are read with the marker, atomically: maps read from a Redis that
        // lost its data after the marker was checked would revoke what it lost. An
        // admin write on this instance since the read would be undone by adopting
        // them: then the next round reads again.
        let generation = self.runtime_keys.generation();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .get(self.consumers_key("epoch"))
            .hgetall(self.consumers_key("keys"))
            .hgetall(self.consumers_key("tiers"));
        let mut replies = self.within_deadline(backend.run(vec![pipe])).await?;
        let (epoch_now, keys, tiers) =
            redis::from_redis_value::<(Option<String>, HashMap<String, String>, HashMap<String, String>)>(
                Value::Array(replies.pop().unwrap_or(Ok(Vec::new()))?),
            )?;
        if epoch_now != *seen_epoch {
            return Ok(()); // the next round repairs the loss first
        }
        let adopted = self.runtime_keys.replace(
            keys.values()
                .filter_map(|json| serde_json::from_str::<StoredKey>(json).ok())
                .filter_map(|stored| RuntimeKey::from_stored(&stored, &self.tier_names))
                .collect(),
            generation,
        );
        if !adopted {
            return Ok(());
        }
        self.overrides.replace(
            tiers
                .into_iter()
                .filter_map(|(consumer, tier)| {
                    let id = TierId(self.tier_names.iter().position(|t| *t == tier)?);
                    Some((Arc::from(consumer.as_str()), id))
                })
                .collect(),
        );
        self.seen_version.store(version, Ordering::Relaxed);
        self.reached_version.fetch_max(version, Ordering::Relaxed);
        Ok(())
    }

    /// What this instance holds goes back (keys and overrides, never overwriting
    /// and never over a tombstone), what it knows revoked is revoked again, then the
    /// marker if there is none and a version bump so every instance reads the union.
    /// Returns the marker in force (ours, or one another instance set first) and the
    /// version after the bump.
    async fn republish(&self, backend: &Backend) -> RedisResult<(String, u64)> {
        // Overrides written before they moved under the consumers' tag are carried over.
        let legacy_key = format!("{}:tiers", self.key_prefix);
        let mut legacy = redis::pipe();
        legacy.hgetall(&legacy_key);
        let legacy: HashMap<String, String> = backend
            .run(vec![legacy])
            .await
            .pop()
            .and_then(Result::ok)
            .and_then(|v| v.into_iter().next())
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or_default();
        let revoked = self.runtime_keys.revoked();
        let keys: Vec<(String, String)> = self
            .runtime_keys
            .all()
            .iter()
            .filter_map(|key| {
                let json = serde_json::to_string(&key.to_stored(&self.tier_names)).ok()?;
                Some((key.key_id.to_string(), json))
            })
            .collect();
        let overrides: Vec<(String, String)> = legacy
            .into_iter()
            .chain(self.overrides.all().into_iter().filter_map(|(consumer, tier)| {
                Some((consumer.to_string(), tier.of(&self.tier_names)?.clone()))
            }))
            .collect();
        // Unique per publication, so a second loss is told from the first.
        let epoch = format!("{}:{:016x}", self.instance_id, fastrand::u64(..));
        let mut pipe = redis::pipe();
        let eval = pipe.cmd("EVAL").arg(REPUBLISH).arg(6);
        for what in ["keys", "tiers", "revoked", "cleared", "epoch", "version"] {
            eval.arg(self.consumers_key(what));
        }
        eval.arg(epoch).arg(revoked.len()).arg(&revoked);
        eval.arg(keys.len());
        for (id, json) in &keys {
            eval.arg(id).arg(json);
        }
        eval.arg(overrides.len());
        for (consumer, tier) in &overrides {
            eval.arg(consumer).arg(tier);
        }
        let mut replies = backend.run(vec![pipe]).await;
        let mut replies = replies.pop().unwrap_or(Ok(Vec::new()))?;
        let published = redis::from_redis_value::<(String, u64)>(replies.pop().unwrap_or(Value::Nil))?;
        // Carried over once: a cleared override must not come back from there.
        let mut drop_legacy = redis::pipe();
        drop_legacy.del(&legacy_key).ignore();
        backend.run(vec![drop_legacy]).await;
        Ok(published)
    }
}
