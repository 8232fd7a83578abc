//! Runtime consumers at scale, through the change log: 100,000 keys written into a
//! real Redis directly (the admin API's records and log entries, pipelined), two
//! instances started together on it. Both are ready with every key; a key made on
//! one and a revocation on the other reach the other within the sync's bound; the
//! log stays within its retention; an instance frozen while the log moved past its
//! place reloads in full and sees the right set, and so does one restarted.

use crate::common::*;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "admin-token-0123456789";
const KEYS: usize = 100_000;
/// The log's retention here (`redis.consumers_log_entries`), its least.
const RETENTION: usize = 1_000;
const LOG: &str = "{floodgate:consumers}:log";

fn start(redis: &Redis) -> Gateway {
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
redis: {{ url: "{}", sync_interval_ms: 100, consumers_log_entries: {RETENTION} }}
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
