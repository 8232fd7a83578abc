//! A full reload of the runtime consumers: at an instance's first look, when its
//! place in the log was trimmed away, or after Redis lost data. The epoch, the
//! version and the log's last entry are read together first; the keys and the
//! overrides are then scanned in batches (`HSCAN`), each batch put in force as it
//! comes; then the log is applied from the entry read first, which covers every
//! write the scan may have missed or seen half of. Only once the log follows on
//! from there, under the same epoch, are held keys the scan did not see taken out
//! of force: a Redis that lost data mid-scan drops nothing.

use super::super::{Backend, RedisSync};
use super::log::{Followed, Place};
use crate::consumers::keys::RuntimeKey;
use crate::consumers::stored::StoredKey;
use crate::vocab::ids::TierId;
use redis::{RedisResult, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Fields per `HSCAN` reply: about 2 MB of records, a few milliseconds of Redis.
const SCAN_COUNT: usize = 10_000;

impl RedisSync {
    /// Reloads in full under `epoch`; `None` when the epoch changed meanwhile (the
    /// next round repairs first) or the log was trimmed past the reload's own start.
    pub(super) async fn reload(
        &self,
        backend: &Backend,
        epoch: &Option<String>,
    ) -> RedisResult<Option<Place>> {
        let mut start = redis::pipe();
        start
            .atomic()
            .get(self.consumers_key("epoch"))
            .get(self.consumers_key("version"))
            .hlen(self.consumers_key("keys"))
            .cmd("XREVRANGE")
            .arg(self.consumers_key("log"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let mut replies = self.within(0, backend.run(vec![start])).await?;
        let (epoch_now, version, count, last): (Option<String>, Option<u64>, usize, Value) =
            redis::from_redis_value(Value::Array(replies.pop().unwrap_or(Ok(Vec::new()))?))?;
        if epoch_now != *epoch {
            return Ok(None);
        }
        let mut place = Place {
            entry: super::log::entries(&last).pop().map(|e| e.id),
            version: version.unwrap_or(0),
        };
        // At the first look nothing is held, so nothing can be missing from the scan,
        // and the keys are loaded rather than adopted.
        let mut seen = (!self.runtime_keys.is_empty()).then(HashSet::<[u8; 32]>::new);
        let mut loading = seen.is_none().then(|| self.runtime_keys.loading(count));
        self.scan(
            "keys",
            |batch| {
                let keys: Vec<RuntimeKey> = batch
                    .filter_map(|(_, json)| serde_json::from_slice::<StoredKey>(json).ok())
                    .filter_map(|stored| RuntimeKey::from_stored(&stored, &self.tier_names))
                    .collect();
                if let Some(seen) = &mut seen {
                    seen.extend(keys.iter().map(|k| k.digest));
                }
                let local = self.local_writes.hold();
                let skip = |id: &str| local.key_newer(id, place.version);
                match &mut loading {
                    Some(loading) => loading.put(keys, skip),
                    None => self.runtime_keys.adopt(keys, skip),
                }
            },
            backend,
        )
        .await?;
        drop(loading); // indexed by consumer before the log applies
        let mut tiers = HashMap::new();
        self.scan(
            "tiers",
            |batch| {
                tiers.extend(batch.filter_map(|(consumer, tier)| {
                    let tier = std::str::from_utf8(tier).ok()?;
                    let id = TierId(self.tier_names.iter().position(|t| t == tier)?);
                    Some((Arc::from(std::str::from_utf8(consumer).ok()?), id))
                }));
            },
            backend,
        )
        .await?;
        {
            let local = self.local_writes.hold();
            self.overrides
                .replace(tiers, |consumer| local.tier_newer(consumer, place.version));
        }
        // The log from the reload's start, and keys it adds count as seen.
        let read_at = place.version;
        loop {
            let read = self.read_log(backend, &place).await?;
            if read.epoch != *epoch {
                return Ok(None);
            }
            if let Some(seen) = &mut seen {
                seen.extend(read.added());
            }
            match self.follow(&mut place, read) {
                Followed::More => continue,
                Followed::Caught => break,
                Followed::Lost | Followed::WentBack => return Ok(None),
            }
        }
        if let Some(seen) = seen {
            let local = self.local_writes.hold();
            let gone = self
                .runtime_keys
                .retain(|k| seen.contains(&k.digest) || local.key_newer(&k.key_id, read_at));
            if gone > 0 {
                log::info!("runtime consumers: {gone} keys no longer in redis taken out of force");
            }
        }
        Ok(Some(place))
    }

    /// Walks one of the consumers' hashes in batches, each handed to `take` as
    /// (field, value) pairs; the next batch is on its way while one is taken.
    async fn scan(
        &self,
        what: &str,
        mut take: impl FnMut(&mut dyn Iterator<Item = (&[u8], &[u8])>),
        backend: &Backend,
    ) -> RedisResult<()> {
        let key = self.consumers_key(what);
        let (mut cursor, mut fields) = self
            .within(SCAN_COUNT, hscan(backend.clone(), key.clone(), 0))
            .await??;
        loop {
            let mut pairs = fields.chunks(2).filter_map(|pair| match pair {
                [Value::BulkString(f), Value::BulkString(v)] => Some((f.as_slice(), v.as_slice())),
                _ => None,
            });
            if cursor == 0 {
                take(&mut pairs);
                return Ok(());
            }
            // Asked for before this batch is taken; its deadline runs from after.
            let next = tokio::spawn(hscan(backend.clone(), key.clone(), cursor));
            take(&mut pairs);
            (cursor, fields) = self
                .within(SCAN_COUNT, next)
                .await?
                .map_err(|e| std::io::Error::other(e.to_string()))??;
        }
    }
}

/// One batch of a hash: the next cursor (0 at the end) and its fields and values.
async fn hscan(backend: Backend, key: String, cursor: u64) -> RedisResult<(u64, Vec<Value>)> {
    let mut pipe = redis::pipe();
    pipe.cmd("HSCAN")
        .arg(key)
        .arg(cursor)
        .arg("COUNT")
        .arg(SCAN_COUNT);
    let mut reply = backend.run(vec![pipe]).await;
    Ok(redis::from_redis_value(
        reply.pop().unwrap_or(Ok(Vec::new()))?.pop().unwrap_or(Value::Nil),
    )?)
}
