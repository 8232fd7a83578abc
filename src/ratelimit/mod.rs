//! Rate limiting, run in `request_filter` after auth: the caller's token bucket
//! (one budget across the cluster when Redis is configured), then the route's own
//! bucket for the caller's tier (`routes[].limits`, shared the same way), then the
//! route's global window, then the route's quota (quota.rs), committed together or
//! not at all. All are decided in memory; Redis is only ever touched by the
//! background sync (services::redis_sync).

pub mod global;
pub mod headers;
pub mod local;
pub mod quota;
pub mod report_schedule;
pub mod route_state;

use crate::config::{Bucket, Config, OnUnavailable, Quota, Route, Tier};
use crate::vocab::ids::{ById, Id, RouteId, TierId};
use crate::vocab::limit_key::LimitKey;
use crate::vocab::limit_scope::Scope;
use global::{ClusterView, GlobalDecision, GlobalWindow};
use local::{Decision, LocalLimiter, Supply};
use quota::{QuotaCounter, QuotaDecision};
use route_state::RouteState;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Buckets kept at most (consumers and anonymous addresses together): room for
/// a few million active callers. The table grows with the callers it holds, so
/// the bound costs nothing until a flood of distinct keys reaches it.
const MAX_BUCKETS: usize = 1 << 22;

/// Which bucket size applied: a tier, or the anonymous policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Tier(TierId),
    Anonymous,
    /// A route's own limit for the caller's tier.
    Route(RouteId),
}

/// The caller's bucket decision and the policy it was made under.
#[derive(Clone, Copy, Debug)]
pub struct LocalOutcome {
    pub policy: Policy,
    pub bucket: Bucket,
    pub decision: Decision,
}

/// Everything the response headers need, and who a refusal limited.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub refused: Option<Scope>,
    /// With `refused`: the key that was limited (the caller's, or its per-route
    /// key for a route's own limit). `None` while admitted, so admitting costs nothing.
    pub limited_key: Option<LimitKey>,
    pub local: Option<LocalOutcome>,
    /// The route's own limit for the caller's tier, when it has one.
    pub route: Option<LocalOutcome>,
    pub global: Option<GlobalDecision>,
    pub quota: Option<QuotaDecision>,
    pub retry_after_s: u64,
}

impl Outcome {
    /// Whether any policy applied to the request (and its answer carries headers).
    pub fn applied(&self) -> bool {
        self.local.is_some() || self.route.is_some() || self.global.is_some() || self.quota.is_some()
    }
}

/// Health of the Redis sync, read by the hot path and by metrics.
#[derive(Default)]
pub struct SyncState {
    pub degraded: AtomicBool,
    /// Instances seen alive at the last good sync (this one included).
    pub instances: AtomicU64,
    pub last_sync_ms: AtomicU64,
    pub errors: AtomicU64,
    /// Bucket keys settled by the last good sync, and those left waiting for the next.
    pub keys_synced: AtomicU64,
    /// The sync's interval: how long a key new to this instance waits for its first lease.
    pub interval_ms: AtomicU64,
    pub keys_waiting: AtomicU64,
}

pub struct RateLimiter {
    /// Per-caller buckets; the Redis sync reports and settles them.
    pub local: LocalLimiter,
    tiers: Vec<Tier>,
    anonymous: Option<Bucket>,
    /// The response header values of each tier's bucket, then the anonymous one's.
    policy_values: Vec<Option<headers::PolicyValues>>,
    /// Small numbers as header values, built at load.
    numbers: headers::Numbers,
    routes: ById<RouteId, RouteState>,
    /// `None` in single-instance mode (no Redis).
    on_unavailable: Option<OnUnavailable>,
    pub quota_counts: QuotaCounter,
    pub sync: Arc<SyncState>,
}

impl RateLimiter {
    /// The limiter of a validated config: its tiers, anonymous bucket and each
    /// route's own limits, by route id (`routes` in the config's order).
    pub fn from_config<'r>(config: &Config, routes: impl Iterator<Item = &'r Route>) -> Self {
        let regions = config
            .redis
            .as_ref()
            .and_then(|r| r.region.as_ref())
            .map_or(1, |r| r.peers.len() as u64 + 1);
        RateLimiter::new(
            config.tiers.clone(),
            config.anonymous,
            routes
                .map(|r| RouteState::new(&r.name, &r.limits, regions))
                .collect(),
            config.redis.as_ref().map(|r| r.on_unavailable),
        )
    }

    pub fn new(
        tiers: Vec<Tier>,
        anonymous: Option<Bucket>,
        routes: ById<RouteId, RouteState>,
        on_unavailable: Option<OnUnavailable>,
    ) -> Self {
        let policy_values = tiers
            .iter()
            .map(|t| headers::PolicyValues::new(&t.name, t.bucket))
            .chain([anonymous.and_then(|b| headers::PolicyValues::new("anonymous", b))])
            .collect();
        RateLimiter {
            local: LocalLimiter::new(MAX_BUCKETS),
            policy_values,
            numbers: headers::Numbers::new(),
            tiers,
            anonymous,
            routes,
            on_unavailable,
            quota_counts: QuotaCounter::default(),
            sync: Arc::new(SyncState::default()),
        }
    }

    /// The route's name (part of the Redis key) and quota, if it has one.
    pub fn quota(&self, route: RouteId) -> Option<(&Arc<str>, &Quota)> {
        let state = self.routes.get(route)?;
        Some((&state.name, state.quota.as_ref()?))
    }

    /// Every route with a quota, in the config's order.
    pub fn quotas(&self) -> impl Iterator<Item = (RouteId, (&Arc<str>, &Quota))> {
        self.routes
            .iter_enumerated()
            .filter_map(|(id, r)| Some((id, (&r.name, r.quota.as_ref()?))))
    }

    pub fn route_name(&self, route: RouteId) -> &str {
        self.routes.get(route).map_or("route", |r| &r.name)
    }

    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    pub fn tier_name(&self, tier: TierId) -> &str {
        tier.of(&self.tiers).map_or("unknown", |t| t.name.as_str())
    }

    pub fn policy_name(&self, policy: Policy) -> &str {
        match policy {
            Policy::Tier(t) => self.tier_name(t),
            Policy::Anonymous => "anonymous",
            Policy::Route(route) => self.route_name(route),
        }
    }

    /// The prebuilt header values of a tier's or the anonymous bucket.
    fn policy_values(&self, policy: Policy) -> Option<&headers::PolicyValues> {
        let i = match policy {
            Policy::Tier(t) => t.position(),
            Policy::Anonymous => self.tiers.len(),
            Policy::Route(_) => return None,
        };
        self.policy_values.get(i)?.as_ref()
    }

    pub fn globals(&self) -> impl Iterator<Item = &Arc<GlobalWindow>> {
        self.routes.iter().filter_map(|r| r.global.as_ref())
    }

    /// The caller's bucket, the route's bucket for its tier, the route's global
    /// window, then the route's quota, as one step: a request refused by any of
    /// them takes nothing from the others (what the earlier ones took is given back).
    pub fn check(
        &self,
        route: RouteId,
        caller: Option<(&Arc<str>, TierId)>,
        client_ip: IpAddr,
        cost: u32,
        now_ns: u64,
    ) -> Outcome {
        let (key, policy, bucket) = match caller {
            Some((consumer, tier)) => (
                LimitKey::Consumer(consumer.clone()),
                Policy::Tier(tier),
                tier.of(&self.tiers).map(|t| t.bucket),
            ),
            None => (LimitKey::anonymous(client_ip), Policy::Anonymous, self.anonymous),
        };
        let mut outcome = Outcome {
            refused: None,
            limited_key: None,
            local: bucket.map(|bucket| LocalOutcome {
                policy,
                bucket,
                decision: self.take(&key, bucket, cost, now_ns),
            }),
            route: None,
            global: None,
            quota: None,
            retry_after_s: 0,
        };
        if let Some(refused) = outcome.local.filter(|l| !l.decision.allowed) {
            outcome.refused = Some(Scope::Local);
            outcome.limited_key = Some(key);
            outcome.retry_after_s = refused.decision.retry_after_s;
            return outcome;
        }
        let route_limit = self.route_limit(route, caller, cost, now_ns);
        outcome.route = route_limit.as_ref().map(|(taken, _)| *taken);
        if let Some((refused, route_key)) = route_limit.filter(|(l, _)| !l.decision.allowed) {
            outcome.refused = Some(Scope::Route);
            outcome.limited_key = Some(route_key);
            outcome.retry_after_s = refused.decision.retry_after_s;
            self.give_back_refused(route, caller, client_ip, cost, &mut outcome);
            return outcome;
        }
        outcome.global = self
            .routes
            .get(route)
            .and_then(|r| r.global.as_ref())
            .and_then(|window| self.check_global(window, u64::from(cost), now_ns / 1_000_000));
        if let Some(refused) = outcome.global.filter(|g| !g.allowed) {
            outcome.refused = Some(Scope::Global);
            outcome.limited_key = Some(key);
            outcome.retry_after_s = refused.reset_s.max(1);
            self.give_back_refused(route, caller, client_ip, cost, &mut outcome);
            return outcome;
        }
        outcome.quota = caller.and_then(|(consumer, tier)| {
            let (_, quota) = self.quota(route)?;
            self.quota_counts.take(
                route,
                consumer,
                quota,
                tier,
                u64::from(cost),
                now_ns / 1_000_000_000,
            )
        });
        if let Some(refused) = outcome.quota.filter(|q| !q.allowed) {
            outcome.refused = Some(Scope::Quota);
            outcome.limited_key = Some(key);
            outcome.retry_after_s = refused.reset_s;
            self.give_back_refused(route, caller, client_ip, cost, &mut outcome);
        }
        outcome
    }

    /// A refusal by a later limit: what the earlier ones took goes back, and the
    /// headers show them as they are again.
    fn give_back_refused(
        &self,
        route: RouteId,
        caller: Option<(&Arc<str>, TierId)>,
        client_ip: IpAddr,
        cost: u32,
        outcome: &mut Outcome,
    ) {
        self.give_back(route, caller, client_ip, cost, outcome);
        for taken in [&mut outcome.local, &mut outcome.route].into_iter().flatten() {
            if taken.decision.allowed {
                taken.decision.remaining += u64::from(cost);
            }
        }
        if let Some(window) = outcome.global.as_mut().filter(|g| g.allowed) {
            window.remaining += u64::from(cost);
        }
    }

    /// Gives back what `outcome`'s admitting limits took, for a request refused
    /// after them (by a later limit, or by the gateway: no healthy target).
    pub fn give_back(
        &self,
        route: RouteId,
        caller: Option<(&Arc<str>, TierId)>,
        client_ip: IpAddr,
        cost: u32,
        outcome: &Outcome,
    ) {
        let admitted = |l: &Option<LocalOutcome>| l.is_some_and(|l| l.decision.allowed);
        if admitted(&outcome.local) {
            let key = match caller {
                Some((consumer, _)) => LimitKey::Consumer(consumer.clone()),
                None => LimitKey::anonymous(client_ip),
            };
            self.local.give_back(&key, f64::from(cost));
        }
        let state = self.routes.get(route);
        if let (true, Some((consumer, _)), Some(state)) = (admitted(&outcome.route), caller, state) {
            self.local.give_back(
                &LimitKey::Route(state.name.clone(), consumer.clone()),
                f64::from(cost),
            );
        }
        if let (Some(g), Some(window)) = (
            outcome.global.filter(|g| g.allowed),
            state.and_then(|r| r.global.as_ref()),
        ) {
            window.give_back(u64::from(cost), g.window);
        }
        if let (Some(q), Some((consumer, _))) = (outcome.quota.filter(|q| q.allowed), caller) {
            self.quota_counts
                .give_back(route, consumer, q.period, u64::from(cost));
        }
    }

    /// The route's own bucket for the caller's tier, if the route has one for it,
    /// and the key it limits.
    fn route_limit(
        &self,
        route: RouteId,
        caller: Option<(&Arc<str>, TierId)>,
        cost: u32,
        now_ns: u64,
    ) -> Option<(LocalOutcome, LimitKey)> {
        let (consumer, tier) = caller?;
        let state = self.routes.get(route)?;
        let bucket = (*tier.of(state.tier_buckets.as_ref()?)?)?;
        let key = LimitKey::Route(state.name.clone(), consumer.clone());
        let decision = self.take(&key, bucket, cost, now_ns);
        Some((
            LocalOutcome {
                policy: Policy::Route(route),
                bucket,
                decision,
            },
            key,
        ))
    }

    /// One bucket's decision where its tokens come from now: refused outright while
    /// Redis is down under `deny`.
    fn take(&self, key: &LimitKey, bucket: Bucket, cost: u32, now_ns: u64) -> Decision {
        match self.supply() {
            Some(supply) => self.local.take(key, bucket, f64::from(cost), now_ns, supply),
            None => Decision {
                allowed: false,
                remaining: 0,
                full_in_s: bucket.window_s(),
                retry_after_s: 1,
            },
        }
    }

    /// Where bucket tokens come from now; `None` when Redis is down under `deny`.
    fn supply(&self) -> Option<Supply> {
        let Some(on_unavailable) = self.on_unavailable else {
            return Some(Supply::Alone);
        };
        let instances = self.sync.instances.load(Ordering::Relaxed).max(1);
        if !self.sync.degraded.load(Ordering::Relaxed) {
            // Two intervals of the rate carry a new key to its first lease.
            let first_s = self.sync.interval_ms.load(Ordering::Relaxed) as f64 * 2e-3;
            return Some(Supply::Leased { instances, first_s });
        }
        match on_unavailable {
            OnUnavailable::LocalShare => Some(Supply::LocalShare { instances }),
            OnUnavailable::Allow => Some(Supply::Full),
            OnUnavailable::Deny => None,
        }
    }

    /// The route's window as this instance sees the cluster now; `None` when an
    /// outage policy drops the check.
    fn check_global(&self, window: &GlobalWindow, cost: u64, now_ms: u64) -> Option<GlobalDecision> {
        let degraded = self.sync.degraded.load(Ordering::Relaxed);
        let instances = self.sync.instances.load(Ordering::Relaxed).max(1);
        let view = match (self.on_unavailable, degraded) {
            (None, _) => ClusterView::Alone,
            (Some(_), false) => ClusterView::Synced { instances },
            (Some(OnUnavailable::LocalShare), true) => ClusterView::LocalShare { instances },
            (Some(OnUnavailable::Allow), true) => return None,
            (Some(OnUnavailable::Deny), true) => {
                return Some(GlobalDecision {
                    allowed: false,
                    limit: window.limit,
                    remaining: 0,
                    reset_s: 1,
                    window_s: window.window_ms.div_ceil(1000),
                    window: window.window_of(now_ms),
                })
            }
        };
        Some(window.try_take(cost, now_ms, view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A free tier (burst 2), an anonymous bucket (burst 1), and `routes`.
    fn limiter_with(routes: Vec<RouteState>) -> RateLimiter {
        RateLimiter::new(
            vec![Tier {
                name: "free".into(),
                bucket: Bucket {
                    rate: 1.0,
                    burst: 2.0,
                },
            }],
            Some(Bucket {
                rate: 1.0,
                burst: 1.0,
            }),
            routes.into(),
            None,
        )
    }

    fn route(
        name: &str,
        global: Option<Arc<GlobalWindow>>,
        tier_buckets: Option<Vec<Option<Bucket>>>,
    ) -> RouteState {
        RouteState {
            name: name.into(),
            tier_buckets,
            global,
            quota: None,
        }
    }

    /// Route 0 has a window of 3 a second, route 1 no limit of its own.
    fn limiter() -> RateLimiter {
        limiter_with(vec![
            route("r", Some(Arc::new(GlobalWindow::new("r".into(), 3, 1000))), None),
            route("s", None, None),
        ])
    }

    #[test]
    fn a_locally_refused_request_takes_nothing_from_the_global_window() {
        let l = limiter();
        let alice: Arc<str> = Arc::from("alice");
        let ip: IpAddr = [192, 0, 2, 1].into();
        assert!(l
            .check(RouteId(0), Some((&alice, TierId(0))), ip, 1, 0)
            .refused
            .is_none());
        assert!(l
            .check(RouteId(0), Some((&alice, TierId(0))), ip, 1, 0)
            .refused
            .is_none());
        let o = l.check(RouteId(0), Some((&alice, TierId(0))), ip, 1, 0);
        assert_eq!(o.refused, Some(Scope::Local));
        // The window (limit 3) still has room for one more from someone else.
        assert!(l.check(RouteId(0), None, ip, 1, 0).refused.is_none());
        let bob: Arc<str> = Arc::from("bob");
        assert_eq!(
            l.check(RouteId(0), Some((&bob, TierId(0))), ip, 1, 0).refused,
            Some(Scope::Global)
        );
    }

    #[test]
    fn a_request_any_limit_refuses_spends_nothing_of_the_others() {
        // Route 0's window admits 3; route 1 has none. Alice's bucket holds 2.
        let l = limiter();
        let alice: Arc<str> = Arc::from("alice");
        let ip: IpAddr = [192, 0, 2, 1].into();
        for who in ["bob", "carol"] {
            let other: Arc<str> = Arc::from(who);
            assert!(l
                .check(RouteId(0), Some((&other, TierId(0))), ip, 1, 0)
                .refused
                .is_none());
        }
        assert!(l
            .check(RouteId(0), Some((&alice, TierId(0))), ip, 1, 0)
            .refused
            .is_none());
        let refused = l.check(RouteId(0), Some((&alice, TierId(0))), ip, 1, 0);
        assert_eq!(refused.refused, Some(Scope::Global));
        // The window's refusal gave the bucket its token back, and its headers say so:
        // one is left for route 1.
        assert_eq!(refused.local.map(|l| l.decision.remaining), Some(1));
        assert!(l
            .check(RouteId(1), Some((&alice, TierId(0))), ip, 1, 0)
            .refused
            .is_none());
        assert_eq!(
            l.check(RouteId(1), Some((&alice, TierId(0))), ip, 1, 0).refused,
            Some(Scope::Local)
        );
    }

    #[test]
    fn a_refusal_names_the_key_it_limited() {
        // Route "slow" has its own bucket (burst 1) for the free tier; alice's holds 2.
        let slow = Some(vec![Some(Bucket {
            rate: 1.0,
            burst: 1.0,
        })]);
        let l = limiter_with(vec![route("plain", None, None), route("slow", None, slow)]);
        let alice: Arc<str> = Arc::from("alice");
        let ip: IpAddr = [192, 0, 2, 1].into();
        assert_eq!(
            l.check(RouteId(1), Some((&alice, TierId(0))), ip, 1, 0)
                .limited_key,
            None
        );
        let by_route = l.check(RouteId(1), Some((&alice, TierId(0))), ip, 1, 0);
        assert_eq!(by_route.refused, Some(Scope::Route));
        assert_eq!(
            by_route.limited_key,
            Some(LimitKey::Route("slow".into(), alice.clone()))
        );
        assert!(l
            .check(RouteId(0), Some((&alice, TierId(0))), ip, 1, 0)
            .refused
            .is_none());
        let by_bucket = l.check(RouteId(0), Some((&alice, TierId(0))), ip, 1, 0);
        assert_eq!(by_bucket.refused, Some(Scope::Local));
        assert_eq!(by_bucket.limited_key, Some(LimitKey::Consumer(alice)));
        assert!(l.check(RouteId(1), None, ip, 1, 0).refused.is_none());
        assert_eq!(
            l.check(RouteId(1), None, ip, 1, 0).limited_key,
            Some(LimitKey::anonymous(ip))
        );
    }

    #[test]
    fn giving_back_an_admitted_request_returns_its_bucket_and_window() {
        let l = limiter();
        let ip: IpAddr = [192, 0, 2, 1].into();
        let admitted = l.check(RouteId(0), None, ip, 1, 0);
        assert!(admitted.refused.is_none());
        l.give_back(RouteId(0), None, ip, 1, &admitted);
        // The anonymous bucket (burst 1) and the window (3) are whole again.
        assert!(l.check(RouteId(0), None, ip, 1, 0).refused.is_none());
        let other: IpAddr = [192, 0, 2, 2].into();
        let third: IpAddr = [192, 0, 2, 3].into();
        assert!(l.check(RouteId(0), None, other, 1, 0).refused.is_none());
        assert!(l.check(RouteId(0), None, third, 1, 0).refused.is_none());
    }
}
