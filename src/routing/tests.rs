//! The route table against the linear scan it replaced, kept here as the oracle.

use super::*;
use crate::config::{AuthPolicy, RouteAccess, RouteAction, RouteLimits, RouteMatch, StaticAnswer};

fn route(name: &str, prefix: &str, host: Option<&str>, methods: Option<Vec<Method>>) -> Route {
    Route {
        name: name.into(),
        matching: RouteMatch {
            path_prefix: prefix.into(),
            host: host.map(Into::into),
            methods,
        },
        action: RouteAction::Respond(StaticAnswer {
            status: 200,
            body: String::new(),
            content_type: String::new(),
        }),
        access: RouteAccess {
            auth: AuthPolicy::None,
            tiers: None,
            allow_ambiguous_paths: false,
            allow_underscore_headers: false,
        },
        limits: RouteLimits {
            cost: 1,
            global_limit: None,
            tier_limits: None,
            quota: None,
        },
        policies: Default::default(),
    }
}

#[test]
fn longest_prefix_then_host_then_methods() {
    let table = RouteTable::new(vec![
        route("root", "/", None, None),
        route("api", "/api/", None, None),
        route("reports", "/api/reports", None, None),
        route("api-example", "/api/", Some("example.test"), None),
        route("api-post", "/api/", None, Some(vec![Method::POST])),
    ]);
    let find = |host, method, path| table.find(host, &method, path).map(|(_, r)| r.name.as_str());
    assert_eq!(find(None, Method::GET, "/api/reports/1"), Some("reports"));
    assert_eq!(find(None, Method::GET, "/api/users"), Some("api"));
    assert_eq!(find(None, Method::POST, "/api/users"), Some("api-post"));
    assert_eq!(
        find(Some("example.test"), Method::POST, "/api/x"),
        Some("api-example")
    );
    assert_eq!(find(None, Method::GET, "/other"), Some("root"));
    let no_root = RouteTable::new(vec![route("api", "/api/", None, None)]);
    assert!(no_root.find(None, &Method::GET, "/apix").is_none());
}

#[test]
fn a_routes_id_is_its_place_in_the_config_whatever_the_match_order() {
    let table = RouteTable::new(vec![
        route("root", "/", None, None),
        route("api", "/api/", None, None),
    ]);
    let (id, route) = table.find(None, &Method::GET, "/api/x").expect("api");
    assert_eq!((id, route.name.as_str()), (RouteId(1), "api"));
    assert_eq!(table.routes()[RouteId(0)].name, "root");
}

/// The table before the trees: every route in match order (longest prefix first;
/// among equal prefixes, routes with a host, then with methods), the first that
/// accepts the request wins.
fn linear(routes: &[&Route], host: Option<&str>, method: &Method, path: &str) -> Option<usize> {
    let mut order: Vec<usize> = (0..routes.len()).collect();
    order.sort_by_key(|i| {
        let m = &routes[*i].matching;
        (
            std::cmp::Reverse(m.path_prefix.len()),
            m.host.is_none(),
            m.methods.is_none(),
        )
    });
    order.into_iter().find(|i| {
        let m = &routes[*i].matching;
        path.starts_with(m.path_prefix.as_str())
            && m.host
                .as_deref()
                .is_none_or(|h| host.is_some_and(|host| h.eq_ignore_ascii_case(host)))
            && m.methods.as_ref().is_none_or(|ms| ms.contains(method))
    })
}

fn purge() -> Method {
    Method::from_bytes(b"PURGE").expect("method")
}

/// A random string over a few bytes, so prefixes share parts and extend each other
/// (`é` is two bytes: trees split inside characters).
fn piece(rng: &mut fastrand::Rng, max: usize) -> String {
    const PARTS: [&str; 6] = ["/", "a", "b", "ab", "é", "/v1"];
    (0..rng.usize(0..=max))
        .map(|_| PARTS[rng.usize(..PARTS.len())])
        .collect()
}

#[test]
fn finds_what_the_linear_scan_finds() {
    let mut rng = fastrand::Rng::with_seed(27);
    let hosts = ["a.test", "b.test", "xn--e.test"];
    let request_hosts = [
        None,
        Some("a.test"),
        Some("A.Test"),
        Some("b.test"),
        Some("c.test"),
    ];
    let methods = [Method::GET, Method::POST, Method::PUT, purge()];
    let mut compared = 0;
    for set in 0..400 {
        let routes: Vec<Route> = (0..rng.usize(1..40))
            .map(|i| {
                let prefix = match rng.u8(..4) {
                    0 => "/".to_string(),
                    _ => format!("/{}", piece(&mut rng, 4)),
                };
                let host = rng.bool().then(|| hosts[rng.usize(..hosts.len())]);
                let route_methods = rng.bool().then(|| {
                    let mut ms: Vec<Method> = methods.iter().filter(|_| rng.u8(..3) == 0).cloned().collect();
                    ms.dedup();
                    ms
                });
                route(&format!("r{set}-{i}"), &prefix, host, route_methods)
            })
            .collect();
        let table = RouteTable::new(routes);
        let routes: Vec<&Route> = table.routes().iter().collect();
        for _ in 0..60 {
            // Prefixes of a route's prefix, the prefix itself, extensions and others.
            let base = &routes[rng.usize(..routes.len())].matching.path_prefix;
            let path = match rng.u8(..4) {
                0 => base[..base
                    .char_indices()
                    .nth(rng.usize(..=base.chars().count()))
                    .map_or(base.len(), |(i, _)| i)]
                    .to_string(),
                1 => base.clone(),
                2 => format!("{base}{}", piece(&mut rng, 3)),
                _ => format!("/{}", piece(&mut rng, 5)),
            };
            let host = request_hosts[rng.usize(..request_hosts.len())];
            let method = &methods[rng.usize(..methods.len())];
            let expected = linear(&routes, host, method, &path);
            let got = table.find(host, method, &path).map(|(id, _)| id.0);
            assert_eq!(got, expected, "{host:?} {method} {path:?} in set {set}");
            compared += 1;
        }
    }
    assert_eq!(compared, 400 * 60);
}

/// 2,500 prefixes, nested 50 deep in places, each taken by four routes: with a host
/// and methods, with a host, with methods, with neither. A request made for each
/// route reaches it.
#[test]
fn every_one_of_10_000_routes_is_reachable() {
    let prefix = |i: usize| format!("/t/{}/{}", i / 50, "s".repeat(i % 50));
    let mut routes = Vec::new();
    let mut requests = Vec::new();
    for i in 0..2_500 {
        let (p, host) = (prefix(i), format!("h{}.test", i % 7));
        for (host, methods, asks, method) in [
            (
                Some(host.as_str()),
                Some(vec![Method::POST]),
                Some(host.to_uppercase()),
                Method::POST,
            ),
            (Some(host.as_str()), None, Some(host.clone()), Method::GET),
            (
                None,
                Some(vec![Method::PUT, purge()]),
                Some("other.test".into()),
                purge(),
            ),
            (None, None, None, Method::GET),
        ] {
            requests.push((asks, method, p.clone()));
            routes.push(route(&format!("r{}", routes.len()), &p, host, methods));
        }
    }
    let table = RouteTable::new(routes);
    for (id, (host, method, path)) in requests.iter().enumerate() {
        // The path itself, and one that ends off the tree below its prefix.
        for path in [path.clone(), format!("{path}-")] {
            let found = table.find(host.as_deref(), method, &path).map(|(id, _)| id.0);
            assert_eq!(found, Some(id), "{host:?} {method} {path}");
        }
    }
    assert_eq!(requests.len(), 10_000);
}
