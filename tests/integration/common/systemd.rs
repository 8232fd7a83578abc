//! systemd/floodgate.service as systemd runs it: its `key=` lines read as systemd reads them,
//! and its commands run as written, with the paths moved to a test's `Setup`.

use super::ports::on_free_ports;
use super::process::{Setup, BIN};
use std::process::{Command, Stdio};

pub const UNIT: &str = "systemd/floodgate.service";

/// The values of `key=` in the unit file, continuation lines joined as systemd does.
pub fn unit_values(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(UNIT).expect("unit file");
    let (mut lines, mut current) = (Vec::new(), String::new());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.starts_with(';')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    let prefix = format!("{key}=");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// A unit command line made to run here: the setup's binary, config and runtime dir, systemd's
/// `$$` unescaped, `/bin/sh -c '...'` split off.
fn runnable(cmd: &str, setup: &Setup) -> Vec<String> {
    let dir = format!("{}/", setup.dir.path().display());
    let cmd = cmd
        .replace("/usr/local/bin/floodgate", BIN)
        .replace("/etc/floodgate/floodgate.yaml", &setup.conf.display().to_string())
        .replace("/run/floodgate/upgrade.sock", &setup.sock.display().to_string())
        .replace(
            "/run/floodgate/floodgate.pid",
            &setup.pid_file.display().to_string(),
        )
        .replace("/run/floodgate/", &dir)
        .replace("$$", "$");
    match cmd
        .strip_prefix("/bin/sh -c '")
        .and_then(|c| c.trim_end().strip_suffix('\''))
    {
        Some(script) => vec!["/bin/sh".into(), "-c".into(), script.into()],
        None => cmd.split_whitespace().map(str::to_owned).collect(),
    }
}

/// Runs every `key=` line of the unit in order, as systemd does: stop at the first failure.
pub fn run_unit(key: &str, setup: &Setup, main_pid: Option<u32>) -> Result<(), String> {
    let lines = unit_values(key);
    assert!(!lines.is_empty(), "no {key}= in {UNIT}");
    for line in lines {
        let argv = runnable(&line, setup);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(setup.log_file())
            .stderr(setup.log_file());
        if let Some(pid) = main_pid {
            cmd.env("MAINPID", pid.to_string());
        }
        let status = cmd.status().expect("run unit command");
        if !status.success() {
            return Err(format!("{key}={line}\nexited with {status}"));
        }
    }
    Ok(())
}

/// ExecStartPre and ExecStart, as systemd runs them when the service starts. If ExecStart
/// failed because another process took one of the setup's ports first, the setup gets fresh
/// ones and the service is started again.
pub fn start_unit(setup: &mut Setup) {
    let mut first = true;
    on_free_ports("the unit's ExecStart", || {
        if !std::mem::take(&mut first) {
            setup.pick_ports();
        }
        run_unit("ExecStartPre", setup, None).expect("ExecStartPre");
        let from = setup.log_end();
        run_unit("ExecStart", setup, None).map_err(|e| format!("{e}\n{}", setup.log_since(from)))
    });
}
