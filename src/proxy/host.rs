//! The request's host: checked against RFC 3986 (a reg-name or an IP literal,
//! an optional port up to 65535) before it routes anything or is copied into
//! `X-Forwarded-Host`. Spellings that name the same host differently (a trailing
//! dot, percent-escapes, an absolute-form target without a Host header) must not
//! miss a route scoped to that host.

use http::header;
use pingora_http::RequestHeader;

/// A Host that is not an RFC 3986 authority.
#[derive(Debug, PartialEq, Eq)]
pub struct BadHost;

/// The request's host without its port or a trailing dot (IPv6 literals kept
/// whole); `Ok(None)` when the request names none. An absolute-form target
/// (`GET http://host/path`) names one too: Pingora keeps its authority only in the
/// raw target, and it must agree with a Host header when both are sent.
pub fn request_host(req: &RequestHeader) -> Result<Option<&str>, BadHost> {
    let from_header = match host_or_authority(req)? {
        Some(value) => Some(split_authority(value).ok_or(BadHost)?),
        None => None,
    };
    let from_target = match target_authority(req.raw_path()) {
        Some(raw) => Some(split_authority(raw).ok_or(BadHost)?),
        None => None,
    };
    match (from_header, from_target) {
        (Some(h), Some(t)) if !h.eq_ignore_ascii_case(t) => Err(BadHost),
        (h, t) => Ok(h.or(t)),
    }
}

/// The Host header, or an HTTP/2 request's `:authority` (which replaces it there).
fn host_or_authority(req: &RequestHeader) -> Result<Option<&str>, BadHost> {
    match req.headers.get(header::HOST) {
        Some(value) => value.to_str().map(Some).map_err(|_| BadHost),
        None => Ok(req.uri.authority().map(|a| a.as_str())),
    }
}

/// The client's (unchecked) host as a header value, for `X-Forwarded-Host`: the Host
/// header, or an HTTP/2 request's `:authority`.
pub fn forwarded_host(req: &RequestHeader) -> Option<http::HeaderValue> {
    match req.headers.get(header::HOST) {
        Some(value) => Some(value.clone()),
        None => http::HeaderValue::from_str(req.uri.authority()?.as_str()).ok(),
    }
}

/// The Host an absolute-form target without a Host header names (HTTP/1.0 allows
/// it): the request is forwarded in origin-form, which needs the Host header.
pub fn implied_host(req: &RequestHeader) -> Option<http::HeaderValue> {
    if req.headers.contains_key(header::HOST) {
        return None;
    }
    target_authority(req.raw_path()).and_then(|a| http::HeaderValue::from_str(a).ok())
}

/// The authority of an absolute-form request target, if it is one.
fn target_authority(target: &[u8]) -> Option<&str> {
    let scheme_end = target.windows(3).position(|w| w == b"://")?;
    if target[..scheme_end].is_empty() || !target[..scheme_end].iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()
}

/// `host[:port]` → `host`, if both parts are well-formed.
fn split_authority(raw: &str) -> Option<&str> {
    let (host, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let literal = &raw[1..end];
        literal.parse::<std::net::Ipv6Addr>().ok()?;
        let rest = &raw[end + 1..];
        if !(rest.is_empty() || rest.starts_with(':')) {
            return None;
        }
        (&raw[..=end], rest.strip_prefix(':'))
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    if let Some(port) = port {
        let digits_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok || port.parse::<u32>().ok()? > 65_535 {
            return None;
        }
    }
    let reg_name_ok = host.starts_with('[')
        || (!host.is_empty()
            && host != "."
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    // No percent-escapes: a DNS name never needs one, and `a%2eb` is `a.b`.
                    || matches!(b, b'-' | b'.' | b'_' | b'~')
                    || matches!(
                        b,
                        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
                    )
            }));
    // `example.test.` is the fully qualified `example.test`.
    let host = match host.strip_suffix('.') {
        Some(stripped) if !host.starts_with('[') && !stripped.is_empty() => stripped,
        _ => host,
    };
    // An empty label (`a..b`, `.a`, `a..`) names no DNS host; NGINX refuses it too.
    let labels_ok = host.starts_with('[') || !host.split('.').any(str::is_empty);
    (reg_name_ok && labels_ok).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        for (raw, host) in [
            ("Example.test:8080", "Example.test"),
            ("example.test", "example.test"),
            ("[::1]", "[::1]"),
            ("[::1]:443", "[::1]"),
            ("10.0.0.1:65535", "10.0.0.1"),
            ("admin.internal.", "admin.internal"),
            ("admin.internal.:80", "admin.internal"),
        ] {
            assert_eq!(split_authority(raw), Some(host), "{raw}");
        }
        for raw in [
            "evil.test/abc?",
            "a:99999",
            "a:",
            "a:1x",
            "",
            "[::1",
            "[nope]",
            "a b",
            "x@y",
            ":80",
            "admin%2einternal",
            "[::1]evil.example",
            "[::1]/../x",
            "[::1]]",
            ".",
            "b.example..",
            ".b.example",
            "a..b",
            "a..b:80",
            "..",
        ] {
            assert_eq!(split_authority(raw), None, "{raw}");
        }
    }

    #[test]
    fn from_the_header_or_the_absolute_uri() {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        assert_eq!(request_host(&req), Ok(None));
        req.insert_header("host", "Example.test:8080").expect("host");
        assert_eq!(request_host(&req), Ok(Some("Example.test")));
        req.insert_header("host", "a:99999").expect("host");
        assert_eq!(request_host(&req), Err(BadHost));
        let absolute = RequestHeader::build("GET", b"http://Admin.internal/secret", None).expect("request");
        assert_eq!(request_host(&absolute), Ok(Some("Admin.internal")));
        let mut disagreeing = absolute.clone();
        disagreeing.insert_header("host", "other.test").expect("host");
        assert_eq!(request_host(&disagreeing), Err(BadHost));
        assert_eq!(
            implied_host(&absolute).as_ref().map(|h| h.as_bytes()),
            Some(&b"Admin.internal"[..])
        );
        let (mut h2, ()) = http::Request::get("https://Api.test:8443/x")
            .body(())
            .expect("h2")
            .into_parts();
        h2.version = http::Version::HTTP_2;
        let h2 = RequestHeader::from(h2);
        assert_eq!(
            request_host(&h2),
            Ok(Some("Api.test")),
            ":authority names the host"
        );
        assert_eq!(forwarded_host(&h2).expect("authority"), "Api.test:8443");
        let mut agreeing = absolute;
        agreeing.insert_header("host", "admin.internal:80").expect("host");
        assert_eq!(request_host(&agreeing), Ok(Some("admin.internal")));
        assert_eq!(implied_host(&agreeing), None);
    }
}
