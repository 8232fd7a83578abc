//! Upstreams that stream their answers: a 50 MB body written as fast as the gateway takes it,
//! or pieces written at a pace; each notes when its connection broke under it.

use super::request::read_request;
use super::server::Server;
use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub const BIG_BODY: usize = 50 * 1024 * 1024;

/// An upstream answering every request with a 50 MB body, counting what it got written and
/// noting when its connection broke under it.
pub struct BigUpstream {
    pub server: Server,
    pub written: Arc<AtomicUsize>,
    pub broken: Arc<AtomicBool>,
}

impl BigUpstream {
    pub fn start() -> BigUpstream {
        let written = Arc::new(AtomicUsize::new(0));
        let broken = Arc::new(AtomicBool::new(false));
        let (w, b) = (written.clone(), broken.clone());
        let server = Server::start(move |stream, _| {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut out = stream;
            if read_request(&mut reader).is_none() {
                return;
            }
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG_BODY}\r\n\r\n");
            if out.write_all(head.as_bytes()).is_err() {
                b.store(true, Ordering::SeqCst);
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < BIG_BODY {
                match out.write(&chunk[..chunk.len().min(BIG_BODY - sent)]) {
                    Ok(n) if n > 0 => {
                        sent += n;
                        w.fetch_add(n, Ordering::SeqCst);
                    }
                    _ => {
                        b.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
        BigUpstream {
            server,
            written,
            broken,
        }
    }
}

/// An upstream answering every request with `head` and then `piece` written every `pace`
/// (`pieces` times; without end when `None`), noting when its connection broke under it.
pub fn paced_upstream(
    head: &'static str,
    piece: &'static [u8],
    pace: Duration,
    pieces: Option<usize>,
) -> (Server, Arc<AtomicBool>) {
    let broken = Arc::new(AtomicBool::new(false));
    let b = broken.clone();
    let server = Server::start(move |stream, _| {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut out = stream;
        if read_request(&mut reader).is_none() || out.write_all(head.as_bytes()).is_err() {
            return;
        }
        for _ in 0..pieces.unwrap_or(usize::MAX) {
            if !pace.is_zero() {
                thread::sleep(pace); // the upstream's own pace is the test's input
            }
            if out.write_all(piece).is_err() {
                b.store(true, Ordering::SeqCst);
                return;
            }
        }
    });
    (server, broken)
}

/// The head of an endless event stream (`text/event-stream`).
pub const EVENTS_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
