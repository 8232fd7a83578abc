//! The act step: a request every step admitted is proxied, or answered by its
//! `respond` route with the rate-limit headers it earned.

use super::Verdict;
use crate::config::{Route, RouteAction, StaticAnswer};
use crate::proxy::ctx::RequestCtx;
use crate::ratelimit::{self, RateLimiter};
use crate::vocab::answer::Answer;
use bytes::Bytes;

pub(super) fn on<'r>(limiter: &RateLimiter, route: &'r Route, ctx: &RequestCtx) -> Verdict<'r> {
    match &route.action {
        RouteAction::Respond(StaticAnswer {
            status,
            body,
            content_type,
        }) => Verdict::Answer(Answer {
            status: *status,
            content_type: content_type.as_str(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            headers: ctx
                .limit
                .as_ref()
                .map(|o| ratelimit::headers::headers(limiter, o))
                .unwrap_or_default(),
            close: false,
        }),
        RouteAction::Proxy(_) => Verdict::Proxy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::ids::ById;

    #[test]
    fn a_respond_route_answers_with_its_own_status_type_and_body_and_a_proxy_route_proxies() {
        let config = super::super::config_with_routes(
            r#"
  - { name: health, path_prefix: /health, respond: { status: 202, body: fine, content_type: text/plain } }
  - { name: api, path_prefix: /api/, upstream: backend }
"#,
        );
        let limiter = RateLimiter::new(Vec::new(), None, ById::default(), None);
        let ctx = RequestCtx::default();
        match on(&limiter, &config.routes[0], &ctx) {
            Verdict::Answer(a) => {
                assert_eq!(
                    (a.status, a.content_type, &a.body[..]),
                    (202, "text/plain", &b"fine"[..])
                );
                assert!(a.headers.is_empty(), "no limit applied: no rate-limit headers");
            }
            Verdict::Proxy => panic!("a respond route answers"),
        }
        assert!(matches!(on(&limiter, &config.routes[1], &ctx), Verdict::Proxy));
    }
}
