//! Per-route policies read on the request path: which client addresses may call a
//! route, and which browser origins may read its answers (CORS). Built once at
//! load; deciding is a few comparisons, with no allocation.

use http::HeaderValue;
use ipnet::IpNet;
use std::net::IpAddr;

/// `allow_ips` and `deny_ips`: a denied address is refused even if allowed.
#[derive(Clone, Debug, Default)]
pub struct IpRules {
    /// `None`: every address not denied.
    pub allow: Option<Vec<IpNet>>,
    pub deny: Vec<IpNet>,
}

impl IpRules {
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !self.deny.iter().any(|n| n.contains(&ip))
            && self
                .allow
                .as_ref()
                .is_none_or(|a| a.iter().any(|n| n.contains(&ip)))
    }
}

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

/// A route's response compression: which types, from what size, at what level
/// (the encoding is negotiated from `Accept-Encoding`: gzip, brotli, zstd).
#[derive(Clone, Debug, PartialEq)]
pub struct Compress {
    pub min_bytes: u64,
    /// Lower-case media types, without parameters.
    pub types: Vec<String>,
    pub level: u32,
}

impl Compress {
    /// Whether a response with this type and (declared) length is compressed.
    pub fn applies(&self, content_type: Option<&[u8]>, content_length: Option<u64>) -> bool {
        let Some(media) = content_type
            .and_then(|t| std::str::from_utf8(t).ok())
            .map(|t| t.split(';').next().unwrap_or("").trim())
        else {
            return false;
        };
        self.types.iter().any(|t| t.eq_ignore_ascii_case(media))
            && content_length.is_none_or(|n| n >= self.min_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_beats_allowed_and_mapped_ipv4_is_ipv4() {
        let rules = IpRules {
            allow: Some(vec![
                "10.0.0.0/8".parse().expect("net"),
                "2001:db8::/32".parse().expect("net"),
            ]),
            deny: vec!["10.6.6.0/24".parse().expect("net")],
        };
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(rules.permits(ip("10.1.2.3")));
        assert!(rules.permits(ip("::ffff:10.1.2.3")));
        assert!(rules.permits(ip("2001:db8::1")));
        assert!(!rules.permits(ip("10.6.6.7")));
        assert!(!rules.permits(ip("192.0.2.1")));
        assert!(IpRules::default().permits(ip("192.0.2.1")));
    }

    #[test]
    fn compression_by_type_and_size() {
        let c = Compress {
            min_bytes: 100,
            types: vec!["application/json".into()],
            level: 5,
        };
        assert!(c.applies(Some(b"application/json; charset=utf-8"), Some(100)));
        assert!(
            c.applies(Some(b"Application/JSON"), None),
            "chunked: no length known"
        );
        assert!(!c.applies(Some(b"application/json"), Some(99)));
        assert!(!c.applies(Some(b"image/png"), Some(1000)));
        assert!(!c.applies(None, Some(1000)));
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
