//! API keys: the config holds only `sha256:` digests, so a leaked config file
//! leaks no key. A presented key is hashed and its digest compared in constant time.

use super::{Failure, Identity, TierId};
use crate::config::schema::ApiKeysSpec;
use http::HeaderName;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Keys longer than this are refused before hashing.
const MAX_KEY_BYTES: usize = 1024;

struct Entry {
    digest: [u8; 32],
    identity: Identity,
}

pub struct ApiKeys {
    header: HeaderName,
    /// Bucketed by the digest's first 8 bytes; the whole digest is then compared in
    /// constant time, so timing reveals at most where a hash of the key lands.
    by_prefix: HashMap<u64, Vec<Entry>>,
}

/// `sha256:<hex>` of a key, as the config wants it.
pub fn hash_key(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

fn prefix(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl ApiKeys {
    /// Expects a validated spec (digests already checked for shape, tiers known).
    pub fn build(spec: &ApiKeysSpec, tiers: &[String], default_tier: TierId) -> Self {
        let mut by_prefix: HashMap<u64, Vec<Entry>> = HashMap::new();
        for key in &spec.keys {
            let mut digest = [0u8; 32];
            let hex_digest = key.key.strip_prefix("sha256:").unwrap_or_default();
            if hex::decode_to_slice(hex_digest, &mut digest).is_err() {
                continue;
            }
            let tier = key
                .tier
                .as_ref()
                .and_then(|t| tiers.iter().position(|n| n == t))
                .unwrap_or(default_tier);
            by_prefix.entry(prefix(&digest)).or_default().push(Entry {
                digest,
                identity: Identity {
                    consumer: Arc::from(key.consumer.as_str()),
                    tier,
                    headers: Arc::from([]),
                },
            });
        }
        ApiKeys {
            header: HeaderName::from_bytes(spec.header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-api-key")),
            by_prefix,
        }
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    pub fn verify(&self, key: &[u8]) -> Result<Identity, Failure> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Failure::UnknownApiKey);
        }
        let digest: [u8; 32] = Sha256::digest(key).into();
        self.by_prefix
            .get(&prefix(&digest))
            .and_then(|entries| entries.iter().find(|e| bool::from(e.digest.ct_eq(&digest))))
            .map(|e| e.identity.clone())
            .ok_or(Failure::UnknownApiKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::ApiKeySpec;

    #[test]
    fn keys_verify_by_digest_only() {
        let spec = ApiKeysSpec {
            header: "x-api-key".into(),
            keys: vec![
                ApiKeySpec {
                    consumer: "acme".into(),
                    key: hash_key("acme-secret"),
                    tier: Some("premium".into()),
                },
                ApiKeySpec {
                    consumer: "plain".into(),
                    key: hash_key("plain-secret"),
                    tier: None,
                },
            ],
        };
        let tiers = ["free".to_string(), "premium".to_string()];
        let keys = ApiKeys::build(&spec, &tiers, 0);
        let acme = keys.verify(b"acme-secret").expect("acme");
        assert_eq!((&*acme.consumer, acme.tier), ("acme", 1));
        assert_eq!(keys.verify(b"plain-secret").expect("plain").tier, 0);
        assert_eq!(keys.verify(b"acme-secreT").err(), Some(Failure::UnknownApiKey));
        assert_eq!(keys.verify(b"").err(), Some(Failure::UnknownApiKey));
        assert_eq!(keys.verify(&[b'a'; 2000]).err(), Some(Failure::UnknownApiKey));
    }

    #[test]
    fn hash_key_matches_sha256() {
        assert_eq!(
            hash_key("password"),
            "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }
}
