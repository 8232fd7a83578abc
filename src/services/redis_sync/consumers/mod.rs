//! Runtime consumers in Redis: API keys (one hash field per key id, a JSON record
//! holding only the digest), tier overrides, and a change log (log.rs) that every
//! write appends to with the version it made, in one step (write.lua). The admin API
//! writes through Redis first, so a write Redis did not take is refused, never lost;
//! each sync round reads the version, the epoch marker and the log's next entries
//! (one small read when idle) and applies each change to the one key or override it
//! names. A full reload (reload.rs, in batches) happens at an instance's first look,
//! when its place in the log was trimmed away, or after Redis lost its data: an
//! epoch marker tells that, and the instance first publishes what it holds again
//! (republish.rs), so only an explicit DELETE ever revokes.

mod local_writes;
mod log;
mod reload;
mod republish;

use super::round::{Batch, Queued, Replies};
use super::{Backend, RedisSync};
use crate::consumers::stored::Change as Write;
use arc_swap::ArcSwapOption;
pub(super) use local_writes::LocalWrites;
use local_writes::Target;
use log::{Followed, Place, Store};
use redis::{RedisResult, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const WRITE: &str = include_str!("write.lua");
/// The keys write.lua is given, in order (`{<prefix>:consumers}:<name>`).
pub(crate) const WRITE_KEYS: [&str; 7] = ["keys", "tiers", "revoked", "cleared", "version", "log", "stamps"];

/// Log entries a round reads with its batch; more are read after it, in batches
/// of `FOLLOW_BATCH`, so an instance catches up within the round.
const ROUND_ENTRIES: usize = 1_000;
const FOLLOW_BATCH: usize = 10_000;

/// The consumers' Redis keys share one hash slot, so a write's step is one slot's.
pub(crate) fn consumers_key(prefix: &str, what: &str) -> String {
    format!("{{{prefix}:consumers}}:{what}")
}

/// Where this instance stands with the runtime consumers in Redis.
#[derive(Default)]
pub(super) struct Following {
    /// The epoch marker seen (`None` before the first look).
    epoch: Option<String>,
    /// The place in the log; `None` until a full reload sets it.
    place: Option<Place>,
}

/// What a read of the log brought: the version and the marker read with it, and
/// the entries from the place on.
pub(super) struct LogRead {
    epoch: Option<String>,
    version: u64,
    entries: Vec<log::Entry>,
    /// The entries asked for: a read that brought them all may have left more.
    asked: usize,
}

/// The round's read of the log, queued, and the highest version this instance
/// knew Redis reached when it was sent: a version read below it means Redis went
/// back (one raised since by a write made here does not).
pub(super) struct LogQueued {
    queued: Queued,
    reached: u64,
}

impl LogRead {
    fn parse(reply: Vec<Value>, asked: usize) -> RedisResult<LogRead> {
        let (version, epoch, entries): (Option<u64>, Option<String>, Value) =
            redis::from_redis_value(Value::Array(reply))?;
        Ok(LogRead {
            epoch,
            version: version.unwrap_or(0),
            entries: log::entries(&entries),
            asked,
        })
    }

    /// The digests of the keys its entries add.
    fn added(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.entries.iter().filter_map(|e| match &e.change {
            log::Change::Add(stored) => hex::decode(&stored.digest).ok()?.try_into().ok(),
            _ => None,
        })
    }
}

/// The admin API's way to Redis, over the sync's connection.
#[derive(Clone)]
pub struct ConsumerStore {
    backend: Arc<ArcSwapOption<Backend>>,
    prefix: String,
    /// The sync's record of the highest version Redis reached, raised by each write.
    reached_version: Arc<AtomicU64>,
    local_writes: Arc<LocalWrites>,
    log_entries: usize,
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

    /// One admin write, with its version bump and its log entry (write.lua). A
    /// timeout leaves the outcome unknown, and says so.
    pub async fn apply(&self, change: &Write) -> Result<(), String> {
        let (op, target, value) = match change {
            Write::AddKey(key) => (
                "add",
                Target::Key(key.key_id.clone()),
                serde_json::to_string(key).map_err(|e| e.to_string())?,
            ),
            Write::RevokeKey { key_id } => ("revoke", Target::Key(key_id.clone()), String::new()),
            Write::SetTier { consumer, tier } => ("tier", Target::Tier(consumer.clone()), tier.clone()),
            Write::ClearTier { consumer } => ("untier", Target::Tier(consumer.clone()), String::new()),
            Write::Quotas(_) => return Ok(()), // with Redis, quotas are counted there by the sync
        };
        self.write(op, target, value).await.map(drop)
    }

    /// Revokes `consumer`'s key `key_id` if Redis holds it: for an instance that
    /// does not (still loading, or behind the log), so that a leaked key is never
    /// answered "no such key" while it works elsewhere. `Ok(false)`: Redis has none.
    pub async fn revoke_held(&self, consumer: &str, key_id: &str) -> Result<bool, String> {
        let target = Target::Key(key_id.to_string());
        Ok(self.write("revoke_held", target, consumer.to_string()).await? != 0)
    }

    /// write.lua's `op` on `target`: the version it made (0: nothing written).
    async fn write(&self, op: &str, target: Target, value: String) -> Result<u64, String> {
        let (Target::Key(id) | Target::Tier(id)) = &target;
        let backend = self.connected().await.ok_or("redis is unreachable")?;
        let mut pipe = redis::pipe();
        let eval = pipe.cmd("EVAL").arg(WRITE).arg(WRITE_KEYS.len());
        for what in WRITE_KEYS {
            eval.arg(self.key(what));
        }
        eval.arg(op).arg(id).arg(value).arg(self.log_entries);
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
        let version = replies
            .pop()
            .and_then(|v| redis::from_redis_value::<u64>(v).ok())
            .ok_or("redis answered the write with no version")?;
        if version != 0 {
            self.reached_version.fetch_max(version, Ordering::Relaxed);
            // Before the caller puts it in force here: the sync must not undo it.
            self.local_writes.note(target, version);
        }
        Ok(version)
    }
}

impl RedisSync {
    pub fn consumer_store(&self) -> ConsumerStore {
        ConsumerStore {
            backend: self.backend.clone(),
            prefix: self.key_prefix.clone(),
            reached_version: self.reached_version.clone(),
            local_writes: self.local_writes.clone(),
            log_entries: self.consumers_log_entries,
        }
    }

    /// `work` within the sync's deadline, grown with the consumers it carries.
    async fn within<T>(&self, load: usize, work: impl std::future::Future<Output = T>) -> RedisResult<T> {
        tokio::time::timeout(self.timeout(load), work)
            .await
            .map_err(|_| super::timed_out())
    }

    fn consumers_key(&self, what: &str) -> String {
        consumers_key(&self.key_prefix, what)
    }

    fn following(&self) -> std::sync::MutexGuard<'_, Following> {
        self.following.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The version, the marker and the log from `place` on, read together.
    fn log_pipe(&self, place: Option<&Place>, asked: usize) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .get(self.consumers_key("version"))
            .get(self.consumers_key("epoch"));
        match place {
            // The place's own entry comes again (it is skipped): a place trimmed away shows.
            Some(place) => pipe
                .cmd("XRANGE")
                .arg(self.consumers_key("log"))
                .arg(place.from())
                .arg("+")
                .arg("COUNT")
                .arg(asked + 1),
            // Before the first reload the log is not read.
            None => pipe
                .cmd("XRANGE")
                .arg(self.consumers_key("log"))
                .arg("+")
                .arg("-"),
        };
        pipe
    }

    /// The round's part: one small read when nothing changed.
    pub(super) fn consumers_round(&self, batch: &mut Batch) -> LogQueued {
        let reached = self.reached_version.load(Ordering::Relaxed);
        let pipe = self.log_pipe(self.following().place.as_ref(), ROUND_ENTRIES);
        LogQueued {
            queued: batch.queue([pipe]),
            reached,
        }
    }

    /// What the round's read found, with the version known reached when it was
    /// sent; `None` when it failed.
    pub(super) fn consumers_read(replies: &mut Replies, log: LogQueued) -> Option<(LogRead, u64)> {
        let reply = replies.take(log.queued).next()?.ok()?;
        Some((LogRead::parse(reply, ROUND_ENTRIES + 1).ok()?, log.reached))
    }

    async fn read_log(&self, backend: &Backend, place: &Place) -> RedisResult<LogRead> {
        let pipe = self.log_pipe(Some(place), FOLLOW_BATCH);
        let mut replies = self.within(FOLLOW_BATCH, backend.run(vec![pipe])).await?;
        LogRead::parse(replies.pop().unwrap_or(Ok(Vec::new()))?, FOLLOW_BATCH + 1)
    }

    /// Applies what `read` brought after `place`, moving it.
    fn follow(&self, place: &mut Place, read: LogRead) -> Followed {
        let store = Store {
            keys: &self.runtime_keys,
            overrides: &self.overrides,
            tier_names: &self.tier_names,
        };
        let mut local = self.local_writes.hold();
        store.follow(place, read.entries, read.asked, read.version, &mut local)
    }

    /// After the round: publish ours again if Redis lost its data, reload in full
    /// if this instance has no place in the log, else apply the log from it.
    pub(super) async fn consumers_follow(
        &self,
        backend: &Backend,
        read: Option<(LogRead, u64)>,
    ) -> RedisResult<()> {
        let Some((mut read, reached_when_sent)) = read else {
            return Ok(());
        };
        let (seen, place) = {
            let following = self.following();
            (following.epoch.clone(), following.place.clone())
        };
        // Redis lost data since this instance last looked when it has no marker (new,
        // flushed, restarted empty), another marker than the one seen (lost, and
        // republished by another instance meanwhile), or a version gone backwards (a
        // snapshot restored, a replica that was behind). A first look at a Redis with
        // a marker only reloads: a restarted instance must not bring back what was
        // revoked while it was away.
        let lost = match (&read.epoch, &seen) {
            (None, _) => true,
            (Some(now), Some(seen)) => now != seen || read.version < reached_when_sent,
            (Some(_), None) => false,
        };
        if lost {
            return self.repair(backend, "redis lost data").await;
        }
        let Some(mut place) = place else {
            return self.reload_under(backend, read.epoch, "first look").await;
        };
        loop {
            match self.follow(&mut place, read) {
                Followed::Caught => break,
                Followed::More => {}
                Followed::Lost => {
                    return self
                        .reload_under(backend, seen, "its place in the log is gone")
                        .await
                }
                Followed::WentBack => return self.repair(backend, "redis numbered writes again").await,
            }
            read = self.read_log(backend, &place).await?;
            if read.epoch != seen {
                break; // the next round repairs first
            }
        }
        self.reached_version.fetch_max(place.version, Ordering::Relaxed);
        self.following().place = Some(place);
        Ok(())
    }

    /// Redis lost data: what this instance holds is published again, then reloaded.
    async fn repair(&self, backend: &Backend, why: &str) -> RedisResult<()> {
        self.local_writes.hold().forget();
        let (epoch, version) = self.republish(backend).await?;
        self.reached_version.store(version, Ordering::Relaxed);
        self.reload_under(backend, Some(epoch), why).await
    }

    /// A full reload under `epoch`, the marker now seen; without a place the next
    /// round tries again.
    async fn reload_under(&self, backend: &Backend, epoch: Option<String>, why: &str) -> RedisResult<()> {
        let started = Instant::now();
        *self.following() = Following {
            epoch: epoch.clone(),
            place: None,
        };
        let Some(place) = self.reload(backend, &epoch).await? else {
            return Ok(());
        };
        ::log::info!(
            "runtime consumers reloaded in full ({why}): {} keys, {} overrides in {:?}",
            self.runtime_keys.len(),
            self.overrides.len(),
            started.elapsed()
        );
        self.reached_version.fetch_max(place.version, Ordering::Relaxed);
        self.following().place = Some(place);
        self.first_round.send_replace(true);
        Ok(())
    }
}
