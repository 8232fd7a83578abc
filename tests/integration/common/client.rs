//! HTTP/1.1 clients over raw TCP: one that panics on anything unexpected (for tests that
//! expect an answer), and ones that never panic and report every problem (for load that
//! counts failures), including a kept-alive client that retries like real HTTP clients, or not.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// For an echoed request: the header the upstream received.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name.to_ascii_lowercase()]
            .as_str()
            .map(str::to_owned)
    }
}

fn decode_chunked(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
}

/// Parses one response from the front of `raw`; returns it and the bytes it used.
pub fn parse_response(raw: &[u8]) -> Option<(Resp, usize)> {
    parse_response_to(raw, false)
}

/// `head_only` for answers to HEAD, which carry no body whatever their headers say.
pub fn parse_response_to(raw: &[u8], head_only: bool) -> Option<(Resp, usize)> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[head_end..];
    if head_only {
        return Some((resp, head_end));
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        let end = rest.windows(5).position(|w| w == b"0\r\n\r\n").map(|p| p + 5)?;
        resp.body = decode_chunked(&rest[..end]);
        Some((resp, head_end + end))
    } else {
        let len: usize = resp
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(rest.len());
        if rest.len() < len {
            return None;
        }
        resp.body = rest[..len].to_vec();
        Some((resp, head_end + len))
    }
}

/// Sends raw bytes and reads until the server closes, then parses the response.
pub fn raw_request(addr: SocketAddr, raw: &[u8]) -> Resp {
    let bytes = raw_exchange(addr, raw);
    parse_response(&bytes).map(|(r, _)| r).unwrap_or_else(|| {
        panic!(
            "no complete response to {:?}: {:?}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// Sends raw bytes, returns everything the server sent before closing (or 10 s).
pub fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(raw).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut raw = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        raw.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
    {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")) {
        raw.push_str("Connection: close\r\n");
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    if method == "HEAD" {
        let answer = raw_exchange(addr, &bytes);
        return parse_response_to(&answer, true).expect("a response to HEAD").0;
    }
    raw_request(addr, &bytes)
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"")
}

pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(addr, "GET", path, headers, b"")
}

/// One request on a fresh connection (`Connection: close`); every problem is an error.
pub fn try_get(addr: SocketAddr, path: &str) -> Result<Resp, String> {
    try_get_with(addr, path, &[])
}

/// As `try_get`, with extra request headers.
pub fn try_get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Resp, String> {
    try_request(addr, "GET", path, headers, b"")
}

/// One request on a fresh connection (`Connection: close`); every problem (no
/// connection, no complete answer) is an error.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    if !body.is_empty() {
        extra.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes();
    raw.extend_from_slice(body);
    s.write_all(&raw).map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out);
    match parse_response(&out) {
        Some((resp, _)) => Ok(resp),
        None => Err(format!(
            "no complete response ({read:?}): {:?}",
            String::from_utf8_lossy(&out)
        )),
    }
}

pub fn get_ok(addr: SocketAddr, path: &str) -> Result<Resp, String> {
    let resp = try_get(addr, path)?;
    if resp.status == 200 {
        Ok(resp)
    } else {
        Err(format!("status {}: {}", resp.status, resp.text()))
    }
}

enum Attempt {
    Answered(Resp),
    /// The connection failed before a single byte of the answer arrived.
    NoAnswer(String),
    /// A refused connect, or a connection that broke in the middle of an answer.
    Broken(String),
}

/// A client that keeps one connection alive across requests and retries like real HTTP clients
/// (Go's net/http, curl, browsers): a server may close an idle kept-alive connection at any
/// moment (here: the old process at the end of an upgrade), racing a request being written. So
/// an idempotent request whose *reused* connection fails before any byte of the answer arrived
/// is sent once more, on a new connection. A refused connect, a new connection that fails, an
/// answer cut in the middle, a failed retry or a status other than 200 are failures.
pub struct KeepAliveClient {
    addr: SocketAddr,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
    answered_on_conn: usize,
}

impl KeepAliveClient {
    pub fn new(addr: SocketAddr) -> Self {
        KeepAliveClient {
            addr,
            conn: None,
            buf: Vec::new(),
            answered_on_conn: 0,
        }
    }

    fn attempt(&mut self, path: &str) -> Attempt {
        if self.conn.is_none() {
            match TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    self.conn = Some(s);
                    self.buf.clear();
                    self.answered_on_conn = 0;
                }
                Err(e) => return Attempt::Broken(format!("connect: {e}")),
            }
        }
        let s = self.conn.as_mut().expect("connection");
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        if let Err(e) = s.write_all(req.as_bytes()) {
            return Attempt::NoAnswer(format!("write: {e}"));
        }
        let mut chunk = [0u8; 16384];
        loop {
            if let Some((resp, used)) = parse_response(&self.buf) {
                self.buf.drain(..used);
                self.answered_on_conn += 1;
                if resp
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    self.conn = None;
                }
                return Attempt::Answered(resp);
            }
            let problem = match s.read(&mut chunk) {
                Ok(0) => "closed".to_string(),
                Err(e) => format!("read: {e}"),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
            };
            return if self.buf.is_empty() {
                Attempt::NoAnswer(problem)
            } else {
                Attempt::Broken(format!(
                    "{problem} in the middle of an answer: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ))
            };
        }
    }

    /// The next request goes on a connection that has answered before.
    pub fn reuses(&self) -> bool {
        self.conn.is_some() && self.answered_on_conn > 0
    }

    /// The kept-alive connection, if one is open.
    pub fn connection(&mut self) -> Option<&mut TcpStream> {
        self.conn.as_mut()
    }

    /// One attempt, never retried, for clients that trust `Connection: close` alone: any
    /// connection error, EOF without an answer or status other than 200 is an error. A
    /// response saying `Connection: close` ends the connection; the next request opens one.
    pub fn get_once(&mut self, path: &str) -> Result<Resp, String> {
        let reused = self.reuses();
        let resp = match self.attempt(path) {
            Attempt::Answered(r) => r,
            Attempt::NoAnswer(e) | Attempt::Broken(e) => {
                self.conn = None;
                let on = if reused { "reused" } else { "new" };
                return Err(format!("{e} (on a {on} connection)"));
            }
        };
        if resp.status != 200 {
            return Err(format!("status {}: {}", resp.status, resp.text()));
        }
        Ok(resp)
    }

    /// Ok((response, whether it took a retry)).
    pub fn get(&mut self, path: &str) -> Result<(Resp, bool), String> {
        let reused = self.reuses();
        let (resp, retried) = match self.attempt(path) {
            Attempt::Answered(r) => (r, false),
            Attempt::NoAnswer(first) if reused => {
                self.conn = None;
                match self.attempt(path) {
                    Attempt::Answered(r) => (r, true),
                    Attempt::NoAnswer(e) | Attempt::Broken(e) => {
                        self.conn = None;
                        return Err(format!("retry on a new connection: {e} (first try: {first})"));
                    }
                }
            }
            Attempt::NoAnswer(e) | Attempt::Broken(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        if resp.status != 200 {
            return Err(format!("status {}: {}", resp.status, resp.text()));
        }
        Ok((resp, retried))
    }
}

/// Raw bytes as text, for failure messages.
pub fn show(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// A connection from `local` (any loopback address) to `to`.
pub fn connect_from(local: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(local, 0).into())?;
    sock.connect(&to.into())?;
    Ok(sock.into())
}
