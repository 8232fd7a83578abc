//! What the cross-region sync costs per round: two regions, `a` and `b`, each a
//! real redis-server on a free loopback port and one instance in this process (a
//! bucket table and its Redis sync, told 100 ms as `redis.sync_interval_ms`
//! defaults to, and run every 100 ms of wall time so that Redis's refills, the
//! demand a second and the region sync's staleness see real time), and a region
//! sync (`redis.region`, 1 s as its default) whose peer is the other region's
//! Redis reached through a relay in this process that holds every chunk 75 ms
//! each way (150 ms round trip), in order and pipelined.
//!
//! Rows: N keys (consumers) active in `a` only, for each size, and 1,000 keys
//! active in both regions. Active is hot (each instance round a key asks until
//! refused: at its limit) or quiet (a token a second, a twentieth of the rate,
//! as sync_cost's quiet keys). Each instance round: the consumption, then the
//! instance's sync; every 10 instance rounds one region round on `a`, then one on
//! `b`. After 5 region rounds of warm-up, 10 are measured, each bracketed by INFO
//! of both Redis servers (the INFO calls' own share, measured again right after,
//! taken off), so that what a region's sync did to the peer's Redis is told apart
//! from that region's own instance. Per row and direction: rounds that reached the peer, budget keys
//! exchanged a round (the `floodgate_region_sync_keys_total` counter), commands
//! and bytes in/out on the peer's Redis a round, commands on the region's own
//! Redis a round, and the median and longest round.
//!
//! cargo bench --bench region_cost [-- SIZES]   (default 1000,10000,100000)

#[path = "support/redis.rs"]
mod redis_support;

use floodgate::config::{OnPartition, Peer, RedisTarget, Region};
use floodgate::ratelimit::local::Supply;
use floodgate::ratelimit::RateLimiter;
use floodgate::services::redis_sync::{RedisSync, RegionSettle};
use floodgate::services::region_sync::RegionSync;
use floodgate::telemetry::RegionMetrics;
use floodgate::vocab::limit_key::LimitKey;
use redis_support::{
    bench_args, free_port, limiter_and_sync, now_ns, redis_server, redis_totals, Server, TIER,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The instances' sync interval, and how often they run.
const INSTANCE_INTERVAL: Duration = Duration::from_millis(100);
/// The region sync's interval: one region round every 10 instance rounds.
const REGION_INTERVAL: Duration = Duration::from_secs(1);
const INSTANCE_ROUNDS_PER_REGION_ROUND: usize = 10;
const ONE_WAY: Duration = Duration::from_millis(75);
/// A hot key asks until refused each round, at most this many times.
const HOT_ASKS: usize = 1000;
/// Keys active in both regions.
const SHARED_KEYS: usize = 1000;
const NAMES: [&str; 2] = ["a", "b"];

/// A relay to `upstream` that holds what it carries `delay` each way; it runs
/// on its own runtime, dropped with it.
struct Relay {
    _runtime: tokio::runtime::Runtime,
    port: u16,
}

fn relay(upstream: u16, delay: Duration) -> Relay {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("address").port();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        while let Ok((down, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let _ = (down.set_nodelay(true), up.set_nodelay(true));
                let (down_read, down_write) = down.into_split();
                let (up_read, up_write) = up.into_split();
                tokio::spawn(carry(down_read, up_write, delay));
                carry(up_read, down_write, delay).await;
            });
        }
    });
    Relay {
        _runtime: runtime,
        port,
    }
}

/// One direction: each chunk read is written `delay` after it arrived, in order,
/// while the next chunks are read (many in flight, as a long link holds them).
async fn carry(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if tx
            .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// One region: its Redis, its instance and its region sync.
struct RegionUnder {
    _server: Server,
    node: redis::Client,
    limiter: Arc<RateLimiter>,
    sync: RedisSync,
    regions: RegionSync,
    metrics: RegionMetrics,
    /// The consumers active here.
    keys: Vec<LimitKey>,
}

fn client(port: u16) -> redis::Client {
    redis::Client::open(format!("redis://127.0.0.1:{port}/0")).expect("url")
}

/// What one region's rounds did, summed over the measured rounds.
#[derive(Default)]
struct Side {
    reached: usize,
    keys: u64,
    /// On the peer's Redis: commands, bytes in, bytes out, script calls.
    peer: [u64; 4],
    local_commands: u64,
    times: Vec<Duration>,
}

/// Commands processed (a script's own calls included), bytes in and out, and
/// script calls (`EVALSHA`, what the region sync sends its budgets with).
fn counts(node: &redis::Client) -> [u64; 4] {
    let [commands, bytes_in, bytes_out] = redis_totals(std::slice::from_ref(node)).counts;
    let mut conn = node.get_connection().expect("connect");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .expect("INFO");
    let scripts = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    [commands, bytes_in, bytes_out, scripts]
}

/// One row: `keys` consumers active in a, and in b too when `both`.
fn measure(keys: usize, both: bool, hot: bool, rounds: (usize, usize)) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ports = [free_port(), free_port()];
    let servers = ports.map(|p| redis_server(p, &[]));
    // relays[i] carries region i's region sync to the other region's Redis.
    let relays = [relay(ports[1], ONE_WAY), relay(ports[0], ONE_WAY)];
    let mut regions: Vec<RegionUnder> = Vec::new();
    for (i, server) in servers.into_iter().enumerate() {
        let (limiter, mut sync) = limiter_and_sync(
            RedisTarget::Single(client(ports[i])),
            INSTANCE_INTERVAL,
            "bench".into(),
            format!("bench-instance-{}", NAMES[i]),
        );
        sync.region = Some(RegionSettle {
            name: NAMES[i].into(),
            regions: 2,
            interval: REGION_INTERVAL,
            due: Default::default(),
        });
        let backend = runtime
            .block_on(floodgate::services::redis_sync::Backend::connect(
                &mut RedisTarget::Single(client(ports[i])),
                Duration::from_secs(5),
            ))
            .expect("connect");
        sync.backend.store(Some(Arc::new(backend)));
        let metrics = RegionMetrics::new(&prometheus::Registry::new()).expect("metrics");
        let region = Region {
            name: NAMES[i].into(),
            peers: vec![Peer {
                name: NAMES[1 - i].into(),
                target: RedisTarget::Single(client(relays[i].port)),
            }],
            sync_interval: REGION_INTERVAL,
            on_partition: OnPartition::SafeShare,
        };
        let region_sync = RegionSync::new(
            region,
            sync.key_prefix.clone(),
            sync.instance_id.clone(),
            sync.consumers_log_entries,
            sync.backend.clone(),
            metrics.clone(),
        );
        let active = if i == 0 || both { keys } else { 0 };
        regions.push(RegionUnder {
            _server: server,
            node: client(ports[i]),
            limiter,
            sync,
            regions: region_sync,
            metrics,
            keys: (0..active)
                .map(|k| LimitKey::Consumer(Arc::from(format!("consumer-{k}"))))
                .collect(),
        });
    }
    let supply = Supply::Leased {
        instances: 1,
        first_s: 2.0 * INSTANCE_INTERVAL.as_secs_f64(),
    };
    let (warm_up, measured) = rounds;
    let mut sides: [Side; 2] = Default::default();
    let mut instance_round = 0;
    let started = Instant::now();
    for region_round in 0..warm_up + measured {
        for _ in 0..INSTANCE_ROUNDS_PER_REGION_ROUND {
            let round_started = Instant::now();
            for region in &regions {
                let now = now_ns();
                for (k, key) in region.keys.iter().enumerate() {
                    if hot {
                        let _ = (0..HOT_ASKS)
                            .find(|_| !region.limiter.local.take(key, TIER, 1.0, now, supply).allowed);
                    } else if (instance_round + k) % INSTANCE_ROUNDS_PER_REGION_ROUND == 0 {
                        region.limiter.local.take(key, TIER, 1.0, now, supply);
                    }
                }
                let backend = region.sync.backend.load_full().expect("connected");
                if let Err(e) = runtime.block_on(region.sync.sync_once(&backend)) {
                    // A round that misses its deadline gives its reports back, as in the gateway.
                    eprintln!(
                        "instance round {instance_round} of region {} failed: {e}",
                        region.sync.instance_id
                    );
                }
            }
            instance_round += 1;
            std::thread::sleep(INSTANCE_INTERVAL.saturating_sub(round_started.elapsed()));
        }
        for (i, side) in sides.iter_mut().enumerate() {
            let (region, peer) = (&regions[i], &regions[1 - i]);
            let keys_counter = region.metrics.keys.with_label_values(&[NAMES[1 - i]]);
            let (peer_before, local_before, keys_before) =
                (counts(&peer.node), counts(&region.node), keys_counter.get());
            let round_started = Instant::now();
            let result = runtime.block_on(region.regions.round_once());
            let took = round_started.elapsed();
            let (peer_after, local_after) = (counts(&peer.node), counts(&region.node));
            // What the INFO calls themselves add, as they add it now (the reply
            // grows with the kinds of command seen).
            let (peer_info, local_info) = (counts(&peer.node), counts(&region.node));
            if region_round < warm_up {
                continue;
            }
            match result {
                Ok(true) => side.reached += 1,
                Ok(false) => eprintln!("region {}: round {region_round} did not reach the peer", NAMES[i]),
                Err(e) => eprintln!("region {}: round {region_round} failed: {e}", NAMES[i]),
            }
            side.times.push(took);
            side.keys += keys_counter.get() - keys_before;
            for (j, total) in side.peer.iter_mut().enumerate() {
                let info = peer_info[j] - peer_after[j];
                *total += (peer_after[j] - peer_before[j]).saturating_sub(info);
            }
            let info = local_info[0] - local_after[0];
            side.local_commands += (local_after[0] - local_before[0]).saturating_sub(info);
        }
    }
    let scenario = if both {
        format!("{keys} keys in a and b")
    } else {
        format!("{keys} keys in a only")
    };
    let activity = if hot { "hot" } else { "quiet" };
    for (i, side) in sides.iter_mut().enumerate() {
        side.times.sort();
        let per = |n: u64| n as f64 / measured as f64;
        println!(
            "{scenario:<24} {activity:<5} {}→{}: reached {:>2}/{measured}, {:>7.0} keys/round, peer Redis {:>6.0} commands ({:>4.0} scripts) {:>8.1} KiB in {:>7.1} KiB out a round, own Redis {:>6.0} commands, round median {:>7.1} ms (longest {:>7.1} ms)",
            NAMES[i],
            NAMES[1 - i],
            side.reached,
            per(side.keys),
            per(side.peer[0]),
            per(side.peer[3]),
            per(side.peer[1]) / 1024.0,
            per(side.peer[2]) / 1024.0,
            per(side.local_commands),
            side.times[side.times.len() / 2].as_secs_f64() * 1e3,
            side.times.last().map_or(0.0, |t| t.as_secs_f64() * 1e3),
        );
    }
    eprintln!("  ({:.0} s for the row)", started.elapsed().as_secs_f64());
}

fn main() {
    let (full, sizes) = bench_args(&[1_000, 10_000, 100_000]);
    let (rows, rounds): (Vec<(usize, bool)>, _) = if full {
        let one = sizes.iter().map(|&n| (n, false));
        (one.chain([(SHARED_KEYS, true)]).collect(), (5, 10))
    } else {
        (vec![(100, true)], (1, 1))
    };
    for (keys, both) in rows {
        for hot in [true, false] {
            measure(keys, both, hot, rounds);
        }
    }
}
