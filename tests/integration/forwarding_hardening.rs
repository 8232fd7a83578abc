//! What the upstream receives is exactly what was routed and authorised: paths that
//! upstreams decode differently, header names with `_`, client claims about its own
//! address, `Connection` naming the Host or the framing, malformed Hosts and a
//! protocol switch nobody asked for (or to another protocol) never get through.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const API_KEY: &str = "acme-key-7f3a";

/// `/api/` and `/docs/private` need a key; `/pub/` and `/docs/` do not; `/raw/` and
/// `/legacy/` opt out of the path and underscore checks.
fn gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"
upstreams:
  backend: {{ targets: ["{addr}"] }}
auth:
  api_keys:
    header: X-API-Key
    keys:
      - {{ consumer: acme, key: "{digest}", tier: enterprise }}
routes:
  - {{ name: pub, path_prefix: /pub/, upstream: backend, auth: none }}
  - {{ name: api, path_prefix: /api/, upstream: backend, auth: required }}
  - {{ name: docs, path_prefix: /docs/, upstream: backend, auth: none }}
  - {{ name: private, path_prefix: /docs/private, upstream: backend, auth: required }}
  - {{ name: raw, path_prefix: /raw/, upstream: backend, auth: none, allow_ambiguous_paths: true }}
  - {{ name: legacy, path_prefix: /legacy/, upstream: backend, auth: required, allow_underscore_headers: true }}
"#,
        addr = up.addr,
        digest = floodgate::auth::api_key::hash_key(API_KEY),
    ))
}

fn show(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[test]
fn paths_upstreams_decode_differently_are_refused_and_never_forwarded() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
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
    let gw = gateway(&up);
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

#[test]
fn header_names_with_underscores_never_reach_the_upstream() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let spoofing_api: &[u8] = b"GET /api/u HTTP/1.1\r\nHost: a\r\nX-API-Key: acme-key-7f3a\r\n\
        X_Consumer_Id: admin\r\nX_Consumer_Tier: enterprise\r\nx-consumer_id: admin\r\n\
        X_API_Key: other-key\r\nX-Consumer-Id: spoofed\r\nX_Custom: 1\r\nConnection: close\r\n\r\n";
    let spoofing_legacy: &[u8] = b"GET /legacy/u HTTP/1.1\r\nHost: a\r\nX-API-Key: acme-key-7f3a\r\n\
        X_Consumer_Id: admin\r\nX_Consumer_Tier: enterprise\r\nx-consumer_id: admin\r\n\
        X_API_Key: other-key\r\nX-Consumer-Id: spoofed\r\nX_Custom: 1\r\nConnection: close\r\n\r\n";

    let r = raw_request(gw.addr, spoofing_api);
    assert_eq!(r.status, 200, "{}", r.text());
    // One value each (the echo joins repeated fields with ", "): the gateway's.
    assert_eq!(r.upstream_header("x-consumer-id").as_deref(), Some("acme"));
    assert_eq!(
        r.upstream_header("x-consumer-tier").as_deref(),
        Some("enterprise")
    );
    for gone in [
        "x_consumer_id",
        "x_consumer_tier",
        "x-consumer_id",
        "x_api_key",
        "x_custom",
        "x-api-key",
    ] {
        assert_eq!(r.upstream_header(gone), None, "{gone} reached the upstream");
    }

    // No caller at all: the upstream must not read one from an underscore spelling.
    let r = raw_request(
        gw.addr,
        b"GET /pub/u HTTP/1.1\r\nHost: a\r\nX_Consumer_Id: admin\r\nX_Consumer_Tier: enterprise\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for gone in [
        "x-consumer-id",
        "x-consumer-tier",
        "x_consumer_id",
        "x_consumer_tier",
    ] {
        assert_eq!(r.upstream_header(gone), None, "{gone} reached the upstream");
    }

    // A route that opts in forwards them, but never an underscore spelling of a header the
    // gateway owns, and never a client's X-Consumer-Id.
    let r = raw_request(gw.addr, spoofing_legacy);
    assert_eq!(r.status, 200, "{}", r.text());
    for gone in ["x_consumer_id", "x_consumer_tier", "x-consumer_id"] {
        assert_eq!(r.upstream_header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(r.upstream_header("x_custom").as_deref(), Some("1"));
    assert_eq!(r.upstream_header("x-consumer-id").as_deref(), Some("acme"));
    assert_eq!(r.upstream_header("x-api-key"), None);
}

#[test]
fn header_names_with_underscores_are_refused_in_the_config() {
    let config = |auth: &str| {
        format!(
            "version: 1\nlisten: [\"127.0.0.1:1\"]\nadmin: {{ listen: \"127.0.0.1:2\" }}\n\
             upstreams:\n  demo: {{ kind: echo }}\n\
             routes:\n  - {{ name: a, path_prefix: /, upstream: demo }}\n{auth}"
        )
    };
    let api_keys = |header: &str| {
        config(&format!(
            "auth:\n  api_keys:\n    header: {header}\n    keys:\n      - {{ consumer: a, key: \"{}\" }}\n",
            floodgate::auth::api_key::hash_key(API_KEY)
        ))
    };
    let claims = |header: &str| {
        config(&format!(
            "auth:\n  jwt:\n    keys:\n      - {{ alg: HS256, secret: \"0123456789abcdef0123456789abcdef\" }}\n    \
             claims_to_headers: {{ email: {header} }}\n"
        ))
    };
    let (ok, out) = check_config(&api_keys("X-API-Key"), &[]);
    assert!(ok, "{out}");
    let (ok, out) = check_config(&claims("X-User-Email"), &[]);
    assert!(ok, "{out}");

    let (ok, out) = check_config(&api_keys("X_API_Key"), &[]);
    assert!(!ok, "accepted api_keys.header X_API_Key");
    assert!(
        out.contains("auth.api_keys.header:") && out.contains('_'),
        "{out}"
    );
    let (ok, out) = check_config(&claims("X_User_Email"), &[]);
    assert!(!ok, "accepted claims_to_headers X_User_Email");
    assert!(
        out.contains("auth.jwt.claims_to_headers.email:") && out.contains('_'),
        "{out}"
    );
}

#[test]
fn client_claims_about_its_address_are_replaced_by_what_the_gateway_resolved() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let r = raw_request(
        gw.addr,
        b"GET /pub/f HTTP/1.1\r\nHost: a\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\n\
          X-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("forwarded"), None);
    assert_eq!(r.upstream_header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        r.upstream_header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    let r = get(gw.addr, "/pub/plain");
    assert_eq!(r.upstream_header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.upstream_header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

#[test]
fn a_target_reaches_the_upstream_in_origin_form_with_its_host_and_only_if_it_is_utf8() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
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
fn a_connection_header_cannot_remove_the_host_or_the_body_framing() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let hello_sum: u64 = b"hello".iter().map(|&b| b as u64).sum();
    for raw in [
        &b"POST /pub/c HTTP/1.1\r\nHost: keep.test\r\nConnection: Host, Content-Length, X-Hop\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"POST /pub/c HTTP/1.1\r\nHost: keep.test\r\nConnection: Transfer-Encoding, X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let (r, _conn) = answer_on_new_connection(gw.addr, raw);
        assert_eq!(r.status, 200, "{}: {}", show(raw), r.text());
        assert_eq!(r.upstream_header("host").as_deref(), Some("keep.test"));
        assert_eq!(r.json()["body_len"], 5, "{}", show(raw));
        assert_eq!(r.json()["body_sum"], hello_sum, "{}", show(raw));
        // Other headers a Connection header names are still dropped.
        assert_eq!(r.upstream_header("x-hop"), None);
    }
}

#[test]
fn a_host_that_is_not_an_rfc_3986_authority_is_refused() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
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

fn switching_gateway(switching: &SwitchingUpstream, echo: &Upstream) -> Gateway {
    Gateway::start(&format!(
        "upstreams:\n  switching: {{ targets: [\"{}\"] }}\n  echo: {{ targets: [\"{}\"] }}\n\
         routes:\n  - {{ name: switching, path_prefix: /, upstream: switching }}\n  \
         - {{ name: echo, path_prefix: /ok/, upstream: echo }}\n",
        switching.addr, echo.addr
    ))
}

#[test]
fn a_101_the_client_did_not_ask_for_is_a_502() {
    let switching = SwitchingUpstream::start();
    let echo = Upstream::start("echo");
    let gw = switching_gateway(&switching, &echo);
    let raw = b"GET /no-upgrade HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    // Asked directly, the test upstream does send the raw bytes after its 101.
    let mut direct = TcpStream::connect(switching.addr).expect("connect");
    direct
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    direct.write_all(raw).expect("write");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !seen.windows(8).any(|w| w == b"RAWBYTES") {
        let n = direct.read(&mut chunk).expect("read");
        assert!(n > 0, "the test upstream closed: {}", show(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    drop(direct);

    let answer = raw_exchange(gw.addr, raw);
    refused_without_the_upstreams_bytes(&answer);
    // The 502 is the gateway's verdict on the 101: the request did reach the upstream.
    let heads = switching.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[1].starts_with("get /no-upgrade "), "{heads:?}");
    assert!(
        heads[1].contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{heads:?}"
    );
    assert_eq!(get(gw.addr, "/ok/after").status, 200);
}

/// The gateway's 502 for a 101 it will not tunnel, and none of what followed the 101.
fn refused_without_the_upstreams_bytes(answer: &[u8]) {
    let (r, _) = parse_response(answer).unwrap_or_else(|| panic!("no answer: {}", show(answer)));
    assert_eq!(r.status, 502, "{}", show(answer));
    assert_eq!(r.json()["error"], "bad_gateway");
    assert!(
        !answer.windows(8).any(|w| w == b"RAWBYTES"),
        "the upstream's raw bytes reached the client: {}",
        show(answer)
    );
}

#[test]
fn a_101_to_another_protocol_than_the_one_asked_for_is_a_502() {
    let switching = SwitchingUpstream::start();
    let echo = Upstream::start("echo");
    let gw = switching_gateway(&switching, &echo);
    let answer = raw_exchange(
        gw.addr,
        b"GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    refused_without_the_upstreams_bytes(&answer);
    let heads = switching.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].contains("\r\nupgrade: websocket\r\n"), "{heads:?}");
}

#[test]
fn a_websocket_upgrade_still_switches_protocols() {
    let switching = SwitchingUpstream::start();
    let echo = Upstream::start("echo");
    let gw = switching_gateway(&switching, &echo);
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(
            s.read(&mut byte).expect("read") == 1 && head.len() < 8192,
            "no 101: {}",
            show(&head)
        );
        head.push(byte[0]);
    }
    let (r, _) = parse_response_to(&head, true).expect("a head");
    assert_eq!(r.status, 101, "{}", show(&head));
    assert!(r
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    s.write_all(b"ping").expect("write through the tunnel");
    let mut pong = [0u8; 4];
    s.read_exact(&mut pong).expect("read through the tunnel");
    assert_eq!(&pong, b"pong");
    let heads = switching.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].contains("\r\nupgrade: websocket\r\n"), "{heads:?}");
    assert!(heads[0].contains("\r\nconnection: upgrade\r\n"), "{heads:?}");
}
