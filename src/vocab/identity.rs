//! Who is calling and in which tier: what authentication produces and what
//! limits, headers and logs read. Runtime tier overrides change the tier of a
//! consumer after authentication, so they live with the identity too.

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::Arc;

/// A tier's index in the config's tier list.
pub type TierId = usize;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Identity {
    pub consumer: Arc<str>,
    /// The consumer id as the `X-Consumer-Id` value, built with the identity.
    pub consumer_header: HeaderValue,
    pub tier: TierId,
    /// `claims_to_headers` values for the upstream.
    pub headers: Arc<[(HeaderName, HeaderValue)]>,
}

impl Identity {
    /// Consumer ids are checked (`consumer_id::check`) where they are read (config,
    /// admin API, token claims); any other byte is sent as it is, as HTTP allows.
    pub fn new(consumer: Arc<str>, tier: TierId, headers: Arc<[(HeaderName, HeaderValue)]>) -> Self {
        let consumer_header =
            HeaderValue::from_bytes(consumer.as_bytes()).unwrap_or(HeaderValue::from_static("invalid"));
        Identity {
            consumer,
            consumer_header,
            tier,
            headers,
        }
    }
}

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
