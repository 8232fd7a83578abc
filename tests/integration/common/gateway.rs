//! The gateway under test as most tests use it: the real binary started on a config body with
//! everything else filled in, ready before the test goes on, killed at the end. Also several
//! at once on one body, and `floodgate -t` on a config text.

use super::client::request;
use super::process::{Options, Proc, Setup, BIN};
use super::upstream::Upstream;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    // Before `setup`: the process is killed before its files go.
    _proc: Proc,
    setup: Setup,
}

impl Gateway {
    /// Starts the real binary on `body` (the gateway's keys: upstreams, routes, ...);
    /// listeners, admin and Pingora's files are filled in. Waits for `/ready`.
    pub fn start(body: &str) -> Gateway {
        Gateway::launch(body, Options::default())
    }

    /// A gateway proxying every path to `up`, with `client` as its `client:` line.
    pub fn proxying_to(up: &Upstream, client: &str) -> Gateway {
        Gateway::start(&format!(
            "{client}\nupstreams:\n  backend: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: all, path_prefix: /, upstream: backend }}\n",
            up.addr
        ))
    }

    /// As `start`, with `RUST_LOG` set to `rust_log`.
    pub fn start_logging(body: &str, rust_log: &str) -> Gateway {
        let rust_log = rust_log.into();
        Gateway::launch(
            body,
            Options {
                rust_log,
                ..Options::default()
            },
        )
    }

    /// As `start`, with more keys in the `admin` section (e.g. `token: "..."`).
    pub fn start_admin(body: &str, admin_keys: &str) -> Gateway {
        let admin_keys = admin_keys.into();
        Gateway::launch(
            body,
            Options {
                admin_keys,
                ..Options::default()
            },
        )
    }

    /// As `start`, with more `listen` entries (TLS, h2c, PROXY protocol listeners).
    pub fn start_listening(body: &str, more_listen: Vec<String>) -> Gateway {
        Gateway::launch(
            body,
            Options {
                more_listen,
                ..Options::default()
            },
        )
    }

    /// As `start_logging`, returning once the process answers `/health`, not waiting for
    /// `/ready`: for tests of what comes before the gateway is ready.
    pub fn start_unready(body: &str, rust_log: &str) -> Gateway {
        let rust_log = rust_log.into();
        let opts = Options {
            rust_log,
            ..Options::default()
        };
        Gateway::launch_with(body, opts, Setup::start_alive)
    }

    fn launch(body: &str, opts: Options) -> Gateway {
        Gateway::launch_with(body, opts, Setup::start)
    }

    fn launch_with(body: &str, opts: Options, start: fn(&mut Setup) -> Proc) -> Gateway {
        let mut setup = Setup::new(body, opts);
        let proc = start(&mut setup);
        Gateway {
            addr: setup.addr,
            admin: setup.admin,
            _proc: proc,
            setup,
        }
    }

    pub fn log(&self) -> String {
        self.setup.log()
    }

    /// The gateway process's id, for reading its /proc entries.
    pub fn pid(&self) -> u32 {
        self._proc.pid()
    }
}

/// A config body routing every path to the built-in echo upstream.
pub const ECHO: &str =
    "upstreams:\n  echo: { kind: echo }\nroutes:\n  - { name: all, path_prefix: /, upstream: echo }\n";

/// `n` gateway processes on one config body, e.g. behind one Redis.
pub fn gateways(body: &str, admin_keys: &str, n: usize) -> Vec<Gateway> {
    (0..n).map(|_| Gateway::start_admin(body, admin_keys)).collect()
}

/// One gateway process per config body, all started at the same moment, as a fleet starts.
pub fn start_together(bodies: &[&str], admin_keys: &str) -> Vec<Gateway> {
    std::thread::scope(|s| {
        let starting: Vec<_> = bodies
            .iter()
            .map(|body| s.spawn(move || Gateway::start_admin(body, admin_keys)))
            .collect();
        starting.into_iter().map(|h| h.join().expect("start")).collect()
    })
}

/// An admin call with the bearer `token`: (status, JSON body or Null).
pub fn admin_call(
    gw: &Gateway,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {token}");
    let r = request(
        gw.admin,
        method,
        path,
        &[("authorization", auth.as_str())],
        body.as_bytes(),
    );
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null),
    )
}

/// `floodgate -t -c FILE` on the given text: (exit success, stderr + stdout).
pub fn check_config(text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(BIN)
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .env_remove("FLOODGATE_TEST_UNSET")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.success(), text)
}
