//! Test harness: the real `floodgate` binary, real upstream HTTP servers and a raw
//! HTTP/1.1 client, all on loopback with ephemeral ports.
#![allow(dead_code)] // each test binary uses its own part of the harness

use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_floodgate");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

// ------------------------------------------------------------------ client

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

// ------------------------------------------------------------------ upstream servers

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Echo,
    Status(u16),
    Slow(Duration),
}

/// A real HTTP/1.1 server on loopback that echoes requests as JSON, and can be told
/// to fail, answer slowly, report unhealthy on `/health`, or die (listener and every
/// open connection closed, as when a process exits) and come back on the same port.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub mode: Arc<Mutex<Mode>>,
    pub healthy: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        let mut u = Upstream {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            hits: Arc::new(AtomicUsize::new(0)),
            mode: Arc::new(Mutex::new(Mode::Echo)),
            healthy: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            accept: None,
        };
        u.listen();
        u
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).expect("upstream bind");
        self.stop.store(false, Ordering::SeqCst);
        let state = ServerState {
            name: self.name.clone(),
            hits: self.hits.clone(),
            mode: self.mode.clone(),
            healthy: self.healthy.clone(),
        };
        let (stop, conns) = (self.stop.clone(), self.conns.clone());
        self.accept = Some(thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    conns.lock().expect("conns").push(clone);
                }
                let state = state.clone();
                thread::spawn(move || serve_connection(stream, &state));
            }
        }));
    }

    /// Die: stop listening and close every open connection.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self.conns.lock().expect("conns").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restart(&mut self) {
        self.listen();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Clone)]
struct ServerState {
    name: String,
    hits: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    healthy: Arc<AtomicBool>,
}

fn serve_connection(stream: TcpStream, state: &ServerState) {
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let Some((method, url, headers, body)) = read_request(&mut reader) else {
            return;
        };
        let close = headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (status, answer) = answer(state, &method, &url, &headers, &body);
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            answer.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let mut out = head.into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(answer.as_bytes());
        }
        if writer.write_all(&out).is_err() || close {
            return;
        }
    }
}

type Request = (String, String, HashMap<String, String>, Vec<u8>);

fn read_request(reader: &mut impl std::io::BufRead) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
    let mut parts = line.split_whitespace();
    let (method, url) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers: HashMap<String, String> = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok().filter(|&n| n > 0)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        headers
            .entry(k)
            .and_modify(|old| *old = format!("{old}, {v}"))
            .or_insert(v);
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some((method, url, headers, body))
}

fn answer(
    state: &ServerState,
    method: &str,
    url: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, String) {
    if url == "/health" {
        let code = if state.healthy.load(Ordering::SeqCst) {
            200
        } else {
            500
        };
        return (code, "{}".into());
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    let mode = *state.mode.lock().expect("mode");
    let status = match mode {
        Mode::Echo => 200,
        Mode::Status(s) => s,
        Mode::Slow(d) => {
            thread::sleep(d);
            200
        }
    };
    let answer = serde_json::json!({
        "upstream": state.name,
        "method": method,
        "url": url,
        "headers": headers,
        "body_len": body.len(),
        "body_sum": body.iter().map(|&b| b as u64).sum::<u64>(),
    });
    (status, answer.to_string())
}

// ------------------------------------------------------------------ the gateway

pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
    pub log_path: PathBuf,
}

static STARTED: AtomicU16 = AtomicU16::new(0);

impl Gateway {
    /// Starts the real binary on `body` (the gateway's keys: upstreams, routes, ...);
    /// listeners, admin and Pingora's files are filled in. Waits for `/ready`.
    pub fn start(body: &str) -> Gateway {
        Gateway::start_logging(body, "info")
    }

    /// As `start`, with `RUST_LOG` set to `rust_log`.
    pub fn start_logging(body: &str, rust_log: &str) -> Gateway {
        Gateway::launch(body, rust_log, "")
    }

    /// As `start`, with more keys in the `admin` section (e.g. `token: "..."`).
    pub fn start_admin(body: &str, admin_keys: &str) -> Gateway {
        let admin_keys = if admin_keys.is_empty() {
            String::new()
        } else {
            format!(", {admin_keys}")
        };
        Gateway::launch(body, "info", &admin_keys)
    }

    fn launch(body: &str, rust_log: &str, admin_keys: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, admin_port) = (free_port(), free_port());
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        let config = format!(
            "version: 1\nthreads: 1\npid_file: {d}/fg{n}.pid\nupgrade_sock: {d}/fg{n}.sock\n\
             grace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\n\
             listen: [\"127.0.0.1:{port}\"]\nadmin: {{ listen: \"127.0.0.1:{admin_port}\"{admin_keys} }}\n{body}",
            d = dir.path().display()
        );
        let conf_path = dir.path().join("floodgate.yaml");
        std::fs::write(&conf_path, config).expect("write config");
        let log_path = dir.path().join("floodgate.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(BIN)
            .arg("-c")
            .arg(&conf_path)
            .env("RUST_LOG", rust_log)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn floodgate");
        let mut gw = Gateway {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            dir,
            child,
            log_path,
        };
        gw.wait_ready();
        gw
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("floodgate exited with {status}: {}", self.log());
            }
            if TcpStream::connect(self.admin).is_ok() && get(self.admin, "/ready").status == 200 {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("floodgate not ready in time: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms for up to `limit`; for waiting on background work
/// (health checks), never for asserting speed.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `floodgate -t -c FILE` on the given text: (exit success, stderr + stdout).
pub fn check_config(text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(BIN)
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .env_remove("FLOODGATE_TEST_UNSET")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.success(), text)
}

// ------------------------------------------------------------------ redis

/// A real `redis-server` on a free loopback port, which tests can kill, restart on
/// the same port, freeze (SIGSTOP) and thaw.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (make test installs it)");
        self.child = Some(child);
        let up = eventually(Duration::from_secs(10), || {
            redis_cmd(self.addr(), &["PING"]).is_some_and(|r| r.contains("PONG"))
        });
        assert!(up, "redis-server did not start on port {}", self.port);
    }

    /// SIGKILL: the outage a crash causes.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args([sig, &c.id().to_string()]).status();
        }
    }

    /// SIGSTOP: connections stay open but nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.thaw();
        self.kill();
    }
}

/// One command over RESP; the reply's raw text, or None if Redis is unreachable.
pub fn redis_cmd(addr: SocketAddr, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).ok()?;
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `n` gateway processes on one config body, e.g. behind one Redis.
pub fn gateways(body: &str, admin_keys: &str, n: usize) -> Vec<Gateway> {
    (0..n).map(|_| Gateway::start_admin(body, admin_keys)).collect()
}
