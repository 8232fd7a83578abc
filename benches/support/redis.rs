//! What the Redis-sync benches share (sync_cost, region_cost): redis-servers on
//! free loopback ports, what a node did as its INFO counts it, and one instance's
//! bucket table and sync, all of one tier.

use floodgate::config::{Bucket, OnUnavailable, RedisTarget, Tier};
use floodgate::consumers::overrides::TierOverrides;
use floodgate::ratelimit::RateLimiter;
use floodgate::services::redis_sync::RedisSync;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The one tier every key of the benches is on.
pub const TIER: Bucket = Bucket {
    rate: 20.0,
    burst: 200.0,
};

pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

pub fn redis_server(port: u16, extra: &[&str]) -> Server {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (make test installs it)");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        client.get_connection().is_ok()
    });
    assert!(up, "redis-server on {port} did not start");
    Server(child)
}

/// What the nodes did: commands processed and bytes in and out (summed), and
/// each node's CPU seconds (its main thread's user and system time).
pub struct RedisTotals {
    pub counts: [u64; 3],
    pub cpu_s: Vec<f64>,
}

pub fn redis_totals(nodes: &[redis::Client]) -> RedisTotals {
    let mut totals = RedisTotals {
        counts: [0; 3],
        cpu_s: Vec::new(),
    };
    for node in nodes {
        let mut conn = node.get_connection().expect("connect");
        let info: String = redis::cmd("INFO")
            .arg("everything")
            .query(&mut conn)
            .expect("INFO");
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        totals.counts[0] += field("total_commands_processed") as u64;
        totals.counts[1] += field("total_net_input_bytes") as u64;
        totals.counts[2] += field("total_net_output_bytes") as u64;
        totals
            .cpu_s
            .push(field("used_cpu_user_main_thread") + field("used_cpu_sys_main_thread"));
    }
    totals
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One instance's bucket table (tier `premium`, `local_share` while Redis is
/// down) and its sync, told `interval`, under `key_prefix`.
pub fn limiter_and_sync(
    target: RedisTarget,
    interval: Duration,
    key_prefix: String,
    id: String,
) -> (Arc<RateLimiter>, RedisSync) {
    let limiter = Arc::new(RateLimiter::new(
        vec![Tier {
            name: "premium".into(),
            bucket: TIER,
        }],
        None,
        floodgate::vocab::ids::ById::default(),
        Some(OnUnavailable::LocalShare),
    ));
    let sync = RedisSync::new(
        target,
        interval,
        key_prefix,
        1_000_000,
        limiter.clone(),
        Arc::new(TierOverrides::default()),
        Arc::default(),
        vec!["premium".into()],
        id,
        prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("h", "h")).expect("histogram"),
        100_000,
    );
    (limiter, sync)
}

/// Whether this is a benchmark run (`cargo bench` passes `--bench`; `cargo test
/// --all-targets` runs benches without it, for one small run that proves they
/// work), and the sizes given as `1000,10000` (else `default`).
pub fn bench_args(default: &[usize]) -> (bool, Vec<usize>) {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let sizes = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec());
    (full, sizes)
}
