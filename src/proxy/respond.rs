//! Gateway-made answers written to a Pingora session: refusals, preflights,
//! `respond` routes and upstream errors (`vocab::answer`).

use crate::vocab::answer::Answer;
use crate::vocab::error_body::REQUEST_ID;
use pingora_core::modules::http::compression::ResponseCompression;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Writes a complete gateway-made response, never compressed (only proxied answers
/// of a `compress` route are). `answer.close` ends the connection after it, for
/// requests whose body was not read or whose framing is not trusted.
pub async fn send(session: &mut Session, answer: Answer<'_>, request_id: &str) -> pingora_error::Result<()> {
    let Answer {
        status,
        content_type,
        body,
        headers,
        close,
    } = answer;
    let mut header = ResponseHeader::build_no_case(status, Some(4 + headers.len()))?;
    // 204 carries neither (RFC 9110 §8.6).
    if status != 204 {
        header.insert_header(http::header::CONTENT_TYPE, content_type)?;
        header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    }
    header.insert_header(REQUEST_ID, request_id)?;
    for (name, value) in headers {
        header.insert_header(name, value)?;
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
