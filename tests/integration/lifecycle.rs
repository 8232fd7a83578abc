//! Process lifecycle, as operators and systemd drive it: graceful upgrade (a new process started
//! with `-u`, then SIGQUIT to the old one) under continuous load with zero failed requests, even
//! for clients that never retry; SIGTERM draining a request in flight and exiting once nothing is
//! left; `-u` with nothing to take over; a broken config never touching the running process;. The
//! systemd unit's recipe is in systemd_unit.rs.
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
//! - From SIGQUIT or SIGTERM on, floodgate answers with `Connection: close`, and once the grace
//!   period starts it exits as soon as no request is in flight (src/services/drain.rs): the grace
//!   period is an upper bound, not a wait.

use crate::common::*;
use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

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
    let mut setup = Setup::proxying(upstream.addr, 1, 1);
    let mut current = setup.start();

    let load = Load::start(setup.addr, setup.admin, 2, 2);
    assert!(
        eventually(Duration::from_secs(10), || load.ok() > 50 && load.admin_ok() > 5),
        "load did not start"
    );
    let mut pids = vec![current.pid()];
    for i in 1..=upgrades {
        load.c.phase.store(i, Ordering::SeqCst);
        let mut next = setup.spawn(&["-u"]);
        setup.wait_for_upgrade_socket(&mut next);
        let (ok_before, admin_before) = (load.ok(), load.admin_ok());
        signal(current.pid(), "QUIT");
        let limit = CLOSE_TIMEOUT + Duration::from_secs(setup.opts.grace + setup.opts.drain + 15);
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
    let lines = || {
        std::fs::read_to_string(setup.access_log())
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // The access-log writer flushes in the background: wait for every line it has to write.
    eventually(Duration::from_secs(10), || lines() >= ok);
    let logged = lines();
    eprintln!(
        "{upgrades} upgrades: {ok} requests answered, {reused} on reused connections, {retries} retried, \
         {logged} access-log lines"
    );
    assert_eq!(logged, ok, "access-log lines lost across upgrades");
}

/// A kept-alive client that never retries (many HTTP/1.1 clients do not) runs back to back
/// through an upgrade: from SIGQUIT on, every answer of the old process says
/// `Connection: close`, so the client's next request goes on a new connection, which whichever
/// process accepts it answers (they share the listening socket). Zero failed requests, at least
/// one `Connection: close`, none before SIGQUIT, and the new process keeps connections alive
/// once the old one is gone. Every answer reached the upstream exactly once.
#[test]
fn a_kept_alive_client_that_never_retries_fails_no_request_across_an_upgrade() {
    let upstream = Upstream::start("app");
    let mut setup = Setup::proxying(upstream.addr, 1, 1);
    let mut old = setup.start();

    let clients = NoRetryLoad::start(setup.addr, 2);
    assert!(
        eventually(Duration::from_secs(10), || clients.ok() > 50),
        "the clients did not start: {:?}",
        clients.failures()
    );
    let mut next = setup.spawn(&["-u"]);
    setup.wait_for_upgrade_socket(&mut next);
    clients.c.phase.store(1, Ordering::SeqCst);
    signal(old.pid(), "QUIT");
    let limit = CLOSE_TIMEOUT + Duration::from_secs(setup.opts.grace + setup.opts.drain + 15);
    let status = old
        .wait_exit(limit)
        .unwrap_or_else(|| panic!("the old process did not exit: {}", setup.log()));
    assert!(status.success(), "old process exited with {status}");
    clients.c.phase.store(2, Ordering::SeqCst);

    // A second more on the new process alone, which keeps connections alive again.
    let exited = Instant::now();
    let ok_at_exit = clients.ok();
    assert!(
        eventually(Duration::from_secs(10), || exited.elapsed()
            >= Duration::from_secs(1)
            && clients.ok() > ok_at_exit + 20
            && clients.c.kept(2) > 0),
        "the clients stalled on the new process ({ok_at_exit} -> {}): {:?}",
        clients.ok(),
        clients.failures()
    );
    assert!(next.exited().is_none(), "the new process died: {}", setup.log());
    let c = clients.c.clone();
    let (ok, failures) = clients.finish();
    let closes: Vec<usize> = (0..3).map(|p| c.closes(p)).collect();
    let kept: Vec<usize> = (0..3).map(|p| c.kept(p)).collect();
    eprintln!(
        "{ok} requests answered; Connection: close before/during/after the upgrade {closes:?}, kept alive {kept:?}"
    );
    assert!(
        failures.is_empty(),
        "{} failed requests (of {}); first ones:\n{}\nlog:\n{}",
        failures.len(),
        ok + failures.len(),
        failures[..failures.len().min(10)].join("\n"),
        setup.log()
    );
    assert_eq!(closes[0], 0, "Connection: close before SIGQUIT");
    assert!(
        closes[1] > 0,
        "no answer said Connection: close during the upgrade"
    );
    assert_eq!(
        upstream.hits(),
        ok,
        "requests reached the upstream without an answer reaching the client"
    );
}

// ------------------------------------------------------------------ (b) SIGTERM

/// SIGTERM to a gateway with nothing in flight (one idle kept-alive connection open): with a
/// drain window of 10 s, the process exits 0 at once rather than at the end of the window
/// (asserted: within 5 s, a liveness bound).
#[test]
fn sigterm_with_nothing_in_flight_exits_zero_at_once() {
    let upstream = Upstream::start("app");
    let mut setup = Setup::proxying(upstream.addr, 0, 10);
    let mut gw = setup.start();
    let mut idle = KeepAliveClient::new(setup.addr);
    idle.get("/before")
        .expect("a request on the kept-alive connection");
    assert!(idle.reuses(), "the connection was not kept alive");

    let sent = Instant::now();
    signal(gw.pid(), "TERM");
    let status = gw.wait_exit(Duration::from_secs(5));
    let took = sent.elapsed();
    eprintln!("idle gateway: exited {took:?} after SIGTERM");
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 5 s after SIGTERM with nothing in flight: {}",
            setup.log()
        )
    });
    assert_eq!(status.code(), Some(0), "{}", setup.log());
}

/// SIGTERM with a request in flight (the upstream answers after 2 s), drain window 10 s: the
/// listeners close at once (new connections refused), an idle kept-alive connection is closed,
/// the request in flight still gets its 200, the process exits 0 once it is done, before the
/// drain window ends, and the access log written by then holds the request's line.
#[test]
fn sigterm_drains_the_request_in_flight_and_exits_zero() {
    let upstream = Upstream::start("slow");
    let mut setup = Setup::proxying(upstream.addr, 0, 10);
    let mut gw = setup.start();

    let mut idle = KeepAliveClient::new(setup.addr);
    idle.get("/before")
        .expect("a first request on the kept-alive connection");
    let hits = upstream.hits();
    upstream.set_mode(Mode::Slow(Duration::from_millis(2000)));
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
    let conn = idle.connection().expect("kept-alive connection");
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
    let answered = sent.elapsed();
    // Before the drain window ends: Pingora alone would sleep out all of it.
    let window = Duration::from_secs(setup.opts.drain);
    let status = gw.wait_exit(window.saturating_sub(sent.elapsed()));
    let took = sent.elapsed();
    eprintln!("request in flight answered {answered:?} after SIGTERM, process exited after {took:?}");
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {window:?} after SIGTERM, the request in flight answered after {answered:?}: {}",
            setup.log()
        )
    });
    assert_eq!(status.code(), Some(0), "{}", setup.log());

    // The process is gone: the access log holds all it will ever hold.
    let log = std::fs::read_to_string(setup.access_log()).unwrap_or_default();
    let logged = |path: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|l| l["path"] == path && l["status"] == 200)
    };
    assert!(
        logged("/slow"),
        "no access-log line for the request in flight:\n{log}\n{}",
        setup.log()
    );
    assert!(logged("/before"), "{log}");
}

/// The drain window operators set is graceful_shutdown_timeout_seconds: requests in flight
/// finish within it, even with grace_period_seconds: 0. Pingora alone drains only during its grace period and
/// cancels every task after it, so without floodgate raising the grace period to the drain
/// timeout this request is cut at once (an empty reply).
#[test]
fn sigterm_drain_is_bounded_by_graceful_shutdown_timeout_not_grace_period() {
    let upstream = Upstream::start("slow");
    let mut setup = Setup::proxying(upstream.addr, 0, 5);
    let mut gw = setup.start();
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

// ------------------------------------------------------------------ (c) -u with nothing to take over

/// `floodgate -u` when no floodgate runs: no pid file, a pid file naming a process that has
/// exited, or one naming a live process that is no floodgate (this test runner). Each time it
/// fails at once (within 2 s; it used to wait ~6 s for sockets nobody sends, then fail with a
/// bare EAGAIN): a non-zero exit, one line on stderr saying so, and nothing bound.
#[test]
fn upgrade_with_no_running_instance_fails_at_once_saying_so() {
    let upstream = Upstream::start("app");
    let setup = Setup::proxying(upstream.addr, 0, 1);
    let cases = [
        ("no pid file", None),
        ("a dead pid", Some(dead_pid())),
        ("a live pid that is no floodgate", Some(std::process::id())),
    ];
    for (case, pid) in cases {
        let _ = std::fs::remove_file(&setup.pid_file);
        if let Some(pid) = pid {
            std::fs::write(&setup.pid_file, format!("{pid}\n")).expect("write pid file");
        }
        upgrade_fails_at_once(&setup, case);
        assert!(
            TcpStream::connect(setup.addr).is_err(),
            "{case}: something listens on the proxy address"
        );
    }
}

/// The id of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let pid = gone.id();
    gone.wait().expect("wait for true");
    assert!(!alive(pid));
    pid
}

/// `floodgate -u` on `setup` exits within 2 s (killed otherwise), non-zero, with one line on
/// stderr saying there is no floodgate to take over, and never binds the upgrade socket.
fn upgrade_fails_at_once(setup: &Setup, case: &str) {
    let mut child = Command::new(BIN)
        .args(["-u", "-c"])
        .arg(&setup.conf)
        .env("RUST_LOG", &setup.opts.rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floodgate -u");
    let started = Instant::now();
    eventually(Duration::from_secs(2), || {
        child.try_wait().expect("try_wait").is_some()
    });
    let status = child.try_wait().expect("try_wait");
    let took = started.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("stderr");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let status = status.unwrap_or_else(|| panic!("{case}: still running after {took:?}; stderr: {stderr}"));
    eprintln!("{case}: exited {status} after {took:?}");
    assert!(!status.success(), "{case}: exited {status}; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("floodgate -u: no running floodgate to take over"),
        "{case}: stderr is not one line saying so: {stderr:?}"
    );
    assert!(!setup.sock.exists(), "{case}: the upgrade socket was bound");
}

// ------------------------------------------------------------------ (d) a broken new config

/// The reload pattern with a broken config: `-t` fails naming the problems, and a `-u` started
/// anyway exits before it ever binds the upgrade socket; the old process is never signalled,
/// keeps serving, and can still be upgraded once the config is fixed.
#[test]
fn a_broken_config_leaves_the_old_process_serving() {
    let upstream = Upstream::start("app");
    let mut setup = Setup::proxying(upstream.addr, 1, 1);
    let mut old = setup.start();
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
    setup.wait_for_upgrade_socket(&mut next);
    signal(old.pid(), "QUIT");
    let status = old
        .wait_exit(CLOSE_TIMEOUT + Duration::from_secs(15))
        .expect("old process exits after the upgrade");
    assert!(status.success());
    assert_eq!(get_ok(setup.addr, "/after").map(|r| r.status), Ok(200));
    assert!(next.exited().is_none());
}

// ------------------------------------------------------------------ (e) the systemd unit
