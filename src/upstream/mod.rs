//! Upstream target pools: load balancing with active health checks.

pub mod pool;

pub use pool::Pool;
