//! What `request_filter` decides, without any I/O: route → client address rules
//! → CORS preflight → auth → declared body size → the rate limits (all or none). A
//! pure function of the request head, the peer address and the time, so it can be
//! benchmarked (benches/gateway.rs) and tested without a connection; its verdicts are
//! tested today through the real binary, its steps not yet one by one.

use super::ctx::RequestCtx;
use super::host::request_host;
use crate::auth::{Authenticator, Failure};
use crate::config::{AuthPolicy, Route, RouteAction};
use crate::consumers::overrides::TierOverrides;
use crate::ratelimit::{self, RateLimiter};
use crate::routing::RouteTable;
use crate::vocab::client_addr::TrustedProxies;
use crate::vocab::error_body::{coded_error_body, error_body};
use crate::vocab::path::{is_ambiguous, normalize_path};
use crate::vocab::route_policy::Cors;
use bytes::Bytes;
use http::{header, HeaderValue, Method};
use pingora_http::RequestHeader;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// What `request_filter` must do with a request.
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
            body: error_body(status, request_id),
            extra,
            close,
        }
    }
}

/// The parts of the gateway a decision reads.
pub struct Decider {
    pub routes: RouteTable,
    pub auth: Option<Authenticator>,
    pub limiter: Arc<RateLimiter>,
    pub trusted_proxies: TrustedProxies,
    pub overrides: Arc<TierOverrides>,
}

impl Decider {
    pub fn decide(
        &self,
        req: &RequestHeader,
        peer: Option<IpAddr>,
        ctx: &mut RequestCtx,
        now_ns: u64,
    ) -> Verdict<'_> {
        // A target that is not UTF-8 would be routed and forwarded as a lossy rendering.
        let (true, Some(path), Ok(host)) = (
            req.raw_path_is_utf8(),
            normalize_path(req.uri.path()),
            request_host(req),
        ) else {
            return Verdict::error(400, ctx.request_id.as_str(), Vec::new(), true);
        };
        // A CORS preflight is routed by the method it asks about, to a route with CORS.
        let preflight = (req.method == Method::OPTIONS && req.headers.contains_key(header::ORIGIN))
            .then(|| req.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD))
            .flatten()
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .and_then(|asked| self.routes.find(host, &asked, &path))
            .filter(|(_, r)| r.cors.is_some());
        let Some((index, route)) = preflight.or_else(|| self.routes.find(host, &req.method, &path)) else {
            return Verdict::error(404, ctx.request_id.as_str(), Vec::new(), false);
        };
        // What the upstream receives must be what was routed and authorised.
        if !route.allow_ambiguous_paths && is_ambiguous(req.uri.path()) {
            ctx.route = Some(index);
            return Verdict::error(400, ctx.request_id.as_str(), Vec::new(), false);
        }
        ctx.route = Some(index);
        if let Cow::Owned(p) = path {
            ctx.normalized_path = Some(p);
        }
        let client_ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |peer| {
            let forwarded = req.headers.get_all("x-forwarded-for");
            self.trusted_proxies
                .client_ip(peer, forwarded.iter().map(HeaderValue::as_bytes))
        });
        ctx.client_ip = Some(client_ip);
        if route
            .ip_rules
            .as_ref()
            .is_some_and(|rules| !rules.permits(client_ip))
        {
            return Verdict::Answer {
                status: 403,
                content_type: "application/json",
                body: coded_error_body(
                    "forbidden_address",
                    "this client address may not use this route",
                    ctx.request_id.as_str(),
                ),
                extra: Vec::new(),
                close: false,
            };
        }
        if let Some(cors) = &route.cors {
            let allowed = req.headers.get(header::ORIGIN).and_then(|o| cors.allowed(o));
            if preflight.is_some() {
                return Verdict::Answer {
                    status: 204,
                    content_type: "text/plain",
                    body: Bytes::new(),
                    extra: preflight_headers(cors, allowed.as_ref()),
                    close: false,
                };
            }
            // Every answer from here on, the gateway's refusals included, lets it read.
            ctx.cors = allowed.map(|o| (o, cors.credentials));
        }

        if let Err(failure) = self.authenticate(req, route, ctx, now_ns) {
            ctx.auth_failure = Some(failure.reason());
            let status = failure.status();
            let extra = if status == 401 {
                vec![("www-authenticate", failure.www_authenticate().to_string())]
            } else {
                Vec::new()
            };
            return Verdict::error(status, ctx.request_id.as_str(), extra, false);
        }

        // Refused before the limits, so it spends none of them.
        if matches!(route.action, RouteAction::Proxy { .. }) && declared_body_too_large(req, route) {
            return Verdict::error(413, ctx.request_id.as_str(), Vec::new(), true);
        }
        let caller = ctx.identity.as_ref().map(|i| (&i.consumer, i.tier));
        let outcome = self.limiter.check(index, caller, client_ip, route.cost, now_ns);
        if outcome.applied() {
            ctx.limit = Some(outcome);
        }
        if outcome.refused.is_some() {
            return Verdict::Answer {
                status: 429,
                content_type: "application/json",
                body: Bytes::from(ratelimit::headers::refused_body(
                    &outcome,
                    ctx.request_id.as_str(),
                )),
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
            RouteAction::Proxy { .. } => Verdict::Proxy,
        }
    }

    /// A request the gateway refused after its limits admitted it (no healthy
    /// target: it is answered once, before any attempt) spends nothing.
    pub fn give_back_limits(&self, ctx: &RequestCtx) {
        let (Some(route), Some(outcome)) = (ctx.route, ctx.limit.as_ref()) else {
            return;
        };
        if outcome.refused.is_some() {
            return;
        }
        let caller = ctx.identity.as_ref().map(|i| (&i.consumer, i.tier));
        let client_ip = ctx.client_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let cost = self.routes.routes()[route].cost;
        self.limiter.give_back(route, caller, client_ip, cost, outcome);
    }

    /// The route's auth policy applied to the request's credentials; on success the
    /// caller (if any) is in `ctx.identity`, with its runtime tier override applied.
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
            if let Some(tier) = self.overrides.get(&id.consumer) {
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

/// A preflight's answer: what the route allows, for an allowed origin; nothing
/// but `Vary` for another.
fn preflight_headers(cors: &Cors, origin: Option<&HeaderValue>) -> Vec<(&'static str, String)> {
    let text = |v: &HeaderValue| v.to_str().unwrap_or_default().to_string();
    let mut out = vec![("vary", "Origin".to_string())];
    let Some(origin) = origin else { return out };
    out.push(("access-control-allow-origin", text(origin)));
    out.push(("access-control-allow-methods", text(&cors.methods)));
    if let Some(headers) = &cors.headers {
        out.push(("access-control-allow-headers", text(headers)));
    }
    if cors.credentials {
        out.push(("access-control-allow-credentials", "true".into()));
    }
    if let Some(max_age) = &cors.max_age {
        out.push(("access-control-max-age", text(max_age)));
    }
    out
}

/// A declared Content-Length over the route's limit is refused before the body is read.
fn declared_body_too_large(req: &RequestHeader, route: &Route) -> bool {
    let Some(limit) = route.max_body_bytes else {
        return false;
    };
    req.headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit)
}
