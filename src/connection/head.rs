//! Strict checks of a raw HTTP/1 request head, where Pingora alone is lax: it
//! serves a request with both Content-Length and Transfer-Encoding by dropping the
//! length, and reads heads up to 1 MiB. Envoy and NGINX reject these; so do we.
//! Pure over bytes, shared by `guard` (first request of a connection) and
//! `early_request_filter` (every later one), which also holds an HTTP/2 request's
//! header list to `max_headers`.

#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_bytes: usize,
    pub max_headers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadProblem {
    TooLarge,
    TooManyFields,
    LengthAndChunked,
    DuplicateLength,
    BadLength,
    MissingHost,
    Malformed,
}

impl HeadProblem {
    pub fn status(self) -> u16 {
        match self {
            HeadProblem::TooLarge | HeadProblem::TooManyFields => 431,
            _ => 400,
        }
    }
}

/// Empty lines before a request line are skipped (RFC 9112 §2.2), as Pingora's
/// parser skips them: the checks must see the head it serves.
fn leading_blank_lines(buf: &[u8]) -> usize {
    buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count()
}

/// Index just past the blank line ending the head, if `buf` holds a whole head.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = leading_blank_lines(buf);
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + pos;
        let rest = &buf[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        i = nl + 1;
    }
    None
}

pub fn check(head: &[u8], limits: HeadLimits) -> Result<(), HeadProblem> {
    if head.len() > limits.max_bytes {
        return Err(HeadProblem::TooLarge);
    }
    // Lines and colons found with memchr: this runs on every request.
    let mut rest = &head[leading_blank_lines(head)..];
    let mut lines = std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    });
    let request_line = lines.next().ok_or(HeadProblem::Malformed)?;
    let version = request_line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    let needs_host = version == b"HTTP/1.1";
    let (mut fields, mut lengths, mut chunked, mut host) = (0usize, 0usize, false, false);
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(HeadProblem::Malformed); // obsolete line folding
        }
        fields += 1;
        if fields > limits.max_headers {
            return Err(HeadProblem::TooManyFields);
        }
        let colon = memchr::memchr(b':', line).ok_or(HeadProblem::Malformed)?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(if value.contains(&b',') {
                    HeadProblem::DuplicateLength
                } else {
                    HeadProblem::BadLength
                });
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            if host {
                return Err(HeadProblem::Malformed); // two Host fields
            }
            host = true;
        }
    }
    if lengths > 1 {
        return Err(HeadProblem::DuplicateLength);
    }
    if lengths == 1 && chunked {
        return Err(HeadProblem::LengthAndChunked);
    }
    if needs_host && !host {
        return Err(HeadProblem::MissingHost);
    }
    Ok(())
}

/// An HTTP/2 request's header list against `max_headers`, counted as its HTTP/1.1
/// head would be: Cookie crumbs (RFC 9113 §8.2.3) are one Cookie line there.
pub fn check_h2_fields(headers: &http::HeaderMap, limits: HeadLimits) -> Result<(), HeadProblem> {
    let crumbs = headers.get_all(http::header::COOKIE).iter().count();
    if headers.len() - crumbs.saturating_sub(1) > limits.max_headers {
        return Err(HeadProblem::TooManyFields);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 1024,
        max_headers: 5,
    };

    fn check_str(s: &str) -> Result<(), HeadProblem> {
        check(s.as_bytes(), LIMITS)
    }

    #[test]
    fn accepts_ordinary_heads() {
        assert_eq!(check_str("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(
            check_str("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            Ok(())
        );
        assert_eq!(
            check_str("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(())
        );
        assert_eq!(check_str("GET / HTTP/1.0\r\n\r\n"), Ok(()));
    }

    #[test]
    fn rejects_ambiguous_framing_and_limits() {
        use HeadProblem::*;
        assert_eq!(
            check_str(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Err(LengthAndChunked)
        );
        assert_eq!(
            check_str("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"),
            Err(DuplicateLength)
        );
        assert_eq!(
            check_str("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"),
            Err(DuplicateLength)
        );
        assert_eq!(
            check_str("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            Err(BadLength)
        );
        assert_eq!(
            check_str("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
            Err(MissingHost)
        );
        assert_eq!(
            check_str("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(Malformed)
        );
        assert_eq!(
            check_str("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n"),
            Err(Malformed)
        );
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "X: 1\r\n".repeat(5));
        assert_eq!(check_str(&many), Err(TooManyFields));
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(check_str(&big), Err(TooLarge));
        assert_eq!(TooLarge.status(), 431);
        assert_eq!(MissingHost.status(), 400);
    }

    #[test]
    fn http2_fields_count_as_their_http1_lines() {
        let mut headers = http::HeaderMap::new();
        for name in ["a", "b", "c", "d", "e"] {
            headers.insert(name, http::HeaderValue::from_static("1"));
        }
        assert_eq!(check_h2_fields(&headers, LIMITS), Ok(()));
        for crumb in ["x=1", "y=2", "z=3"] {
            headers.append(http::header::COOKIE, http::HeaderValue::from_static(crumb));
        }
        assert_eq!(check_h2_fields(&headers, LIMITS), Err(HeadProblem::TooManyFields));
        headers.remove("a");
        assert_eq!(
            check_h2_fields(&headers, LIMITS),
            Ok(()),
            "three Cookie crumbs are one line"
        );
    }

    #[test]
    fn blank_lines_before_the_request_line_hide_nothing() {
        assert_eq!(check_str("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(
            check_str("\r\n\r\nGET / HTTP/1.1\r\nX: 1\r\n\r\n"),
            Err(HeadProblem::MissingHost)
        );
        assert_eq!(
            check_str(
                "\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Err(HeadProblem::LengthAndChunked)
        );
    }

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(31));
        assert_eq!(head_end(b"\r\n\r\n"), None);
    }
}
