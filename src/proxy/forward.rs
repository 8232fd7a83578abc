//! The request head as the upstream receives it: hop-by-hop headers and
//! client copies of the gateway's own headers removed, the path normalized (and
//! the prefix stripped where the route says so), forwarding headers and the
//! caller's identity added.

use super::ctx::RequestCtx;
use crate::auth::Authenticator;
use crate::policy::header_rules::Vars;
use crate::vocab::client_addr;
use crate::vocab::error_body::REQUEST_ID;
use crate::vocab::ids::Id;
use http::{header, request, HeaderMap, HeaderName, HeaderValue};
use pingora_error::{Error, ErrorType, Result};
use std::net::IpAddr;

const CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
const CONSUMER_TIER: HeaderName = HeaderName::from_static("x-consumer-tier");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers that describe one hop and must not be forwarded (names, not text, so
/// removing one costs a hash lookup and no parsing). Pingora's own list is a
/// subset: its pass is switched off for floodgate's peers (`upstream_peer`).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("http2-settings"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Client-sent forwarding headers the gateway replaces with what it resolved:
/// an upstream must never read a client's claim about its own address.
const CLIENT_FORWARDING: [HeaderName; 2] = [header::FORWARDED, X_REAL_IP];

/// Headers a `Connection` header may not remove: the request's framing and target.
const NOT_HOP_BY_HOP: [&str; 3] = ["host", "content-length", "transfer-encoding"];

/// `Upgrade: websocket` (the token is case-insensitive).
pub fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Whether a `101` switched to what the request asked for: only a WebSocket
/// upgrade is forwarded, so only one named switch to WebSocket may be tunnelled.
pub fn switched_as_asked(request: &HeaderMap, response: &HeaderMap) -> bool {
    let mut switched_to = response.get_all(header::UPGRADE).iter();
    let only = match (switched_to.next(), switched_to.next()) {
        (Some(protocol), None) => protocol,
        _ => return false,
    };
    is_websocket(request) && only.as_bytes().eq_ignore_ascii_case(b"websocket")
}

/// The client's connection as this hop saw it.
pub struct Hop {
    /// The connection's address.
    pub peer: Option<IpAddr>,
    /// The X-Forwarded-Proto to send; `None` keeps a trusted proxy's.
    pub proto: Option<&'static str>,
    /// The client's (validated) Host header.
    pub host: Option<HeaderValue>,
}

pub struct Forwarding {
    /// Headers only the gateway may set upstream: any client copy is removed.
    gateway_headers: Vec<HeaderName>,
    tier_names: Vec<HeaderValue>,
    /// `auth.jwt.forward_token: false`: a verified token stays with the gateway.
    strip_verified_token: bool,
}

impl Forwarding {
    pub fn new(auth: Option<&Authenticator>, tier_names: &[String]) -> Self {
        let mut gateway_headers = vec![CONSUMER_ID, CONSUMER_TIER];
        if let Some(auth) = auth {
            gateway_headers.extend(auth.claim_headers().cloned());
            gateway_headers.extend(auth.api_key_header().cloned());
        }
        Forwarding {
            strip_verified_token: auth
                .and_then(Authenticator::jwt)
                .is_some_and(|jwt| !jwt.forwards_token()),
            gateway_headers,
            tier_names: tier_names
                .iter()
                .map(|t| HeaderValue::from_str(t).unwrap_or(HeaderValue::from_static("unknown")))
                .collect(),
        }
    }

    /// Removes hop-by-hop headers, those a `Connection` header names, any client
    /// copy of a header the gateway sets and, unless the route keeps them, header
    /// names with `_` (CGI and WSGI upstreams read `X_Consumer_Id` as
    /// `X-Consumer-Id`). One pass over the names; most requests lose none.
    pub fn strip_client_headers(&self, headers: &mut HeaderMap, keep_underscores: bool) {
        // Only a WebSocket upgrade is passed on: an `Upgrade: h2c` the upstream accepted
        // would let the client talk to it past the gateway's checks.
        let upgrade = is_websocket(headers);
        let has_connection = headers.contains_key(header::CONNECTION);
        let nominated = |name: &HeaderName| {
            has_connection
                && headers
                    .get_all(header::CONNECTION)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .any(|token| {
                        let token = token.trim();
                        token.eq_ignore_ascii_case(name.as_str())
                            && !token.eq_ignore_ascii_case("upgrade")
                            && !NOT_HOP_BY_HOP.iter().any(|n| token.eq_ignore_ascii_case(n))
                    })
        };
        let doomed = |name: &HeaderName| {
            // A protocol upgrade (WebSocket) needs Connection and Upgrade to reach the upstream.
            let hop = HOP_BY_HOP.contains(name)
                && !(upgrade && (name == header::CONNECTION || name == header::UPGRADE));
            hop || CLIENT_FORWARDING.contains(name)
                || self.gateway_headers.contains(name)
                // Even where a route keeps `_` names, an underscore spelling of a header
                // the gateway owns (`X_Consumer_Id`, `X_Real_IP`) is never forwarded.
                || (name.as_str().contains('_')
                    && (!keep_underscores || self.owns(&name.as_str().replace('_', "-"))))
                || nominated(name)
        };
        let gone: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
        for name in gone {
            headers.remove(&name);
        }
    }

    /// Whether the gateway sets or replaces this (lower-case) header upstream.
    fn owns(&self, name: &str) -> bool {
        name.starts_with("x-forwarded-")
            || name == REQUEST_ID
            || CLIENT_FORWARDING.iter().any(|h| h == name)
            || self.gateway_headers.iter().any(|h| h == name)
    }

    /// The upstream request head of one attempt. `strip` is the route prefix to
    /// remove from the path; `hop` is what the gateway knows of the client's connection.
    pub fn rewrite(
        &self,
        upstream: &mut request::Parts,
        ctx: &RequestCtx,
        strip: Option<&str>,
        hop: Hop,
    ) -> Result<()> {
        let Hop { peer, proto, host } = hop;
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
            upstream.uri = http::Uri::try_from(uri)
                .map_err(|e| Error::because(ErrorType::InternalError, "rewriting path", e))?;
        }

        let headers = &mut upstream.headers;
        // Room for what is added below at once, not a regrowth halfway.
        headers.reserve(
            8 + usize::from(ctx.trace.is_some()) + ctx.identity.as_ref().map_or(0, |i| i.headers.len()),
        );
        // The peer is the client unless a trusted proxy forwarded for it.
        if let Some(ip) = peer.map(client_addr::text) {
            // Every X-Forwarded-For line the client sent, in order, then this hop.
            let forwarded = match headers.get_all(X_FORWARDED_FOR).iter().next() {
                None => ip,
                Some(_) => {
                    let mut joined = Vec::new();
                    for prior in headers.get_all(X_FORWARDED_FOR) {
                        joined.extend_from_slice(prior.as_bytes());
                        joined.extend_from_slice(b", ");
                    }
                    joined.extend_from_slice(ip.as_bytes());
                    HeaderValue::from_bytes(&joined)
                        .map_err(|e| Error::because(ErrorType::InternalError, "joining X-Forwarded-For", e))?
                }
            };
            headers.insert(X_FORWARDED_FOR, forwarded);
        }
        if let Some(client) = ctx.client_ip {
            headers.insert(X_REAL_IP, client_addr::text(client));
        }
        if let Some(proto) = proto {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        // Without a host to name, a client's own claim goes.
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
        headers.insert(REQUEST_ID, ctx.request_id.header());
        if let Some(identity) = &ctx.identity {
            // With a JWT configured, an identified request's Authorization header can only be
            // the token that identified it: an API key with one as well is refused.
            if self.strip_verified_token {
                headers.remove(header::AUTHORIZATION);
            }
            headers.insert(CONSUMER_ID, identity.consumer_header.clone());
            if let Some(tier) = identity.tier.of(&self.tier_names) {
                headers.insert(CONSUMER_TIER, tier.clone());
            }
            for (name, value) in identity.headers.iter() {
                headers.insert(name.clone(), value.clone());
            }
        }
        Ok(())
    }

    /// What a header rule's variables are for this request.
    pub fn vars<'a>(&'a self, ctx: &'a RequestCtx) -> Vars<'a> {
        let identity = ctx.identity.as_ref();
        Vars {
            consumer: identity.map(|i| &*i.consumer),
            tier: identity
                .and_then(|i| i.tier.of(&self.tier_names))
                .and_then(|t| t.to_str().ok()),
            request_id: ctx.request_id.as_str(),
            client_ip: ctx.client_ip,
            claims: identity.map_or(&[], |i| &i.headers[..]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut req = head(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-consumer-id", "spoofed"),
            ("x_consumer_id", "admin"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("traceparent", "00-abc-def-01"),
        ]);
        let forwarding = Forwarding::new(None, &[]);
        let mut kept = req.clone();
        forwarding.strip_client_headers(&mut req, false);
        for gone in [
            "connection",
            "x-secret-hop",
            "keep-alive",
            "te",
            "x-consumer-id",
            "x_consumer_id",
            "forwarded",
            "x-real-ip",
        ] {
            assert!(!req.contains_key(gone), "{gone} was forwarded");
        }
        assert!(req.contains_key("traceparent"));
        kept.append("x_custom", HeaderValue::from_static("1"));
        forwarding.strip_client_headers(&mut kept, true);
        assert!(kept.contains_key("x_custom"));
        assert!(
            !kept.contains_key("x_consumer_id"),
            "a gateway-owned name is dropped in any spelling"
        );
    }

    #[test]
    fn only_a_websocket_upgrade_reaches_the_upstream() {
        let forwarding = Forwarding::new(None, &[]);
        for (protocol, passes) in [("websocket", true), ("WebSocket", true), ("h2c", false)] {
            let mut req = head(&[("connection", "Upgrade"), ("upgrade", protocol)]);
            forwarding.strip_client_headers(&mut req, false);
            assert_eq!(req.contains_key("upgrade"), passes, "{protocol}");
            assert_eq!(req.contains_key("connection"), passes, "{protocol}");
        }
    }

    #[test]
    fn only_a_switch_to_the_websocket_asked_for_is_tunnelled() {
        let asked = head(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        for (request, response, tunnelled) in [
            (&asked, head(&[("upgrade", "WebSocket")]), true),
            (&asked, head(&[("upgrade", "h2c")]), false),
            (&asked, head(&[]), false),
            (
                &asked,
                head(&[("upgrade", "websocket"), ("upgrade", "h2c")]),
                false,
            ),
            (&head(&[]), head(&[("upgrade", "websocket")]), false),
        ] {
            assert_eq!(switched_as_asked(request, &response), tunnelled, "{response:?}");
        }
    }

    #[test]
    fn a_connection_header_cannot_remove_the_host_or_the_framing() {
        let mut req = head(&[
            ("host", "example.test"),
            ("content-length", "3"),
            ("connection", "Host, Content-Length, x-hop"),
            ("x-hop", "1"),
        ]);
        Forwarding::new(None, &[]).strip_client_headers(&mut req, false);
        assert!(req.contains_key("host"));
        assert!(req.contains_key("content-length"));
        assert!(!req.contains_key("x-hop"));
    }
}
