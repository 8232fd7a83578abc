//! The request's host: checked against RFC 3986 (a reg-name or an IP literal,
//! an optional port up to 65535) before it routes anything or is copied into
//! `X-Forwarded-Host`.

use http::header;
use pingora_http::RequestHeader;

/// A Host that is not an RFC 3986 authority.
#[derive(Debug, PartialEq, Eq)]
pub struct BadHost;

/// The request's host without its port (IPv6 literals kept whole); `Ok(None)`
/// when the request names none.
pub fn request_host(req: &RequestHeader) -> Result<Option<&str>, BadHost> {
    let raw = match req.headers.get(header::HOST) {
        Some(value) => value.to_str().map_err(|_| BadHost)?,
        None => match req.uri.authority() {
            Some(a) => a.as_str(),
            None => return Ok(None),
        },
    };
    split_authority(raw).map(Some).ok_or(BadHost)
}

/// `host[:port]` → `host`, if both parts are well-formed.
fn split_authority(raw: &str) -> Option<&str> {
    let (host, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let literal = &raw[1..end];
        literal.parse::<std::net::Ipv6Addr>().ok()?;
        (&raw[..=end], raw[end + 1..].strip_prefix(':'))
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
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
                    || matches!(
                        b,
                        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
                    )
            }));
    reg_name_ok.then_some(host)
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
    }
}
