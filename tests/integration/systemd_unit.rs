//! The unit file systemd/floodgate.service run as written: its config agrees with it, and its
//! start/reload recipe hands over between daemonized processes without a failed request.

use crate::common::*;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The paths, and the stop timeout, of the unit agree with conf/systemd.yaml, and that config
/// passes -t.
#[test]
fn the_systemd_unit_and_its_config_agree() {
    let conf: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string("conf/systemd.yaml").expect("conf/systemd.yaml"))
            .expect("YAML");
    let pid_file = conf["pid_file"].as_str().expect("pid_file");
    let sock = conf["upgrade_sock"].as_str().expect("upgrade_sock");
    assert_eq!(unit_values("PIDFile"), vec![pid_file.to_string()]);
    let reload = unit_values("ExecReload").join("\n");
    assert!(reload.contains(sock), "ExecReload does not wait on {sock}");
    assert!(reload.contains(pid_file), "ExecReload does not read {pid_file}");
    let runtime_dir = unit_values("RuntimeDirectory");
    assert_eq!(runtime_dir.len(), 1);
    for path in [pid_file, sock] {
        assert!(
            path.starts_with(&format!("/run/{}/", runtime_dir[0])),
            "{path} is outside RuntimeDirectory"
        );
    }
    let seconds = |key: &str| conf[key].as_u64().unwrap_or_else(|| panic!("{key}"));
    let drain = CLOSE_TIMEOUT.as_secs()
        + seconds("grace_period_seconds")
        + seconds("graceful_shutdown_timeout_seconds");
    let stop: u64 = unit_values("TimeoutStopSec")[0]
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop > drain,
        "TimeoutStopSec={stop} does not cover a drain of {drain} s"
    );
    let out = Command::new(BIN)
        .args(["-t", "-c", "conf/systemd.yaml"])
        .output()
        .expect("run -t");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// ExecStartPre/ExecStart and ExecReload of systemd/floodgate.service, run as written (paths
/// moved to a temp dir) on daemonized processes, under load: each reload hands over with no
/// failed request and leaves PIDFile naming the new daemon; a reload with a broken config fails
/// at `-t` and changes nothing; SIGTERM (systemctl stop) ends the service.
#[test]
fn the_systemd_reload_recipe_hands_over_without_failures() {
    let upstream = Upstream::start("app");
    let mut setup = Setup::proxying(upstream.addr, 1, 1);
    let mut daemons = Daemons::default();
    start_unit(&mut setup);
    // Like systemd with Type=forking: the main PID is what PIDFile names once the starter exited.
    assert!(
        eventually(Duration::from_secs(10), || setup.pid_from_file().is_some()),
        "no PID file: {}",
        setup.log()
    );
    let mut main_pid = setup.pid_from_file().expect("main pid");
    daemons.0.push(main_pid);
    assert!(eventually(Duration::from_secs(30), || try_get(
        setup.admin,
        "/ready"
    )
    .is_ok_and(|r| r.status == 200)));

    let load = Load::start(setup.addr, setup.admin, 1, 1);
    assert!(eventually(Duration::from_secs(10), || load.ok() > 20));
    for i in 1..=3 {
        load.c.phase.store(i, Ordering::SeqCst);
        let ok_before = load.ok();
        run_unit("ExecReload", &setup, Some(main_pid))
            .unwrap_or_else(|e| panic!("reload {i}: {e}\n{}", setup.log()));
        // The recipe returns only once PIDFile names the new daemon.
        let new_pid = setup
            .pid_from_file()
            .expect("PIDFile names a live process after reload");
        daemons.0.push(new_pid);
        assert_ne!(new_pid, main_pid, "reload {i} left the old PID in PIDFile");
        let drained = CLOSE_TIMEOUT + Duration::from_secs(setup.opts.grace + setup.opts.drain + 15);
        assert!(
            eventually(drained, || !alive(main_pid)),
            "reload {i}: the old process {main_pid} is still running"
        );
        assert!(load.ok() > ok_before + 20, "reload {i}: the load stalled");
        main_pid = new_pid;
    }

    // A broken config: the reload fails at its first line and the service runs on untouched.
    let good = std::fs::read_to_string(&setup.conf).expect("config");
    std::fs::write(&setup.conf, good.replace("upstream: app", "upstream: nope")).expect("break config");
    let failed = run_unit("ExecReload", &setup, Some(main_pid));
    assert!(failed.as_ref().is_err_and(|e| e.contains(" -t ")), "{failed:?}");
    assert!(!setup.sock.exists());
    assert_eq!(setup.pid_from_file(), Some(main_pid));
    assert!(alive(main_pid));
    let ok_before = load.ok();
    assert!(eventually(Duration::from_secs(10), || load.ok() > ok_before + 20));
    std::fs::write(&setup.conf, good).expect("restore config");

    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed of {}:\n{}\n{}",
        failures.len(),
        ok + failures.len(),
        failures[..failures.len().min(10)].join("\n"),
        setup.log()
    );
    // systemctl stop: SIGTERM to the main PID.
    signal(main_pid, "TERM");
    assert!(
        eventually(
            Duration::from_secs(setup.opts.grace + setup.opts.drain + 5),
            || !alive(main_pid)
        ),
        "still running after SIGTERM"
    );
}
