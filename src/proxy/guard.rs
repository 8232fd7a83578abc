//! A wrapper around the proxy application that reads the first request head of
//! each new connection itself, under one deadline for the whole head. Pingora's
//! own read timeout restarts on every read, so a client trickling a byte at a time
//! could hold a connection for ever (slowloris). Heads that break `head::check`
//! are answered here; good ones are handed on untouched.

use super::head::{self, HeadLimits};
use super::respond;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct HeaderGuard<A> {
    inner: Arc<A>,
    limits: HeadLimits,
    deadline: Duration,
}

impl<A> HeaderGuard<A> {
    pub fn new(inner: A, limits: HeadLimits, deadline: Duration) -> Self {
        HeaderGuard {
            inner: Arc::new(inner),
            limits,
            deadline,
        }
    }
}

enum Refusal {
    /// The client went away or never spoke: close without an answer.
    Silent,
    Answer(u16),
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeaderGuard<A> {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        // Only plain TCP streams can be rewound; anything else goes straight on.
        if !stream.as_any().is::<L4Stream>() {
            return self.inner.process_new(stream, shutdown).await;
        }
        match self.read_head(&mut stream).await {
            Ok(head) => {
                let mut l4 = stream.into_any().downcast::<L4Stream>().ok()?;
                l4.rewind(&head);
                self.inner.process_new(l4, shutdown).await
            }
            Err(Refusal::Silent) => None,
            Err(Refusal::Answer(status)) => {
                let _ = write_error(&mut stream, status).await;
                None
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

impl<A> HeaderGuard<A> {
    async fn read_head(&self, stream: &mut Stream) -> Result<BytesMut, Refusal> {
        let deadline = tokio::time::Instant::now() + self.deadline;
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
            match read {
                Err(_elapsed) if buf.is_empty() => return Err(Refusal::Silent),
                Err(_elapsed) => return Err(Refusal::Answer(408)),
                Ok(Err(_)) | Ok(Ok(0)) => return Err(Refusal::Silent),
                Ok(Ok(_)) => {}
            }
            if let Some(end) = head::head_end(&buf) {
                return match head::check(&buf[..end], self.limits) {
                    Ok(()) => Ok(buf),
                    Err(problem) => Err(Refusal::Answer(problem.status())),
                };
            }
            if buf.len() > self.limits.max_bytes {
                return Err(Refusal::Answer(431));
            }
        }
    }
}

async fn write_error(stream: &mut Stream, status: u16) -> std::io::Result<()> {
    let request_id = super::respond::new_request_id();
    let body = respond::error_body(status, &request_id);
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}: {request_id}\r\nconnection: close\r\n\r\n",
        body.len(),
        respond::REQUEST_ID,
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.flush().await?;
    stream.shutdown().await
}
