//! What a consumer id may be, wherever one comes from (a token's claim, the admin
//! API, the config): it is sent as `X-Consumer-Id`, written to logs and used in
//! Redis keys, so nothing in it may break a line, reorder text or hide, and one id
//! must not read as another.

/// Longest consumer id, in bytes.
const MAX_BYTES: usize = 256;

/// `Ok` for a consumer id; else why not, for the admin API's and the config's messages.
pub fn check(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_BYTES {
        return Err("a consumer id is 1 to 256 bytes");
    }
    if id.chars().any(is_refused) {
        return Err("a consumer id has no control, invisible, bidi or line-separating characters, nor whitespace but a space");
    }
    Ok(())
}

fn is_refused(c: char) -> bool {
    c.is_control() || (c.is_whitespace() && c != ' ') || is_invisible(c)
}

/// Characters drawn as nothing (or as a space) that are not whitespace: bidi
/// controls, zero-width marks, fillers, variation selectors, tags. U+00A0 and the
/// line and paragraph separators are whitespace, above.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ids_of_1_to_256_bytes() {
        for id in ["acme", "auth0|abc", "a b", "Ünïcødé-ok", "用户", &"a".repeat(256)] {
            assert_eq!(check(id), Ok(()), "{id}");
        }
        assert!(check("").is_err());
        assert!(check(&"a".repeat(257)).is_err());
    }

    #[test]
    fn nothing_that_breaks_reorders_or_hides_text() {
        for c in [
            '\0',
            '\t',
            '\n',
            '\r',
            '\u{7F}',
            '\u{85}', // controls
            '\u{061C}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}', // bidi
            '\u{2028}',
            '\u{2029}', // line and paragraph separators
            '\u{00A0}',
            '\u{2009}',
            '\u{202F}',
            '\u{3000}', // whitespace other than a space
            '\u{00AD}',
            '\u{034F}',
            '\u{180E}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{2064}',
            '\u{FEFF}',
            '\u{FE0F}',
            '\u{E0041}', // invisible
        ] {
            let id = format!("a{c}b");
            assert!(check(&id).is_err(), "U+{:04X}", c as u32);
        }
    }
}
