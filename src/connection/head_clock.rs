//! Where a connection's current request stands, on HTTP/1.1: the proxy's phases
//! tell it (the head was parsed, the request is done, a WebSocket session opened),
//! reaching it as a task-local of the connection's task, and the stream's header
//! deadline reads it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

pub(super) const BETWEEN_REQUESTS: u8 = 0;
pub(super) const IN_HEAD: u8 = 1;
pub(super) const IN_REQUEST: u8 = 2;
/// The upstream switched protocols: a WebSocket session runs on the connection.
pub(super) const WEBSOCKET: u8 = 3;

tokio::task_local! {
    static CONNECTION: Arc<HeadClock>;
}

/// Where the connection's current request stands.
#[derive(Debug)]
pub struct HeadClock {
    state: AtomicU8,
    /// The guard checked the first head already: the phases need not again.
    first_checked: AtomicBool,
}

impl HeadClock {
    /// A new connection: its first head is due from now.
    pub fn new() -> Arc<Self> {
        Arc::new(HeadClock {
            state: AtomicU8::new(IN_HEAD),
            first_checked: AtomicBool::new(false),
        })
    }

    /// The guard read and checked the connection's first head.
    pub fn first_head_checked(&self) {
        self.first_checked.store(true, Ordering::Relaxed);
    }

    /// Runs a connection's processing with its clock reachable from the phases.
    pub async fn scope<F: Future>(self: Arc<Self>, f: F) -> F::Output {
        CONNECTION.scope(self, f).await
    }

    /// `BETWEEN_REQUESTS`, `IN_HEAD`, `IN_REQUEST` or `WEBSOCKET`.
    pub(super) fn state(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// The stream read the first byte of the next head.
    pub(super) fn head_started(&self) {
        self.state.store(IN_HEAD, Ordering::Relaxed);
    }
}

/// The request head has been parsed: no header deadline while the request runs.
/// True when the guard has checked this head already (a connection's first).
pub fn head_received() -> bool {
    CONNECTION
        .try_with(|c| {
            c.state.store(IN_REQUEST, Ordering::Relaxed);
            c.first_checked.swap(false, Ordering::Relaxed)
        })
        .unwrap_or(false)
}

/// The upstream accepted a WebSocket upgrade: the connection now carries its frames.
pub fn websocket_opened() {
    let _ = CONNECTION.try_with(|c| c.state.store(WEBSOCKET, Ordering::Relaxed));
}

/// The request is done: the next byte read starts the next head.
pub fn request_done() {
    let _ = CONNECTION.try_with(|c| c.state.store(BETWEEN_REQUESTS, Ordering::Relaxed));
}
