//! Rate-limit decisions: the sharded token buckets against a single
//! `Mutex<HashMap>` (the naive baseline), for one hot key, across 1M keys, and
//! from two threads at once; the global window check; memory for 1M keys.

use criterion::{criterion_group, criterion_main, Criterion};
use floodgate::config::Bucket;
use floodgate::ratelimit::global::{ClusterView, GlobalWindow};
use floodgate::ratelimit::local::{LocalLimiter, Supply};
use floodgate::vocab::limit_key::LimitKey;
use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARAMS: Bucket = Bucket {
    rate: 1e9,
    burst: 1e9,
};
const KEYS: u32 = 1_000_000;

/// The baseline: one lock around one map, the same bucket arithmetic.
#[derive(Default)]
struct Naive(Mutex<HashMap<LimitKey, (f64, u64)>>);

impl Naive {
    fn take(&self, key: &LimitKey, now_ns: u64) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = map.entry(key.clone()).or_insert((PARAMS.burst, now_ns));
        *tokens = (*tokens + (now_ns - *last) as f64 / 1e9 * PARAMS.rate).min(PARAMS.burst);
        *last = now_ns;
        let ok = *tokens >= 1.0;
        if ok {
            *tokens -= 1.0;
        }
        ok
    }
}

fn ip(i: u32) -> LimitKey {
    LimitKey::Ip(IpAddr::from(i.to_be_bytes()))
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// Two threads taking from their own keys at once: wall time for `iters` each.
type Take = Arc<dyn Fn(&LimitKey, u64) + Send + Sync>;

fn two_threads(iters: u64, take: Take) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..2u32)
        .map(|t| {
            let take = take.clone();
            std::thread::spawn(move || {
                let keys: Vec<LimitKey> = (0..1024).map(|i| ip(t * 1024 + i)).collect();
                for n in 0..iters {
                    take(&keys[(n % 1024) as usize], n);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    start.elapsed()
}

fn bench_local(c: &mut Criterion) {
    let mut group = c.benchmark_group("local_decision");
    let sharded = LocalLimiter::new(1 << 21);
    let naive = Naive::default();
    let hot = LimitKey::Consumer(Arc::from("hot-consumer"));
    let mut now = 0u64;
    group.bench_function("hot_key/sharded", |b| {
        b.iter(|| {
            now += 1;
            black_box(sharded.take(&hot, PARAMS, 1.0, now, Supply::Alone))
        })
    });
    group.bench_function("hot_key/mutex_hashmap", |b| {
        b.iter(|| {
            now += 1;
            black_box(naive.take(&hot, now))
        })
    });
    let keys: Vec<LimitKey> = (0..KEYS).map(ip).collect();
    let mut i = 0usize;
    group.bench_function("1M_keys/sharded", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(sharded.take(&keys[i], PARAMS, 1.0, i as u64, Supply::Alone))
        })
    });
    group.bench_function("1M_keys/mutex_hashmap", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(naive.take(&keys[i], i as u64))
        })
    });
    let sharded = Arc::new(LocalLimiter::new(1 << 21));
    let naive = Arc::new(Naive::default());
    group.bench_function("two_threads/sharded", |b| {
        let s = sharded.clone();
        b.iter_custom(|iters| {
            let s = s.clone();
            two_threads(
                iters,
                Arc::new(move |k, n| {
                    black_box(s.take(k, PARAMS, 1.0, n, Supply::Alone));
                }),
            )
        })
    });
    group.bench_function("two_threads/mutex_hashmap", |b| {
        let s = naive.clone();
        b.iter_custom(|iters| {
            let s = s.clone();
            two_threads(
                iters,
                Arc::new(move |k, n| {
                    black_box(s.take(k, n));
                }),
            )
        })
    });
    group.finish();
}

fn bench_global(c: &mut Criterion) {
    let window = GlobalWindow::new("api".into(), u64::MAX / 2, 1000);
    let mut now = 1_700_000_000_000u64;
    c.bench_function("global_window_check", |b| {
        b.iter(|| {
            now += 1;
            black_box(window.try_take(1, now, ClusterView::Synced { instances: 3 }))
        })
    });
}

fn report_memory(_c: &mut Criterion) {
    let before = resident_bytes();
    let limiter = LocalLimiter::new(1 << 21);
    for i in 0..KEYS {
        limiter.take(&ip(i), PARAMS, 1.0, 0, Supply::Alone);
    }
    let after = resident_bytes();
    println!(
        "memory for {} anonymous buckets: {:.1} MiB ({} bytes per key)",
        limiter.len(),
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) / u64::from(KEYS)
    );
}

criterion_group!(benches, report_memory, bench_local, bench_global);
criterion_main!(benches);
