//! Redis deployments beyond one plain server (redis.rs): a three-master cluster, a master and
//! replica watched by one sentinel, a server that speaks only TLS (optionally with an ACL user)
//! and a plain server with an ACL user. Every process is a child on free loopback ports with its
//! own temp dir and log file, is SIGKILLed on drop, and a start that fails panics with its log.

use super::eventually;
use super::ports::{free_port, on_free_ports};
use super::process::Proc;
use super::{redis_cmd, redis_cmds};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How long one process, or a deployment's handshake (cluster slots, replica sync, sentinel
/// discovery), may take to come up.
const START_LIMIT: Duration = Duration::from_secs(20);

/// The name the sentinel monitors its master under.
const MASTER_NAME: &str = "mymaster";

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Spawns `cmd` logging to `log` and waits until `up` holds. Err(its log) if it exited first,
/// which `on_free_ports` retries when a port was taken; a panic with the log if it never came up.
fn spawn(what: &str, mut cmd: Command, log: &Path, mut up: impl FnMut() -> bool) -> Result<Proc, String> {
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
fn redis_server(port: u16, dir: &Path) -> Command {
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
fn acl_args(cmd: &mut Command, user: &str, pass: &str) {
    cmd.args(["--user", user, "on", &format!(">{pass}"), "~*", "&*", "+@all"])
        .args(["--user", "default", "off"]);
}

/// Whether the redis-server answering `CONFIG GET dir` through `reply` is the one in `dir`
/// (ours, not whatever else may have the port).
fn names_dir(reply: &str, dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).expect("redis dir");
    reply.contains(&dir.display().to_string())
}

/// The elements of a flat RESP array of bulk strings (`*2\r\n$9\r\n127.0.0.1\r\n...`); nested
/// arrays come out flattened, nulls and errors as nothing.
fn bulk_strings(reply: &str) -> Vec<&str> {
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
fn field<'a>(elems: &[&'a str], key: &str) -> Option<&'a str> {
    elems
        .iter()
        .position(|e| *e == key)
        .and_then(|i| elems.get(i + 1).copied())
}

/// `INFO replication` of the server on `port`, or "" if it does not answer.
fn replication(port: u16) -> String {
    redis_cmd(loopback(port), &["INFO", "replication"]).unwrap_or_default()
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
struct Node {
    port: u16,
    proc: Option<Proc>,
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            port: 0,
            proc: None,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn kill(&mut self) {
        self.proc = None;
    }
}

/// The logs of `nodes`, for a failure message.
fn logs(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("--- port {} ---\n{}\n", n.port, n.log_text()))
        .collect()
}

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

/// A redis-server that speaks only TLS (`--port 0`), with a certificate for 127.0.0.1 and
/// localhost from a CA made for it, client certificates optional (or required, `start_mtls`)
/// and, if asked, one ACL user with the default user off. `other_ca_file` is a second,
/// unrelated CA: a client that trusts only it must fail the handshake.
pub struct TlsRedis {
    pub port: u16,
    acl: Option<(String, String)>,
    /// Before `dir`: the process dies before its files go.
    proc: Option<Proc>,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Client certificates required (`--tls-auth-clients yes`), so a client that connects
    /// proves it presented one.
    pub fn start(acl: Option<(&str, &str)>) -> TlsRedis {
        let mut r = TlsRedis {
            port: 0,
            acl: acl.map(|(u, p)| (u.to_string(), p.to_string())),
            proc: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        make_certs(r.dir.path());
        let proc = on_free_ports("redis-server (TLS)", || {
            r.port = free_port();
            let dir = r.dir.path();
            let mut cmd = redis_server(0, dir);
            cmd.args(["--tls-port", &r.port.to_string()])
                .arg("--tls-cert-file")
                .arg(dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(r.ca_file())
                .args(["--tls-auth-clients", "yes"]);
            if let Some((user, pass)) = &r.acl {
                acl_args(&mut cmd, user, pass);
            }
            spawn("redis-server (TLS)", cmd, &dir.join("redis.log"), || {
                names_dir(&r.cli(&["CONFIG", "GET", "dir"]), dir)
            })
        });
        r.proc = Some(proc);
        r
    }

    /// "rediss://[user:pass@]127.0.0.1:P/0".
    pub fn url(&self, user_pass: Option<(&str, &str)>) -> String {
        let auth = user_pass.map(|(u, p)| format!("{u}:{p}@")).unwrap_or_default();
        format!("rediss://{auth}127.0.0.1:{}/0", self.port)
    }

    /// The CA that signed the server and client certificates (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Another self-signed CA, which signed nothing this server or its clients use.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.crt")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.crt")
    }

    /// PKCS#8 PEM ("BEGIN PRIVATE KEY"), P-256.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// `redis-cli` over TLS with the right CA, the client certificate and the ACL user: one
    /// command's output (stdout then stderr), e.g. `cli(&["GET", "k"])`.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--tls", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("--cacert")
            .arg(self.ca_file())
            .arg("--cert")
            .arg(self.client_cert())
            .arg("--key")
            .arg(self.client_key());
        if let Some((user, pass)) = &self.acl {
            cmd.args(["--user", user, "--pass", pass, "--no-auth-warning"]);
        }
        output_text(&cmd.args(args).stdin(Stdio::null()).output().expect("redis-cli"))
    }
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `openssl ARGS` in `dir`; panics with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {}:\n{}",
        args.join(" "),
        output_text(&out)
    );
}

/// In `dir`: ca.crt (self-signed, CN floodgate-test-ca), server.crt/.key for IP 127.0.0.1 and
/// DNS localhost, client.crt/.key (both signed by ca.crt) and other-ca.crt (unrelated). P-256
/// keys: quick to make. Leaf certificates are v3 with `CA:FALSE` and an extended key usage, as
/// rustls/webpki insist; the server's name is only in subjectAltName, as they read it.
fn make_certs(dir: &Path) {
    const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    for (name, cn) in [("ca", "floodgate-test-ca"), ("other-ca", "floodgate-other-ca")] {
        let (key, crt, subj) = (format!("{name}.key"), format!("{name}.crt"), format!("/CN={cn}"));
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subj];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &crt]);
        openssl(dir, &args);
    }
    let leaves = [
        (
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "floodgate-test-client", "extendedKeyUsage=clientAuth\n"),
    ];
    for (name, cn, ext) in leaves {
        let (key, csr, crt, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        std::fs::write(
            dir.join(&extfile),
            format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n{ext}"),
        )
        .expect("extfile");
        let subj = format!("/CN={cn}");
        let mut args = vec!["req", "-nodes", "-subj", &subj];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &crt,
                "-extfile",
                &extfile,
            ],
        );
    }
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
