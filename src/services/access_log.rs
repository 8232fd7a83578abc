//! Writes access-log lines, one JSON object per line, off the request path: the
//! proxy queues them in a bounded channel (`Telemetry::log_access`) and this task
//! drains it in batches, flushing whenever the queue runs empty.

use crate::config::AccessLogTarget;
use crate::telemetry::AccessLine;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Mutex;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

pub struct AccessLogWriter {
    pub target: AccessLogTarget,
    pub lines: Mutex<Option<mpsc::Receiver<AccessLine>>>,
}

async fn open(target: &AccessLogTarget) -> std::io::Result<Box<dyn AsyncWrite + Send + Unpin>> {
    Ok(match target {
        AccessLogTarget::File(path) => Box::new(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await?,
        ),
        _ => Box::new(tokio::io::stdout()),
    })
}

#[async_trait]
impl BackgroundService for AccessLogWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut lines) = self.lines.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let mut out = match open(&self.target).await {
            Ok(w) => BufWriter::with_capacity(64 * 1024, w),
            Err(e) => {
                log::error!("access log {:?}: {e}; access logging is off", self.target);
                return;
            }
        };
        let mut buf = Vec::with_capacity(512);
        loop {
            let line = tokio::select! {
                line = lines.recv() => line,
                _ = shutdown.changed() => None,
            };
            let Some(line) = line else { break };
            let mut next = Some(line);
            // Drain what is queued, then flush once.
            while let Some(line) = next {
                buf.clear();
                if serde_json::to_writer(&mut buf, &line).is_ok() {
                    buf.push(b'\n');
                    if let Err(e) = out.write_all(&buf).await {
                        log::warn!("access log write failed: {e}");
                    }
                }
                next = lines.try_recv().ok();
            }
            if let Err(e) = out.flush().await {
                log::warn!("access log flush failed: {e}");
            }
        }
        // Shutting down: write what is still queued.
        while let Ok(line) = lines.try_recv() {
            buf.clear();
            if serde_json::to_writer(&mut buf, &line).is_ok() {
                buf.push(b'\n');
                let _ = out.write_all(&buf).await;
            }
        }
        let _ = out.flush().await;
    }
}
