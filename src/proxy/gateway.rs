//! The gateway: what its Pingora phases (`phases`) share, and the request and
//! response heads it writes, pure functions of a head and the request's context
//! (benchmarked and tested without a session).

mod phases;

use super::ctx::RequestCtx;
use super::decide::{Decider, Verdict};
use super::forward::{Forwarding, Hop};
use super::pace::Pace;
use super::{failure, host, respond};
use crate::config::{ClientLimits, ProxyAction};
use crate::connection::head::HeadLimits;
use crate::policy::{Attempt, RoutePolicy};
use crate::ratelimit;
use crate::telemetry::Telemetry;
use crate::traces::context::{TRACEPARENT, TRACESTATE};
use crate::traces::{Finished, Tracer};
use crate::upstream::Pool;
use crate::vocab::answer::Answer;
use crate::vocab::error_body::REQUEST_ID;
use crate::vocab::ids::{ById, RouteId, UpstreamId};
use http::{request, response};
use pingora_core::modules::http::compression::ResponseCompression;
use pingora_error::Result;
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Pooled upstream connections idle longer than this are closed.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

pub struct Gateway {
    decider: Decider,
    forwarding: Forwarding,
    pools: Arc<ById<UpstreamId, Pool>>,
    limits: HeadLimits,
    keepalive_timeout_s: u64,
    telemetry: Arc<Telemetry>,
    /// Set from a graceful upgrade or stop on: answers close their connection.
    draining: Arc<AtomicBool>,
    /// Some route compresses responses: only then is Pingora's compression module
    /// on (it reads `Accept-Encoding` on every request), and each request sets its
    /// route's level.
    compression: bool,
    pace: Pace,
    /// Where tracing is configured: samples requests and queues their spans.
    tracer: Option<Arc<Tracer>>,
}

impl Gateway {
    pub fn new(
        decider: Decider,
        pools: Arc<ById<UpstreamId, Pool>>,
        client: &ClientLimits,
        telemetry: Arc<Telemetry>,
        tier_names: &[String],
        draining: Arc<AtomicBool>,
    ) -> Self {
        Gateway {
            forwarding: Forwarding::new(decider.auth.as_ref(), tier_names),
            compression: decider.routes.routes().iter().any(|r| r.policies.compresses()),
            decider,
            pools,
            telemetry,
            limits: HeadLimits {
                max_bytes: client.max_header_bytes,
                max_headers: client.max_headers,
            },
            keepalive_timeout_s: client.keepalive_timeout_s,
            draining,
            pace: Pace::new(client),
            tracer: None,
        }
    }

    pub fn with_tracer(self, tracer: Option<Arc<Tracer>>) -> Self {
        Gateway { tracer, ..self }
    }

    /// Keep-alive for this response: off while draining, so the client reconnects.
    fn keepalive(&self) -> Option<u64> {
        (!self.draining.load(Ordering::Relaxed)).then_some(self.keepalive_timeout_s)
    }

    /// This response's compression level (0: none), where a route may compress.
    fn compress_at(&self, session: &mut Session, level: u32) {
        if !self.compression {
            return;
        }
        if let Some(c) = session.downstream_modules_ctx.get_mut::<ResponseCompression>() {
            c.adjust_level(level);
        }
    }

    pub fn limits(&self) -> HeadLimits {
        self.limits
    }

    /// What `request_filter` decides, for benchmarks and tests without a session.
    pub fn decide(
        &self,
        req: &RequestHeader,
        peer: Option<std::net::IpAddr>,
        ctx: &mut RequestCtx,
        now_ns: u64,
    ) -> Verdict<'_> {
        self.decider.decide(req, peer, ctx, now_ns)
    }

    fn route(&self, ctx: &RequestCtx) -> Option<&crate::config::Route> {
        ctx.route.map(|id| &self.decider.routes.routes()[id])
    }

    /// What applies to a proxied request's route.
    fn proxy_action(&self, ctx: &RequestCtx) -> Option<&ProxyAction> {
        self.route(ctx).and_then(|r| r.proxy())
    }

    /// The route's policies, in order (none before routing).
    fn policies(&self, route: Option<RouteId>) -> impl Iterator<Item = &dyn RoutePolicy> {
        let route = route.map(|id| &self.decider.routes.routes()[id]);
        route.into_iter().flat_map(|r| r.policies.iter())
    }

    /// Tells the request's policies of an upstream attempt's event.
    fn attempt(&self, ctx: &mut RequestCtx, attempt: Attempt) {
        for policy in self.policies(ctx.route) {
            policy.upstream_attempt(&attempt, &mut ctx.policy_notes);
        }
    }

    /// A gateway-made answer, with what the route's policies add to it, written.
    async fn answer(&self, session: &mut Session, mut answer: Answer<'_>, ctx: &RequestCtx) -> Result<()> {
        for policy in self.policies(ctx.route) {
            policy.answer_head(&mut answer.headers, &ctx.policy_notes);
        }
        respond::send(session, answer, ctx.request_id.as_str()).await
    }

    /// The upstream request head of one attempt: the path (normalized, the route's
    /// prefix stripped), forwarding headers, the caller's identity, the route's
    /// rules. A pure function of the head and the context, so benchmarks run it too.
    pub fn upstream_head(&self, upstream: &mut request::Parts, ctx: &RequestCtx, hop: Hop) -> Result<()> {
        let route = self.route(ctx);
        let strip = route
            .filter(|r| r.proxy().is_some_and(|p| p.strip_prefix))
            .map(|r| r.matching.path_prefix.as_str());
        self.forwarding.rewrite(upstream, ctx, strip, hop)?;
        if let Some(trace) = &ctx.trace {
            upstream.headers.insert(TRACEPARENT, trace.traceparent());
            if !trace.keeps_tracestate() {
                upstream.headers.remove(TRACESTATE);
            }
        }
        // Most routes have no policy: their requests build no header-rule variables.
        if route.is_some_and(|r| !r.policies.is_empty()) {
            let vars = self.forwarding.vars(ctx);
            for policy in self.policies(ctx.route) {
                policy.upstream_request(upstream, &vars);
            }
        }
        Ok(())
    }

    /// What the gateway adds to a proxied response's head: the request id, the
    /// rate-limit headers, then what the route's policies add.
    pub fn response_head(&self, response: &mut response::Parts, ctx: &mut RequestCtx) {
        // Room for the request id and the rate-limit headers at once.
        response.headers.reserve(7);
        response.headers.insert(REQUEST_ID, ctx.request_id.header());
        if let Some(outcome) = &ctx.limit {
            ratelimit::headers::insert(&mut response.headers, &self.decider.limiter, outcome);
        }
        if self.route(ctx).is_none_or(|r| r.policies.is_empty()) {
            return;
        }
        let mut notes = std::mem::take(&mut ctx.policy_notes);
        let vars = self.forwarding.vars(ctx);
        for policy in self.policies(ctx.route) {
            policy.response_head(response, &vars, &mut notes);
        }
        ctx.policy_notes = notes;
    }

    /// A finished request as its SERVER span describes it.
    fn finished<'a>(
        &'a self,
        session: &'a Session,
        ctx: &'a RequestCtx,
        status: u16,
        error: Option<&pingora_error::Error>,
    ) -> Finished<'a> {
        let req = session.req_header();
        Finished {
            method: req.method.as_str(),
            path: ctx.normalized_path.as_deref().unwrap_or(req.uri.path()),
            scheme: if over_tls(session) { "https" } else { "http" },
            host: host::request_host(req).ok().flatten(),
            client: ctx.client_ip,
            route: self
                .route(ctx)
                .map(|r| (r.name.as_str(), r.matching.path_prefix.as_str())),
            status,
            protocol: match req.version {
                http::Version::HTTP_2 => "2",
                http::Version::HTTP_10 => "1.0",
                _ => "1.1",
            },
            user_agent: req
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
            consumer: ctx.identity.as_ref().map(|i| &*i.consumer),
            tier: ctx
                .identity
                .as_ref()
                .map(|i| self.decider.limiter.tier_name(i.tier)),
            limited: ctx.limited().map(|s| s.as_str()),
            auth_failure: ctx.auth_failure.map(|f| f.reason()),
            error: error
                .filter(|_| status >= 500 || status == 499)
                .and_then(failure::error_type),
        }
    }

    /// Reports the current attempt to its target's breaker, once: `Some(success)`,
    /// or `None` to hand an unused admission back.
    fn settle(&self, ctx: &mut RequestCtx, outcome: Option<bool>) {
        if let Some(pending) = ctx.pending.take() {
            self.pools[pending.upstream].report(pending.ticket, outcome);
        }
    }
}

/// Whether the client's connection is TLS.
pub(super) fn over_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}
