//! Several regions on one machine: each region is a real redis-server and its own
//! floodgate instances, and an instance reaches another region's Redis only through
//! a relay that holds each chunk for the one-way delay and can be cut (a
//! partition). Measured: one budget worldwide for a consumer saturating every
//! instance (80 and 250 ms apart), all traffic in one region, traffic moving
//! between regions, a region cut off under each `on_partition` mode, runtime
//! consumers made and revoked across regions, a peer Redis frozen and killed, and
//! what a consumer of one region costs the other.

use crate::cluster_budget::{assert_within, bearer, drive, Run, ADMIN_TOKEN, BURST, RATE};
use crate::common::*;
use serde_json::Value;
use std::thread;
use std::time::{Duration, Instant};

const SECRET: &str = "cluster-budget-secret-0123456789abcdef";
const NAMES: [&str; 3] = ["a", "b", "c"];
const REGION_INTERVAL_MS: u64 = 1000;

fn body(redis: &str) -> String {
    format!(
        r#"
auth:
  jwt:
    keys: [{{ alg: HS256, secret: "{SECRET}" }}]
  api_keys:
    keys: []
  default_tier: premium
tiers:
  premium: {{ rate: {RATE}, burst: {BURST} }}
anonymous: {{ rate: {RATE}, burst: {BURST} }}
routes:
  - {{ name: api, path_prefix: /api, respond: {{ status: 200, body: ok }}, auth: required }}
  - {{ name: quota, path_prefix: /quota, respond: {{ status: 200, body: ok }}, auth: required, quota: {{ per: day, requests: {{ premium: 20 }} }} }}
  - {{ name: world, path_prefix: /world, respond: {{ status: 200, body: ok }}, auth: none, global_limit: {{ rate: 60, per_s: 60, scope: world }} }}
  - {{ name: region, path_prefix: /region, respond: {{ status: 200, body: ok }}, auth: none, global_limit: {{ rate: 60, per_s: 60 }} }}
redis: {{ {redis} }}
"#
    )
}

/// Regions `a`, `b` (and `c`), each a Redis and its instances; `relays[i][j]` is the
/// link from region i's instances to region j's Redis.
struct World {
    redis: Vec<Redis>,
    relays: Vec<Vec<Option<Relay>>>,
    gws: Vec<Gateway>,
    /// The region of each instance in `gws`.
    region_of: Vec<usize>,
}

impl World {
    /// `sizes[i]` instances in region i, `rtt` between any two regions, every
    /// instance started at the same moment.
    fn start(sizes: &[usize], rtt: Duration, on_partition: &str) -> World {
        let redis: Vec<Redis> = sizes.iter().map(|_| Redis::start()).collect();
        let relays: Vec<Vec<Option<Relay>>> = (0..sizes.len())
            .map(|i| {
                (0..sizes.len())
                    .map(|j| (i != j).then(|| Relay::start(redis[j].addr(), rtt / 2)))
                    .collect()
            })
            .collect();
        let bodies: Vec<String> = (0..sizes.len())
            .map(|i| {
                let peers: Vec<String> = (0..sizes.len())
                    .filter(|j| *j != i)
                    .map(|j| format!("{}: \"{}\"", NAMES[j], relays[i][j].as_ref().expect("relay").redis_url()))
                    .collect();
                body(&format!(
                    "url: \"{}\", region: {{ name: {}, peers: {{ {} }}, sync_interval_ms: {REGION_INTERVAL_MS}, on_partition: {on_partition} }}",
                    redis[i].url(),
                    NAMES[i],
                    peers.join(", ")
                ))
            })
            .collect();
        let region_of: Vec<usize> = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| std::iter::repeat_n(i, *n))
            .collect();
        let of_each: Vec<&str> = region_of.iter().map(|i| bodies[*i].as_str()).collect();
        let gws = start_together(&of_each, &admin_keys());
        let world = World {
            redis,
            relays,
            gws,
            region_of,
        };
        world.await_leaseholders();
        world
    }

    /// Until every region has an instance holding its lease (the region sync runs).
    fn await_leaseholders(&self) {
        for (i, r) in self
            .redis
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.of(*i).is_empty())
        {
            assert!(
                eventually(Duration::from_secs(10), || {
                    redis_cmd(r.addr(), &["GET", "{floodgate:rg}:holder"])
                        .is_some_and(|v| v.starts_with('$') && !v.starts_with("$-1"))
                }),
                "region {} has no leaseholder",
                NAMES[i]
            );
        }
    }

    /// The instances of region `i`, as indices into `gws`.
    fn of(&self, i: usize) -> Vec<usize> {
        (0..self.gws.len()).filter(|g| self.region_of[*g] == i).collect()
    }

    /// Cuts (or heals) every link to and from region `i`.
    fn partition(&self, i: usize, cut: bool) {
        for (from, links) in self.relays.iter().enumerate() {
            for (to, relay) in links.iter().enumerate() {
                if let Some(relay) = relay.as_ref().filter(|_| from == i || to == i) {
                    if cut {
                        relay.cut();
                    } else {
                        relay.heal();
                    }
                }
            }
        }
    }
}

/// A consumer saturating `instances` (two clients each) for `secs`.
fn saturate(
    world: &World,
    who: &str,
    secs: f64,
    pick: impl Fn(usize, f64) -> usize + Send + Sync + 'static,
) -> Run {
    let auth = bearer(who);
    drive(&world.gws, "/api/x", Some(&auth), 2 * world.gws.len(), secs, pick)
}

fn two_regions_saturated(rtt_ms: u64) {
    let world = World::start(&[2, 1], Duration::from_millis(rtt_ms), "safe_share");
    let run = saturate(&world, &format!("everywhere-{rtt_ms}"), 8.0, |c, _| c % 3);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    for (i, name) in NAMES.iter().enumerate().take(2) {
        let here: usize = world
            .of(i)
            .iter()
            .map(|g| run.count(0.0, f64::MAX, Some(*g)))
            .sum();
        eprintln!("region {name}: {here} admitted");
        assert!(here > 0, "region {name} admitted nothing");
    }
    // The admin view shows the worldwide side: both regions' spending and this one's share.
    let (status, view) = admin(
        &world.gws[0],
        "GET",
        &format!("/admin/consumers/everywhere-{rtt_ms}"),
        "",
    );
    assert_eq!(status, 200, "{view}");
    let world_view = &view["cluster"]["world"];
    eprintln!("a's view: {world_view}");
    let share = world_view["this_region_share"].as_f64().expect("share");
    assert!(share > 0.0 && share < 1.0, "{world_view}");
    for name in ["a", "b"] {
        assert!(
            world_view["regions"][name]["spent"]
                .as_f64()
                .is_some_and(|s| s > 0.0),
            "{world_view}"
        );
    }
    assert_within(
        &format!("2 regions {rtt_ms} ms apart, saturated everywhere"),
        run.admitted.len(),
        run.budget(),
        0.9,
        1.1,
    );
}

#[test]
fn two_regions_80_ms_apart_saturated_everywhere_admit_one_budget() {
    two_regions_saturated(80);
}

#[test]
fn two_regions_250_ms_apart_saturated_everywhere_admit_one_budget() {
    two_regions_saturated(250);
}

#[test]
fn all_traffic_in_one_region_gets_the_worldwide_budget_and_moving_traffic_stays_within_it() {
    let world = World::start(&[2, 1], Duration::from_millis(80), "safe_share");
    let a = world.of(0);
    let run = saturate(&world, "stays-in-a", 8.0, move |c, _| a[c % 2]);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_within("all in one region", run.admitted.len(), run.budget(), 0.9, 1.1);

    let (a, b) = (world.of(0), world.of(1));
    let run = saturate(
        &world,
        "moves-to-b",
        8.0,
        move |c, t| if t < 4.0 { a[c % 2] } else { b[0] },
    );
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_within(
        "moving from a to b at 4 s",
        run.admitted.len(),
        run.budget(),
        0.9,
        1.1,
    );
    let after = run.count(
        4.0 + 2.0 * REGION_INTERVAL_MS as f64 / 1000.0,
        run.secs,
        Some(world.of(1)[0]),
    );
    eprintln!("b admitted {after} from two region intervals after the move");
    assert!(after > 0, "b admitted nothing after the move");
}

/// Three regions, one instance each, a consumer saturating all three for 3 s so
/// that every region knows the others share it, then for 12 s more with region c
/// cut off from both others from 1 s to 9 s: (the warm-up's admitted, the run).
fn partitioned(mode: &str) -> (usize, Run) {
    let world = World::start(&[1, 1, 1], Duration::from_millis(80), mode);
    let who = format!("cut-{mode}");
    let warm = saturate(&world, &who, 3.0, |c, _| c % 3);
    assert!(warm.errors.is_empty(), "{mode}: {:?}", warm.errors);
    let budget_key = format!("floodgate:cb:c:{who}");
    for (i, r) in world.redis.iter().enumerate().take(2) {
        assert_eq!(
            redis_cmd(r.addr(), &["HEXISTS", &budget_key, "p:c"]).as_deref(),
            Some(":1\r\n"),
            "{mode}: region {} does not know c shares the key",
            NAMES[i]
        );
    }
    let run = thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_secs(1));
            world.partition(2, true);
            thread::sleep(Duration::from_secs(8));
            world.partition(2, false);
        });
        saturate(&world, &who, 12.0, |c, _| c % 3)
    });
    assert!(run.errors.is_empty(), "{mode}: {:?}", run.errors);
    let during = run.count(1.0, 9.0, None);
    let cut_side = run.count(FOUND_CUT_AT, 9.0, Some(2));
    let after = run.count(SETTLED_AT, run.secs, None);
    eprintln!(
        "{mode}: {} admitted in 15 s (one budget {:.0}): {} in the 3 s before, {} in the first second, {during} during the partition ({cut_side} by the region cut off once it found itself so), {} in the two region intervals after the heal, {after} after those",
        warm.admitted.len() + run.admitted.len(),
        whole_budget(&run),
        warm.admitted.len(),
        run.count(0.0, 1.0, None),
        run.count(9.0, SETTLED_AT, None)
    );
    (warm.admitted.len(), run)
}

/// One budget over the warm-up and the run.
fn whole_budget(run: &Run) -> f64 {
    BURST + RATE * (3.0 + run.secs)
}

/// When the region cut off at 1 s has found it: an interval, and a connect and an
/// exchange that time out (1 s each).
const FOUND_CUT_AT: f64 = 1.0 + 3.0 * REGION_INTERVAL_MS as f64 / 1000.0;
/// Two region intervals after the heal at 9 s.
const SETTLED_AT: f64 = 9.0 + 2.0 * REGION_INTERVAL_MS as f64 / 1000.0;

/// After the heal, at most the rate (and a round's leases) from two region intervals on.
fn reconciled(run: &Run, mode: &str) {
    let after = run.count(SETTLED_AT, run.secs, None) as f64;
    let bound = RATE * (run.secs - SETTLED_AT) * 1.25 + 10.0;
    assert!(
        after <= bound,
        "{mode}: {after} admitted after the heal, over {bound:.0}"
    );
}

#[test]
fn a_region_cut_off_under_safe_share_and_last_share_keeps_the_world_within_one_budget() {
    for mode in ["safe_share", "last_share"] {
        let (warm, run) = partitioned(mode);
        assert_within(mode, warm + run.admitted.len(), whole_budget(&run), 0.75, 1.1);
        // safe_share: a third of the rate for 5 s; last_share: the share it held,
        // which demand decided (some of it, whatever it was).
        let cut_side = run.count(FOUND_CUT_AT, 9.0, Some(2)) as f64;
        let least = if mode == "safe_share" {
            RATE / 3.0 * 5.0 * 0.7
        } else {
            1.0
        };
        assert!(
            cut_side >= least,
            "{mode}: the region cut off admitted {cut_side}"
        );
        reconciled(&run, mode);
    }
}

#[test]
fn a_region_cut_off_under_allow_admits_the_tier_on_each_side_and_deny_admits_nothing_shared() {
    let (warm, run) = partitioned("allow");
    // Each region grants the whole tier while it cannot reach another sharing the key.
    let bound = whole_budget(&run) + 2.0 * (BURST + RATE * 8.0);
    let total = (warm + run.admitted.len()) as f64;
    assert!(total <= bound, "allow: {total} over {bound:.0}");
    let cut_side = run.count(FOUND_CUT_AT, 9.0, Some(2)) as f64;
    assert!(
        cut_side >= RATE * 5.0 * 0.7,
        "allow: the region cut off admitted {cut_side}"
    );
    reconciled(&run, "allow");

    let (warm, run) = partitioned("deny");
    assert_within("deny", warm + run.admitted.len(), whole_budget(&run), 0.5, 1.1);
    // From the first round that finds c cut off nothing more is granted; leases
    // out then run until they lapse.
    let late = run.count(FOUND_CUT_AT, 9.0, None);
    assert!(late as f64 <= RATE, "deny: {late} admitted during the partition");
}

fn admin(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, Value) {
    admin_call(gw, ADMIN_TOKEN, method, path, body)
}

fn admin_keys() -> String {
    format!("token: \"{ADMIN_TOKEN}\"")
}

fn with_key(gw: &Gateway, key: &str) -> u16 {
    get_with(gw.addr, "/api/x", &[("x-api-key", key)]).status
}

/// The README's bound for a runtime consumer's change to reach another region:
/// two region intervals (the round that reads the change may have just begun), the
/// instances' interval and a round trip; the test allows twice that for a loaded machine.
fn consumers_bound(rtt: Duration) -> Duration {
    Duration::from_millis(2 * REGION_INTERVAL_MS + 100) + rtt
}

#[test]
fn a_key_made_in_one_region_works_in_the_other_and_a_revocation_there_stops_it_within_the_bound() {
    let rtt = Duration::from_millis(250);
    let world = World::start(&[1, 1], rtt, "safe_share");
    let (a, b) = (&world.gws[0], &world.gws[1]);
    let (status, created) = admin(a, "POST", "/admin/consumers/globetrotter/keys", "");
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("key").to_string();
    let key_id = created["key_id"].as_str().expect("key_id").to_string();
    let made = Instant::now();
    assert!(eventually(consumers_bound(rtt) * 2, || with_key(b, &key) == 200));
    eprintln!(
        "a key made in a works in b after {:?} (bound {:?})",
        made.elapsed(),
        consumers_bound(rtt)
    );
    let (status, _) = admin(
        b,
        "DELETE",
        &format!("/admin/consumers/globetrotter/keys/{key_id}"),
        "",
    );
    assert_eq!(status, 204);
    assert_eq!(with_key(b, &key), 401, "at once where it was revoked");
    let revoked = Instant::now();
    assert!(eventually(consumers_bound(rtt) * 2, || with_key(a, &key) == 401));
    eprintln!("a key revoked in b stops in a after {:?}", revoked.elapsed());
    // An override made in b reaches a; the revoked key is never added back.
    let (status, _) = admin(
        b,
        "PUT",
        "/admin/consumers/globetrotter/tier",
        r#"{"tier":"premium"}"#,
    );
    assert_eq!(status, 200);
    assert!(eventually(consumers_bound(rtt) * 2, || {
        admin(a, "GET", "/admin/consumers/globetrotter", "").1["tier_source"] == "override"
    }));
    // a forgets its place in b's log and copies b's consumers whole: the revoked
    // key is not added back, the override stays.
    redis_cmd(world.redis[0].addr(), &["DEL", "{floodgate:rg}:consumers:b"]).expect("del");
    thread::sleep(Duration::from_millis(3 * REGION_INTERVAL_MS));
    assert!(
        world.gws[0].log().contains("copied whole"),
        "a did not copy b's consumers"
    );
    assert_eq!(with_key(a, &key), 401);
    assert_eq!(with_key(b, &key), 401);
    assert_eq!(
        admin(a, "GET", "/admin/consumers/globetrotter", "").1["tier_source"],
        "override"
    );
}

/// The slowest of `n` requests one after another to `gw`.
fn slowest_request(gw: &Gateway, auth: &str, n: usize) -> Duration {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            let status = get_with(gw.addr, "/api/x", &[("authorization", auth)]).status;
            assert!(status == 200 || status == 429, "status {status}");
            started.elapsed()
        })
        .max()
        .unwrap_or_default()
}

fn metric(gw: &Gateway, series: &str) -> Option<f64> {
    get(gw.admin, "/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn a_peer_redis_frozen_then_killed_costs_no_request_a_wait_or_an_error_and_is_counted() {
    let mut world = World::start(&[1, 1], Duration::from_millis(80), "safe_share");
    let auth = bearer("while-b-is-out");
    // Shared first, so that the key's budget has a region to lose.
    let run = saturate(&world, "while-b-is-out", 3.0, |c, _| c % 2);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    let a = &world.gws[0];
    let lost = r#"floodgate_region_partitions_total{peer="b"}"#;
    let up = r#"floodgate_region_peer_up{peer="b"}"#;
    assert_eq!(metric(a, up), Some(1.0));

    world.redis[1].freeze();
    let slowest = slowest_request(a, &auth, 60);
    let a_only = saturate(&world, "while-b-is-out", 3.0, |_, _| 0);
    assert!(a_only.errors.is_empty(), "frozen: {:?}", a_only.errors);
    assert!(
        a_only.count(0.0, f64::MAX, Some(0)) > 0,
        "frozen: a admitted nothing"
    );
    assert!(eventually(Duration::from_secs(5), || metric(a, up) == Some(0.0)));
    assert!(metric(a, lost).is_some_and(|n| n >= 1.0));
    eprintln!("b's Redis frozen: slowest of 60 requests in a {slowest:?}");
    // A request that waited on b would wait out the peer timeout (1 s) at least.
    assert!(
        slowest < Duration::from_millis(900),
        "a request waited: {slowest:?}"
    );
    world.redis[1].thaw();
    assert!(eventually(Duration::from_secs(10), || metric(a, up) == Some(1.0)));

    world.redis[1].kill();
    let slowest = slowest_request(a, &auth, 60);
    let a_only = saturate(&world, "while-b-is-out", 3.0, |_, _| 0);
    assert!(a_only.errors.is_empty(), "killed: {:?}", a_only.errors);
    assert!(eventually(Duration::from_secs(5), || metric(a, up) == Some(0.0)));
    assert!(metric(a, lost).is_some_and(|n| n >= 2.0));
    eprintln!("b's Redis killed: slowest of 60 requests in a {slowest:?}");
    assert!(
        slowest < Duration::from_millis(900),
        "a request waited: {slowest:?}"
    );
}

#[test]
fn quotas_count_worldwide_and_a_world_window_holds_across_regions_while_a_region_window_stays_per_region() {
    let rtt = Duration::from_millis(80);
    let world = World::start(&[1, 1], rtt, "safe_share");
    // A request every 250 ms, alternating between the regions, against a quota of
    // 20 a day: two regions counting apart would admit 40.
    let auth = bearer("quota-everywhere");
    let mut admitted = 0;
    for i in 0..56 {
        let status = get_with(
            world.gws[i % 2].addr,
            "/quota/x",
            &[("authorization", auth.as_str())],
        )
        .status;
        assert!(status == 200 || status == 429, "status {status}");
        admitted += usize::from(status == 200);
        thread::sleep(Duration::from_millis(250));
    }
    // What the other region admits before it hears: requests within two region
    // intervals, the instances' interval and a round trip (half again for rounds
    // that run late on a loaded machine; still under the 40 of two regions apart).
    let lag = consumers_bound(rtt).as_secs_f64() * 1.5;
    let bound = 20 + (lag / 0.25).ceil() as usize;
    eprintln!("a quota of 20 across two regions: {admitted} admitted (bound {bound})");
    assert!(
        (20..=bound).contains(&admitted),
        "{admitted} admitted, want 20..={bound}"
    );

    // Windows of 60 a minute, saturated from both regions for 5 s.
    let run = drive(&world.gws, "/world/x", None, 4, 5.0, |c, _| c % 2);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    let worldwide = run.admitted.len();
    let run = drive(&world.gws, "/region/x", None, 4, 5.0, |c, _| c % 2);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    let per_region = run.admitted.len();
    eprintln!("a window of 60 a minute from two regions: scope world {worldwide}, scope region {per_region}");
    assert!(
        (54..=66).contains(&worldwide),
        "scope world admitted {worldwide} for 60"
    );
    assert!(
        per_region >= 108,
        "scope region admitted {per_region}: each region keeps its own 60"
    );
}

/// Commands a Redis ran so far, by name (`INFO commandstats`), less the INFOs asked.
fn commands(redis: &Redis) -> std::collections::HashMap<String, u64> {
    let info = redis_cmd(redis.addr(), &["INFO", "commandstats"]).expect("info");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .filter(|(name, _)| name != "info")
        .collect()
}

fn since(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> (u64, u64) {
    let grew = |name: &str| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
    let by_name: Vec<(&String, u64)> = after
        .keys()
        .map(|n| (n, grew(n)))
        .filter(|(_, c)| *c > 0)
        .collect();
    eprintln!("b's Redis ran {by_name:?}");
    let all = after.keys().map(|n| grew(n)).sum();
    (all, grew("evalsha"))
}

#[test]
fn a_consumer_of_one_region_costs_the_other_regions_redis_a_few_commands_a_round() {
    // Region b has a Redis and no instance: what its Redis runs, region a sent.
    let world = World::start(&[1, 0], Duration::from_millis(80), "safe_share");
    let a = &world.gws[0];
    let rounds = 5.0;
    let secs = rounds * REGION_INTERVAL_MS as f64 / 1000.0;
    // Quiet: 4 requests a second, a fifth of the rate.
    let auth = bearer("quiet-in-a");
    let before = commands(&world.redis[1]);
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < secs {
        assert_eq!(
            get_with(a.addr, "/api/x", &[("authorization", auth.as_str())]).status,
            200
        );
        thread::sleep(Duration::from_millis(250));
    }
    let (quiet_all, quiet_scripts) = since(&before, &commands(&world.redis[1]));
    // Hot: saturating a's instance.
    let before = commands(&world.redis[1]);
    let run = saturate(&world, "hot-in-a", secs, |_, _| 0);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    let (hot_all, hot_scripts) = since(&before, &commands(&world.redis[1]));
    eprintln!(
        "b's Redis, a round of a's region sync: a quiet consumer of a {:.1} commands ({:.1} scripts), a hot one {:.1} ({:.1} scripts)",
        quiet_all as f64 / rounds,
        quiet_scripts as f64 / rounds,
        hot_all as f64 / rounds,
        hot_scripts as f64 / rounds
    );
    // As it starts in a (whether another region shares it), and perhaps once more
    // if a settle named it again before that first exchange was merged.
    assert!(
        quiet_scripts <= 2,
        "a quiet key of one region exchanged {quiet_scripts} times"
    );
    // Following b's change log (and reconnecting) is all a round costs b otherwise;
    // each exchange is three commands (the script, and the HGETALL and TIME it runs).
    let following = quiet_all.saturating_sub(3 * quiet_scripts);
    assert!(
        following as f64 <= 2.0 * rounds,
        "{quiet_all} commands ({quiet_scripts} exchanges) in {rounds} rounds"
    );
    // The hot key: one script call a round on b, which finds no budget there
    // (Redis counts the HGETALL and TIME it runs inside, too), and the log read.
    assert!(
        hot_scripts as f64 <= rounds + 1.0,
        "{hot_scripts} scripts in {rounds} rounds"
    );
    assert!(
        hot_all as f64 <= 4.0 * rounds + 2.0,
        "{hot_all} commands in {rounds} rounds"
    );
}

#[test]
fn a_region_on_a_redis_cluster_shares_the_budget_and_the_runtime_consumers() {
    let cluster = RedisCluster::start();
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let nodes = nodes.join(", ");
    let b_redis = Redis::start();
    let to_b = Relay::start(b_redis.addr(), Duration::from_millis(40));
    // b reaches a's Cluster directly: a cluster client follows the nodes' own addresses.
    let a = body(&format!(
        "cluster: [{nodes}], region: {{ name: a, peers: {{ b: \"{}\" }}, sync_interval_ms: {REGION_INTERVAL_MS} }}",
        to_b.redis_url()
    ));
    let b = body(&format!(
        "url: \"{}\", region: {{ name: b, peers: {{ a: {{ cluster: [{nodes}] }} }}, sync_interval_ms: {REGION_INTERVAL_MS} }}",
        b_redis.url()
    ));
    let gws = start_together(&[&a, &a, &b], &admin_keys());
    let holding = |gws: &[Gateway]| {
        gws.iter()
            .any(|g| metric(g, "floodgate_region_leaseholder") == Some(1.0))
    };
    assert!(eventually(Duration::from_secs(10), || holding(&gws[..2])
        && holding(&gws[2..])));
    let auth = bearer("on-a-cluster");
    let run = drive(&gws, "/api/x", Some(&auth), 6, 6.0, |c, _| c % 3);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_within(
        "a Cluster region and a single-Redis region",
        run.admitted.len(),
        run.budget(),
        0.9,
        1.1,
    );
    let (status, created) = admin(&gws[2], "POST", "/admin/consumers/clustered/keys", "");
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("key").to_string();
    assert!(eventually(
        consumers_bound(Duration::from_millis(80)) * 2,
        || with_key(&gws[0], &key) == 200
    ));
}

#[test]
fn a_peer_over_tls_with_an_acl_user_shares_the_budget_and_a_wrong_password_counts_as_cut_off() {
    let tls = TlsRedis::start(Some(("floodgate", "s3cret-pass")));
    let a_redis = Redis::start();
    // b's Redis speaks TLS with an ACL user; a reaches it as a peer map with the
    // same options as `redis` (and b reaches a's plain Redis by URL).
    let connection = |password: &str| {
        format!(
            "url: \"{}\", tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}",
            tls.url(Some(("floodgate", password))),
            tls.ca_file().display(),
            tls.client_cert().display(),
            tls.client_key().display()
        )
    };
    let region = |name: &str, peer: &str| {
        format!("region: {{ name: {name}, peers: {{ {peer} }}, sync_interval_ms: {REGION_INTERVAL_MS} }}")
    };
    let a = |own: &Redis, password: &str| {
        body(&format!(
            "url: \"{}\", {}",
            own.url(),
            region("a", &format!("b: {{ {} }}", connection(password)))
        ))
    };
    let b = body(&format!(
        "{}, {}",
        connection("s3cret-pass"),
        region("b", &format!("a: \"{}\"", a_redis.url()))
    ));
    let gws = start_together(&[&a(&a_redis, "s3cret-pass"), &b], &admin_keys());
    let peer_up = r#"floodgate_region_peer_up{peer="b"}"#;
    assert!(eventually(Duration::from_secs(10), || metric(&gws[0], peer_up) == Some(1.0)));
    let auth = bearer("over-tls");
    let run = drive(&gws, "/api/x", Some(&auth), 4, 6.0, |c, _| c % 2);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_within(
        "a peer over TLS with an ACL user",
        run.admitted.len(),
        run.budget(),
        0.9,
        1.1,
    );

    // A wrong password (an instance of a region of its own, so that it holds
    // the lease): the peer is never reached, and requests do not notice.
    let elsewhere = Redis::start();
    let wrong = Gateway::start_admin(&a(&elsewhere, "wrong-pass"), &admin_keys());
    assert!(eventually(Duration::from_secs(10), || metric(&wrong, peer_up) == Some(0.0)));
    let slowest = slowest_request(&wrong, &bearer("wrong-pass"), 30);
    assert!(
        slowest < Duration::from_millis(900),
        "a request waited: {slowest:?}"
    );
    assert!(
        wrong.log().contains("region b: not reached"),
        "no log line for the peer"
    );
}
