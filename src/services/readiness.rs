//! Flips `/ready` once every proxy listener accepts a TCP connection (proof that
//! the listeners are really up, not merely configured) and the first read of a
//! JWKS URL has been tried, for at most the fetch timeout: a fresh instance behind
//! a load balancer should not refuse tokens its peers accept, nor wait for ever on
//! an identity provider that is down (the config's own keys work meanwhile). With
//! Redis it also waits for the runtime consumers to be loaded, unless Redis fails
//! a round (they come when it returns) or a minute passes.

use super::jwks::FETCH_TIMEOUT;
use crate::auth::jwt::JwksRefresh;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The longest `/ready` waits for the runtime consumers from a Redis that answers.
const FIRST_ROUND_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ReadinessProbe {
    pub listeners: Vec<SocketAddr>,
    pub ready: Arc<AtomicBool>,
    pub jwks: Option<Arc<JwksRefresh>>,
    pub first_round: Option<tokio::sync::watch::Receiver<bool>>,
}

/// A wildcard listen address is probed on loopback.
fn probe_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

#[async_trait]
impl BackgroundService for ReadinessProbe {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        for addr in self.listeners.iter().copied().map(probe_addr) {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    break;
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
        if let Some(jwks) = &self.jwks {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::timeout(FETCH_TIMEOUT, jwks.first_attempt()) => {}
            }
            if !jwks.loaded() {
                log::warn!(
                    "ready without the JWKS: it is not loaded yet; the config's own keys are in force"
                );
            }
        }
        if let Some(mut first_round) = self.first_round.clone() {
            tokio::select! {
                _ = shutdown.changed() => return,
                loaded = tokio::time::timeout(FIRST_ROUND_TIMEOUT, first_round.wait_for(|done| *done)) => {
                    if loaded.is_err() {
                        log::warn!("ready without the runtime consumers: redis answers but they are not loaded yet");
                    }
                }
            }
        }
        self.ready.store(true, Ordering::Release);
        log::info!("ready: all proxy listeners accept connections");
    }
}
