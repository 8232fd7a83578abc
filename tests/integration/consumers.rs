//! Consumers managed at runtime through the admin API, against the real binary:
//! keys created on one instance authenticate on another through a real Redis, a
//! revocation stops them everywhere, restarts and a flushed Redis lose nothing, a
//! dead Redis keeps keys working and refuses writes, a single instance's state file
//! keeps every answered write through a kill -9, and bad input is refused.

use crate::common::*;
use floodgate::services::admin::client::segment;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn body(redis: Option<&Redis>) -> String {
    let redis = redis.map_or(String::new(), |r| {
        format!("redis: {{ url: \"{}\", sync_interval_ms: 100 }}", r.url())
    });
    format!(
        r#"
auth:
  api_keys:
    keys:
      - {{ consumer: configured, key: "{}", tier: gold }}
  default_tier: free
tiers:
  free: {{ rate: 100, burst: 100 }}
  gold: {{ rate: 1000, burst: 1000 }}
routes:
  - {{ name: api, path_prefix: /api, respond: {{ status: 200, body: ok }}, auth: required }}
{redis}
"#,
        floodgate::auth::api_key::hash_key("configured-key")
    )
}

fn start(redis: Option<&Redis>) -> Gateway {
    Gateway::start_admin(&body(redis), &format!("token: \"{ADMIN_TOKEN}\""))
}

/// Instances started at the same moment, as a fleet starts.
fn start_together(redis: &Redis, n: usize) -> Vec<Gateway> {
    let body = body(Some(redis));
    crate::common::start_together(&vec![body.as_str(); n], &format!("token: \"{ADMIN_TOKEN}\""))
}

/// The runtime consumers' version in Redis (0 when unset).
fn consumers_version(redis: &Redis) -> u64 {
    redis_cmd(redis.addr(), &["GET", "{floodgate:consumers}:version"])
        .and_then(|r| r.split("\r\n").nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// An admin call with the token; (status, JSON body or Null).
fn admin(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, Value) {
    admin_call(gw, ADMIN_TOKEN, method, path, body)
}

fn with_key(gw: &Gateway, key: &str) -> u16 {
    get_with(gw.addr, "/api/x", &[("x-api-key", key)]).status
}

/// Creates a key for `consumer`: (key, key id).
fn create(gw: &Gateway, consumer: &str, body: &str) -> (String, String) {
    let (status, created) = admin(gw, "POST", &format!("/admin/consumers/{consumer}/keys"), body);
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("key").to_string();
    (key, created["key_id"].as_str().expect("key_id").to_string())
}

#[test]
fn a_key_made_on_one_instance_works_on_another_within_a_sync_and_a_revocation_stops_it_on_both() {
    let redis = Redis::start();
    let (a, b) = (start(Some(&redis)), start(Some(&redis)));
    let (key, key_id) = create(&a, "alice", r#"{"tier": "gold"}"#);
    assert_eq!(with_key(&a, &key), 200, "at once where it was made");
    let made = Instant::now();
    assert!(eventually(Duration::from_secs(2), || with_key(&b, &key) == 200));
    eprintln!("a new key reached the other instance after {:?}", made.elapsed());
    let (status, listed) = admin(&b, "GET", "/admin/consumers/alice/keys", "");
    assert_eq!(status, 200);
    assert_eq!(listed["keys"][0]["key_id"], key_id.as_str());
    assert_eq!(listed["keys"][0]["tier"], "gold");
    assert!(!listed.to_string().contains(&key), "a list never shows the key");

    let (status, _) = admin(&a, "DELETE", &format!("/admin/consumers/alice/keys/{key_id}"), "");
    assert_eq!(status, 204);
    assert_eq!(with_key(&a, &key), 401, "at once where it was revoked");
    let revoked = Instant::now();
    assert!(eventually(Duration::from_secs(2), || with_key(&b, &key) == 401));
    eprintln!(
        "a revocation reached the other instance after {:?}",
        revoked.elapsed()
    );
    assert_eq!(
        admin(&a, "DELETE", &format!("/admin/consumers/alice/keys/{key_id}"), "").0,
        404
    );
    for gw in [&a, &b] {
        assert!(!gw.log().contains(&key), "a key in a log line");
        assert!(!get(gw.admin, "/metrics").text().contains(&key));
    }
    assert!(a.log().contains("admin: create_key for consumer \"alice\""));
    assert!(get(a.admin, "/metrics")
        .text()
        .contains("floodgate_admin_writes_total{action=\"create_key\"} 1"));
}

#[test]
fn restarts_and_a_flushed_redis_lose_no_key_and_no_override() {
    let mut redis = Redis::start();
    let a = start(Some(&redis));
    let (key, _) = create(&a, "bob", "");
    assert_eq!(
        admin(&a, "PUT", "/admin/consumers/bob/tier", r#"{"tier":"gold"}"#).0,
        200
    );
    drop(a);
    let a = start(Some(&redis));
    assert!(eventually(Duration::from_secs(3), || with_key(&a, &key) == 200));
    assert!(eventually(Duration::from_secs(3), || {
        admin(&a, "GET", "/admin/consumers/bob/tier", "").1["tier"] == "gold"
    }));
    // Redis loses everything: the instance publishes what it holds again.
    assert!(redis_cmd(redis.addr(), &["FLUSHALL"]).is_some_and(|r| r.starts_with("+OK")));
    assert_eq!(with_key(&a, &key), 200);
    assert!(eventually(Duration::from_secs(3), || {
        redis_cmd(redis.addr(), &["HLEN", "{floodgate:consumers}:keys"]).is_some_and(|r| r.starts_with(":1"))
    }));
    // Restarted without persistence: empty again, and republished again.
    redis.kill();
    redis.restart();
    assert_eq!(with_key(&a, &key), 200);
    assert!(eventually(Duration::from_secs(10), || {
        redis_cmd(redis.addr(), &["HLEN", "{floodgate:consumers}:keys"]).is_some_and(|r| r.starts_with(":1"))
    }));
    let b = start(Some(&redis));
    assert!(eventually(Duration::from_secs(3), || with_key(&b, &key) == 200));
    assert!(eventually(Duration::from_secs(3), || {
        admin(&b, "GET", "/admin/consumers/bob", "").1["tier_source"] == "override"
    }));
}

#[test]
fn with_redis_down_keys_keep_working_and_writes_answer_503() {
    let mut redis = Redis::start();
    let a = start(Some(&redis));
    let (key, _) = create(&a, "carol", "");
    redis.kill();
    assert!(eventually(Duration::from_secs(10), || a
        .log()
        .contains("redis sync failing")));
    assert_eq!(with_key(&a, &key), 200);
    let (status, answer) = admin(&a, "POST", "/admin/consumers/carol/keys", "");
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "unavailable");
    assert_eq!(
        admin(&a, "PUT", "/admin/consumers/carol/tier", r#"{"tier":"gold"}"#).0,
        503
    );
    assert_eq!(
        admin(&a, "GET", "/admin/consumers/carol/keys", "").1["keys"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn without_redis_keys_live_on_the_instance_and_expire() {
    let gw = start(None);
    let (key, _) = create(&gw, "dave", r#"{"expires_in_s": 2}"#);
    assert_eq!(with_key(&gw, &key), 200);
    assert_eq!(with_key(&gw, "configured-key"), 200, "config keys work alongside");
    assert!(eventually(Duration::from_secs(5), || with_key(&gw, &key) == 401));
    // A JWT-style subject is a consumer id like any other, percent-encoded in the path.
    let (key, _) = create(&gw, "auth0%7Cabc", "");
    assert_eq!(with_key(&gw, &key), 200);
    let (status, view) = admin(&gw, "GET", "/admin/consumers/auth0%7Cabc", "");
    assert_eq!(status, 200);
    assert_eq!(
        (view["consumer"].as_str(), view["tier_source"].as_str()),
        (Some("auth0|abc"), Some("key"))
    );
    let (status, page) = admin(&gw, "GET", "/admin/consumers?page=1&per_page=2", "");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 3, "{page}");
    assert_eq!(page["consumers"].as_array().map(Vec::len), Some(2));
}

/// The consumers list walked with its cursor, a few at a time, with writes between pages: each
/// consumer once, in order, none missing; a consumer added past the cursor shows up, one added
/// before it does not; the numbered pages still count them all.
#[test]
fn the_consumers_list_walks_every_consumer_once_by_cursor_with_writes_between_pages() {
    let gw = start(None);
    let mut expected: Vec<String> = vec!["configured".into(), "auth0|walk".into()];
    for i in 0..12 {
        expected.push(format!("keyed-{i:02}"));
    }
    for consumer in &expected[1..] {
        create(&gw, &segment(consumer), "");
    }
    create(&gw, "keyed-03", "");
    for i in 0..4 {
        let consumer = format!("tiered-{i}");
        let path = format!("/admin/consumers/{consumer}/tier");
        assert_eq!(admin(&gw, "PUT", &path, r#"{"tier":"gold"}"#).0, 200);
        expected.push(consumer);
    }
    let (mut walked, mut after, mut pages) = (Vec::<String>::new(), None::<String>, 0);
    loop {
        let cursor = after
            .as_deref()
            .map_or(String::new(), |a| format!("&after={}", segment(a)));
        let (status, page) = admin(&gw, "GET", &format!("/admin/consumers?limit=3{cursor}"), "");
        assert_eq!(status, 200, "{page}");
        let listed = page["consumers"].as_array().expect("consumers");
        assert!(listed.len() <= 3, "{page}");
        for entry in listed {
            let consumer = entry["consumer"].as_str().expect("consumer").to_string();
            let keys = match consumer.as_str() {
                "keyed-03" => 2,
                "configured" => 0,
                c if c.starts_with("tiered") => 0,
                _ => 1,
            };
            assert_eq!(entry["runtime_keys"], keys, "{entry}");
            walked.push(consumer);
        }
        pages += 1;
        if pages == 2 {
            // One before the cursor, one after it.
            create(&gw, "aaa-late", "");
            create(&gw, "zzz-late", "");
            expected.push("zzz-late".into());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    expected.sort();
    assert_eq!(walked, expected, "each once, in order");
    let (status, numbered) = admin(&gw, "GET", "/admin/consumers?page=2&per_page=5", "");
    assert_eq!(status, 200, "{numbered}");
    assert_eq!(numbered["total"], expected.len() + 1, "aaa-late too");
    for bad in [
        "limit=0",
        "limit=501",
        "after=",
        "after=%0A",
        "page=1&after=a",
        "per_page=2&limit=2",
    ] {
        let (status, said) = admin(&gw, "GET", &format!("/admin/consumers?{bad}"), "");
        assert_eq!(status, 400, "{bad}: {said}");
    }
}

#[test]
fn bad_input_and_missing_tokens_are_refused_clearly() {
    let gw = start(None);
    let post = |path: &str, token: Option<&str>, body: &str| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        request(gw.admin, "POST", path, &headers, body.as_bytes())
    };
    assert_eq!(post("/admin/consumers/x/keys", None, "").status, 401);
    assert_eq!(
        post("/admin/consumers/x/keys", Some("wrong-token-0123456789"), "").status,
        401
    );
    assert_eq!(
        get(gw.admin, "/admin/consumers").status,
        401,
        "reads that show consumers need it too"
    );
    let cases = [
        (
            "/admin/consumers/x/keys",
            r#"{"tier":"platinum"}"#,
            400,
            "no tier named",
        ),
        ("/admin/consumers/x/keys", "{not json", 400, "body"),
        (
            "/admin/consumers/x/keys",
            r#"{"tier":"gold","extra":1}"#,
            400,
            "unknown field",
        ),
        ("/admin/consumers/bad%01id/keys", "", 400, "control"),
    ];
    for (path, body, status, says) in cases {
        let r = post(path, Some(ADMIN_TOKEN), body);
        assert_eq!(r.status, status, "{path} {body}");
        assert!(r.text().contains(says), "{path} {body}: {}", r.text());
    }
    let long = format!("/admin/consumers/{}/keys", "a".repeat(257));
    assert_eq!(post(&long, Some(ADMIN_TOKEN), "").status, 400);
    let big = "x".repeat(65 * 1024);
    assert_eq!(
        post("/admin/consumers/x/keys", Some(ADMIN_TOKEN), &big).status,
        413
    );
    assert_eq!(admin(&gw, "GET", "/admin/consumers/x/tier", "").0, 404);
    assert_eq!(admin(&gw, "DELETE", "/admin/consumers/x/tier", "").0, 404);
    assert_eq!(admin(&gw, "PATCH", "/admin/consumers/x/keys", "").0, 405);
    assert_eq!(admin(&gw, "GET", "/admin/consumers?per_page=0", "").0, 400);
}

#[test]
fn a_single_instance_keeps_keys_and_overrides_in_its_state_file_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let with_state = format!("{}state_file: \"{}\"\n", body(None), path.display());
    let gw = Gateway::start_admin(&with_state, &format!("token: \"{ADMIN_TOKEN}\""));
    let (key, key_id) = create(&gw, "erin", "");
    let (gone, gone_id) = create(&gw, "erin", "");
    assert_eq!(
        admin(
            &gw,
            "DELETE",
            &format!("/admin/consumers/erin/keys/{gone_id}"),
            ""
        )
        .0,
        204
    );
    assert_eq!(
        admin(&gw, "PUT", "/admin/consumers/erin/tier", r#"{"tier":"gold"}"#).0,
        200
    );
    // Each write is a line of the journal until a compaction folds it into the file.
    let journal = std::fs::read_to_string(dir.path().join("state.json.journal")).expect("journal");
    assert!(
        journal.contains(&key_id) && !journal.contains(&key),
        "digests only: {journal}"
    );
    drop(gw);
    let gw = Gateway::start_admin(&with_state, &format!("token: \"{ADMIN_TOKEN}\""));
    assert_eq!(with_key(&gw, &key), 200);
    assert_eq!(with_key(&gw, &gone), 401, "a revocation is kept too");
    assert_eq!(
        admin(&gw, "GET", "/admin/consumers/erin/tier", "").1["tier"],
        "gold"
    );
    drop(gw);
    // A corrupt file stops the start, naming it; nothing is silently lost.
    std::fs::write(&path, "{\"keys\": [").expect("corrupt");
    let (ok, out) = check_config(&with_state, &[]);
    assert!(!ok);
    assert!(out.contains("state_file") && out.contains("state.json"), "{out}");
    // So does a journal line that is not the torn last one of a crash.
    std::fs::remove_file(&path).expect("snapshot gone");
    let journal = dir.path().join("state.json.journal");
    std::fs::write(&journal, "{\"seq\":1}\n{\"seq\":2,").expect("bad journal");
    let (ok, out) = check_config(&with_state, &[]);
    assert!(!ok);
    assert!(out.contains("state.json.journal line 1"), "{out}");
}

/// A crash between a state-file compaction's write and its rename leaves its temporary file:
/// the next start removes it, and so does every compaction (an old process may have crashed
/// during an upgrade). A live process's temporary file stays: it may be in the middle of one.
#[test]
fn stale_temporary_state_files_are_removed_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    // 4,000,000,000 is above any Linux pid: no such process.
    let stale = dir.path().join("state.json.4000000000.tmp");
    let live = dir.path().join(format!("state.json.{}.tmp", std::process::id()));
    let unrelated = dir.path().join("other.json.4000000000.tmp");
    for file in [&stale, &live, &unrelated] {
        std::fs::write(file, "{\"keys\": [").expect("temporary file");
    }
    let with_state = format!("{}state_file: \"{}\"\n", body(None), path.display());
    let listeners = "listen: [\"127.0.0.1:1\"]\nadmin: { listen: \"127.0.0.1:2\" }\n";
    let (ok, out) = check_config(&format!("{listeners}{with_state}"), &[]);
    assert!(ok, "{out}");
    assert!(stale.exists(), "-t changes nothing");
    let gw = Gateway::start_admin(&with_state, &format!("token: \"{ADMIN_TOKEN}\""));
    assert!(
        !stale.exists(),
        "a dead process's temporary file is gone after start"
    );
    assert!(live.exists() && unrelated.exists());

    let crashed_later = dir.path().join("state.json.journal.4000000001.tmp");
    std::fs::write(&crashed_later, "{").expect("temporary file");
    assert_eq!(
        admin(&gw, "PUT", "/admin/consumers/erin/tier", r#"{"tier":"gold"}"#).0,
        200
    );
    drop(gw);
    let _gw = Gateway::start_admin(&with_state, &format!("token: \"{ADMIN_TOKEN}\""));
    assert!(!crashed_later.exists(), "removed at the next start");
    assert!(live.exists() && unrelated.exists());
}

/// What one writer of `every_answered_write_survives_a_kill_9_mid_stream` saw answered.
#[derive(Default)]
struct Answered {
    /// Keys created and not revoked: (key, key id).
    live: Vec<(String, String)>,
    revoked: Vec<(String, String)>,
    /// The key id of a revocation the kill cut off: there or not.
    unanswered_revocation: Option<String>,
}

/// Creates and revokes keys of `consumer` until the gateway stops answering.
fn write_until_killed(gw: &Gateway, consumer: &str, writes: &AtomicUsize) -> Answered {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let headers = [("authorization", auth.as_str())];
    let mut seen = Answered::default();
    for i in 0.. {
        let revoking = i % 3 == 2 && !seen.live.is_empty();
        if revoking {
            let (key, key_id) = seen.live.remove(seen.live.len() / 2);
            let path = format!("/admin/consumers/{consumer}/keys/{key_id}");
            match try_request(gw.admin, "DELETE", &path, &headers, b"") {
                Ok(r) => {
                    assert_eq!(r.status, 204, "{}", r.text());
                    seen.revoked.push((key, key_id));
                }
                Err(_) => {
                    seen.unanswered_revocation = Some(key_id);
                    return seen;
                }
            }
        } else {
            let path = format!("/admin/consumers/{consumer}/keys");
            match try_request(gw.admin, "POST", &path, &headers, b"") {
                Ok(r) => {
                    assert_eq!(r.status, 201, "{}", r.text());
                    let created = r.json();
                    let field = |name: &str| created[name].as_str().expect(name).to_string();
                    seen.live.push((field("key"), field("key_id")));
                }
                Err(_) => return seen,
            }
        }
        writes.fetch_add(1, Ordering::Relaxed);
    }
    seen
}

/// The state file under a crash: concurrent admin writes (key creations and revocations), the
/// process killed with SIGKILL in the middle of them, past at least one compaction, and
/// started again. Every write answered with a 2xx is there, nothing revoked came back, and the
/// only other change is the one write per writer the kill cut off.
#[test]
fn every_answered_write_survives_a_kill_9_mid_stream() {
    const WRITERS: usize = 6;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let with_state = format!("{}state_file: \"{}\"\n", body(None), path.display());
    let admin_keys = format!("token: \"{ADMIN_TOKEN}\"");
    let gw = Gateway::start_admin(&with_state, &admin_keys);
    let writes = AtomicUsize::new(0);
    let answered: Vec<(String, Answered)> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (gw, writes) = (&gw, &writes);
                s.spawn(move || {
                    let consumer = format!("crash-{w}");
                    let seen = write_until_killed(gw, &consumer, writes);
                    (consumer, seen)
                })
            })
            .collect();
        // Past the first compaction (64 KiB of journal, about 500 writes), then mid-stream.
        let compacted = eventually(Duration::from_secs(120), || {
            path.exists() && writes.load(Ordering::Relaxed) >= 1_500
        });
        signal(gw.pid(), "KILL");
        assert!(compacted, "no compaction after {writes:?} writes: {}", gw.log());
        writers.into_iter().map(|w| w.join().expect("writer")).collect()
    });
    drop(gw);

    let gw = Gateway::start_admin(&with_state, &admin_keys);
    for (consumer, seen) in &answered {
        let (status, listed) = admin(&gw, "GET", &format!("/admin/consumers/{consumer}/keys"), "");
        assert_eq!(status, 200);
        let held: HashSet<&str> = listed["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["key_id"].as_str().expect("key_id"))
            .collect();
        for (key, key_id) in &seen.live {
            assert!(
                held.contains(key_id.as_str()),
                "{consumer}: created key {key_id} lost"
            );
            assert_eq!(with_key(&gw, key), 200, "{consumer}: key {key_id}");
        }
        for (key, key_id) in &seen.revoked {
            assert!(
                !held.contains(key_id.as_str()),
                "{consumer}: revoked key {key_id} back"
            );
            assert_eq!(with_key(&gw, key), 401, "{consumer}: key {key_id}");
        }
        let unexpected: Vec<&&str> = held
            .iter()
            .filter(|id| !seen.live.iter().any(|(_, live)| live == **id))
            .filter(|id| seen.unanswered_revocation.as_deref() != Some(**id))
            .collect();
        assert!(
            unexpected.len() <= 1,
            "{consumer}: more than the one unanswered creation: {unexpected:?}"
        );
    }
    create(&gw, "after-the-crash", "");
}

/// `floodgate consumer …` against a running instance: (success, stdout, stderr).
fn cli(gw: &Gateway, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["consumer", "--admin", &format!("http://{}", gw.admin)])
        .args(args);
    cmd.env_remove("FLOODGATE_ADMIN_TOKEN");
    if let Some(token) = token {
        cmd.env("FLOODGATE_ADMIN_TOKEN", token);
    }
    let out = cmd.output().expect("floodgate consumer");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// `cli` that must succeed: its standard output, or a failure showing what it printed.
fn cli_ok(gw: &Gateway, token: Option<&str>, args: &[&str]) -> String {
    let (ok, out, err) = cli(gw, token, args);
    assert!(ok, "floodgate consumer {args:?} failed: {err}{out}\n{}", gw.log());
    out
}

#[test]
fn the_consumer_cli_drives_the_admin_api() {
    let gw = start(None);
    let token = Some(ADMIN_TOKEN);
    let (ok, out, err) = cli(&gw, token, &["create-key", "auth0|cli", "--tier", "gold"]);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).expect("json");
    let key = created["key"].as_str().expect("key");
    let key_id = created["key_id"].as_str().expect("key_id");
    assert_eq!(with_key(&gw, key), 200);
    let (ok, out, _) = cli(&gw, token, &["keys", "auth0|cli"]);
    assert!(ok && out.contains(key_id) && !out.contains(key), "{out}");
    cli_ok(&gw, token, &["set-tier", "auth0|cli", "free"]);
    assert!(cli_ok(&gw, token, &["show", "auth0|cli"]).contains("\"tier_source\":\"override\""));
    cli_ok(&gw, token, &["clear-tier", "auth0|cli"]);
    assert!(cli_ok(&gw, token, &["list"]).contains("auth0|cli"));
    let after = cli_ok(&gw, token, &["list", "--after", "auth0", "--per-page", "1"]);
    assert!(after.contains("\"next\":\"auth0|cli\""), "{after}");
    cli_ok(&gw, token, &["revoke", "auth0|cli", key_id]);
    assert_eq!(with_key(&gw, key), 401);
    let (ok, _, err) = cli(&gw, token, &["revoke", "auth0|cli", key_id]);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = cli(&gw, Some("wrong-token-0123456789"), &["list"]);
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, _, err) = cli(&gw, None, &["list"]);
    assert!(!ok && err.contains("FLOODGATE_ADMIN_TOKEN is not set"), "{err}");
}

#[test]
fn the_dashboard_shows_a_consumer_in_headless_chromium() {
    let gw = start(None);
    create(&gw, "frank", r#"{"tier": "gold"}"#);
    let dom = rendered_dom(&format!(
        "http://{}/#token={ADMIN_TOKEN}&consumer=frank",
        gw.admin
    ));
    assert!(
        dom.contains("data-consumer=\"shown\""),
        "the consumer was never shown: {dom}"
    );
    assert!(
        dom.contains("<td>frank</td><td>gold</td><td>key</td><td>1</td>"),
        "{dom}"
    );
}

/// Redis restored from an older snapshot: the version goes back and a revoked key's
/// record reappears. The instance revokes it again instead of adopting it.
#[test]
fn a_redis_restored_from_an_older_snapshot_does_not_bring_a_revoked_key_back() {
    let redis = Redis::start();
    let a = start(Some(&redis));
    let (key, key_id) = create(&a, "gina", "");
    let keys = "{floodgate:consumers}:keys";
    let bulk = |reply: Option<String>| {
        reply
            .and_then(|r| r.split("\r\n").nth(1).map(str::to_string))
            .expect("bulk")
    };
    let record = bulk(redis_cmd(redis.addr(), &["HGET", keys, &key_id]));
    let version = bulk(redis_cmd(redis.addr(), &["GET", "{floodgate:consumers}:version"]));
    assert_eq!(
        admin(&a, "DELETE", &format!("/admin/consumers/gina/keys/{key_id}"), "").0,
        204
    );
    redis_cmd(redis.addr(), &["HSET", keys, &key_id, &record]).expect("restore the record");
    redis_cmd(redis.addr(), &["SET", "{floodgate:consumers}:version", &version])
        .expect("restore the version");
    assert!(eventually(Duration::from_secs(3), || {
        redis_cmd(redis.addr(), &["HEXISTS", keys, &key_id]).is_some_and(|r| r.starts_with(":0"))
    }));
    for _ in 0..5 {
        assert_eq!(with_key(&a, &key), 401);
        std::thread::sleep(Duration::from_millis(100)); // across a few syncs, not a wait for a result
    }
}

/// The fleet as it starts: both instances at once on a fresh Redis. A key made on
/// either works on the other, and one revoked through the other instance than the
/// one that made it stays refused on both and gone from Redis.
#[test]
fn a_key_revoked_on_one_instance_stays_revoked_on_both_and_keys_travel_both_ways() {
    let redis = Redis::start();
    let fleet = start_together(&redis, 2);
    let (a, b) = (&fleet[0], &fleet[1]);
    let (from_b, _) = create(b, "hugo", "");
    assert!(
        eventually(Duration::from_secs(2), || with_key(a, &from_b) == 200),
        "a key made on B works on A"
    );
    let (key, key_id) = create(a, "ines", "");
    assert!(eventually(Duration::from_secs(2), || with_key(b, &key) == 200));
    assert_eq!(with_key(a, &key), 200);
    assert_eq!(
        admin(b, "DELETE", &format!("/admin/consumers/ines/keys/{key_id}"), "").0,
        204
    );
    assert!(eventually(Duration::from_secs(2), || with_key(a, &key) == 401));
    // Held over 5 s: 50 sync rounds of both instances.
    let revoked = Instant::now();
    while revoked.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            with_key(a, &key),
            401,
            "revived on A after {:?}",
            revoked.elapsed()
        );
        assert_eq!(
            with_key(b, &key),
            401,
            "revived on B after {:?}",
            revoked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = redis_cmd(redis.addr(), &["HEXISTS", "{floodgate:consumers}:keys", &key_id]);
    assert!(
        held.is_some_and(|r| r.starts_with(":0")),
        "the revoked key is back in Redis"
    );
    assert_eq!(with_key(a, &from_b), 200, "the other key is untouched");
}

/// With nothing written, the consumers' version stays where it is: one idle
/// instance, an idle pair, and the pair again after Redis lost everything (each
/// publishes once, then both settle).
#[test]
fn idle_instances_leave_the_consumers_version_alone_also_after_a_flushall() {
    let redis = Redis::start();
    let still = |what: &str| {
        // Settled once two rounds pass with no write.
        let mut settled = consumers_version(&redis);
        assert!(eventually(Duration::from_secs(3), || {
            std::thread::sleep(Duration::from_millis(250));
            let now = consumers_version(&redis);
            std::mem::replace(&mut settled, now) == now
        }));
        let before = consumers_version(&redis);
        std::thread::sleep(Duration::from_secs(1)); // ten sync rounds
        assert_eq!(
            consumers_version(&redis),
            before,
            "{what}: the version moved while idle"
        );
    };
    let a = start(Some(&redis));
    still("one instance");
    let b = start(Some(&redis));
    still("a pair");
    let (key, _) = create(&a, "jan", "");
    assert!(redis_cmd(redis.addr(), &["FLUSHALL"]).is_some_and(|r| r.starts_with("+OK")));
    still("a pair after FLUSHALL");
    assert!(consumers_version(&redis) > 0, "republished after the flush");
    for gw in [&a, &b] {
        assert!(eventually(Duration::from_secs(2), || with_key(gw, &key) == 200));
    }
}

/// A revocation made after Redis lost its data, while another instance that still
/// holds the key has not repaired yet (frozen here with SIGSTOP): that instance's
/// repair must not bring the key back. The revocation's tombstone holds it off.
#[test]
fn a_revocation_after_a_data_loss_survives_a_late_repair_by_an_instance_that_missed_it() {
    let redis = Redis::start();
    let fleet = start_together(&redis, 2);
    let (a, b) = (&fleet[0], &fleet[1]);
    let (key, key_id) = create(a, "olga", "");
    assert!(eventually(Duration::from_secs(2), || with_key(b, &key) == 200));
    signal(b.pid(), "STOP");
    assert!(redis_cmd(redis.addr(), &["FLUSHALL"]).is_some_and(|r| r.starts_with("+OK")));
    // A repairs (the key is back in Redis), then the key is revoked through A.
    let keys = "{floodgate:consumers}:keys";
    assert!(eventually(Duration::from_secs(3), || {
        redis_cmd(redis.addr(), &["HEXISTS", keys, &key_id]).is_some_and(|r| r.starts_with(":1"))
    }));
    assert_eq!(
        admin(a, "DELETE", &format!("/admin/consumers/olga/keys/{key_id}"), "").0,
        204
    );
    signal(b.pid(), "CONT");
    // B sees a marker it never saw and repairs with what it holds, the key included.
    let thawed = Instant::now();
    while thawed.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            with_key(a, &key),
            401,
            "revived on A after {:?}",
            thawed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(eventually(Duration::from_secs(2), || with_key(b, &key) == 401));
    let held = redis_cmd(redis.addr(), &["HEXISTS", keys, &key_id]);
    assert!(
        held.is_some_and(|r| r.starts_with(":0")),
        "the revoked key is back in Redis"
    );
}
