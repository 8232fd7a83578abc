//! An answer the gateway makes itself (a refusal, a preflight, a `respond` route),
//! as the decision, the route policies and the writer of responses all see it.

use super::error_body::{coded_error_body, error_body};
use bytes::Bytes;

#[derive(Debug)]
pub struct Answer<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub body: Bytes,
    /// Headers beside `Content-Type`, `Content-Length` and the request id.
    pub headers: Vec<(&'static str, String)>,
    /// Close the connection after it (the body was not read, or framing is not trusted).
    pub close: bool,
}

impl Answer<'_> {
    /// The gateway's JSON error for `status`.
    pub fn error(status: u16, request_id: &str) -> Self {
        Answer {
            status,
            content_type: "application/json",
            body: error_body(status, request_id),
            headers: Vec::new(),
            close: false,
        }
    }

    /// A JSON error with its own code and message.
    pub fn coded(status: u16, code: &str, message: &str, request_id: &str) -> Self {
        Answer {
            body: coded_error_body(code, message, request_id),
            ..Answer::error(status, request_id)
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }
}
