//! Clients slow to send: a head trickled in (the first of a connection, or a later one on a
//! kept-alive connection), a connection that never speaks or idles past its keep-alive, and a
//! body trickled below the minimum receive rate. Each is cut off, nothing of it reaches the
//! upstream, and the gateway goes on serving others.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn a_client_trickling_its_header_is_cut_off() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "client: { header_timeout_ms: 500 }");
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let _ = s.write_all(b"GET / HTTP/1.1\r\n");
    // One header byte every 100 ms would take 10 s; the gateway must end it long before.
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut closed = false;
    for _ in 0..100 {
        if s.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        let mut chunk = [0u8; 1024];
        match s.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(up.hits(), 0);
    assert_eq!(get(gw.addr, "/ok").status, 200);
}

/// The pace of a trickled head: one byte per this long.
const TRICKLE_PACE: Duration = Duration::from_millis(200);

/// One complete request answered 200, then on the same connection a second head trickled
/// one byte every `TRICKLE_PACE`: 100 bytes with no blank line, so it would take 20 s and
/// never end. Ok((time from the second head's first byte until the gateway closed the
/// connection, the bytes the gateway sent after the first response)).
fn trickle_second_head(addr: SocketAddr) -> Result<(Duration, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let first = get_on(&mut s, "/first")?;
    if first != 200 {
        return Err(format!("first request: status {first}"));
    }
    let mut head = b"GET /second HTTP/1.1\r\nHost: a\r\nX-Slow: ".to_vec();
    head.resize(100, b'a');
    s.set_read_timeout(Some(TRICKLE_PACE))
        .map_err(|e| e.to_string())?;
    let mut after = Vec::new();
    let started = Instant::now();
    for byte in head {
        if s.write_all(&[byte]).is_err() {
            return Ok((started.elapsed(), after));
        }
        // The read's timeout paces the trickle (it is the input); a close ends it sooner.
        let mut chunk = [0u8; 1024];
        match s.read(&mut chunk) {
            Ok(0) => return Ok((started.elapsed(), after)),
            Ok(n) => after.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(_) => return Ok((started.elapsed(), after)),
        }
    }
    Err(format!(
        "still open {:?} after the first byte of the second head; it sent {:?}",
        started.elapsed(),
        String::from_utf8_lossy(&after)
    ))
}

/// What the gateway may send before closing on a late head: nothing, or a 408.
fn no_answer_or_408(after: &[u8]) -> bool {
    after.is_empty() || after.starts_with(b"HTTP/1.1 408")
}

#[test]
fn a_second_head_trickled_on_a_kept_alive_connection_is_cut_off() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "client: { header_timeout_ms: 1000 }");
    let (closed_after, after) = trickle_second_head(gw.addr).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "slow second head: closed {closed_after:?} after its first byte, having sent {:?}",
        String::from_utf8_lossy(&after)
    );
    assert!(
        closed_after < CLOSE_BOUND,
        "closed {closed_after:?} after the head began; the deadline is 1 s"
    );
    assert!(no_answer_or_408(&after), "{:?}", String::from_utf8_lossy(&after));
    assert_eq!(up.hits(), 1, "only the first request reached the upstream");
    assert_eq!(get(gw.addr, "/after").status, 200);
}

#[test]
fn twenty_kept_alive_connections_trickling_their_second_heads_are_all_cut_off() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "client: { header_timeout_ms: 1000 }");
    let addr = gw.addr;
    let clients: Vec<_> = (0..20)
        .map(|_| thread::spawn(move || trickle_second_head(addr)))
        .collect();
    let results: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    let mut slowest = Duration::ZERO;
    for (i, result) in results.iter().enumerate() {
        let (closed_after, after) = result.as_ref().unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert!(
            *closed_after < CLOSE_BOUND,
            "client {i}: closed {closed_after:?} after its second head began"
        );
        assert!(
            no_answer_or_408(after),
            "client {i}: {:?}",
            String::from_utf8_lossy(after)
        );
        slowest = slowest.max(*closed_after);
    }
    eprintln!("20 slow second heads: the last closed {slowest:?} after its first byte");
    assert_eq!(up.hits(), 20, "only the first requests reached the upstream");
    assert_eq!(get(gw.addr, "/after").status, 200);
}

#[test]
fn a_connection_that_never_sends_a_byte_is_closed_after_the_header_deadline() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "client: { header_timeout_ms: 1000 }");
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    let closed_after = started.elapsed();
    assert!(
        read.is_ok() || read.as_ref().is_err_and(|e| !is_timeout(e)),
        "still open after {closed_after:?}: {read:?}"
    );
    assert!(closed_after < CLOSE_BOUND, "closed after {closed_after:?}");
    assert!(
        answer.is_empty(),
        "a client that never spoke was answered {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(up.hits(), 0);
}

#[test]
fn the_header_deadline_runs_from_a_heads_first_byte_not_from_the_last_response() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "client: { header_timeout_ms: 1000 }");
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    assert_eq!(get_on(&mut s, "/first"), Ok(200));
    // The input: the connection idles between requests for longer than the header deadline
    // (the keep-alive timeout, 60 s by default, governs that wait, not the header deadline).
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(get_on(&mut s, "/second"), Ok(200));
    assert_eq!(up.hits(), 2);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "client: { keepalive_timeout_s: 1 }");
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = Vec::new();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n").expect("write");
    assert_eq!(read_one(&mut s, &mut buf).expect("first").status, 200);
    s.write_all(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n").expect("write");
    assert_eq!(
        read_one(&mut s, &mut buf)
            .expect("second, same connection")
            .status,
        200
    );
    // Pingora's default would hold this for 60 s; the configured 1 s must end it well before 10.
    assert!(closed_by_server(&mut s, Duration::from_secs(10)));
}

#[test]
fn a_body_sent_slowly_is_not_cut_by_the_header_deadline() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "client: { header_timeout_ms: 1000 }");
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
        .expect("head");
    for byte in b"0123456789" {
        // The input: the body arrives over 2 s, twice the header deadline.
        thread::sleep(TRICKLE_PACE);
        s.write_all(&[*byte]).expect("a body byte");
    }
    let mut buf = Vec::new();
    let resp = read_one(&mut s, &mut buf).expect("an answer to the slow upload");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["body_len"], 10);
}

/// A POST of a 100 kB body sent `piece` bytes every `pace`: the gateway's answer (status),
/// or None when it closed without one; Err when it did neither within 10 s.
fn upload(addr: SocketAddr, piece: usize, pace: Duration) -> Result<Option<u16>, String> {
    const LEN: usize = 100_000;
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    s.write_all(format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {LEN}\r\n\r\n").as_bytes())
        .expect("head");
    let body = vec![b'u'; LEN];
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(10) {
        if sent < LEN {
            let end = (sent + piece).min(LEN);
            if s.write_all(&body[sent..end]).is_err() {
                break;
            }
            sent = end;
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
        if let Some((resp, _)) = parse_response(&answer) {
            return Ok(Some(resp.status));
        }
        thread::sleep(pace); // the client's pace is the test's input
    }
    if started.elapsed() >= Duration::from_secs(10) {
        return Err(format!("neither answered nor closed after {sent} bytes sent"));
    }
    Ok(parse_response(&answer).map(|(r, _)| r.status))
}

#[test]
fn a_request_body_trickled_below_min_receive_rate_is_answered_408() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "client: { min_receive_rate_bps: 2000 }");
    // 100 bytes every 200 ms: 500 B/s, a quarter of the minimum.
    let slow = upload(gw.addr, 100, Duration::from_millis(200));
    assert!(
        matches!(slow, Ok(Some(408) | None)),
        "a trickled upload: {slow:?}"
    );
    assert_eq!(
        upload(gw.addr, 100_000, Duration::ZERO),
        Ok(Some(200)),
        "an upload at full speed"
    );
}

/// A client that waits for a `100 Continue` before its body (curl waits a second) is
/// not counted as slow: the receive rate is timed from the body's first byte.
#[test]
fn an_upload_waiting_for_100_continue_is_not_counted_slow() {
    let up = Upstream::start("u");
    let gw = Gateway::proxying_to(&up, "client: { min_receive_rate_bps: 2000 }");
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10000\r\n\r\n")
        .expect("head");
    thread::sleep(Duration::from_millis(1500)); // the client's wait is the test's input
    s.write_all(&[b'u'; 10_000]).expect("body");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let status = loop {
        let n = s.read(&mut chunk).expect("answer");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
        // A `100 Continue` passed on from the upstream comes first.
        let text = String::from_utf8_lossy(&answer);
        let last = text.rsplit("HTTP/1.1 ").next().unwrap_or_default();
        if let Some(code) = last.get(..3).filter(|c| *c != "100") {
            if text.contains("\r\n\r\n") {
                break code.to_string();
            }
        }
    };
    assert_eq!(status, "200", "{}", String::from_utf8_lossy(&answer));
}
