//! The admin listener: liveness, readiness, and start-up failures that must be loud.

use crate::common::*;
use std::net::TcpListener;
use std::process::Command;

const ROUTES: &str =
    "upstreams:\n  demo: { kind: echo }\nroutes:\n  - { name: all, path_prefix: /, upstream: demo }\n";

#[test]
fn health_and_ready() {
    let gw = Gateway::start(ROUTES);
    let health = get(gw.admin, "/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    // Ready means the proxy listener really accepts: prove it right after.
    assert_eq!(get(gw.admin, "/ready").status, 200);
    assert_eq!(get(gw.addr, "/anything").status, 200);
    assert_eq!(get(gw.admin, "/nope").status, 404);
    assert_eq!(request(gw.admin, "POST", "/health", &[], b"x").status, 405);
}

#[test]
fn a_taken_proxy_port_fails_start_up_at_once_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    // Never bound: start-up checks the proxy listeners first and stops at the taken one.
    let admin_port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("c.yaml");
    std::fs::write(
        &conf,
        format!(
            "version: 1\nthreads: 1\npid_file: {d}/p.pid\nupgrade_sock: {d}/u.sock\nlisten: [\"127.0.0.1:{port}\"]\nadmin: {{ listen: \"127.0.0.1:{admin_port}\" }}\n{ROUTES}",
            d = dir.path().display()
        ),
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("run floodgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "floodgate started without its listener");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    drop(taken);
}
