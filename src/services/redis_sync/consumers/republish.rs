//! After Redis lost data: what this instance holds of the runtime consumers goes
//! back in bounded batches (republish.lua: never overwriting, never over a
//! tombstone), what it knows revoked is revoked again first, then the epoch marker
//! if there is none and a version bump with no log entry, so every instance reloads
//! the union in full.

use super::super::{Backend, RedisSync};
use crate::vocab::ids::Id;
use redis::{RedisResult, Value};
use std::collections::HashMap;

const REPUBLISH: &str = include_str!("republish.lua");

/// Ids, keys or overrides per script call: each call holds Redis a millisecond or two.
const BATCH: usize = 1_000;

/// Script calls sent together: a bounded share of the whole in memory at once.
const IN_FLIGHT: usize = 16;

/// One script call's share: revoked ids, keys' (id, record), overrides' (consumer, tier).
#[derive(Default)]
struct Part {
    revoked: Vec<String>,
    keys: Vec<(String, String)>,
    overrides: Vec<(String, String)>,
}

impl RedisSync {
    /// Returns the marker in force (ours, or one another instance set first) and
    /// the version after the bump.
    pub(super) async fn republish(&self, backend: &Backend) -> RedisResult<(String, u64)> {
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
        let overrides: Vec<(String, String)> = legacy
            .into_iter()
            .chain(self.overrides.all().into_iter().filter_map(|(consumer, tier)| {
                Some((consumer.to_string(), tier.of(&self.tier_names)?.clone()))
            }))
            .collect();
        let revoked = self.runtime_keys.revoked();
        let held = self.runtime_keys.all();
        // Revocations first: no key is published before every id known revoked is.
        let (mut revoked, mut held, mut overrides) =
            (revoked.chunks(BATCH), held.chunks(BATCH), overrides.chunks(BATCH));
        while revoked.len() + held.len() + overrides.len() > 0 {
            let mut calls = Vec::with_capacity(IN_FLIGHT);
            while calls.len() < IN_FLIGHT {
                let part = if let Some(ids) = revoked.next() {
                    Part {
                        revoked: ids.to_vec(),
                        ..Part::default()
                    }
                } else if let Some(keys) = held.next() {
                    Part {
                        keys: keys
                            .iter()
                            .filter_map(|key| {
                                let json = serde_json::to_string(&key.to_stored(&self.tier_names)).ok()?;
                                Some((key.key_id.to_string(), json))
                            })
                            .collect(),
                        ..Part::default()
                    }
                } else if let Some(chunk) = overrides.next() {
                    Part {
                        overrides: chunk.to_vec(),
                        ..Part::default()
                    }
                } else {
                    break;
                };
                calls.push(self.call(&part));
            }
            for reply in self.within(calls.len() * BATCH, backend.run(calls)).await? {
                reply?;
            }
        }
        // Unique per publication, so a second loss is told from the first.
        let epoch = format!("{}:{:016x}", self.instance_id, fastrand::u64(..));
        let mut done = redis::pipe();
        done.atomic()
            .cmd("SET")
            .arg(self.consumers_key("epoch"))
            .arg(epoch)
            .arg("NX")
            .ignore()
            .get(self.consumers_key("epoch"))
            .incr(self.consumers_key("version"), 1);
        let mut replies = self.within(0, backend.run(vec![done])).await?;
        let replies = replies.pop().unwrap_or(Ok(Vec::new()))?;
        let published = redis::from_redis_value::<(String, u64)>(Value::Array(replies))?;
        // Carried over once: a cleared override must not come back from there.
        let mut drop_legacy = redis::pipe();
        drop_legacy.del(&legacy_key).ignore();
        backend.run(vec![drop_legacy]).await;
        Ok(published)
    }

    fn call(&self, part: &Part) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let eval = pipe.cmd("EVAL").arg(REPUBLISH).arg(4);
        for what in ["keys", "tiers", "revoked", "cleared"] {
            eval.arg(self.consumers_key(what));
        }
        eval.arg(part.revoked.len()).arg(&part.revoked);
        eval.arg(part.keys.len());
        for (id, json) in &part.keys {
            eval.arg(id).arg(json);
        }
        eval.arg(part.overrides.len());
        for (consumer, tier) in &part.overrides {
            eval.arg(consumer).arg(tier);
        }
        pipe.ignore();
        pipe
    }
}
