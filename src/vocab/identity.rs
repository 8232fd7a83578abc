//! Who is calling and in which tier: what authentication produces and what
//! limits, headers and logs read. Runtime tier overrides change the tier of a
//! consumer after authentication, so they live with the identity too.

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A tier's index in the config's tier list.
pub type TierId = usize;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Identity {
    pub consumer: Arc<str>,
    pub tier: TierId,
    /// `claims_to_headers` values for the upstream.
    pub headers: Arc<[(HeaderName, HeaderValue)]>,
}

/// Runtime tier overrides (`PUT /admin/consumers/{id}/tier`), read-mostly: the
/// request path only loads a snapshot.
#[derive(Default)]
pub struct TierOverrides {
    map: ArcSwap<HashMap<Arc<str>, TierId>>,
    /// Set here but not yet written to Redis.
    unpushed: Mutex<Vec<(String, TierId)>>,
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
        self.lock_unpushed().push((consumer.to_string(), tier));
    }

    pub fn take_unpushed(&self) -> Vec<(String, TierId)> {
        std::mem::take(&mut *self.lock_unpushed())
    }

    pub fn restore_unpushed(&self, items: Vec<(String, TierId)>) {
        let mut unpushed = self.lock_unpushed();
        let newer = std::mem::replace(&mut *unpushed, items);
        unpushed.extend(newer);
    }

    /// Adopt the cluster's overrides (what Redis holds), keeping any not yet pushed.
    pub fn replace(&self, from_redis: HashMap<Arc<str>, TierId>) {
        let mut merged = from_redis;
        for (consumer, tier) in self.lock_unpushed().iter() {
            merged.insert(Arc::from(consumer.as_str()), *tier);
        }
        self.map.store(Arc::new(merged));
    }

    fn lock_unpushed(&self) -> std::sync::MutexGuard<'_, Vec<(String, TierId)>> {
        self.unpushed.lock().unwrap_or_else(|e| e.into_inner())
    }
}
