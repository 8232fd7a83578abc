//! `cors`: which browser origins may read a route's answers. A preflight (routed
//! by the method it asks about) is answered here; every other answer, the gateway's
//! refusals included, lets an allowed origin read it; the upstream's own CORS
//! headers never pass, so the route's policy alone decides.

use super::header_rules::Vars;
use super::{Notes, RequestHead, RoutePolicy};
use crate::vocab::answer::Answer;
use bytes::Bytes;
use http::{header, response, HeaderName, HeaderValue};

/// An allowed origin: exact (`https://app.example.com`), a subdomain wildcard
/// (`https://*.example.com`: any name under it, not the domain itself), or `*`.
#[derive(Clone, Debug, PartialEq)]
pub enum OriginPattern {
    Exact(String),
    Subdomains { scheme: String, suffix: String },
    Any,
}

impl OriginPattern {
    pub fn parse(text: &str) -> Result<OriginPattern, &'static str> {
        if text == "*" {
            return Ok(OriginPattern::Any);
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or("an origin is scheme://host[:port], or *")?;
        if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
            return Err("an origin is http(s)://host[:port], without a path");
        }
        match rest.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => Ok(OriginPattern::Subdomains {
                scheme: format!("{scheme}://"),
                suffix: format!(".{}", suffix.to_ascii_lowercase()),
            }),
            Some(_) => Err("a wildcard origin is scheme://*.domain"),
            None if rest.contains('*') => Err("a wildcard origin is scheme://*.domain"),
            None => Ok(OriginPattern::Exact(text.to_ascii_lowercase())),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(o) => o.eq_ignore_ascii_case(origin),
            OriginPattern::Subdomains { scheme, suffix } => {
                origin
                    .get(..scheme.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
                    && origin.len() > scheme.len() + suffix.len()
                    && origin
                        .get(origin.len() - suffix.len()..)
                        .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
                    && !origin[scheme.len()..origin.len() - suffix.len()].contains(['/', ':', '@'])
            }
        }
    }
}

/// A route's CORS policy, its header values prebuilt.
#[derive(Clone, Debug)]
pub struct Cors {
    pub origins: Vec<OriginPattern>,
    pub methods: HeaderValue,
    pub headers: Option<HeaderValue>,
    pub credentials: bool,
    pub max_age: Option<HeaderValue>,
}

impl Cors {
    /// The origin as the answer should name it, if it may read this route's answers.
    pub fn allowed(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let text = origin.to_str().ok()?;
        if !self.credentials && self.origins.contains(&OriginPattern::Any) {
            return Some(HeaderValue::from_static("*"));
        }
        self.origins
            .iter()
            .any(|p| p.matches(text))
            .then(|| origin.clone())
    }
}

impl RoutePolicy for Cors {
    fn answers_preflight(&self) -> bool {
        true
    }

    fn request_head(&self, req: &RequestHead<'_>, notes: &mut Notes) -> Option<Answer<'static>> {
        let allowed = req.head.headers.get(header::ORIGIN).and_then(|o| self.allowed(o));
        if req.preflight {
            return Some(Answer {
                status: 204,
                content_type: "text/plain",
                body: Bytes::new(),
                headers: self.preflight_headers(allowed.as_ref()),
                close: false,
            });
        }
        notes.cors = allowed.map(|o| (o, self.credentials));
        None
    }

    fn response_head(&self, head: &mut response::Parts, _vars: &Vars<'_>, notes: &mut Notes) {
        let headers = &mut head.headers;
        // A framework that reflects every origin must not speak for the route.
        // (Collected only when there are some: most upstreams send none.)
        let is_cors = |n: &HeaderName| n.as_str().starts_with("access-control-");
        if headers.keys().any(is_cors) {
            let upstream_cors: Vec<HeaderName> = headers.keys().filter(|n| is_cors(n)).cloned().collect();
            for name in upstream_cors {
                headers.remove(&name);
            }
        }
        headers.append(header::VARY, VARY_ORIGIN);
        if let Some((origin, credentials)) = &notes.cors {
            for (name, value) in cors_values(origin, *credentials) {
                headers.insert(name, value);
            }
        }
    }

    fn answer_head(&self, headers: &mut Vec<(&'static str, String)>, notes: &Notes) {
        if let Some((origin, credentials)) = &notes.cors {
            headers.extend(
                cors_values(origin, *credentials)
                    .chain([("vary", VARY_ORIGIN)])
                    .map(|(name, value)| (name, value.to_str().unwrap_or_default().to_string())),
            );
        }
    }
}

impl Cors {
    /// A preflight's answer: what the route allows, for an allowed origin; nothing
    /// but `Vary` for another.
    fn preflight_headers(&self, origin: Option<&HeaderValue>) -> Vec<(&'static str, String)> {
        let text = |v: &HeaderValue| v.to_str().unwrap_or_default().to_string();
        let mut out = vec![("vary", "Origin".to_string())];
        let Some(origin) = origin else { return out };
        out.push(("access-control-allow-origin", text(origin)));
        out.push(("access-control-allow-methods", text(&self.methods)));
        if let Some(headers) = &self.headers {
            out.push(("access-control-allow-headers", text(headers)));
        }
        if self.credentials {
            out.push(("access-control-allow-credentials", "true".into()));
        }
        if let Some(max_age) = &self.max_age {
            out.push(("access-control-max-age", text(max_age)));
        }
        out
    }
}

/// Answers on a CORS route differ by origin, allowed or not: caches keep them apart.
const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");

/// The gateway's headers a browser script may want to read.
const EXPOSED: HeaderValue =
    HeaderValue::from_static("RateLimit, RateLimit-Policy, Retry-After, X-Request-Id");

/// What lets a browser script at an allowed origin read an answer: the origin,
/// credentials if the route allows them, and the gateway's headers a script may
/// want (rate limits, Retry-After, the request id). Built from prebuilt values: a
/// proxied response pays no allocation for it.
fn cors_values(origin: &HeaderValue, credentials: bool) -> impl Iterator<Item = (&'static str, HeaderValue)> {
    [
        ("access-control-allow-origin", Some(origin.clone())),
        ("access-control-expose-headers", Some(EXPOSED)),
        (
            "access-control-allow-credentials",
            credentials.then_some(HeaderValue::from_static("true")),
        ),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_http::RequestHeader;

    fn cors(credentials: bool) -> Cors {
        Cors {
            origins: vec![OriginPattern::parse("https://*.example.com").expect("origin")],
            methods: HeaderValue::from_static("GET, POST"),
            headers: Some(HeaderValue::from_static("x-token")),
            credentials,
            max_age: Some(HeaderValue::from_static("600")),
        }
    }

    fn ask(cors: &Cors, origin: &str, preflight: bool, notes: &mut Notes) -> Option<Answer<'static>> {
        let mut head = RequestHeader::build("OPTIONS", b"/", None).expect("head");
        head.insert_header("origin", origin).expect("origin");
        let req = RequestHead {
            head: &head,
            client_ip: [10, 0, 0, 1].into(),
            request_id: "r1",
            preflight,
        };
        cors.request_head(&req, notes)
    }

    #[test]
    fn a_preflight_is_answered_with_what_the_route_allows_and_only_vary_for_another_origin() {
        let answer = ask(
            &cors(true),
            "https://app.example.com",
            true,
            &mut Notes::default(),
        )
        .expect("204");
        assert_eq!(answer.status, 204);
        let names: Vec<&str> = answer.headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "vary",
                "access-control-allow-origin",
                "access-control-allow-methods",
                "access-control-allow-headers",
                "access-control-allow-credentials",
                "access-control-max-age"
            ]
        );
        let other = ask(&cors(true), "https://evil.test", true, &mut Notes::default()).expect("204");
        assert_eq!(other.headers, vec![("vary", "Origin".to_string())]);
    }

    #[test]
    fn an_allowed_origin_is_noted_and_reads_both_kinds_of_answer_while_upstream_cors_is_dropped() {
        let policy = cors(false);
        let mut notes = Notes::default();
        assert!(ask(&policy, "https://app.example.com", false, &mut notes).is_none());
        let mut headers = Vec::new();
        policy.answer_head(&mut headers, &notes);
        assert!(headers.contains(&("access-control-allow-origin", "https://app.example.com".into())));
        assert!(headers.contains(&("vary", "Origin".into())));

        let mut response = http::Response::builder()
            .header("access-control-allow-origin", "*")
            .header("access-control-allow-methods", "DELETE")
            .body(())
            .expect("response")
            .into_parts()
            .0;
        let vars = super::super::anonymous_vars();
        policy.response_head(&mut response, &vars, &mut notes);
        assert_eq!(
            response.headers["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert!(!response.headers.contains_key("access-control-allow-methods"));
        assert!(!response.headers.contains_key("access-control-allow-credentials"));

        let mut refused = Notes::default();
        assert!(ask(&policy, "https://evil.test", false, &mut refused).is_none());
        assert!(refused.cors.is_none());
    }

    #[test]
    fn origins_exact_wildcard_and_any() {
        let p = |s: &str| OriginPattern::parse(s).expect(s);
        assert!(p("https://app.example.com").matches("https://APP.example.com"));
        assert!(!p("https://app.example.com").matches("http://app.example.com"));
        let sub = p("https://*.example.com");
        assert!(sub.matches("https://a.example.com") && sub.matches("https://a.b.example.com"));
        assert!(!sub.matches("https://example.com"));
        assert!(!sub.matches("https://evil.com/.example.com") && !sub.matches("https://evilexample.com"));
        assert!(!sub.matches("https://a.example.com.evil.com"));
        assert!(p("*").matches("https://anything.test"));
        for bad in [
            "example.com",
            "ftp://x.com",
            "https://x.com/path",
            "https://a*.x.com",
            "https://*.",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
