//! The harness's relay between regions, against a real redis-server: it holds each chunk for
//! the one-way delay without serialising chunks, a cut is a black hole on old and new
//! connections alike, and a heal closes those and lets new ones through.

use crate::common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const ONE_WAY: Duration = Duration::from_millis(40);
const PONG: &[u8] = b"+PONG\r\n";

/// Nothing comes back on `s` within 500 ms: a timeout, not an EOF nor a reset.
fn silent(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// `s` was closed under us: EOF or a reset within 2 s, not a timeout.
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn the_relay_delays_each_chunk_pipelines_them_and_can_be_cut_and_healed() {
    let redis = Redis::start();
    let relay = Relay::start(redis.addr(), ONE_WAY);
    // The URL given to a gateway names the relay, not Redis.
    let behind: SocketAddr = relay
        .redis_url()
        .strip_prefix("redis://")
        .and_then(|rest| rest.strip_suffix("/0"))
        .and_then(|a| a.parse().ok())
        .expect("redis_url is redis://ADDR/0");
    assert_eq!(behind, relay.addr());

    // A request and its reply each wait one delay.
    let t = Instant::now();
    assert_eq!(redis_cmd(behind, &["PING"]).as_deref(), Some("+PONG\r\n"));
    let ping = t.elapsed();
    eprintln!("PING through the relay: {ping:?}");
    assert!(ping >= 2 * ONE_WAY, "{ping:?}");
    assert!(ping < Duration::from_secs(2), "{ping:?}");

    // 20 PINGs written without waiting for replies, 5 ms apart so each is a chunk of its own:
    // they all arrive about one round trip after they were sent, not one after another.
    let mut conn = TcpStream::connect(behind).expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let t = Instant::now();
    for _ in 0..20 {
        conn.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
        thread::sleep(Duration::from_millis(5));
    }
    let mut replies = vec![0u8; 20 * PONG.len()];
    conn.read_exact(&mut replies).expect("20 replies");
    let twenty = t.elapsed();
    eprintln!("20 pipelined PINGs through the relay: {twenty:?}");
    assert_eq!(replies, PONG.repeat(20));
    assert!(twenty < Duration::from_secs(1), "{twenty:?}");

    // Cut: the open connection's request goes unanswered, and a new connection is accepted
    // but gets nothing either.
    relay.cut();
    let before = relay.bytes();
    conn.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
    assert!(
        silent(&mut conn),
        "an open connection passed bytes across the cut"
    );
    let mut during = TcpStream::connect(behind).expect("a cut link still accepts");
    during.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
    assert!(
        silent(&mut during),
        "a new connection passed bytes across the cut"
    );
    assert_eq!(relay.bytes(), before, "bytes were delivered across the cut");

    // Heal: the connections from before and during the cut are closed; new ones pass again.
    relay.heal();
    assert!(closed(&mut conn), "a connection from before the cut stayed open");
    assert!(
        closed(&mut during),
        "a connection from during the cut stayed open"
    );
    assert_eq!(redis_cmd(behind, &["PING"]).as_deref(), Some("+PONG\r\n"));
    let (to, from) = relay.bytes();
    eprintln!("bytes through the relay: {to} to Redis, {from} back");
    assert!(
        to > before.0 && from > before.1,
        "({to}, {from}) after {before:?}"
    );
}
