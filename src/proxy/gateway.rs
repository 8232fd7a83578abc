//! `impl ProxyHttp`: the phases in the order Pingora calls them. Each phase
//! sequences pure decisions (routing, head checks, target selection) and turns
//! their outcomes into answers.

use super::ctx::RequestCtx;
use super::head::{self, HeadLimits};
use super::respond::{self, REQUEST_ID};
use crate::auth::{Authenticator, Failure};
use crate::clock::unix_now;
use crate::config::schema::{AuthPolicy, ClientSpec};
use crate::config::{Route, RouteAction};
use crate::ratelimit::{self, RateLimiter};
use crate::routing::{normalize_path, RouteTable};
use crate::telemetry::{AccessLine, LimitedKey, RequestRecord, Telemetry};
use crate::upstream::pool::Selection;
use crate::upstream::Pool;
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Pooled upstream connections idle longer than this are closed.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);
const MAX_REQUEST_ID_LEN: usize = 128;

pub struct Gateway {
    routes: RouteTable,
    pools: Arc<Vec<Pool>>,
    limits: HeadLimits,
    keepalive_timeout_s: u64,
    auth: Option<Authenticator>,
    limiter: Arc<RateLimiter>,
    telemetry: Arc<Telemetry>,
    /// Headers only the gateway may set upstream: any client copy is removed.
    gateway_headers: Vec<HeaderName>,
    tier_names: Vec<HeaderValue>,
}

impl Gateway {
    pub fn new(
        routes: RouteTable,
        pools: Vec<Pool>,
        client: &ClientSpec,
        auth: Option<Authenticator>,
        limiter: Arc<RateLimiter>,
        telemetry: Arc<Telemetry>,
        tier_names: &[String],
    ) -> Self {
        let mut gateway_headers = vec![CONSUMER_ID, CONSUMER_TIER];
        if let Some(auth) = &auth {
            gateway_headers.extend(auth.claim_headers().cloned());
            gateway_headers.extend(auth.api_key_header().cloned());
        }
        Gateway {
            routes,
            pools: Arc::new(pools),
            auth,
            limiter,
            telemetry,
            gateway_headers,
            tier_names: tier_names
                .iter()
                .map(|t| HeaderValue::from_str(t).unwrap_or(HeaderValue::from_static("unknown")))
                .collect(),
            limits: HeadLimits {
                max_bytes: client.max_header_bytes,
                max_headers: client.max_headers,
            },
            keepalive_timeout_s: client.keepalive_timeout_s,
        }
    }

    pub fn limits(&self) -> HeadLimits {
        self.limits
    }

    pub fn pools(&self) -> Arc<Vec<Pool>> {
        self.pools.clone()
    }
}

const CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
const CONSUMER_TIER: HeaderName = HeaderName::from_static("x-consumer-tier");

/// A new request id: 128 random bits in hex.
pub fn new_request_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// A caller's id is kept only if it is short and plain, so it is safe in logs and headers.
fn sane_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn request_host(req: &RequestHeader) -> Option<&str> {
    let raw = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))?;
    // Strip a port, keeping IPv6 literals whole.
    Some(match raw.rfind(':') {
        Some(i) if !raw[i..].contains(']') => &raw[..i],
        _ => raw,
    })
}

/// Headers that describe one hop and must not be forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
];

fn strip_hop_by_hop(req: &mut RequestHeader, gateway_headers: &[HeaderName]) {
    let upgrade = req.headers.contains_key(header::UPGRADE);
    let named: Vec<String> = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "upgrade")
        .collect();
    for name in named {
        req.remove_header(name.as_str());
    }
    for name in HOP_BY_HOP {
        // A protocol upgrade (WebSocket) needs Connection and Upgrade to reach the upstream.
        if upgrade && (name == "connection" || name == "upgrade") {
            continue;
        }
        req.remove_header(name);
    }
    for name in gateway_headers {
        req.remove_header(name);
    }
}

/// What `request_filter` must do with a request, decided without any I/O.
pub enum Verdict<'a> {
    Proxy,
    /// A gateway-made answer.
    Answer {
        status: u16,
        content_type: &'a str,
        body: Bytes,
        extra: Vec<(&'static str, String)>,
        /// Close the connection after it (the body was not read, or framing is not trusted).
        close: bool,
    },
}

impl Verdict<'_> {
    fn error(status: u16, request_id: &str, extra: Vec<(&'static str, String)>, close: bool) -> Self {
        Verdict::Answer {
            status,
            content_type: "application/json",
            body: respond::error_body(status, request_id),
            extra,
            close,
        }
    }
}

impl Gateway {
    /// Route → auth → local bucket → global window → body limit: everything
    /// `request_filter` decides, as a pure function of the request head, the peer
    /// address and the time, so it can be tested and measured without a connection.
    pub fn decide(
        &self,
        req: &RequestHeader,
        peer: Option<IpAddr>,
        ctx: &mut RequestCtx,
        now_ns: u64,
    ) -> Verdict<'_> {
        let Some(path) = normalize_path(req.uri.path()) else {
            return Verdict::error(400, &ctx.request_id, Vec::new(), true);
        };
        let Some((index, route)) = self.routes.find(request_host(req), &req.method, &path) else {
            return Verdict::error(404, &ctx.request_id, Vec::new(), false);
        };
        ctx.route = Some(index);
        if let Cow::Owned(p) = path {
            ctx.normalized_path = Some(p);
        }

        if let Err(failure) = self.authenticate(req, route, ctx, now_ns) {
            ctx.auth_failure = Some(failure.reason());
            let status = failure.status();
            let extra = if status == 401 {
                vec![("www-authenticate", failure.www_authenticate().to_string())]
            } else {
                Vec::new()
            };
            return Verdict::error(status, &ctx.request_id, extra, false);
        }

        let client_ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |peer| {
            let forwarded = req.headers.get_all("x-forwarded-for");
            self.limiter
                .client_ip(peer, forwarded.iter().filter_map(|v| v.to_str().ok()))
        });
        ctx.client_ip = Some(client_ip);
        let caller = ctx.identity.as_ref().map(|i| (&i.consumer, i.tier));
        let outcome = self.limiter.check(index, caller, client_ip, route.cost, now_ns);
        if outcome.local.is_some() || outcome.global.is_some() {
            ctx.limit = Some(outcome);
        }
        if outcome.refused.is_some() {
            return Verdict::Answer {
                status: 429,
                content_type: "application/json",
                body: Bytes::from(ratelimit::headers::refused_body(&outcome, &ctx.request_id)),
                extra: ratelimit::headers::headers(&self.limiter, &outcome),
                close: false,
            };
        }

        match &route.action {
            RouteAction::Respond {
                status,
                body,
                content_type,
            } => Verdict::Answer {
                status: *status,
                content_type: content_type.as_str(),
                body: Bytes::copy_from_slice(body.as_bytes()),
                extra: ctx
                    .limit
                    .as_ref()
                    .map(|o| ratelimit::headers::headers(&self.limiter, o))
                    .unwrap_or_default(),
                close: false,
            },
            RouteAction::Proxy { .. } => {
                let declared = route.max_body_bytes.and_then(|_| {
                    req.headers
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                });
                if route
                    .max_body_bytes
                    .zip(declared)
                    .is_some_and(|(limit, n)| n > limit)
                {
                    return Verdict::error(413, &ctx.request_id, Vec::new(), true);
                }
                Verdict::Proxy
            }
        }
    }

    /// Reports the current attempt to its target's breaker, once: `Some(success)`,
    /// or `None` to hand an unused admission back.
    fn settle(&self, ctx: &mut RequestCtx, outcome: Option<bool>) {
        if let Some((upstream, index, admission)) = ctx.breaker.take() {
            self.pools[upstream].report(index, admission, outcome);
        }
    }

    /// The route's auth policy applied to the request's credentials; on success the
    /// caller (if any) is in `ctx.identity`.
    fn authenticate(
        &self,
        req: &RequestHeader,
        route: &Route,
        ctx: &mut RequestCtx,
        now_ns: u64,
    ) -> Result<(), Failure> {
        let Some(auth) = self.auth.as_ref().filter(|_| route.auth != AuthPolicy::None) else {
            return Ok(());
        };
        let mut identity = auth.authenticate(&req.headers, now_ns / 1_000_000_000)?;
        if let Some(id) = identity.as_mut() {
            if let Some(tier) = self.limiter.overrides.get(&id.consumer) {
                id.tier = tier;
            }
        }
        match (&identity, route.auth) {
            (None, AuthPolicy::Required) => return Err(Failure::Missing),
            (Some(id), _) if route.tiers.as_ref().is_some_and(|t| !t.contains(&id.tier)) => {
                return Err(Failure::TierForbidden)
            }
            (None, _) if route.tiers.is_some() => return Err(Failure::Missing),
            _ => {}
        }
        ctx.identity = identity;
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        ctx.started = Some(std::time::Instant::now());
        self.telemetry.inflight.inc();
        let id = session.req_header().headers.get(REQUEST_ID).map(|v| v.as_bytes());
        ctx.request_id = match id {
            Some(v) if sane_request_id(v) => String::from_utf8_lossy(v).into_owned(),
            _ => new_request_id(),
        };
        session.set_keepalive(Some(self.keepalive_timeout_s));
        // Later requests on a kept-alive connection never pass the guard: check them here.
        if let Some(h1) = session.as_downstream().as_http1() {
            if let Err(problem) = head::check(&h1.get_headers_raw_bytes(), self.limits) {
                respond::send_error(session, problem.status(), &ctx.request_id, &[], true).await?;
                return Error::e_explain(ErrorType::HTTPStatus(problem.status()), "rejected request head");
            }
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        match self.decide(session.req_header(), peer, ctx, unix_now().as_nanos() as u64) {
            Verdict::Proxy => {
                strip_hop_by_hop(session.req_header_mut(), &self.gateway_headers);
                Ok(false)
            }
            Verdict::Answer {
                status,
                content_type,
                body,
                extra,
                close,
            } => {
                respond::send(
                    session,
                    status,
                    content_type,
                    body,
                    &ctx.request_id,
                    &extra,
                    close,
                )
                .await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let limit = ctx.route.and_then(|i| self.routes.routes()[i].max_body_bytes);
        if let (Some(limit), Some(chunk)) = (limit, body.as_ref()) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > limit {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over max_body_bytes");
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let route = ctx.route.map(|i| &self.routes.routes()[i]);
        let Some(pool) = route.and_then(|r| r.upstream()).map(|u| &self.pools[u]) else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a proxy route");
        };
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
            Selection::Target { addr, breaker } => {
                if let (Some((index, admission)), Some(upstream)) =
                    (breaker, route.and_then(|r| r.upstream()))
                {
                    ctx.breaker = Some((upstream, index, admission));
                }
                addr
            }
            Selection::Unavailable { retry_after_s } if ctx.failed_targets.is_empty() => {
                ctx.retry_after_s = Some(retry_after_s);
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
        ctx.upstream_started = Some(std::time::Instant::now());
        ctx.attempts += 1;
        let mut peer = HttpPeer::new(target, false, String::new());
        peer.options.connection_timeout = Some(pool.connect_timeout);
        peer.options.read_timeout = Some(pool.read_timeout);
        peer.options.write_timeout = Some(pool.write_timeout);
        peer.options.idle_timeout = Some(UPSTREAM_IDLE);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(target) = ctx.target {
            ctx.failed_targets.push(target);
        }
        self.settle(ctx, Some(false));
        let retries = ctx
            .route
            .and_then(|i| self.routes.routes()[i].upstream())
            .map_or(0, |u| self.pools[u].retries);
        e.set_retry(ctx.attempts <= retries);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        _ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
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
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let route = ctx.route.map(|i| &self.routes.routes()[i]);
        let strip = match route.map(|r| &r.action) {
            Some(RouteAction::Proxy {
                strip_prefix: true, ..
            }) => route.map(|r| r.path_prefix.as_str()),
            _ => None,
        };
        if ctx.normalized_path.is_some() || strip.is_some() {
            let path = ctx.normalized_path.as_deref().unwrap_or(upstream.uri.path());
            let stripped = strip
                .and_then(|p| path.strip_prefix(p.trim_end_matches('/')))
                .unwrap_or(path);
            let mut uri = String::with_capacity(stripped.len() + 32);
            if !stripped.starts_with('/') {
                uri.push('/');
            }
            uri.push_str(stripped);
            if let Some(q) = upstream.uri.query() {
                uri.push('?');
                uri.push_str(q);
            }
            let uri = http::Uri::try_from(uri)
                .map_err(|e| Error::because(ErrorType::InternalError, "rewriting path", e))?;
            upstream.set_uri(uri);
        }

        let client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        if let Some(ip) = client_ip {
            let forwarded = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip.to_string(),
            };
            upstream.insert_header("x-forwarded-for", forwarded)?;
        }
        upstream.insert_header("x-forwarded-proto", "http")?;
        if let Some(host) = session.req_header().headers.get(header::HOST).cloned() {
            upstream.insert_header("x-forwarded-host", host)?;
        }
        upstream.insert_header(REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(identity) = &ctx.identity {
            upstream.insert_header(CONSUMER_ID, &*identity.consumer)?;
            if let Some(tier) = self.tier_names.get(identity.tier) {
                upstream.insert_header(CONSUMER_TIER, tier.clone())?;
            }
            for (name, value) in identity.headers.iter() {
                upstream.insert_header(name.clone(), value.clone())?;
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_elapsed = ctx.upstream_started.map(|t| t.elapsed());
        // A 5xx answer counts against the target's breaker; a 4xx is the caller's doing.
        self.settle(ctx, Some(upstream_response.status.as_u16() < 500));
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response.insert_header(REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(outcome) = &ctx.limit {
            for (name, value) in ratelimit::headers::headers(&self.limiter, outcome) {
                response.insert_header(name, value)?;
            }
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        // The client went away before the upstream answered: the target is not to blame.
        self.settle(ctx, None);
        let Some(started) = ctx.started else { return };
        self.telemetry.inflight.dec();
        let duration = started.elapsed();
        // 499: the client left before any answer (NGINX's convention).
        let status = session.response_written().map_or(499, |r| r.status.as_u16());
        let route = ctx.route.map(|i| &self.routes.routes()[i]);
        let upstream = route.and_then(|r| r.upstream());
        let now_ms = unix_now().as_millis() as u64;
        let limited = ctx.limited();
        let limited_key = limited.map(|_| match &ctx.identity {
            Some(id) => LimitedKey::Consumer(id.consumer.clone()),
            None => LimitedKey::Ip(ctx.client_ip.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))),
        });
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
                limited_key,
            },
            now_ms / 1000,
        );
        if self.telemetry.access_log_enabled() {
            let req = session.req_header();
            self.telemetry.log_access(&AccessLine {
                time_ms: now_ms,
                request_id: &ctx.request_id,
                route: route.map(|r| r.name.as_str()),
                method: req.method.as_str(),
                path: ctx.normalized_path.as_deref().unwrap_or(req.uri.path()),
                status,
                latency_ms: duration.as_secs_f64() * 1000.0,
                upstream: ctx.target,
                consumer: ctx.identity.as_ref().map(|i| &*i.consumer),
                limited,
                client_ip: ctx.client_ip,
            });
        }
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        // An attempt still open here failed on the upstream's side (a timeout, a reset),
        // or was abandoned by the client.
        let upstream_fault = *e.esource() == ErrorSource::Upstream;
        self.settle(ctx, upstream_fault.then_some(false));
        let status = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if *e.esource() == ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        // Nothing can be written once the response has started or the client is gone.
        if status > 0 && session.response_written().is_none() {
            if ctx.request_id.is_empty() {
                ctx.request_id = new_request_id();
            }
            let retry_after = ctx.retry_after_s.map(|s| [("retry-after", s.to_string())]);
            let extra: &[(&'static str, String)] = retry_after.as_ref().map_or(&[], |r| r.as_slice());
            if let Err(write_err) = respond::send_error(session, status, &ctx.request_id, extra, true).await {
                log::debug!("could not send {status} to the client: {write_err}");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(sane_request_id(b"abc-123_x.y:z"));
        assert!(!sane_request_id(b""));
        assert!(!sane_request_id(b"has space"));
        assert!(!sane_request_id(&[b'a'; 129]));
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(sane_request_id(id.as_bytes()));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        for (k, v) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-consumer-id", "spoofed"),
            ("traceparent", "00-abc-def-01"),
        ] {
            req.append_header(k, v).expect("header");
        }
        strip_hop_by_hop(&mut req, &[CONSUMER_ID]);
        for gone in ["connection", "x-secret-hop", "keep-alive", "te", "x-consumer-id"] {
            assert!(!req.headers.contains_key(gone), "{gone} was forwarded");
        }
        assert!(req.headers.contains_key("traceparent"));
    }

    #[test]
    fn host_without_port() {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        req.insert_header("host", "Example.test:8080").expect("host");
        assert_eq!(
            request_host(&req),
            Some("Example.test:8080").map(|_| "Example.test")
        );
        req.insert_header("host", "[::1]").expect("host");
        assert_eq!(request_host(&req), Some("[::1]"));
    }
}
