//! Gateway-made answers written to a Pingora session: the JSON errors of
//! `vocab::error_body` and static `respond` routes.

use crate::vocab::error_body::{error_body, REQUEST_ID};
use bytes::Bytes;
use http::HeaderValue;
use pingora_core::modules::http::compression::ResponseCompression;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Writes a complete gateway-made response, never compressed (only proxied answers
/// of a `compress` route are). `close` ends the connection after it, for requests
/// whose body was not read or whose framing is not trusted.
pub async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    request_id: &str,
    extra: &[(&'static str, String)],
    close: bool,
) -> pingora_error::Result<()> {
    let mut header = ResponseHeader::build_no_case(status, Some(4 + extra.len()))?;
    // 204 carries neither (RFC 9110 §8.6).
    if status != 204 {
        header.insert_header(http::header::CONTENT_TYPE, content_type)?;
        header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    }
    header.insert_header(REQUEST_ID, request_id)?;
    for (name, value) in extra {
        header.insert_header(*name, value.as_str())?;
    }
    if close {
        session.set_keepalive(None);
    }
    if let Some(compression) = session.downstream_modules_ctx.get_mut::<ResponseCompression>() {
        compression.adjust_level(0);
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

/// The gateway's headers a browser script may want to read.
/// Answers on a CORS route differ by origin, allowed or not: caches keep them apart.
pub const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");

const EXPOSED: HeaderValue =
    HeaderValue::from_static("RateLimit, RateLimit-Policy, Retry-After, X-Request-Id");

/// What lets a browser script at an allowed origin read an answer: the origin,
/// credentials if the route allows them, and the gateway's headers a script may
/// want (rate limits, Retry-After, the request id). Built from prebuilt values: a
/// proxied response pays no allocation for it.
pub fn cors_values(
    origin: &HeaderValue,
    credentials: bool,
) -> impl Iterator<Item = (&'static str, HeaderValue)> {
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

/// The same, with `Vary: Origin`, for an answer the gateway makes itself.
pub fn cors_headers(origin: &HeaderValue, credentials: bool) -> Vec<(&'static str, String)> {
    cors_values(origin, credentials)
        .chain([("vary", VARY_ORIGIN)])
        .map(|(name, value)| (name, value.to_str().unwrap_or_default().to_string()))
        .collect()
}
