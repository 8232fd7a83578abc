//! Routing, forwarded headers and bodies through the real gateway to a real upstream.

use crate::common::*;

fn gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"
upstreams:
  backend: {{ targets: ["{addr}"] }}
  other: {{ targets: ["{addr}"] }}
routes:
  - {{ name: health, path_prefix: /health, respond: {{ status: 200, body: "ok" }} }}
  - {{ name: api, path_prefix: /api/, upstream: backend, max_body_bytes: 1000 }}
  - {{ name: reports, path_prefix: /api/reports, upstream: other }}
  - {{ name: api-host, path_prefix: /api/, host: special.test, upstream: other }}
  - {{ name: writes, path_prefix: /w/, methods: [POST, PUT], upstream: backend }}
  - {{ name: stripped, path_prefix: /svc/, upstream: backend, strip_prefix: true }}
  - {{ name: big, path_prefix: /big/, upstream: backend }}
"#,
        addr = up.addr
    ))
}

#[test]
fn routes_by_longest_prefix_host_and_method() {
    let up = Upstream::start("u");
    let gw = gateway(&up);

    let r = get(gw.addr, "/api/users?page=2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["url"], "/api/users?page=2");

    let health = get(gw.addr, "/health");
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));
    assert!(health.header("x-request-id").is_some());

    // Longest prefix: /api/reports beats /api/ (both go to the same server here,
    // so the route shows in which upstream block answered: checked via strip below).
    assert_eq!(get(gw.addr, "/api/reports/1").status, 200);
    assert_eq!(
        get_with(gw.addr, "/api/x", &[("Host", "special.test:8080")]).status,
        200
    );

    // Methods: GET has no route under /w/.
    assert_eq!(get(gw.addr, "/w/thing").status, 404);
    assert_eq!(request(gw.addr, "POST", "/w/thing", &[], b"x").status, 200);

    let stripped = get(gw.addr, "/svc/v1/items?q=1");
    assert_eq!(stripped.json()["url"], "/v1/items?q=1");
    assert_eq!(get(gw.addr, "/svc/").json()["url"], "/");
}

#[test]
fn unknown_paths_get_a_json_404() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let r = get_with(gw.addr, "/nothing/here", &[("X-Request-Id", "abc-123")]);
    assert_eq!(r.status, 404);
    let body = r.json();
    assert_eq!(body["error"], "no_route");
    assert_eq!(body["request_id"], "abc-123");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(up.hits(), 0);
}

#[test]
fn paths_are_normalized_before_matching() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    for (spelling, upstream_sees) in [
        ("//api//x", "/api/x"),
        ("/health/../api/x", "/api/x"),
        ("/health/%2e%2e/api/x", "/api/x"),
        ("/%61pi/x", "/api/x"),
        ("/./api/./x", "/api/x"),
    ] {
        let r = get(gw.addr, spelling);
        assert_eq!(r.status, 200, "{spelling}: {}", r.text());
        assert_eq!(r.json()["url"], upstream_sees, "{spelling}");
    }
    // A dot-segment walk out of a route ends where its normalized form says.
    assert_eq!(get(gw.addr, "/api/../nothing").status, 404);
    assert_eq!(get(gw.addr, "/api/%zz").status, 400);
}

#[test]
fn forwards_identity_headers_and_strips_hop_by_hop() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = get_with(
        gw.addr,
        "/api/h",
        &[
            ("Host", "public.example:8080"),
            ("X-Request-Id", "client-id-1"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("traceparent", trace),
            ("X-Consumer-Id", "spoofed"),
            ("Connection", "close, X-Private-Hop"),
            ("X-Private-Hop", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "x-checksum"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
            ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("client-id-1"));
    assert_eq!(r.upstream_header("x-request-id").as_deref(), Some("client-id-1"));
    assert_eq!(
        r.upstream_header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(r.upstream_header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        r.upstream_header("x-forwarded-host").as_deref(),
        Some("public.example:8080")
    );
    assert_eq!(r.upstream_header("traceparent").as_deref(), Some(trace));
    for gone in [
        "x-consumer-id",
        "x-private-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "http2-settings",
        "proxy-authorization",
    ] {
        assert_eq!(r.upstream_header(gone), None, "{gone} reached the upstream");
    }

    // No id, or an unsafe one: a fresh id, the same on the response and upstream.
    for sent in [None, Some("bad id with spaces"), Some(&*"x".repeat(200))] {
        let headers: Vec<(&str, &str)> = sent.map(|v| ("X-Request-Id", v)).into_iter().collect();
        let r = get_with(gw.addr, "/api/h", &headers);
        let id = r.header("x-request-id").expect("response id").to_string();
        assert_eq!(id.len(), 32);
        assert_eq!(r.upstream_header("x-request-id"), Some(id));
    }
}

#[test]
fn proxies_every_method_and_streams_bodies() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let r = request(
            gw.addr,
            method,
            "/big/m",
            &[],
            if method == "GET" { b"" } else { b"hello" },
        );
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.json()["method"], method);
    }
    assert_eq!(request(gw.addr, "HEAD", "/big/m", &[], b"").status, 200);

    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| b as u64).sum();
    let r = request(gw.addr, "POST", "/big/upload", &[], &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], body.len());
    assert_eq!(r.json()["body_sum"], sum);

    let mut chunked = Vec::new();
    for piece in body.chunks(70_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = request(
        gw.addr,
        "POST",
        "/big/chunked",
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], body.len());
    assert_eq!(r.json()["body_sum"], sum);
}

#[test]
fn bodies_over_the_route_limit_get_413() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    assert_eq!(
        request(gw.addr, "POST", "/api/small", &[], &[b'a'; 1000]).status,
        200
    );
    let hits = up.hits();

    let r = request(gw.addr, "POST", "/api/large", &[], &[b'a'; 1001]);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "body_too_large");
    assert_eq!(
        up.hits(),
        hits,
        "a declared oversized body must not reach the upstream"
    );

    let mut chunked = Vec::new();
    for _ in 0..5 {
        chunked.extend_from_slice(b"12c\r\n");
        chunked.extend_from_slice(&[b'b'; 300]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = request(
        gw.addr,
        "POST",
        "/api/chunked",
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "body_too_large");

    // The gateway goes on serving.
    assert_eq!(get(gw.addr, "/api/after").status, 200);
}

#[test]
fn default_config_serves_the_echo_upstream() {
    // conf/floodgate.yaml itself, on free ports: nothing else is needed on the machine.
    let text = std::fs::read_to_string("conf/floodgate.yaml").expect("default config");
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("client:"))
        .collect::<Vec<_>>()
        .join("\n");
    let gw = Gateway::start(&body);
    assert_eq!(request(gw.addr, "POST", "/api/hello", &[], b"ping").status, 401);
    // The demo API key of the shipped config.
    let r = request(
        gw.addr,
        "POST",
        "/api/hello?x=1",
        &[("X-API-Key", "demo-key")],
        b"ping",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["echo"], true);
    assert_eq!(echo["path"], "/api/hello");
    assert_eq!(echo["body"], "ping");
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(get(gw.admin, "/health").json()["status"], "ok");
    assert_eq!(get(gw.admin, "/ready").status, 200);
}
