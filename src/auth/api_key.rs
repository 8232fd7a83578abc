//! API keys: the config holds only `sha256:` digests, so a leaked config file
//! leaks no key, and so do keys created at runtime (`consumers::keys`). A presented key
//! is hashed and its digest compared in constant time against the config's, then
//! looked up among the runtime keys. Keys that verified are remembered (in memory
//! only, bounded): a client sends the same key on every request, and hashing it
//! again costs more than the rest of the decision. A remembered runtime key is
//! checked again once its own record left the set (revoked, replaced) or it
//! expired; a write to any other key leaves it remembered.

use crate::consumers::keys::{RuntimeKey, RuntimeKeys};
use crate::vocab::auth_failure::Failure;
use crate::vocab::identity::Identity;
use crate::vocab::ids::TierId;
use http::HeaderName;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
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

/// A key that verified: a runtime one with the record it was checked against.
#[derive(Clone)]
struct Verified {
    identity: Identity,
    runtime: Option<Arc<RuntimeKey>>,
}

pub struct ApiKeys {
    header: HeaderName,
    /// Bucketed by the digest's first 8 bytes; the whole digest is then compared in
    /// constant time, so timing reveals at most where a hash of the key lands.
    by_prefix: HashMap<u64, Vec<Entry>>,
    runtime: Arc<RuntimeKeys>,
    /// The tier of a runtime key created without one.
    default_tier: TierId,
    verified: quick_cache::sync::Cache<Box<[u8]>, Verified>,
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
    pub fn new(config: crate::config::ApiKeys, runtime: Arc<RuntimeKeys>, default_tier: TierId) -> Self {
        let mut by_prefix: HashMap<u64, Vec<Entry>> = HashMap::new();
        for key in config.keys {
            by_prefix.entry(prefix(&key.digest)).or_default().push(Entry {
                digest: key.digest,
                identity: Identity::new(Arc::from(key.consumer), key.tier, Arc::from([])),
            });
        }
        ApiKeys {
            header: config.header,
            by_prefix,
            runtime,
            default_tier,
            verified: quick_cache::sync::Cache::new(VERIFIED_KEYS),
        }
    }

    /// Whether a config key has this digest (a runtime key may not take it).
    pub fn in_config(&self, digest: &[u8; 32]) -> bool {
        self.by_prefix
            .get(&prefix(digest))
            .is_some_and(|entries| entries.iter().any(|e| bool::from(e.digest.ct_eq(digest))))
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    pub fn verify(&self, key: &[u8], now_s: u64) -> Result<Identity, Failure> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Failure::UnknownApiKey);
        }
        let mut stale = false;
        if let Some(hit) = self.verified.get(key) {
            stale = true;
            match &hit.runtime {
                None => return Ok(hit.identity),
                Some(runtime) if !runtime.retired() && !runtime.expired(now_s) => {
                    mark_used(runtime, now_s);
                    return Ok(hit.identity);
                }
                Some(_) => {} // its record changed, or it expired: check again
            }
        }
        let digest: [u8; 32] = Sha256::digest(key).into();
        let from_config = self
            .by_prefix
            .get(&prefix(&digest))
            .and_then(|entries| entries.iter().find(|e| bool::from(e.digest.ct_eq(&digest))))
            .map(|e| e.identity.clone());
        let verified = match from_config {
            Some(identity) => Verified {
                identity,
                runtime: None,
            },
            None => {
                let Some(runtime) = self.runtime.find(&digest).filter(|k| !k.expired(now_s)) else {
                    if stale {
                        // Gone for good: its retired record need not stay held here.
                        self.verified.remove(key);
                    }
                    return Err(Failure::UnknownApiKey);
                };
                mark_used(&runtime, now_s);
                Verified {
                    identity: Identity::new(
                        runtime.consumer.clone(),
                        runtime.tier().unwrap_or(self.default_tier),
                        Arc::from([]),
                    ),
                    runtime: Some(runtime),
                }
            }
        };
        let identity = verified.identity.clone();
        self.verified.insert(key.into(), verified);
        Ok(identity)
    }
}

/// At most one write a second per key: workers sharing a hot key do not fight over it.
fn mark_used(key: &RuntimeKey, now_s: u64) {
    if key.last_used_s.load(Ordering::Relaxed) != now_s {
        key.last_used_s.store(now_s, Ordering::Relaxed);
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
            tier: TierId(tier),
        }
    }

    #[test]
    fn keys_verify_by_digest_only() {
        let keys = ApiKeys::new(
            crate::config::ApiKeys {
                header: HeaderName::from_static("x-api-key"),
                keys: vec![key("acme", "acme-secret", 1), key("plain", "plain-secret", 0)],
            },
            Arc::default(),
            TierId(0),
        );
        let acme = keys.verify(b"acme-secret", 0).expect("acme");
        assert_eq!((&*acme.consumer, acme.tier), ("acme", TierId(1)));
        let again = keys.verify(b"acme-secret", 0).expect("acme from the cache");
        assert_eq!((&*again.consumer, again.tier), ("acme", TierId(1)));
        assert_eq!(keys.verified.len(), 1);
        assert_eq!(keys.verify(b"plain-secret", 0).expect("plain").tier, TierId(0));
        assert_eq!(keys.verify(b"acme-secreT", 0).err(), Some(Failure::UnknownApiKey));
        assert_eq!(keys.verify(b"", 0).err(), Some(Failure::UnknownApiKey));
        assert_eq!(keys.verify(&[b'a'; 2000], 0).err(), Some(Failure::UnknownApiKey));
        assert_eq!(keys.verified.len(), 2, "unknown keys are never remembered");
    }

    #[test]
    fn a_runtime_key_verifies_until_revoked_or_expired() {
        let runtime = Arc::new(RuntimeKeys::default());
        let keys = ApiKeys::new(
            crate::config::ApiKeys {
                header: HeaderName::from_static("x-api-key"),
                keys: vec![key("acme", "acme-secret", 1)],
            },
            runtime.clone(),
            TierId(2),
        );
        let digest: [u8; 32] = Sha256::digest(b"runtime-secret").into();
        assert!(keys.in_config(&Sha256::digest(b"acme-secret").into()));
        assert!(!keys.in_config(&digest));
        runtime.insert(RuntimeKey::new(
            "k1".into(),
            Arc::from("bob"),
            digest,
            None,
            0,
            Some(100),
        ));
        let bob = keys.verify(b"runtime-secret", 10).expect("bob");
        assert_eq!((&*bob.consumer, bob.tier), ("bob", TierId(2)), "the default tier");
        assert!(keys.verify(b"runtime-secret", 11).is_ok(), "from the cache");
        assert_eq!(
            runtime
                .find(&digest)
                .expect("k1")
                .last_used_s
                .load(Ordering::Relaxed),
            11
        );
        assert_eq!(
            keys.verify(b"runtime-secret", 100).err(),
            Some(Failure::UnknownApiKey),
            "expired"
        );
        let other: [u8; 32] = Sha256::digest(b"other-secret").into();
        runtime.insert(RuntimeKey::new(
            "k2".into(),
            Arc::from("bob"),
            other,
            None,
            0,
            None,
        ));
        assert!(keys.verify(b"other-secret", 11).is_ok());
        assert!(runtime.remove("bob", "k1"));
        assert_eq!(
            keys.verify(b"runtime-secret", 12).err(),
            Some(Failure::UnknownApiKey),
            "revoked"
        );
        assert!(
            keys.verified.get(&b"runtime-secret"[..]).is_none(),
            "a revoked key is forgotten once refused"
        );
        let cached = keys.verified.get(&b"other-secret"[..]).expect("k2 remembered");
        assert!(
            cached.runtime.is_some_and(|k| !k.retired()),
            "revoking k1 leaves k2's verification in force"
        );
    }

    #[test]
    fn hash_key_matches_sha256() {
        assert_eq!(
            hash_key("password"),
            "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }
}
