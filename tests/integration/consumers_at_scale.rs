//! Runtime consumers at scale, through the change log: 100,000 keys written into a
//! real Redis directly (the admin API's records and log entries, pipelined), two
//! instances started together on it. Both are ready with every key; a key made on
//! one and a revocation on the other reach the other within the sync's bound; the
//! log stays within its retention; an instance frozen while the log moved past its
//! place reloads in full and sees the right set, and so does one restarted. And
//! 100 admin writes a second over three instances: each in force everywhere
//! within one sync interval and the round that reads it.

use crate::common::*;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "admin-token-0123456789";
const KEYS: usize = 100_000;
/// The log's retention here (`redis.consumers_log_entries`), its least.
const RETENTION: usize = 1_000;
const LOG: &str = "{floodgate:consumers}:log";

fn start(redis: &Redis) -> Gateway {
    start_syncing_every(redis, 100)
}

fn start_syncing_every(redis: &Redis, interval_ms: u64) -> Gateway {
    let body = format!(
        r#"
auth:
  api_keys:
    keys: []
  default_tier: free
tiers:
  free: {{ rate: 100, burst: 100 }}
routes:
  - {{ name: api, path_prefix: /api, respond: {{ status: 200, body: ok }}, auth: required }}
redis: {{ url: "{}", sync_interval_ms: {interval_ms}, consumers_log_entries: {RETENTION} }}
"#,
        redis.url()
    );
    Gateway::start_admin(&body, &format!("token: \"{ADMIN_TOKEN}\""))
}

fn secret(i: usize) -> String {
    format!("scale-key-{i}")
}

/// Keys `range` as the admin API writes them: the record, the version bump and the
/// log entry (trimmed to the retention) in one transaction each, versions following
/// on from `version`.
fn fill(redis: &Redis, range: std::ops::Range<usize>, version: u64) {
    let commands = range.enumerate().flat_map(|(n, i)| {
        let digest = floodgate::auth::api_key::hash_key(&secret(i))[7..].to_string();
        let id = format!("bulk{i}");
        let record = format!(
            r#"{{"key_id":"{id}","consumer":"scale-{i}","digest":"{digest}","tier":null,"created_at_s":1,"expires_at_s":null}}"#
        );
        let v = (version + 1 + n as u64).to_string();
        let k = |what: &str| format!("{{floodgate:consumers}}:{what}");
        [
            vec!["MULTI".into()],
            vec!["HSET".into(), k("keys"), id.clone(), record.clone()],
            vec!["INCR".into(), k("version")],
            vec![
                "XADD".into(),
                LOG.into(),
                "MAXLEN".into(),
                "~".into(),
                RETENTION.to_string(),
                "*".into(),
                "v".into(),
                v,
                "op".into(),
                "add".into(),
                "id".into(),
                id,
                "val".into(),
                record,
            ],
            vec!["EXEC".into()],
        ]
    });
    redis_pipeline(redis.addr(), commands);
}

fn integer(redis: &Redis, args: &[&str]) -> u64 {
    redis_cmd(redis.addr(), args)
        .and_then(|r| {
            let r = r.trim_start_matches(':');
            r.split("\r\n").find_map(|line| line.parse().ok())
        })
        .unwrap_or(0)
}

fn admin(gw: &Gateway, method: &str, path: &str) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = request(gw.admin, method, path, &[("authorization", auth.as_str())], b"");
    (r.status, serde_json::from_slice(&r.body).unwrap_or_default())
}

fn with_key(gw: &Gateway, key: &str) -> u16 {
    get_with(gw.addr, "/api/x", &[("x-api-key", key)]).status
}

/// How long until `check` holds, polled every 10 ms for up to 3 s; panics past that.
fn within(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let since = Instant::now();
    while !check() {
        assert!(since.elapsed() < Duration::from_secs(3), "{what}: not after 3 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = since.elapsed();
    eprintln!("{what}: {took:?}");
    took
}

#[test]
fn a_hundred_thousand_keys_follow_the_change_log_on_two_instances_and_a_reload_past_its_retention() {
    let redis = Redis::start();
    let filling = Instant::now();
    fill(&redis, 0..KEYS, 0);
    eprintln!("{KEYS} keys written to redis in {:?}", filling.elapsed());

    let starting = Instant::now();
    let (a, mut b) = std::thread::scope(|s| {
        let (a, b) = (s.spawn(|| start(&redis)), s.spawn(|| start(&redis)));
        (a.join().expect("start A"), b.join().expect("start B"))
    });
    eprintln!("both ready in {:?}", starting.elapsed());
    for (gw, i) in [(&a, 0), (&b, KEYS - 1), (&a, KEYS / 2)] {
        assert_eq!(with_key(gw, &secret(i)), 200, "ready means loaded: {}", gw.log());
    }

    // A new key through A works on B within one interval (100 ms) and a round.
    let (status, created) = admin(&a, "POST", "/admin/consumers/newcomer/keys");
    assert_eq!(status, 201, "{created}");
    let new_key = created["key"].as_str().expect("key").to_string();
    let took = within("a key made on A works on B", || with_key(&b, &new_key) == 200);
    assert!(took < Duration::from_millis(1000));
    // Each write trims the log to its retention (whole stream nodes of 100).
    let log_length = || integer(&redis, &["XLEN", LOG]) as usize;
    assert!((RETENTION..RETENTION + 200).contains(&log_length()));

    // A revocation through B stops the key on A within the same bound.
    assert_eq!(admin(&b, "DELETE", "/admin/consumers/scale-7/keys/bulk7").0, 204);
    let took = within("a key revoked on B stops on A", || {
        with_key(&a, &secret(7)) == 401
    });
    assert!(took < Duration::from_millis(1000));

    // B frozen while more than the retention is written: its place is trimmed away.
    signal(b.pid(), "STOP");
    let more = KEYS..KEYS + RETENTION + 500;
    // In two bursts a few rounds apart, each within the retention: A follows entry
    // by entry, while B, frozen, falls behind by more than the retention.
    let version = || integer(&redis, &["GET", "{floodgate:consumers}:version"]);
    let half = more.start + more.len() / 2;
    fill(&redis, more.start..half, version());
    std::thread::sleep(Duration::from_millis(500));
    fill(&redis, half..more.end, version());
    assert_eq!(admin(&a, "DELETE", "/admin/consumers/scale-8/keys/bulk8").0, 204);
    within("a key written while B was frozen works on A", || {
        with_key(&a, &secret(more.end - 1)) == 200
    });
    assert!((RETENTION..RETENTION + 200).contains(&log_length()));
    signal(b.pid(), "CONT");
    // A reload's time grows with the keys (seconds for these, in a debug build).
    let reloaded = Instant::now();
    assert!(eventually(Duration::from_secs(30), || {
        b.log()
            .contains("reloaded in full (its place in the log is gone)")
    }));
    eprintln!("B reloaded in full in {:?}", reloaded.elapsed());
    assert_eq!(
        with_key(&b, &secret(more.end - 1)),
        200,
        "written while B was frozen"
    );
    assert_eq!(with_key(&b, &secret(8)), 401, "revoked while B was frozen");
    assert_eq!(with_key(&b, &secret(7)), 401);
    assert!(
        !a.log().contains("its place in the log is gone"),
        "A followed the log entry by entry"
    );

    // Restarted after the log moved on: a full reload, the same set.
    drop(b);
    b = start(&redis);
    let held = KEYS + more.len() + 1 - 2;
    assert!(
        b.log().contains(&format!("(first look): {held} keys")),
        "{}",
        b.log()
    );
    for (key, status) in [
        (secret(7), 401),
        (secret(8), 401),
        (new_key, 200),
        (secret(0), 200),
        (secret(more.end - 1), 200),
    ] {
        assert_eq!(with_key(&b, &key), status);
    }
}

/// 100 admin writes a second for 5 s (two lanes of 50), spread over three
/// instances started together: new keys, and once a lane made 50, every other
/// write of it the revocation of the key it made 50 keys before (2 s before). Each revocation is checked
/// on the two other instances once, one interval (500 ms) and 300 ms for the
/// round and the check's own way after its answer, and must be in force; so must
/// every tenth new key.
#[test]
fn a_hundred_writes_a_second_on_three_instances_are_each_in_force_everywhere_within_an_interval() {
    const INTERVAL_MS: u64 = 500;
    const EVERY: Duration = Duration::from_millis(10);
    const WRITES: usize = 500;
    const REVOKE_AFTER: usize = 100;
    let bound = Duration::from_millis(INTERVAL_MS + 300);
    let redis = Redis::start();
    let gws: Vec<Gateway> = std::thread::scope(|s| {
        let starting: Vec<_> = (0..3)
            .map(|_| s.spawn(|| start_syncing_every(&redis, INTERVAL_MS)))
            .collect();
        starting.into_iter().map(|h| h.join().expect("start")).collect()
    });
    // Two lanes of 50 writes a second, 10 ms apart, each with its own checker
    // beside it: (when, key, the instance written on, status wanted).
    let started = Instant::now();
    let lane = |lane: usize| {
        let (checks, pending) = std::sync::mpsc::channel::<(Instant, String, usize, u16)>();
        std::thread::scope(|s| {
            let gws = &gws;
            let checker = s.spawn(move || {
                let mut wrong = Vec::new();
                let mut checked = 0;
                for (at, key, origin, want) in pending {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    for (i, gw) in gws.iter().enumerate().filter(|(i, _)| *i != origin) {
                        let got = with_key(gw, &key);
                        if got != want {
                            wrong.push(format!("{key}: {got} on instance {i}, {want} wanted"));
                        }
                    }
                    checked += 1;
                }
                (wrong, checked)
            });
            let mut made: Vec<(String, String, String)> = Vec::new();
            for n in 0..WRITES / 2 {
                let at = started + EVERY * (2 * n + lane) as u32;
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let on = (n + lane) % 3;
                if n % 2 == 1 && made.len() > REVOKE_AFTER / 2 {
                    let (consumer, id, key) = made[made.len() - 1 - REVOKE_AFTER / 2].clone();
                    let path = format!("/admin/consumers/{consumer}/keys/{id}");
                    assert_eq!(admin(&gws[on], "DELETE", &path).0, 204, "{path}");
                    checks
                        .send((Instant::now() + bound, key, on, 401))
                        .expect("checker");
                } else {
                    let consumer = format!("busy-{lane}-{n}");
                    let (status, created) =
                        admin(&gws[on], "POST", &format!("/admin/consumers/{consumer}/keys"));
                    assert_eq!(status, 201, "{created}");
                    let key = created["key"].as_str().expect("key").to_string();
                    let id = created["key_id"].as_str().expect("key_id").to_string();
                    if made.len().is_multiple_of(10) {
                        checks
                            .send((Instant::now() + bound, key.clone(), on, 200))
                            .expect("checker");
                    }
                    made.push((consumer, id, key));
                }
            }
            let written = started.elapsed();
            drop(checks);
            let (wrong, checked) = checker.join().expect("checker");
            (wrong, checked, written)
        })
    };
    let lanes: Vec<(Vec<String>, usize, Duration)> = std::thread::scope(|s| {
        let running: Vec<_> = (0..2).map(|l| s.spawn(move || lane(l))).collect();
        running.into_iter().map(|h| h.join().expect("lane")).collect()
    });
    let written = lanes.iter().map(|(.., t)| *t).max().unwrap_or_default();
    let rate = WRITES as f64 / written.as_secs_f64();
    let checked: usize = lanes.iter().map(|(_, n, _)| n).sum();
    let wrong: Vec<String> = lanes.into_iter().flat_map(|(w, ..)| w).collect();
    eprintln!("{WRITES} writes at {rate:.0} a second, {checked} checked on two instances each");
    assert!(rate > 80.0, "the writes fell behind: {rate:.0} a second");
    assert!(checked > 150, "{checked} checks");
    assert!(
        wrong.is_empty(),
        "{} not in force within {bound:?}: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// A revocation asked of an instance that does not hold the key (still loading, or
/// behind the log) goes to Redis, which says whether it holds such a key for that
/// consumer: a leaked key is never answered "no such key" while it works elsewhere,
/// and a key is never revoked through another consumer's path.
#[test]
fn a_key_not_held_here_is_revoked_through_redis_for_its_own_consumer_only() {
    let redis = Redis::start();
    let gw = start(&redis);
    // In Redis only: written after start, with no log entry, so never taken up here.
    let digest = floodgate::auth::api_key::hash_key("unseen-secret")[7..].to_string();
    let record = format!(
        r#"{{"key_id":"unseen","consumer":"owner","digest":"{digest}","tier":null,"created_at_s":1,"expires_at_s":null}}"#
    );
    let hash = |what: &str| format!("{{floodgate:consumers}}:{what}");
    redis_cmd(redis.addr(), &["HSET", &hash("keys"), "unseen", &record]).expect("HSET");
    assert_eq!(with_key(&gw, "unseen-secret"), 401, "not held here");
    let held = |what: &str| integer(&redis, &["HEXISTS", &hash(what), "unseen"]);
    assert_eq!(
        admin(&gw, "DELETE", "/admin/consumers/intruder/keys/unseen").0,
        404
    );
    assert_eq!(held("keys"), 1, "another consumer's path revokes nothing");
    assert_eq!(admin(&gw, "DELETE", "/admin/consumers/owner/keys/unseen").0, 204);
    assert_eq!(
        (held("keys"), held("revoked")),
        (0, 1),
        "revoked in Redis, tombstone left"
    );
    assert_eq!(
        admin(&gw, "DELETE", "/admin/consumers/owner/keys/unseen").0,
        404,
        "gone"
    );
}
