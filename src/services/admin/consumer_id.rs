//! A consumer id as the admin API takes it from a path: percent-decoded once,
//! then held to the rule every consumer id follows (`vocab::consumer_id`).

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
    crate::vocab::consumer_id::check(&id)?;
    Ok(id)
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
        assert!(consumer_id(&"a".repeat(256)).is_ok());
        assert!(consumer_id(&"a".repeat(257)).is_err());
        assert!(consumer_id("a%0Ab").is_err());
        assert!(consumer_id("a%00").is_err());
        assert!(consumer_id("a%E2%80%AEb").is_err(), "a right-to-left override");
        assert!(consumer_id("a%C2%A0b").is_err(), "a no-break space");
        assert!(consumer_id("a%E2%80%A8b").is_err(), "a line separator");
        assert!(consumer_id("a%CD%8Fb").is_err(), "a combining grapheme joiner");
        assert!(consumer_id("a%zz").is_err());
        assert!(consumer_id("a%4").is_err());
        assert!(consumer_id("%ff").is_err());
        assert!(consumer_id("").is_err());
    }
}
