//! Test upstream servers: real HTTP/1.1 servers in this process, on loopback listeners they
//! bind themselves (port 0) and keep, so no other process can take their port first.

use super::ports;
use super::request::{read_request, Request};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

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
        Upstream::listening(name, ports::listener())
    }

    /// One upstream per loopback address in `ips`, all on one port: the targets a
    /// DNS name resolves to (a target's port comes from the config, not from DNS).
    pub fn on_one_port(ips: &[&str]) -> Vec<Upstream> {
        loop {
            let first = TcpListener::bind((ips[0], 0)).expect("upstream bind");
            let port = first.local_addr().expect("upstream addr").port();
            let rest: Result<Vec<TcpListener>, _> =
                ips[1..].iter().map(|ip| TcpListener::bind((*ip, port))).collect();
            if let Ok(rest) = rest {
                return std::iter::once(first)
                    .chain(rest)
                    .zip(ips)
                    .map(|(listener, ip)| Upstream::listening(ip, listener))
                    .collect();
            }
        }
    }

    fn listening(name: &str, listener: TcpListener) -> Upstream {
        let addr = listener.local_addr().expect("upstream addr");
        ports::claim(addr.port());
        let mut u = Upstream {
            name: name.into(),
            addr,
            hits: Arc::new(AtomicUsize::new(0)),
            mode: Arc::new(Mutex::new(Mode::Echo)),
            healthy: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            accept: None,
        };
        u.serve(listener);
        u
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn serve(&mut self, listener: TcpListener) {
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

    /// Back on the same port: the gateway under test is configured with it.
    pub fn restart(&mut self) {
        let addr = self.addr;
        let listener = ports::on_the_same_port("upstream", || {
            TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))
        });
        self.serve(listener);
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
        let Some(Request {
            method,
            target: url,
            headers,
            body,
        }) = read_request(&mut reader)
        else {
            return;
        };
        let close = headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (status, answer) = answer(state, &method, &url, &headers, &body);
        // `X-Reply-Header: Name: value` asks for that header on the answer (an upstream's
        // own headers, for tests of what the gateway lets through).
        let asked = headers
            .get("x-reply-header")
            .map(|h| format!("{h}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{asked}{}\r\n",
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
            thread::sleep(d); // Not a wait: answering late is what this mode is for.
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

/// Which test upstreams (by name) served `n` GETs through `gw`, each of which must succeed.
pub fn served_by(gw: &super::Gateway, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = super::get(gw.addr, "/x");
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["upstream"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}
