//! Requests flow while the Redis behind the global limit fails: killed and restarted, frozen,
//! unreachable from the start (deny and allow modes), and flushed, out of memory and stalled
//! under load; the sync notices each fault, recovers, and writes its counts again.

use super::global_config;
use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Load on one gateway from a thread; returns (statuses seen, stop flag, handle).
fn drive(
    addr: std::net::SocketAddr,
) -> (
    Arc<std::sync::Mutex<Vec<u16>>>,
    Arc<AtomicBool>,
    thread::JoinHandle<()>,
) {
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (statuses.clone(), stop.clone());
    let handle = thread::spawn(move || {
        while !st.load(Ordering::SeqCst) {
            let status = get(addr, "/open/x").status;
            s.lock().expect("statuses").push(status);
            // Pacing, not waiting: steady traffic, not as much as the loop could send.
            thread::sleep(Duration::from_millis(5));
        }
    });
    (statuses, stop, handle)
}

#[test]
fn redis_killed_mid_run_requests_flow_and_sync_resumes_with_the_counts_taken_meanwhile() {
    let mut redis = Redis::start();
    let up = Upstream::start("u");
    let gw = Gateway::start(&global_config(&up, &redis.url(), 1000, "local_share"));
    let (statuses, stop, handle) = drive(gw.addr);
    assert!(eventually(Duration::from_secs(10), || {
        redis_cmd(redis.addr(), &["KEYS", "{floodgate:gl:open}:*"])
            .is_some_and(|r| r.contains("floodgate:gl:open}"))
    }));
    redis.kill();
    assert!(eventually(Duration::from_secs(10), || gw
        .log()
        .contains("redis sync failing")));
    // Requests taken during the outage: counts the sync has to push once Redis is back.
    let during = statuses.lock().expect("statuses").len() + 20;
    assert!(eventually(Duration::from_secs(10), || {
        statuses.lock().expect("statuses").len() >= during
    }));
    redis.restart(); // same port, empty
    assert!(eventually(Duration::from_secs(15), || gw
        .log()
        .contains("redis sync restored")));
    // The counts of the outage's current window were pushed to the fresh Redis.
    assert!(eventually(Duration::from_secs(5), || {
        redis_cmd(redis.addr(), &["KEYS", "{floodgate:gl:open}:*"])
            .is_some_and(|r| r.contains("floodgate:gl:open}"))
    }));
    stop.store(true, Ordering::SeqCst);
    handle.join().expect("driver");
    let statuses = statuses.lock().expect("statuses");
    assert!(statuses.len() > 50);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "requests failed during the outage"
    );
    assert_eq!(
        gw.log().matches("redis sync failing").count(),
        1,
        "one log line per outage"
    );
}

#[test]
fn a_frozen_redis_holds_up_no_request() {
    let redis = Redis::start();
    let up = Upstream::start("u");
    let gw = Gateway::start(&global_config(&up, &redis.url(), 1_000_000, "local_share"));
    assert!(eventually(Duration::from_secs(10), || {
        redis_cmd(redis.addr(), &["ZCARD", "floodgate:instances"]).is_some_and(|r| r.starts_with(":1"))
    }));
    redis.freeze();
    let started = Instant::now();
    let mut served = 0;
    // Requests keep being answered while the sync is stuck on the frozen server
    // (its calls time out and it degrades), however many there are.
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(get(gw.addr, "/open/x").status, 200);
        served += 1;
    }
    assert!(served > 20);
    assert!(eventually(Duration::from_secs(10), || gw
        .log()
        .contains("redis sync failing")));
    redis.thaw();
    assert!(eventually(Duration::from_secs(15), || gw
        .log()
        .contains("redis sync restored")));
}

#[test]
fn deny_and_allow_modes_when_redis_is_unreachable() {
    let up = Upstream::start("u");
    let closed = closed_port();
    let nowhere = format!("redis://{}/0", closed.addr);
    let deny = Gateway::start(&global_config(&up, &nowhere, 1000, "deny"));
    assert!(eventually(Duration::from_secs(10), || deny
        .log()
        .contains("redis sync failing")));
    let r = get(deny.addr, "/open/x");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["scope"], "global");
    assert_eq!(
        get(deny.addr, "/ping").status,
        200,
        "routes without a global limit are untouched"
    );

    let allow = Gateway::start(&global_config(&up, &nowhere, 3, "allow"));
    assert!(eventually(Duration::from_secs(10), || allow
        .log()
        .contains("redis sync failing")));
    assert!((0..10).all(|_| get(allow.addr, "/open/x").status == 200));
}

/// One command with a reply deadline of its own (`redis_cmd` waits 2 s at most).
fn redis_slow_cmd(addr: SocketAddr, args: &[&str], limit: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn redis_ok(redis: &Redis, args: &[&str]) {
    let reply = redis_cmd(redis.addr(), args);
    assert!(
        reply.as_deref().is_some_and(|r| r.starts_with('+')),
        "{args:?}: {reply:?}"
    );
}

/// Requests from `threads` client threads, each on a fresh connection, counted per phase;
/// anything but a 200 or a 429 is a failure.
struct RedisLoad {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    answered: Arc<Vec<AtomicUsize>>,
    limited: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

const PHASES: [&str; 5] = ["synced", "flushed", "out of memory", "stalled", "recovered"];

/// Requests per client thread at most: the load is bounded whatever happens.
const MAX_REQUESTS: usize = 20_000;

impl RedisLoad {
    fn start(addr: SocketAddr, threads: usize) -> RedisLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let answered: Arc<Vec<AtomicUsize>> = Arc::new(PHASES.iter().map(|_| AtomicUsize::new(0)).collect());
        let limited = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|t| {
                let (stop, phase, answered, limited, failures) = (
                    stop.clone(),
                    phase.clone(),
                    answered.clone(),
                    limited.clone(),
                    failures.clone(),
                );
                thread::spawn(move || {
                    for i in 0..MAX_REQUESTS {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let p = phase.load(Ordering::SeqCst);
                        match try_get(addr, &format!("/open/{t}/{i}")) {
                            Ok(r) if r.status == 200 || r.status == 429 => {
                                answered[p].fetch_add(1, Ordering::SeqCst);
                                if r.status == 429 {
                                    limited.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            Ok(r) => failures.lock().expect("failures").push(format!(
                                "[{}] status {}: {}",
                                PHASES[p],
                                r.status,
                                r.text()
                            )),
                            Err(e) => failures
                                .lock()
                                .expect("failures")
                                .push(format!("[{}] {e}", PHASES[p])),
                        }
                        // Pacing, not waiting: every fresh connection leaves a TIME_WAIT socket.
                        thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        RedisLoad {
            stop,
            phase,
            answered,
            limited,
            failures,
            threads,
        }
    }

    fn answered_in(&self, phase: usize) -> usize {
        self.answered[phase].load(Ordering::SeqCst)
    }

    fn answered_total(&self) -> usize {
        (0..PHASES.len()).map(|p| self.answered_in(p)).sum()
    }

    /// Requests from now on count in `phase`.
    fn enter(&self, phase: usize) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// Returns once `at_least` requests were answered in `phase`.
    fn wait_answers(&self, phase: usize, at_least: usize) {
        assert!(
            eventually(Duration::from_secs(30), || self.answered_in(phase) >= at_least),
            "only {} requests answered while {}; failures: {:?}",
            self.answered_in(phase),
            PHASES[phase],
            self.failures.lock().expect("failures")
        );
    }

    fn finish(mut self) -> (Vec<usize>, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("load thread");
        }
        let answered = self.answered.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let failures = std::mem::take(&mut *self.failures.lock().expect("failures"));
        (answered, self.limited.load(Ordering::SeqCst), failures)
    }
}

impl Drop for RedisLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn redis_flushed_out_of_memory_and_stalled_under_load_every_request_is_200_or_429() {
    let redis = Redis::start();
    let up = Upstream::start("u");
    let gw = Gateway::start(&format!(
        r#"
redis: {{ url: "{}", on_unavailable: local_share }}
upstreams:
  backend: {{ targets: ["{}"] }}
routes:
  - {{ name: open, path_prefix: /open, upstream: backend, global_limit: {{ rate: 100, per_s: 1 }} }}
"#,
        redis.url(),
        up.addr
    ));
    let instances = |n: &str| {
        redis_cmd(redis.addr(), &["ZCARD", "floodgate:instances"]).is_some_and(|r| r.starts_with(n))
    };
    let window_keys = || {
        redis_cmd(redis.addr(), &["KEYS", "{floodgate:gl:open}:*"])
            .is_some_and(|r| r.contains("floodgate:gl:open}"))
    };
    let failing = || gw.log().matches("redis sync failing").count();
    let restored = || gw.log().matches("redis sync restored").count();
    assert!(eventually(Duration::from_secs(10), || instances(":1")));

    let load = RedisLoad::start(gw.addr, 3);
    load.wait_answers(0, 100);
    assert!(eventually(Duration::from_secs(10), window_keys));

    // Everything gone at once: the next syncs write it all again.
    load.enter(1);
    redis_ok(&redis, &["FLUSHALL"]);
    assert!(
        eventually(Duration::from_secs(10), || instances(":1") && window_keys()),
        "the sync did not write again after FLUSHALL"
    );
    load.wait_answers(1, 100);

    // Out of memory: every write is refused.
    load.enter(2);
    redis_ok(&redis, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis_ok(&redis, &["CONFIG", "SET", "maxmemory", "1"]);
    let refused = redis_cmd(redis.addr(), &["SET", "floodgate:probe", "1"]);
    assert!(
        refused.as_deref().is_some_and(|r| r.starts_with("-OOM")),
        "{refused:?}"
    );
    // A refused write is a failed sync: its counts are kept to be pushed later.
    let failing_before = failing();
    assert!(
        eventually(Duration::from_secs(10), || failing() > failing_before),
        "the sync did not notice Redis refusing its writes"
    );
    load.wait_answers(2, 100);
    redis_ok(&redis, &["CONFIG", "SET", "maxmemory", "0"]);
    assert!(
        eventually(Duration::from_secs(15), || restored() == failing()),
        "no recovery after out of memory: {} failing, {} restored",
        failing(),
        restored()
    );

    // Stalled: Redis answers nothing for 2 s.
    load.enter(3);
    let failing_before = failing();
    let stalled_before = load.answered_total();
    let addr = redis.addr();
    let sleeper =
        thread::spawn(move || redis_slow_cmd(addr, &["DEBUG", "SLEEP", "2"], Duration::from_secs(10)));
    let slept = sleeper.join().expect("DEBUG SLEEP");
    assert!(
        slept.as_deref().is_some_and(|r| r.starts_with("+OK")),
        "{slept:?}"
    );
    let during_stall = load.answered_total() - stalled_before;
    eprintln!("{during_stall} requests answered during the 2 s stall");
    assert!(during_stall > 0, "no request answered during the stall");
    assert!(
        eventually(Duration::from_secs(10), || failing() > failing_before),
        "the sync did not notice Redis stalling for 2 s (its reply deadline is 500 ms)"
    );

    // Recovered: the sync writes again, and says so.
    load.enter(4);
    assert!(
        eventually(Duration::from_secs(15), || restored() == failing()),
        "no recovery after the stall: {} failing, {} restored",
        failing(),
        restored()
    );
    redis_ok(&redis, &["FLUSHALL"]);
    assert!(
        eventually(Duration::from_secs(10), || instances(":1") && window_keys()),
        "the sync did not write again after the faults"
    );
    load.wait_answers(4, 100);

    let (answered, limited, failures) = load.finish();
    eprintln!(
        "answered per phase {:?}: {answered:?}, of which 429: {limited}; sync failing {} times, restored {} times",
        PHASES,
        failing(),
        restored()
    );
    assert!(failures.is_empty(), "{} failures: {failures:?}", failures.len());
    assert!(
        limited > 0,
        "the global limit never answered 429: the load never reached it"
    );
}
