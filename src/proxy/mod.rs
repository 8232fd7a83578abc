//! The data path: the only module that touches Pingora's `Session`.

pub mod ctx;
pub mod decide;
pub mod failure;
pub mod forward;
pub mod gateway;
pub mod host;
pub mod pace;
mod parts;
pub mod respond;

pub use gateway::Gateway;
