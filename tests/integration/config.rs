//! `floodgate -t`: every shipped config passes; broken ones fail, naming the key.

use crate::common::*;

const BASE: &str = r#"
version: 1
listen: ["127.0.0.1:18080"]
admin: { listen: "127.0.0.1:19091" }
upstreams:
  backend: { targets: ["127.0.0.1:18000"] }
routes:
  - { name: api, path_prefix: /api/, upstream: backend }
"#;

#[test]
fn every_shipped_config_passes() {
    let mut seen = 0;
    for entry in std::fs::read_dir("conf").expect("conf/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).expect("read");
            let (ok, out) = check_config(&text, &[]);
            assert!(ok, "{} fails -t: {out}", path.display());
            seen += 1;
        }
    }
    assert!(seen > 0, "no config in conf/");
}

#[test]
fn the_base_config_passes_and_variables_are_interpolated() {
    assert!(check_config(BASE, &[]).0);
    let with_var = BASE.replace("127.0.0.1:18000", "${FG_TEST_TARGET}");
    let (ok, out) = check_config(&with_var, &[("FG_TEST_TARGET", "127.0.0.1:18001")]);
    assert!(ok, "{out}");
}

fn assert_rejected(text: &str, expected: &[&str]) {
    let (ok, out) = check_config(text, &[]);
    assert!(!ok, "accepted a broken config:\n{text}");
    for e in expected {
        assert!(out.contains(e), "message should contain {e:?}, got:\n{out}");
    }
}

#[test]
fn broken_configs_fail_naming_the_key() {
    assert_rejected(&format!("{BASE}colour: blue\n"), &["colour: unknown key"]);
    assert_rejected(
        &format!("{BASE}daemon_wait_for_ready: true\n"),
        &["daemon_wait_for_ready: not supported"],
    );
    assert_rejected(
        &BASE.replace("upstream: backend }", "upstream: backend, strip_prefx: true }"),
        &["routes[0]", "strip_prefx"],
    );
    assert_rejected(
        &BASE.replace("upstream: backend }", "upstream: billing }"),
        &["routes[0].upstream: no upstream named \"billing\""],
    );
    assert_rejected(
        &BASE.replace("127.0.0.1:18080", "localhost-ish"),
        &["listen[0]", "localhost-ish"],
    );
    assert_rejected(
        &BASE.replace("127.0.0.1:18000", "127.0.0.1"),
        &["upstreams.backend.targets[0]", "port"],
    );
    assert_rejected(
        &BASE.replace("127.0.0.1:18000", "no such host:80"),
        &[
            "upstreams.backend.targets[0]",
            "neither an IP address nor a DNS name",
        ],
    );
    assert_rejected(
        &BASE.replace("127.0.0.1:18000", "${FLOODGATE_TEST_UNSET}"),
        &["upstreams.backend.targets[0]", "FLOODGATE_TEST_UNSET is not set"],
    );
    assert_rejected(
        &format!("{BASE}  - {{ name: api, path_prefix: /other/, upstream: backend }}\n"),
        &["routes[1].name: duplicate route name \"api\""],
    );
    assert_rejected("listen: [\n", &["not valid YAML"]);
    assert_rejected(
        &BASE.replace("path_prefix: /api/", "path_prefix: api"),
        &["routes[0].path_prefix"],
    );
    assert_rejected(
        &BASE.replace("upstream: backend }", "respond: { status: 999 } }"),
        &["routes[0]"],
    );
}

#[test]
fn a_bad_peer_region_is_named_by_its_key() {
    let region = |peers: &str| {
        format!("{BASE}redis:\n  url: redis://127.0.0.1:6379\n  region:\n    name: ny\n    peers:\n{peers}")
    };
    let good = region("      sg: redis://127.0.0.1:6380\n      fra: { url: \"rediss://127.0.0.1:6381\" }\n");
    let (ok, out) = check_config(&good, &[]);
    assert!(ok, "{out}");
    assert_rejected(
        &region("      sg: redis://127.0.0.1:6380\n      fra: { url: \"http://fra:6380\" }\n"),
        &["redis.region.peers.fra.url: must be a redis://, rediss:// or unix:// URL"],
    );
    assert_rejected(
        &region("      fra: { url: \"rediss://fra:6380\", tls: { ca_file: /nonexistent/fra-ca.pem } }\n"),
        &["redis.region.peers.fra.tls.ca_file: /nonexistent/fra-ca.pem: "],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = BASE
        .replace("upstream: backend }", "upstream: billing }")
        .replace("127.0.0.1:18080", "nowhere")
        .replace("version: 1", "version: 1\ntypo_key: 1");
    let (ok, out) = check_config(&text, &[]);
    assert!(!ok);
    for e in ["routes[0].upstream", "listen[0]", "typo_key"] {
        assert!(out.contains(e), "missing {e} in:\n{out}");
    }
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let out = std::process::Command::new(BIN)
        .args(["-t", "-c", "/nonexistent/floodgate.yaml"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/floodgate.yaml"));
}

#[test]
fn an_invalid_config_stops_the_server_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, BASE.replace("upstream: backend }", "upstream: billing }")).expect("write");
    let out = std::process::Command::new(BIN)
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no upstream named"));
}
