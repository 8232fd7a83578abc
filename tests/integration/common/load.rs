//! Continuous load on a gateway from client threads, every failure recorded with the phase it
//! happened in: the yardstick of the lifecycle tests ("no request fails while ..."). Also
//! clients that never retry, for what `Connection: close` alone must get right.

use super::{get_ok, KeepAliveClient};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Default)]
pub struct Counters {
    /// Proxied requests answered 200 (each reached the upstream exactly once).
    pub ok: AtomicUsize,
    /// Of those, answered on a kept-alive connection that had answered before.
    pub reused: AtomicUsize,
    /// Keep-alive requests sent again after their idle connection was closed under them.
    pub retries: AtomicUsize,
    pub admin_ok: AtomicUsize,
    /// Which upgrade or reload is under way, for the failure messages.
    pub phase: AtomicUsize,
    pub failures: Mutex<Vec<String>>,
}

impl Counters {
    fn fail(&self, who: &str, e: String) {
        let phase = self.phase.load(Ordering::SeqCst);
        self.failures
            .lock()
            .expect("failures")
            .push(format!("[{who}, phase {phase}] {e}"));
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    pub c: Arc<Counters>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    /// `fresh` threads opening a connection per request, `kept` threads each on one kept-alive
    /// connection, and one thread asking the admin listener for /health and /ready.
    pub fn start(addr: SocketAddr, admin: SocketAddr, fresh: usize, kept: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let c = Arc::new(Counters::default());
        let mut threads = Vec::new();
        for n in 0..fresh {
            let (stop, c) = (stop.clone(), c.clone());
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match get_ok(addr, &format!("/fresh/{n}")) {
                        Ok(_) => c.ok.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            c.fail("fresh", e);
                            0
                        }
                    };
                    // Pacing, not waiting: every fresh connection leaves a TIME_WAIT socket behind.
                    thread::sleep(Duration::from_millis(3));
                }
            }));
        }
        for n in 0..kept {
            let (stop, c) = (stop.clone(), c.clone());
            threads.push(thread::spawn(move || {
                let mut client = KeepAliveClient::new(addr);
                while !stop.load(Ordering::SeqCst) {
                    let reused = client.reuses();
                    match client.get(&format!("/kept/{n}")) {
                        Ok((_, retried)) => {
                            c.ok.fetch_add(1, Ordering::SeqCst);
                            if retried {
                                c.retries.fetch_add(1, Ordering::SeqCst);
                            } else if reused {
                                c.reused.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(e) => c.fail("keep-alive", e),
                    }
                    // Pacing, not waiting: leaves the gateway time for the other clients.
                    thread::sleep(Duration::from_millis(1));
                }
            }));
        }
        {
            let (stop, c) = (stop.clone(), c.clone());
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for path in ["/health", "/ready"] {
                        match get_ok(admin, path) {
                            Ok(_) => c.admin_ok.fetch_add(1, Ordering::SeqCst),
                            Err(e) => {
                                c.fail(&format!("admin {path}"), e);
                                0
                            }
                        };
                    }
                    // Pacing, not waiting: probes at the rate of an eager load balancer.
                    thread::sleep(Duration::from_millis(10));
                }
            }));
        }
        Load { stop, c, threads }
    }

    pub fn ok(&self) -> usize {
        self.c.ok.load(Ordering::SeqCst)
    }

    pub fn admin_ok(&self) -> usize {
        self.c.admin_ok.load(Ordering::SeqCst)
    }

    /// Stops the clients; (requests answered, failure messages).
    pub fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("load thread panicked");
        }
        let failures = std::mem::take(&mut *self.c.failures.lock().expect("failures"));
        (self.ok(), failures)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What `NoRetryLoad` counts, per phase (0 before the event a test waits on, then 1, 2, ...).
#[derive(Default)]
pub struct NoRetryCounters {
    /// Requests answered 200.
    pub ok: AtomicUsize,
    /// Of those, answers that said `Connection: close`, counted by the phase they arrived in.
    pub closes: [AtomicUsize; 3],
    /// Answers that left the connection open, by phase.
    pub kept: [AtomicUsize; 3],
    pub phase: AtomicUsize,
    pub failures: Mutex<Vec<String>>,
}

impl NoRetryCounters {
    pub fn closes(&self, phase: usize) -> usize {
        self.closes[phase].load(Ordering::SeqCst)
    }
    pub fn kept(&self, phase: usize) -> usize {
        self.kept[phase].load(Ordering::SeqCst)
    }
}

/// Kept-alive clients that never retry (`KeepAliveClient::get_once`), one request at a time
/// each, back to back: a new connection only after an answer said `Connection: close`, and
/// every connection error, EOF without an answer or status other than 200 a failure.
pub struct NoRetryLoad {
    stop: Arc<AtomicBool>,
    pub c: Arc<NoRetryCounters>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl NoRetryLoad {
    pub fn start(addr: SocketAddr, clients: usize) -> NoRetryLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let c = Arc::new(NoRetryCounters::default());
        let started = std::time::Instant::now();
        let threads = (0..clients)
            .map(|n| {
                let (stop, c) = (stop.clone(), c.clone());
                thread::spawn(move || {
                    let mut client = KeepAliveClient::new(addr);
                    while !stop.load(Ordering::SeqCst) {
                        let result = client.get_once(&format!("/once/{n}"));
                        let phase = c.phase.load(Ordering::SeqCst).min(2);
                        match result {
                            Ok(resp) => {
                                c.ok.fetch_add(1, Ordering::SeqCst);
                                let close = resp
                                    .header("connection")
                                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                                let counter = if close { &c.closes } else { &c.kept };
                                counter[phase].fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => c.failures.lock().expect("failures").push(format!(
                                "[client {n}, phase {phase}, {:?} in] {e}",
                                started.elapsed()
                            )),
                        }
                    }
                })
            })
            .collect();
        NoRetryLoad { stop, c, threads }
    }

    pub fn ok(&self) -> usize {
        self.c.ok.load(Ordering::SeqCst)
    }

    pub fn failures(&self) -> Vec<String> {
        self.c.failures.lock().expect("failures").clone()
    }

    /// Stops the clients; (requests answered, failure messages).
    pub fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("client thread panicked");
        }
        (self.ok(), self.failures())
    }
}

impl Drop for NoRetryLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
