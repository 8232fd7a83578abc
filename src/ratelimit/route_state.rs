//! What the limiter keeps for one route, by the route's id: its name (part of
//! the limit and Redis keys), its own bucket per tier, its global window and its
//! quota, built from the route's validated limits.

use super::global::GlobalWindow;
use crate::config::{Bucket, GlobalScope, Quota, RouteLimits};
use std::sync::Arc;

pub struct RouteState {
    pub name: Arc<str>,
    /// The route's own bucket per tier id (`routes[].limits`).
    pub tier_buckets: Option<Vec<Option<Bucket>>>,
    pub global: Option<Arc<GlobalWindow>>,
    pub quota: Option<Quota>,
}

impl RouteState {
    /// `regions`: how many there are, for a window counted worldwide.
    pub fn new(name: &str, limits: &RouteLimits, regions: u64) -> Self {
        RouteState {
            name: Arc::from(name),
            tier_buckets: limits.tier_limits.clone(),
            global: limits.global_limit.map(|g| {
                Arc::new(
                    GlobalWindow::new(name.to_string(), g.rate, g.per.as_millis() as u64)
                        .worldwide(if g.scope == GlobalScope::World { regions } else { 1 }),
                )
            }),
            quota: limits.quota.clone(),
        }
    }
}
