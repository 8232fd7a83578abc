//! Upstream target pools: load balancing with active health checks.

pub mod breaker;
pub mod pool;

pub use pool::Pool;
