//! Upstream target pools: discovery, load balancing with active health checks,
//! and circuit breakers.

pub mod breaker;
pub mod candidates;
pub mod discovery;
pub mod pool;
pub mod startup_runtime;
pub mod targets;

pub use pool::Pool;
