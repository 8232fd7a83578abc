//! The request path without the network: route matching, and the whole
//! `request_filter` decision (route → JWT from the cache → local bucket → global
//! window) on a prepared request, as `Gateway::decide` runs it.

use criterion::{criterion_group, criterion_main, Criterion};
use floodgate::proxy::ctx::RequestCtx;
use std::hint::black_box;
use std::net::IpAddr;

mod support;

use support::request;

fn config(auth_route: &str) -> String {
    support::config_with(&format!(
        r#"  - {{ name: health, path_prefix: /health, respond: {{ status: 200, body: ok }}, auth: none }}
  - {{ name: users, path_prefix: /api/users/, upstream: backend, {auth_route} }}
  - {{ name: orders, path_prefix: /api/orders/, upstream: backend }}
  - {{ name: reports, path_prefix: /api/reports/, upstream: backend, cost: 5 }}
  - {{ name: api, path_prefix: /api/, upstream: backend, global_limit: {{ rate: 1000000000, per_s: 1 }} }}
  - {{ name: static, path_prefix: /static/, upstream: backend, auth: none }}
"#
    ))
}

fn gateway(auth_route: &str) -> floodgate::proxy::Gateway {
    support::gateway(&config(auth_route))
}

fn bench(c: &mut Criterion) {
    let now = jsonwebtoken::get_current_timestamp();
    let token = support::token(now);
    let peer: IpAddr = [192, 0, 2, 7].into();

    let open = gateway("auth: none");
    let secured = gateway("auth: required");
    let plain = request("/api/users/42", None);
    let with_jwt = request("/api/users/42", Some(&token));
    let mut now_ns = now * 1_000_000_000;

    let mut group = c.benchmark_group("request_filter");
    group.bench_function("route_only", |b| {
        b.iter(|| {
            now_ns += 1000;
            let mut ctx = RequestCtx::default();
            black_box(matches!(
                open.decide(black_box(&plain), Some(peer), &mut ctx, now_ns),
                floodgate::proxy::decide::Verdict::Proxy
            ))
        })
    });
    group.bench_function("jwt_cache_hit_and_local_limit", |b| {
        b.iter(|| {
            now_ns += 1000;
            let mut ctx = RequestCtx::default();
            let verdict = secured.decide(black_box(&with_jwt), Some(peer), &mut ctx, now_ns);
            assert!(matches!(verdict, floodgate::proxy::decide::Verdict::Proxy));
        })
    });
    let global = request("/api/things", Some(&token));
    group.bench_function("jwt_local_and_global_limit", |b| {
        b.iter(|| {
            now_ns += 1000;
            let mut ctx = RequestCtx::default();
            let verdict = secured.decide(black_box(&global), Some(peer), &mut ctx, now_ns);
            assert!(matches!(verdict, floodgate::proxy::decide::Verdict::Proxy));
        })
    });
    group.finish();

    let table = floodgate::routing::RouteTable::new(
        floodgate::config::parse(&config("auth: none"), |_| None)
            .unwrap_or_else(|p| panic!("{p:?}"))
            .routes,
    );
    let get = http::Method::GET;
    c.bench_function("route_match", |b| {
        b.iter(|| black_box(table.find(Some("api.example.test"), &get, black_box("/api/orders/17/items"))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
