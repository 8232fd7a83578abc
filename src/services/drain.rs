//! Follows Pingora's shutdown phases. From the moment a graceful upgrade
//! (SIGQUIT) or a graceful stop (SIGTERM) starts, every response carries
//! `Connection: close`, so kept-alive clients reconnect, to the new process in an
//! upgrade, instead of meeting a closed connection later. Once Pingora's grace
//! period starts, the process exits as soon as no request is in flight, rather
//! than sleeping out the whole period; the period stays the upper bound. WebSocket
//! sessions, which never end by themselves, get the period too, then a close frame
//! just before it ends.

use async_trait::async_trait;
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use prometheus::IntGauge;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::{error::RecvError, Receiver};

/// How often the grace period looks at the requests in flight.
const POLL: Duration = Duration::from_millis(20);
/// How long before the grace period ends open WebSocket sessions are closed, so
/// that their close frames and log lines are out before the process is.
const WEBSOCKET_CLOSE_LEAD: Duration = Duration::from_secs(1);
/// Time for the access-log writer to write what the last requests queued.
const LOG_FLUSH: Duration = Duration::from_millis(200);

pub struct Drain {
    pub phases: Mutex<Option<Receiver<ExecutionPhase>>>,
    pub draining: Arc<AtomicBool>,
    pub inflight: IntGauge,
    /// Pingora's grace period, after which it drops whatever still runs.
    pub grace: Duration,
}

#[async_trait]
impl BackgroundService for Drain {
    // The shutdown watch is ignored on purpose: this service has work to do after it.
    async fn start(&self, _shutdown: ShutdownWatch) {
        let Some(mut phases) = self.phases.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        loop {
            match phases.recv().await {
                Ok(ExecutionPhase::GracefulUpgradeTransferringFds | ExecutionPhase::GracefulTerminate) => {
                    self.draining.store(true, Ordering::Release);
                }
                Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
        self.draining.store(true, Ordering::Release);
        let close_at = tokio::time::Instant::now() + self.grace.saturating_sub(WEBSOCKET_CLOSE_LEAD);
        let mut closed = false;
        while self.inflight.get() > 0 {
            if !closed && tokio::time::Instant::now() >= close_at {
                crate::connection::websocket_close::close_websockets();
                closed = true;
            }
            tokio::time::sleep(POLL).await;
        }
        tokio::time::sleep(LOG_FLUSH).await;
        log::info!("graceful shutdown: nothing in flight, exiting before the grace period ends");
        std::process::exit(0);
    }
}
