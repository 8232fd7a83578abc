//! A route's `global_limit`: a sliding window (the previous window's count,
//! weighted by how much of it still overlaps, plus the current one) shared by
//! every instance through Redis, without any request waiting on Redis.
//!
//! Each instance decides from what it knows: the other instances' counts as of the
//! last sync, plus its own exact counts. The background sync (services::redis_sync)
//! drains this instance's unpushed counts, pushes them, and installs the cluster
//! totals. Between syncs the others' admissions are unseen; so that N instances do
//! not all spend the same room, each counts its own admissions since the last sync
//! N times (it assumes its peers admit as much). The over-admission left is at
//! most one request per peer per sync, plus what the others admit in one sync
//! interval when the load is very uneven.
//!
//! State is a few atomics per route, and no lock: three window slots (window index
//! % 3), each tagged with the window it counts and reset by the first request of a
//! newer one (requests arriving during that reset wait out its two stores). A
//! request reads the current and previous slots and takes its cost by
//! compare-and-swap on this instance's current count, so racing workers never
//! admit past the limit. Routes never share one.
//!
//! A window with no request here for `IDLE_S` (and two whole windows) is idle:
//! the sync neither pushes nor reads it, so idle routes cost Redis nothing. Its
//! next request makes it active again, and is decided as after a fresh start
//! until the next sync reads the cluster's totals.

use std::sync::atomic::{AtomicU64, Ordering};

/// Window slots: the current and previous windows, and one a late request or the
/// sync may still be reading while the next window begins.
const SLOTS: u64 = 3;
/// A slot's window tag while one thread resets it for a newer window.
const RESETTING: u64 = u64::MAX;
/// Seconds without a request after which a window is idle (at least two whole
/// windows, so that what it counted no longer weighs in any decision).
pub const IDLE_S: u64 = 30;

/// What this instance knows of the rest of the cluster when it decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterView {
    /// No Redis: the whole limit, this instance's own counts.
    Alone,
    /// Synced: the others' counts as of the last sync, and this instance's own
    /// admissions since then counted once per live instance.
    Synced { instances: u64 },
    /// Redis unreachable (`local_share`): the limit ÷ instances last seen, on this
    /// instance's own counts only.
    LocalShare { instances: u64 },
}

impl ClusterView {
    fn instances(self) -> u64 {
        match self {
            ClusterView::Alone => 1,
            ClusterView::Synced { instances } | ClusterView::LocalShare { instances } => instances.max(1),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalDecision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the current window ends.
    pub reset_s: u64,
    pub window_s: u64,
    /// The window the request counted in, for a give-back.
    pub window: u64,
}

/// One window's counts. The request path writes `window`, `mine` and `unpushed`;
/// the sync task writes `synced`, `pushed` and `others`.
#[derive(Default)]
struct Slot {
    /// The window `mine` and `unpushed` count in, or `RESETTING`.
    window: AtomicU64,
    /// This instance's admissions in the window.
    mine: AtomicU64,
    /// Those not yet drained for a sync. Kept through an outage (a failed sync
    /// gives them back) and pushed when Redis returns, while the window matters.
    unpushed: AtomicU64,
    /// The window `pushed` and `others` belong to.
    synced: AtomicU64,
    /// What this instance has pushed for the window, to tell its share from the total.
    pushed: AtomicU64,
    /// Other instances' count for the window, as of the last sync.
    others: AtomicU64,
}

impl Slot {
    /// The window held, once a reset under way (two stores) is done.
    fn held(&self) -> u64 {
        let mut spins = 0;
        loop {
            let window = self.window.load(Ordering::Acquire);
            if window != RESETTING {
                return window;
            }
            backoff(&mut spins);
        }
    }

    /// This instance's count in `window`; 0 if the slot holds another.
    fn mine_in(&self, window: u64) -> u64 {
        if self.held() == window {
            self.mine.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// (others, pushed) for `window` as of the last sync; zeros if none.
    fn synced_in(&self, window: u64) -> (u64, u64) {
        if self.synced.load(Ordering::Acquire) != window {
            return (0, 0);
        }
        // `install` stores others before pushed: a read racing it sees the new
        // pushed only with the new others, and may see the new others with the old
        // pushed, which only overstates the count.
        let pushed = self.pushed.load(Ordering::Acquire);
        (self.others.load(Ordering::Relaxed), pushed)
    }
}

fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

pub struct GlobalWindow {
    pub route: String,
    pub limit: u64,
    pub window_ms: u64,
    /// The regions whose counts add up (`scope: world`; 1 for the region's own):
    /// between syncs an admission here counts once per instance of each.
    pub regions: u64,
    /// The newest window a request or a sync has seen.
    newest: AtomicU64,
    /// Unix second of the last request (to the second), 0 before any.
    last_request_s: AtomicU64,
    slots: [Slot; SLOTS as usize],
}

/// One sync's worth of work for a route: counts to push, by window.
pub struct Drained {
    pub deltas: Vec<(u64, u64)>,
}

// Races between the sync task (drain, restore, install) and requests: a count
// taken while a drain runs is either in it or left for the next one, and a slot
// reset racing a drain or restore can at worst carry counts of a window too old to
// matter into the newer one. A count of the current or previous window is never
// lost, nor pushed twice.
impl GlobalWindow {
    pub fn new(route: String, limit: u64, window_ms: u64) -> Self {
        GlobalWindow {
            route,
            limit,
            window_ms,
            regions: 1,
            newest: AtomicU64::new(0),
            last_request_s: AtomicU64::new(0),
            slots: Default::default(),
        }
    }

    /// Counted across `regions` regions (`scope: world`): the region sync brings
    /// the other regions' counts.
    pub fn worldwide(mut self, regions: u64) -> Self {
        self.regions = regions.max(1);
        self
    }

    pub fn window_of(&self, now_ms: u64) -> u64 {
        now_ms / self.window_ms
    }

    /// No request here for `IDLE_S` and two whole windows: the sync skips it.
    pub fn idle(&self, now_ms: u64) -> bool {
        let last = self.last_request_s.load(Ordering::Relaxed);
        let quiet_s = IDLE_S.max((2 * self.window_ms).div_ceil(1000) + 1);
        last == 0 || now_ms / 1000 >= last + quiet_s
    }

    fn slot(&self, window: u64) -> &Slot {
        &self.slots[(window % SLOTS) as usize]
    }

    /// The slot counting `window`, reset for it if it still holds an older one;
    /// `None` if it already holds a newer one.
    fn claim(&self, window: u64) -> Option<&Slot> {
        let slot = self.slot(window);
        let mut spins = 0;
        loop {
            let held = slot.window.load(Ordering::Acquire);
            if held == window {
                return Some(slot);
            }
            if held == RESETTING {
                backoff(&mut spins);
                continue;
            }
            if held > window {
                return None;
            }
            // Three windows back or older: its counts no longer matter.
            if slot
                .window
                .compare_exchange(held, RESETTING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                slot.mine.store(0, Ordering::Relaxed);
                slot.unpushed.store(0, Ordering::Relaxed);
                slot.window.store(window, Ordering::Release);
                return Some(slot);
            }
        }
    }

    /// The hot-path decision, from what `view` says this instance can know.
    pub fn try_take(&self, cost: u64, now_ms: u64, view: ClusterView) -> GlobalDecision {
        // Written once a second at most: the line stays shared between workers.
        let now_s = now_ms / 1000;
        if self.last_request_s.load(Ordering::Relaxed) < now_s {
            self.last_request_s.fetch_max(now_s, Ordering::Relaxed);
        }
        let mut window = self.window_of(now_ms);
        let mut into_ms = now_ms % self.window_ms;
        let cur = loop {
            let newest = self.newest.load(Ordering::Relaxed);
            if window < newest {
                // Late (a worker paused across a boundary): it counts in the newest
                // window, with the whole of the previous one.
                window = newest;
                into_ms = 0;
            } else if window > newest {
                self.newest.fetch_max(window, Ordering::Relaxed);
            }
            if let Some(slot) = self.claim(window) {
                break slot;
            }
        };
        let elapsed = into_ms as f64 / self.window_ms as f64;
        let (mine_prev, others_prev) = match window.checked_sub(1) {
            Some(p) => (self.slot(p).mine_in(p), self.slot(p).synced_in(p).0),
            None => (0, 0),
        };
        let (others_cur, pushed_cur) = cur.synced_in(window);
        let (limit, prev) = match view {
            ClusterView::LocalShare { instances } => {
                ((self.limit / (instances.max(1) * self.regions)).max(1), mine_prev)
            }
            ClusterView::Alone | ClusterView::Synced { .. } => (self.limit, mine_prev + others_prev),
        };
        let estimate_at = |mine_cur: u64| {
            let cur = match view {
                ClusterView::LocalShare { .. } => mine_cur,
                ClusterView::Alone | ClusterView::Synced { .. } => {
                    let unseen = mine_cur.saturating_sub(pushed_cur);
                    others_cur + pushed_cur + unseen * view.instances() * self.regions
                }
            };
            prev as f64 * (1.0 - elapsed) + cur as f64
        };
        // Decided on the count it replaces: a worker that raced ahead makes the
        // exchange fail, and the decision is made again on the new count.
        let mut mine = cur.mine.load(Ordering::Relaxed);
        let (allowed, estimate) = loop {
            let estimate = estimate_at(mine);
            if estimate + cost as f64 > limit as f64 {
                break (false, estimate);
            }
            match cur
                .mine
                .compare_exchange_weak(mine, mine + cost, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break (true, estimate),
                Err(now) => mine = now,
            }
        };
        if allowed {
            cur.unpushed.fetch_add(cost, Ordering::Release);
        }
        let used = estimate + if allowed { cost as f64 } else { 0.0 };
        GlobalDecision {
            allowed,
            limit,
            remaining: (limit as f64 - used).max(0.0) as u64,
            reset_s: (self.window_ms - into_ms).div_ceil(1000),
            window_s: self.window_ms.div_ceil(1000),
            window,
        }
    }

    /// Un-counts an admission that a later limit or the gateway refused, while its
    /// window is held and its count not yet drained for a sync (once pushed, it
    /// stays in the cluster's count, and in this instance's).
    pub fn give_back(&self, cost: u64, window: u64) {
        let slot = self.slot(window);
        if slot.held() != window {
            return;
        }
        let unpushed = slot
            .unpushed
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(cost));
        if unpushed.is_ok() {
            let less = |n: u64| Some(n.saturating_sub(cost));
            let _ = slot.mine.fetch_update(Ordering::Relaxed, Ordering::Relaxed, less);
        }
    }

    /// Takes the unpushed counts for a sync. On failure they go back with `restore`.
    pub fn drain(&self) -> Drained {
        let newest = self.newest.load(Ordering::Relaxed);
        let mut deltas = Vec::new();
        for slot in &self.slots {
            let n = slot.unpushed.swap(0, Ordering::Acquire);
            // Read after the swap: if the slot was reset meanwhile, `n` may hold
            // the newer window's counts, and is pushed under it.
            let window = slot.held();
            if n > 0 && window + 1 >= newest {
                deltas.push((window, n));
            }
        }
        deltas.sort_unstable();
        Drained { deltas }
    }

    pub fn restore(&self, drained: Drained) {
        let newest = self.newest.load(Ordering::Relaxed);
        for (window, n) in drained.deltas {
            let slot = self.slot(window);
            if window + 1 >= newest && slot.held() == window {
                slot.unpushed.fetch_add(n, Ordering::Release);
            }
        }
    }

    /// After a successful push: the cluster totals of `window` and the one before.
    pub fn install(&self, pushed: &Drained, window: u64, total_cur: u64, total_prev: u64) {
        if self.newest.fetch_max(window, Ordering::Relaxed) > window {
            return; // time moved on during the sync; the next one catches up
        }
        let set = |w: u64, total: u64| {
            let slot = self.slot(w);
            let mut mine: u64 = pushed
                .deltas
                .iter()
                .filter(|(d, _)| *d == w)
                .map(|(_, n)| n)
                .sum();
            if slot.synced.load(Ordering::Relaxed) == w {
                mine += slot.pushed.load(Ordering::Relaxed);
            }
            slot.others.store(total.saturating_sub(mine), Ordering::Relaxed);
            slot.pushed.store(mine, Ordering::Release);
            slot.synced.store(w, Ordering::Release);
        };
        set(window, total_cur);
        if let Some(prev) = window.checked_sub(1) {
            set(prev, total_prev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_single_instance_window_admits_the_limit() {
        let g = GlobalWindow::new("r".into(), 10, 1000);
        let admitted = (0..20)
            .filter(|_| g.try_take(1, 5_000, ClusterView::Alone).allowed)
            .count();
        assert_eq!(admitted, 10);
        let d = g.try_take(1, 5_999, ClusterView::Alone);
        assert!(!d.allowed);
        assert_eq!(d.reset_s, 1);
    }

    #[test]
    fn a_window_is_idle_until_its_first_request_and_again_after_idle_s() {
        let g = GlobalWindow::new("r".into(), 10, 1000);
        assert!(g.idle(5_000), "never requested");
        g.try_take(1, 5_000, ClusterView::Alone);
        assert!(!g.idle(5_000));
        assert!(!g.idle(5_000 + (IDLE_S - 1) * 1000));
        assert!(g.idle(5_000 + IDLE_S * 1000));
        // A long window stays active while its counts still weigh.
        let long = GlobalWindow::new("r".into(), 10, 60_000);
        long.try_take(1, 5_000, ClusterView::Alone);
        assert!(!long.idle(5_000 + 120_000));
        assert!(long.idle(5_000 + 121_000));
    }

    #[test]
    fn the_previous_window_weighs_by_its_overlap_so_a_boundary_allows_no_double_burst() {
        let g = GlobalWindow::new("r".into(), 10, 1000);
        for _ in 0..10 {
            assert!(g.try_take(1, 5_900, ClusterView::Alone).allowed);
        }
        // Just after the boundary the previous window still counts almost fully.
        assert!(!g.try_take(1, 6_050, ClusterView::Alone).allowed);
        // Halfway through, half of it has slid out: 5 more fit.
        let admitted = (0..10)
            .filter(|_| g.try_take(1, 6_500, ClusterView::Alone).allowed)
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn other_instances_counts_from_a_sync_are_included() {
        let g = GlobalWindow::new("r".into(), 100, 1000);
        let now = 10_000;
        for _ in 0..10 {
            g.try_take(1, now, ClusterView::Alone);
        }
        let drained = g.drain();
        assert_eq!(drained.deltas, vec![(10, 10)]);
        // Redis says the cluster has 95 in this window: 85 from the others.
        g.install(&drained, 10, 95, 0);
        let admitted = (0..20)
            .filter(|_| g.try_take(1, now + 1, ClusterView::Alone).allowed)
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn between_syncs_each_admission_counts_for_every_peer() {
        let g = GlobalWindow::new("r".into(), 30, 1000);
        // Three instances, fresh window: this one may spend a third of the room
        // before the next sync tells it what the others did.
        let admitted = (0..30)
            .filter(|_| {
                g.try_take(1, 10_000, ClusterView::Synced { instances: 3 })
                    .allowed
            })
            .count();
        assert_eq!(admitted, 10);
        let drained = g.drain();
        g.install(&drained, 10, 10, 0); // the others admitted nothing meanwhile
        let admitted = (0..30)
            .filter(|_| {
                g.try_take(1, 10_001, ClusterView::Synced { instances: 3 })
                    .allowed
            })
            .count();
        assert_eq!(admitted, 7, "a third of the 20 left, rounded up by the first one");
    }

    #[test]
    fn counts_from_a_failed_sync_are_kept_and_pushed_later() {
        let g = GlobalWindow::new("r".into(), 100, 1000);
        for _ in 0..7 {
            g.try_take(1, 10_000, ClusterView::Alone);
        }
        let drained = g.drain();
        g.restore(drained);
        g.try_take(1, 10_100, ClusterView::Alone);
        assert_eq!(g.drain().deltas, vec![(10, 8)]);
    }

    #[test]
    fn local_share_divides_the_limit_and_uses_only_own_counts() {
        let g = GlobalWindow::new("r".into(), 90, 1000);
        let drained = g.drain();
        g.install(&drained, 10, 80, 0); // others had 80
        let admitted = (0..100)
            .filter(|_| {
                g.try_take(1, 10_000, ClusterView::LocalShare { instances: 3 })
                    .allowed
            })
            .count();
        assert_eq!(admitted, 30);
    }

    #[test]
    fn workers_racing_on_one_window_never_admit_past_the_limit() {
        let g = GlobalWindow::new("r".into(), 1000, 1000);
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2_500 {
                        if g.try_take(1, 10_000, ClusterView::Alone).allowed {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 1000);
    }

    #[test]
    fn counts_taken_while_syncs_drain_are_drained_exactly_once() {
        let g = GlobalWindow::new("r".into(), 1_000_000, 1000);
        let admitted = AtomicU64::new(0);
        let done = AtomicBool::new(false);
        let mut drained = 0;
        std::thread::scope(|s| {
            let takers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        // Two windows: the second one's first takes reset a slot
                        // while drains run.
                        for i in 0..20_000u64 {
                            let now = if i < 10_000 { 10_000 } else { 11_000 } + i % 1000;
                            if g.try_take(1, now, ClusterView::Alone).allowed {
                                admitted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            s.spawn(|| {
                for t in takers {
                    t.join().expect("taker");
                }
                done.store(true, Ordering::Release);
            });
            let mut fail = false;
            while !done.load(Ordering::Acquire) {
                let d = g.drain();
                fail = !fail;
                if fail {
                    g.restore(d); // a failed sync: pushed by a later one
                } else {
                    drained += d.deltas.iter().map(|(_, n)| n).sum::<u64>();
                }
            }
        });
        drained += g.drain().deltas.iter().map(|(_, n)| n).sum::<u64>();
        assert_eq!(drained, admitted.into_inner());
        assert_eq!(drained, 60_000);
    }
}
