//! Clients slow to read, and answers that run long: a client that stops reading a large
//! response is cut at the send deadline, one reading below the minimum send rate is cut too, and
//! a response over its route's response timeout ends; an event stream is cut by neither.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The value of `floodgate_inflight_requests` on the admin listener's /metrics.
fn inflight(gw: &Gateway) -> Option<i64> {
    let metrics = try_get(gw.admin, "/metrics").ok()?.text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("floodgate_inflight_requests "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_client_that_stops_reading_a_large_response_is_cut_off_after_the_send_deadline() {
    let big = BigUpstream::start();
    let echo = Upstream::start("echo");
    // Long upstream timeouts: the send deadline is the only one that can end the stalled request.
    let gw = Gateway::start(&format!(
        r#"
client: {{ send_timeout_ms: 1000 }}
upstreams:
  big: {{ targets: ["{}"], timeouts: {{ connect_ms: 1000, read_ms: 60000, write_ms: 60000 }} }}
  echo: {{ targets: ["{}"] }}
routes:
  - {{ name: big, path_prefix: /big, upstream: big }}
  - {{ name: rest, path_prefix: /, upstream: echo }}
"#,
        big.server.addr, echo.addr
    ));
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("request");
    let asked = Instant::now();
    // From here the client reads nothing, until the gateway has given up on it.
    assert!(
        eventually(Duration::from_secs(10), || big.written.load(Ordering::SeqCst)
            >= 1 << 20),
        "the large response never started flowing"
    );
    // Other clients are served while that one is stalled.
    for i in 0..5 {
        let r = get(gw.addr, &format!("/other/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The gateway ends the stalled request, so the upstream's connection breaks under it.
    let cut = eventually(Duration::from_secs(20), || big.broken.load(Ordering::SeqCst));
    let cut_after = asked.elapsed();
    let written = big.written.load(Ordering::SeqCst);
    eprintln!(
        "stalled client: upstream connection closed {cut_after:?} after the request, {written} of {BIG_BODY} bytes written"
    );
    assert!(
        cut,
        "the upstream was still writing {cut_after:?} after the request ({written} bytes written)"
    );
    assert!(written < BIG_BODY);

    // The client, reading again, gets what was already on its way and then the end of the
    // connection, well short of the whole body.
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut received = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    let end = loop {
        match s.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => received += n,
            Err(e) => break Err(e),
        }
    };
    eprintln!("stalled client: received {received} bytes, then {end:?}");
    assert!(
        end.as_ref().is_ok() || end.as_ref().is_err_and(|e| !is_timeout(e)),
        "the client's connection is still open after the upstream's was closed: {end:?}"
    );
    assert!(received < BIG_BODY, "received {received} bytes: the whole body");

    assert!(
        eventually(Duration::from_secs(10), || inflight(&gw) == Some(0)),
        "requests in flight after the cut: {:?}",
        inflight(&gw)
    );
    assert_eq!(get(gw.addr, "/after").status, 200);
}

/// A GET of `path` from a client with a small receive buffer that reads 1 KiB every 100 ms
/// (about 10 KB/s: always some progress) until `stop` is set or the connection ends.
fn read_slowly(addr: SocketAddr, path: &str, stop: &AtomicBool) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    sock.connect(&addr.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .expect("request");
    let mut chunk = [0u8; 1024];
    while !stop.load(Ordering::SeqCst) {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => continue,
            Err(_) => return,
        }
        thread::sleep(Duration::from_millis(100)); // the client's pace is the test's input
    }
}

#[test]
fn a_client_reading_below_min_send_rate_is_cut_and_an_event_stream_is_not() {
    let big = BigUpstream::start();
    let (events, events_broken) = paced_upstream(EVENTS_HEAD, &[b'e'; 4096], Duration::ZERO, None);
    // The send deadline alone never fires: the slow clients always make some progress.
    let gw = Gateway::start(&format!(
        r#"
client: {{ send_timeout_ms: 60000, min_send_rate_bps: 200000 }}
upstreams:
  big: {{ targets: ["{}"], timeouts: {{ read_ms: 60000, write_ms: 60000 }} }}
  events: {{ targets: ["{}"], timeouts: {{ read_ms: 60000, write_ms: 60000 }} }}
routes:
  - {{ name: events, path_prefix: /events, upstream: events }}
  - {{ name: big, path_prefix: /, upstream: big }}
"#,
        big.server.addr, events.addr
    ));
    let (addr, stop) = (gw.addr, Arc::new(AtomicBool::new(false)));
    let readers: Vec<_> = ["/events", "/big"]
        .into_iter()
        .map(|path| {
            let stop = stop.clone();
            thread::spawn(move || read_slowly(addr, path, &stop))
        })
        .collect();
    let started = Instant::now();
    // The gateway ends the slow response (what it already wrote may still be in the
    // kernel's buffers on the client's way), and so the upstream connection under it.
    assert!(
        eventually(Duration::from_secs(10), || big.broken.load(Ordering::SeqCst)),
        "a client reading at 10 KB/s was not cut (min_send_rate_bps 200000)"
    );
    let written = big.written.load(Ordering::SeqCst);
    eprintln!("slow reader: upstream connection closed after {written} bytes");
    assert!(written < BIG_BODY);
    // As long again, and a second more: the event stream, read as slowly, stays open.
    thread::sleep(started.elapsed() + Duration::from_secs(1));
    assert!(
        !events_broken.load(Ordering::SeqCst),
        "the event stream, read as slowly, was cut"
    );
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.join().expect("reader");
    }
}

#[test]
fn a_response_over_its_routes_response_timeout_is_cut_and_an_event_stream_is_not() {
    let (trickle, _) = paced_upstream(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        b"x",
        Duration::from_millis(100),
        Some(100),
    );
    let big = BigUpstream::start();
    let (events, _) = paced_upstream(
        EVENTS_HEAD,
        b"data: tick\n\n",
        Duration::from_millis(250),
        Some(10),
    );
    let gw = Gateway::start(&format!(
        r#"
client: {{ send_timeout_ms: 60000 }}
upstreams:
  trickle: {{ targets: ["{}"], timeouts: {{ read_ms: 60000 }} }}
  big: {{ targets: ["{}"], timeouts: {{ read_ms: 60000, write_ms: 60000 }} }}
  events: {{ targets: ["{}"] }}
routes:
  - {{ name: trickle, path_prefix: /trickle, upstream: trickle, response_timeout_ms: 1000 }}
  - {{ name: big, path_prefix: /big, upstream: big, response_timeout_ms: 1000 }}
  - {{ name: events, path_prefix: /events, upstream: events, response_timeout_ms: 1000 }}
"#,
        trickle.addr, big.server.addr, events.addr
    ));

    // An upstream trickling a 100-byte body over 10 s: the client gets part of it, then the end.
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /trickle HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("request");
    let mut got = Vec::new();
    let end = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    eprintln!("trickled response: {end:?} after {} bytes", got.len());
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        end.as_ref().is_ok() || end.as_ref().is_err_and(|e| !is_timeout(e)),
        "still open: {end:?}"
    );
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(body.len() < 100, "the whole trickled body arrived: {body:?}");

    // A client that reads nothing of a large response: cut at the deadline, not the send one.
    let mut stalled = TcpStream::connect(gw.addr).expect("connect");
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("request");
    assert!(
        eventually(Duration::from_secs(15), || big.broken.load(Ordering::SeqCst)),
        "the stalled response outlived its response_timeout_ms"
    );

    // An event stream longer than the deadline arrives whole.
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /events HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("data: tick").count(), 10, "{text}");
    drop(stalled);
}
