//! HTTP/1 framing the gateway will not trust: malformed heads, a body framed two ways (request
//! smuggling), an HTTP/2 preface on the HTTP/1 port, a huge declared body; each refused with a
//! clear status, the connection closed where its framing cannot be trusted, nothing reaching
//! the upstream. And an HTTP/1.0 connection closes as the client asked.

use crate::common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// Sends `raw` on a fresh connection (no `Connection: close`), expects `status`
/// and, for untrusted framing, the connection closed by the gateway.
fn expect_rejected(gw: &Gateway, raw: &[u8], status: u16) {
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(raw);
    let mut buf = Vec::new();
    let resp = read_one(&mut s, &mut buf).unwrap_or_else(|| {
        panic!(
            "no answer to {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        )
    });
    assert_eq!(
        resp.status,
        status,
        "{:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(120)])
    );
    assert!(resp.header("x-request-id").is_some());
    if status != 404 {
        assert_eq!(
            resp.json()["error"],
            if status == 431 {
                "headers_too_large"
            } else {
                "bad_request"
            }
        );
    }
    assert!(
        closed_by_server(&mut s, Duration::from_secs(5)),
        "connection left open after {status}"
    );
}

/// (request, status on a new connection, status later on a kept-alive one). Heads
/// over Pingora's own parser limit of 256 fields never reach our check on a kept-alive
/// connection: its parser refuses them first, with a 400.
fn bad_inputs() -> Vec<(Vec<u8>, u16, u16)> {
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        (0..150).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
    );
    let very_many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        (0..300).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
    );
    vec![
        (big.into_bytes(), 431, 431),
        (many.into_bytes(), 431, 431),
        (very_many.into_bytes(), 431, 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(), 400, 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(), 400, 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello".to_vec(), 400, 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\nhello".to_vec(), 400, 400),
        (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n".to_vec(), 400, 400),
    ]
}

#[test]
fn bad_requests_are_rejected_and_never_reach_the_upstream() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "");
    for (raw, status, _) in bad_inputs() {
        expect_rejected(&gw, &raw, status);
    }
    // Garbage request lines: Pingora's parser answers 400 and closes.
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"HELLO\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
    ] {
        let answer = raw_exchange(gw.addr, garbage);
        assert!(
            answer.starts_with(b"HTTP/1.1 400"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(up.hits(), 0);
    assert_eq!(get(gw.addr, "/still-serving").status, 200);
}

#[test]
fn bad_requests_later_on_a_kept_alive_connection_are_rejected_too() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "");
    for (raw, _, status) in bad_inputs() {
        let mut s = TcpStream::connect(gw.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = Vec::new();
        s.write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
            .expect("write");
        assert_eq!(read_one(&mut s, &mut buf).expect("first").status, 200);
        let _ = s.write_all(&raw);
        let resp = read_one(&mut s, &mut buf).expect("answer");
        assert_eq!(resp.status, status, "{:?}", String::from_utf8_lossy(&raw[..60]));
        assert!(closed_by_server(&mut s, Duration::from_secs(5)));
    }
    assert_eq!(
        up.hits(),
        bad_inputs().len(),
        "only the good first requests reached the upstream"
    );
}

/// Sends `raw` (after `first` and its answer, on the same connection, if given) and
/// expects a 400 as the only answer, then the connection closed: the parts after a head
/// whose framing cannot be trusted are never read as another request.
fn expect_refused_and_closed(gw: &Gateway, first: Option<&[u8]>, raw: &[u8]) {
    let shown = String::from_utf8_lossy(raw);
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = Vec::new();
    if let Some(first) = first {
        s.write_all(first).expect("write");
        assert_eq!(read_one(&mut s, &mut buf).expect("first").status, 200);
    }
    let _ = s.write_all(raw);
    let resp = read_one(&mut s, &mut buf).unwrap_or_else(|| panic!("no answer to {shown:?}"));
    assert_eq!(resp.status, 400, "{shown:?}");
    let rest = rest_until_closed(&mut s, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("left open after {shown:?}"));
    buf.extend_from_slice(&rest);
    assert!(
        buf.is_empty(),
        "more after the 400 to {shown:?}: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[test]
fn smuggling_variants_of_the_body_framing_are_refused_and_close_the_connection() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "");
    let variants: [&[u8]; 12] = [
        // TE.CL, with a request hidden in the body for whoever believes Content-Length.
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked, identity\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        // Obsolete line folding, with a space and with a tab.
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n\ttwo\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n Transfer-Encoding: chunked\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
    ];
    for raw in variants {
        expect_refused_and_closed(&gw, None, raw);
    }
    assert_eq!(up.hits(), 0, "a refused request reached the upstream");
    let first: &[u8] = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n";
    for raw in variants {
        expect_refused_and_closed(&gw, Some(first), raw);
    }
    assert_eq!(
        up.hits(),
        variants.len(),
        "only the good first requests reached the upstream"
    );
    assert_eq!(get(gw.addr, "/still-serving").status, 200);
}

#[test]
fn an_http2_preface_on_the_http1_port_is_refused() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "");
    for raw in [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        // As a client with prior knowledge sends it: the preface, then an empty SETTINGS frame.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    ] {
        let mut s = TcpStream::connect(gw.addr).expect("connect");
        let _ = s.write_all(raw);
        let answer = rest_until_closed(&mut s, Duration::from_secs(10)).expect("left open after the preface");
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 400 "),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(up.hits(), 0);
    assert_eq!(get(gw.addr, "/still-serving").status, 200);
    assert_eq!(get(gw.admin, "/health").status, 200);
}

#[test]
fn a_huge_declared_body_without_credentials_is_refused_before_it_is_sent() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&format!(
        "upstreams:\n  backend: {{ targets: [\"{}\"] }}\n\
         auth:\n  api_keys:\n    keys:\n      - {{ consumer: acme, key: \"{}\" }}\n\
         routes:\n  - {{ name: api, path_prefix: /api/, upstream: backend, auth: required }}\n  \
         - {{ name: pub, path_prefix: /pub/, upstream: backend, auth: none }}\n",
        up.addr,
        floodgate::auth::api_key::hash_key("a-key-nobody-sends")
    ));
    // The head alone; the answer is read before a single body byte is sent.
    let (resp, mut conn) = answer_on_new_connection(
        gw.addr,
        b"POST /api/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1073741824\r\n\r\n",
    );
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.json()["error"], "unauthorized");
    assert!(
        closed_by_server(&mut conn, Duration::from_secs(5)),
        "left open with 1 GB of body announced and unread"
    );
    assert_eq!(up.hits(), 0);
    assert_eq!(get(gw.addr, "/pub/still-serving").status, 200);
}

#[test]
fn an_http_1_0_request_without_keep_alive_closes_its_connection() {
    let up = Upstream::start("u");
    let gw = host_scoped_gateway(&up);
    for raw in [
        &b"GET /x HTTP/1.0\r\n\r\n"[..],
        b"GET /nowhere HTTP/1.0\r\nHost: www.test\r\n\r\n",
    ] {
        let (resp, mut stream) = answer_on_new_connection(gw.addr, raw);
        assert!(
            closed_by_server(&mut stream, Duration::from_secs(5)),
            "the connection stayed open after an HTTP/1.0 answer"
        );
        assert_ne!(resp.header("connection"), Some("keep-alive"));
    }
}
