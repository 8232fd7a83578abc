//! A generated config of 10,000 routes through the real binary: the longest byte
//! prefix wins, then the route with a host, then the one with methods, whichever
//! of the 10,000 they are.

use crate::common::*;

/// `/t/0` .. `/t/9995` (so `/t/1` is a byte prefix of `/t/10` and `/t/1x`), three
/// more on `/t/1` bound to a host and methods, and `/`: 10,000 routes, each
/// answering its own name.
fn body() -> String {
    let mut routes = String::from("routes:\n");
    let mut add = |name: &str, prefix: &str, more: &str| {
        routes.push_str(&format!(
            "  - {{ name: {name}, path_prefix: \"{prefix}\"{more}, respond: {{ status: 200, body: {name} }} }}\n"
        ));
    };
    add("root", "/", "");
    add("t1-host-post", "/t/1", ", host: A.test, methods: [POST]");
    add("t1-host", "/t/1", ", host: a.test");
    add("t1-post", "/t/1", ", methods: [post]");
    for i in 0..9_996 {
        add(&format!("t{i}"), &format!("/t/{i}"), "");
    }
    routes
}

#[test]
fn ten_thousand_routes_resolve_by_prefix_then_host_then_method() {
    let body = body();
    assert_eq!(body.lines().count(), 1 + 10_000);
    let gw = Gateway::start(&body);
    let cases = [
        ("GET", "/t/1", None, "t1"),
        ("GET", "/t/1x", None, "t1"),
        ("GET", "/t/12/y", None, "t12"),
        // A longer prefix outranks a route's host and methods.
        ("POST", "/t/12/y", Some("a.test"), "t12"),
        ("GET", "/t/1/y", Some("A.TEST:8080"), "t1-host"),
        ("POST", "/t/1/y", Some("a.test"), "t1-host-post"),
        ("POST", "/t/1/y", Some("b.test"), "t1-post"),
        ("GET", "/t/9995", None, "t9995"),
        ("GET", "/t/", None, "root"),
        ("GET", "/other", None, "root"),
    ];
    for (method, path, host, expected) in cases {
        let headers: Vec<(&str, &str)> = host.map(|h| ("Host", h)).into_iter().collect();
        let resp = request(gw.addr, method, path, &headers, b"");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, expected),
            "{method} {path} on {host:?}"
        );
    }
}
