//! Heap allocations per request of `request_filter`'s decision (`Gateway::decide`),
//! counted by a counting global allocator: the plain path (a route, no auth, no
//! limit) and the full one (JWT from the cache, the consumer's bucket, a global
//! window). Fails loudly when a change allocates more than the budget below, under
//! `cargo bench` and under `cargo test --all-targets` alike.
//!
//! cargo bench --bench allocations

use floodgate::proxy::ctx::RequestCtx;
use pingora_http::RequestHeader;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Allocations per decision at most: raise them only on purpose.
const PLAIN_BUDGET: u64 = 0;
const FULL_BUDGET: u64 = 0;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as for `alloc`; `ptr` and `layout` are the caller's, unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

mod support;

use support::request;

fn gateway() -> floodgate::proxy::Gateway {
    support::gateway(&support::config_with(
        r#"  - { name: plain, path_prefix: /plain/, upstream: backend, auth: none }
  - { name: api, path_prefix: /api/, upstream: backend, global_limit: { rate: 1000000000, per_s: 1 } }
"#,
    ))
}

/// (allocations, bytes) per decision, over `n` decisions after a warm-up (caches filled).
fn per_request(gw: &floodgate::proxy::Gateway, req: &RequestHeader, n: u64, now_ns: &mut u64) -> (f64, f64) {
    let peer: IpAddr = [192, 0, 2, 7].into();
    let mut run = |count: u64| {
        for _ in 0..count {
            *now_ns += 1000;
            let mut ctx = RequestCtx::default();
            black_box(matches!(
                gw.decide(black_box(req), Some(peer), &mut ctx, *now_ns),
                floodgate::proxy::decide::Verdict::Proxy
            ));
            black_box(&ctx);
        }
    };
    run(100);
    let (a0, b0) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    run(n);
    let (a1, b1) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

fn main() {
    // The counter itself counts (else every budget would pass).
    let before = ALLOCS.load(Ordering::Relaxed);
    black_box(Vec::<u8>::with_capacity(64));
    assert!(
        ALLOCS.load(Ordering::Relaxed) > before,
        "the counting allocator is not in use"
    );
    let n = if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        2_000
    };
    let now = jsonwebtoken::get_current_timestamp();
    let token = support::token(now);
    let gw = gateway();
    let mut now_ns = now * 1_000_000_000;
    let (plain_allocs, plain_bytes) = per_request(&gw, &request("/plain/x", None), n, &mut now_ns);
    let (full_allocs, full_bytes) = per_request(&gw, &request("/api/x", Some(&token)), n, &mut now_ns);
    println!("decide, plain path: {plain_allocs:.2} allocations, {plain_bytes:.0} bytes per request");
    println!("decide, full path (JWT + bucket + global window): {full_allocs:.2} allocations, {full_bytes:.0} bytes per request");
    assert!(
        plain_allocs <= PLAIN_BUDGET as f64,
        "the plain path allocates {plain_allocs:.2} times per request, budget {PLAIN_BUDGET}"
    );
    assert!(
        full_allocs <= FULL_BUDGET as f64,
        "the full path allocates {full_allocs:.2} times per request, budget {FULL_BUDGET}"
    );
}
