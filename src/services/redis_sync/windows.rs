//! The sync's work for the routes' global windows and the instance heartbeat:
//! push this instance's window counts (INCRBY + EXPIRE per window key), read the
//! cluster totals, heartbeat into the instance set and count the live instances.
//! Only windows active here are pushed and read: an idle one (`GlobalWindow::idle`)
//! costs the round nothing.
//! Each route's window keys share a hash tag, so each pipeline keeps to one slot.

use super::round::{Batch, Queued, Replies};
use super::RedisSync;
use crate::ratelimit::global::{Drained, GlobalWindow};
use crate::services::region_sync::{region_counters_key, world_counts, world_key};
use redis::Value;
use std::sync::Arc;

/// What a round took out, to install or give back, and where its pipelines sit:
/// one per route, then the heartbeat.
pub(super) struct WindowRound {
    queued: Queued,
    /// A pipeline naming the worldwide windows for the region sync follows the routes'.
    named_worldwide: bool,
    windows: Vec<Arc<GlobalWindow>>,
    drained: Vec<Drained>,
    now_ms: u64,
}

/// What the windows' round brought back besides the totals it installed.
pub(super) struct WindowsDone {
    /// The live instance count, when the heartbeat's answer was read.
    pub(super) instances: Option<u64>,
}

impl RedisSync {
    fn window_key(&self, window: &GlobalWindow, index: u64) -> String {
        format!("{{{}:gl:{}}}:{}", self.key_prefix, window.route, index)
    }

    pub(super) fn windows_round(&self, now_ms: u64, batch: &mut Batch) -> WindowRound {
        let windows: Vec<Arc<GlobalWindow>> = self
            .limiter
            .globals()
            .filter(|w| !w.idle(now_ms))
            .cloned()
            .collect();
        let drained: Vec<Drained> = windows.iter().map(|w| w.drain()).collect();
        let mut pipes = Vec::with_capacity(windows.len() + 2);
        let mut worldwide = Vec::new();
        for (window, drained) in windows.iter().zip(&drained) {
            let mut pipe = redis::pipe();
            let expire_s = (window.window_ms / 1000) * 2 + 5;
            for (index, count) in &drained.deltas {
                let key = self.window_key(window, *index);
                pipe.incr(&key, *count)
                    .ignore()
                    .expire(&key, expire_s as i64)
                    .ignore();
            }
            let current = window.window_of(now_ms);
            let (cur, prev) = (
                self.window_key(window, current),
                self.window_key(window, current.saturating_sub(1)),
            );
            pipe.get(&cur).get(&prev);
            if window.regions > 1 {
                pipe.hgetall(world_key(&cur)).hgetall(world_key(&prev));
                worldwide.extend([cur, prev]);
            }
            pipes.push(pipe);
        }
        // The region sync exchanges these with the other regions' Redis.
        if !worldwide.is_empty() {
            let mut pipe = redis::pipe();
            pipe.sadd(region_counters_key(&self.key_prefix), &worldwide)
                .ignore();
            pipes.push(pipe);
        }

        let instances_key = format!("{}:instances", self.key_prefix);
        let heartbeat_ttl_ms = (self.interval.as_millis() as u64 * 10).max(3000);
        let mut heartbeat = redis::pipe();
        heartbeat
            .zadd(&instances_key, &self.instance_id, now_ms)
            .ignore()
            .zrembyscore(&instances_key, 0, now_ms.saturating_sub(heartbeat_ttl_ms))
            .ignore()
            .zcard(&instances_key);
        pipes.push(heartbeat);

        WindowRound {
            named_worldwide: !worldwide.is_empty(),
            queued: batch.queue(pipes),
            windows,
            drained,
            now_ms,
        }
    }

    /// Installs the cluster totals of the pipelines that ran and gives back the
    /// counts of those that failed.
    pub(super) fn windows_install(&self, replies: &mut Replies, state: WindowRound) -> WindowsDone {
        let mut results = replies.take(state.queued);
        let number = |v: Option<&Value>| -> u64 {
            v.and_then(|v| redis::from_redis_value_ref::<Option<u64>>(v).ok().flatten())
                .unwrap_or(0)
        };
        for (window, drained) in state.windows.iter().zip(state.drained) {
            match results.next() {
                Some(Ok(reply)) => {
                    let (cur, prev) = (
                        self.worldwide(window, number(reply.first()), reply.get(2)),
                        self.worldwide(window, number(reply.get(1)), reply.get(3)),
                    );
                    window.install(&drained, window.window_of(state.now_ms), cur, prev);
                }
                _ => window.restore(drained),
            }
        }
        if state.named_worldwide {
            results.next();
        }
        let instances = match results.next() {
            Some(Ok(reply)) => Some(number(reply.first()).max(1)),
            _ => None,
        };
        WindowsDone { instances }
    }

    /// A window's total as this instance must weigh it: the region's own; worldwide,
    /// with the other regions' counts as the region sync last brought them, and what
    /// the region counted that the others have not been sent yet once per region
    /// (each may be admitting as much meanwhile).
    fn worldwide(&self, window: &GlobalWindow, region: u64, world: Option<&Value>) -> u64 {
        let Some(me) = self
            .region
            .as_ref()
            .filter(|_| window.regions > 1)
            .map(|r| r.name.as_str())
        else {
            return region;
        };
        let (others, seen) = world_counts(world, me);
        others + seen.min(region) + region.saturating_sub(seen) * window.regions
    }

    /// A round that failed: its counts go back to be pushed later.
    pub(super) fn windows_give_back(&self, state: WindowRound) {
        for (window, drained) in state.windows.iter().zip(state.drained) {
            window.restore(drained);
        }
    }
}
