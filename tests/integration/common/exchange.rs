//! One request on a connection the test keeps: the answer read without waiting for the server
//! to close, so a test can then check whether the server closed the connection or kept it.

use super::client::{parse_response, Resp};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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
