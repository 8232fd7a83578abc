//! Route policies: what a route adds to a request beyond routing, auth and limits,
//! one module each (address rules, compression, header rules, CORS), behind one
//! interface the gateway calls at every phase a policy may need. Policies work on
//! plain heads, never on Pingora's `Session`, and keep what they learn about a
//! request in its [`Notes`]. The config validators build them (`config::routes`
//! lists them in the order every phase runs them); adding a policy touches its
//! module, its validator and that list.
//!
//! The phases, in the order a request meets them (each a method of [`RoutePolicy`]):
//! request head (after routing, before auth) · request body · Pingora's cache
//! callbacks (`request_cache_filter`, `cache_key_callback`, `response_cache_filter`) ·
//! each upstream attempt (`upstream_peer`, `connected_to_upstream`,
//! `fail_to_connect`, `upstream_response_filter`) and its request head · the
//! response head (proxied) or the gateway's own answer · the response body ·
//! `logging`. The upstream choice is not a phase: a route's action picks the
//! upstream. The limits are not policies either: they commit all or none, in one step.

pub mod compression;
pub mod cors;
pub mod header_rules;
pub mod ip_rules;

use crate::vocab::answer::Answer;
use header_rules::Vars;
use http::{request, response, HeaderValue};
use pingora_http::RequestHeader;
use std::net::{IpAddr, SocketAddr};

/// What a request's policies noted for later phases.
#[derive(Default, Debug)]
pub struct Notes {
    /// The request's Origin when CORS lets it read the answer, and whether
    /// credentials are allowed.
    pub cors: Option<(HeaderValue, bool)>,
    /// The response's compression level (0: none); `None`: no policy compresses.
    pub compression_level: Option<u32>,
}

/// The request head as the request-head phase sees it.
pub struct RequestHead<'a> {
    pub head: &'a RequestHeader,
    pub client_ip: IpAddr,
    pub request_id: &'a str,
    /// A CORS preflight, routed by the method it asks about.
    pub preflight: bool,
}

/// One upstream attempt, as the gateway learns of it.
pub enum Attempt {
    /// `upstream_peer` chose this target.
    Chosen(SocketAddr),
    /// `connected_to_upstream`: on a new connection or a pooled one.
    Connected { reused: bool },
    /// `fail_to_connect`.
    Failed,
    /// `upstream_response_filter`: the upstream's status.
    Answered(u16),
}

/// One route policy. Every phase does nothing unless the policy needs it.
pub trait RoutePolicy: Send + Sync + std::fmt::Debug {
    /// Routing: whether a CORS preflight may be routed here by the method it asks about.
    fn answers_preflight(&self) -> bool {
        false
    }

    /// Whether responses may be compressed (Pingora's compression module is on
    /// only when some route's policy says so).
    fn compresses(&self) -> bool {
        false
    }

    /// After routing, before authentication: an answer here ends the request.
    fn request_head(&self, _req: &RequestHead<'_>, _notes: &mut Notes) -> Option<Answer<'static>> {
        None
    }

    /// Each chunk of the request body on its way upstream.
    fn request_body(&self, _chunk: &[u8], _end_of_stream: bool, _notes: &mut Notes) {}

    /// `request_cache_filter`, on every request: where a policy turns the cache on.
    /// (`cache_key_callback` and `response_cache_filter` run only once the cache is
    /// on; they join this trait with the first policy that turns it on.)
    fn cache_request(&self, _req: &RequestHeader, _notes: &mut Notes) {}

    /// Each upstream attempt's events.
    fn upstream_attempt(&self, _attempt: &Attempt, _notes: &mut Notes) {}

    /// The request head of each upstream attempt, after the gateway's own headers.
    fn upstream_request(&self, _head: &mut request::Parts, _vars: &Vars<'_>) {}

    /// A proxied response's head, after the request id and rate-limit headers.
    fn response_head(&self, _head: &mut response::Parts, _vars: &Vars<'_>, _notes: &mut Notes) {}

    /// The headers of an answer the gateway makes itself after this route's
    /// request-head phase ran (a refusal, a `respond` route, an upstream error).
    fn answer_head(&self, _headers: &mut Vec<(&'static str, String)>, _notes: &Notes) {}

    /// Each chunk of a proxied response's body.
    fn response_body(&self, _chunk: &[u8], _end_of_stream: bool, _notes: &mut Notes) {}

    /// The request is done: `status` as answered (499: the client left first).
    fn logging(&self, _status: u16, _notes: &Notes) {}
}

/// A route's policies, in the order every phase runs them.
#[derive(Debug, Default)]
pub struct Policies(Vec<Box<dyn RoutePolicy>>);

impl Policies {
    pub fn new(list: Vec<Box<dyn RoutePolicy>>) -> Self {
        Policies(list)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn RoutePolicy> {
        self.0.iter().map(|p| &**p)
    }

    pub fn answers_preflight(&self) -> bool {
        self.iter().any(|p| p.answers_preflight())
    }

    pub fn compresses(&self) -> bool {
        self.iter().any(|p| p.compresses())
    }

    /// The first policy's answer ends the phase.
    pub fn request_head(&self, req: &RequestHead<'_>, notes: &mut Notes) -> Option<Answer<'static>> {
        self.iter().find_map(|p| p.request_head(req, notes))
    }
}

/// What the policies' tests pass as a request's header-rule variables: an anonymous caller.
#[cfg(test)]
fn anonymous_vars() -> Vars<'static> {
    Vars {
        consumer: None,
        tier: None,
        request_id: "r1",
        client_ip: None,
        claims: &[],
    }
}
