//! `compress`: a route's proxied responses compressed by type and size, at its
//! level (the encoding is negotiated from `Accept-Encoding`: gzip, brotli, zstd, by
//! Pingora's compression module, which the gateway turns on only when some route
//! compresses). Gateway-made answers are never compressed.

use super::header_rules::Vars;
use super::{Notes, RequestHead, RoutePolicy};
use crate::vocab::answer::Answer;
use http::{header, response};

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

impl RoutePolicy for Compress {
    fn compresses(&self) -> bool {
        true
    }

    fn request_head(&self, _req: &RequestHead<'_>, notes: &mut Notes) -> Option<Answer<'static>> {
        notes.compression_level = Some(self.level);
        None
    }

    /// Decided on the upstream's own head, before any rule changes it.
    fn response_head(&self, head: &mut response::Parts, _vars: &Vars<'_>, notes: &mut Notes) {
        let length = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let content_type = head.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
        if !self.applies(content_type, length) {
            notes.compression_level = Some(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_from_100_bytes() -> Compress {
        Compress {
            min_bytes: 100,
            types: vec!["application/json".into()],
            level: 5,
        }
    }

    #[test]
    fn compression_by_type_and_size() {
        let c = json_from_100_bytes();
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
    fn the_level_is_noted_at_the_request_and_dropped_for_a_response_it_does_not_apply_to() {
        let c = json_from_100_bytes();
        let head = pingora_http::RequestHeader::build("GET", b"/", None).expect("head");
        let req = RequestHead {
            head: &head,
            client_ip: [10, 0, 0, 1].into(),
            request_id: "r1",
            preflight: false,
        };
        let mut notes = Notes::default();
        assert!(c.request_head(&req, &mut notes).is_none());
        assert_eq!(notes.compression_level, Some(5));
        let vars = super::super::anonymous_vars();
        let mut png = http::Response::builder()
            .header("content-type", "image/png")
            .body(())
            .expect("response")
            .into_parts()
            .0;
        c.response_head(&mut png, &vars, &mut notes);
        assert_eq!(notes.compression_level, Some(0));
    }
}
