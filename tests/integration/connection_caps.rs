//! What connections may take: a cap on all connections and one per client address (a
//! connection over either is closed unanswered, and one is admitted again once another
//! closes), and what an idle connection costs the gateway. TLS connections count from their
//! accept (tls.rs).

use crate::common::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

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
    let gw = Gateway::proxying_to(&up, "client: { max_connections: 5 }");
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
    let gw = Gateway::proxying_to(&up, "client: { max_connections_per_ip: 2 }");
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
    let gw = Gateway::proxying_to(&up, "client: { header_timeout_ms: 60000 }");
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
