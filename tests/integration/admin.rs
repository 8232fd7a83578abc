//! The admin listener: liveness, readiness, start-up failures that must be loud, who may read
//! and write through it, and the same connection protections as the proxy.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "admin-token-for-the-tests-0123";

const ROUTES: &str =
    "upstreams:\n  demo: { kind: echo }\nroutes:\n  - { name: all, path_prefix: /, upstream: demo }\n";

#[test]
fn health_and_ready() {
    let gw = Gateway::start(ROUTES);
    let health = get(gw.admin, "/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    // Ready means the proxy listener really accepts: prove it right after.
    assert_eq!(get(gw.admin, "/ready").status, 200);
    assert_eq!(get(gw.addr, "/anything").status, 200);
    assert_eq!(get(gw.admin, "/nope").status, 404);
    assert_eq!(request(gw.admin, "POST", "/health", &[], b"x").status, 405);
}

#[test]
fn a_taken_proxy_port_fails_start_up_at_once_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    // Never bound: start-up checks the proxy listeners first and stops at the taken one.
    let admin_port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("c.yaml");
    std::fs::write(
        &conf,
        format!(
            "version: 1\nthreads: 1\npid_file: {d}/p.pid\nupgrade_sock: {d}/u.sock\nlisten: [\"127.0.0.1:{port}\"]\nadmin: {{ listen: \"127.0.0.1:{admin_port}\" }}\n{ROUTES}",
            d = dir.path().display()
        ),
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("run floodgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "floodgate started without its listener");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    drop(taken);
}

fn with_token() -> Gateway {
    Gateway::start_admin(ROUTES, &format!("token: \"{TOKEN}\""))
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[test]
fn stats_and_breakers_need_the_admin_token_unless_public() {
    let private = ["/admin/stats", "/admin/circuit-breakers"];
    let gw = with_token();
    for path in private {
        let r = get(gw.admin, path);
        assert_eq!(r.status, 401, "{path} without a token: {}", r.text());
        assert_eq!(r.json()["error"], "unauthorized");
        let r = get_with(gw.admin, path, &[("Authorization", "Bearer not-the-admin-token")]);
        assert_eq!(r.status, 401, "{path} with a wrong token");
        // The token alone, without the scheme, is not a bearer token.
        let r = get_with(gw.admin, path, &[("Authorization", TOKEN)]);
        assert_eq!(r.status, 401, "{path} with the token but no scheme");
        let r = get_with(gw.admin, path, &[("Authorization", &bearer())]);
        assert_eq!(r.status, 200, "{path} with the token: {}", r.text());
        r.json();
    }
    let r = get(gw.admin, "/metrics");
    assert_eq!(r.status, 200, "/metrics needs no token");
    assert!(r.text().contains("# TYPE"), "{}", r.text());

    // No token configured and not public: nobody reads them.
    let gw = Gateway::start(ROUTES);
    for path in private {
        assert_eq!(get(gw.admin, path).status, 403, "{path}");
        let r = get_with(gw.admin, path, &[("Authorization", &bearer())]);
        assert_eq!(r.status, 403, "{path} with some token");
        assert_eq!(r.json()["error"], "forbidden");
    }
    assert_eq!(get(gw.admin, "/metrics").status, 200);

    let gw = Gateway::start_admin(ROUTES, "public_stats: true");
    for path in private {
        let r = get(gw.admin, path);
        assert_eq!(r.status, 200, "{path} public: {}", r.text());
        r.json();
    }
    assert_eq!(get(gw.admin, "/metrics").status, 200);
    // Public stats publish reads only: writes still need a token (none is configured).
    let r = request(
        gw.admin,
        "PUT",
        "/admin/consumers/acme/tier",
        &[],
        br#"{"tier":"premium"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn two_authorization_headers_on_an_admin_request_are_a_400() {
    let gw = with_token();
    let good = bearer();
    for path in ["/admin/stats", "/admin/circuit-breakers"] {
        for pair in [
            [good.as_str(), good.as_str()],
            [good.as_str(), "Bearer wrong"],
            ["Bearer wrong", good.as_str()],
        ] {
            let r = get_with(
                gw.admin,
                path,
                &[("Authorization", pair[0]), ("Authorization", pair[1])],
            );
            assert_eq!(r.status, 400, "{path} {pair:?}: {}", r.text());
            assert_eq!(r.json()["error"], "bad_request");
        }
    }
    let r = request(
        gw.admin,
        "PUT",
        "/admin/consumers/acme/tier",
        &[("Authorization", &good), ("Authorization", &good)],
        br#"{"tier":"premium"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn consumer_ids_in_the_tier_path_are_decoded_once_bounded_and_printable() {
    let gw = with_token();
    let auth = bearer();
    let put = |segment: &str| {
        request(
            gw.admin,
            "PUT",
            &format!("/admin/consumers/{segment}/tier"),
            &[("Authorization", &auth)],
            br#"{"tier":"premium"}"#,
        )
    };
    let a256 = "a".repeat(256);
    // 256 bytes once decoded, 768 as sent: the bound is on the id, not on the path.
    let escaped256 = "%41".repeat(256);
    let accepted = [
        ("acme", "acme".to_string()),
        ("a%20b", "a b".to_string()),
        // Decoded once: "%25" becomes "%", and "%41" stays as it is.
        ("%2541", "%41".to_string()),
        (a256.as_str(), a256.clone()),
        (escaped256.as_str(), "A".repeat(256)),
    ];
    for (segment, id) in &accepted {
        let r = put(segment);
        assert_eq!(r.status, 200, "{segment}: {}", r.text());
        assert_eq!(r.json()["consumer"], id.as_str(), "{segment}");
        assert_eq!(r.json()["tier"], "premium");
    }
    let a257 = "a".repeat(257);
    let escaped257 = "%41".repeat(257);
    for segment in [
        a257.as_str(),
        escaped257.as_str(),
        "a%0Ab",
        "a%0D%0Ax-consumer-id:%20admin",
        "a%00",
        "%7F",
        "a%09b",
        "a%zz",
        "a%4",
        "%ff",
    ] {
        let r = put(segment);
        assert_eq!(r.status, 400, "{segment}: {}", r.text());
        assert_eq!(r.json()["error"], "bad_request");
    }
}

/// Reads one response from `stream`, then whether the server closed the connection (EOF or a
/// reset) within `limit`.
fn answer_then_close(stream: &mut TcpStream, limit: Duration) -> (Resp, bool) {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let resp = loop {
        if let Some((resp, used)) = parse_response(&buf) {
            buf.drain(..used);
            break resp;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => panic!("no answer: {:?}", String::from_utf8_lossy(&buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let closed = match stream.read_to_end(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(
        buf.is_empty(),
        "more after the answer: {:?}",
        String::from_utf8_lossy(&buf)
    );
    (resp, closed)
}

#[test]
fn a_body_over_64_kib_is_refused_before_it_is_sent_and_an_unread_body_closes_the_connection() {
    let gw = with_token();
    // Only the head is sent; the 10 MB never follow.
    let mut s = TcpStream::connect(gw.admin).expect("connect");
    write!(
        s,
        "PUT /admin/consumers/x/tier HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    .expect("write");
    // 10 s is a liveness bound: an answer that waited for the body would never come.
    let (r, closed) = answer_then_close(&mut s, Duration::from_secs(10));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "body_too_large");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed, "the connection stayed open after the 413");

    // Bodies on requests that take none are never waited for: answered, then closed. Pingora
    // would otherwise wait (60 s) for the body to drain before reading the next request.
    for (head, status) in [
        (
            "GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n",
            413,
        ),
        (
            "GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n",
            200,
        ),
        (
            "GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n",
            200,
        ),
        (
            "GET /health HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            200,
        ),
    ] {
        let mut s = TcpStream::connect(gw.admin).expect("connect");
        s.write_all(head.as_bytes()).expect("write");
        let (r, closed) = answer_then_close(&mut s, Duration::from_secs(10));
        assert_eq!(r.status, status, "{head:?}: {}", r.text());
        assert_eq!(r.header("connection"), Some("close"), "{head:?}");
        assert!(closed, "the connection waited for the body of {head:?}");
    }
    assert_eq!(get(gw.admin, "/health").status, 200);
}

/// Sends `head` and then one more header byte every 200 ms (the pace is the input), for up to
/// 10 s; returns what the server answered and whether it closed the connection meanwhile.
fn trickle(stream: &mut TcpStream, head: &[u8]) -> (Vec<u8>, bool) {
    // The read timeout paces the trickle: each read waits 200 ms for an answer.
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let _ = stream.write_all(head);
    let mut answer = Vec::new();
    for _ in 0..50 {
        if stream.write_all(b"X").is_err() {
            return (answer, true);
        }
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk) {
            Ok(0) => return (answer, true),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (answer, true),
        }
    }
    (answer, false)
}

#[test]
fn the_admin_listener_has_the_header_deadline_of_the_proxy() {
    let gw = Gateway::start(&format!("client: {{ header_timeout_ms: 1000 }}\n{ROUTES}"));
    // A first head trickled in.
    let mut s = TcpStream::connect(gw.admin).expect("connect");
    let (answer, closed) = trickle(&mut s, b"GET /health HTTP/1.1\r\nHost: a\r\n");
    assert!(closed, "a trickled head held the admin connection for 10 s");
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // A later head on a kept-alive connection, trickled in.
    let mut s = TcpStream::connect(gw.admin).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    let mut buf = Vec::new();
    assert_eq!(read_one(&mut s, &mut buf).status, 200);
    let (answer, closed) = trickle(&mut s, b"GET /health HTTP/1.1\r\nHost: a\r\n");
    assert!(
        closed,
        "a trickled second head held the admin connection for 10 s: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // As on the proxy: a later head past its deadline ends the connection, answered or not.
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // The deadline rests between requests: an idle kept-alive connection still works.
    let mut s = TcpStream::connect(gw.admin).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = Vec::new();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    assert_eq!(read_one(&mut s, &mut buf).status, 200);
    // Idle for twice the header deadline: the idleness is the input.
    std::thread::sleep(Duration::from_secs(2));
    s.write_all(b"GET /ready HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    assert_eq!(read_one(&mut s, &mut buf).status, 200, "idle connection cut");
    assert_eq!(get(gw.admin, "/health").status, 200);
}

/// Reads one response from a kept-alive connection.
fn read_one(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Resp {
    let mut chunk = [0u8; 16384];
    loop {
        if let Some((resp, used)) = parse_response(buf) {
            buf.drain(..used);
            return resp;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => panic!("no answer: {:?}", String::from_utf8_lossy(buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The page itself is public; the data it shows is not. (Headless Chromium cannot take part
/// here: in its new headless mode, the only one Chromium ships now, window.prompt blocks
/// `--dump-dom` for ever instead of returning null.)
#[test]
fn the_dashboard_is_served_without_the_token_and_sends_the_one_it_is_given() {
    let gw = with_token();
    let page = get(gw.admin, "/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let html = page.text();
    assert!(html.contains("sessionStorage"), "the page keeps no token: {html}");
    assert!(html.contains("\"Authorization\": \"Bearer \""), "{html}");
    assert!(html.contains("the admin token is required"), "{html}");
    assert_eq!(get(gw.admin, "/admin/stats").status, 401);
}

#[test]
fn the_admin_token_scheme_is_case_insensitive_and_ids_hide_no_formatting() {
    let up = Upstream::start("u");
    let gw = host_scoped_gateway(&up);
    let lower = format!("bearer {HOST_SCOPED_ADMIN_TOKEN}");
    let stats = request(gw.admin, "GET", "/admin/stats", &[("Authorization", &lower)], b"");
    assert_eq!(stats.status, 200, "{}", stats.text());
    let bearer = format!("Bearer {HOST_SCOPED_ADMIN_TOKEN}");
    let auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = br#"{"tier": "free"}"#;
    let plain = request(gw.admin, "PUT", "/admin/consumers/ab/tier", &auth, body);
    assert_eq!(plain.status, 200, "{}", plain.text());
    // A right-to-left override would make one id read as another in a log line.
    let hidden = request(gw.admin, "PUT", "/admin/consumers/a%E2%80%AEb/tier", &auth, body);
    assert_eq!(hidden.status, 400, "{}", hidden.text());
}
