//! `GET /admin/consumers/{id}`: a consumer's tier and where it comes from, and its
//! budget: cluster-wide (read from Redis now) and this instance's share of it.

use super::Admin;
use crate::vocab::ids::{Id, TierId};
use crate::vocab::limit_key::LimitKey;
use serde_json::{json, Value};
use std::sync::Arc;

impl Admin {
    /// This period's use of every route quota, as this instance knows it (with Redis,
    /// the cluster's total as of the last sync plus what it admitted since).
    fn quota_usage(&self, consumer: &str, tier: Option<TierId>) -> Vec<Value> {
        let consumer: Arc<str> = Arc::from(consumer);
        let now_s = crate::vocab::clock::unix_now().as_secs();
        self.limiter
            .quotas()
            .filter_map(|(route, (name, quota))| {
                let limit = (*tier?.of(&quota.by_tier)?)?;
                let period = quota.per.index(now_s);
                let used = self
                    .limiter
                    .quota_counts
                    .used(route, &consumer, period)
                    .unwrap_or(0);
                Some(json!({
                    "route": &**name,
                    "per": quota.per.as_str(),
                    "used": used,
                    "limit": limit,
                    "resets_at": quota.per.end_s(period),
                }))
            })
            .collect()
    }

    /// `None`: nothing here or in Redis knows the consumer.
    pub(super) async fn consumer_view(&self, consumer: &str) -> Option<Value> {
        let key = LimitKey::Consumer(Arc::from(consumer));
        let local = self.limiter.local.view(&key);
        let tiers = self.limiter.tiers();
        let tier: Option<(TierId, &str)> = if let Some(t) = self.overrides.get(consumer) {
            Some((t, "override"))
        } else if let Some(t) = self.consumers.key_tiers.get(consumer) {
            Some((*t, "key"))
        } else if let Some(key) = self.consumers.runtime_keys.of_consumer(consumer).first() {
            key.tier().or(self.consumers.default_tier).map(|t| (t, "key"))
        } else {
            // A token names its tier per request; the bucket shows which one was seen.
            local
                .and_then(|l| tiers.iter().position(|t| t.bucket == l.bucket).map(TierId))
                .map(|t| (t, "token"))
        };
        let (cluster, cluster_error) = match &self.budgets {
            None => (None, None),
            Some(store) => match store.read(&key).await {
                Ok(budget) => (budget, None),
                Err(e) => (None, Some(e)),
            },
        };
        let keys = self.consumers.runtime_keys.of_consumer(consumer);
        if tier.is_none() && local.is_none() && cluster.is_none() && keys.is_empty() {
            return None;
        }
        let bucket = tier.and_then(|(t, _)| t.of(tiers)).map(|t| t.bucket);
        let cluster_json = cluster.map(|c| {
            let leased: f64 = c.instances.values().map(|(lease, _)| lease).sum();
            // With regions, this region's pool refills at its share of the tier.
            let share = c.world.as_ref().map_or(1.0, |w| w.share);
            let remaining = bucket.map_or(c.pool, |b| {
                let now_ms = crate::vocab::clock::unix_now().as_millis() as u64;
                let refill = share * b.rate * now_ms.saturating_sub(c.at_ms) as f64 / 1000.0;
                (c.pool + refill).min(share * b.burst - leased)
            }) + leased;
            let world = c.world.as_ref().map(|w| {
                json!({
                    "this_region_share": w.share,
                    "remaining": w.remaining.max(0.0).floor(),
                    "regions": w.regions.iter().map(|(name, (spent, demand, seen_ms))| (name.clone(), json!({
                        "spent": spent.floor(),
                        "demand_per_s": demand,
                        "heard_ms_ago": c.at_ms.saturating_sub(*seen_ms),
                    }))).collect::<serde_json::Map<_, _>>(),
                })
            });
            json!({
                "remaining": remaining.max(0.0).floor(),
                "used_this_minute": c.used_this_minute,
                "used_last_minute": c.used_last_minute,
                "active_instances": c.instances.len(),
                "world": world,
            })
        });
        Some(json!({
            "consumer": consumer,
            "tier": tier.map(|(t, _)| self.limiter.tier_name(t)),
            "tier_source": tier.map(|(_, source)| source),
            "rate": bucket.map(|b| b.rate),
            "burst": bucket.map(|b| b.burst),
            "cluster": cluster_json,
            "cluster_error": cluster_error,
            "keys": keys.iter().map(|k| self.key_json(k)).collect::<Vec<_>>(),
            "quotas": self.quota_usage(consumer, tier.map(|(t, _)| t)),
            "this_instance": local.map(|l| json!({
                "share": l.share,
                "tokens": l.tokens.max(0.0).floor(),
            })),
        }))
    }
}
