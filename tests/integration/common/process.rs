//! Gateway processes: one gateway's files in a temp dir (config, pid file, upgrade socket,
//! logs) with its two loopback addresses, the `floodgate` children started on them, and what
//! operators and systemd do to processes (signals, pid files, daemons). Every gateway a test
//! starts goes through `Setup::start`; `Gateway` (gateway.rs) wraps it for everyday use.

use super::ports::{free_port, on_free_ports};
use super::{eventually, try_get};
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_floodgate");

/// Pingora's fixed pause between handing the sockets over and closing them in the old process.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the harness writes around a test's config body, and how it runs the process.
pub struct Options {
    pub threads: usize,
    /// `grace_period_seconds`.
    pub grace: u64,
    /// `graceful_shutdown_timeout_seconds`.
    pub drain: u64,
    /// More keys for the `admin` section, e.g. `token: "..."`.
    pub admin_keys: String,
    /// An `access_log` in the temp dir (see `Setup::access_log`), away from the process log.
    pub own_access_log: bool,
    pub rust_log: String,
    /// More `listen` entries after the harness's own, each a YAML flow value.
    pub more_listen: Vec<String>,
}

impl Default for Options {
    /// One worker thread and a quick stop: what a test of one feature needs.
    fn default() -> Self {
        Options {
            threads: 1,
            grace: 0,
            drain: 1,
            admin_keys: String::new(),
            own_access_log: false,
            rust_log: "info".into(),
            more_listen: Vec::new(),
        }
    }
}

/// One gateway's files, in a temp dir: config, pid file, upgrade socket, log.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub sock: PathBuf,
    pub pid_file: PathBuf,
    pub log: PathBuf,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub opts: Options,
    body: String,
}

impl Setup {
    /// The files of a gateway running `body` (the gateway's keys: upstreams, routes, ...), with
    /// Pingora's keys, the listeners and the admin section filled in, on ports picked now.
    pub fn new(body: &str, opts: Options) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let unset = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut s = Setup {
            conf: dir.path().join("floodgate.yaml"),
            sock: dir.path().join("upgrade.sock"),
            pid_file: dir.path().join("floodgate.pid"),
            log: dir.path().join("floodgate.log"),
            addr: unset,
            admin: unset,
            dir,
            opts,
            body: body.into(),
        };
        s.pick_ports();
        s
    }

    /// A gateway proxying everything to `upstream`, run as the lifecycle tests run it: two
    /// worker threads, the given drain timings, the access log in a file of its own.
    pub fn proxying(upstream: SocketAddr, grace: u64, drain: u64) -> Setup {
        let body = format!(
            "upstreams:\n  app: {{ targets: [\"{upstream}\"] }}\nroutes:\n  - {{ name: all, path_prefix: /, upstream: app }}\n"
        );
        let opts = Options {
            threads: 2,
            grace,
            drain,
            own_access_log: true,
            ..Options::default()
        };
        Setup::new(&body, opts)
    }

    /// New free ports for both listeners, and the config written with them.
    pub(super) fn pick_ports(&mut self) {
        self.addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        self.admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let o = &self.opts;
        let admin_keys = if o.admin_keys.is_empty() {
            String::new()
        } else {
            format!(", {}", o.admin_keys)
        };
        let access_log = if o.own_access_log {
            // Its own file: the process log, printed on failures, stays readable.
            format!("access_log: {}\n", self.access_log().display())
        } else {
            String::new()
        };
        let text = format!(
            "version: 1\nthreads: {}\npid_file: {}\nupgrade_sock: {}\ngrace_period_seconds: {}\n\
             graceful_shutdown_timeout_seconds: {}\nlisten: [\"{}\"{}]\nadmin: {{ listen: \"{}\"{admin_keys} }}\n\
             {access_log}{}",
            o.threads,
            self.pid_file.display(),
            self.sock.display(),
            o.grace,
            o.drain,
            self.addr,
            o.more_listen.iter().map(|l| format!(", {l}")).collect::<String>(),
            self.admin,
            self.body,
        );
        std::fs::write(&self.conf, text).expect("write config");
    }

    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// The log file, for appending a process's output to.
    pub fn log_file(&self) -> std::fs::File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the log ends now: what a process started next prints comes after it.
    pub(super) fn log_end(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// The log from `from` (a `log_end`) on.
    pub(super) fn log_since(&self, from: u64) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default()).into_owned()
    }

    /// `floodgate <args> -c CONF` in the foreground, its output appended to the log.
    pub fn spawn(&self, args: &[&str]) -> Proc {
        let child = Command::new(BIN)
            .args(args)
            .arg("-c")
            .arg(&self.conf)
            .env("RUST_LOG", &self.opts.rust_log)
            .stdin(Stdio::null())
            .stdout(self.log_file())
            .stderr(self.log_file())
            .spawn()
            .expect("spawn floodgate");
        Proc(child)
    }

    /// `floodgate -c CONF`, ready (its `/ready` answers 200) when this returns. If it failed
    /// because another process took one of its ports first, it is started again on fresh ones.
    pub fn start(&mut self) -> Proc {
        self.start_until("/ready")
    }

    /// As `start`, returning as soon as the admin listener answers `/health` (the process runs,
    /// maybe not ready yet): for what a gateway does before it is ready.
    pub fn start_alive(&mut self) -> Proc {
        self.start_until("/health")
    }

    fn start_until(&mut self, admin_path: &str) -> Proc {
        let mut first = true;
        on_free_ports("floodgate", || {
            if !std::mem::take(&mut first) {
                self.pick_ports();
            }
            let from = self.log_end();
            let mut proc = self.spawn(&[]);
            self.wait_for(&mut proc, admin_path)
                .map(|()| proc)
                .map_err(|()| self.log_since(from))
        })
    }

    /// Waits for `admin_path` to answer 200 on the admin listener; Err if the process exited first.
    fn wait_for(&self, proc: &mut Proc, admin_path: &str) -> Result<(), ()> {
        let up = eventually(Duration::from_secs(30), || {
            proc.exited().is_some() || try_get(self.admin, admin_path).is_ok_and(|r| r.status == 200)
        });
        if proc.exited().is_some() {
            return Err(());
        }
        assert!(up, "floodgate: no 200 on {admin_path}: {}", self.log());
        Ok(())
    }

    /// The `-u` process is waiting for the sockets once it has bound the upgrade socket.
    pub fn wait_for_upgrade_socket(&self, next: &mut Proc) {
        let bound = eventually(Duration::from_secs(20), || {
            self.sock.exists() || next.exited().is_some()
        });
        assert!(
            bound && next.exited().is_none(),
            "the -u process never waited on {}: {:?}\n{}",
            self.sock.display(),
            next.exited(),
            self.log()
        );
    }

    /// The live process the pid file names, if any.
    pub fn pid_from_file(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }
}

/// A child process the tests started (floodgate, redis-server, python3), killed if still
/// running when dropped.
pub struct Proc(Child);

impl From<Child> for Proc {
    fn from(child: Child) -> Proc {
        Proc(child)
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().expect("try_wait")
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        eventually(limit, || self.exited().is_some());
        self.exited()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Daemonized processes are nobody's children here: remembered, and killed at the end.
#[derive(Default)]
pub struct Daemons(pub Vec<u32>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

/// Sends a signal the way an operator or systemd does.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Running, and not a zombie (a daemon's exit is reaped by whoever adopted it, maybe never).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}
