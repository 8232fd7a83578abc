//! How the Redis deployments beyond one plain server (redis.rs) run: every process is a child
//! on free loopback ports with its own temp dir and log file, is SIGKILLed on drop, and a start
//! that fails panics with its log. The deployments: redis_cluster.rs, redis_sentinel.rs,
//! redis_tls.rs, and here a plain server with an ACL user.

use super::eventually;
use super::ports::{free_port, loopback, on_free_ports};
use super::process::Proc;
use super::redis_cmds;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long one process, or a deployment's handshake (cluster slots, replica sync, sentinel
/// discovery), may take to come up.
pub(super) const START_LIMIT: Duration = Duration::from_secs(20);

/// Spawns `cmd` logging to `log` and waits until `up` holds. Err(its log) if it exited first,
/// which `on_free_ports` retries when a port was taken; a panic with the log if it never came up.
pub(super) fn spawn(
    what: &str,
    mut cmd: Command,
    log: &Path,
    mut up: impl FnMut() -> bool,
) -> Result<Proc, String> {
    let file = File::create(log).expect("log file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{what}: cannot run {:?} ({e}); make test installs it",
                cmd.get_program()
            )
        });
    let mut proc = Proc::from(child);
    let mut exited = false;
    let came_up = eventually(START_LIMIT, || {
        exited = proc.exited().is_some();
        exited || up()
    });
    if exited {
        return Err(std::fs::read_to_string(log).unwrap_or_default());
    }
    if !came_up {
        panic!(
            "{what} did not come up within {START_LIMIT:?}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    Ok(proc)
}

/// `redis-server` on `port` (0: no plain TCP) with nothing persisted, its files in `dir`.
pub(super) fn redis_server(port: u16, dir: &Path) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir);
    cmd
}

/// `--user NAME on >PASS ~* &* +@all --user default off`: one user who may do anything, and no
/// anonymous access. Each word its own argument: redis-server quotes an argument with spaces
/// as one word, so `--user "alice on >pw"` would be a user named "alice on >pw".
pub(super) fn acl_args(cmd: &mut Command, user: &str, pass: &str) {
    cmd.args(["--user", user, "on", &format!(">{pass}"), "~*", "&*", "+@all"])
        .args(["--user", "default", "off"]);
}

/// Whether the redis-server answering `CONFIG GET dir` through `reply` is the one in `dir`
/// (ours, not whatever else may have the port).
pub(super) fn names_dir(reply: &str, dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).expect("redis dir");
    reply.contains(&dir.display().to_string())
}

/// The elements of a flat RESP array of bulk strings (`*2\r\n$9\r\n127.0.0.1\r\n...`); nested
/// arrays come out flattened, nulls and errors as nothing.
pub(super) fn bulk_strings(reply: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut lines = reply.split("\r\n");
    while let Some(line) = lines.next() {
        if line.starts_with('$') && line != "$-1" {
            out.extend(lines.next());
        }
    }
    out
}

/// The element after `key` in a flattened RESP key/value array.
pub(super) fn field<'a>(elems: &[&'a str], key: &str) -> Option<&'a str> {
    elems
        .iter()
        .position(|e| *e == key)
        .and_then(|i| elems.get(i + 1).copied())
}

/// One command after `AUTH user pass` on the same connection: for a server whose default user
/// is off. The command's raw reply; None if unreachable or the AUTH was refused.
pub fn redis_cmd_as(addr: SocketAddr, user: &str, pass: &str, args: &[&str]) -> Option<String> {
    let mut replies = redis_cmds(addr, &[&["AUTH", user, pass], args])?;
    let reply = replies.pop()?;
    replies[0].starts_with("+OK").then_some(reply)
}

/// One data node or sentinel: its port, its process, its temp dir (declared after the process,
/// so the process dies before its files go).
pub(super) struct Node {
    pub(super) port: u16,
    pub(super) proc: Option<Proc>,
    pub(super) dir: tempfile::TempDir,
}

impl Node {
    pub(super) fn new() -> Node {
        Node {
            port: 0,
            proc: None,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub(super) fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    pub(super) fn kill(&mut self) {
        self.proc = None;
    }
}

/// The logs of `nodes`, for a failure message.
pub(super) fn logs(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("--- port {} ---\n{}\n", n.port, n.log_text()))
        .collect()
}

/// A plain-TCP redis-server whose only user is `user`/`pass` (the default user is off).
pub struct PlainAcl {
    pub port: u16,
    /// Before `dir`: the process dies before its files go.
    proc: Option<Proc>,
    dir: tempfile::TempDir,
}

pub fn start_plain_acl(user: &str, pass: &str) -> PlainAcl {
    let mut r = PlainAcl {
        port: 0,
        proc: None,
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let proc = on_free_ports("redis-server (ACL)", || {
        r.port = free_port();
        let dir = r.dir.path();
        let mut cmd = redis_server(r.port, dir);
        acl_args(&mut cmd, user, pass);
        let addr = loopback(r.port);
        spawn("redis-server (ACL)", cmd, &dir.join("redis.log"), || {
            redis_cmd_as(addr, user, pass, &["CONFIG", "GET", "dir"]).is_some_and(|r| names_dir(&r, dir))
        })
    });
    r.proc = Some(proc);
    r
}

impl PlainAcl {
    /// "redis://user:pass@127.0.0.1:P/0".
    pub fn url(&self, user: &str, pass: &str) -> String {
        format!("redis://{user}:{pass}@127.0.0.1:{}/0", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }
}
