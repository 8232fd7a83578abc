//! The live targets of one upstream and the state each carries (breaker,
//! transition counts, whether it has joined). Discovery replaces the set; an
//! address that stays keeps its state, a new one joins at once or after passing
//! `consecutive_success` health checks in a row, a removed one is dropped here and in the balancer, so it
//! gets no new requests while those in flight finish on their own connections.
//! Whatever changes who may take requests (membership, health, a join, a breaker)
//! rebuilds the [`Candidates`]; readers take one lock-free snapshot per selection.

use super::breaker::{Breaker, SystemClock};
use super::candidates::{self, Candidates, Point};
use crate::config::BreakerSettings;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_load_balancing::health_check::HealthCheck;
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The targets by address, sorted: a pool has a handful to a few hundred, and a
/// binary search costs less per request than hashing the address.
#[derive(Default)]
pub struct TargetSet {
    targets: Vec<Arc<Target>>,
    /// consistent_hash: the ring of every target, built once per membership (empty otherwise).
    ring: Box<[Point]>,
}

impl TargetSet {
    pub fn get(&self, addr: &SocketAddr) -> Option<&Arc<Target>> {
        let i = self.targets.binary_search_by(|t| t.addr.cmp(addr)).ok()?;
        self.targets.get(i)
    }

    /// Every target, by address.
    pub fn iter(&self) -> std::slice::Iter<'_, Arc<Target>> {
        self.targets.iter()
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn ring(&self) -> &[Point] {
        &self.ring
    }
}

pub struct Target {
    pub addr: SocketAddr,
    /// Unique per arrival of an address: a ticket issued before a removal never
    /// reaches the breaker of a later arrival at the same address.
    pub arrival: u64,
    pub breaker: Option<Breaker>,
    /// Transitions into each breaker state (indexed by `BreakerState::gauge`).
    pub transitions: [AtomicU64; 3],
    joined: AtomicBool,
    /// Checks passed in a row, until it joins.
    passes: AtomicUsize,
    /// As the health check last judged it (its thresholds applied); true without one.
    healthy: AtomicBool,
}

impl Target {
    /// Whether it takes requests: it has joined the pool.
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// What a membership change did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<SocketAddr>,
    pub removed: Vec<SocketAddr>,
}

pub struct Targets {
    live: ArcSwap<TargetSet>,
    candidates: ArcSwap<Candidates>,
    /// Something the candidates depend on changed since the last rebuild began.
    stale: AtomicBool,
    /// Held by the one thread rebuilding the candidates.
    rebuilding: AtomicBool,
    breaker: Option<BreakerSettings>,
    /// New addresses wait for a first passing health check (the upstream has one).
    gated: bool,
    /// Selection is by consistent hash: each membership gets its ring.
    hashed: bool,
    arrivals: AtomicU64,
}

impl Targets {
    pub fn new(breaker: Option<BreakerSettings>, gated: bool, hashed: bool) -> Targets {
        Targets {
            live: ArcSwap::default(),
            candidates: ArcSwap::default(),
            stale: AtomicBool::new(false),
            rebuilding: AtomicBool::new(false),
            breaker,
            gated,
            hashed,
            arrivals: AtomicU64::new(0),
        }
    }

    pub fn snapshot(&self) -> arc_swap::Guard<Arc<TargetSet>> {
        self.live.load()
    }

    /// The targets a request may go to, brought up to date first when an open breaker
    /// among the others has come to the end of its open period.
    pub fn candidates(&self) -> arc_swap::Guard<Arc<Candidates>> {
        let candidates = self.candidates.load();
        if !candidates.reopen_due() {
            return candidates;
        }
        self.refresh();
        self.candidates.load()
    }

    /// Rebuilds the candidates after a change, without ever waiting: when another thread
    /// is rebuilding, `stale` makes it go round once more. (All SeqCst: a thread that
    /// finds the rebuilder busy has set `stale` before the rebuilder's last look at it.)
    pub fn refresh(&self) {
        self.stale.store(true, Ordering::SeqCst);
        while self.stale.load(Ordering::SeqCst) {
            if self
                .rebuilding
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                return;
            }
            while self.stale.swap(false, Ordering::SeqCst) {
                let live = self.live.load();
                self.candidates.store(Arc::new(Candidates::of(&live)));
            }
            self.rebuilding.store(false, Ordering::SeqCst);
        }
    }

    /// Replaces the membership. `first` is the set found at start, which joins at
    /// once like a static pool's; later arrivals wait for a check when gated.
    pub fn set(&self, addrs: &BTreeSet<SocketAddr>, first: bool) -> Change {
        let old = self.live.load_full();
        if old.len() == addrs.len() && addrs.iter().all(|a| old.get(a).is_some()) {
            return Change::default();
        }
        let mut change = Change::default();
        // `addrs` iterates in order, so `next` is sorted.
        let mut next = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let target = match old.get(addr) {
                Some(kept) => kept.clone(),
                None => {
                    change.added.push(*addr);
                    Arc::new(Target {
                        addr: *addr,
                        arrival: self.arrivals.fetch_add(1, Ordering::Relaxed),
                        breaker: self.breaker.map(|s| Breaker::new(s, Arc::new(SystemClock))),
                        transitions: Default::default(),
                        joined: AtomicBool::new(first || !self.gated),
                        passes: AtomicUsize::new(0),
                        healthy: AtomicBool::new(true),
                    })
                }
            };
            next.push(target);
        }
        change.removed = old
            .iter()
            .map(|t| t.addr)
            .filter(|a| !addrs.contains(a))
            .collect();
        let ring = if self.hashed {
            candidates::ring(&next)
        } else {
            Box::default()
        };
        self.live.store(Arc::new(TargetSet { targets: next, ring }));
        self.refresh();
        change
    }

    /// The health check's verdict on a target changed.
    pub(super) fn health_changed(&self, addr: &SocketAddr, healthy: bool) {
        if let Some(target) = self.live.load().get(addr) {
            target.healthy.store(healthy, Ordering::Relaxed);
            self.refresh();
        }
    }

    /// A check's result; `needed` passes in a row let a new target join.
    fn checked(&self, addr: &SocketAddr, passed: bool, needed: usize) {
        let live = self.live.load();
        let Some(target) = live.get(addr).filter(|t| !t.joined()) else {
            return;
        };
        if !passed {
            target.passes.store(0, Ordering::Relaxed);
        } else if target.passes.fetch_add(1, Ordering::Relaxed) + 1 >= needed
            && !target.joined.swap(true, Ordering::Relaxed)
        {
            log::info!("target {addr} passed its health checks and joins");
            self.refresh();
        }
    }
}

/// The upstream's health check, which also lets a new target join once it passes.
pub struct JoinAfterChecks {
    pub check: Box<dyn HealthCheck + Send + Sync>,
    pub targets: Arc<Targets>,
}

#[async_trait]
impl HealthCheck for JoinAfterChecks {
    async fn check(&self, target: &Backend) -> pingora_error::Result<()> {
        let result = self.check.check(target).await;
        if let Some(addr) = target.addr.as_inet() {
            let needed = self.check.health_threshold(true);
            self.targets.checked(addr, result.is_ok(), needed);
        }
        result
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        if let Some(addr) = target.addr.as_inet() {
            self.targets.health_changed(addr, healthy);
        }
        self.check.health_status_change(target, healthy).await;
    }

    fn backend_summary(&self, target: &Backend) -> String {
        self.check.backend_summary(target)
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.check.health_threshold(success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addrs(ports: &[u16]) -> BTreeSet<SocketAddr> {
        ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    fn breaker() -> Option<BreakerSettings> {
        Some(BreakerSettings {
            failures: 1,
            window: Duration::from_secs(10),
            open: Duration::from_secs(30),
            half_open_requests: 1,
        })
    }

    #[test]
    fn addresses_that_stay_keep_their_state_and_new_ones_wait_when_gated() {
        let targets = Targets::new(breaker(), true, false);
        let change = targets.set(&addrs(&[1, 2]), true);
        assert_eq!(change.added.len(), 2);
        let first = targets.snapshot();
        let kept = first
            .get(&addrs(&[2]).pop_first().expect("addr"))
            .expect("kept")
            .clone();
        assert!(kept.joined(), "the set found at start joins at once");
        let (admission, _) = kept.breaker.as_ref().expect("breaker").try_acquire();
        kept.breaker
            .as_ref()
            .expect("breaker")
            .record_failure(admission.expect("admitted"));

        let change = targets.set(&addrs(&[2, 3]), false);
        assert_eq!(
            change,
            Change {
                added: addrs(&[3]).into_iter().collect(),
                removed: addrs(&[1]).into_iter().collect(),
            }
        );
        let now = targets.snapshot();
        let stayed = now.get(&kept.addr).expect("stayed");
        assert!(Arc::ptr_eq(stayed, &kept), "the same state object");
        assert!(!stayed.breaker.as_ref().expect("breaker").allows(), "still open");
        let arrived = now.get(&addrs(&[3]).pop_first().expect("addr")).expect("arrived");
        assert!(!arrived.joined(), "waits for health checks");
        targets.checked(&arrived.addr, true, 2);
        targets.checked(&arrived.addr, false, 2);
        targets.checked(&arrived.addr, true, 2);
        assert!(!arrived.joined(), "two passes in a row are needed");
        targets.checked(&arrived.addr, true, 2);
        assert!(arrived.joined());
        assert_eq!(targets.set(&addrs(&[2, 3]), false), Change::default());
    }

    #[test]
    fn without_a_health_check_arrivals_join_at_once_and_a_return_is_a_new_arrival() {
        let targets = Targets::new(None, false, false);
        targets.set(&addrs(&[1]), true);
        let one = addrs(&[1]).pop_first().expect("addr");
        let before = targets.snapshot().get(&one).expect("target").arrival;
        targets.set(&addrs(&[]), false);
        assert!(targets.snapshot().is_empty());
        targets.set(&addrs(&[1]), false);
        let again = targets.snapshot().get(&one).expect("target").clone();
        assert!(again.joined());
        assert_ne!(again.arrival, before);
    }
}
