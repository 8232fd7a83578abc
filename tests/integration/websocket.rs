//! WebSocket sessions through the gateway and the protocol switches around them: a session
//! outlives read timeouts and body limits and gets the drain window, then a close frame; a
//! `101` the client did not ask for, or to another protocol, is a 502.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A masked text frame, as a client sends it.
fn client_frame(text: &str) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn read_text_frame(conn: &mut TcpStream) -> String {
    let mut header = [0u8; 2];
    conn.read_exact(&mut header).expect("frame header");
    let mut payload = vec![0u8; usize::from(header[1] & 0x7f)];
    conn.read_exact(&mut payload).expect("frame payload");
    String::from_utf8_lossy(&payload).into_owned()
}

/// A WebSocket session through the gateway at `addr`, upgraded.
fn open_websocket(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    conn.write_all(
        b"GET /ws/room HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("upgrade request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).expect("101 head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    conn
}

fn websocket_route(upstream: SocketAddr) -> String {
    format!(
        "upstreams:\n  chat: {{ targets: [\"{upstream}\"], timeouts: {{ read_ms: 300 }} }}\n\
         routes:\n  - {{ name: ws, path_prefix: /ws/, upstream: chat, websocket: {{ idle_timeout_s: 5 }} }}\n"
    )
}

/// SIGTERM with a WebSocket open and a drain window of 3 s: the session keeps
/// working into the window, then gets a close frame (1001) and ends, and the
/// process exits.
#[test]
fn a_websocket_gets_the_drain_window_then_a_close_frame() {
    let upstream = start_websocket_echo();
    let mut setup = Setup::new(
        &websocket_route(upstream),
        Options {
            drain: 3,
            ..Options::default()
        },
    );
    let mut gw = setup.start();
    let mut conn = open_websocket(setup.addr);
    signal(gw.pid(), "TERM");
    std::thread::sleep(Duration::from_millis(500));
    conn.write_all(&client_frame("draining"))
        .expect("frame during the drain");
    assert_eq!(
        read_text_frame(&mut conn),
        "draining",
        "the session works during the drain"
    );
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert_eq!(
        rest,
        [0x88, 0x02, 0x03, 0xE9],
        "a close frame, going away, then the end"
    );
    let status = gw.wait_exit(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", setup.log());
}

#[test]
fn a_websocket_idles_past_read_ms_and_is_counted_in_its_own_metrics() {
    let upstream = start_websocket_echo();
    let gw = Gateway::start(&websocket_route(upstream));
    let mut conn = open_websocket(gw.addr);
    conn.write_all(&client_frame("hello")).expect("frame");
    assert_eq!(read_text_frame(&mut conn), "hello");
    // Idle for longer than read_ms: the session's own idle timeout holds it open.
    std::thread::sleep(Duration::from_millis(1200));
    conn.write_all(&client_frame("still there"))
        .expect("frame after idling");
    assert_eq!(read_text_frame(&mut conn), "still there");
    let metrics = get(gw.admin, "/metrics").text();
    assert!(
        metrics.contains("floodgate_websocket_sessions_open 1"),
        "{metrics}"
    );
    drop(conn);

    let ended = eventually(Duration::from_secs(5), || {
        get(gw.admin, "/metrics")
            .text()
            .contains("floodgate_websocket_sessions_total{route=\"ws\"} 1")
    });
    let metrics = get(gw.admin, "/metrics").text();
    assert!(ended, "{metrics}");
    assert!(
        metrics.contains("floodgate_websocket_sessions_open 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floodgate_websocket_session_duration_seconds_count{route=\"ws\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floodgate_request_duration_seconds_count{route=\"ws\"} 0")
            || !metrics.contains("floodgate_request_duration_seconds_count{route=\"ws\"}"),
        "a session is not a request in the latency histogram: {metrics}"
    );
}

/// `max_body_bytes` bounds a request's body: after the 101 a WebSocket session's frames
/// are not a body, and the session outlives the limit.
#[test]
fn a_websocket_on_a_route_with_max_body_bytes_is_not_cut_by_it() {
    let upstream = start_websocket_echo();
    let body = format!(
        "upstreams:\n  chat: {{ targets: [\"{upstream}\"] }}\n\
         routes:\n  - {{ name: ws, path_prefix: /ws/, upstream: chat, max_body_bytes: 64, websocket: {{ idle_timeout_s: 5 }} }}\n"
    );
    let gw = Gateway::start(&body);
    assert_eq!(
        request(gw.addr, "POST", "/ws/upload", &[], &[b'a'; 100]).status,
        413,
        "a body over the limit is still refused"
    );
    let mut conn = open_websocket(gw.addr);
    // 10 frames of 35 bytes: 350 bytes, over five times the limit.
    for i in 0..10 {
        let text = format!("frame {i} of ten, 29 bytes long");
        conn.write_all(&client_frame(&text)).expect("frame");
        assert_eq!(read_text_frame(&mut conn), text, "frame {i}");
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
