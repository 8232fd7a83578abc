//! API keys: the config holds only `sha256:` digests, so a leaked config file
//! leaks no key. A presented key is hashed and its digest compared in constant time.
//! Keys that verified are remembered (in memory only, bounded): a client sends the
//! same key on every request, and hashing it again costs more than the rest of the
//! decision.

use super::Failure;
use crate::vocab::identity::Identity;
use http::HeaderName;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Keys longer than this are refused before hashing.
const MAX_KEY_BYTES: usize = 1024;
/// Verified keys remembered; unknown keys never are, so guessing cannot fill it.
const VERIFIED_KEYS: usize = 10_000;

struct Entry {
    digest: [u8; 32],
    identity: Identity,
}

pub struct ApiKeys {
    header: HeaderName,
    /// Bucketed by the digest's first 8 bytes; the whole digest is then compared in
    /// constant time, so timing reveals at most where a hash of the key lands.
    by_prefix: HashMap<u64, Vec<Entry>>,
    verified: quick_cache::sync::Cache<Box<[u8]>, Identity>,
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
    pub fn new(config: crate::config::ApiKeys) -> Self {
        let mut by_prefix: HashMap<u64, Vec<Entry>> = HashMap::new();
        for key in config.keys {
            by_prefix.entry(prefix(&key.digest)).or_default().push(Entry {
                digest: key.digest,
                identity: Identity {
                    consumer: Arc::from(key.consumer),
                    tier: key.tier,
                    headers: Arc::from([]),
                },
            });
        }
        ApiKeys {
            header: config.header,
            by_prefix,
            verified: quick_cache::sync::Cache::new(VERIFIED_KEYS),
        }
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    pub fn verify(&self, key: &[u8]) -> Result<Identity, Failure> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Failure::UnknownApiKey);
        }
        if let Some(identity) = self.verified.get(key) {
            return Ok(identity);
        }
        let digest: [u8; 32] = Sha256::digest(key).into();
        let identity = self
            .by_prefix
            .get(&prefix(&digest))
            .and_then(|entries| entries.iter().find(|e| bool::from(e.digest.ct_eq(&digest))))
            .map(|e| e.identity.clone())
            .ok_or(Failure::UnknownApiKey)?;
        self.verified.insert(key.into(), identity.clone());
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKey;

    fn key(consumer: &str, secret: &str, tier: usize) -> ApiKey {
        ApiKey {
            consumer: consumer.into(),
            digest: Sha256::digest(secret.as_bytes()).into(),
            tier,
        }
    }

    #[test]
    fn keys_verify_by_digest_only() {
        let keys = ApiKeys::new(crate::config::ApiKeys {
            header: HeaderName::from_static("x-api-key"),
            keys: vec![key("acme", "acme-secret", 1), key("plain", "plain-secret", 0)],
        });
        let acme = keys.verify(b"acme-secret").expect("acme");
        assert_eq!((&*acme.consumer, acme.tier), ("acme", 1));
        let again = keys.verify(b"acme-secret").expect("acme from the cache");
        assert_eq!((&*again.consumer, again.tier), ("acme", 1));
        assert_eq!(keys.verified.len(), 1);
        assert_eq!(keys.verify(b"plain-secret").expect("plain").tier, 0);
        assert_eq!(keys.verify(b"acme-secreT").err(), Some(Failure::UnknownApiKey));
        assert_eq!(keys.verify(b"").err(), Some(Failure::UnknownApiKey));
        assert_eq!(keys.verify(&[b'a'; 2000]).err(), Some(Failure::UnknownApiKey));
        assert_eq!(keys.verified.len(), 2, "unknown keys are never remembered");
    }

    #[test]
    fn hash_key_matches_sha256() {
        assert_eq!(
            hash_key("password"),
            "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }
}
