//! Live numbers behind `/admin/stats` and the dashboard: per-second counts over
//! the last minute, written without locks, and the callers limited most over the
//! last five to ten minutes, locked only for requests that were limited.

use super::{RequestRecord, LATENCY_BUCKETS};
use crate::vocab::limit_key::LimitKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Seconds of live history kept.
const RING_SECONDS: usize = 64;
/// Distinct limited callers remembered per period: a flood cannot grow it.
const MAX_TOP_KEYS: usize = 10_000;
/// The "top limited" lists cover the current and the previous period.
const TOP_PERIOD_S: u64 = 300;

/// One second's counts, as the ring held them when read.
pub struct SecondCounts {
    pub requests: u64,
    /// Answered 429.
    pub limited: u64,
    pub errors_5xx: u64,
    /// Requests per latency bucket (not cumulative), the last one for those slower
    /// than every bound in `LATENCY_BUCKETS`.
    pub latency: [u64; LATENCY_BUCKETS.len() + 1],
}

/// Per-second counts for the last minute, without locks: each slot remembers which
/// second it holds and is reset by the first writer of a new second.
struct Ring {
    second: [AtomicU64; RING_SECONDS],
    requests: [AtomicU64; RING_SECONDS],
    limited: [AtomicU64; RING_SECONDS],
    errors: [AtomicU64; RING_SECONDS],
    latency: [[AtomicU64; LATENCY_BUCKETS.len() + 1]; RING_SECONDS],
}

impl Ring {
    fn new() -> Self {
        Ring {
            second: std::array::from_fn(|_| AtomicU64::new(0)),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            limited: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    fn slot(&self, now_s: u64) -> usize {
        let i = (now_s % RING_SECONDS as u64) as usize;
        let held = self.second[i].load(Ordering::Acquire);
        if held != now_s
            && self.second[i]
                .compare_exchange(held, now_s, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // Counts of a request racing this reset may land in the old second: stats only.
            self.requests[i].store(0, Ordering::Relaxed);
            self.limited[i].store(0, Ordering::Relaxed);
            self.errors[i].store(0, Ordering::Relaxed);
            for b in &self.latency[i] {
                b.store(0, Ordering::Relaxed);
            }
        }
        i
    }

    fn record(&self, now_s: u64, status: u16, duration: Duration) {
        let i = self.slot(now_s);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        if status == 429 {
            self.limited[i].fetch_add(1, Ordering::Relaxed);
        }
        if status >= 500 {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
        let secs = duration.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[i][bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Second `s`, if the ring still holds it.
    fn second(&self, s: u64) -> Option<SecondCounts> {
        let i = (s % RING_SECONDS as u64) as usize;
        (self.second[i].load(Ordering::Acquire) == s).then(|| SecondCounts {
            requests: self.requests[i].load(Ordering::Relaxed),
            limited: self.limited[i].load(Ordering::Relaxed),
            errors_5xx: self.errors[i].load(Ordering::Relaxed),
            latency: std::array::from_fn(|b| self.latency[i][b].load(Ordering::Relaxed)),
        })
    }
}

#[derive(Default)]
struct TopLimited {
    period: u64,
    current: HashMap<String, u64>,
    previous: HashMap<String, u64>,
}

impl TopLimited {
    fn add(&mut self, key: String, now_s: u64) {
        let period = now_s / TOP_PERIOD_S;
        if period != self.period {
            self.previous = if period == self.period + 1 {
                std::mem::take(&mut self.current)
            } else {
                HashMap::new()
            };
            self.current.clear();
            self.period = period;
        }
        let len = self.current.len();
        match self.current.get_mut(&key) {
            Some(n) => *n += 1,
            None if len < MAX_TOP_KEYS => {
                self.current.insert(key, 1);
            }
            None => {}
        }
    }

    fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut sum: HashMap<&str, u64> = HashMap::new();
        for (k, v) in self.current.iter().chain(self.previous.iter()) {
            *sum.entry(k.as_str()).or_default() += v;
        }
        let mut all: Vec<(String, u64)> = sum.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) struct Live {
    ring: Ring,
    top_consumers: Mutex<TopLimited>,
    top_ips: Mutex<TopLimited>,
}

impl Live {
    pub(super) fn new() -> Self {
        Live {
            ring: Ring::new(),
            top_consumers: Mutex::new(TopLimited::default()),
            top_ips: Mutex::new(TopLimited::default()),
        }
    }

    pub(super) fn record(&self, r: &RequestRecord<'_>, now_s: u64) {
        self.ring.record(now_s, r.status, r.duration);
        match &r.limited_key {
            Some(LimitKey::Consumer(c) | LimitKey::Route(_, c)) => {
                lock(&self.top_consumers).add(c.to_string(), now_s)
            }
            Some(key @ LimitKey::Ip(_)) => lock(&self.top_ips).add(key.to_string(), now_s),
            None => {}
        }
    }

    pub(super) fn second(&self, s: u64) -> Option<SecondCounts> {
        self.ring.second(s)
    }

    pub(super) fn top_consumers(&self, n: usize) -> Vec<(String, u64)> {
        lock(&self.top_consumers).top(n)
    }

    pub(super) fn top_ips(&self, n: usize) -> Vec<(String, u64)> {
        lock(&self.top_ips).top(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_limited_is_bounded_and_sorted() {
        let mut t = TopLimited::default();
        for i in 0..(MAX_TOP_KEYS + 100) {
            t.add(format!("k{i}"), 1000);
        }
        for _ in 0..5 {
            t.add("hot".into(), 1000);
        }
        assert!(t.current.len() <= MAX_TOP_KEYS);
        assert_eq!(t.top(1)[0].0, "k0");
        let mut t = TopLimited::default();
        t.add("a".into(), 0);
        t.add("b".into(), 0);
        t.add("b".into(), TOP_PERIOD_S); // the next period: both still count
        assert_eq!(t.top(2), vec![("b".to_string(), 2), ("a".to_string(), 1)]);
        t.add("c".into(), TOP_PERIOD_S * 5); // long after: forgotten
        assert_eq!(t.top(5), vec![("c".to_string(), 1)]);
    }
}
