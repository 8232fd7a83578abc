//! Pingora's request and response heads edited as plain `http` parts. The heads
//! keep a second map with each header name's spelling, and every insert through
//! them parses the name and copies it into that map; on the parts a prebuilt name
//! and value are one hash insert. A head edited here is written with canonical
//! names (Title-Case for standard headers, lower case for others), as HTTP/2
//! writes every head, and a response keeps its status but not a custom reason
//! phrase.

use http::{request, response};
use pingora_http::{RequestHeader, ResponseHeader};

pub fn edit_request<R>(head: &mut RequestHeader, edit: impl FnOnce(&mut request::Parts) -> R) -> R {
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = request::Parts::from(std::mem::replace(head, placeholder));
    let out = edit(&mut parts);
    *head = RequestHeader::from(parts);
    out
}

pub fn edit_response<R>(head: &mut ResponseHeader, edit: impl FnOnce(&mut response::Parts) -> R) -> R {
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = response::Parts::from(std::mem::replace(head, placeholder));
    let out = edit(&mut parts);
    *head = ResponseHeader::from(parts);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edited_head_keeps_its_request_line_and_headers() {
        let mut req = RequestHeader::build("POST", b"/a?b=1", None).expect("request");
        req.append_header("X-Custom", "1").expect("header");
        req.append_header("content-type", "text/plain").expect("header");
        edit_request(&mut req, |p| {
            p.headers.insert("x-added", http::HeaderValue::from_static("2"));
        });
        assert_eq!(req.method, http::Method::POST);
        assert_eq!(req.raw_path(), b"/a?b=1");
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).expect("utf-8");
        assert!(wire.contains("x-custom: 1\r\n"), "{wire}");
        assert!(wire.contains("Content-Type: text/plain\r\n"), "{wire}");
        assert!(wire.contains("x-added: 2\r\n"), "{wire}");

        let mut resp = ResponseHeader::build(404, None).expect("response");
        edit_response(&mut resp, |p| {
            p.headers
                .insert("x-request-id", http::HeaderValue::from_static("r"));
        });
        assert_eq!(resp.status, 404);
        assert_eq!(resp.headers["x-request-id"], "r");
    }
}
