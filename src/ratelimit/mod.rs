//! Rate limiting, run in `request_filter` after auth: the caller's token bucket
//! (local), then the route's global window. Both are decided in memory; Redis is
//! only ever touched by the background sync (services::redis_sync).

pub mod global;
pub mod headers;
pub mod local;

use crate::auth::TierId;
use crate::config::schema::OnUnavailable;
use arc_swap::ArcSwap;
use global::{GlobalDecision, GlobalWindow};
use ipnet::IpNet;
use local::{BucketParams, Decision, LimitKey, LocalLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Buckets kept at most (consumers and anonymous addresses together).
const MAX_BUCKETS: usize = 1 << 20;

/// Which bucket size applied: a tier, or the anonymous policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Tier(TierId),
    Anonymous,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Local,
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

/// Everything the response headers need.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub refused: Option<Scope>,
    pub local: Option<(Policy, BucketParams, Decision)>,
    pub global: Option<GlobalDecision>,
    pub retry_after_s: u64,
}

/// Health of the Redis sync, read by the hot path and by metrics.
#[derive(Default)]
pub struct SyncState {
    pub degraded: AtomicBool,
    /// Instances seen alive at the last good sync (this one included).
    pub instances: AtomicU64,
    pub last_sync_ms: AtomicU64,
    pub errors: AtomicU64,
}

/// Runtime tier overrides (`PUT /admin/consumers/{id}/tier`), read-mostly.
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
        self.unpushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((consumer.to_string(), tier));
    }

    pub fn take_unpushed(&self) -> Vec<(String, TierId)> {
        std::mem::take(&mut *self.unpushed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn restore_unpushed(&self, items: Vec<(String, TierId)>) {
        let mut unpushed = self.unpushed.lock().unwrap_or_else(|e| e.into_inner());
        let newer = std::mem::replace(&mut *unpushed, items);
        unpushed.extend(newer);
    }

    /// Adopt the cluster's overrides (what Redis holds), keeping any not yet pushed.
    pub fn replace(&self, from_redis: HashMap<Arc<str>, TierId>) {
        let mut merged = from_redis;
        for (consumer, tier) in self.unpushed.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            merged.insert(Arc::from(consumer.as_str()), *tier);
        }
        self.map.store(Arc::new(merged));
    }
}

pub struct RateLimiter {
    local: LocalLimiter,
    tiers: Vec<(String, BucketParams)>,
    anonymous: Option<BucketParams>,
    trusted_proxies: Vec<IpNet>,
    /// Indexed like the route table; `None` for routes without a global limit.
    globals: Vec<Option<Arc<GlobalWindow>>>,
    /// `None` in single-instance mode (no Redis).
    on_unavailable: Option<OnUnavailable>,
    pub sync: Arc<SyncState>,
    pub overrides: Arc<TierOverrides>,
}

impl RateLimiter {
    pub fn new(
        tiers: Vec<(String, BucketParams)>,
        anonymous: Option<BucketParams>,
        trusted_proxies: Vec<IpNet>,
        globals: Vec<Option<Arc<GlobalWindow>>>,
        on_unavailable: Option<OnUnavailable>,
    ) -> Self {
        RateLimiter {
            local: LocalLimiter::new(MAX_BUCKETS),
            tiers,
            anonymous,
            trusted_proxies,
            globals,
            on_unavailable,
            sync: Arc::new(SyncState::default()),
            overrides: Arc::new(TierOverrides::default()),
        }
    }

    pub fn tier_name(&self, tier: TierId) -> &str {
        self.tiers.get(tier).map_or("unknown", |(n, _)| n.as_str())
    }

    pub fn policy_name(&self, policy: Policy) -> &str {
        match policy {
            Policy::Tier(t) => self.tier_name(t),
            Policy::Anonymous => "anonymous",
        }
    }

    pub fn globals(&self) -> impl Iterator<Item = &Arc<GlobalWindow>> {
        self.globals.iter().flatten()
    }

    /// The client address to key an anonymous caller by: the peer, unless the peer
    /// is a trusted proxy, in which case the right-most untrusted X-Forwarded-For hop.
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = forwarded_for
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Local bucket, then the route's global window. A request refused by its
    /// bucket takes nothing from the window.
    pub fn check(
        &self,
        route: usize,
        caller: Option<(&Arc<str>, TierId)>,
        client_ip: IpAddr,
        cost: u32,
        now_ns: u64,
    ) -> Outcome {
        let (key, policy, params) = match caller {
            Some((consumer, tier)) => (
                LimitKey::Consumer(consumer.clone()),
                Policy::Tier(tier),
                self.tiers.get(tier).map(|(_, p)| *p),
            ),
            None => (LimitKey::Ip(client_ip), Policy::Anonymous, self.anonymous),
        };
        let local = params.map(|p| (policy, p, self.local.take(&key, p, f64::from(cost), now_ns)));
        if let Some((_, _, d)) = local.filter(|(_, _, d)| !d.allowed) {
            return Outcome {
                refused: Some(Scope::Local),
                local,
                global: None,
                retry_after_s: d.retry_after_s,
            };
        }
        let global = self
            .globals
            .get(route)
            .and_then(Option::as_ref)
            .and_then(|window| {
                let now_ms = now_ns / 1_000_000;
                let degraded = self.sync.degraded.load(Ordering::Relaxed);
                let instances = self.sync.instances.load(Ordering::Relaxed).max(1);
                let cost = u64::from(cost);
                match (self.on_unavailable, degraded) {
                    (None, _) => Some(window.try_take(cost, now_ms, 1, true, 1)),
                    (Some(_), false) => Some(window.try_take(cost, now_ms, 1, true, instances)),
                    (Some(OnUnavailable::Allow), true) => None,
                    (Some(OnUnavailable::Deny), true) => Some(GlobalDecision {
                        allowed: false,
                        limit: window.limit,
                        remaining: 0,
                        reset_s: 1,
                        window_s: window.window_ms.div_ceil(1000),
                    }),
                    (Some(OnUnavailable::LocalShare), true) => {
                        Some(window.try_take(cost, now_ms, instances, false, 1))
                    }
                }
            });
        let refused = global.filter(|g| !g.allowed).map(|_| Scope::Global);
        Outcome {
            refused,
            local,
            global,
            retry_after_s: global.filter(|g| !g.allowed).map_or(0, |g| g.reset_s.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(trusted: &[&str]) -> RateLimiter {
        RateLimiter::new(
            vec![(
                "free".into(),
                BucketParams {
                    rate: 1.0,
                    burst: 2.0,
                },
            )],
            Some(BucketParams {
                rate: 1.0,
                burst: 1.0,
            }),
            trusted.iter().map(|t| t.parse().expect("cidr")).collect(),
            vec![Some(Arc::new(GlobalWindow::new("r".into(), 3, 1000))), None],
            None,
        )
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let l = limiter(&["10.0.0.0/8", "127.0.0.1/32"]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // An untrusted peer's header is ignored: it cannot pick its own key.
        assert_eq!(
            l.client_ip(ip("203.0.113.9"), ["1.2.3.4"].into_iter()),
            ip("203.0.113.9")
        );
        // From a trusted proxy: the right-most untrusted hop.
        assert_eq!(
            l.client_ip(ip("10.0.0.5"), ["6.6.6.6, 198.51.100.7, 10.0.0.9"].into_iter()),
            ip("198.51.100.7")
        );
        assert_eq!(
            l.client_ip(ip("127.0.0.1"), ["10.1.1.1"].into_iter()),
            ip("10.1.1.1")
        );
        assert_eq!(
            l.client_ip(ip("::ffff:127.0.0.1"), std::iter::empty()),
            ip("::ffff:127.0.0.1")
        );
    }

    #[test]
    fn a_locally_refused_request_takes_nothing_from_the_global_window() {
        let l = limiter(&[]);
        let alice: Arc<str> = Arc::from("alice");
        let ip: IpAddr = [192, 0, 2, 1].into();
        assert!(l.check(0, Some((&alice, 0)), ip, 1, 0).refused.is_none());
        assert!(l.check(0, Some((&alice, 0)), ip, 1, 0).refused.is_none());
        let o = l.check(0, Some((&alice, 0)), ip, 1, 0);
        assert_eq!(o.refused, Some(Scope::Local));
        // The window (limit 3) still has room for one more from someone else.
        assert!(l.check(0, None, ip, 1, 0).refused.is_none());
        let bob: Arc<str> = Arc::from("bob");
        assert_eq!(l.check(0, Some((&bob, 0)), ip, 1, 0).refused, Some(Scope::Global));
    }
}
