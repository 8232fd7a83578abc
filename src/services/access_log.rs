//! Writes access-log lines off the request path. The proxy serializes each line
//! into one buffer and queues it (`Telemetry::log_access`, never waiting); a plain
//! OS thread wakes every 50 ms, drains the queue into a buffered file or stdout and
//! flushes. It never blocks on the queue: a blocked receiver would be woken by every
//! line, a context switch per request. The thread is started by this background
//! service, i.e. after Pingora has daemonized (threads do not survive the fork).

use crate::config::AccessLogTarget;
use crate::telemetry::ACCESS_LOG_QUEUE;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Mutex;
use std::time::Duration;

/// At 300k lines/s this is well inside the queue (`telemetry::ACCESS_LOG_QUEUE`).
const DRAIN_EVERY: Duration = Duration::from_millis(50);

pub struct AccessLogWriter {
    pub target: AccessLogTarget,
    pub lines: Mutex<Option<Receiver<Vec<u8>>>>,
}

impl AccessLogWriter {
    /// The writer for `target` and the queue the proxy sends it lines on; `None` when off.
    pub fn from_config(target: &AccessLogTarget) -> Option<(AccessLogWriter, SyncSender<Vec<u8>>)> {
        if *target == AccessLogTarget::Off {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(ACCESS_LOG_QUEUE);
        let writer = AccessLogWriter {
            target: target.clone(),
            lines: Mutex::new(Some(rx)),
        };
        Some((writer, tx))
    }
}

fn open(target: &AccessLogTarget) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        AccessLogTarget::File(path) => {
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
        }
        _ => Box::new(std::io::stdout()),
    })
}

fn drain(lines: Receiver<Vec<u8>>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        std::thread::sleep(DRAIN_EVERY);
        let closed = loop {
            match lines.try_recv() {
                Ok(line) => {
                    if let Err(e) = out.write_all(&line) {
                        log::warn!("access log write failed: {e}");
                    }
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if let Err(e) = out.flush() {
            log::warn!("access log flush failed: {e}");
        }
        if closed {
            return;
        }
    }
}

#[async_trait]
impl BackgroundService for AccessLogWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(lines) = self.lines.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        match open(&self.target) {
            Ok(out) => {
                let spawned = std::thread::Builder::new()
                    .name("access-log".into())
                    .spawn(move || drain(lines, out));
                if let Err(e) = spawned {
                    log::error!("cannot start the access-log writer: {e}");
                }
            }
            Err(e) => log::error!("access log {:?}: {e}; access logging is off", self.target),
        }
        let _ = shutdown.changed().await;
    }
}
