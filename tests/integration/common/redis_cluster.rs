//! Three Redis Cluster masters (no replicas) on free loopback ports.

use super::eventually;
use super::ports::{free_port, loopback, on_free_ports};
use super::redis_cmd;
use super::redis_modes::{logs, names_dir, redis_server, spawn, Node, START_LIMIT};
use std::process::{Command, Stdio};

/// Three cluster masters (no replicas) on free loopback ports, all 16384 slots assigned and
/// `cluster_state:ok` on every node: keys spread over three processes, MOVED redirects included.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    /// Held for their drop, which kills them.
    _nodes: Vec<Node>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<Node> = (0..3).map(|_| cluster_node()).collect();
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli must be installed (make test installs it)");
        let all: Vec<&Node> = nodes.iter().collect();
        if !out.status.success() {
            panic!(
                "redis-cli --cluster create failed:\n{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                logs(&all)
            );
        }
        // `--cluster create` returns once the slots are assigned; the nodes still gossip
        // before each one considers the cluster whole.
        let ok = eventually(START_LIMIT, || {
            ports.iter().all(|p| {
                redis_cmd(loopback(*p), &["CLUSTER", "INFO"]).is_some_and(|r| r.contains("cluster_state:ok"))
            })
        });
        assert!(ok, "cluster never reached cluster_state:ok:\n{}", logs(&all));
        RedisCluster { ports, _nodes: nodes }
    }

    /// One URL per node ("redis://127.0.0.1:P"), the seed list a cluster client takes.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// How many keys matching `pattern` each node holds (in `ports` order): a test asserts
    /// its keys landed on more than one node.
    pub fn keys_on_each_node(&self, pattern: &str) -> Vec<usize> {
        self.ports
            .iter()
            .map(|p| {
                let reply = redis_cmd(loopback(*p), &["KEYS", pattern])
                    .unwrap_or_else(|| panic!("cluster node {p} did not answer KEYS"));
                // Only the array header is needed: `*N\r\n`.
                reply
                    .strip_prefix('*')
                    .and_then(|r| r.split("\r\n").next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("KEYS on node {p}: unexpected reply {reply:?}"))
            })
            .collect()
    }
}

/// A cluster-enabled node on a free port, with its cluster bus on a second free port
/// (`--cluster-port`; the default, port + 10000, may be taken or beyond 65535).
fn cluster_node() -> Node {
    let mut node = Node::new();
    let proc = on_free_ports("redis-server (cluster node)", || {
        node.port = free_port();
        let bus = free_port();
        let dir = node.dir.path();
        let mut cmd = redis_server(node.port, dir);
        cmd.args(["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()])
            .arg("--cluster-config-file")
            .arg(dir.join(format!("nodes-{}.conf", node.port)));
        let addr = loopback(node.port);
        spawn("redis-server (cluster node)", cmd, &node.log(), || {
            redis_cmd(addr, &["CONFIG", "GET", "dir"]).is_some_and(|r| names_dir(&r, dir))
        })
    });
    node.proc = Some(proc);
    node
}
