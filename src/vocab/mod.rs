//! Shared words of the data path that every component may use: path
//! normalization, the caller's identity and tier, the ids of routes, upstreams
//! and tiers, the client address, the key of whoever is limited, which limit
//! refused and why credentials were refused, a gateway-made answer, the clock and
//! ids in hex.
//! Nothing here imports a component or the config.

pub mod answer;
pub mod auth_failure;
pub mod client_addr;
pub mod clock;
pub mod consumer_id;
pub mod error_body;
pub mod hex;
pub mod identity;
pub mod ids;
pub mod limit_key;
pub mod limit_scope;
pub mod path;
