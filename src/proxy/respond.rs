//! Gateway-made answers (the JSON error body `{"error", "message",
//! "request_id"}` and static `respond` routes) and the request id every
//! response carries.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

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
    let body = serde_json::json!({
        "error": error_code(status),
        "message": error_message(status),
        "request_id": request_id,
    });
    Bytes::from(body.to_string())
}

/// Writes a complete gateway-made response. `close` ends the connection after it,
/// for requests whose body was not read or whose framing is not trusted.
pub async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    request_id: &str,
    extra: &[(&'static str, String)],
    close: bool,
) -> pingora_error::Result<()> {
    let mut header = ResponseHeader::build(status, Some(4 + extra.len()))?;
    header.insert_header(http::header::CONTENT_TYPE, content_type)?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    header.insert_header(REQUEST_ID, request_id)?;
    for (name, value) in extra {
        header.insert_header(*name, value.as_str())?;
    }
    if close {
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
    session.write_response_header(Box::new(header), head_only).await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

pub async fn send_error(
    session: &mut Session,
    status: u16,
    request_id: &str,
    extra: &[(&'static str, String)],
    close: bool,
) -> pingora_error::Result<()> {
    let body = error_body(status, request_id);
    send(
        session,
        status,
        "application/json",
        body,
        request_id,
        extra,
        close,
    )
    .await
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
