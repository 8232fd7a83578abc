//! HTTP/2 through the gateway, over TLS and h2c: the authority routes like a Host, heads are
//! bounded as on HTTP/1.1, gRPC-style trailers come back from an h2 upstream, and a stream
//! whose window never opens is reset at the send deadline.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn an_http2_authority_routes_like_a_host_and_is_the_forwarded_host() {
    let h2c = loopback(free_port());
    let body = "upstreams:\n  echo: { kind: echo }\nroutes:\n  \
                - { name: scoped, host: scoped.test, path_prefix: /, respond: { status: 200, body: scoped } }\n  \
                - { name: all, path_prefix: /, upstream: echo }\n";
    let _gw = Gateway::start_listening(body, vec![format!("{{ addr: \"{h2c}\", h2c: true }}")]);
    let (status, text, _) = h2c_request_to(h2c, "scoped.test:8080", "/x").expect("h2c request");
    assert_eq!(
        (status, text.as_str()),
        (200, "scoped"),
        ":authority routes like Host"
    );
    let (status, text, _) = h2c_request_to(h2c, "other.test", "/x").expect("h2c request");
    assert_eq!(status, 200, "{text}");
    let echoed: serde_json::Value = serde_json::from_str(&text).expect("echo json");
    assert_eq!(echoed["headers"]["x-forwarded-host"], "other.test", "{text}");
}

#[test]
fn h2c_listener_speaks_both_and_http2_heads_are_bounded_too() {
    let h2c = loopback(free_port());
    let body = format!("client: {{ header_timeout_ms: 1000 }}\n{ECHO}");
    let _gw = Gateway::start_listening(&body, vec![format!("{{ addr: \"{h2c}\", h2c: true }}")]);
    let (status, text, _) = h2c_request(h2c, "/over-h2c").expect("h2c request");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("/over-h2c"), "{text}");
    assert_eq!(get(h2c, "/h1-too").status, 200);

    // A HEADERS frame that never ends: the stream is cut at the header deadline.
    let mut conn = TcpStream::connect(h2c).expect("connect");
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("preface");
    conn.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).expect("settings");
    conn.write_all(&[0, 0, 40, 0x1, 0x4, 0, 0, 0, 1, 0x82, 0x86])
        .expect("partial headers");
    conn.set_read_timeout(Some(Duration::from_secs(1))).ok();
    assert!(
        closed_within(&mut conn, Duration::from_secs(15)).is_some(),
        "a stalled h2 head is cut"
    );

    // A header list over the limit is refused, the connection stays usable for others.
    let huge = "a".repeat(70 * 1024);
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", &format!("x-big: {huge}")])
        .arg(format!("http://{h2c}/big"))
        .output()
        .expect("curl runs");
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_ne!(code, "200", "an oversized h2 header list is not proxied");
    assert_eq!(h2c_request(h2c, "/after").map(|r| r.0), Ok(200));
}

/// `client.max_headers` holds on HTTP/2 as on HTTP/1.1: too many fields are a 431 and
/// never reach the upstream; Cookie crumbs (one Cookie line on HTTP/1.1) count as one.
#[test]
fn client_max_headers_holds_on_http2_too() {
    let h2c = loopback(free_port());
    let upstream = Upstream::start("u");
    let body = format!(
        "upstreams:\n  u: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: all, path_prefix: /, upstream: u }}\n",
        upstream.addr
    );
    let _gw = Gateway::start_listening(&body, vec![format!("{{ addr: \"{h2c}\", h2c: true }}")]);
    let fields = |n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("x-field-{i}"), "v".to_string()))
            .collect()
    };
    let authority = h2c.to_string();
    let status = |headers: &[(String, String)]| h2c_request_with(h2c, &authority, "/x", headers).map(|r| r.0);
    assert_eq!(status(&fields(1000)), Ok(431), "1,000 fields");
    assert_eq!(status(&fields(101)), Ok(431), "one over the default 100");
    assert_eq!(upstream.hits(), 0, "nothing over the limit reached the upstream");
    // `te` is one field of the 100.
    assert_eq!(status(&fields(99)), Ok(200));
    let mut crumbs = fields(98);
    crumbs.extend((0..50).map(|i| ("cookie".to_string(), format!("c{i}=v"))));
    assert_eq!(status(&crumbs), Ok(200), "50 Cookie crumbs are one field");
}

#[test]
fn grpc_style_trailers_pass_through_to_an_h2_upstream() {
    let upstream = start_h2_upstream();
    let h2c = loopback(free_port());
    let body = format!(
        "upstreams:\n  grpc: {{ targets: [\"{upstream}\"], http2: true }}\nroutes:\n  - {{ name: grpc, path_prefix: /, upstream: grpc }}\n"
    );
    let _gw = Gateway::start_listening(&body, vec![format!("{{ addr: \"{h2c}\", h2c: true }}")]);
    let (status, text, trailers) = h2c_request(h2c, "/pkg.Service/Call").expect("h2 request");
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "h2 upstream /pkg.Service/Call");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..]),
        "{trailers:?}"
    );
    assert_eq!(
        trailers.get("grpc-message").map(|v| v.as_bytes()),
        Some(&b"all good"[..])
    );
}

/// An HTTP/2 frame: its 9-byte header and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// How an HTTP/2 exchange whose client never opens its window ended.
#[derive(Debug, PartialEq)]
enum H2End {
    /// RST_STREAM on the request's stream.
    Reset,
    /// GOAWAY, or the connection closed.
    Closed,
    /// Still open when the client gave up waiting.
    Open,
}

/// On `conn` (after any TLS handshake): the preface, SETTINGS_INITIAL_WINDOW_SIZE=0, one
/// GET of `path`, and no WINDOW_UPDATE ever. Reads frames until the stream is reset or the
/// connection ends, for up to `limit`: (how it ended, whether a response head came, DATA
/// bytes received).
fn h2_zero_window_get(
    conn: &mut (impl Read + Write),
    scheme_https: bool,
    path: &str,
    limit: Duration,
) -> (H2End, bool, usize) {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[0, 0x4, 0, 0, 0, 0]));
    // :method GET, :scheme, then :path and :authority as literals with indexed names.
    let mut block = vec![
        0x82,
        if scheme_https { 0x87 } else { 0x86 },
        0x04,
        path.len() as u8,
    ];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 1, b'a']);
    out.extend(h2_frame(0x1, 0x4 | 0x1, 1, &block));
    conn.write_all(&out).expect("h2 request");
    let started = Instant::now();
    let (mut head, mut data) = (false, 0);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while started.elapsed() < limit {
        match conn.read(&mut chunk) {
            Ok(0) => return (H2End::Closed, head, data),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => continue,
            Err(_) => return (H2End::Closed, head, data),
        }
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            match (kind, stream) {
                (0x0, 1) => data += len,
                (0x1, 1) => head = true,
                (0x3, 1) => return (H2End::Reset, head, data),
                (0x7, _) => return (H2End::Closed, head, data),
                (0x4, 0) if flags & 0x1 == 0 => {
                    conn.write_all(&h2_frame(0x4, 0x1, 0, &[])).expect("settings ack");
                }
                _ => {}
            }
            buf.drain(..9 + len);
        }
    }
    (H2End::Open, head, data)
}

#[test]
fn an_http2_stream_whose_window_never_opens_is_reset_at_the_send_deadline_h2c_and_tls() {
    let pki = Pki::new();
    let (h2c, tls) = (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    );
    for over_tls in [false, true] {
        let big = BigUpstream::start();
        // Long upstream timeouts: only the send deadline can end the stalled stream.
        let _gw = Gateway::start_listening(
            &format!(
                "client: {{ send_timeout_ms: 1000 }}\nupstreams:\n  big: {{ targets: [\"{}\"], timeouts: {{ read_ms: 60000, write_ms: 60000 }} }}\nroutes:\n  - {{ name: all, path_prefix: /, upstream: big }}\n",
                big.server.addr
            ),
            vec![
                format!("{{ addr: \"{h2c}\", h2c: true }}"),
                pki.listener(tls, &["api.test"], ""),
            ],
        );
        let limit = Duration::from_secs(15);
        let (end, head, data) = if over_tls {
            let mut conn = tls_connect(&pki, tls, "api.test", &[b"h2"]).expect("tls");
            conn.sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
            assert_eq!(conn.conn.alpn_protocol(), Some(&b"h2"[..]));
            h2_zero_window_get(&mut conn, true, "/big", limit)
        } else {
            let mut conn = TcpStream::connect(h2c).expect("connect");
            conn.set_read_timeout(Some(Duration::from_millis(200))).ok();
            h2_zero_window_get(&mut conn, false, "/big", limit)
        };
        let over = if over_tls { "TLS" } else { "h2c" };
        eprintln!("{over}: zero-window stream ended {end:?} (head {head}, {data} DATA bytes)");
        assert!(head, "{over}: the response head (not flow-controlled) was sent");
        assert_eq!(data, 0, "{over}: DATA sent into a zero window");
        assert_ne!(
            end,
            H2End::Open,
            "{over}: the stream outlived the send deadline by {limit:?}"
        );
        assert!(
            eventually(Duration::from_secs(10), || big.broken.load(Ordering::SeqCst)),
            "{over}: the upstream connection was not released"
        );
    }
}
