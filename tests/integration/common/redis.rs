//! A real `redis-server` child, and one-off commands to it over RESP.

use super::eventually;
use super::ports::{free_port, on_free_ports, on_the_same_port};
use super::process::{signal, Proc};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A real `redis-server` on a free loopback port, which tests can kill, restart on
/// the same port, freeze (SIGSTOP) and thaw.
pub struct Redis {
    pub port: u16,
    child: Option<Proc>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: 0,
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let child = on_free_ports("redis-server", || {
            r.port = free_port();
            r.spawn()
        });
        r.child = Some(child);
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Back on the same port, empty (the gateway under test is configured with it).
    pub fn restart(&mut self) {
        let child = on_the_same_port("redis-server", || self.spawn());
        self.child = Some(child);
    }

    /// Starts redis-server on `self.port` and waits until it answers; Err(its output) if it
    /// exited first.
    fn spawn(&self) -> Result<Proc, String> {
        let log_path = self.dir.path().join("redis.log");
        let log = std::fs::File::create(&log_path).expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // DEBUG SLEEP, for tests of a Redis that stalls; from loopback only.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("redis-server must be installed (make test installs it)");
        let mut child = Proc::from(child);
        // Ours, not any server on this port: CONFIG GET dir names our temp dir.
        let dir = std::fs::canonicalize(self.dir.path()).expect("redis dir");
        let dir = format!("{}\r\n", dir.display());
        let mut exited = false;
        let up = eventually(Duration::from_secs(10), || {
            exited = child.exited().is_some();
            exited || redis_cmd(self.addr(), &["CONFIG", "GET", "dir"]).is_some_and(|r| r.contains(&dir))
        });
        if exited {
            return Err(std::fs::read_to_string(&log_path).unwrap_or_default());
        }
        if !up {
            drop(child);
            panic!("redis-server did not start on port {}", self.port);
        }
        Ok(child)
    }

    /// SIGKILL: the outage a crash causes.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// SIGSTOP: connections stay open but nothing answers.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            signal(c.pid(), "STOP");
        }
    }

    pub fn thaw(&self) {
        if let Some(c) = &self.child {
            signal(c.pid(), "CONT");
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
    }
}

/// One command over RESP; the reply's raw text, or None if Redis is unreachable.
pub fn redis_cmd(addr: SocketAddr, args: &[&str]) -> Option<String> {
    redis_cmds(addr, &[args])?.pop()
}

/// Commands one after another on one connection; their raw replies, or None if Redis is
/// unreachable.
pub fn redis_cmds(addr: SocketAddr, commands: &[&[&str]]) -> Option<Vec<String>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut replies = Vec::with_capacity(commands.len());
    for args in commands {
        let mut cmd = format!("*{}\r\n", args.len());
        for a in *args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(cmd.as_bytes()).ok()?;
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).ok()?;
        replies.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    Some(replies)
}

/// Many commands written in one stream with replies turned off (`CLIENT REPLY OFF`),
/// as `redis-cli --pipe` does: for filling Redis fast. Returns once Redis ran them all;
/// check what they wrote afterwards, errors are not seen.
pub fn redis_pipeline(addr: SocketAddr, commands: impl IntoIterator<Item = Vec<String>>) {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).expect("redis");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &s);
    let mut write = |args: &[&str]| {
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        out.write_all(cmd.as_bytes()).expect("write to redis");
    };
    write(&["CLIENT", "REPLY", "OFF"]);
    for args in commands {
        write(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    write(&["CLIENT", "REPLY", "ON"]);
    out.flush().expect("flush to redis");
    drop(out);
    let mut reply = [0u8; 5];
    (&s).read_exact(&mut reply).expect("redis ran the pipeline");
    assert_eq!(&reply, b"+OK\r\n");
}
