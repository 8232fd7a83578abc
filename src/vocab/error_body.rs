//! The gateway's JSON error shape, `{"error", "message", "request_id"}`, shared by
//! the proxy, the connection guard and the admin listener, and the request id
//! every response carries.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID_LEN: usize = 128;

/// A request's id, kept as the header value it is sent as (upstream and to the
/// client); empty until the request head is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl Default for RequestId {
    fn default() -> Self {
        RequestId(HeaderValue::from_static(""))
    }
}

impl RequestId {
    /// A new request id: 128 random bits in hex.
    pub fn new() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bits = fastrand::u128(..);
        let text: [u8; 32] = std::array::from_fn(|i| HEX[(bits >> (124 - 4 * i)) as usize & 0xf]);
        RequestId(HeaderValue::from_bytes(&text).expect("hex is a header value"))
    }

    /// The caller's X-Request-Id if it is short and plain (safe in logs and
    /// headers, and sent on as it came), else a new one.
    pub fn from_request(sent: Option<&HeaderValue>) -> Self {
        match sent {
            Some(v) if sane_request_id(v.as_bytes()) => RequestId(v.clone()),
            _ => RequestId::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The id as text: a sane one always is.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    pub fn header(&self) -> HeaderValue {
        self.0.clone()
    }
}

fn sane_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The error code for a status this gateway answers by itself.
pub fn error_code(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "no_route",
        408 => "request_timeout",
        413 => "body_too_large",
        429 => "rate_limited",
        431 => "headers_too_large",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "upstream_timeout",
        _ => "internal_error",
    }
}

pub fn error_message(status: u16) -> &'static str {
    match status {
        400 => "the request is malformed",
        401 => "credentials are missing or invalid",
        403 => "this consumer may not use this route",
        404 => "no route matches this path",
        408 => "the request header did not arrive in time",
        413 => "the request body is larger than this route allows",
        429 => "rate limit exceeded",
        431 => "the request header is too large or has too many fields",
        502 => "the upstream refused or reset the connection",
        503 => "no healthy upstream target is available",
        504 => "the upstream did not answer in time",
        _ => "internal error",
    }
}

/// `{"error": ..., "message": ..., "request_id": ...}`
pub fn error_body(status: u16, request_id: &str) -> Bytes {
    coded_error_body(error_code(status), error_message(status), request_id)
}

/// The same shape with a code more precise than the status's.
pub fn coded_error_body(code: &str, message: &str, request_id: &str) -> Bytes {
    let body = serde_json::json!({
        "error": code,
        "message": message,
        "request_id": request_id,
    });
    Bytes::from(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let sent = |v: &[u8]| HeaderValue::from_bytes(v).expect("value");
        let from = |v: &[u8]| RequestId::from_request(Some(&sent(v)));
        assert_eq!(from(b"abc-123_x.y:z").as_str(), "abc-123_x.y:z");
        for bad in [&b""[..], b"has space", &[b'a'; 129]] {
            let id = from(bad);
            assert_eq!(id.as_str().len(), 32, "{bad:?} was kept");
            assert!(sane_request_id(id.as_str().as_bytes()));
        }
        assert_eq!(RequestId::from_request(None).as_str().len(), 32);
        assert_ne!(RequestId::new(), RequestId::new());
        assert!(RequestId::new().as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(RequestId::default().is_empty());
    }
}
