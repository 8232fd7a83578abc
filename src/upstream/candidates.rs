//! The targets a request may go to now, and the choice among them. A target is a
//! candidate when it has joined, is healthy and its breaker admits a request;
//! health checks, joins, membership and breaker changes rebuild the set (rare
//! events), so a selection looks at candidates only and finds one whenever one
//! exists, at a cost that does not grow with the targets that are down.
//! (Pingora's balancer walks every target instead, and gives up after 256 steps.)

use super::targets::{Target, TargetSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Points per target on the consistent-hash ring: Pingora's (and nginx's) ketama count.
const POINTS_PER_TARGET: u32 = 160;

/// A point on the consistent-hash ring: where it sits, and whose it is (an index into
/// the targets of the set the ring belongs to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    hash: u32,
    target: u32,
}

/// Where a selection starts looking.
#[derive(Clone, Copy, Debug)]
pub enum Start<'k> {
    /// The candidate at this index (modulo their number), then the next ones: round robin, random.
    Turn(usize),
    /// The key's point on the ring, then the next points: consistent hash.
    Key(&'k [u8]),
}

#[derive(Default)]
pub struct Candidates {
    /// By address.
    targets: Box<[Arc<Target>]>,
    /// consistent_hash: the points of the candidates only, in ring order (empty otherwise).
    /// Dropping the others' points keeps each key's target, and sends a key whose target
    /// is out to the next candidate along the whole ring, as a walk of it would.
    ring: Box<[Point]>,
    /// When an excluded target's open breaker will admit a probe: the set is rebuilt by
    /// the first selection that finds this past.
    reopen_at: Option<Instant>,
}

impl Candidates {
    /// The candidates among `live` now.
    pub fn of(live: &TargetSet) -> Candidates {
        let mut targets = Vec::with_capacity(live.len());
        // Index among the candidates of each live target, for the ring.
        let mut slot = vec![u32::MAX; if live.ring().is_empty() { 0 } else { live.len() }];
        let mut reopen_in: Option<Duration> = None;
        for (i, target) in live.iter().enumerate() {
            if !(target.joined() && target.healthy()) {
                continue;
            }
            if let Some(breaker) = target.breaker.as_ref().filter(|b| !b.allows()) {
                if let Some(wait) = breaker.time_to_half_open() {
                    reopen_in = Some(reopen_in.map_or(wait, |r| r.min(wait)));
                }
                continue;
            }
            if let Some(s) = slot.get_mut(i) {
                *s = targets.len() as u32;
            }
            targets.push(target.clone());
        }
        let ring = live
            .ring()
            .iter()
            .filter_map(|p| {
                let target = slot[p.target as usize];
                (target != u32::MAX).then_some(Point { hash: p.hash, target })
            })
            .collect();
        Candidates {
            targets: targets.into_boxed_slice(),
            ring,
            reopen_at: reopen_in.map(|wait| Instant::now() + wait),
        }
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Whether an excluded breaker admits a probe by now. Reads the clock only while
    /// some breaker keeps a healthy target out.
    pub fn reopen_due(&self) -> bool {
        self.reopen_at.is_some_and(|at| Instant::now() >= at)
    }

    /// The first candidate `accept` takes, from `start` on. On the ring a candidate comes
    /// up once per point; otherwise each comes up once.
    pub fn pick(
        &self,
        start: Start<'_>,
        mut accept: impl FnMut(&Arc<Target>) -> bool,
    ) -> Option<&Arc<Target>> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        match start {
            Start::Turn(turn) => {
                let first = turn % n;
                (first..n)
                    .chain(0..first)
                    .map(|i| &self.targets[i])
                    .find(|t| accept(t))
            }
            Start::Key(key) => {
                let first = point_of(&self.ring, crc32fast::hash(key));
                self.ring[first..]
                    .iter()
                    .chain(&self.ring[..first])
                    .map(|p| &self.targets[p.target as usize])
                    .find(|t| accept(t))
            }
        }
    }
}

/// The ring of `targets` (indexed as given), built as ketama builds it: a target's
/// points chain CRC32 hashes from its `ip\0port`, so a key keeps the target it had
/// with Pingora's `Consistent` balancer.
pub fn ring(targets: &[Arc<Target>]) -> Box<[Point]> {
    let mut points = Vec::with_capacity(targets.len() * POINTS_PER_TARGET as usize);
    for (i, target) in targets.iter().enumerate() {
        let mut node = crc32fast::Hasher::new();
        node.update(format!("{}\0{}", target.addr.ip(), target.addr.port()).as_bytes());
        let mut previous = 0u32;
        for _ in 0..POINTS_PER_TARGET {
            let mut point = node.clone();
            point.update(&previous.to_le_bytes());
            previous = point.finalize();
            points.push(Point {
                hash: previous,
                target: i as u32,
            });
        }
    }
    points.sort_unstable_by_key(|p| (p.hash, p.target));
    points.dedup_by_key(|p| p.hash);
    points.into_boxed_slice()
}

/// The first point at or after `hash`, wrapping around.
fn point_of(ring: &[Point], hash: u32) -> usize {
    let i = ring.partition_point(|p| p.hash < hash);
    if i == ring.len() {
        0
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BreakerSettings;
    use crate::upstream::targets::Targets;
    use pingora_load_balancing::selection::{BackendIter, BackendSelection, Consistent};
    use pingora_load_balancing::Backend;
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    /// `n` targets 127.0.x.y:80.
    fn addrs(n: usize) -> BTreeSet<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, (i / 250) as u8, (i % 250 + 1) as u8], 80)))
            .collect()
    }

    fn pool(n: usize, hashed: bool, breaker: Option<BreakerSettings>) -> (Targets, Vec<SocketAddr>) {
        let targets = Targets::new(breaker, true, hashed);
        let all = addrs(n);
        targets.set(&all, true);
        (targets, all.into_iter().collect())
    }

    /// Every target down but `up`.
    fn only(targets: &Targets, all: &[SocketAddr], up: SocketAddr) {
        for addr in all.iter().filter(|a| **a != up) {
            targets.health_changed(addr, false);
        }
    }

    #[test]
    fn the_one_healthy_target_among_400_is_always_found() {
        for hashed in [false, true] {
            let (targets, all) = pool(400, hashed, None);
            let up = all[317];
            only(&targets, &all, up);
            let candidates = targets.candidates();
            assert_eq!(candidates.len(), 1);
            for i in 0..1000usize {
                let key = i.to_le_bytes();
                let start = if hashed { Start::Key(&key) } else { Start::Turn(i) };
                let mut looked = 0;
                let chosen = candidates.pick(start, |_| {
                    looked += 1;
                    true
                });
                assert_eq!(chosen.map(|t| t.addr), Some(up));
                assert_eq!(looked, 1, "only candidates are looked at");
            }
        }
    }

    #[test]
    fn round_robin_takes_the_candidates_in_turn_and_skips_refused_ones() {
        let (targets, all) = pool(4, false, None);
        targets.health_changed(&all[1], false);
        let candidates = targets.candidates();
        let turns: Vec<_> = (0..6)
            .map(|turn| candidates.pick(Start::Turn(turn), |_| true).map(|t| t.addr))
            .collect();
        let expected = [all[0], all[2], all[3], all[0], all[2], all[3]].map(Some);
        assert_eq!(turns, expected);
        let next = candidates
            .pick(Start::Turn(0), |t| t.addr != all[0])
            .map(|t| t.addr);
        assert_eq!(next, Some(all[2]));
        assert!(candidates.pick(Start::Turn(5), |_| false).is_none());
        targets.health_changed(&all[1], true);
        assert_eq!(targets.candidates().len(), 4, "back when healthy again");
    }

    #[test]
    fn a_key_keeps_the_target_pingoras_ring_gave_it_and_falls_back_along_the_ring() {
        let (targets, all) = pool(40, true, None);
        let backends: BTreeSet<Backend> = all
            .iter()
            .map(|a| Backend::new(&a.to_string()).expect("backend"))
            .collect();
        let pingora = Arc::new(Consistent::build(&backends));
        let everyone = targets.candidates();
        // Pingora's ring from `key`'s point on.
        let walk = |key: &[u8]| {
            let mut iter = pingora.iter(key);
            std::iter::from_fn(move || iter.next().map(|b| *b.addr.as_inet().expect("inet")))
        };
        for i in 0..1000u32 {
            let key = i.to_be_bytes();
            let owner = walk(&key).next();
            assert_eq!(
                everyone.pick(Start::Key(&key), |_| true).map(|t| t.addr),
                owner,
                "key {i}"
            );
            // With its target down, a key goes where a walk of the whole ring goes.
            let next = walk(&key).find(|a| Some(*a) != owner);
            let fallback = everyone.pick(Start::Key(&key), |t| Some(t.addr) != owner);
            assert_eq!(fallback.map(|t| t.addr), next, "key {i}");
        }
        only(&targets, &all, all[7]);
        targets.health_changed(&all[9], true);
        let two = targets.candidates();
        for i in 0..1000u32 {
            let key = i.to_be_bytes();
            let walked = walk(&key).find(|a| *a == all[7] || *a == all[9]);
            assert_eq!(two.pick(Start::Key(&key), |_| true).map(|t| t.addr), walked);
        }
    }

    #[test]
    fn an_open_breaker_leaves_the_candidates_until_its_open_period_ends() {
        let settings = BreakerSettings {
            failures: 1,
            window: Duration::from_secs(10),
            open: Duration::from_secs(3600),
            half_open_requests: 1,
        };
        let (targets, all) = pool(3, false, Some(settings));
        let live = targets.snapshot();
        let breaker = live
            .get(&all[0])
            .and_then(|t| t.breaker.as_ref())
            .expect("breaker");
        let (admission, _) = breaker.try_acquire();
        breaker.record_failure(admission.expect("admitted"));
        assert_eq!(targets.candidates().len(), 3, "not rebuilt until told");
        targets.refresh();
        let candidates = targets.candidates();
        assert_eq!(candidates.len(), 2);
        assert!(candidates.pick(Start::Turn(0), |t| t.addr == all[0]).is_none());
        assert!(!candidates.reopen_due(), "an hour to go");
        assert!(candidates.reopen_at.is_some());
    }

    #[test]
    fn changes_from_many_threads_at_once_all_reach_the_candidates() {
        let (targets, all) = pool(64, true, None);
        let targets = Arc::new(targets);
        let threads: Vec<_> = all
            .chunks(8)
            .map(|chunk| {
                let (targets, chunk) = (targets.clone(), chunk.to_vec());
                std::thread::spawn(move || {
                    for round in 0..50 {
                        for addr in &chunk {
                            targets.health_changed(addr, round % 2 == 1);
                        }
                    }
                    // Every other target of the chunk ends down.
                    for addr in chunk.iter().step_by(2) {
                        targets.health_changed(addr, false);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        let candidates = targets.candidates();
        assert_eq!(candidates.len(), 32);
        assert_eq!(
            candidates.ring.len(),
            candidates.len() * POINTS_PER_TARGET as usize
        );
    }

    #[test]
    fn a_target_that_has_not_joined_is_no_candidate() {
        let (targets, all) = pool(2, false, None);
        let mut more: BTreeSet<SocketAddr> = all.iter().copied().collect();
        let new = SocketAddr::from(([127, 0, 9, 9], 80));
        more.insert(new);
        targets.set(&more, false);
        let candidates = targets.candidates();
        assert_eq!(candidates.len(), 2, "gated until its checks pass");
        assert!(candidates.pick(Start::Turn(0), |t| t.addr == new).is_none());
    }
}
