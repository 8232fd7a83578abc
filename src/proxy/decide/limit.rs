//! The limit step: a declared body over the route's `max_body_bytes` is refused
//! first (it spends no limit), then every rate limit that applies is checked at
//! once: all of them admit the request, or none is spent and it gets a 429.

use crate::config::Route;
use crate::proxy::ctx::RequestCtx;
use crate::ratelimit::{self, RateLimiter};
use crate::vocab::answer::Answer;
use bytes::Bytes;
use http::header;
use pingora_http::RequestHeader;
use std::net::IpAddr;

pub(super) fn admit(
    limiter: &RateLimiter,
    req: &RequestHeader,
    route: &Route,
    ctx: &mut RequestCtx,
    client_ip: IpAddr,
    now_ns: u64,
) -> Result<(), Answer<'static>> {
    if declared_body_too_large(req, route.proxy().and_then(|p| p.max_body_bytes)) {
        return Err(Answer::error(413, ctx.request_id.as_str()).closing());
    }
    let Some(id) = ctx.route else {
        return Ok(());
    };
    let caller = ctx.identity.as_ref().map(|i| (&i.consumer, i.tier));
    let outcome = limiter.check(id, caller, client_ip, route.limits.cost, now_ns);
    // The refusal is written before the outcome moves into `ctx`.
    let refusal = outcome.refused.map(|_| Answer {
        status: 429,
        content_type: "application/json",
        body: Bytes::from(ratelimit::headers::refused_body(
            &outcome,
            ctx.request_id.as_str(),
        )),
        headers: ratelimit::headers::headers(limiter, &outcome),
        close: false,
    });
    if outcome.applied() {
        ctx.limit = Some(outcome);
    }
    refusal.map_or(Ok(()), Err)
}

/// A declared Content-Length over a proxied route's limit is refused before the body is read.
fn declared_body_too_large(req: &RequestHeader, limit: Option<u64>) -> bool {
    let Some(limit) = limit else {
        return false;
    };
    req.headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_length(length: &str) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/", None).expect("request");
        req.insert_header("content-length", length).expect("length");
        req
    }

    #[test]
    fn only_a_declared_length_over_the_limit_is_too_large() {
        assert!(declared_body_too_large(&with_length("11"), Some(10)));
        assert!(!declared_body_too_large(&with_length("10"), Some(10)));
        assert!(!declared_body_too_large(&with_length("11"), None));
        assert!(!declared_body_too_large(&with_length("eleven"), Some(10)));
        let chunked = RequestHeader::build("POST", b"/", None).expect("request");
        assert!(!declared_body_too_large(&chunked, Some(10)));
    }
}
