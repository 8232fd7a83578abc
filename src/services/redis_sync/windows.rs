//! The sync's work for the routes' global windows and the instance heartbeat:
//! push this instance's window counts (INCRBY + EXPIRE per window key), read the
//! cluster totals, heartbeat into the instance set and count the live instances.
//! Only windows active here are pushed and read: an idle one (`GlobalWindow::idle`)
//! costs the round nothing.
//! Each route's window keys share a hash tag, so each pipeline keeps to one slot.

use super::round::{Batch, Queued, Replies};
use super::RedisSync;
use crate::ratelimit::global::{Drained, GlobalWindow};
use redis::Value;
use std::sync::Arc;

/// What a round took out, to install or give back, and where its pipelines sit:
/// one per route, then the heartbeat.
pub(super) struct WindowRound {
    queued: Queued,
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
            pipe.get(self.window_key(window, current));
            pipe.get(self.window_key(window, current.saturating_sub(1)));
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
                    let (cur, prev) = (number(reply.first()), number(reply.get(1)));
                    window.install(&drained, window.window_of(state.now_ms), cur, prev);
                }
                _ => window.restore(drained),
            }
        }
        let instances = match results.next() {
            Some(Ok(reply)) => Some(number(reply.first()).max(1)),
            _ => None,
        };
        WindowsDone { instances }
    }

    /// A round that failed: its counts go back to be pushed later.
    pub(super) fn windows_give_back(&self, state: WindowRound) {
        for (window, drained) in state.windows.iter().zip(state.drained) {
            window.restore(drained);
        }
    }
}
