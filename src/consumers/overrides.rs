//! Runtime tier overrides: a consumer's tier changed after authentication,
//! through the admin API, and kept where runtime consumers are kept.

use crate::vocab::ids::TierId;
use dashmap::DashMap;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

/// Shards of the map: workers reading overrides rarely meet on one lock.
const SHARDS: usize = 64;

/// Runtime tier overrides (`PUT /admin/consumers/{id}/tier`), read on every
/// authenticated request (a read lock of one shard); a write changes one entry.
/// With Redis the admin API writes there first and the sync follows the cluster's changes.
pub struct TierOverrides {
    map: DashMap<Arc<str>, TierId, foldhash::fast::RandomState>,
    /// The consumers with an override, in order, for listings that start after a
    /// name; held through a whole write (never by the request path), so it names
    /// exactly the map's consumers.
    names: Mutex<BTreeSet<Arc<str>>>,
}

impl Default for TierOverrides {
    fn default() -> Self {
        TierOverrides {
            map: DashMap::with_hasher_and_shard_amount(Default::default(), SHARDS),
            names: Mutex::default(),
        }
    }
}

impl TierOverrides {
    pub fn get(&self, consumer: &str) -> Option<TierId> {
        self.map.get(consumer).map(|t| *t)
    }

    fn names(&self) -> MutexGuard<'_, BTreeSet<Arc<str>>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set(&self, consumer: &str, tier: TierId) {
        let mut names = self.names();
        let consumer: Arc<str> = Arc::from(consumer);
        self.map.insert(consumer.clone(), tier);
        names.insert(consumer);
    }

    /// Drops `consumer`'s override; false when there was none.
    pub fn remove(&self, consumer: &str) -> bool {
        let mut names = self.names();
        names.remove(consumer);
        self.map.remove(consumer).is_some()
    }

    /// Up to `limit` consumers with an override, in order, after `after` (from the
    /// first when `None`).
    pub fn names_after(&self, after: Option<&str>, limit: usize) -> Vec<Arc<str>> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.names()
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<(Arc<str>, TierId)> {
        self.map.iter().map(|e| (e.key().clone(), *e.value())).collect()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adopts the cluster's overrides (what Redis holds), changing only what
    /// differs: a consumer whose override stays never reads without it meanwhile.
    /// `skip` names consumers written here since the map was read, left alone.
    pub fn replace(&self, from_redis: HashMap<Arc<str>, TierId>, skip: impl Fn(&str) -> bool) {
        let mut names = self.names();
        let kept = |consumer: &str| from_redis.contains_key(consumer) || skip(consumer);
        self.map.retain(|consumer, _| kept(consumer));
        names.retain(|consumer| kept(consumer));
        for (consumer, tier) in from_redis {
            if !skip(&consumer) && self.get(&consumer) != Some(tier) {
                self.map.insert(consumer.clone(), tier);
                names.insert(consumer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_keeps_what_stays_and_drops_what_went() {
        let overrides = TierOverrides::default();
        overrides.set("alice", TierId(1));
        overrides.set("bob", TierId(1));
        overrides.set("dan", TierId(1)); // set here since the map was read
        overrides.replace(
            HashMap::from([(Arc::from("alice"), TierId(1)), (Arc::from("carol"), TierId(2))]),
            |consumer| consumer == "dan",
        );
        assert_eq!(overrides.get("dan"), Some(TierId(1)));
        assert!(overrides.remove("dan"));
        assert_eq!(overrides.get("alice"), Some(TierId(1)));
        assert_eq!(overrides.get("bob"), None);
        assert_eq!(overrides.get("carol"), Some(TierId(2)));
        assert_eq!(
            overrides.names_after(None, 10),
            [Arc::from("alice"), Arc::from("carol")]
        );
        assert!(overrides.remove("carol") && !overrides.remove("carol"));
        assert_eq!(overrides.len(), 1);
        overrides.set("bob", TierId(0));
        assert_eq!(overrides.names_after(Some("alice"), 10), [Arc::from("bob")]);
        assert_eq!(overrides.names_after(None, 1), [Arc::from("alice")]);
    }
}
