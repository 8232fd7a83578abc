//! Runtime API keys at 1k, 100k and 1M: a write (a key inserted, then revoked)
//! and a lookup in the sharded store, against what it replaced (the whole map
//! copied per write behind an `ArcSwap`) as the baseline; a cached verification
//! (what a request with a runtime key pays); memory per key at 1M. The state
//! file's part of a write at 1k and 1M (a synced journal line, against the whole
//! file rewritten, which it replaced), and its read at start-up at 1M. A deep
//! page of the consumers list at 1M, after a cursor and by number.

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use floodgate::auth::api_key::ApiKeys;
use floodgate::consumers::keys::{RuntimeKey, RuntimeKeys};
use floodgate::consumers::overrides::TierOverrides;
use floodgate::consumers::stored::{Change, StateDoc};
use floodgate::services::admin::consumer_list::Names;
use floodgate::services::state_file::{StateFile, StateFileWriter};
use floodgate::vocab::ids::TierId;
use http::HeaderName;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
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

/// A state file of `n` keys, written as a compaction writes it.
fn state_doc(n: u64) -> StateDoc {
    StateDoc {
        keys: (0..n).map(|i| key(i).to_stored(&[])).collect(),
        ..StateDoc::default()
    }
}

/// The baseline: what every write did before the journal, the whole state
/// rewritten (pretty JSON to a temporary file, fsync, rename, fsync of the directory).
fn rewrite_whole(path: &Path, doc: &mut StateDoc, change: &Change) {
    match change {
        Change::AddKey(key) => doc.keys.push(key.clone()),
        Change::RevokeKey { key_id } => doc.keys.retain(|k| k.key_id != *key_id),
        _ => unreachable!("keys only"),
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).expect("temporary");
    file.write_all(&serde_json::to_vec_pretty(doc).expect("json"))
        .expect("write");
    file.sync_all().expect("sync");
    std::fs::rename(&tmp, path).expect("rename");
    std::fs::File::open(path.parent().expect("dir"))
        .and_then(|d| d.sync_all())
        .expect("directory sync");
}

fn bench_state_file(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_file_write");
    group.sample_size(10);
    for n in [1_000, 1_000_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let mut doc = state_doc(n);
        std::fs::write(&path, serde_json::to_vec(&doc).expect("json")).expect("snapshot");
        // On disk before the clock starts: its write-back would slow the journal's syncs.
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .expect("snapshot synced");
        let start = Instant::now();
        let StateFile {
            doc: read, journal, ..
        } = StateFile::read(&path, &[]).expect("readable");
        println!(
            "state file: {} keys ({:.1} MiB) read at start-up in {:.0} ms",
            read.keys.len(),
            std::fs::metadata(&path).expect("snapshot").len() as f64 / (1 << 20) as f64,
            start.elapsed().as_secs_f64() * 1000.0
        );
        drop(read);
        let writer = StateFileWriter::open(path.clone(), journal).expect("open");
        let mut i = n;
        let mut write = |save: &mut dyn FnMut(&Change)| {
            i += 1;
            let added = key(i).to_stored(&[]);
            let key_id = added.key_id.clone();
            save(&Change::AddKey(added));
            save(&Change::RevokeKey { key_id });
        };
        group.bench_function(format!("insert_revoke/journal/{n}"), |b| {
            b.iter(|| write(&mut |change| writer.save(change).expect("saved")))
        });
        let whole = dir.path().join("whole.json");
        group.bench_function(format!("insert_revoke/whole_file_rewrite/{n}"), |b| {
            b.iter(|| write(&mut |change| rewrite_whole(&whole, &mut doc, change)))
        });
    }
    group.finish();
}

fn bench_listing(c: &mut Criterion) {
    let mut group = c.benchmark_group("consumers_list");
    let n = 1_000_000;
    let keys = filled(n);
    let (configured, overrides) = (BTreeSet::new(), TierOverrides::default());
    let names = Names {
        runtime_keys: &keys,
        configured: &configured,
        overrides: &overrides,
    };
    // The page at 990,000 consumers in, and the cursor that ends the one before.
    let (page, per_page) = (9_901, 100);
    let (_, before) = names.numbered(page - 1, per_page);
    let cursor = before.last().expect("a full page").0.clone();
    assert_eq!(
        names.after(Some(&cursor), per_page),
        names.numbered(page, per_page).1
    );
    group.bench_function(format!("deep_page/after_cursor/{n}"), |b| {
        b.iter(|| black_box(names.after(Some(&cursor), per_page)))
    });
    group.bench_function(format!("deep_page/numbered/{n}"), |b| {
        b.iter(|| black_box(names.numbered(page, per_page)))
    });
    group.bench_function(format!("first_page/after_cursor/{n}"), |b| {
        b.iter(|| black_box(names.after(None, per_page)))
    });
    group.finish();
}

criterion_group!(
    benches,
    report_memory,
    bench_write,
    bench_lookup,
    bench_state_file,
    bench_listing
);
criterion_main!(benches);
