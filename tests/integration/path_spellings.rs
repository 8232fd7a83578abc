//! Paths that upstreams decode differently (encoded dots and slashes, backslashes, matrix
//! parameters, NUL) are refused and never forwarded; a route that allows them forwards exactly
//! what it routed.

use crate::common::*;

#[test]
fn paths_upstreams_decode_differently_are_refused_and_never_forwarded() {
    let up = Upstream::start("u");
    let gw = guarded_gateway(&up);
    // The protected routes are protected: the spellings below would walk into them.
    assert_eq!(get(gw.addr, "/api/secret.txt").status, 401);
    assert_eq!(get(gw.addr, "/docs/private/x").status, 401);

    let ambiguous: [&[u8]; 10] = [
        b"GET /pub/..%2Fapi/secret.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /pub/..%2fapi/secret.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /pub/%2e%2e%2fapi/secret.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /pub/..%5capi/secret.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /pub/..%5Capi/secret.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /pub/..\\api/secret.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /docs/private;x=1/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /docs/private%3Bx=1/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /docs/private%3bx=1/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /pub/secret.txt%00.png HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ];
    for raw in ambiguous {
        let r = raw_request(gw.addr, raw);
        assert_eq!(r.status, 400, "{}: {}", show(raw), r.text());
        assert_eq!(r.json()["error"], "bad_request", "{}", show(raw));
        assert!(r.header("x-request-id").is_some());
    }
    assert_eq!(up.hits(), 0, "an ambiguous path reached the upstream");
    let r = get(gw.addr, "/pub/secret.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["url"], "/pub/secret.txt");
}

#[test]
fn a_route_allowing_ambiguous_paths_forwards_exactly_what_it_routed() {
    let up = Upstream::start("u");
    let gw = guarded_gateway(&up);
    for (raw, upstream_sees) in [
        (
            &b"GET /raw/..%2Fapi/secret.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
            "/raw/..%2Fapi/secret.txt",
        ),
        // Unreserved escapes decoded, the others upper-cased: the form the route matched.
        (
            b"GET /raw/%2e%2e%2fapi/x;y=1/a\\b%5c%00?q=%2F HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "/raw/..%2Fapi/x;y=1/a\\b%5C%00?q=%2F",
        ),
        (
            b"GET /raw/doc;jsessionid=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "/raw/doc;jsessionid=1",
        ),
    ] {
        let r = raw_request(gw.addr, raw);
        assert_eq!(r.status, 200, "{}: {}", show(raw), r.text());
        assert_eq!(r.json()["url"], upstream_sees, "{}", show(raw));
    }
    assert_eq!(up.hits(), 3);
}
