//! A consumer id as the admin API takes it from a path: percent-decoded once,
//! at most 128 bytes, no control characters, so it is safe in logs, headers and
//! Redis keys.

/// Longest consumer id the admin API accepts.
const MAX_CONSUMER_ID_BYTES: usize = 128;

pub fn consumer_id(segment: &str) -> Result<String, &'static str> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3).ok_or("a malformed percent-escape")?;
            decoded.push(u8::from_str_radix(hex, 16).map_err(|_| "a malformed percent-escape")?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let id = String::from_utf8(decoded).map_err(|_| "not UTF-8")?;
    if id.is_empty() || id.len() > MAX_CONSUMER_ID_BYTES {
        return Err("a consumer id is 1 to 128 bytes");
    }
    if id.chars().any(|c| c.is_control() || is_format(c)) {
        return Err("a consumer id has no control or invisible formatting characters");
    }
    Ok(id)
}

/// Invisible characters that reorder or hide text (bidi overrides, zero-width
/// marks): in a log line they make one consumer id read as another.
fn is_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_once_bounded_and_printable() {
        assert_eq!(consumer_id("acme"), Ok("acme".to_string()));
        assert_eq!(consumer_id("a%20b"), Ok("a b".to_string()));
        // Decoded once only: %2541 stays "%41".
        assert_eq!(consumer_id("%2541"), Ok("%41".to_string()));
        assert!(consumer_id(&"a".repeat(128)).is_ok());
        assert!(consumer_id(&"a".repeat(129)).is_err());
        assert!(consumer_id("a%0Ab").is_err());
        assert!(consumer_id("a%00").is_err());
        assert!(consumer_id("a%E2%80%AEb").is_err(), "a right-to-left override");
        assert!(consumer_id("a%zz").is_err());
        assert!(consumer_id("a%4").is_err());
        assert!(consumer_id("%ff").is_err());
        assert!(consumer_id("").is_err());
    }
}
