//! Every client connection is wrapped in a [`GuardedStream`]: the one place the
//! gateway's own deadlines live, whatever the protocol above it.
//!
//! - **Header deadline.** A request head must arrive whole within
//!   `client.header_timeout_ms` of its first byte (of the accept, for the first
//!   head of a connection). Pingora's read timeout restarts on every read, so a
//!   client trickling a byte at a time could otherwise hold a connection for ever
//!   (slowloris), on its first request or any later one.
//! - **Send deadline.** A write that makes no progress for `client.send_timeout_ms`
//!   (a client that stopped reading its response) ends the connection, as NGINX's
//!   `send_timeout` does.
//!
//! The stream sits above TLS, so it sees what the client means, not ciphertext;
//! the TLS handshake (and a PROXY header) must finish by the same instant the first
//! head is due, which the guard enforces before the stream exists.
//!
//! On HTTP/1.1 the proxy tells the stream where a request stands through
//! [`HeadClock`], reached from the phases as a task-local of the connection's task:
//! the head was parsed (no deadline while the request runs), the request is done
//! (the next byte read starts a new head). On HTTP/2, requests run in tasks of their
//! own, so the stream follows the frames instead ([`H2Frames`]): a header block must
//! arrive whole within the deadline of its first byte, and the first one within the
//! deadline of the accept. After a WebSocket upgrade the stream follows the
//! session's frames, so that the drain can close it between two of them
//! (`websocket_close`).

use super::h2_frames::H2Frames;
use super::head_clock::{HeadClock, BETWEEN_REQUESTS, IN_HEAD, IN_REQUEST, WEBSOCKET};
use super::websocket_close::WebSocketState;
use bytes::{Buf, Bytes};
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub header: Duration,
    pub send: Duration,
}

/// What the client speaks on the connection, as far as the deadlines care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 agreed by ALPN.
    Http2,
    /// HTTP/2 in the clear, known from its preface (reported as ALPN h2 so Pingora speaks it).
    H2c,
}

/// A client connection under the gateway's deadlines, with bytes the guard
/// already read put back in front.
pub struct GuardedStream {
    inner: Stream,
    rewound: Bytes,
    clock: Arc<HeadClock>,
    protocol: Protocol,
    /// HTTP/2 only.
    frames: Option<H2Frames>,
    /// After a WebSocket upgrade: what was written, and the drain's call to close.
    websocket: Option<WebSocketState>,
    deadlines: Deadlines,
    head_due: Option<Instant>,
    head_timer: Pin<Box<Sleep>>,
    send_timer: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .finish()
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string())
}

impl GuardedStream {
    /// `due`: when the connection's first head must be in (the accept plus the header deadline).
    pub fn new(
        inner: Stream,
        clock: Arc<HeadClock>,
        deadlines: Deadlines,
        due: Instant,
        protocol: Protocol,
    ) -> Self {
        GuardedStream {
            inner,
            rewound: Bytes::new(),
            clock,
            protocol,
            frames: (protocol != Protocol::Http1).then(H2Frames::default),
            websocket: None,
            deadlines,
            head_due: Some(due),
            head_timer: Box::pin(tokio::time::sleep_until(due)),
            send_timer: None,
        }
    }

    /// Found to be h2c from its first bytes: the deadline follows HTTP/2 frames, whose
    /// first header block is still due when the accept's deadline says.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        if protocol != self.protocol {
            self.protocol = protocol;
            self.frames = (protocol != Protocol::Http1).then(H2Frames::default);
        }
        self
    }

    /// Puts bytes back to be read again before anything new.
    pub fn rewind(&mut self, bytes: Bytes) {
        self.rewound = bytes;
    }

    fn arm_head(&mut self, due: Instant) {
        self.head_due = Some(due);
        self.head_timer.as_mut().reset(due);
    }

    /// After an upgrade, bytes written are followed frame by frame; once the
    /// session was closed here, they are dropped.
    fn websocket_writes(&mut self) -> Option<&mut WebSocketState> {
        if self.websocket.is_none() && self.clock.state() == WEBSOCKET {
            self.websocket = Some(WebSocketState::new());
        }
        self.websocket.as_mut()
    }

    /// Runs `op` on the inner stream's write side under the send deadline.
    fn write_with_deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut Stream>, &mut Context<'_>) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.send_timer = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let send = self.deadlines.send;
                let timer = self
                    .send_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(send)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out("the client stopped reading"))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.frames.is_some() {
            return this.poll_read_h2(cx, buf);
        }
        if !this.rewound.is_empty() {
            this.read_rewound(buf);
            return Poll::Ready(Ok(()));
        }
        let state = this.clock.state();
        if state == WEBSOCKET {
            return this.poll_read_websocket(cx, buf);
        }
        if state == IN_REQUEST {
            this.head_due = None;
        }
        if let Some(due) = this.head_due.filter(|_| state == IN_HEAD) {
            if Instant::now() >= due {
                return Poll::Ready(Err(timed_out("the request head did not arrive in time")));
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if state == BETWEEN_REQUESTS && buf.filled().len() > before => {
                this.clock.head_started();
                this.arm_head(Instant::now() + this.deadlines.header);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if state == IN_HEAD && this.head_due.is_some() => this.poll_head_timer(cx),
            other => other,
        }
    }
}

impl GuardedStream {
    fn read_rewound(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.rewound.len().min(buf.remaining());
        buf.put_slice(&self.rewound[..n]);
        self.rewound.advance(n);
    }

    /// A WebSocket session's reads, until the drain closes it.
    #[cold]
    #[inline(never)]
    fn poll_read_websocket(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let ws = self.websocket.get_or_insert_with(WebSocketState::new);
        ws.poll_read(&mut self.inner, cx, buf)
    }

    fn poll_head_timer(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.head_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(timed_out("the request head did not arrive in time"))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// HTTP/2: the deadline runs while a header block is open, and from the accept
    /// until the first block is whole.
    fn poll_read_h2(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.head_due.is_some_and(|due| Instant::now() >= due) {
            return Poll::Ready(Err(timed_out("the request head did not arrive in time")));
        }
        let before = buf.filled().len();
        let polled = if self.rewound.is_empty() {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        } else {
            self.read_rewound(buf);
            Poll::Ready(Ok(()))
        };
        let Some(frames) = self.frames.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                let started = frames.blocks_started();
                frames.feed(&buf.filled()[before..]);
                let first_done = frames.blocks_done() > 0;
                if frames.in_block() {
                    // A block begun in this read gets its own deadline, unless the first
                    // block (due from the accept) is still not whole.
                    if self.head_due.is_none() || (first_done && frames.blocks_started() != started) {
                        self.arm_head(Instant::now() + self.deadlines.header);
                    }
                } else if first_done {
                    self.head_due = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.head_due.is_some() => self.poll_head_timer(cx),
            other => other,
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let mut buf = buf;
        if let Some(ws) = this.websocket_writes() {
            match ws.passes(buf.len()) {
                Some(passing) => buf = &buf[..passing],
                None => return Poll::Ready(Ok(buf.len())),
            }
        }
        let written = this.write_with_deadline(cx, |inner, cx| inner.poll_write(cx, buf));
        if let (Poll::Ready(Ok(n)), Some(ws)) = (&written, this.websocket.as_mut()) {
            ws.wrote(&buf[..*n]);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.websocket_writes().is_some_and(|ws| !ws.is_open()) {
            // Closing is rare: one slice at a time keeps the frame accounting simple.
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        let written = this.write_with_deadline(cx, |inner, cx| inner.poll_write_vectored(cx, bufs));
        if let (Poll::Ready(Ok(n)), Some(ws)) = (&written, this.websocket.as_mut()) {
            let mut left = *n;
            for b in bufs {
                let take = left.min(b.len());
                ws.wrote(&b[..take]);
                left -= take;
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut()
            .write_with_deadline(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait::async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        match self.protocol {
            Protocol::H2c => Some(ALPN::H2),
            _ => self.inner.selected_alpn_proto(),
        }
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait::async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        if self.rewound.len() >= buf.len() {
            buf.copy_from_slice(&self.rewound[..buf.len()]);
            return Ok(true);
        }
        if !self.rewound.is_empty() {
            // Part of the peek is in our hands and part still in the socket: not supported.
            return Ok(false);
        }
        self.inner.try_peek(buf).await
    }
}
