//! The request path's map from a key's digest to its record: shards of hash
//! tables, each behind its own lock, so a lookup read-locks one shard of many and
//! a write changes one entry of one shard. A digest is a SHA-256 of a random
//! secret: its own bytes are the hash, and a table holds one pointer per key.

use super::keys::RuntimeKey;
use hashbrown::hash_table::{Entry, HashTable};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Workers looking keys up rarely meet on one shard's lock.
const SHARDS: usize = 64;

pub struct ByDigest {
    shards: Box<[RwLock<HashTable<Arc<RuntimeKey>>>]>,
}

impl Default for ByDigest {
    fn default() -> Self {
        ByDigest {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

fn hash(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

fn hash_of(key: &Arc<RuntimeKey>) -> u64 {
    hash(&key.digest)
}

impl ByDigest {
    /// Bytes the hash does not use pick the shard.
    fn shard(&self, digest: &[u8; 32]) -> &RwLock<HashTable<Arc<RuntimeKey>>> {
        &self.shards[usize::from(digest[8]) % SHARDS]
    }

    fn read(&self, digest: &[u8; 32]) -> RwLockReadGuard<'_, HashTable<Arc<RuntimeKey>>> {
        self.shard(digest).read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, digest: &[u8; 32]) -> RwLockWriteGuard<'_, HashTable<Arc<RuntimeKey>>> {
        self.shard(digest).write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<RuntimeKey>> {
        self.read(digest)
            .find(hash(digest), |k| k.digest == *digest)
            .cloned()
    }

    /// Puts `key` under its digest; returns the record it replaced.
    pub fn insert(&self, key: Arc<RuntimeKey>) -> Option<Arc<RuntimeKey>> {
        let digest = key.digest;
        match self
            .write(&digest)
            .entry(hash(&digest), |k| k.digest == digest, hash_of)
        {
            Entry::Occupied(mut held) => Some(std::mem::replace(held.get_mut(), key)),
            Entry::Vacant(free) => {
                free.insert(key);
                None
            }
        }
    }

    /// Removes `key` if it is the record held under its digest.
    pub fn remove(&self, key: &Arc<RuntimeKey>) -> bool {
        let mut shard = self.write(&key.digest);
        match shard.find_entry(hash(&key.digest), |k| Arc::ptr_eq(k, key)) {
            Ok(held) => {
                held.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Room for `more` keys beyond those held, spread evenly over the shards: a
    /// load that knows its size grows each table once, not by doubling.
    pub fn reserve(&self, more: usize) {
        let each = more.div_ceil(SHARDS) + more.div_ceil(SHARDS * 16);
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .reserve(each, hash_of);
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(digest: [u8; 32], id: &str) -> Arc<RuntimeKey> {
        Arc::new(RuntimeKey::new(id.into(), Arc::from("c"), digest, None, 0, None))
    }

    #[test]
    fn insert_replace_and_remove_only_the_record_held() {
        let map = ByDigest::default();
        let mut other_shard = [1; 32];
        other_shard[8] = 2;
        let (a, b, c) = (key([1; 32], "a"), key([1; 32], "b"), key(other_shard, "c"));
        assert!(map.insert(a.clone()).is_none() && map.insert(c.clone()).is_none());
        assert!(map.insert(b.clone()).is_some_and(|old| Arc::ptr_eq(&old, &a)));
        assert!(!map.remove(&a), "no longer the one held");
        assert_eq!(&*map.get(&[1; 32]).expect("b").key_id, "b");
        assert!(map.remove(&b) && map.get(&[1; 32]).is_none());
        assert_eq!((map.len(), &*map.get(&other_shard).expect("c").key_id), (1, "c"));
    }
}
