//! A wrapper around a listener's application: every new connection is first
//! counted against the connection caps, then wrapped in a [`GuardedStream`] (the
//! header and send deadlines), and its first request head is read here and checked
//! strictly (`head::check`), where Pingora alone is lax. Bad heads are answered
//! here; good ones are put back and handed on untouched.

use super::head::{self, HeadLimits};
use super::limits::ConnectionLimits;
use super::stream::{Deadlines, GuardedStream, HeadClock};
use crate::vocab::error_body;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct HeaderGuard<A> {
    inner: Arc<A>,
    limits: HeadLimits,
    deadlines: Deadlines,
    connections: Arc<ConnectionLimits>,
}

impl<A> HeaderGuard<A> {
    pub fn new(
        inner: A,
        limits: HeadLimits,
        deadlines: Deadlines,
        connections: Arc<ConnectionLimits>,
    ) -> Self {
        HeaderGuard {
            inner: Arc::new(inner),
            limits,
            deadlines,
            connections,
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
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        // Dropping the stream closes the connection unread.
        let _slot = self.connections.admit(peer)?;
        let clock = HeadClock::new();
        let mut stream = GuardedStream::new(stream, clock.clone(), self.deadlines);
        match self.read_head(&mut stream).await {
            Ok(head) => {
                stream.rewind(head.freeze());
                clock
                    .scope(self.inner.process_new(Box::new(stream), shutdown))
                    .await
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
    /// The first head, read under the stream's header deadline.
    async fn read_head(&self, stream: &mut GuardedStream) -> Result<BytesMut, Refusal> {
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            match stream.read_buf(&mut buf).await {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut && !buf.is_empty() => {
                    return Err(Refusal::Answer(408))
                }
                Err(_) | Ok(0) => return Err(Refusal::Silent),
                Ok(_) => {}
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

async fn write_error(stream: &mut GuardedStream, status: u16) -> std::io::Result<()> {
    let request_id = error_body::new_request_id();
    let body = error_body::error_body(status, &request_id);
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}: {request_id}\r\nconnection: close\r\n\r\n",
        body.len(),
        error_body::REQUEST_ID,
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.flush().await?;
    AsyncWriteExt::shutdown(stream).await
}
