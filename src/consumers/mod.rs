//! Runtime consumers, the one home of what the admin API creates while the
//! gateway runs: API keys (keys.rs, with the ids of revoked ones; held by digest in
//! by_digest.rs and by consumer in by_consumer.rs), tier overrides
//! (overrides.rs), their stored format (stored.rs) and where they outlive a
//! restart (durability.rs). Auth and the decision read them; the admin API, the
//! Redis sync and start-up write them. Their I/O (Redis, the state file) is in
//! services.

pub mod by_consumer;
pub mod by_digest;
pub mod durability;
pub mod keys;
pub mod overrides;
pub mod stored;
