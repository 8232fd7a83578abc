//! Connection-level protections in front of any HTTP application (the proxy
//! and the admin listener): connection caps, the header and send deadlines of
//! a wrapped stream, and strict checks of request heads.

pub mod guard;
pub mod head;
pub mod limits;
pub mod stream;
