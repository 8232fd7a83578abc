//! What one Redis sync round costs with 1k, 10k and 100k active keys: synthetic
//! consumption fed into the real bucket table, settled by the real sync code
//! against a real redis-server it starts on a free loopback port. Prints, per key
//! count, the median round time, and the Redis commands and bytes per round.
//!
//! cargo bench --bench sync_cost

use floodgate::config::{Bucket, OnUnavailable, RedisTarget, Tier};
use floodgate::consumers::overrides::TierOverrides;
use floodgate::ratelimit::local::Supply;
use floodgate::ratelimit::RateLimiter;
use floodgate::services::redis_sync::{Backend, RedisSync};
use floodgate::vocab::limit_key::LimitKey;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TIER: Bucket = Bucket {
    rate: 20.0,
    burst: 200.0,
};
const ROUNDS: usize = 7;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (make test installs it)");
    (Server(child), port)
}

fn info_stat(client: &redis::Client, field: &str) -> u64 {
    let mut conn = client.get_connection().expect("connect");
    let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn main() {
    let (_server, port) = start_redis();
    let url = format!("redis://127.0.0.1:{port}/0");
    let client = redis::Client::open(url.as_str()).expect("url");
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        client.get_connection().is_ok()
    });
    assert!(up, "redis-server did not start");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // `cargo test --all-targets` runs benches without `--bench`: one small round proves it works.
    let full = std::env::args().any(|a| a == "--bench");
    let (counts, rounds): (&[usize], usize) = if full {
        (&[1_000, 10_000, 100_000], ROUNDS)
    } else {
        (&[1_000], 1)
    };
    for &keys in counts {
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
            RedisTarget::Single(client.clone()),
            Duration::from_millis(100),
            format!("bench{keys}"),
            1_000_000,
            limiter.clone(),
            Arc::new(TierOverrides::default()),
            Arc::default(),
            vec!["premium".into()],
            "bench-instance".into(),
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("h", "h")).expect("histogram"),
            100_000,
        );
        let names: Vec<LimitKey> = (0..keys)
            .map(|i| LimitKey::Consumer(Arc::from(format!("consumer-{i}"))))
            .collect();
        let supply = Supply::Leased {
            instances: 1,
            first_s: 0.2,
        };
        let mut times = Vec::new();
        let (mut commands, mut bytes_in, mut bytes_out) = (0, 0, 0);
        runtime.block_on(async {
            let mut target = RedisTarget::Single(client.clone());
            let backend = Backend::connect(&mut target, Duration::from_secs(5))
                .await
                .expect("connect");
            for _ in 0..rounds {
                let now = now_ns();
                for key in &names {
                    limiter.local.take(key, TIER, 1.0, now, supply);
                }
                let (c0, i0, o0) = (
                    info_stat(&client, "total_commands_processed"),
                    info_stat(&client, "total_net_input_bytes"),
                    info_stat(&client, "total_net_output_bytes"),
                );
                let started = Instant::now();
                sync.sync_once(&backend).await.expect("sync");
                times.push(started.elapsed());
                // Less the INFO call itself.
                commands = info_stat(&client, "total_commands_processed") - c0 - 1;
                bytes_in = info_stat(&client, "total_net_input_bytes") - i0;
                bytes_out = info_stat(&client, "total_net_output_bytes") - o0;
            }
        });
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "sync round, {keys:>6} active keys: median {:>8.2} ms ({:.2} µs/key), {commands} commands, {:.1} KiB in, {:.1} KiB out",
            median.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e6 / keys as f64,
            bytes_in as f64 / 1024.0,
            bytes_out as f64 / 1024.0,
        );
    }
}
