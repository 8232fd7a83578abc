//! A Redis master, a replica in sync with it, and one sentinel watching them.

use super::eventually;
use super::ports::{free_port, loopback, on_free_ports};
use super::redis_cmd;
use super::redis_modes::{bulk_strings, field, logs, names_dir, redis_server, spawn, Node, START_LIMIT};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// The name the sentinel monitors its master under.
const MASTER_NAME: &str = "mymaster";

/// `INFO replication` of the server on `port`, or "" if it does not answer.
fn replication(port: u16) -> String {
    redis_cmd(loopback(port), &["INFO", "replication"]).unwrap_or_default()
}

/// A master, one replica in sync with it, and one sentinel (quorum 1) that monitors the master
/// as "mymaster" and already knows the replica, so killing the master fails over to the replica
/// in about two seconds (`down-after-milliseconds` 1000).
pub struct RedisSentinel {
    pub sentinel_port: u16,
    master_port: u16,
    /// The master and the replica, in that (start) order; roles swap on failover.
    data: Vec<Node>,
    sentinel: Node,
}

impl RedisSentinel {
    pub fn start() -> RedisSentinel {
        let master = data_node(None);
        let replica = data_node(Some(master.port));
        let (m, r) = (master.port, replica.port);
        let synced = eventually(START_LIMIT, || {
            replication(m).contains("connected_slaves:1") && replication(r).contains("master_link_status:up")
        });
        assert!(
            synced,
            "the replica never synced:\n{}",
            logs(&[&master, &replica])
        );
        // Only now: the sentinel learns of replicas from the master's INFO, which it asks for
        // on connecting and then only every 10 s.
        let sentinel = sentinel_node(m);
        let addr = loopback(sentinel.port);
        let knows_all = eventually(START_LIMIT, || {
            let reply = redis_cmd(addr, &["SENTINEL", "REPLICAS", MASTER_NAME]).unwrap_or_default();
            let elems = bulk_strings(&reply);
            sentinel_master(addr) == Some(m)
                && field(&elems, "port") == Some(r.to_string().as_str())
                && field(&elems, "flags") == Some("slave")
        });
        assert!(
            knows_all,
            "the sentinel never saw master {m} with replica {r}:\n{}",
            logs(&[&master, &replica, &sentinel])
        );
        RedisSentinel {
            sentinel_port: sentinel.port,
            master_port: m,
            data: vec![master, replica],
            sentinel,
        }
    }

    /// "redis://127.0.0.1:<sentinel port>": where a sentinel-aware client asks for the master.
    pub fn sentinel_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.sentinel_port)
    }

    pub fn sentinel_addr(&self) -> SocketAddr {
        loopback(self.sentinel_port)
    }

    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// SIGKILL the current master.
    pub fn kill_master(&mut self) {
        let port = self.master_port;
        if let Some(node) = self.data.iter_mut().find(|n| n.port == port) {
            node.kill();
        }
    }

    /// Waits until the sentinel names another master (the old replica, promoted and answering
    /// as master) and returns its port, which is `master_port` from then on.
    pub fn wait_failover(&mut self, limit: Duration) -> u16 {
        let (old, addr) = (self.master_port, self.sentinel_addr());
        let mut new = None;
        let failed_over = eventually(limit, || {
            new = sentinel_master(addr).filter(|p| *p != old);
            new.is_some_and(|p| replication(p).contains("role:master"))
        });
        let all: Vec<&Node> = self.data.iter().chain([&self.sentinel]).collect();
        assert!(
            failed_over,
            "no failover from {old} within {limit:?}:\n{}",
            logs(&all)
        );
        self.master_port = new.expect("new master");
        self.master_port
    }
}

/// The master port `SENTINEL get-master-addr-by-name` reports, if the sentinel answers.
fn sentinel_master(sentinel: SocketAddr) -> Option<u16> {
    let reply = redis_cmd(sentinel, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME])?;
    bulk_strings(&reply).get(1)?.parse().ok()
}

/// A plain data node; a replica of `master` if given.
fn data_node(master: Option<u16>) -> Node {
    let mut node = Node::new();
    let what = if master.is_some() {
        "redis-server (replica)"
    } else {
        "redis-server (master)"
    };
    let proc = on_free_ports(what, || {
        node.port = free_port();
        let dir = node.dir.path();
        let mut cmd = redis_server(node.port, dir);
        // Diskless sync waits 5 s for more replicas by default before it starts.
        cmd.args(["--repl-diskless-sync-delay", "0"]);
        if let Some(m) = master {
            cmd.args(["--replicaof", "127.0.0.1", &m.to_string()]);
        }
        let addr = loopback(node.port);
        spawn(what, cmd, &node.log(), || {
            redis_cmd(addr, &["CONFIG", "GET", "dir"]).is_some_and(|r| names_dir(&r, dir))
        })
    });
    node.proc = Some(proc);
    node
}

/// A sentinel monitoring the master on `master` with quorum 1. Its config file is written
/// fresh on each try: the sentinel rewrites it (its id, epochs, known replicas).
fn sentinel_node(master: u16) -> Node {
    let mut node = Node::new();
    let proc = on_free_ports("redis sentinel", || {
        node.port = free_port();
        let dir = std::fs::canonicalize(node.dir.path()).expect("sentinel dir");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir \"{dir}\"\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n",
                port = node.port,
                dir = dir.display()
            ),
        )
        .expect("sentinel.conf");
        // redis-sentinel is only a link to redis-server, and not always installed.
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf).arg("--sentinel");
        let addr = loopback(node.port);
        let conf_line = format!("config_file:{}\r\n", conf.display());
        spawn("redis sentinel", cmd, &node.log(), || {
            redis_cmd(addr, &["INFO", "server"]).is_some_and(|r| r.contains(&conf_line))
        })
    });
    node.proc = Some(proc);
    node
}
