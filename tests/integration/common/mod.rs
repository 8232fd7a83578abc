//! Test harness: the real `floodgate` binary, real upstream HTTP servers, redis-server and
//! raw HTTP/1.1 clients, all on loopback. One idea per file; everything is re-exported here.

mod bearer;
mod browser;
mod client;
mod closing;
mod dns;
mod exchange;
mod gateway;
mod guarded;
mod jwks;
mod load;
mod otlp;
mod ports;
mod process;
mod redis;
mod redis_cluster;
mod redis_modes;
mod redis_sentinel;
mod redis_tls;
mod relay;
mod request;
mod server;
mod streaming;
mod switching;
mod systemd;
mod tls;
mod upstream;
mod websocket;

pub use self::redis::*;
pub use bearer::*;
pub use browser::*;
pub use client::*;
pub use closing::*;
pub use dns::*;
pub use exchange::*;
pub use gateway::*;
pub use guarded::*;
pub use jwks::*;
pub use load::*;
pub use otlp::*;
pub use ports::*;
pub use process::*;
pub use redis_cluster::*;
pub use redis_modes::*;
pub use redis_sentinel::*;
pub use redis_tls::*;
pub use relay::*;
pub use streaming::*;
pub use switching::*;
pub use systemd::*;
pub use tls::*;
pub use upstream::*;
pub use websocket::*;

use std::thread;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms for up to `limit`; for waiting on background work
/// (health checks), never for asserting speed.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
