//! What the Redis sync's rounds cost as active keys grow: three instances (three
//! bucket tables and three syncs in this process) settle synthetic consumption
//! through the real sync code against a real redis-server, or a real 3-master
//! Redis Cluster, started on free loopback ports. A share of the keys is hot (each
//! round it asks until refused: at its limit); the rest are quiet (a token a
//! round, a twentieth of the rate). Keys are spread over the instances. After a
//! warm-up long enough for every quiet key to be put off once, prints per size
//! and share: settles per round (mean), the median round (the three instances'
//! rounds, run one after another), and Redis commands and bytes per round.
//!
//! cargo bench --bench sync_cost [-- SIZES]   (default 1000,100000,1000000)

#[path = "support/redis.rs"]
mod redis_support;

use floodgate::config::RedisTarget;
use floodgate::ratelimit::local::Supply;
use floodgate::ratelimit::report_schedule::MAX_PUT_OFF_ROUNDS;
use floodgate::ratelimit::RateLimiter;
use floodgate::services::redis_sync::{Backend, RedisSync};
use floodgate::vocab::limit_key::LimitKey;
use redis_support::{
    bench_args, free_port, limiter_and_sync, now_ns, redis_server, redis_totals, Server, TIER,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INSTANCES: usize = 3;
/// The interval the sync is told (the pool refills at the rate in Redis's time).
const INTERVAL: Duration = Duration::from_secs(1);
/// A hot key asks until refused each round, at most this many times.
const HOT_ASKS: usize = 1000;

/// Where the rounds go, and the nodes to count commands and bytes on.
struct Target {
    _servers: Vec<Server>,
    nodes: Vec<redis::Client>,
    make: Box<dyn Fn() -> RedisTarget>,
    name: &'static str,
}

fn single() -> Target {
    let port = free_port();
    let server = redis_server(port, &[]);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).expect("url");
    Target {
        _servers: vec![server],
        nodes: vec![client.clone()],
        make: Box::new(move || RedisTarget::Single(client.clone())),
        name: "one Redis",
    }
}

fn cluster(dir: &Path) -> Target {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let servers = ports
        .iter()
        .map(|p| {
            let conf = dir.join(format!("nodes-{p}.conf"));
            let bus = free_port().to_string();
            let conf = conf.to_string_lossy().into_owned();
            redis_server(
                *p,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-config-file",
                    &conf,
                ],
            )
        })
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli must be installed");
    assert!(created.success(), "redis-cli --cluster create failed");
    let nodes: Vec<redis::Client> = ports
        .iter()
        .map(|p| redis::Client::open(format!("redis://127.0.0.1:{p}")).expect("url"))
        .collect();
    let whole = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        nodes.iter().all(|n| {
            n.get_connection()
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    });
    assert!(whole, "the cluster never reached cluster_state:ok");
    let urls: Vec<String> = ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect();
    Target {
        _servers: servers,
        nodes,
        make: Box::new(move || {
            RedisTarget::Cluster(redis::cluster::ClusterClient::new(urls.clone()).expect("cluster client"))
        }),
        name: "3-master Cluster",
    }
}

struct Instance {
    limiter: Arc<RateLimiter>,
    sync: RedisSync,
    backend: Backend,
    hot: Vec<LimitKey>,
    quiet: Vec<LimitKey>,
}

/// One measurement: `keys` active keys, `hot_percent` of them hot.
fn measure(target: &Target, keys: usize, hot_percent: usize, rounds: (usize, usize), run: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let hot_every = 100 / hot_percent;
    let mut instances: Vec<Instance> = runtime.block_on(async {
        let mut out = Vec::new();
        for i in 0..INSTANCES {
            let (limiter, sync) = limiter_and_sync(
                (target.make)(),
                INTERVAL,
                format!("bench{run}"),
                format!("bench-instance-{i}"),
            );
            let backend = Backend::connect(&mut (target.make)(), Duration::from_secs(5))
                .await
                .expect("connect");
            out.push(Instance {
                limiter,
                sync,
                backend,
                hot: Vec::new(),
                quiet: Vec::new(),
            });
        }
        out
    });
    for k in 0..keys {
        let key = LimitKey::Consumer(Arc::from(format!("consumer-{k}")));
        let instance = &mut instances[k % INSTANCES];
        if k % hot_every == 0 {
            instance.hot.push(key);
        } else {
            instance.quiet.push(key);
        }
    }
    let supply = Supply::Leased {
        instances: INSTANCES as u64,
        first_s: 2.0 * INTERVAL.as_secs_f64(),
    };
    let (warm_up, measured) = rounds;
    let mut times = Vec::new();
    let mut settles = 0;
    let mut totals = redis_totals(&target.nodes);
    for round in 0..warm_up + measured {
        if round == warm_up {
            totals = redis_totals(&target.nodes);
        }
        for instance in &instances {
            let now = now_ns();
            for key in &instance.quiet {
                instance.limiter.local.take(key, TIER, 1.0, now, supply);
            }
            for key in &instance.hot {
                let _ =
                    (0..HOT_ASKS).find(|_| !instance.limiter.local.take(key, TIER, 1.0, now, supply).allowed);
            }
            let started = Instant::now();
            match runtime.block_on(instance.sync.sync_once(&instance.backend)) {
                Ok(()) if round >= warm_up => {
                    times.push(started.elapsed());
                    let state = &instance.limiter.sync;
                    settles += state.keys_synced.load(std::sync::atomic::Ordering::Relaxed);
                }
                Ok(()) => {}
                // The first rounds settle every key at once; one that misses its
                // deadline gives its reports back for the next, as in the gateway.
                Err(e) if round < warm_up => eprintln!("warm-up round {round} failed: {e}"),
                Err(e) => panic!("a measured round failed: {e}"),
            }
        }
    }
    let after = redis_totals(&target.nodes);
    times.sort();
    // The three instances' rounds run one after another: a round of the fleet is their sum.
    let fleet_round = times[times.len() / 2] * INSTANCES as u32;
    let per = |i: usize| (after.counts[i] - totals.counts[i]) as f64 / measured as f64;
    // Redis is busy for its busiest node's CPU time: what bounds the interval.
    let busiest_s = (after.cpu_s.iter().zip(&totals.cpu_s))
        .map(|(a, b)| a - b)
        .fold(0.0, f64::max)
        / measured as f64;
    println!(
        "{:<16} {keys:>8} keys, {hot_percent:>2}% hot: {:>9.0} settles/round ({:.3} per key), round {:>9.2} ms, Redis busy {:>8.2} ms (busiest node), {:>9.0} commands, {:>8.1} KiB in, {:>8.1} KiB out per round",
        target.name,
        settles as f64 / measured as f64,
        settles as f64 / measured as f64 / keys as f64,
        fleet_round.as_secs_f64() * 1e3,
        busiest_s * 1e3,
        per(0),
        per(1) / 1024.0,
        per(2) / 1024.0,
    );
}

fn main() {
    let (full, sizes) = bench_args(&[1_000, 100_000, 1_000_000]);
    // The warm-up puts every quiet key off once (their first lease) and lets the
    // spread of their due rounds settle; the measure covers one longest put-off.
    let put_off = MAX_PUT_OFF_ROUNDS as usize;
    let (sizes, rounds) = if full {
        (sizes, (put_off + 2, put_off))
    } else {
        (vec![1_000], (2, 1))
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut targets = vec![single()];
    if full {
        targets.push(cluster(dir.path()));
    }
    for target in &targets {
        for &keys in &sizes {
            for hot_percent in [2, 20] {
                measure(
                    target,
                    keys,
                    hot_percent,
                    rounds,
                    &format!("{keys}-{hot_percent}"),
                );
            }
        }
    }
}
