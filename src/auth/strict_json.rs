//! JSON with duplicate object keys refused. serde_json keeps the last copy of a
//! key, other parsers the first: a token whose `tier` says one thing to floodgate
//! and another to an upstream that reads the token again must not verify.

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Whether some object in `json` repeats a key. Text that is not JSON has none:
/// it is refused as malformed where it is parsed.
pub fn has_duplicate_keys(json: &[u8]) -> bool {
    serde_json::from_slice::<UniqueKeys>(json)
        .is_err_and(|e| e.classify() == serde_json::error::Category::Data)
}

/// A JSON value, parsed only to be checked.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without duplicate keys")
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E: Error>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E: Error>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E: Error>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E: Error>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E: Error>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(A::Error::custom("duplicate key"));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_anywhere_are_found() {
        let unique = br#"{"sub":"a","tier":"free","n":{"x":1},"l":[{"y":2}]}"#;
        assert!(!has_duplicate_keys(unique));
        assert!(has_duplicate_keys(br#"{"tier":"free","tier":"enterprise"}"#));
        assert!(has_duplicate_keys(br#"{"a":{"x":1,"x":2}}"#));
        assert!(has_duplicate_keys(br#"{"l":[{"y":1,"y":1}]}"#));
        // The same key spelled with an escape is the same key.
        assert!(has_duplicate_keys(br#"{"tier":"a","ti\u0065r":"b"}"#));
        assert!(!has_duplicate_keys(b"{not json"));
    }
}
