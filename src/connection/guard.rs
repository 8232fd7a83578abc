//! A wrapper around a listener's application: every new connection is first
//! read for a PROXY header (from a trusted proxy, on listeners that take one),
//! counted against the connection caps, taken through its TLS handshake, then
//! wrapped in a [`GuardedStream`] (the header and send deadlines). On HTTP/1.1 its
//! first request head is read here and checked strictly (`head::check`), where
//! Pingora alone is lax: bad heads are answered here, good ones are put back and
//! handed on untouched. The PROXY header and the handshake must be done by the
//! instant the first head is due: Pingora's own handshake timeout is a fixed 60 s,
//! so floodgate's listeners are plain TCP to Pingora and TLS is done here.

use super::head::{self, HeadLimits};
use super::head_clock::HeadClock;
use super::limits::{ConnectionLimits, Slot};
use super::proxy_protocol::{self, ProxyHeader};
use super::stream::{Deadlines, GuardedStream, Protocol};
use crate::vocab::client_addr::TrustedProxies;
use crate::vocab::error_body;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Ssl, Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How connections on one listen address start.
pub struct ListenerPlan {
    pub addr: SocketAddr,
    pub tls: Option<Arc<Acceptor>>,
    pub h2c: bool,
    pub proxy_protocol: bool,
}

impl ListenerPlan {
    /// Does a connection accepted on `local` belong to this listener?
    fn serves(&self, local: SocketAddr) -> bool {
        self.addr == local || (self.addr.ip().is_unspecified() && self.addr.port() == local.port())
    }
}

pub struct HeaderGuard<A> {
    inner: Arc<A>,
    limits: HeadLimits,
    deadlines: Deadlines,
    connections: Arc<ConnectionLimits>,
    /// The listeners whose connections start with more than HTTP/1.1 (TLS, h2c, a
    /// PROXY header); a connection on any other is plain, and costs no address lookup.
    listeners: Vec<ListenerPlan>,
    trusted_proxies: TrustedProxies,
}

impl<A> HeaderGuard<A> {
    pub fn new(
        inner: A,
        limits: HeadLimits,
        deadlines: Deadlines,
        connections: Arc<ConnectionLimits>,
        mut listeners: Vec<ListenerPlan>,
        trusted_proxies: TrustedProxies,
    ) -> Self {
        listeners.retain(|l| l.tls.is_some() || l.h2c || l.proxy_protocol);
        HeaderGuard {
            inner: Arc::new(inner),
            limits,
            deadlines,
            connections,
            listeners,
            trusted_proxies,
        }
    }

    fn plan(&self, stream: &Stream) -> Option<&ListenerPlan> {
        if self.listeners.is_empty() {
            return None;
        }
        let local = stream.get_socket_digest()?.local_addr()?.as_inet().copied()?;
        self.listeners.iter().find(|l| l.serves(local))
    }
}

enum Refusal {
    /// The client went away or never spoke: close without an answer.
    Silent,
    Answer(u16),
}

fn peer_ip<S: GetSocketDigest + ?Sized>(stream: &S) -> Option<IpAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeaderGuard<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let due = Instant::now() + self.deadlines.header;
        let plan = self.plan(&stream);
        let (stream, _slot, protocol) = match plan.filter(|p| p.proxy_protocol || p.tls.is_some()) {
            None => {
                // Dropping the stream closes the connection unread.
                let slot = self.connections.admit(peer_ip(&*stream))?;
                (stream, slot, Protocol::Http1)
            }
            Some(plan) => self.start(plan, stream, due).await?,
        };
        let clock = HeadClock::new();
        let h2c = plan.is_some_and(|p| p.h2c);
        let mut stream = GuardedStream::new(stream, clock.clone(), self.deadlines, due, protocol);
        if protocol == Protocol::Http1 {
            match self.read_head(&mut stream, h2c).await {
                Ok((head, detected)) => {
                    if detected == Protocol::Http1 {
                        clock.first_head_checked();
                    }
                    stream = stream.with_protocol(detected);
                    stream.rewind(head.freeze());
                }
                Err(Refusal::Silent) => return None,
                Err(Refusal::Answer(status)) => {
                    let _ = write_error(&mut stream, status).await;
                    return None;
                }
            }
        }
        clock
            .scope(self.inner.process_new(Box::new(stream), shutdown))
            .await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

impl<A> HeaderGuard<A> {
    /// A connection's start below HTTP: its PROXY header, its slot, its TLS handshake.
    async fn start(
        &self,
        plan: &ListenerPlan,
        stream: Stream,
        due: Instant,
    ) -> Option<(Stream, Slot, Protocol)> {
        // What Pingora accepted on a TCP listener; TLS and the PROXY header need it as such.
        let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() else {
            log::error!("an accepted connection is not a TCP stream");
            return None;
        };
        if plan.proxy_protocol && peer_ip(&*l4).is_some_and(|ip| self.trusted_proxies.contains(ip)) {
            take_proxy_header(&mut l4, due).await?;
        }
        // The client's address: the PROXY header's, when one was read.
        let slot = self.connections.admit(peer_ip(&*l4))?;
        let Some(acceptor) = &plan.tls else {
            return Some((l4, slot, Protocol::Http1));
        };
        let tls = match timeout_at(due, acceptor.tls_handshake(*l4)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                log::debug!("TLS handshake failed: {e}");
                return None;
            }
            Err(_) => {
                log::debug!("TLS handshake not done within client.header_timeout_ms");
                return None;
            }
        };
        let protocol = match tls.selected_alpn_proto() {
            Some(ALPN::H2) => Protocol::Http2,
            _ => Protocol::Http1,
        };
        Some((Box::new(tls), slot, protocol))
    }
}

/// Reads a PROXY header from a trusted proxy before anything else (a TLS
/// ClientHello too), by the head's deadline, and makes its client address the
/// connection's peer for everything after: caps, limits, logs, X-Forwarded-For.
async fn take_proxy_header(l4: &mut L4Stream, due: Instant) -> Option<()> {
    match timeout_at(due, proxy_protocol::read_header(l4)).await {
        Ok(Ok(ProxyHeader::Proxied { source, destination })) => {
            let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
            let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(source)));
            let _ = digest.local_addr.set(Some(PingoraAddr::Inet(destination)));
            l4.set_socket_digest(digest);
            Some(())
        }
        Ok(Ok(ProxyHeader::Local)) => Some(()),
        Ok(Err(e)) => {
            log::warn!("PROXY protocol: {e}; connection closed");
            None
        }
        Err(_) => {
            log::debug!("PROXY protocol: no header within client.header_timeout_ms");
            None
        }
    }
}

impl<A> HeaderGuard<A> {
    /// The first head, read under the stream's header deadline; on an h2c listener,
    /// an HTTP/2 preface instead is handed on as such.
    async fn read_head(
        &self,
        stream: &mut GuardedStream,
        h2c: bool,
    ) -> Result<(BytesMut, Protocol), Refusal> {
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            match stream.read_buf(&mut buf).await {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut && !buf.is_empty() => {
                    return Err(Refusal::Answer(408))
                }
                Err(_) | Ok(0) => return Err(Refusal::Silent),
                Ok(_) => {}
            }
            if h2c && H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())]) {
                if buf.len() >= H2_PREFACE.len() {
                    return Ok((buf, Protocol::H2c));
                }
                continue;
            }
            if let Some(end) = head::head_end(&buf) {
                return match head::check(&buf[..end], self.limits) {
                    Ok(()) => Ok((buf, Protocol::Http1)),
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
    let request_id = error_body::RequestId::new();
    let request_id = request_id.as_str();
    let body = error_body::error_body(status, request_id);
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
