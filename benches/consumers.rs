//! Runtime API keys at 1k, 100k and 1M: a write (a key inserted, then revoked)
//! and a lookup in the sharded store, against what it replaced (the whole map
//! copied per write behind an `ArcSwap`) as the baseline; a cached verification
//! (what a request with a runtime key pays); memory per key at 1M.

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use floodgate::auth::api_key::ApiKeys;
use floodgate::consumers::keys::{RuntimeKey, RuntimeKeys};
use floodgate::vocab::ids::TierId;
use http::HeaderName;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

/// The gateway's allocator, so memory is what the gateway would hold.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [u64; 3] = [1_000, 100_000, 1_000_000];

fn secret(i: u64) -> String {
    format!("fg_bench-secret-{i}")
}

/// A key as the admin API makes one: a 12-hex-digit id; one consumer per key,
/// the most names the index can hold.
fn key(i: u64) -> RuntimeKey {
    RuntimeKey::new(
        format!("{i:012x}"),
        Arc::from(format!("consumer-{i}")),
        Sha256::digest(secret(i).as_bytes()).into(),
        None,
        1_700_000_000,
        None,
    )
}

fn filled(n: u64) -> RuntimeKeys {
    let keys = RuntimeKeys::default();
    for i in 0..n {
        keys.insert(key(i));
    }
    keys
}

/// The baseline: one map, copied whole by every write.
type WholeMap = ArcSwap<HashMap<[u8; 32], Arc<RuntimeKey>>>;

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

fn report_memory(_c: &mut Criterion) {
    let n = 1_000_000;
    let made: Vec<RuntimeKey> = (0..n).map(key).collect();
    let before = resident_bytes();
    let start = Instant::now();
    let keys = RuntimeKeys::default();
    for k in made {
        keys.insert(k);
    }
    let took = start.elapsed();
    let after = resident_bytes();
    println!(
        "runtime keys: {} inserted in {:.2} s, {:.1} MiB resident ({} bytes per key)",
        keys.len(),
        took.as_secs_f64(),
        after.saturating_sub(before) as f64 / (1 << 20) as f64,
        after.saturating_sub(before) / n
    );
}

fn bench_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("runtime_key_write");
    group.sample_size(10);
    for n in SIZES {
        let keys = filled(n);
        let mut i = n;
        group.bench_function(format!("insert_revoke/sharded/{n}"), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    key(i)
                },
                |k| {
                    let (consumer, id) = (k.consumer.clone(), k.key_id.clone());
                    keys.insert(k);
                    assert!(keys.remove(&consumer, &id));
                },
                BatchSize::SmallInput,
            )
        });
        let whole: WholeMap = ArcSwap::from_pointee(keys.all().into_iter().map(|k| (k.digest, k)).collect());
        drop(keys);
        group.bench_function(format!("insert_revoke/whole_map_copy/{n}"), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    Arc::new(key(i))
                },
                |k| {
                    whole.rcu(|m| {
                        let mut m = HashMap::clone(m);
                        m.insert(k.digest, k.clone());
                        m
                    });
                    whole.rcu(|m| {
                        let mut m = HashMap::clone(m);
                        m.remove(&k.digest);
                        m
                    });
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("runtime_key_lookup");
    for n in SIZES {
        let keys = Arc::new(filled(n));
        // Lookups spread over the whole set, in a fixed order.
        let digests: Vec<[u8; 32]> = (0..4096).map(|j| key(j * n / 4096).digest).collect();
        let mut j = 0;
        group.bench_function(format!("find/sharded/{n}"), |b| {
            b.iter(|| {
                j = (j + 1) % digests.len();
                black_box(keys.find(&digests[j]))
            })
        });
        let whole: WholeMap = ArcSwap::from_pointee(keys.all().into_iter().map(|k| (k.digest, k)).collect());
        group.bench_function(format!("find/whole_map/{n}"), |b| {
            b.iter(|| {
                j = (j + 1) % digests.len();
                black_box(whole.load().get(&digests[j]).cloned())
            })
        });
        let api_keys = ApiKeys::new(
            floodgate::config::ApiKeys {
                header: HeaderName::from_static("x-api-key"),
                keys: Vec::new(),
            },
            keys.clone(),
            TierId(0),
        );
        let hot = secret(n / 2);
        api_keys.verify(hot.as_bytes(), 1).expect("a runtime key");
        group.bench_function(format!("verify_cached/{n}"), |b| {
            b.iter(|| black_box(api_keys.verify(black_box(hot.as_bytes()), 1)))
        });
    }
    group.finish();
}

criterion_group!(benches, report_memory, bench_write, bench_lookup);
criterion_main!(benches);
