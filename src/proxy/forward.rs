//! The request head as the upstream receives it: hop-by-hop headers and
//! client copies of the gateway's own headers removed, the path normalized (and
//! the prefix stripped where the route says so), forwarding headers and the
//! caller's identity added.

use super::ctx::RequestCtx;
use super::respond::REQUEST_ID;
use crate::auth::Authenticator;
use http::{header, HeaderName, HeaderValue};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use std::net::IpAddr;

const CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
const CONSUMER_TIER: HeaderName = HeaderName::from_static("x-consumer-tier");

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

pub struct Forwarding {
    /// Headers only the gateway may set upstream: any client copy is removed.
    gateway_headers: Vec<HeaderName>,
    tier_names: Vec<HeaderValue>,
}

impl Forwarding {
    pub fn new(auth: Option<&Authenticator>, tier_names: &[String]) -> Self {
        let mut gateway_headers = vec![CONSUMER_ID, CONSUMER_TIER];
        if let Some(auth) = auth {
            gateway_headers.extend(auth.claim_headers().cloned());
            gateway_headers.extend(auth.api_key_header().cloned());
        }
        Forwarding {
            gateway_headers,
            tier_names: tier_names
                .iter()
                .map(|t| HeaderValue::from_str(t).unwrap_or(HeaderValue::from_static("unknown")))
                .collect(),
        }
    }

    /// Removes hop-by-hop headers, those a `Connection` header names, and any
    /// client copy of a header the gateway sets.
    pub fn strip_client_headers(&self, req: &mut RequestHeader) {
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
        for name in &self.gateway_headers {
            req.remove_header(name);
        }
    }

    /// The upstream request head of one attempt. `strip` is the route prefix to
    /// remove from the path; `host` is the client's Host header.
    pub fn rewrite(
        &self,
        upstream: &mut RequestHeader,
        ctx: &RequestCtx,
        strip: Option<&str>,
        peer: Option<IpAddr>,
        host: Option<HeaderValue>,
    ) -> Result<()> {
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

        if let Some(ip) = peer {
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
        if let Some(host) = host {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        Forwarding::new(None, &[]).strip_client_headers(&mut req);
        for gone in ["connection", "x-secret-hop", "keep-alive", "te", "x-consumer-id"] {
            assert!(!req.headers.contains_key(gone), "{gone} was forwarded");
        }
        assert!(req.headers.contains_key("traceparent"));
    }
}
