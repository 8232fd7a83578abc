//! The request path without the network: route matching, the whole
//! `request_filter` decision (route → JWT from the cache → local bucket → global
//! window) on a prepared request, as `Gateway::decide` runs it, and the choice of an
//! upstream target as `upstream_peer` makes it.

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

/// A pool of `n` targets with breakers (one failure opens one for an hour), all of
/// them candidates, or only one when `one_left`: the others' breakers are opened the
/// way requests open them, which takes them out of the candidates as an unhealthy
/// target is taken out.
fn pool(n: u16, balance: &str, one_left: bool) -> floodgate::upstream::Pool {
    use floodgate::upstream::pool::Selection;
    let targets: Vec<String> = (0..n)
        .map(|i| format!("\"10.0.{}.{}:8080\"", i / 200, 1 + i % 200))
        .collect();
    let text = format!(
        "listen: [\"127.0.0.1:18080\"]\nadmin: {{ listen: \"127.0.0.1:19091\" }}\n\
         upstreams:\n  b:\n    targets: [{}]\n    balance: {balance}\n    \
         breaker: {{ failures: 1, window_s: 60, open_s: 3600 }}\n\
         routes: [{{ name: r, path_prefix: /, upstream: b }}]\n",
        targets.join(", ")
    );
    let config = floodgate::config::parse(&text, |_| None).unwrap_or_else(|p| panic!("{p:?}"));
    let upstream = &config.upstreams[0];
    let (pool, _) = floodgate::upstream::Pool::build(upstream, upstream.targets.clone(), &config.dns, &[]);
    if one_left {
        let mut key = 0u32;
        while pool.candidates().len() > 1 {
            key += 1;
            if let Selection::Target {
                ticket: Some(ticket), ..
            } = pool.select(&key.to_le_bytes(), &[])
            {
                pool.report(ticket, Some(false));
            }
        }
    }
    pool
}

fn select(c: &mut Criterion) {
    let mut group = c.benchmark_group("upstream_select");
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(2));
    for balance in ["round_robin", "random", "consistent_hash"] {
        for (one_left, state) in [(false, "all_up"), (true, "one_up")] {
            for n in [4u16, 40, 400] {
                let pool = pool(n, balance, one_left);
                let mut client = 0u32;
                group.bench_function(format!("{balance}/{state}/{n}"), |b| {
                    b.iter(|| {
                        client = client.wrapping_add(1);
                        black_box(pool.select(black_box(&client.to_le_bytes()), &[]))
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench, select);
criterion_main!(benches);
