//! Loopback ports without races. A server the test process runs itself binds port 0 and keeps
//! its listener, so no one can take the port between a pick and a bind. A process we spawn
//! (floodgate, redis-server) has to bind its port itself: we pick a free one, another process
//! may take it before the child binds it, so the start is tried again on fresh ports when it
//! failed for that reason alone. Deciding "it failed because a port was taken" happens here only.

use super::eventually;
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Starts of one process on fresh ports before giving up.
const FRESH_TRIES: usize = 5;

/// How long a server coming back on its own port waits for that port to be free again.
const SAME_PORT_WAIT: Duration = Duration::from_secs(10);

/// Every port handed out or claimed by this test process: never handed out twice, so two of
/// our own processes never race for one port.
fn claimed() -> &'static Mutex<HashSet<u16>> {
    static CLAIMED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    CLAIMED.get_or_init(Default::default)
}

/// Marks a port a server of this process listens on (and may listen on again after a restart).
pub(super) fn claim(port: u16) {
    claimed().lock().expect("claimed ports").insert(port);
}

/// A loopback listener of this process on a port no server of ours had before: a killed
/// upstream's port stays its own until it restarts, so no other test's server answers there.
pub fn listener() -> TcpListener {
    let mut refused = Vec::new();
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        if claimed().lock().expect("claimed ports").insert(port) {
            return listener;
        }
        // Held until a good one is found, so the same port is not handed back at once.
        refused.push(listener);
    }
}

/// A port nothing listened on a moment ago, for a process we spawn: start that process
/// through `on_free_ports`, which copes with someone else taking the port first.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        if claimed().lock().expect("claimed ports").insert(port) {
            return port;
        }
    }
}

/// What a process prints when a port it was told to listen on is taken: floodgate's start-up
/// check (`cannot listen on ADDR: ...`), and the OS's own words (redis-server, a std bind).
fn port_was_taken(output: &str) -> bool {
    output.contains("cannot listen on") || output.contains("Address already in use")
}

/// Starts something that listens on ports `start` picks with `free_port` (again on each call).
/// `start` returns the failed start's output as its error; a failure because a port was taken
/// meanwhile is tried again on fresh ports, any other failure panics with that output.
pub(super) fn on_free_ports<T>(what: &str, mut start: impl FnMut() -> Result<T, String>) -> T {
    let mut output = String::new();
    for _ in 0..FRESH_TRIES {
        match start() {
            Ok(started) => return started,
            Err(out) if port_was_taken(&out) => output = out,
            Err(out) => panic!("{what} failed to start:\n{out}"),
        }
    }
    panic!("{what}: a port was taken on each of {FRESH_TRIES} tries; last output:\n{output}");
}

/// Starts something again on the port it had (the gateway under test is configured with it).
/// Between the stop and this start an outgoing connection may have borrowed the port as its
/// own for a moment: a start that failed because the port was taken is tried again until it is
/// free, for up to `SAME_PORT_WAIT`; any other failure panics with the output.
pub(super) fn on_the_same_port<T>(what: &str, mut start: impl FnMut() -> Result<T, String>) -> T {
    let (mut started, mut output) = (None, String::new());
    eventually(SAME_PORT_WAIT, || match start() {
        Ok(s) => {
            started = Some(s);
            true
        }
        Err(out) if port_was_taken(&out) => {
            output = out;
            false
        }
        Err(out) => panic!("{what} failed to start again:\n{out}"),
    });
    started.unwrap_or_else(|| panic!("{what}: its port stayed taken for {SAME_PORT_WAIT:?}:\n{output}"))
}

/// A loopback address where nothing listens, and where nothing can start listening while this
/// lives: the local end of a connection held open. A connected socket holds its port without
/// SO_REUSEADDR, so binding that port fails for everyone; connecting to it is refused.
pub struct ClosedPort {
    pub addr: SocketAddr,
    _ends: (TcpStream, TcpStream),
}

pub fn closed_port() -> ClosedPort {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ours = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (theirs, _) = listener.accept().expect("accept");
    ClosedPort {
        addr: ours.local_addr().expect("local addr"),
        _ends: (ours, theirs),
    }
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
