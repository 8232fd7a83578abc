//! API keys created at runtime through the admin API: only their digests are
//! held, like the config's. The request path looks a digest up in a sharded map
//! (by_digest.rs: a read lock of one shard of many); a write changes one entry and
//! retires only the record it replaced or removed, so a cached verification of any
//! other key stays good. An index by consumer (by_consumer.rs) serves listings.

use super::by_consumer::ByConsumer;
use super::by_digest::ByDigest;
use crate::consumers::stored::StoredKey;
use crate::vocab::ids::{Id, TierId};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// 96 bytes, so a record with its reference counts takes one 112-byte block.
#[derive(Debug)]
pub struct RuntimeKey {
    pub key_id: Box<str>,
    pub consumer: Arc<str>,
    pub digest: [u8; 32],
    /// The tier's index, `DEFAULT_TIER` for the default (an `Option<TierId>` would
    /// take 12 bytes more, and the record a block of the next size).
    tier: u32,
    pub created_at_s: u64,
    /// Unix seconds, 0 for never (an `Option` would take 8 bytes more).
    expires_at_s: u64,
    /// Unix seconds of the last request it authenticated here (0: never).
    pub last_used_s: AtomicU64,
    /// Set once this record is no longer the store's (revoked or replaced): a
    /// verification cached with it must be checked again.
    retired: AtomicBool,
}

const DEFAULT_TIER: u32 = u32::MAX;

impl RuntimeKey {
    pub fn new(
        key_id: String,
        consumer: Arc<str>,
        digest: [u8; 32],
        tier: Option<TierId>,
        created_at_s: u64,
        expires_at_s: Option<u64>,
    ) -> RuntimeKey {
        RuntimeKey {
            key_id: key_id.into_boxed_str(),
            consumer,
            digest,
            tier: tier.map_or(DEFAULT_TIER, |t| t.0 as u32),
            created_at_s,
            // An expiry of 0 (a record edited by hand) is long past at 1 too.
            expires_at_s: expires_at_s.map_or(0, |at| at.max(1)),
            last_used_s: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        }
    }

    /// `None`: the default tier.
    pub fn tier(&self) -> Option<TierId> {
        (self.tier != DEFAULT_TIER).then_some(TierId(self.tier as usize))
    }

    pub fn expires_at_s(&self) -> Option<u64> {
        (self.expires_at_s != 0).then_some(self.expires_at_s)
    }

    pub fn expired(&self, now_s: u64) -> bool {
        self.expires_at_s().is_some_and(|at| now_s >= at)
    }

    /// Whether this record left the store (revoked, or replaced by another record).
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Everything but the use: a key adopted again unchanged keeps its record.
    fn same_record(&self, other: &RuntimeKey) -> bool {
        (
            &self.key_id,
            &self.consumer,
            self.digest,
            self.tier,
            self.created_at_s,
            self.expires_at_s,
        ) == (
            &other.key_id,
            &other.consumer,
            other.digest,
            other.tier,
            other.created_at_s,
            other.expires_at_s,
        )
    }

    /// From its stored form; `None` for a malformed digest or a tier the config
    /// no longer has.
    pub fn from_stored(stored: &StoredKey, tier_names: &[String]) -> Option<RuntimeKey> {
        let digest: [u8; 32] = hex::decode(&stored.digest).ok()?.try_into().ok()?;
        let tier = match &stored.tier {
            Some(name) => Some(TierId(tier_names.iter().position(|t| t == name)?)),
            None => None,
        };
        Some(RuntimeKey::new(
            stored.key_id.clone(),
            Arc::from(stored.consumer.as_str()),
            digest,
            tier,
            stored.created_at_s,
            stored.expires_at_s,
        ))
    }

    pub fn to_stored(&self, tier_names: &[String]) -> StoredKey {
        StoredKey {
            key_id: self.key_id.to_string(),
            consumer: self.consumer.to_string(),
            digest: hex::encode(self.digest),
            tier: self.tier().and_then(|t| t.of(tier_names).cloned()),
            created_at_s: self.created_at_s,
            expires_at_s: self.expires_at_s(),
        }
    }
}

/// Revoked key ids remembered, to revoke again in a Redis that lost data.
const REVOKED_KEPT: usize = 100_000;
#[derive(Default)]
pub struct RuntimeKeys {
    by_digest: ByDigest,
    /// Held by writers (admin, sync, start-up; never the request path) through a
    /// whole write; it guards the index by consumer.
    writing: Mutex<ByConsumer>,
    /// Ids of keys revoked here or seen gone from the cluster's set, oldest first.
    revoked: Mutex<VecDeque<String>>,
}

impl RuntimeKeys {
    pub fn find(&self, digest: &[u8; 32]) -> Option<Arc<RuntimeKey>> {
        self.by_digest.get(digest)
    }

    fn writing(&self) -> MutexGuard<'_, ByConsumer> {
        self.writing.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, key: RuntimeKey) {
        let mut index = self.writing();
        self.put(&mut index, Arc::new(key));
    }

    /// Puts `key` in force, retiring the record it replaces under its digest.
    fn put(&self, index: &mut ByConsumer, key: Arc<RuntimeKey>) {
        if let Some(old) = self.by_digest.insert(key.clone()) {
            index.remove(&old);
            old.retired.store(true, Ordering::Release);
        }
        index.insert(key);
    }

    /// Takes `key` out of force.
    fn take(&self, index: &mut ByConsumer, key: &Arc<RuntimeKey>) {
        self.by_digest.remove(key);
        index.remove(key);
        key.retired.store(true, Ordering::Release);
    }

    /// Revokes `consumer`'s key `key_id`; false when there is none.
    pub fn remove(&self, consumer: &str, key_id: &str) -> bool {
        let mut index = self.writing();
        let Some(key) = index.of(consumer).find(|k| &*k.key_id == key_id).cloned() else {
            return false;
        };
        self.take(&mut index, &key);
        self.remember_revoked([key_id.to_string()]);
        true
    }

    fn remember_revoked(&self, ids: impl IntoIterator<Item = String>) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.extend(ids);
        while revoked.len() > REVOKED_KEPT {
            revoked.pop_front();
        }
    }

    /// Key ids known revoked (bounded: the most recent `REVOKED_KEPT`).
    pub fn revoked(&self) -> Vec<String> {
        let revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.iter().cloned().collect()
    }

    /// Puts keys the cluster holds in force, the batch under one hold of the
    /// writers' lock. A key held with the same record keeps it, with its last use and
    /// its cached verifications; `skip` names key ids written here since the batch
    /// was read, which it must not undo.
    pub fn adopt(&self, keys: impl IntoIterator<Item = RuntimeKey>, skip: impl Fn(&str) -> bool) {
        let mut index = self.writing();
        for key in keys {
            if skip(&key.key_id) {
                continue;
            }
            match self.find(&key.digest) {
                Some(held) if held.same_record(&key) => {}
                held => {
                    if let Some(held) = held {
                        let used = held.last_used_s.load(Ordering::Relaxed);
                        key.last_used_s.store(used, Ordering::Relaxed);
                    }
                    self.put(&mut index, Arc::new(key));
                }
            }
        }
    }

    /// A full load into an empty store (an instance's first) of about `expected`
    /// keys, room made for them at once: see `Loading`.
    pub fn loading(&self, expected: usize) -> Loading<'_> {
        self.by_digest.reserve(expected);
        Loading {
            keys: self,
            loaded: Vec::with_capacity(expected),
        }
    }

    /// Takes every key `keep` refuses out of force, remembering their ids as
    /// revoked; returns how many went.
    pub fn retain(&self, keep: impl Fn(&RuntimeKey) -> bool) -> usize {
        let mut index = self.writing();
        let gone: Vec<Arc<RuntimeKey>> = index.keys().filter(|k| !keep(k)).cloned().collect();
        for key in &gone {
            self.take(&mut index, key);
        }
        self.remember_revoked(gone.iter().map(|k| k.key_id.to_string()));
        gone.len()
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn revoked_len(&self) -> usize {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn all(&self) -> Vec<Arc<RuntimeKey>> {
        self.writing().keys().cloned().collect()
    }

    /// `consumer`'s keys, oldest first.
    pub fn of_consumer(&self, consumer: &str) -> Vec<Arc<RuntimeKey>> {
        self.writing().of(consumer).cloned().collect()
    }

    /// Reads the index by consumer; writers wait meanwhile, so keep it short.
    pub fn with_consumers<R>(&self, read: impl FnOnce(&ByConsumer) -> R) -> R {
        read(&self.writing())
    }
}

/// Keys put in force by digest batch by batch, the index by consumer built once
/// from them all when the load ends (dropped): a walk of the tree for each of a
/// million keys would be most of the load. Meanwhile listings miss them.
pub struct Loading<'a> {
    keys: &'a RuntimeKeys,
    loaded: Vec<Arc<RuntimeKey>>,
}

impl Loading<'_> {
    /// As `RuntimeKeys::adopt`, into a store that held nothing when the load began.
    pub fn put(&mut self, keys: impl IntoIterator<Item = RuntimeKey>, skip: impl Fn(&str) -> bool) {
        let _writing = self.keys.writing();
        for key in keys.into_iter().filter(|k| !skip(&k.key_id)) {
            let key = Arc::new(key);
            if let Some(old) = self.keys.by_digest.insert(key.clone()) {
                old.retired.store(true, Ordering::Release); // a key the scan returned twice
            }
            self.loaded.push(key);
        }
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        let mut loaded = std::mem::take(&mut self.loaded);
        loaded.retain(|k| !k.retired());
        self.keys.writing().extend(loaded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, consumer: &str, digest: u8) -> RuntimeKey {
        RuntimeKey::new(id.into(), Arc::from(consumer), [digest; 32], None, 1, Some(100))
    }

    fn ids(keys: &[Arc<RuntimeKey>]) -> Vec<&str> {
        keys.iter().map(|k| &*k.key_id).collect()
    }

    #[test]
    fn a_record_fits_a_112_byte_block_with_its_reference_counts() {
        assert!(std::mem::size_of::<RuntimeKey>() <= 96);
    }

    #[test]
    fn insert_find_and_remove() {
        let keys = RuntimeKeys::default();
        keys.insert(key("k1", "alice", 1));
        assert_eq!(&*keys.find(&[1; 32]).expect("k1").key_id, "k1");
        assert!(!keys.remove("bob", "k1"), "only alice's own key");
        assert!(keys.remove("alice", "k1"));
        assert!(keys.find(&[1; 32]).is_none());
        assert_eq!(keys.revoked(), vec!["k1"]);
    }

    #[test]
    fn a_write_retires_only_the_record_it_replaces_or_removes() {
        let keys = RuntimeKeys::default();
        keys.insert(key("k1", "alice", 1));
        keys.insert(key("k2", "alice", 2));
        let (k1, k2) = (keys.find(&[1; 32]).expect("k1"), keys.find(&[2; 32]).expect("k2"));
        assert!(keys.remove("alice", "k1"));
        assert!(k1.retired() && !k2.retired());
        keys.insert(key("k3", "bob", 3));
        assert!(!k2.retired(), "an insert retires nothing else");
        keys.insert(RuntimeKey::new(
            "k2".into(),
            Arc::from("alice"),
            [2; 32],
            Some(TierId(1)),
            1,
            Some(100),
        ));
        assert!(k2.retired(), "replaced under its digest");
        assert_eq!(keys.find(&[2; 32]).expect("k2").tier(), Some(TierId(1)));
        assert_eq!(ids(&keys.of_consumer("alice")), vec!["k2"]);
    }

    #[test]
    fn adopting_changes_only_what_differs_and_retaining_drops_the_rest() {
        let keys = RuntimeKeys::default();
        keys.insert(key("k1", "alice", 1));
        keys.insert(key("k2", "bob", 2));
        let k1 = keys.find(&[1; 32]).expect("k1");
        k1.last_used_s.store(42, Ordering::Relaxed);
        let k2 = RuntimeKey::new("k2".into(), Arc::from("bob"), [2; 32], None, 1, Some(200));
        keys.adopt([key("k1", "alice", 1), k2, key("k3", "alice", 3)], |_| false);
        let kept = keys.find(&[1; 32]).expect("k1");
        assert!(
            Arc::ptr_eq(&kept, &k1) && !k1.retired(),
            "the same record, still good"
        );
        assert_eq!(kept.last_used_s.load(Ordering::Relaxed), 42);
        assert_eq!(keys.find(&[2; 32]).expect("k2").expires_at_s(), Some(200));
        assert_eq!(keys.retain(|k| &*k.key_id == "k3"), 2);
        assert!(k1.retired() && keys.find(&[1; 32]).is_none());
        assert_eq!(keys.revoked(), vec!["k1", "k2"]);
        assert!(key("k", "a", 3).expired(100) && !key("k", "a", 3).expired(99));
        let at_zero = RuntimeKey::new("k".into(), Arc::from("a"), [3; 32], None, 1, Some(0));
        assert!(at_zero.expired(1), "an expiry of 0 is not \"never\"");
    }

    #[test]
    fn a_load_indexes_its_keys_by_consumer_when_it_ends() {
        let keys = RuntimeKeys::default();
        let mut loading = keys.loading(3);
        loading.put([key("k1", "alice", 1), key("k2", "bob", 2)], |_| false);
        loading.put([key("k1", "alice", 1), key("k3", "alice", 3)], |id| id == "k3");
        assert!(keys.find(&[1; 32]).is_some(), "in force as it loads");
        drop(loading);
        assert_eq!(
            ids(&keys.of_consumer("alice")),
            vec!["k1"],
            "the copy in force, once"
        );
        assert_eq!(keys.all().len(), 2);
        assert!(keys.find(&[3; 32]).is_none());
    }

    #[test]
    fn adopting_leaves_alone_what_was_written_here_since_the_read() {
        let keys = RuntimeKeys::default();
        keys.insert(key("k1", "alice", 1));
        assert!(keys.remove("alice", "k1")); // revoked here after the sync's read
        keys.adopt([key("k1", "alice", 1), key("k2", "alice", 2)], |id| id == "k1");
        assert!(keys.find(&[1; 32]).is_none(), "a revoked key never comes back");
        assert!(keys.find(&[2; 32]).is_some());
    }

    #[test]
    fn the_index_by_consumer_follows_inserts_removals_and_replacements() {
        let keys = RuntimeKeys::default();
        keys.insert(key("a2", "alice", 2));
        keys.insert(key("b1", "bob", 3));
        let mut a1 = key("a1", "alice", 1);
        a1.created_at_s = 0;
        keys.insert(a1);
        assert_eq!(ids(&keys.of_consumer("alice")), vec!["a1", "a2"], "oldest first");
        assert!(keys.remove("bob", "b1"));
        let names = |keys: &RuntimeKeys| {
            keys.with_consumers(|index| {
                index
                    .consumers()
                    .map(|(c, n)| (c.to_string(), n))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(names(&keys), vec![("alice".to_string(), 2)], "bob has none left");
        keys.adopt(
            [
                key("a2", "alice", 2),
                key("c1", "carol", 4),
                key("c2", "carol", 5),
            ],
            |_| false,
        );
        keys.retain(|k| &*k.consumer != "alice" || &*k.key_id == "a2");
        assert_eq!(
            names(&keys),
            vec![("alice".to_string(), 1), ("carol".to_string(), 2)]
        );
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.all().len(), 3);
    }

    #[test]
    fn concurrent_writers_readers_and_replaces_leave_a_consistent_store() {
        let keys = Arc::new(RuntimeKeys::default());
        keys.insert(key("stays", "zed", 255));
        std::thread::scope(|s| {
            for writer in 0..4u8 {
                let keys = &keys;
                s.spawn(move || {
                    for i in 0..50u8 {
                        let mut digest = [writer; 32];
                        digest[1] = i;
                        let id = format!("w{writer}-{i}");
                        let mut k = key(&id, &format!("c{writer}"), 0);
                        k.digest = digest;
                        keys.insert(k);
                        if i % 2 == 0 {
                            assert!(keys.remove(&format!("c{writer}"), &id));
                        }
                    }
                });
            }
            // The sync, adopting again what it read (its own copies of the records):
            // nothing it adopts is retired, nothing is doubled.
            let keys2 = &keys;
            s.spawn(move || {
                for _ in 0..200 {
                    let held: Vec<RuntimeKey> = keys2
                        .all()
                        .iter()
                        .map(|k| {
                            RuntimeKey::new(
                                k.key_id.to_string(),
                                k.consumer.clone(),
                                k.digest,
                                k.tier(),
                                k.created_at_s,
                                k.expires_at_s(),
                            )
                        })
                        .collect();
                    // Keys revoked since the read were written here: left alone.
                    keys2.adopt(held, |id| keys2.revoked().iter().any(|r| r == id));
                }
            });
            for _ in 0..2 {
                let keys = &keys;
                s.spawn(move || {
                    for _ in 0..2000 {
                        assert!(keys.find(&[255; 32]).is_some_and(|k| !k.retired()));
                    }
                });
            }
        });
        assert_eq!(keys.len(), 1 + 4 * 25);
        assert_eq!(keys.all().len(), keys.len(), "the index matches the map");
        for writer in 0..4u8 {
            let theirs = keys.of_consumer(&format!("c{writer}"));
            assert_eq!(theirs.len(), 25);
            assert!(theirs
                .iter()
                .all(|k| keys.find(&k.digest).is_some_and(|f| Arc::ptr_eq(&f, k))));
        }
    }
}
