//! TLS on both sides: certificates read and checked at load (`certs`), a TLS
//! listener's server config with SNI (`server`), and how an upstream is reached
//! over TLS and HTTP/2 (`upstream`). The library is rustls through Pingora's
//! `rustls` backend, the one TLS stack in the binary (Redis's `rediss://` uses it too).

pub mod certs;
pub mod server;
pub mod upstream;
