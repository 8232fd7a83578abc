//! The sync's work for the routes' global windows, the instance heartbeat and
//! tier overrides: push this instance's window counts (INCRBY + EXPIRE per window
//! key), read the cluster totals, heartbeat into the instance set and count the
//! live instances, write pending tier overrides and now and then read them all.
//! Each route's window keys share a hash tag, so each pipeline keeps to one slot.

use super::RedisSync;
use crate::ratelimit::global::{Drained, GlobalWindow};
use redis::{Pipeline, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Tier overrides are read back from Redis every this many syncs.
const OVERRIDES_EVERY: u64 = 10;

/// What a round took out, to install or give back.
pub(super) struct WindowRound {
    windows: Vec<Arc<GlobalWindow>>,
    drained: Vec<Drained>,
    overrides: Vec<(String, usize)>,
    read_overrides: bool,
    now_ms: u64,
}

impl WindowRound {
    /// Pipelines: one per route, then the heartbeat, then the overrides.
    pub(super) fn pipelines(&self) -> usize {
        self.windows.len() + 2
    }
}

impl RedisSync {
    fn window_key(&self, window: &GlobalWindow, index: u64) -> String {
        format!("{{{}:gl:{}}}:{}", self.key_prefix, window.route, index)
    }

    pub(super) fn windows_round(&self, round: u64, now_ms: u64) -> (Vec<Pipeline>, WindowRound) {
        let windows: Vec<Arc<GlobalWindow>> = self.limiter.globals().cloned().collect();
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

        let tiers_key = format!("{}:tiers", self.key_prefix);
        let overrides = self.overrides.take_unpushed();
        let mut tiers = redis::pipe();
        for (consumer, tier) in &overrides {
            if let Some(name) = self.tier_names.get(*tier) {
                tiers.hset(&tiers_key, consumer, name).ignore();
            }
        }
        let read_overrides = round.is_multiple_of(OVERRIDES_EVERY);
        if read_overrides {
            tiers.hgetall(&tiers_key);
        }
        pipes.push(tiers);
        let state = WindowRound {
            windows,
            drained,
            overrides,
            read_overrides,
            now_ms,
        };
        (pipes, state)
    }

    /// Installs the cluster totals of the pipelines that ran and gives back the
    /// counts of those that failed; returns the live instance count if it was read.
    pub(super) fn windows_install(
        &self,
        results: &mut dyn Iterator<Item = Result<Vec<Value>, ()>>,
        state: WindowRound,
    ) -> Option<u64> {
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
        match results.next() {
            Some(Ok(tiers)) if state.read_overrides => {
                if let Some(Ok(map)) = tiers
                    .into_iter()
                    .next()
                    .map(redis::from_redis_value::<HashMap<String, String>>)
                {
                    let resolved = map
                        .into_iter()
                        .filter_map(|(consumer, tier)| {
                            let id = self.tier_names.iter().position(|t| *t == tier)?;
                            Some((Arc::from(consumer.as_str()), id))
                        })
                        .collect();
                    self.overrides.replace(resolved);
                }
            }
            Some(Ok(_)) => {}
            _ => self.overrides.restore_unpushed(state.overrides),
        }
        instances
    }

    /// A round that failed: its counts and overrides go back to be pushed later.
    pub(super) fn windows_give_back(&self, state: WindowRound) {
        for (window, drained) in state.windows.iter().zip(state.drained) {
            window.restore(drained);
        }
        self.overrides.restore_unpushed(state.overrides);
    }
}
