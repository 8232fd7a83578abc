//! `impl ProxyHttp`: the phases in the order Pingora calls them. Each phase
//! sequences calls (the decision, the route's policies, target selection, the
//! upstream head rewrite) and turns their outcomes into answers.

use super::{over_tls, Gateway, UPSTREAM_IDLE};
use crate::connection::head;
use crate::connection::head_clock;
use crate::policy::Attempt;
use crate::proxy::ctx::{PendingAttempt, RequestCtx};
use crate::proxy::decide::Verdict;
use crate::proxy::failure;
use crate::proxy::forward::{is_websocket, switched_as_asked, Hop, X_FORWARDED_PROTO};
use crate::proxy::{host, parts, respond};
use crate::telemetry::{AccessLine, RequestRecord};
use crate::upstream::pool::Selection;
use crate::vocab::answer::Answer;
use crate::vocab::clock::unix_now;
use crate::vocab::error_body::{RequestId, REQUEST_ID};
use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora_core::modules::http::compression::ResponseCompressionBuilder;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::time::Duration;

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: Pingora copies each request's whole future into a box, and the
    /// context is part of it unless it is a pointer.
    type CTX = Box<RequestCtx>;

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        if self.compression {
            modules.add_module(ResponseCompressionBuilder::enable(1));
        }
    }

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::default()
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Box<RequestCtx>) -> Result<()> {
        ctx.started = Some(std::time::Instant::now());
        let checked = head_clock::head_received();
        self.pace.bound_h2_writes(session);
        self.telemetry.state.inflight.inc();
        ctx.request_id = RequestId::from_request(session.req_header().headers.get(REQUEST_ID));
        // Only where the client keeps the connection: HTTP/1.0 without keep-alive and
        // `Connection: close` stay closed.
        if session.get_keepalive().is_some() {
            session.set_keepalive(self.keepalive());
        }
        // Later requests on a kept-alive connection never pass the guard: check them here.
        // HTTP/2's framing replaces the head checks but for the count of fields.
        let checks = match session.as_downstream().as_http1() {
            Some(h1) if !checked => head::check(&h1.get_headers_raw_bytes(), self.limits),
            _ if session.as_downstream().is_http2() => {
                head::check_h2_fields(&session.req_header().headers, self.limits)
            }
            _ => Ok(()),
        };
        if let Err(problem) = checks {
            let answer = Answer::error(problem.status(), ctx.request_id.as_str()).closing();
            respond::send(session, answer, ctx.request_id.as_str()).await?;
            return Error::e_explain(ErrorType::HTTPStatus(problem.status()), "rejected request head");
        }
        if let Some(tracer) = &self.tracer {
            ctx.trace = Some(tracer.start(&session.req_header().headers));
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Box<RequestCtx>) -> Result<bool> {
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        match self
            .decider
            .decide(session.req_header(), peer, ctx, unix_now().as_nanos() as u64)
        {
            Verdict::Proxy => {
                ctx.websocket_idle = self
                    .proxy_action(ctx)
                    .and_then(|p| p.websocket_idle)
                    .filter(|_| is_websocket(&session.req_header().headers));
                self.compress_at(session, ctx.policy_notes.compression_level.unwrap_or(0));
                let keep_underscores = self.route(ctx).is_some_and(|r| r.access.allow_underscore_headers);
                let implied_host = host::implied_host(session.req_header());
                parts::edit_request(session.req_header_mut(), |req| {
                    if let Some(host) = implied_host {
                        req.headers.insert(header::HOST, host);
                    }
                    self.forwarding
                        .strip_client_headers(&mut req.headers, keep_underscores);
                });
                Ok(false)
            }
            Verdict::Answer(answer) => {
                self.answer(session, answer, ctx).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        // After a 101 the client's bytes are the new protocol's (WebSocket frames), not a body.
        if session.was_upgraded() {
            return Ok(());
        }
        if let (Some(upload), Some(chunk)) = (ctx.upload.as_mut(), body.as_ref()) {
            self.pace.received(session, upload, chunk.len())?;
        }
        for policy in self.policies(ctx.route) {
            policy.request_body(
                body.as_deref().unwrap_or_default(),
                end_of_stream,
                &mut ctx.policy_notes,
            );
        }
        let limit = self.proxy_action(ctx).and_then(|p| p.max_body_bytes);
        if let (Some(limit), Some(chunk)) = (limit, body.as_ref()) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > limit {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over max_body_bytes");
            }
        }
        Ok(())
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Box<RequestCtx>) -> Result<()> {
        for policy in self.policies(ctx.route) {
            policy.cache_request(session.req_header(), &mut ctx.policy_notes);
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Box<RequestCtx>) -> Result<Box<HttpPeer>> {
        let Some(upstream) = self.route(ctx).and_then(|r| r.upstream()) else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a proxy route");
        };
        let pool = &self.pools[upstream];
        // A retry re-runs this phase: the previous attempt was settled where it failed,
        // or, when Pingora retries a stale pooled connection, it is neutral.
        self.settle(ctx, None);
        // consistent_hash keeps a consumer (else a client address) on one target.
        let ip_key = match session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()) {
            Some(std::net::IpAddr::V4(ip)) => ip.to_ipv6_mapped().octets(),
            Some(std::net::IpAddr::V6(ip)) => ip.octets(),
            None => [0; 16],
        };
        let key = ctx
            .identity
            .as_ref()
            .map_or(&ip_key[..], |id| id.consumer.as_bytes());
        let target = match pool.select(key, &ctx.failed_targets) {
            Selection::Target { addr, ticket } => {
                ctx.pending = ticket.map(|ticket| PendingAttempt { upstream, ticket });
                addr
            }
            Selection::Unavailable { retry_after_s } if ctx.failed_targets.is_empty() => {
                ctx.retry_after_s = Some(retry_after_s);
                self.decider.give_back_limits(ctx);
                return Error::e_explain(
                    ErrorType::HTTPStatus(503),
                    format!("no healthy target in {}", pool.name),
                );
            }
            Selection::Unavailable { .. } => {
                return Error::e_explain(ErrorType::ConnectRefused, "every target failed").map_err(
                    |mut e: Box<Error>| {
                        e.esource = ErrorSource::Upstream;
                        e
                    },
                );
            }
        };
        ctx.target = Some(target);
        if let Some(trace) = &mut ctx.trace {
            trace.attempt(target);
        }
        self.attempt(ctx, Attempt::Chosen(target));
        ctx.upstream_started = Some(std::time::Instant::now());
        ctx.attempts += 1;
        let mut peer = HttpPeer::new(target, false, String::new());
        pool.transport.apply(&mut peer);
        peer.options.connection_timeout = Some(pool.connect_timeout);
        peer.options.read_timeout = Some(ctx.websocket_idle.unwrap_or(pool.read_timeout));
        peer.options.write_timeout = Some(pool.write_timeout);
        peer.options.idle_timeout = Some(UPSTREAM_IDLE);
        // request_filter has stripped the hop-by-hop headers in one pass over the
        // names (Forwarding::strip_client_headers); Pingora's standard pass would
        // remove thirteen names again, ~2.5k instructions a request.
        peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::preserve();
        Ok(Box::new(peer))
    }

    #[allow(clippy::too_many_arguments)] // Pingora's signature
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        self.attempt(ctx, Attempt::Connected { reused });
        if let Some(trace) = &mut ctx.trace {
            trace.connected(reused);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Box<RequestCtx>,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(target) = ctx.target {
            ctx.failed_targets.push(target);
        }
        self.settle(ctx, Some(false));
        self.attempt(ctx, Attempt::Failed);
        if let Some(trace) = &mut ctx.trace {
            trace.failed(failure::error_type(&e));
        }
        let retries = self
            .route(ctx)
            .and_then(|r| r.upstream())
            .map_or(0, |u| self.pools[u].retries);
        e.set_retry(ctx.attempts <= retries);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Box<RequestCtx>,
        client_reused: bool,
    ) -> Box<Error> {
        // A client that left mid-response is not the attempt's failure.
        if let Some(trace) = ctx
            .trace
            .as_mut()
            .filter(|_| *e.esource() == ErrorSource::Upstream)
        {
            trace.failed(failure::error_type(&e));
        }
        let mut e = e.more_context(format!("peer: {peer}"));
        // Resend only idempotent requests whose body is still whole, and only when a
        // pooled connection went stale; never a fresh attempt that may have been processed.
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let proxy_said = peer.is_some_and(|p| self.decider.trusted_proxies.contains(p))
            && upstream.headers.contains_key(X_FORWARDED_PROTO);
        let proto = match over_tls(session) {
            _ if proxy_said => None,
            true => Some("https"),
            false => Some("http"),
        };
        if ctx.upload.is_none() {
            ctx.upload = self.pace.start_upload(&session.req_header().headers);
        }
        let host = host::forwarded_host(session.req_header());
        parts::edit_request(upstream, |upstream| {
            self.upstream_head(upstream, ctx, Hop { peer, proto, host })
        })
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        ctx.upstream_elapsed = ctx.upstream_started.map(|t| t.elapsed());
        // A switch of protocols nobody asked for, or to another protocol than the one
        // asked for (`h2c` to a WebSocket request), would hand the client raw upstream bytes.
        if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS
            && !switched_as_asked(&session.req_header().headers, &upstream_response.headers)
        {
            self.settle(ctx, Some(false));
            return Error::e_explain(ErrorType::HTTPStatus(502), "101 to a protocol nobody asked for")
                .map_err(|mut e: Box<Error>| {
                    e.esource = ErrorSource::Upstream;
                    e
                });
        }
        // A 5xx answer counts against the target's breaker; a 4xx is the caller's doing.
        self.settle(ctx, Some(upstream_response.status.as_u16() < 500));
        self.attempt(ctx, Attempt::Answered(upstream_response.status.as_u16()));
        if let Some(trace) = &mut ctx.trace {
            trace.answered(upstream_response.status.as_u16());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if response.status == http::StatusCode::SWITCHING_PROTOCOLS
            && !ctx.websocket_open
            && is_websocket(&session.req_header().headers)
        {
            ctx.websocket_open = true;
            self.telemetry.state.websockets_open.inc();
            head_clock::websocket_opened();
            // The client's side of an idle session is bounded like the upstream's.
            if let Some(idle) = ctx.websocket_idle {
                session.set_read_timeout(Some(idle));
            }
        }
        if self.keepalive().is_none() {
            session.set_keepalive(None);
        }
        let route = self.route(ctx);
        ctx.delivery = self.pace.deliver(
            session,
            response,
            ctx.started,
            route.and_then(|r| r.proxy()?.response_timeout),
        );
        parts::edit_response(response, |response| self.response_head(response, ctx));
        self.compress_at(session, ctx.policy_notes.compression_level.unwrap_or(0));
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<Duration>> {
        if let Some(delivery) = ctx.delivery {
            self.pace
                .send_chunk(session, delivery, body.as_ref().map_or(0, Bytes::len))?;
        }
        for policy in self.policies(ctx.route) {
            policy.response_body(
                body.as_deref().unwrap_or_default(),
                end_of_stream,
                &mut ctx.policy_notes,
            );
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        head_clock::request_done();
        // The client went away before the upstream answered: the target is not to blame.
        self.settle(ctx, None);
        let Some(started) = ctx.started else { return };
        self.telemetry.state.inflight.dec();
        if ctx.websocket_open {
            self.telemetry.state.websockets_open.dec();
        }
        let duration = started.elapsed();
        // 499: the client left before any answer (NGINX's convention).
        let status = session.response_written().map_or(499, |r| r.status.as_u16());
        let route = self.route(ctx);
        let upstream = route.and_then(|r| r.upstream());
        let now_ms = unix_now().as_millis() as u64;
        let limited = ctx.limited();
        for policy in self.policies(ctx.route) {
            policy.logging(status, &ctx.policy_notes);
        }
        let method = &session.req_header().method;
        self.telemetry.record(
            &RequestRecord {
                route: ctx.route,
                method,
                status,
                duration,
                upstream,
                upstream_duration: ctx.upstream_elapsed,
                limited,
                auth_failure: ctx.auth_failure,
                limited_key: ctx.limit.as_ref().and_then(|o| o.limited_key.as_ref()),
            },
            now_ms / 1000,
        );
        if self.telemetry.access_log_enabled() {
            let req = session.req_header();
            self.telemetry.log_access(&AccessLine {
                time_ms: now_ms,
                request_id: ctx.request_id.as_str(),
                route: route.map(|r| r.name.as_str()),
                method: req.method.as_str(),
                path: ctx.normalized_path.as_deref().unwrap_or(req.uri.path()),
                status,
                latency_ms: duration.as_secs_f64() * 1000.0,
                upstream: ctx.target,
                consumer: ctx.identity.as_ref().map(|i| &*i.consumer),
                limited,
                client_ip: ctx.client_ip,
                trace: ctx.trace.as_ref().map(|t| (t.trace_id, t.span_id)),
            });
        }
        if let (Some(tracer), Some(trace)) = (&self.tracer, ctx.trace.take()) {
            if trace.sampled() {
                tracer.finish(trace, &self.finished(session, ctx, status, e));
            }
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
    ) -> FailToProxy {
        // An attempt still open here failed on the upstream's side (a timeout, a reset),
        // or was abandoned by the client.
        let upstream_fault = *e.esource() == ErrorSource::Upstream;
        self.settle(ctx, upstream_fault.then_some(false));
        let status = failure::status(e);
        // Nothing can be written once the response has started or the client is gone.
        if status > 0 && session.response_written().is_none() {
            if ctx.request_id.is_empty() {
                ctx.request_id = RequestId::new();
            }
            let mut answer = Answer::error(status, ctx.request_id.as_str()).closing();
            if let Some(s) = ctx.retry_after_s {
                answer = answer.with_header("retry-after", s.to_string());
            }
            if let Err(write_err) = self.answer(session, answer, ctx).await {
                log::debug!("could not send {status} to the client: {write_err}");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }
}
