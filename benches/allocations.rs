//! Heap allocations per request of floodgate's own work on the request path,
//! counted by a counting global allocator: `request_filter`'s decision
//! (`Gateway::decide`), the upstream request head (`Gateway::upstream_head`), the
//! response head (`Gateway::response_head`) and the access-log line. The plain path
//! (a route, no auth, no limit) and the full one (JWT from the cache, the consumer's
//! bucket, a global window). Fails loudly when a change allocates more than the
//! budgets below, under `cargo bench` and under `cargo test --all-targets` alike.
//! What Pingora allocates around these (its sessions, the head's copy, buffers) is
//! not counted here: `valgrind --tool=callgrind` on the release binary shows it.
//!
//! cargo bench --bench allocations

use floodgate::proxy::ctx::RequestCtx;
use floodgate::proxy::decide::Verdict;
use floodgate::proxy::forward::Hop;
use floodgate::telemetry::{AccessLine, LINE_CAPACITY};
use http::{request, response};
use pingora_http::{RequestHeader, ResponseHeader};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Allocations per decision at most: raise them only on purpose.
const PLAIN_BUDGET: u64 = 0;
const FULL_BUDGET: u64 = 0;
/// Allocations of the heads and the log line (its buffer is the queued line, not
/// counted). Plain: a new request id, and room for the forwarding headers in the
/// upstream head's map. Full: those, plus the rate-limit values a global window
/// makes per request (the policy and state lists, and the limit and remaining
/// counts past the table of small numbers: this tier is unlimited).
const PLAIN_HEADS_BUDGET: u64 = 2;
const FULL_HEADS_BUDGET: u64 = 8;

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

/// Allocations and bytes per request, over `n` requests after a warm-up (caches filled):
/// of the decision, and of the heads and the access-log line after it.
struct PerRequest {
    decide: (f64, f64),
    heads: (f64, f64),
}

fn counts() -> (u64, u64) {
    (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed))
}

fn per_request(gw: &floodgate::proxy::Gateway, req: &RequestHeader, n: u64, now_ns: &mut u64) -> PerRequest {
    let peer: IpAddr = [192, 0, 2, 7].into();
    let origin = || {
        let mut head = ResponseHeader::build_no_case(200, Some(8)).expect("response");
        head.insert_header("content-type", "text/plain").expect("header");
        head.insert_header("content-length", "3").expect("header");
        response::Parts::from(head)
    };
    let mut decide = (0, 0);
    let mut heads = (0, 0);
    let mut run = |count: u64, decide: &mut (u64, u64), heads: &mut (u64, u64)| {
        for _ in 0..count {
            *now_ns += 1000;
            // Pingora's parts of a request, made outside the counted spans.
            let mut ctx = RequestCtx::default();
            let mut upstream = request::Parts::from(req.clone());
            let mut answer = origin();
            let host = req.headers.get("host").cloned();
            let mut line = Vec::with_capacity(LINE_CAPACITY);

            let (a0, b0) = counts();
            let verdict = gw.decide(black_box(req), Some(peer), &mut ctx, *now_ns);
            assert!(matches!(verdict, Verdict::Proxy), "the request is proxied");
            let (a1, b1) = counts();
            let hop = Hop {
                peer: Some(peer),
                proto: Some("http"),
                host,
            };
            gw.upstream_head(&mut upstream, &ctx, hop).expect("upstream head");
            gw.response_head(&mut answer, &mut ctx);
            AccessLine {
                time_ms: *now_ns / 1_000_000,
                request_id: ctx.request_id.as_str(),
                route: Some("api"),
                method: "GET",
                path: upstream.uri.path(),
                status: 200,
                latency_ms: 0.25,
                upstream: Some(([127, 0, 0, 1], 18000).into()),
                consumer: ctx.identity.as_ref().map(|i| &*i.consumer),
                limited: ctx.limited(),
                client_ip: Some(peer),
                trace: None,
            }
            .write(&mut line);
            let (a2, b2) = counts();
            *decide = (decide.0 + a1 - a0, decide.1 + b1 - b0);
            *heads = (heads.0 + a2 - a1, heads.1 + b2 - b1);
            black_box((&upstream, &answer, &line));
        }
    };
    run(100, &mut (0, 0), &mut (0, 0));
    run(n, &mut decide, &mut heads);
    let per = |(a, b): (u64, u64)| (a as f64 / n as f64, b as f64 / n as f64);
    PerRequest {
        decide: per(decide),
        heads: per(heads),
    }
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
    let plain = per_request(&gw, &request("/plain/x", None), n, &mut now_ns);
    let full = per_request(&gw, &request("/api/x", Some(&token)), n, &mut now_ns);
    for (path, r) in [
        ("plain path", &plain),
        ("full path (JWT + bucket + global window)", &full),
    ] {
        println!(
            "{path}: decide {:.2} allocations, {:.0} bytes; heads and log line {:.2} allocations, {:.0} bytes per request",
            r.decide.0, r.decide.1, r.heads.0, r.heads.1
        );
    }
    for (what, got, budget) in [
        ("the plain path's decision", plain.decide.0, PLAIN_BUDGET),
        ("the full path's decision", full.decide.0, FULL_BUDGET),
        (
            "the plain path's heads and log line",
            plain.heads.0,
            PLAIN_HEADS_BUDGET,
        ),
        (
            "the full path's heads and log line",
            full.heads.0,
            FULL_HEADS_BUDGET,
        ),
    ] {
        assert!(
            got <= budget as f64,
            "{what} allocates {got:.2} times per request, budget {budget}"
        );
    }
}
