//! A consumer's tier as one budget across instances sharing a real redis-server
//! (and a Redis Cluster, a Sentinel-watched master, TLS and ACL users): admitted
//! counts measured against burst + rate × T for even, skewed and moving traffic,
//! anonymous addresses, and Redis killed or frozen under each outage mode.

use crate::common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SECRET: &str = "cluster-budget-secret-0123456789abcdef";
pub(crate) const ADMIN_TOKEN: &str = "admin-token-0123456789";
pub(crate) const RATE: f64 = 20.0;
pub(crate) const BURST: f64 = 200.0;

pub(crate) fn bearer(sub: &str) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let claims = json!({"sub": sub, "tier": "premium", "exp": exp});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    format!(
        "Bearer {}",
        encode(&Header::new(Algorithm::HS256), &claims, &key).expect("sign")
    )
}

/// `redis` is the whole `redis:` section's body, e.g. `url: "redis://..."`.
pub(crate) fn body(redis: &str) -> String {
    format!(
        r#"
auth:
  jwt:
    keys: [{{ alg: HS256, secret: "{SECRET}" }}]
  default_tier: premium
tiers:
  premium: {{ rate: {RATE}, burst: {BURST} }}
anonymous: {{ rate: {RATE}, burst: {BURST} }}
routes:
  - {{ name: api, path_prefix: /api, respond: {{ status: 200, body: ok }}, auth: required }}
  - {{ name: open, path_prefix: /open, respond: {{ status: 200, body: ok }}, auth: none }}
  - {{ name: costly, path_prefix: /costly, respond: {{ status: 200, body: ok }}, auth: required, cost: 100 }}
redis: {{ {redis} }}
"#
    )
}

fn single(redis: &Redis, mode: &str) -> String {
    body(&format!("url: \"{}\", on_unavailable: {mode}", redis.url()))
}

fn fleet(body: &str, n: usize) -> Vec<Gateway> {
    gateways(body, &format!("token: \"{ADMIN_TOKEN}\""), n)
}

/// `n` instances on `redis` under `mode`, each knowing how many there are.
fn synced_fleet(redis: &Redis, mode: &str, n: usize) -> Vec<Gateway> {
    let gws = fleet(&single(redis, mode), n);
    await_instances(redis.addr(), n);
    gws
}

/// Until every instance has heartbeated twice: each then knows how many there are.
fn await_instances(addr: std::net::SocketAddr, n: usize) {
    let want = format!(":{n}");
    assert!(eventually(Duration::from_secs(10), || {
        redis_cmd(addr, &["ZCARD", "floodgate:instances"]).is_some_and(|r| r.starts_with(&want))
    }));
    // Not a wait for a result: one more sync interval so the count reaches every instance.
    thread::sleep(Duration::from_millis(300));
}

/// What a run admitted: (seconds since its start, instance) per 200, and any
/// status other than 200 and 429.
pub(crate) struct Run {
    pub(crate) admitted: Vec<(f64, usize)>,
    pub(crate) errors: Vec<String>,
    pub(crate) secs: f64,
}

impl Run {
    pub(crate) fn count(&self, from: f64, to: f64, on: Option<usize>) -> usize {
        self.admitted
            .iter()
            .filter(|(t, g)| *t >= from && *t < to && on.is_none_or(|o| o == *g))
            .count()
    }

    pub(crate) fn budget(&self) -> f64 {
        BURST + RATE * self.secs
    }
}

/// `clients` threads for `secs`; `target(client, elapsed_s)` picks each request's instance.
pub(crate) fn drive(
    gws: &[Gateway],
    path: &str,
    auth: Option<&str>,
    clients: usize,
    secs: f64,
    target: impl Fn(usize, f64) -> usize + Send + Sync + 'static,
) -> Run {
    let addrs: Vec<_> = gws.iter().map(|g| g.addr).collect();
    let admitted = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let target = Arc::new(target);
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (addrs, admitted, errors, target) =
                (addrs.clone(), admitted.clone(), errors.clone(), target.clone());
            let (path, auth) = (path.to_string(), auth.map(str::to_string));
            thread::spawn(move || loop {
                let t = started.elapsed().as_secs_f64();
                if t >= secs {
                    return;
                }
                let on = target(c, t);
                let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
                match try_get_with(addrs[on], &path, &headers) {
                    Ok(r) if r.status == 200 => admitted.lock().expect("admitted").push((t, on)),
                    Ok(r) if r.status == 429 => {}
                    Ok(r) => errors
                        .lock()
                        .expect("errors")
                        .push(format!("status {}", r.status)),
                    Err(e) => errors.lock().expect("errors").push(e),
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    let secs = started.elapsed().as_secs_f64();
    let admitted = std::mem::take(&mut *admitted.lock().expect("admitted"));
    let errors = std::mem::take(&mut *errors.lock().expect("errors"));
    Run {
        admitted,
        errors,
        secs,
    }
}

pub(crate) fn assert_within(label: &str, admitted: usize, budget: f64, low: f64, high: f64) {
    let ratio = admitted as f64 / budget;
    eprintln!(
        "{label}: {admitted} admitted, one budget {budget:.0}: {:.1}%",
        ratio * 100.0
    );
    assert!(
        ratio >= low && ratio <= high,
        "{label}: {admitted} admitted against a budget of {budget:.0} ({:.1}%), want {:.0}%..{:.0}%",
        ratio * 100.0,
        low * 100.0,
        high * 100.0
    );
}

#[test]
fn three_instances_with_a_consumer_spread_evenly_admit_one_budget() {
    let redis = Redis::start();
    let gws = synced_fleet(&redis, "local_share", 3);
    let auth = bearer("even");
    let run = drive(&gws, "/api/x", Some(&auth), 6, 6.0, |c, _| c % 3);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_within("even over 3", run.admitted.len(), run.budget(), 0.75, 1.25);
    for g in 0..3 {
        assert!(
            run.count(0.0, f64::MAX, Some(g)) > 0,
            "instance {g} admitted nothing"
        );
    }
}

#[test]
fn all_of_a_consumers_traffic_on_one_of_three_instances_gets_the_whole_budget() {
    let redis = Redis::start();
    let gws = synced_fleet(&redis, "local_share", 3);
    let auth = bearer("sticky");
    let run = drive(&gws, "/api/x", Some(&auth), 3, 6.0, |_, _| 0);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_within("all on one of 3", run.admitted.len(), run.budget(), 0.75, 1.25);
}

#[test]
fn a_consumer_moving_to_another_instance_gets_its_budget_there_within_two_syncs() {
    let redis = Redis::start();
    let gws = synced_fleet(&redis, "local_share", 3);
    let auth = bearer("mover");
    // The first instance until 3 s, then the second: the burst is spent on the first.
    let run = drive(&gws, "/api/x", Some(&auth), 3, 7.0, |_, t| usize::from(t >= 3.0));
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_within("moving, whole run", run.admitted.len(), run.budget(), 0.75, 1.25);
    // From two sync intervals after the move, the second instance admits the rate.
    let (from, to) = (3.2, run.secs);
    let there = run.count(from, to, Some(1));
    assert_within("moving, after the move", there, RATE * (to - from), 0.75, 1.25);
}

/// A cost above burst ÷ instances: no instance's share ever covers it, so the pool lends
/// the whole cost to the instance that was refused it.
#[test]
fn a_request_costing_more_than_an_instances_share_is_still_admitted() {
    let redis = Redis::start();
    let gws = synced_fleet(&redis, "local_share", 3);
    let auth = bearer("costly");
    let run = drive(&gws, "/costly/x", Some(&auth), 3, 4.0, |c, _| c % 3);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    // burst 200 + 20/s × 4 s = 280 tokens: two requests of 100, a third at most.
    let admitted = run.admitted.len();
    eprintln!("cost 100 over 3 instances: {admitted} admitted");
    assert!((2..=3).contains(&admitted), "{admitted} admitted");
}

#[test]
fn an_anonymous_address_spread_over_three_instances_has_one_budget_too() {
    let redis = Redis::start();
    let gws = synced_fleet(&redis, "local_share", 3);
    let even = drive(&gws, "/open/x", None, 6, 6.0, |c, _| c % 3);
    assert!(even.errors.is_empty(), "{:?}", even.errors);
    assert_within(
        "anonymous even over 3",
        even.admitted.len(),
        even.budget(),
        0.75,
        1.25,
    );
    let keys = redis_cmd(redis.addr(), &["KEYS", "floodgate:cb:ip:*"]).unwrap_or_default();
    assert!(keys.contains("floodgate:cb:ip:127.0.0.1"), "{keys}");
}

/// Redis killed and then restarted mid-run, under `local_share`: each instance keeps the
/// share it had, so the cluster still admits about one budget, and never an error.
#[test]
fn redis_killed_under_local_share_keeps_one_budget_and_pushes_the_outage_when_back() {
    let mut redis = Redis::start();
    let gws = Arc::new(synced_fleet(&redis, "local_share", 3));
    let auth = bearer("outage");
    let killer = {
        let gws = gws.clone();
        thread::spawn(move || {
            // Not a wait for a result: the outage starts 2 s into the run and lasts 3 s.
            thread::sleep(Duration::from_secs(2));
            redis.kill();
            assert!(eventually(Duration::from_secs(5), || gws
                .iter()
                .all(|g| g.log().contains("redis sync failing"))));
            thread::sleep(Duration::from_secs(2));
            redis.restart();
            redis
        })
    };
    let run = drive(&gws, "/api/x", Some(&auth), 6, 7.0, |c, _| c % 3);
    let redis = killer.join().expect("killer");
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_within(
        "kill under local_share",
        run.admitted.len(),
        run.budget(),
        0.75,
        1.25,
    );
    assert!(eventually(Duration::from_secs(10), || gws
        .iter()
        .all(|g| g.log().contains("redis sync restored"))));
    // What the outage admitted reached the fresh Redis.
    assert!(eventually(Duration::from_secs(5), || redis_cmd(
        redis.addr(),
        &["HGET", "floodgate:cb:c:outage", "wu"]
    )
    .is_some_and(|r| !r.starts_with("$-1"))));
}

/// Redis frozen, and killed, under every mode, for a consumer that first calls during
/// the outage: no request error, and each mode's bound holds while it lasts:
/// `local_share` splits the tier over the instances last seen (one budget in all),
/// `allow` admits each instance's full tier, `deny` refuses.
#[test]
fn a_frozen_or_killed_redis_under_each_mode() {
    let cases = [
        ("local_share", false, 0.75, 1.25),
        ("allow", false, 0.75 * 2.0, 1.1 * 2.0),
        ("deny", false, 0.0, 0.0),
        ("allow", true, 0.75 * 2.0, 1.1 * 2.0),
        ("deny", true, 0.0, 0.0),
    ];
    for (mode, kill, low, high) in cases {
        let mut redis = Redis::start();
        let gws = synced_fleet(&redis, mode, 2);
        if kill {
            redis.kill();
        } else {
            redis.freeze();
        }
        assert!(eventually(Duration::from_secs(10), || gws
            .iter()
            .all(|g| g.log().contains("redis sync failing"))));
        let outage = if kill { "killed" } else { "frozen" };
        let auth = bearer(&format!("{outage}-{mode}"));
        let run = drive(&gws, "/api/x", Some(&auth), 4, 3.0, |c, _| c % 2);
        assert!(run.errors.is_empty(), "{outage} {mode}: {:?}", run.errors);
        assert_within(
            &format!("{outage} under {mode}"),
            run.admitted.len(),
            run.budget(),
            low,
            high,
        );
        redis.thaw();
    }
}

#[test]
fn the_admin_view_shows_tier_source_cluster_usage_and_this_instances_share() {
    let redis = Redis::start();
    let gws = synced_fleet(&redis, "local_share", 2);
    let auth = bearer("viewed");
    // Paced over a few syncs, so leases follow the first advance.
    let admitted = (0..30)
        .filter(|_| {
            thread::sleep(Duration::from_millis(20));
            get_with(gws[0].addr, "/api/x", &[("authorization", auth.as_str())]).status == 200
        })
        .count() as f64;
    assert!(admitted >= 20.0, "{admitted} of 30 admitted");
    let view = |gw: &Gateway, who: &str, token: Option<&str>| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
        get_with(gw.admin, &format!("/admin/consumers/{who}"), &headers)
    };
    assert_eq!(view(&gws[0], "viewed", None).status, 401);
    assert_eq!(view(&gws[0], "viewed", Some("wrong")).status, 401);
    assert_eq!(view(&gws[0], "nobody", Some(ADMIN_TOKEN)).status, 404);
    // A quiet key's usage reaches Redis with its report, which may be put off for
    // up to 64 rounds (6.4 s at 100 ms, more when rounds run slow).
    assert!(eventually(Duration::from_secs(15), || {
        let v = view(&gws[0], "viewed", Some(ADMIN_TOKEN)).json();
        let used = |f: &str| v["cluster"][f].as_f64().unwrap_or(0.0);
        used("used_this_minute") + used("used_last_minute") >= admitted
    }));
    let v = view(&gws[0], "viewed", Some(ADMIN_TOKEN)).json();
    assert_eq!(v["tier"], "premium");
    assert_eq!(v["tier_source"], "token");
    assert_eq!(v["burst"], BURST);
    let remaining = v["cluster"]["remaining"].as_f64().expect("remaining");
    // A quiet key reports when its lease was granted for, by when the pool has
    // refilled: what remains is never more than one burst, leases included.
    assert!((0.0..=BURST).contains(&remaining), "{v}");
    assert!(v["this_instance"]["share"].as_f64().is_some(), "{v}");
    // The other instance never saw the consumer: it reads the cluster's side from Redis.
    // The sync's own figures reach /metrics.
    let metrics = get(gws[0].admin, "/metrics").text();
    assert!(
        metrics.contains("floodgate_redis_sync_duration_seconds_count"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floodgate_redis_sync_keys_waiting 0"),
        "{metrics}"
    );
    assert!(eventually(Duration::from_secs(5), || {
        get_with(gws[0].addr, "/api/x", &[("authorization", auth.as_str())]);
        get(gws[0].admin, "/metrics")
            .text()
            .lines()
            .any(|l| l.starts_with("floodgate_redis_sync_keys ") && !l.ends_with(" 0"))
    }));
    let other = view(&gws[1], "viewed", Some(ADMIN_TOKEN)).json();
    assert!(other["this_instance"].is_null(), "{other}");
    assert!(other["cluster"]["remaining"].as_f64().is_some(), "{other}");
}

/// Two instances on a 3-master Redis Cluster: budgets land on several nodes and one
/// budget still holds.
#[test]
fn a_redis_cluster_shares_the_budget() {
    let cluster = RedisCluster::start();
    let nodes = cluster
        .urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let gws = fleet(&body(&format!("cluster: [{nodes}]")), 2);
    let auth = bearer("clustered");
    // Consumers enough that their keys spread over the masters.
    for i in 0..30 {
        let other = bearer(&format!("spread-{i}"));
        assert_eq!(
            get_with(gws[0].addr, "/api/x", &[("authorization", other.as_str())]).status,
            200
        );
    }
    let run = drive(&gws, "/api/x", Some(&auth), 4, 5.0, |c, _| c % 2);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_within(
        "cluster, even over 2",
        run.admitted.len(),
        run.budget(),
        0.75,
        1.25,
    );
    // In a cluster a budget's key carries one of 1,024 hash tags: `{floodgate:cb:<group>}:c:<consumer>`.
    let per_node = cluster.keys_on_each_node("{floodgate:cb:*");
    assert!(per_node.iter().filter(|n| **n > 0).count() >= 2, "{per_node:?}");
    // The runtime consumers' reads and writes keep to their one slot too.
    for gw in &gws {
        let log = gw.log();
        assert!(log.contains("runtime consumers reloaded in full"), "{log}");
        assert!(!log.contains("could not follow"), "{log}");
    }
}

/// The master behind a Sentinel is killed mid-run: the sync follows the failover.
#[test]
fn a_sentinel_failover_is_followed() {
    let mut sentinel = RedisSentinel::start();
    let redis = format!(
        "sentinel: {{ master_name: {}, nodes: [\"{}\"] }}",
        sentinel.master_name(),
        sentinel.sentinel_url()
    );
    let gws = fleet(&body(&redis), 2);
    let auth = bearer("failover");
    let before = drive(&gws, "/api/x", Some(&auth), 2, 1.0, |c, _| c % 2);
    assert!(before.errors.is_empty(), "{:?}", before.errors);
    sentinel.kill_master();
    let promoted = sentinel.wait_failover(Duration::from_secs(30));
    let promoted = std::net::SocketAddr::from(([127, 0, 0, 1], promoted));
    // Traffic until the promoted master holds the new consumer's budget: the sync's
    // reconnection backs off while the old master is gone, up to 5 s.
    let auth2 = bearer("after-failover");
    let followed = eventually(Duration::from_secs(30), || {
        for gw in &gws {
            let status = get_with(gw.addr, "/api/x", &[("authorization", auth2.as_str())]).status;
            assert!(status == 200 || status == 429, "status {status}");
        }
        redis_cmd(promoted, &["EXISTS", "floodgate:cb:c:after-failover"]).is_some_and(|r| r.starts_with(":1"))
    });
    assert!(followed, "not followed: {}", gws[0].log());
}

/// TLS with a private CA and a client certificate, and an ACL user over TLS: the budget
/// is shared. A wrong CA or password is a logged, counted sync error, never a request error.
#[test]
fn tls_and_acl_share_the_budget_and_wrong_credentials_are_sync_errors() {
    let tls = TlsRedis::start(Some(("floodgate", "s3cret-pass")));
    let section = |ca: &str, password: &str| {
        format!(
            "url: \"{}\", tls: {{ ca_file: \"{ca}\", cert_file: \"{}\", key_file: \"{}\" }}",
            tls.url(Some(("floodgate", password))),
            tls.client_cert().display(),
            tls.client_key().display()
        )
    };
    let good = section(&tls.ca_file().display().to_string(), "s3cret-pass");
    let gws = fleet(&body(&good), 2);
    let auth = bearer("over-tls");
    let run = drive(&gws, "/api/x", Some(&auth), 4, 4.0, |c, _| c % 2);
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_within(
        "tls + acl, even over 2",
        run.admitted.len(),
        run.budget(),
        0.75,
        1.25,
    );

    let wrong_ca = section(&tls.other_ca_file().display().to_string(), "s3cret-pass");
    let wrong_password = section(&tls.ca_file().display().to_string(), "not-it");
    for bad in [wrong_ca, wrong_password] {
        let gw = Gateway::start_admin(&body(&bad), &format!("token: \"{ADMIN_TOKEN}\""));
        assert!(eventually(Duration::from_secs(10), || gw
            .log()
            .contains("redis sync failing")));
        let r = get_with(gw.addr, "/api/x", &[("authorization", auth.as_str())]);
        assert_eq!(r.status, 200);
        let metrics = get(gw.admin, "/metrics").text();
        assert!(
            !metrics.contains("floodgate_redis_sync_errors_total 0"),
            "{metrics}"
        );
    }

    let acl = start_plain_acl("limiter", "pw-0123");
    let gw = Gateway::start(&body(&format!("url: \"{}\"", acl.url("limiter", "wrong"))));
    assert!(eventually(Duration::from_secs(10), || gw
        .log()
        .contains("redis sync failing")));
    let gw = Gateway::start(&body(&format!("url: \"{}\"", acl.url("limiter", "pw-0123"))));
    let auth = bearer("acl-user");
    assert_eq!(
        get_with(gw.addr, "/api/x", &[("authorization", auth.as_str())]).status,
        200
    );
    assert!(eventually(Duration::from_secs(5), || {
        redis_cmd_as(
            acl.addr(),
            "limiter",
            "pw-0123",
            &["EXISTS", "floodgate:cb:c:acl-user"],
        )
        .is_some_and(|r| r.starts_with(":1"))
    }));
}

#[test]
fn a_missing_or_unparsable_tls_file_fails_the_config_check_naming_its_key() {
    let (ok, out) = check_config(
        &body("url: \"rediss://127.0.0.1:1/0\", tls: { ca_file: /nonexistent/ca.pem }"),
        &[],
    );
    assert!(!ok);
    assert!(out.contains("redis.tls.ca_file"), "{out}");
    let (ok, out) = check_config(&body("url: \"redis://127.0.0.1:1/0\", tls: {}"), &[]);
    assert!(!ok);
    assert!(
        out.contains("redis.url: redis.tls needs a rediss:// URL"),
        "{out}"
    );
}

/// Calls of `command` Redis has run, scripts' own included.
fn command_calls(redis: &Redis, command: &str) -> u64 {
    let stats = redis_cmd(redis.addr(), &["INFO", "commandstats"]).unwrap_or_default();
    let calls = stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok());
    calls.unwrap_or(0)
}

fn commands_processed(redis: &Redis) -> u64 {
    let stats = redis_cmd(redis.addr(), &["INFO", "stats"]).unwrap_or_default();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// A fresh connection from `source`: the answer's status.
fn status_from(source: std::net::IpAddr, to: std::net::SocketAddr) -> Result<u16, String> {
    let mut s = connect_from(source, to).map_err(|e| format!("connect from {source}: {e}"))?;
    get_on(&mut s, "/open/x")
}

/// Thousands of quiet callers beside one at saturation: 1,500 anonymous addresses
/// (each its own 127.x.y.z source, a request every 3 s, always to the same instance)
/// and one consumer driven past its budget over three instances. Each settle runs
/// one `HGETALL` in the script; a quiet key settles when its lease (twice its
/// demand) is due, well under once a request, where reporting every touched key
/// then releasing it took two. The saturated consumer keeps one budget within 10 %.
#[test]
fn quiet_addresses_settle_less_than_once_a_request_beside_a_saturated_consumer() {
    const QUIET: usize = 1500;
    const THREADS: usize = 6;
    const EVERY: Duration = Duration::from_secs(3);
    let redis = Redis::start();
    let gws = synced_fleet(&redis, "local_share", 3);
    let addrs: Vec<_> = gws.iter().map(|g| g.addr).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let quiet_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let quiet_errors = Arc::new(Mutex::new(Vec::new()));
    let quiet: Vec<_> = (0..THREADS)
        .map(|t| {
            let (addrs, stop) = (addrs.clone(), stop.clone());
            let (requests, errors) = (quiet_requests.clone(), quiet_errors.clone());
            thread::spawn(move || {
                let mine: Vec<usize> = (t..QUIET).step_by(THREADS).collect();
                let started = Instant::now();
                for (n, &i) in mine.iter().cycle().enumerate() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let at = EVERY.mul_f64(n as f64 / mine.len() as f64);
                    thread::sleep(at.saturating_sub(started.elapsed()));
                    let source = std::net::Ipv4Addr::new(127, 10 + (i / 250) as u8, (i % 250) as u8, 1);
                    match status_from(source.into(), addrs[i % addrs.len()]) {
                        Ok(200) => {
                            requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        other => errors
                            .lock()
                            .expect("errors")
                            .push(format!("{source}: {other:?}")),
                    }
                }
            })
        })
        .collect();
    // Every address's first request (its key's first settle) comes before the measure.
    thread::sleep(EVERY + Duration::from_secs(1));
    let (settles_before, commands_before) = (command_calls(&redis, "hgetall"), commands_processed(&redis));
    let requests_before = quiet_requests.load(std::sync::atomic::Ordering::Relaxed);
    let auth = bearer("saturated");
    let run = drive(&gws, "/api/x", Some(&auth), 6, 8.0, |c, _| c % 3);
    let settles = command_calls(&redis, "hgetall") - settles_before;
    let commands = commands_processed(&redis) - commands_before;
    let requests = quiet_requests.load(std::sync::atomic::Ordering::Relaxed) - requests_before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in quiet {
        t.join().expect("quiet client");
    }
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    let errors = quiet_errors.lock().expect("errors");
    assert!(
        errors.is_empty(),
        "{} quiet requests failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_within(
        "saturated beside quiet callers",
        run.admitted.len(),
        run.budget(),
        0.9,
        1.1,
    );
    // The saturated consumer settles on each instance every round (100 ms) at most.
    let rounds = run.secs / 0.1;
    let quiet_settles = settles as f64 - 3.0 * (rounds + 2.0);
    let per_request = quiet_settles / requests as f64;
    let commands_per_key = commands as f64 / rounds / QUIET as f64;
    eprintln!(
        "{requests} quiet requests, {settles} settles in all ({per_request:.2} a quiet request), \
         {commands_per_key:.3} Redis commands a round per quiet address"
    );
    assert!(
        requests > QUIET,
        "the quiet callers fell behind: {requests} requests"
    );
    assert!(per_request < 1.0, "{per_request:.2} settles a quiet request");
    assert!(
        commands_per_key < 0.25,
        "{commands_per_key:.3} commands a round per quiet address"
    );
}
