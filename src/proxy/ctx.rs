//! Per-request state, created by `new_ctx()` and carried through every phase.

use super::pace::{Delivery, Upload};
use crate::policy::Notes;
use crate::ratelimit::Outcome;
use crate::traces::RequestTrace;
use crate::upstream::pool::BreakerTicket;
use crate::vocab::auth_failure::Failure;
use crate::vocab::error_body::RequestId;
use crate::vocab::identity::Identity;
use crate::vocab::ids::{RouteId, UpstreamId};
use crate::vocab::limit_scope::Scope;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct RequestCtx {
    /// When the request head was read; `None` until then (and for metrics, "not counted").
    pub started: Option<Instant>,
    /// The client address limits and logs use (X-Forwarded-For only from trusted proxies).
    pub client_ip: Option<IpAddr>,
    pub upstream_started: Option<Instant>,
    /// Time until the upstream's response header.
    pub upstream_elapsed: Option<Duration>,
    /// The caller's sane X-Request-Id or a new one; on every response and sent upstream.
    pub request_id: RequestId,
    pub route: Option<RouteId>,
    /// The normalized path when it differs from what the client sent.
    pub normalized_path: Option<String>,
    /// The target of the current attempt.
    pub target: Option<SocketAddr>,
    /// Targets that failed this request; retries skip them.
    pub failed_targets: Vec<SocketAddr>,
    /// The current attempt's breaker admission, until settled.
    pub pending: Option<PendingAttempt>,
    /// Upstream attempts so far; retries re-run `upstream_peer`, which counts here once.
    pub attempts: u32,
    pub body_bytes: u64,
    /// The authenticated caller; `None` for anonymous callers.
    pub identity: Option<Identity>,
    /// Why credentials were refused, for metrics and the access log.
    pub auth_failure: Option<Failure>,
    /// The rate-limit decision, for the response headers, metrics and the access log.
    pub limit: Option<Outcome>,
    /// What the route's policies noted for their later phases.
    pub policy_notes: Notes,
    /// Seconds for Retry-After on a 503 this gateway made.
    pub retry_after_s: Option<u64>,
    /// A WebSocket upgrade on a route with its own idle timeout: that timeout.
    pub websocket_idle: Option<Duration>,
    /// The upstream switched protocols: a WebSocket session is open.
    pub websocket_open: bool,
    /// The request body, read under `min_receive_rate_bps`.
    pub upload: Option<Upload>,
    /// The response, sent under `min_send_rate_bps` or the route's `response_timeout_ms`.
    pub delivery: Option<Delivery>,
    /// The request's place in its trace, where tracing is configured.
    pub trace: Option<RequestTrace>,
}

/// An upstream attempt its target's breaker admitted and has not heard back about.
#[derive(Clone, Copy, Debug)]
pub struct PendingAttempt {
    pub upstream: UpstreamId,
    pub ticket: BreakerTicket,
}

impl RequestCtx {
    /// The scope that refused this request with 429, for the access log and metrics.
    pub fn limited(&self) -> Option<Scope> {
        self.limit.as_ref().and_then(|o| o.refused)
    }
}
