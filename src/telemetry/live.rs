//! Live numbers behind `/admin/stats` and the dashboard: per-second counts over
//! the last minute, and the callers limited most over the last five to ten minutes.
//!
//! Workers share nothing here: each thread writes its own stripe (bound at its
//! first request, round robin over `STRIPES`), and a read sums the stripes. The
//! per-second counts are atomics; the top lists are locked only by their stripe's
//! thread, for requests that were limited, and by readers.

use super::{RequestRecord, LATENCY_BUCKETS};
use crate::vocab::limit_key::LimitKey;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Seconds of live history kept.
const RING_SECONDS: usize = 64;
/// Distinct limited callers remembered per period and stripe: a flood cannot grow it.
const MAX_TOP_KEYS: usize = 10_000;
/// Stripes, each written by the threads bound to it (one each, unless there are
/// more threads than stripes).
const STRIPES: usize = 32;
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

/// One stripe's per-second counts for the last minute: each slot remembers which
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

/// One stripe's limited callers, by period.
struct TopLimited<K> {
    period: u64,
    current: HashMap<K, u64>,
    previous: HashMap<K, u64>,
}

impl<K> Default for TopLimited<K> {
    fn default() -> Self {
        TopLimited {
            period: 0,
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> TopLimited<K> {
    /// Counts `key`; a key already listed costs no allocation.
    fn add(&mut self, key: &K, now_s: u64) {
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
        match self.current.get_mut(key) {
            Some(n) => *n += 1,
            None if len < MAX_TOP_KEYS => {
                self.current.insert(key.clone(), 1);
            }
            None => {}
        }
    }

    /// Adds what this stripe counted in `period` and the one before to `sum`. A
    /// stripe that rolled on since `period` was found adds its newer counts.
    fn sum_into(&self, period: u64, sum: &mut HashMap<K, u64>) {
        let mut add = |counts: &HashMap<K, u64>| {
            for (k, v) in counts {
                *sum.entry(k.clone()).or_default() += v;
            }
        };
        if self.period >= period {
            add(&self.current);
            add(&self.previous);
        } else if self.period + 1 == period {
            add(&self.current);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one thread (or a few, past `STRIPES` threads) writes, on cache lines of
/// its own.
#[repr(align(128))]
struct Stripe {
    ring: Ring,
    top_consumers: Mutex<TopLimited<Arc<str>>>,
    top_ips: Mutex<TopLimited<IpAddr>>,
}

/// The calling thread's stripe, assigned round robin at its first use.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// The `n` keys limited most over the newest period any stripe has seen and the
/// one before, summed over the stripes.
fn top<K: Hash + Eq + Clone>(
    stripes: &[Stripe],
    list: fn(&Stripe) -> &Mutex<TopLimited<K>>,
    show: fn(&K) -> String,
    n: usize,
) -> Vec<(String, u64)> {
    let period = stripes.iter().map(|s| lock(list(s)).period).max().unwrap_or(0);
    let mut sum = HashMap::new();
    for s in stripes {
        lock(list(s)).sum_into(period, &mut sum);
    }
    let mut all: Vec<(String, u64)> = sum.into_iter().map(|(k, v)| (show(&k), v)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(n);
    all
}

pub(super) struct Live {
    stripes: Box<[Stripe]>,
}

impl Live {
    pub(super) fn new() -> Self {
        Live {
            stripes: (0..STRIPES)
                .map(|_| Stripe {
                    ring: Ring::new(),
                    top_consumers: Mutex::new(TopLimited::default()),
                    top_ips: Mutex::new(TopLimited::default()),
                })
                .collect(),
        }
    }

    pub(super) fn record(&self, r: &RequestRecord<'_>, now_s: u64) {
        let stripe = &self.stripes[stripe_index()];
        stripe.ring.record(now_s, r.status, r.duration);
        match r.limited_key {
            Some(LimitKey::Consumer(c) | LimitKey::Route(_, c)) => lock(&stripe.top_consumers).add(c, now_s),
            Some(LimitKey::Ip(ip)) => lock(&stripe.top_ips).add(ip, now_s),
            None => {}
        }
    }

    /// Second `s` summed over the stripes, if any still holds it.
    pub(super) fn second(&self, s: u64) -> Option<SecondCounts> {
        self.stripes
            .iter()
            .filter_map(|stripe| stripe.ring.second(s))
            .reduce(|mut sum, c| {
                sum.requests += c.requests;
                sum.limited += c.limited;
                sum.errors_5xx += c.errors_5xx;
                for (b, n) in sum.latency.iter_mut().zip(c.latency) {
                    *b += n;
                }
                sum
            })
    }

    pub(super) fn top_consumers(&self, n: usize) -> Vec<(String, u64)> {
        top(&self.stripes, |s| &s.top_consumers, |c| c.to_string(), n)
    }

    /// Addresses as the limit key shows them (an IPv6 caller as its /64).
    pub(super) fn top_ips(&self, n: usize) -> Vec<(String, u64)> {
        top(
            &self.stripes,
            |s| &s.top_ips,
            |ip| LimitKey::Ip(*ip).to_string(),
            n,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::limit_scope::Scope;

    fn limited(key: &LimitKey) -> RequestRecord<'_> {
        RequestRecord {
            route: None,
            method: &http::Method::GET,
            status: 429,
            duration: Duration::from_millis(1),
            upstream: None,
            upstream_duration: None,
            limited: Some(Scope::Local),
            auth_failure: None,
            limited_key: Some(key),
        }
    }

    fn consumer(name: &str) -> LimitKey {
        LimitKey::Consumer(name.into())
    }

    #[test]
    fn top_limited_is_bounded_and_sorted() {
        let live = Live::new();
        for i in 0..(MAX_TOP_KEYS + 100) {
            live.record(&limited(&consumer(&format!("k{i}"))), 1000);
        }
        for _ in 0..5 {
            live.record(&limited(&consumer("hot")), 1000);
        }
        // One thread, one stripe: full, so the latecomer is not listed.
        assert_eq!(live.top_consumers(usize::MAX).len(), MAX_TOP_KEYS);
        assert_eq!(live.top_consumers(1)[0].0, "k0");
        let live = Live::new();
        live.record(&limited(&consumer("a")), 0);
        live.record(&limited(&LimitKey::Route("r".into(), "b".into())), 0);
        live.record(&limited(&consumer("b")), TOP_PERIOD_S); // the next period: both still count
        assert_eq!(
            live.top_consumers(2),
            vec![("b".to_string(), 2), ("a".to_string(), 1)]
        );
        live.record(&limited(&consumer("c")), TOP_PERIOD_S * 5); // long after: forgotten
        assert_eq!(live.top_consumers(5), vec![("c".to_string(), 1)]);
        assert!(live.top_ips(5).is_empty());
    }

    #[test]
    fn counts_from_two_threads_are_summed_when_read() {
        let live = Live::new();
        let barrier = std::sync::Barrier::new(2);
        let v6: IpAddr = "2001:db8:1:2::".parse().expect("ip");
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..100 {
                        live.record(&limited(&consumer("alice")), 1000);
                        live.record(&limited(&LimitKey::Ip([192, 0, 2, 7].into())), 1000);
                        live.record(&limited(&LimitKey::Ip(v6)), 1000);
                    }
                });
            }
        });
        let second = live.second(1000).expect("second 1000");
        assert_eq!(
            (second.requests, second.limited, second.errors_5xx),
            (600, 600, 0)
        );
        assert_eq!(second.latency.iter().sum::<u64>(), 600);
        assert!(live.second(999).is_none());
        assert_eq!(live.top_consumers(5), vec![("alice".to_string(), 200)]);
        assert_eq!(
            live.top_ips(5),
            vec![
                ("192.0.2.7".to_string(), 200),
                ("2001:db8:1:2::/64".to_string(), 200)
            ]
        );
    }
}
