//! Runtime tier overrides: a consumer's tier changed after authentication,
//! through the admin API, and kept where runtime consumers are kept.

use crate::vocab::ids::TierId;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;

/// Runtime tier overrides (`PUT /admin/consumers/{id}/tier`), read-mostly: the
/// request path only loads a snapshot. With Redis the admin API writes there first
/// and the sync adopts the cluster's map.
#[derive(Default)]
pub struct TierOverrides {
    map: ArcSwap<HashMap<Arc<str>, TierId>>,
}

impl TierOverrides {
    pub fn get(&self, consumer: &str) -> Option<TierId> {
        self.map.load().get(consumer).copied()
    }

    pub fn set(&self, consumer: &str, tier: TierId) {
        self.map.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(Arc::from(consumer), tier);
            m
        });
    }

    /// Drops `consumer`'s override; false when there was none.
    pub fn remove(&self, consumer: &str) -> bool {
        let mut found = false;
        self.map.rcu(|m| {
            let mut m = HashMap::clone(m);
            found = m.remove(consumer).is_some();
            m
        });
        found
    }

    pub fn all(&self) -> Vec<(Arc<str>, TierId)> {
        self.map.load().iter().map(|(c, t)| (c.clone(), *t)).collect()
    }

    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adopts the cluster's overrides (what Redis holds).
    pub fn replace(&self, from_redis: HashMap<Arc<str>, TierId>) {
        self.map.store(Arc::new(from_redis));
    }
}
