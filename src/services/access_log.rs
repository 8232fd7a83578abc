//! Writes access-log lines off the request path. The proxy serializes each line
//! into one buffer and queues it (`Telemetry::log_access`, never waiting); a plain
//! OS thread drains the queue into a buffered file or stdout and flushes at least
//! every 100 ms. The thread is started by this background service, i.e. after
//! Pingora has daemonized (threads do not survive the fork).

use crate::config::AccessLogTarget;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FLUSH_EVERY: Duration = Duration::from_millis(100);

pub struct AccessLogWriter {
    pub target: AccessLogTarget,
    pub lines: Mutex<Option<Receiver<Vec<u8>>>>,
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
    let mut flushed = Instant::now();
    loop {
        let done = match lines.recv_timeout(FLUSH_EVERY) {
            Ok(line) => {
                if let Err(e) = out.write_all(&line) {
                    log::warn!("access log write failed: {e}");
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if done || flushed.elapsed() >= FLUSH_EVERY {
            if let Err(e) = out.flush() {
                log::warn!("access log flush failed: {e}");
            }
            flushed = Instant::now();
        }
        if done {
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
