//! Runtime tier overrides: a consumer's tier changed after authentication,
//! through the admin API, and kept where runtime consumers are kept.

use crate::vocab::ids::TierId;
use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::Arc;

/// Shards of the map: workers reading overrides rarely meet on one lock.
const SHARDS: usize = 64;

/// Runtime tier overrides (`PUT /admin/consumers/{id}/tier`), read on every
/// authenticated request (a read lock of one shard); a write changes one entry.
/// With Redis the admin API writes there first and the sync follows the cluster's changes.
pub struct TierOverrides {
    map: DashMap<Arc<str>, TierId, foldhash::fast::RandomState>,
}

impl Default for TierOverrides {
    fn default() -> Self {
        TierOverrides {
            map: DashMap::with_hasher_and_shard_amount(Default::default(), SHARDS),
        }
    }
}

impl TierOverrides {
    pub fn get(&self, consumer: &str) -> Option<TierId> {
        self.map.get(consumer).map(|t| *t)
    }

    pub fn set(&self, consumer: &str, tier: TierId) {
        self.map.insert(Arc::from(consumer), tier);
    }

    /// Drops `consumer`'s override; false when there was none.
    pub fn remove(&self, consumer: &str) -> bool {
        self.map.remove(consumer).is_some()
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
        self.map
            .retain(|consumer, _| from_redis.contains_key(consumer) || skip(consumer));
        for (consumer, tier) in from_redis {
            if !skip(&consumer) && self.get(&consumer) != Some(tier) {
                self.map.insert(consumer, tier);
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
        assert!(overrides.remove("carol") && !overrides.remove("carol"));
        assert_eq!(overrides.len(), 1);
    }
}
