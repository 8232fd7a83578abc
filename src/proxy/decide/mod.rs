//! What `request_filter` decides, without any I/O, as a sequence of named steps:
//! route → client address → the route's policies (address rules, CORS preflight)
//! → authenticate → limit (declared body size, then every rate limit, all or
//! none) → act. A pure function of the request head, the peer address and the
//! time, so it is benchmarked (benches/gateway.rs) and each step is unit-tested
//! without a connection (its module's tests), the whole in `tests`.

mod act;
mod authenticate;
mod limit;
mod route;
#[cfg(test)]
mod tests;

use super::ctx::RequestCtx;
use crate::auth::Authenticator;
use crate::consumers::overrides::TierOverrides;
use crate::policy::RequestHead;
use crate::ratelimit::RateLimiter;
use crate::routing::RouteTable;
use crate::vocab::answer::Answer;
use crate::vocab::client_addr::TrustedProxies;
use http::HeaderValue;
use pingora_http::RequestHeader;
use std::net::IpAddr;
use std::sync::Arc;

/// What `request_filter` must do with a request.
pub enum Verdict<'a> {
    Proxy,
    /// A gateway-made answer.
    Answer(Answer<'a>),
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
        let (route, preflight) = match route::find(&self.routes, req, ctx) {
            Ok(found) => found,
            Err(answer) => return Verdict::Answer(answer),
        };
        let client_ip = self.client_ip(req, peer);
        ctx.client_ip = Some(client_ip);
        let head = RequestHead {
            head: req,
            client_ip,
            request_id: ctx.request_id.as_str(),
            preflight,
        };
        if let Some(answer) = route.policies.request_head(&head, &mut ctx.policy_notes) {
            return Verdict::Answer(answer);
        }
        if let Err(answer) = authenticate::caller(self, req, route, ctx, now_ns) {
            return Verdict::Answer(answer);
        }
        if let Err(answer) = limit::admit(&self.limiter, req, route, ctx, client_ip, now_ns) {
            return Verdict::Answer(answer);
        }
        act::on(&self.limiter, route, ctx)
    }

    /// The address limits and logs use: the peer, or what a trusted proxy says.
    fn client_ip(&self, req: &RequestHeader, peer: Option<IpAddr>) -> IpAddr {
        peer.map_or(IpAddr::from([0, 0, 0, 0]), |peer| {
            let forwarded = req.headers.get_all("x-forwarded-for");
            self.trusted_proxies
                .client_ip(peer, forwarded.iter().map(HeaderValue::as_bytes))
        })
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
        let cost = self.routes.routes()[route].limits.cost;
        self.limiter.give_back(route, caller, client_ip, cost, outcome);
    }
}

/// A validated config with one upstream and these routes, for the steps' tests.
#[cfg(test)]
fn config_with_routes(routes: &str) -> crate::config::Config {
    let text = format!(
        "listen: [\"127.0.0.1:18080\"]\nadmin: {{ listen: \"127.0.0.1:19091\" }}\n\
         upstreams: {{ backend: {{ targets: [\"127.0.0.1:9\"] }} }}\nroutes:\n{routes}"
    );
    crate::config::parse(&text, |_| None).unwrap_or_else(|p| panic!("{p:?}"))
}
