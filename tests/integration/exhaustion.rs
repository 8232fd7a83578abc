//! Resource exhaustion through the real gateway: clients that trickle their heads on a
//! kept-alive connection, that stop reading a large response, that open too many connections
//! or sit idle by the thousand; upstreams that close pooled connections under the gateway; and
//! a Redis that is flushed, out of memory and stalled while requests flow.
//!
//! Covered elsewhere, not here: the first head of a connection trickled in (answered 408) in
//! `hardening::a_client_trickling_its_header_is_cut_off`; a Redis killed or frozen under load
//! in `ratelimit`.

use crate::common::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long after the deadline's cause a connection may stay open: a liveness bound for
/// deadlines of one second, far below the 20 s a trickled head would need to finish.
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// A gateway proxying every path to `up`, with `client` as its `client:` line.
fn gateway(up: &Upstream, client: &str) -> Gateway {
    Gateway::start(&format!(
        "{client}\nupstreams:\n  backend: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: all, path_prefix: /, upstream: backend }}\n",
        up.addr
    ))
}

/// A kept-alive GET on `stream`: Ok(status), or what went wrong.
fn get_on(stream: &mut TcpStream, path: &str) -> Result<u16, String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    read_one(stream, &mut buf)
        .map(|r| r.status)
        .ok_or_else(|| format!("no answer to GET {path}: {:?}", String::from_utf8_lossy(&buf)))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

// ------------------------------------------------------------------ header deadline

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
    let gw = gateway(&up, "client: { header_timeout_ms: 1000 }");
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
    let gw = gateway(&up, "client: { header_timeout_ms: 1000 }");
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
    let gw = gateway(&up, "client: { header_timeout_ms: 1000 }");
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
    let gw = gateway(&up, "client: { header_timeout_ms: 1000 }");
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    assert_eq!(get_on(&mut s, "/first"), Ok(200));
    // The input: the connection idles between requests for longer than the header deadline
    // (the keep-alive timeout, 60 s by default, governs that wait, not the header deadline).
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(get_on(&mut s, "/second"), Ok(200));
    assert_eq!(up.hits(), 2);
}

#[test]
fn a_body_sent_slowly_is_not_cut_by_the_header_deadline() {
    let up = Upstream::start("u");
    let gw = gateway(&up, "client: { header_timeout_ms: 1000 }");
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

// ------------------------------------------------------------------ send deadline

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

// ------------------------------------------------------------------ connection caps

/// A connection from `local` (any loopback address) to `to`.
fn connect_from(local: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(local, 0).into())?;
    sock.connect(&to.into())?;
    Ok(sock.into())
}

const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

const NEIGHBOUR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// A new connection from `local`, kept alive after a GET answered 200 on it. The gateway's
/// readiness probe connected to the proxy listener once at start and may hold a place for a
/// moment: a connection closed at once is tried again for a bounded while.
fn admitted(local: IpAddr, to: SocketAddr) -> TcpStream {
    let mut admitted = None;
    let ok = eventually(Duration::from_secs(10), || {
        let Ok(mut s) = connect_from(local, to) else {
            return false;
        };
        if get_on(&mut s, "/held") == Ok(200) {
            admitted = Some(s);
            return true;
        }
        false
    });
    assert!(ok, "no connection from {local} admitted");
    admitted.expect("admitted")
}

/// A new connection from `local`, with a request on it, that the gateway closes without a
/// byte of answer: Ok, or what happened instead.
fn refused(local: IpAddr, to: SocketAddr) -> Result<(), String> {
    let mut s = connect_from(local, to).map_err(|e| format!("connect: {e}"))?;
    // The write may fail when the gateway has already closed: that is the refusal too.
    let _ = s.write_all(b"GET /over HTTP/1.1\r\nHost: a\r\n\r\n");
    s.set_read_timeout(Some(CLOSE_BOUND)).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) if answer.is_empty() => Ok(()),
        Ok(_) => Err(format!("answered {:?}", String::from_utf8_lossy(&answer))),
        Err(e) if is_timeout(&e) => Err(format!(
            "still open after {CLOSE_BOUND:?} (sent {:?})",
            String::from_utf8_lossy(&answer)
        )),
        Err(_) if answer.is_empty() => Ok(()), // reset
        Err(e) => Err(format!("{e} after {:?}", String::from_utf8_lossy(&answer))),
    }
}

#[test]
fn max_connections_closes_the_sixth_unanswered_and_admits_again_once_one_closes() {
    let up = Upstream::start("u");
    let gw = gateway(&up, "client: { max_connections: 5 }");
    let mut held: Vec<TcpStream> = (0..5).map(|_| admitted(HOME, gw.addr)).collect();
    let hits = up.hits();
    refused(HOME, gw.addr).unwrap_or_else(|e| panic!("the 6th connection: {e}"));
    refused(NEIGHBOUR, gw.addr).unwrap_or_else(|e| panic!("a 6th from another address: {e}"));
    assert_eq!(
        up.hits(),
        hits,
        "a refused connection's request reached the upstream"
    );
    // The admin listener has a cap of its own: it stays reachable while the proxy is full.
    assert_eq!(get(gw.admin, "/health").status, 200);
    // The five admitted ones are undisturbed.
    for s in &mut held {
        assert_eq!(get_on(s, "/again"), Ok(200));
    }
    drop(held.pop());
    // Once the gateway has seen that one close, a new connection takes its place...
    let mut next = admitted(HOME, gw.addr);
    assert_eq!(get_on(&mut next, "/next"), Ok(200));
    // ...and the cap holds again.
    refused(HOME, gw.addr).unwrap_or_else(|e| panic!("a 6th connection again: {e}"));
}

#[test]
fn max_connections_per_ip_closes_a_third_from_one_address_only() {
    let up = Upstream::start("u");
    let gw = gateway(&up, "client: { max_connections_per_ip: 2 }");
    let mut held = vec![admitted(HOME, gw.addr), admitted(HOME, gw.addr)];
    refused(HOME, gw.addr).unwrap_or_else(|e| panic!("a third connection from {HOME}: {e}"));
    // Another address has places of its own.
    let mut neighbours = [admitted(NEIGHBOUR, gw.addr), admitted(NEIGHBOUR, gw.addr)];
    refused(NEIGHBOUR, gw.addr).unwrap_or_else(|e| panic!("a third connection from {NEIGHBOUR}: {e}"));
    for s in held.iter_mut().chain(neighbours.iter_mut()) {
        assert_eq!(get_on(s, "/again"), Ok(200));
    }
    drop(held.pop());
    let _again = admitted(HOME, gw.addr);
    refused(HOME, gw.addr).unwrap_or_else(|e| panic!("a third from {HOME} again: {e}"));
}

// ------------------------------------------------------------------ idle connection memory

/// A `/proc/<pid>/status` field in kB, as bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb * 1024
}

/// The inodes of the sockets process `pid` holds open.
fn sockets_of(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        let target = target.to_str()?;
        target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// The inodes of the gateway's ends of the connections from `client_ports` to `server_port`
/// (/proc/net/tcp: local and remote address as hex ADDR:PORT, the inode tenth); 0 while a
/// connection waits in the accept queue.
fn server_ends(server_port: u16, client_ports: &HashSet<u16>) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap_or_default();
    let port = |field: &str| {
        field
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote) = (port(fields.get(1)?)?, port(fields.get(2)?)?);
            (local == server_port && client_ports.contains(&remote)).then(|| fields.get(9)?.parse().ok())?
        })
        .collect()
}

/// This process's soft limit on open files; the gateway child inherits it.
fn soft_fd_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

#[test]
fn an_idle_connection_costs_the_gateway_under_48_kib() {
    let up = Upstream::start("u");
    // A header deadline far past the measurement: the idle connections stay open for it.
    let gw = gateway(&up, "client: { header_timeout_ms: 60000 }");
    let pid = gw.pid();
    // Both ends of every connection live on this machine, under this process's limit.
    let n = if soft_fd_limit() >= 4096 { 1000 } else { 500 };
    for i in 0..20 {
        assert_eq!(get(gw.addr, &format!("/warm/{i}")).status, 200);
    }
    let rss_before = proc_status_bytes(pid, "VmRSS");
    let idle: Vec<TcpStream> = (0..n)
        .map(|i| TcpStream::connect(gw.addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let client_ports: HashSet<u16> = idle
        .iter()
        .map(|s| s.local_addr().expect("local addr").port())
        .collect();
    // Every one accepted by the gateway process (not merely queued by the kernel)...
    let mut held = 0;
    let accepted = eventually(Duration::from_secs(30), || {
        let ours = sockets_of(pid);
        held = server_ends(gw.addr.port(), &client_ports)
            .iter()
            .filter(|inode| ours.contains(inode))
            .count();
        held == n
    });
    assert!(accepted, "the gateway holds {held} of the {n} connections");
    // ...and its task run: a request behind them is answered.
    assert_eq!(get(gw.addr, "/behind").status, 200);
    let rss_after = proc_status_bytes(pid, "VmRSS");
    let per_connection = rss_after.saturating_sub(rss_before) / n as u64;
    eprintln!(
        "idle connections: RSS {rss_before} -> {rss_after} bytes for {n}: {per_connection} bytes ({:.1} KiB) each",
        per_connection as f64 / 1024.0
    );
    assert!(
        per_connection < 48 * 1024,
        "{per_connection} bytes per idle connection"
    );
    assert_eq!(idle.len(), n);
}

// ------------------------------------------------------------------ stale pooled connections

/// A request on a kept-alive client connection: the gateway reads it only once the previous
/// one is finished, its upstream connection back in the pool.
fn send_on(s: &mut TcpStream, method: &str, path: &str, body: &[u8]) -> Option<Resp> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    s.write_all(&raw).ok()?;
    read_one(s, &mut Vec::new())
}

#[test]
fn a_stale_pooled_connection_is_retried_for_a_get_and_never_for_a_post() {
    let up = ClosingUpstream::start(Closing::OnTheNextRequest);
    let gw = up.gateway();
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");

    let r = send_on(&mut s, "GET", "/one", b"").expect("an answer to GET /one");
    assert_eq!(r.status, 200, "{}", r.text());

    // Sent on the pooled connection, which the upstream closes unanswered: retried on a new one.
    let r = send_on(&mut s, "GET", "/two", b"").expect("an answer to GET /two");
    assert_eq!(r.status, 200, "{}", r.text());
    let two: Vec<Seen> = up.seen().into_iter().filter(|s| s.path == "/two").collect();
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(
        !two[0].answered && two[0].nth == 1,
        "GET /two went first to the pooled connection: {two:?}"
    );
    assert!(
        two[1].answered && two[1].nth == 0 && two[1].conn != two[0].conn,
        "then once more on a new connection: {two:?}"
    );

    // The same for a POST: the upstream has seen it, so it is never sent again.
    let r = send_on(&mut s, "POST", "/three", b"pay once");
    eprintln!(
        "POST on a stale pooled connection: {:?}",
        r.as_ref().map(|r| (r.status, r.text()))
    );
    assert_eq!(up.times_seen("POST", "/three"), 1, "{:?}", up.seen());
    let r = r.expect("an answer to POST /three");
    assert_eq!(r.status, 502, "{}", r.text());

    // The gateway goes on serving; the POST was still sent once only.
    assert_eq!(get(gw.addr, "/four").status, 200);
    assert_eq!(up.times_seen("POST", "/three"), 1, "{:?}", up.seen());
}

#[test]
fn an_upstream_closing_after_each_answer_never_sees_a_post_twice() {
    let up = ClosingUpstream::start(Closing::AfterEachAnswer);
    let gw = up.gateway();
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut statuses = Vec::new();
    for i in 0..20 {
        let get_path = format!("/get/{i}");
        let r =
            send_on(&mut s, "GET", &get_path, b"").unwrap_or_else(|| panic!("no answer to GET {get_path}"));
        assert_eq!(r.status, 200, "GET {get_path}: {}", r.text());

        let post_path = format!("/post/{i}");
        let Some(r) = send_on(&mut s, "POST", &post_path, b"pay once") else {
            panic!("no answer to POST {post_path}");
        };
        assert!(
            r.status == 200 || r.status == 502,
            "POST {post_path}: {} {}",
            r.status,
            r.text()
        );
        statuses.push(r.status);
        if r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            s = TcpStream::connect(gw.addr).expect("reconnect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
        }
    }
    eprintln!("POSTs after a closed pooled connection: {statuses:?}");
    for i in 0..20 {
        assert!(
            up.times_seen("POST", &format!("/post/{i}")) <= 1,
            "POST /post/{i} sent twice: {:?}",
            up.seen()
        );
    }
    assert_eq!(get(gw.addr, "/after").status, 200);
}

// ------------------------------------------------------------------ Redis faults under load

/// One command with a reply deadline of its own (`redis_cmd` waits 2 s at most).
fn redis_slow_cmd(addr: SocketAddr, args: &[&str], limit: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn redis_ok(redis: &Redis, args: &[&str]) {
    let reply = redis_cmd(redis.addr(), args);
    assert!(
        reply.as_deref().is_some_and(|r| r.starts_with('+')),
        "{args:?}: {reply:?}"
    );
}

/// Requests from `threads` client threads, each on a fresh connection, counted per phase;
/// anything but a 200 or a 429 is a failure.
struct RedisLoad {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    answered: Arc<Vec<AtomicUsize>>,
    limited: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

const PHASES: [&str; 5] = ["synced", "flushed", "out of memory", "stalled", "recovered"];

/// Requests per client thread at most: the load is bounded whatever happens.
const MAX_REQUESTS: usize = 20_000;

impl RedisLoad {
    fn start(addr: SocketAddr, threads: usize) -> RedisLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let answered: Arc<Vec<AtomicUsize>> = Arc::new(PHASES.iter().map(|_| AtomicUsize::new(0)).collect());
        let limited = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|t| {
                let (stop, phase, answered, limited, failures) = (
                    stop.clone(),
                    phase.clone(),
                    answered.clone(),
                    limited.clone(),
                    failures.clone(),
                );
                thread::spawn(move || {
                    for i in 0..MAX_REQUESTS {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let p = phase.load(Ordering::SeqCst);
                        match try_get(addr, &format!("/open/{t}/{i}")) {
                            Ok(r) if r.status == 200 || r.status == 429 => {
                                answered[p].fetch_add(1, Ordering::SeqCst);
                                if r.status == 429 {
                                    limited.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            Ok(r) => failures.lock().expect("failures").push(format!(
                                "[{}] status {}: {}",
                                PHASES[p],
                                r.status,
                                r.text()
                            )),
                            Err(e) => failures
                                .lock()
                                .expect("failures")
                                .push(format!("[{}] {e}", PHASES[p])),
                        }
                        // Pacing, not waiting: every fresh connection leaves a TIME_WAIT socket.
                        thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        RedisLoad {
            stop,
            phase,
            answered,
            limited,
            failures,
            threads,
        }
    }

    fn answered_in(&self, phase: usize) -> usize {
        self.answered[phase].load(Ordering::SeqCst)
    }

    fn answered_total(&self) -> usize {
        (0..PHASES.len()).map(|p| self.answered_in(p)).sum()
    }

    /// Requests from now on count in `phase`.
    fn enter(&self, phase: usize) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// Returns once `at_least` requests were answered in `phase`.
    fn wait_answers(&self, phase: usize, at_least: usize) {
        assert!(
            eventually(Duration::from_secs(30), || self.answered_in(phase) >= at_least),
            "only {} requests answered while {}; failures: {:?}",
            self.answered_in(phase),
            PHASES[phase],
            self.failures.lock().expect("failures")
        );
    }

    fn finish(mut self) -> (Vec<usize>, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("load thread");
        }
        let answered = self.answered.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let failures = std::mem::take(&mut *self.failures.lock().expect("failures"));
        (answered, self.limited.load(Ordering::SeqCst), failures)
    }
}

impl Drop for RedisLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn redis_flushed_out_of_memory_and_stalled_under_load_every_request_is_200_or_429() {
    let redis = Redis::start();
    let up = Upstream::start("u");
    let gw = Gateway::start(&format!(
        r#"
redis: {{ url: "{}", on_unavailable: local_share }}
upstreams:
  backend: {{ targets: ["{}"] }}
routes:
  - {{ name: open, path_prefix: /open, upstream: backend, global_limit: {{ rate: 100, per_s: 1 }} }}
"#,
        redis.url(),
        up.addr
    ));
    let instances = |n: &str| {
        redis_cmd(redis.addr(), &["ZCARD", "floodgate:instances"]).is_some_and(|r| r.starts_with(n))
    };
    let window_keys = || {
        redis_cmd(redis.addr(), &["KEYS", "{floodgate:gl:open}:*"])
            .is_some_and(|r| r.contains("floodgate:gl:open}"))
    };
    let failing = || gw.log().matches("redis sync failing").count();
    let restored = || gw.log().matches("redis sync restored").count();
    assert!(eventually(Duration::from_secs(10), || instances(":1")));

    let load = RedisLoad::start(gw.addr, 3);
    load.wait_answers(0, 100);
    assert!(eventually(Duration::from_secs(10), window_keys));

    // Everything gone at once: the next syncs write it all again.
    load.enter(1);
    redis_ok(&redis, &["FLUSHALL"]);
    assert!(
        eventually(Duration::from_secs(10), || instances(":1") && window_keys()),
        "the sync did not write again after FLUSHALL"
    );
    load.wait_answers(1, 100);

    // Out of memory: every write is refused.
    load.enter(2);
    redis_ok(&redis, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis_ok(&redis, &["CONFIG", "SET", "maxmemory", "1"]);
    let refused = redis_cmd(redis.addr(), &["SET", "floodgate:probe", "1"]);
    assert!(
        refused.as_deref().is_some_and(|r| r.starts_with("-OOM")),
        "{refused:?}"
    );
    // A refused write is a failed sync: its counts are kept to be pushed later.
    let failing_before = failing();
    assert!(
        eventually(Duration::from_secs(10), || failing() > failing_before),
        "the sync did not notice Redis refusing its writes"
    );
    load.wait_answers(2, 100);
    redis_ok(&redis, &["CONFIG", "SET", "maxmemory", "0"]);
    assert!(
        eventually(Duration::from_secs(15), || restored() == failing()),
        "no recovery after out of memory: {} failing, {} restored",
        failing(),
        restored()
    );

    // Stalled: Redis answers nothing for 2 s.
    load.enter(3);
    let failing_before = failing();
    let stalled_before = load.answered_total();
    let addr = redis.addr();
    let sleeper =
        thread::spawn(move || redis_slow_cmd(addr, &["DEBUG", "SLEEP", "2"], Duration::from_secs(10)));
    let slept = sleeper.join().expect("DEBUG SLEEP");
    assert!(
        slept.as_deref().is_some_and(|r| r.starts_with("+OK")),
        "{slept:?}"
    );
    let during_stall = load.answered_total() - stalled_before;
    eprintln!("{during_stall} requests answered during the 2 s stall");
    assert!(during_stall > 0, "no request answered during the stall");
    assert!(
        eventually(Duration::from_secs(10), || failing() > failing_before),
        "the sync did not notice Redis stalling for 2 s (its reply deadline is 500 ms)"
    );

    // Recovered: the sync writes again, and says so.
    load.enter(4);
    assert!(
        eventually(Duration::from_secs(15), || restored() == failing()),
        "no recovery after the stall: {} failing, {} restored",
        failing(),
        restored()
    );
    redis_ok(&redis, &["FLUSHALL"]);
    assert!(
        eventually(Duration::from_secs(10), || instances(":1") && window_keys()),
        "the sync did not write again after the faults"
    );
    load.wait_answers(4, 100);

    let (answered, limited, failures) = load.finish();
    eprintln!(
        "answered per phase {:?}: {answered:?}, of which 429: {limited}; sync failing {} times, restored {} times",
        PHASES,
        failing(),
        restored()
    );
    assert!(failures.is_empty(), "{} failures: {failures:?}", failures.len());
    assert!(
        limited > 0,
        "the global limit never answered 429: the load never reached it"
    );
}

// ------------------------------------------------------------------ HTTP/2 flow control

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

// ------------------------------------------------------------------ slow readers and uploads

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
    let gw = gateway(&up, "client: { min_receive_rate_bps: 2000 }");
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
    let gw = gateway(&up, "client: { min_receive_rate_bps: 2000 }");
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
