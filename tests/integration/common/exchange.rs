//! One request on a connection the test keeps: the answer read without waiting for the server
//! to close, so a test can then check whether the server closed the connection or kept it.

use super::client::{parse_response, Resp};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Reads one response from a kept-alive connection; `None` if it closed first.
pub fn read_one(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Resp> {
    let mut chunk = [0u8; 65536];
    loop {
        if let Some((resp, used)) = parse_response(buf) {
            buf.drain(..used);
            return Some(resp);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// True when the server has closed the connection (EOF or reset) within `limit`.
pub fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    rest_until_closed(stream, limit).is_some()
}

/// What the server still sends before it closes the connection (EOF or reset) within
/// `limit`; `None` if it leaves the connection open.
pub fn rest_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => Some(rest),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(rest),
        Err(_) => None,
    }
}

/// Sends `raw` on a new connection and reads one answer; the connection is returned open.
pub fn answer_on_new_connection(addr: SocketAddr, raw: &[u8]) -> (Resp, TcpStream) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(raw);
    let mut buf = Vec::new();
    let resp = read_one(&mut s, &mut buf)
        .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(raw)));
    (resp, s)
}

/// How long after the deadline's cause a connection may stay open: a liveness bound for
/// deadlines of one second, far below the 20 s a trickled head would need to finish.
pub const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// A kept-alive GET on `stream`: Ok(status), or what went wrong.
pub fn get_on(stream: &mut TcpStream, path: &str) -> Result<u16, String> {
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

/// A read that ended because its timeout passed, not because the peer closed.
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Waits until the peer closes `stream` (EOF or reset), up to `limit`: how long it took.
pub fn closed_within(stream: &mut impl Read, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return Some(start.elapsed()),
            Ok(_) => {}
        }
    }
    None
}
