//! RFC 3986 path normalization: routing, auth and the upstream all see one
//! spelling of a path, so no spelling (`//api`, `/%61pi`, `/x/../api`) reaches a
//! route other than the one its normalized form names.

use std::borrow::Cow;

/// A path spelling that upstreams decode differently from the gateway: an encoded
/// `/` or `\`, a raw `\`, a `;` path parameter (raw or encoded), or an encoded NUL.
/// Routing sees `/pub/..%2Fapi` as one segment under `/pub/`; an upstream that
/// decodes `%2F` first serves `/api`.
pub fn is_ambiguous(path: &str) -> bool {
    let bytes = path.as_bytes();
    if !bytes.iter().any(|b| matches!(b, b'%' | b'\\' | b';')) {
        return false;
    }
    bytes.iter().enumerate().any(|(i, b)| match b {
        b'\\' | b';' => true,
        b'%' => matches!(
            (
                bytes.get(i + 1).map(u8::to_ascii_uppercase),
                bytes.get(i + 2).map(u8::to_ascii_uppercase)
            ),
            (Some(b'2'), Some(b'F'))
                | (Some(b'5'), Some(b'C'))
                | (Some(b'3'), Some(b'B'))
                | (Some(b'0'), Some(b'0'))
        ),
        _ => false,
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 normalization of an absolute path: percent-decodes unreserved
/// characters (and upper-cases the rest), merges `//`, removes `.` and `..`
/// segments (never above the root). `None` for a path that is not absolute or
/// holds a malformed percent-escape.
pub fn normalize_path(path: &str) -> Option<Cow<'_, str>> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let clean = !path.contains('%') && !path.contains("//") && !path.contains("/.");
    if clean {
        return Some(Cow::Borrowed(path));
    }

    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value)?;
            let lo = bytes.get(i + 2).copied().and_then(hex_value)?;
            let value = hi * 16 + lo;
            if is_unreserved(value) {
                decoded.push(value as char);
            } else {
                decoded.push('%');
                decoded.push(bytes[i + 1].to_ascii_uppercase() as char);
                decoded.push(bytes[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
        } else {
            // Multi-byte UTF-8 is copied whole: '%' and '/' never occur inside it.
            let len = utf8_len(b);
            decoded.push_str(&path[i..i + len]);
            i += len;
        }
    }

    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = decoded.ends_with('/');
    for segment in decoded.split('/') {
        match segment {
            "" => {}
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    // A final "/" in the input closes the last segment even after "..".
    trailing_slash |= decoded.ends_with('/');
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Some(Cow::Owned(out))
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Option<String> {
        normalize_path(p).map(Cow::into_owned)
    }

    #[test]
    fn ambiguous_spellings() {
        for p in [
            "/pub/..%2Fapi/secret.txt",
            "/pub/%2e%2e%2fapi",
            "/pub/..%5capi",
            "/pub/..\\api",
            "/docs/private;x=1/x",
            "/docs/private%3Bx=1",
            "/a%00b",
        ] {
            assert!(is_ambiguous(p), "{p}");
        }
        for p in ["/api/users", "/a%20b", "/%61pi", "/x/../y", "/q%2"] {
            assert!(!is_ambiguous(p), "{p}");
        }
    }

    #[test]
    fn normalization() {
        assert_eq!(norm("/api/users").as_deref(), Some("/api/users"));
        assert_eq!(norm("//api//users").as_deref(), Some("/api/users"));
        assert_eq!(norm("/public/../api/x").as_deref(), Some("/api/x"));
        assert_eq!(norm("/public/%2e%2e/api").as_deref(), Some("/api"));
        assert_eq!(norm("/public/%2E%2E/api/").as_deref(), Some("/api/"));
        assert_eq!(norm("/%61pi/x").as_deref(), Some("/api/x"));
        assert_eq!(norm("/./api/./x").as_deref(), Some("/api/x"));
        assert_eq!(norm("/../../api").as_deref(), Some("/api"));
        assert_eq!(norm("/api/..").as_deref(), Some("/"));
        assert_eq!(norm("/a%2fb").as_deref(), Some("/a%2Fb"));
        assert_eq!(norm("/caf\u{e9}/%7e").as_deref(), Some("/caf\u{e9}/~"));
        assert_eq!(norm("/api/"), Some("/api/".into()));
        assert_eq!(norm("/"), Some("/".into()));
        assert_eq!(norm("/bad%zz"), None);
        assert_eq!(norm("/bad%2"), None);
        assert_eq!(norm("api"), None);
        assert_eq!(norm("*"), None);
    }
}
