//! API keys created at runtime through the admin API: only their digests are
//! held, like the config's. Read-mostly: the request path loads a snapshot and
//! looks a digest up; writes (admin, or the Redis sync adopting the cluster's set)
//! swap in a new map and bump a generation, which retires cached verifications.

use crate::consumers::stored::StoredKey;
use crate::vocab::ids::{Id, TierId};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct RuntimeKey {
    pub key_id: String,
    pub consumer: Arc<str>,
    pub digest: [u8; 32],
    /// `None`: the default tier.
    pub tier: Option<TierId>,
    pub created_at_s: u64,
    pub expires_at_s: Option<u64>,
    /// Unix seconds of the last request it authenticated here (0: never).
    pub last_used_s: AtomicU64,
}

impl RuntimeKey {
    pub fn expired(&self, now_s: u64) -> bool {
        self.expires_at_s.is_some_and(|at| now_s >= at)
    }

    /// From its stored form; `None` for a malformed digest or a tier the config
    /// no longer has.
    pub fn from_stored(stored: &StoredKey, tier_names: &[String]) -> Option<RuntimeKey> {
        let digest: [u8; 32] = hex::decode(&stored.digest).ok()?.try_into().ok()?;
        let tier = match &stored.tier {
            Some(name) => Some(TierId(tier_names.iter().position(|t| t == name)?)),
            None => None,
        };
        Some(RuntimeKey {
            key_id: stored.key_id.clone(),
            consumer: Arc::from(stored.consumer.as_str()),
            digest,
            tier,
            created_at_s: stored.created_at_s,
            expires_at_s: stored.expires_at_s,
            last_used_s: AtomicU64::new(0),
        })
    }

    pub fn to_stored(&self, tier_names: &[String]) -> StoredKey {
        StoredKey {
            key_id: self.key_id.clone(),
            consumer: self.consumer.to_string(),
            digest: hex::encode(self.digest),
            tier: self.tier.and_then(|t| t.of(tier_names).cloned()),
            created_at_s: self.created_at_s,
            expires_at_s: self.expires_at_s,
        }
    }
}

/// Revoked key ids remembered, to revoke again in a Redis that lost data.
const REVOKED_KEPT: usize = 100_000;

#[derive(Default)]
pub struct RuntimeKeys {
    by_digest: ArcSwap<HashMap<[u8; 32], Arc<RuntimeKey>>>,
    generation: AtomicU64,
    /// Held by writers (admin and sync, never the request path), so adopting the
    /// cluster's set cannot undo an admin write that landed after its read.
    writing: std::sync::Mutex<()>,
    /// Ids of keys revoked here or seen gone from the cluster's set, oldest first.
    revoked: std::sync::Mutex<std::collections::VecDeque<String>>,
}

impl RuntimeKeys {
    pub fn find(&self, digest: &[u8; 32]) -> Option<Arc<RuntimeKey>> {
        self.by_digest.load().get(digest).cloned()
    }

    /// Changes with every write: a verification cached under another generation is stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn insert(&self, key: RuntimeKey) {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let key = Arc::new(key);
        self.by_digest.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(key.digest, key.clone());
            m
        });
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Revokes `consumer`'s key `key_id`; false when there is none.
    pub fn remove(&self, consumer: &str, key_id: &str) -> bool {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = false;
        self.by_digest.rcu(|m| {
            let mut m = HashMap::clone(m);
            let before = m.len();
            m.retain(|_, k| !(k.key_id == key_id && &*k.consumer == consumer));
            found = m.len() != before;
            m
        });
        if found {
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.remember_revoked([key_id.to_string()]);
        }
        found
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

    /// Adopts the cluster's set (what Redis holds), read while the set was at
    /// `generation`; false (nothing adopted) if a write came since. A key that stays
    /// keeps its last use.
    pub fn replace(&self, keys: Vec<RuntimeKey>, generation: u64) -> bool {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation() != generation {
            return false;
        }
        let old = self.by_digest.load_full();
        let kept: std::collections::HashSet<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
        let gone: Vec<String> = old
            .values()
            .filter(|k| !kept.contains(k.key_id.as_str()))
            .map(|k| k.key_id.clone())
            .collect();
        drop(kept);
        self.remember_revoked(gone);
        let map = keys
            .into_iter()
            .map(|k| {
                if let Some(before) = old.get(&k.digest) {
                    k.last_used_s
                        .store(before.last_used_s.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                (k.digest, Arc::new(k))
            })
            .collect();
        self.by_digest.store(Arc::new(map));
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    pub fn len(&self) -> usize {
        self.by_digest.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn revoked_len(&self) -> usize {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn all(&self) -> Vec<Arc<RuntimeKey>> {
        self.by_digest.load().values().cloned().collect()
    }

    pub fn of_consumer(&self, consumer: &str) -> Vec<Arc<RuntimeKey>> {
        let mut keys: Vec<_> = self
            .by_digest
            .load()
            .values()
            .filter(|k| &*k.consumer == consumer)
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.created_at_s, &a.key_id).cmp(&(b.created_at_s, &b.key_id)));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, consumer: &str, digest: u8) -> RuntimeKey {
        RuntimeKey {
            key_id: id.into(),
            consumer: Arc::from(consumer),
            digest: [digest; 32],
            tier: None,
            created_at_s: 1,
            expires_at_s: Some(100),
            last_used_s: AtomicU64::new(0),
        }
    }

    #[test]
    fn insert_find_remove_and_every_write_bumps_the_generation() {
        let keys = RuntimeKeys::default();
        let g0 = keys.generation();
        keys.insert(key("k1", "alice", 1));
        assert_eq!(keys.find(&[1; 32]).expect("k1").key_id, "k1");
        assert!(keys.generation() > g0);
        assert!(!keys.remove("bob", "k1"), "only alice's own key");
        let g1 = keys.generation();
        assert!(keys.remove("alice", "k1"));
        assert!(keys.find(&[1; 32]).is_none());
        assert!(keys.generation() > g1);
    }

    #[test]
    fn replacing_keeps_the_last_use_of_keys_that_stay() {
        let keys = RuntimeKeys::default();
        keys.insert(key("k1", "alice", 1));
        keys.find(&[1; 32])
            .expect("k1")
            .last_used_s
            .store(42, Ordering::Relaxed);
        assert!(keys.replace(
            vec![key("k1", "alice", 1), key("k2", "alice", 2)],
            keys.generation()
        ));
        assert_eq!(
            keys.find(&[1; 32])
                .expect("k1")
                .last_used_s
                .load(Ordering::Relaxed),
            42
        );
        assert_eq!(keys.of_consumer("alice").len(), 2);
        assert!(key("k", "a", 3).expired(100) && !key("k", "a", 3).expired(99));
    }
}
