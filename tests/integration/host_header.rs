//! The Host a request names: a route scoped to one host cannot be missed by another spelling
//! of it, a host with an empty label or that is no RFC 3986 authority is refused, and an
//! absolute-form target reaches the upstream in origin form with its host.

use crate::common::*;
use std::time::Duration;

#[test]
fn another_spelling_of_a_scoped_host_cannot_miss_its_route() {
    let up = Upstream::start("u");
    let gw = host_scoped_gateway(&up);
    let cases: [(&[u8], u16); 6] = [
        (
            b"GET /secret HTTP/1.1\r\nHost: admin.internal\r\nConnection: close\r\n\r\n",
            401,
        ),
        // HTTP/1.0 with an absolute-form target and no Host: the target names the host.
        (b"GET http://admin.internal/secret HTTP/1.0\r\n\r\n", 401),
        (
            b"GET /secret HTTP/1.1\r\nHost: admin.internal.\r\nConnection: close\r\n\r\n",
            401,
        ),
        (
            b"GET /secret HTTP/1.1\r\nHost: admin.internal.:80\r\nConnection: close\r\n\r\n",
            401,
        ),
        (
            b"GET /secret HTTP/1.1\r\nHost: admin%2einternal\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET http://admin.internal/secret HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
            400,
        ),
    ];
    for (raw, status) in cases {
        let r = raw_request(gw.addr, raw);
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(raw));
    }
    for raw in [
        &b"GET /x HTTP/1.1\r\nHost: [::1]evil.example\r\nConnection: close\r\n\r\n"[..],
        b"GET /x HTTP/1.1\r\nHost: [::1]/../x\r\nConnection: close\r\n\r\n",
    ] {
        assert_eq!(
            raw_request(gw.addr, raw).status,
            400,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(up.hits(), 0, "nothing reached the upstream");
    let open = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(open.status, 200);
}

#[test]
fn a_host_with_an_empty_label_is_refused_and_one_trailing_dot_is_not() {
    let up = Upstream::start("u");
    let gw = host_scoped_gateway(&up);
    for host in ["b.example..", ".b.example", "a..b", "a..b:80", "admin.internal.."] {
        let raw = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let r = raw_request(gw.addr, raw.as_bytes());
        assert_eq!(r.status, 400, "Host: {host}");
        assert_eq!(r.json()["error"], "bad_request", "Host: {host}");
    }
    assert_eq!(up.hits(), 0, "a host with an empty label was forwarded");
    let fqdn = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: b.example.\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(fqdn.status, 200, "{}", fqdn.text());
}

#[test]
fn a_target_reaches_the_upstream_in_origin_form_with_its_host_and_only_if_it_is_utf8() {
    let up = Upstream::start("u");
    let gw = guarded_gateway(&up);
    for raw in [
        // HTTP/1.0 allows no Host: the target's authority becomes it.
        &b"GET http://origin.test/pub/a?q=1 HTTP/1.0\r\n\r\n"[..],
        b"GET http://origin.test/pub/a?q=1 HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n",
    ] {
        let r = raw_request(gw.addr, raw);
        assert_eq!(r.status, 200, "{}: {}", show(raw), r.text());
        assert_eq!(r.json()["url"], "/pub/a?q=1", "{}", show(raw));
        assert_eq!(
            r.upstream_header("host").as_deref(),
            Some("origin.test"),
            "{}",
            show(raw)
        );
    }
    // Bytes that are not UTF-8 would be routed and forwarded as a lossy rendering.
    let hits = up.hits();
    let r = raw_request(
        gw.addr,
        b"GET /pub/a\xff HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(up.hits(), hits, "nothing reached the upstream");
}

#[test]
fn a_host_that_is_not_an_rfc_3986_authority_is_refused() {
    let up = Upstream::start("u");
    let gw = guarded_gateway(&up);
    for raw in [
        &b"GET /pub/h HTTP/1.1\r\nHost: evil.test/abc?\r\n\r\n"[..],
        b"GET /pub/h HTTP/1.1\r\nHost: a:99999\r\n\r\n",
        b"GET /pub/h HTTP/1.1\r\nHost: a b\r\n\r\n",
    ] {
        let (r, mut conn) = answer_on_new_connection(gw.addr, raw);
        assert_eq!(r.status, 400, "{}", show(raw));
        assert_eq!(r.json()["error"], "bad_request");
        assert!(
            closed_by_server(&mut conn, Duration::from_secs(5)),
            "left open after {}",
            show(raw)
        );
    }
    assert_eq!(up.hits(), 0, "a request with a bad Host reached the upstream");

    for (raw, host) in [
        (
            &b"GET /pub/h HTTP/1.1\r\nHost: example.test:8080\r\nConnection: close\r\n\r\n"[..],
            "example.test:8080",
        ),
        (
            b"GET /pub/h HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n",
            "[::1]:80",
        ),
    ] {
        let r = raw_request(gw.addr, raw);
        assert_eq!(r.status, 200, "{}: {}", show(raw), r.text());
        assert_eq!(r.upstream_header("host").as_deref(), Some(host));
        assert_eq!(r.upstream_header("x-forwarded-host").as_deref(), Some(host));
    }
}
