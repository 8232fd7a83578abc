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
//! State is one small mutex per route (a few arithmetic operations under it, no
//! allocation, no I/O); routes never share one.

use std::collections::BTreeMap;
use std::sync::Mutex;

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
}

#[derive(Default)]
struct Counts {
    /// Window index (unix time / window length) these counts belong to.
    window: u64,
    mine_cur: u64,
    mine_prev: u64,
    /// Other instances' counts, as of the last sync.
    others_cur: u64,
    others_prev: u64,
    /// This instance's counts not yet in Redis, by window. Kept through an outage
    /// and pushed when Redis returns; windows too old to matter are dropped.
    unpushed: BTreeMap<u64, u64>,
    /// What this instance has pushed, per window, to tell its share from the total.
    pushed_cur: u64,
    pushed_prev: u64,
}

impl Counts {
    fn roll(&mut self, window: u64) {
        if window == self.window {
            return;
        }
        let (cur, others, pushed) = if window == self.window + 1 {
            (self.mine_cur, self.others_cur, self.pushed_cur)
        } else {
            (0, 0, 0)
        };
        if window > self.window {
            self.mine_prev = cur;
            self.others_prev = others;
            self.pushed_prev = pushed;
            self.mine_cur = 0;
            self.others_cur = 0;
            self.pushed_cur = 0;
            self.window = window;
            self.unpushed.retain(|w, _| *w + 1 >= window);
        }
    }
}

pub struct GlobalWindow {
    pub route: String,
    pub limit: u64,
    pub window_ms: u64,
    counts: Mutex<Counts>,
}

/// One sync's worth of work for a route: counts to push, by window.
pub struct Drained {
    pub deltas: Vec<(u64, u64)>,
}

impl GlobalWindow {
    pub fn new(route: String, limit: u64, window_ms: u64) -> Self {
        GlobalWindow {
            route,
            limit,
            window_ms,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn window_of(&self, now_ms: u64) -> u64 {
        now_ms / self.window_ms
    }

    /// The hot-path decision, from what `view` says this instance can know.
    pub fn try_take(&self, cost: u64, now_ms: u64, view: ClusterView) -> GlobalDecision {
        let window = self.window_of(now_ms);
        let elapsed = (now_ms % self.window_ms) as f64 / self.window_ms as f64;
        let mut c = self.lock();
        c.roll(window);
        let (limit, prev, cur) = match view {
            ClusterView::LocalShare { instances } => {
                ((self.limit / instances.max(1)).max(1), c.mine_prev, c.mine_cur)
            }
            ClusterView::Alone | ClusterView::Synced { .. } => {
                let unseen = c.mine_cur.saturating_sub(c.pushed_cur);
                (
                    self.limit,
                    c.mine_prev + c.others_prev,
                    c.others_cur + c.pushed_cur + unseen * view.instances(),
                )
            }
        };
        let estimate = prev as f64 * (1.0 - elapsed) + cur as f64;
        let allowed = estimate + cost as f64 <= limit as f64;
        if allowed {
            c.mine_cur += cost;
            *c.unpushed.entry(window).or_default() += cost;
        }
        let used = estimate + if allowed { cost as f64 } else { 0.0 };
        GlobalDecision {
            allowed,
            limit,
            remaining: (limit as f64 - used).max(0.0) as u64,
            reset_s: (self.window_ms - now_ms % self.window_ms).div_ceil(1000),
            window_s: self.window_ms.div_ceil(1000),
        }
    }

    /// Takes the unpushed counts for a sync. On failure they go back with `restore`.
    pub fn drain(&self) -> Drained {
        let mut c = self.lock();
        Drained {
            deltas: std::mem::take(&mut c.unpushed).into_iter().collect(),
        }
    }

    pub fn restore(&self, drained: Drained) {
        let mut c = self.lock();
        let oldest_useful = c.window.saturating_sub(1);
        for (w, n) in drained.deltas {
            if w >= oldest_useful {
                *c.unpushed.entry(w).or_default() += n;
            }
        }
    }

    /// After a successful push: the cluster totals of `window` and the one before.
    pub fn install(&self, pushed: &Drained, window: u64, total_cur: u64, total_prev: u64) {
        let mut c = self.lock();
        c.roll(window);
        if c.window != window {
            return; // time moved on during the sync; the next one catches up
        }
        for (w, n) in &pushed.deltas {
            if *w == window {
                c.pushed_cur += n;
            } else if *w + 1 == window {
                c.pushed_prev += n;
            }
        }
        c.others_cur = total_cur.saturating_sub(c.pushed_cur);
        c.others_prev = total_prev.saturating_sub(c.pushed_prev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
