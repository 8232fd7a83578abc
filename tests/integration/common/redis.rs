//! A real `redis-server` child, and one-off commands to it over RESP.

use super::eventually;
use super::ports::free_port;
use super::process::signal;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A real `redis-server` on a free loopback port, which tests can kill, restart on
/// the same port, freeze (SIGSTOP) and thaw.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (make test installs it)");
        self.child = Some(child);
        let up = eventually(Duration::from_secs(10), || {
            redis_cmd(self.addr(), &["PING"]).is_some_and(|r| r.contains("PONG"))
        });
        assert!(up, "redis-server did not start on port {}", self.port);
    }

    /// SIGKILL: the outage a crash causes.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: connections stay open but nothing answers.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), "STOP");
        }
    }

    pub fn thaw(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), "CONT");
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
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).ok()?;
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
