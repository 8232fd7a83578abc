//! Process lifecycle (CONTRACT.md section 9): graceful upgrade (a new process started with
//! `-u`, then SIGQUIT to the old one) under continuous load with zero failed requests; SIGTERM
//! draining a request in flight; a broken config never touching the running process; and the
//! start/reload recipe of systemd/floodgate.service run as written, on daemonized processes.
//!
//! Timings that follow from Pingora 0.9 and shape these tests:
//! - The old process, on SIGQUIT, sends its listening sockets, keeps accepting on them for
//!   5 s (CLOSE_TIMEOUT, fixed), then stops accepting, waits `grace_period_seconds` and drops
//!   whatever is still running after at most `graceful_shutdown_timeout_seconds`.
//! - `-u` waits for the sockets in the foreground, before `-d` daemonizes, for about 6 s.
//! - Pingora lets requests in flight run only during `grace_period_seconds`, then cancels them
//!   (tokio's shutdown_timeout bounds blocking threads, not tasks); floodgate raises the grace
//!   period to `graceful_shutdown_timeout_seconds` so that the drain window operators set holds
//!   (src/app.rs; checked by the last SIGTERM test).

use crate::common::*;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Pingora's fixed pause between handing the sockets over and closing them in the old process.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------ processes and files

/// One gateway's files, in a temp dir: config, pid file, upgrade socket, log.
struct Setup {
    dir: tempfile::TempDir,
    conf: PathBuf,
    sock: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
    /// `grace_period_seconds`, `graceful_shutdown_timeout_seconds`.
    grace: u64,
    drain: u64,
}

impl Setup {
    /// A gateway proxying everything to `upstream`.
    fn new(upstream: &Upstream, grace: u64, drain: u64) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Setup {
            conf: dir.path().join("floodgate.yaml"),
            sock: dir.path().join("upgrade.sock"),
            pid_file: dir.path().join("floodgate.pid"),
            log: dir.path().join("floodgate.log"),
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir,
            grace,
            drain,
        };
        s.write_config(&format!(
            "upstreams:\n  app: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: all, path_prefix: /, upstream: app }}\n",
            upstream.addr
        ));
        s
    }

    /// Writes the config file: Pingora's keys and listeners filled in, then `body`.
    fn write_config(&self, body: &str) {
        let text = format!(
            "version: 1\nthreads: 2\npid_file: {}\nupgrade_sock: {}\ngrace_period_seconds: {}\n\
             graceful_shutdown_timeout_seconds: {}\nlisten: [\"{}\"]\nadmin: {{ listen: \"{}\" }}\n\
             access_log: {}\n{body}",
            self.pid_file.display(),
            self.sock.display(),
            self.grace,
            self.drain,
            self.addr,
            self.admin,
            // Its own file: the process log, printed on failures, stays readable.
            self.dir.path().join("access.log").display(),
        );
        std::fs::write(&self.conf, text).expect("write config");
    }

    fn log_file(&self) -> std::fs::File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `floodgate <args> -c CONF` in the foreground, its output appended to the log.
    fn spawn(&self, args: &[&str]) -> Proc {
        let child = Command::new(BIN)
            .args(args)
            .arg("-c")
            .arg(&self.conf)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(self.log_file())
            .stderr(self.log_file())
            .spawn()
            .expect("spawn floodgate");
        Proc(child)
    }

    /// The live process the pid file names, if any.
    fn pid_from_file(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }
}

/// A floodgate child process, killed if still running when dropped.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().expect("try_wait")
    }
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Daemonized processes are nobody's children here: remembered, and killed at the end.
#[derive(Default)]
struct Daemons(Vec<u32>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

/// Sends a signal the way an operator or systemd does.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Running, and not a zombie (a daemon's exit is reaped by whoever adopted it, maybe never).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

// ------------------------------------------------------------------ clients that never panic

/// One request on a fresh connection (`Connection: close`); every problem is an error.
fn try_get(addr: SocketAddr, path: &str) -> Result<Resp, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
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

fn get_ok(addr: SocketAddr, path: &str) -> Result<Resp, String> {
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
struct KeepAliveClient {
    addr: SocketAddr,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
    answered_on_conn: usize,
}

impl KeepAliveClient {
    fn new(addr: SocketAddr) -> Self {
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

    /// Ok((response, whether it took a retry)).
    fn get(&mut self, path: &str) -> Result<(Resp, bool), String> {
        let reused = self.conn.is_some() && self.answered_on_conn > 0;
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

// ------------------------------------------------------------------ continuous load

#[derive(Default)]
struct Counters {
    /// Proxied requests answered 200 (each reached the upstream exactly once).
    ok: AtomicUsize,
    /// Of those, answered on a kept-alive connection that had answered before.
    reused: AtomicUsize,
    /// Keep-alive requests sent again after their idle connection was closed under them.
    retries: AtomicUsize,
    admin_ok: AtomicUsize,
    /// Which upgrade or reload is under way, for the failure messages.
    phase: AtomicUsize,
    failures: Mutex<Vec<String>>,
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

struct Load {
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    /// `fresh` threads opening a connection per request, `kept` threads each on one kept-alive
    /// connection, and one thread asking the admin listener for /health and /ready.
    fn start(addr: SocketAddr, admin: SocketAddr, fresh: usize, kept: usize) -> Load {
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
                    // Paced: every fresh connection leaves a TIME_WAIT socket behind.
                    thread::sleep(Duration::from_millis(3));
                }
            }));
        }
        for n in 0..kept {
            let (stop, c) = (stop.clone(), c.clone());
            threads.push(thread::spawn(move || {
                let mut client = KeepAliveClient::new(addr);
                while !stop.load(Ordering::SeqCst) {
                    let reused = client.conn.is_some() && client.answered_on_conn > 0;
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
                    thread::sleep(Duration::from_millis(10));
                }
            }));
        }
        Load { stop, c, threads }
    }

    fn ok(&self) -> usize {
        self.c.ok.load(Ordering::SeqCst)
    }

    fn admin_ok(&self) -> usize {
        self.c.admin_ok.load(Ordering::SeqCst)
    }

    /// Stops the clients; (requests answered, failure messages).
    fn finish(mut self) -> (usize, Vec<String>) {
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

fn wait_ready(setup: &Setup, proc: &mut Proc) {
    let ready = eventually(Duration::from_secs(30), || {
        proc.exited().is_some() || try_get(setup.admin, "/ready").is_ok_and(|r| r.status == 200)
    });
    assert!(
        ready && proc.exited().is_none(),
        "floodgate not ready: {}",
        setup.log()
    );
}

/// The `-u` process is waiting for the sockets once it has bound the upgrade socket.
fn wait_for_upgrade_socket(setup: &Setup, next: &mut Proc) {
    let bound = eventually(Duration::from_secs(20), || {
        setup.sock.exists() || next.exited().is_some()
    });
    assert!(
        bound && next.exited().is_none(),
        "the -u process never waited on {}: {:?}\n{}",
        setup.sock.display(),
        next.exited(),
        setup.log()
    );
}

// ------------------------------------------------------------------ (a) graceful upgrade

/// 20 upgrades in a row (FLOODGATE_UPGRADES overrides) under continuous load: fresh connections,
/// kept-alive connections and admin probes. Zero failed requests; every answered request reached
/// the upstream exactly once (so the keep-alive retry never hid a request lost in flight).
#[test]
fn graceful_upgrades_under_load_fail_no_request() {
    let upgrades: usize = std::env::var("FLOODGATE_UPGRADES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let upstream = Upstream::start("app");
    let setup = Setup::new(&upstream, 1, 1);
    let mut current = setup.spawn(&[]);
    wait_ready(&setup, &mut current);

    let load = Load::start(setup.addr, setup.admin, 2, 2);
    assert!(
        eventually(Duration::from_secs(10), || load.ok() > 50 && load.admin_ok() > 5),
        "load did not start"
    );
    let mut pids = vec![current.pid()];
    for i in 1..=upgrades {
        load.c.phase.store(i, Ordering::SeqCst);
        let mut next = setup.spawn(&["-u"]);
        wait_for_upgrade_socket(&setup, &mut next);
        let (ok_before, admin_before) = (load.ok(), load.admin_ok());
        signal(current.pid(), "QUIT");
        let limit = CLOSE_TIMEOUT + Duration::from_secs(setup.grace + setup.drain + 15);
        let status = current
            .wait_exit(limit)
            .unwrap_or_else(|| panic!("upgrade {i}: the old process did not exit: {}", setup.log()));
        assert!(status.success(), "upgrade {i}: old process exited with {status}");
        assert!(
            next.exited().is_none(),
            "upgrade {i}: new process died: {}",
            setup.log()
        );
        // The old process is gone: whatever answers now is the new one.
        assert_eq!(
            try_get(setup.admin, "/ready").map(|r| r.status),
            Ok(200),
            "upgrade {i}"
        );
        assert!(
            load.ok() > ok_before + 20 && load.admin_ok() > admin_before + 5,
            "upgrade {i}: the load stalled ({ok_before} -> {}, admin {admin_before} -> {})",
            load.ok(),
            load.admin_ok()
        );
        pids.push(next.pid());
        current = next;
    }
    // A last stretch on the final process, then stop the clients.
    let ok_before = load.ok();
    assert!(eventually(Duration::from_secs(10), || load.ok() > ok_before + 50));
    let (reused, retries) = (
        load.c.reused.load(Ordering::SeqCst),
        load.c.retries.load(Ordering::SeqCst),
    );
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed requests over {upgrades} upgrades (of {}); first ones:\n{}\nlog:\n{}",
        failures.len(),
        ok + failures.len(),
        failures[..failures.len().min(10)].join("\n"),
        setup.log()
    );
    assert!(reused > 100, "the keep-alive clients never reused a connection");
    assert_eq!(
        upstream.hits(),
        ok,
        "requests reached the upstream without an answer reaching the client"
    );
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), upgrades + 1, "every upgrade must start a new process");
    thread::sleep(Duration::from_millis(500)); // the access-log writer flushes in the background
    let logged = std::fs::read_to_string(setup.dir.path().join("access.log"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    eprintln!(
        "{upgrades} upgrades: {ok} requests answered, {reused} on reused connections, {retries} retried, \
         {logged} access-log lines"
    );
    assert_eq!(logged, ok, "access-log lines lost across upgrades");
}

// ------------------------------------------------------------------ (b) SIGTERM

/// SIGTERM with a request in flight: the listeners close at once (new connections refused),
/// an idle kept-alive connection is closed, the request in flight still gets its 200, and the
/// process exits 0 within grace_period_seconds + graceful_shutdown_timeout_seconds.
#[test]
fn sigterm_drains_the_request_in_flight_and_exits_zero() {
    let upstream = Upstream::start("slow");
    let setup = Setup::new(&upstream, 3, 2);
    let mut gw = setup.spawn(&[]);
    wait_ready(&setup, &mut gw);

    let mut idle = KeepAliveClient::new(setup.addr);
    idle.get("/before")
        .expect("a first request on the kept-alive connection");
    let hits = upstream.hits();
    upstream.set_mode(Mode::Slow(Duration::from_millis(1500)));
    let addr = setup.addr;
    let in_flight = thread::spawn(move || try_get(addr, "/slow"));
    assert!(
        eventually(Duration::from_secs(5), || upstream.hits() == hits + 1),
        "the slow request never reached the upstream"
    );

    let sent = Instant::now();
    signal(gw.pid(), "TERM");
    assert!(
        eventually(Duration::from_secs(1), || TcpStream::connect(setup.addr).is_err()),
        "the proxy listener still accepts 1 s after SIGTERM"
    );
    assert!(
        eventually(Duration::from_secs(1), || TcpStream::connect(setup.admin)
            .is_err()),
        "the admin listener still accepts 1 s after SIGTERM"
    );
    let conn = idle.conn.as_mut().expect("kept-alive connection");
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut rest = Vec::new();
    let closed = match conn.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(
        closed && rest.is_empty(),
        "the idle kept-alive connection was not closed: {rest:?}"
    );

    let resp = in_flight
        .join()
        .expect("client thread")
        .unwrap_or_else(|e| panic!("the request in flight was cut: {e}\n{}", setup.log()));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["upstream"], "slow");
    let limit = Duration::from_secs(setup.grace + setup.drain + 3);
    let status = gw
        .wait_exit(limit.saturating_sub(sent.elapsed()))
        .unwrap_or_else(|| panic!("still running {limit:?} after SIGTERM: {}", setup.log()));
    assert_eq!(status.code(), Some(0), "{}", setup.log());
}

/// CONTRACT.md section 9: requests in flight finish within graceful_shutdown_timeout_seconds,
/// even with grace_period_seconds: 0. Pingora alone drains only during its grace period and
/// cancels every task after it, so without floodgate raising the grace period to the drain
/// timeout this request is cut at once (an empty reply).
#[test]
fn sigterm_drain_is_bounded_by_graceful_shutdown_timeout_not_grace_period() {
    let upstream = Upstream::start("slow");
    let setup = Setup::new(&upstream, 0, 5);
    let mut gw = setup.spawn(&[]);
    wait_ready(&setup, &mut gw);
    upstream.set_mode(Mode::Slow(Duration::from_millis(1000)));
    let addr = setup.addr;
    let in_flight = thread::spawn(move || try_get(addr, "/slow"));
    assert!(eventually(Duration::from_secs(5), || upstream.hits() == 1));
    signal(gw.pid(), "TERM");
    let resp = in_flight.join().expect("client thread");
    assert_eq!(resp.map(|r| r.status), Ok(200));
    assert_eq!(
        gw.wait_exit(Duration::from_secs(8)).and_then(|s| s.code()),
        Some(0)
    );
}

// ------------------------------------------------------------------ (c) a broken new config

/// The reload pattern with a broken config: `-t` fails naming the problems, and a `-u` started
/// anyway exits before it ever binds the upgrade socket; the old process is never signalled,
/// keeps serving, and can still be upgraded once the config is fixed.
#[test]
fn a_broken_config_leaves_the_old_process_serving() {
    let upstream = Upstream::start("app");
    let setup = Setup::new(&upstream, 1, 1);
    let mut old = setup.spawn(&[]);
    wait_ready(&setup, &mut old);
    let good = std::fs::read_to_string(&setup.conf).expect("config");

    let broken = good
        .replace(&format!("\"{}\"", upstream.addr), "\"localhost\"")
        .replace("upstream: app", "upstream: billing");
    std::fs::write(&setup.conf, &broken).expect("write broken config");
    let out = Command::new(BIN)
        .arg("-t")
        .arg("-c")
        .arg(&setup.conf)
        .output()
        .expect("run -t");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "-t passed a broken config");
    assert!(stderr.contains("needs a port"), "{stderr}");
    assert!(stderr.contains("no upstream named \"billing\""), "{stderr}");

    // An operator who skips -t: the new process dies on the config, before the socket hand-over.
    let mut next = setup.spawn(&["-u"]);
    let status = next
        .wait_exit(Duration::from_secs(10))
        .expect("-u with a broken config must exit");
    assert!(!status.success());
    assert!(
        !setup.sock.exists(),
        "the broken process bound the upgrade socket"
    );

    assert!(old.exited().is_none(), "the old process died");
    assert_eq!(
        get_ok(setup.addr, "/still").map(|r| r.json()["upstream"].clone()),
        Ok("app".into())
    );
    assert_eq!(get_ok(setup.admin, "/ready").map(|r| r.status), Ok(200));

    // Fixed: the same old process hands over as if nothing had happened.
    std::fs::write(&setup.conf, &good).expect("restore config");
    let mut next = setup.spawn(&["-u"]);
    wait_for_upgrade_socket(&setup, &mut next);
    signal(old.pid(), "QUIT");
    let status = old
        .wait_exit(CLOSE_TIMEOUT + Duration::from_secs(15))
        .expect("old process exits after the upgrade");
    assert!(status.success());
    assert_eq!(get_ok(setup.addr, "/after").map(|r| r.status), Ok(200));
    assert!(next.exited().is_none());
}

// ------------------------------------------------------------------ (d) the systemd unit

const UNIT: &str = "systemd/floodgate.service";

/// The values of `key=` in the unit file, continuation lines joined as systemd does.
fn unit_values(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(UNIT).expect("unit file");
    let (mut lines, mut current) = (Vec::new(), String::new());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.starts_with(';')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    let prefix = format!("{key}=");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// A unit command line made to run here: the setup's binary, config and runtime dir, systemd's
/// `$$` unescaped, `/bin/sh -c '...'` split off.
fn runnable(cmd: &str, setup: &Setup) -> Vec<String> {
    let dir = format!("{}/", setup.dir.path().display());
    let cmd = cmd
        .replace("/usr/local/bin/floodgate", BIN)
        .replace("/etc/floodgate/floodgate.yaml", &setup.conf.display().to_string())
        .replace("/run/floodgate/upgrade.sock", &setup.sock.display().to_string())
        .replace(
            "/run/floodgate/floodgate.pid",
            &setup.pid_file.display().to_string(),
        )
        .replace("/run/floodgate/", &dir)
        .replace("$$", "$");
    match cmd
        .strip_prefix("/bin/sh -c '")
        .and_then(|c| c.trim_end().strip_suffix('\''))
    {
        Some(script) => vec!["/bin/sh".into(), "-c".into(), script.into()],
        None => cmd.split_whitespace().map(str::to_owned).collect(),
    }
}

/// Runs every `key=` line of the unit in order, as systemd does: stop at the first failure.
fn run_unit(key: &str, setup: &Setup, main_pid: Option<u32>) -> Result<(), String> {
    let lines = unit_values(key);
    assert!(!lines.is_empty(), "no {key}= in {UNIT}");
    for line in lines {
        let argv = runnable(&line, setup);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(setup.log_file())
            .stderr(setup.log_file());
        if let Some(pid) = main_pid {
            cmd.env("MAINPID", pid.to_string());
        }
        let status = cmd.status().expect("run unit command");
        if !status.success() {
            return Err(format!("{key}={line}\nexited with {status}"));
        }
    }
    Ok(())
}

/// The paths, and the stop timeout, of the unit agree with conf/systemd.yaml, and that config
/// passes -t.
#[test]
fn the_systemd_unit_and_its_config_agree() {
    let conf: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string("conf/systemd.yaml").expect("conf/systemd.yaml"))
            .expect("YAML");
    let pid_file = conf["pid_file"].as_str().expect("pid_file");
    let sock = conf["upgrade_sock"].as_str().expect("upgrade_sock");
    assert_eq!(unit_values("PIDFile"), vec![pid_file.to_string()]);
    let reload = unit_values("ExecReload").join("\n");
    assert!(reload.contains(sock), "ExecReload does not wait on {sock}");
    assert!(reload.contains(pid_file), "ExecReload does not read {pid_file}");
    let runtime_dir = unit_values("RuntimeDirectory");
    assert_eq!(runtime_dir.len(), 1);
    for path in [pid_file, sock] {
        assert!(
            path.starts_with(&format!("/run/{}/", runtime_dir[0])),
            "{path} is outside RuntimeDirectory"
        );
    }
    let seconds = |key: &str| conf[key].as_u64().unwrap_or_else(|| panic!("{key}"));
    let drain = CLOSE_TIMEOUT.as_secs()
        + seconds("grace_period_seconds")
        + seconds("graceful_shutdown_timeout_seconds");
    let stop: u64 = unit_values("TimeoutStopSec")[0]
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop > drain,
        "TimeoutStopSec={stop} does not cover a drain of {drain} s"
    );
    let out = Command::new(BIN)
        .args(["-t", "-c", "conf/systemd.yaml"])
        .output()
        .expect("run -t");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// ExecStartPre/ExecStart and ExecReload of systemd/floodgate.service, run as written (paths
/// moved to a temp dir) on daemonized processes, under load: each reload hands over with no
/// failed request and leaves PIDFile naming the new daemon; a reload with a broken config fails
/// at `-t` and changes nothing; SIGTERM (systemctl stop) ends the service.
#[test]
fn the_systemd_reload_recipe_hands_over_without_failures() {
    let upstream = Upstream::start("app");
    let setup = Setup::new(&upstream, 1, 1);
    let mut daemons = Daemons::default();
    run_unit("ExecStartPre", &setup, None).expect("ExecStartPre");
    run_unit("ExecStart", &setup, None).expect("ExecStart");
    // Like systemd with Type=forking: the main PID is what PIDFile names once the starter exited.
    assert!(
        eventually(Duration::from_secs(10), || setup.pid_from_file().is_some()),
        "no PID file: {}",
        setup.log()
    );
    let mut main_pid = setup.pid_from_file().expect("main pid");
    daemons.0.push(main_pid);
    assert!(eventually(Duration::from_secs(30), || try_get(
        setup.admin,
        "/ready"
    )
    .is_ok_and(|r| r.status == 200)));

    let load = Load::start(setup.addr, setup.admin, 1, 1);
    assert!(eventually(Duration::from_secs(10), || load.ok() > 20));
    for i in 1..=3 {
        load.c.phase.store(i, Ordering::SeqCst);
        let ok_before = load.ok();
        run_unit("ExecReload", &setup, Some(main_pid))
            .unwrap_or_else(|e| panic!("reload {i}: {e}\n{}", setup.log()));
        // The recipe returns only once PIDFile names the new daemon.
        let new_pid = setup
            .pid_from_file()
            .expect("PIDFile names a live process after reload");
        daemons.0.push(new_pid);
        assert_ne!(new_pid, main_pid, "reload {i} left the old PID in PIDFile");
        let drained = CLOSE_TIMEOUT + Duration::from_secs(setup.grace + setup.drain + 15);
        assert!(
            eventually(drained, || !alive(main_pid)),
            "reload {i}: the old process {main_pid} is still running"
        );
        assert!(load.ok() > ok_before + 20, "reload {i}: the load stalled");
        main_pid = new_pid;
    }

    // A broken config: the reload fails at its first line and the service runs on untouched.
    let good = std::fs::read_to_string(&setup.conf).expect("config");
    std::fs::write(&setup.conf, good.replace("upstream: app", "upstream: nope")).expect("break config");
    let failed = run_unit("ExecReload", &setup, Some(main_pid));
    assert!(failed.as_ref().is_err_and(|e| e.contains(" -t ")), "{failed:?}");
    assert!(!setup.sock.exists());
    assert_eq!(setup.pid_from_file(), Some(main_pid));
    assert!(alive(main_pid));
    let ok_before = load.ok();
    assert!(eventually(Duration::from_secs(10), || load.ok() > ok_before + 20));
    std::fs::write(&setup.conf, good).expect("restore config");

    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed of {}:\n{}\n{}",
        failures.len(),
        ok + failures.len(),
        failures[..failures.len().min(10)].join("\n"),
        setup.log()
    );
    // systemctl stop: SIGTERM to the main PID.
    signal(main_pid, "TERM");
    assert!(
        eventually(Duration::from_secs(setup.grace + setup.drain + 5), || !alive(
            main_pid
        )),
        "still running after SIGTERM"
    );
}
