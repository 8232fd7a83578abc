//! The gateway's JSON error shape, `{"error", "message", "request_id"}`, shared by
//! the proxy, the connection guard and the admin listener, and the request id
//! every response carries.

use bytes::Bytes;

pub const REQUEST_ID: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 128;

/// A new request id: 128 random bits in hex.
pub fn new_request_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// The caller's X-Request-Id if it is short and plain (safe in logs and headers),
/// else a new one.
pub fn request_id(sent: Option<&[u8]>) -> String {
    match sent {
        Some(v) if sane_request_id(v) => String::from_utf8_lossy(v).into_owned(),
        _ => new_request_id(),
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
        assert_eq!(request_id(Some(b"abc-123_x.y:z")), "abc-123_x.y:z");
        for bad in [&b""[..], b"has space", &[b'a'; 129]] {
            let id = request_id(Some(bad));
            assert_eq!(id.len(), 32, "{bad:?} was kept");
            assert!(sane_request_id(id.as_bytes()));
        }
        assert_eq!(request_id(None).len(), 32);
    }
}
