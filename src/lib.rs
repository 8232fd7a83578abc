//! floodgate: an API gateway on Cloudflare's Pingora.
//!
//! ```text
//! conf/floodgate.yaml ─config::load→ Config (validated, keys loaded) ─app::build→ Gateway + services
//!
//! connection → [connection::guard: PROXY header, caps, TLS handshake, header deadline (h1 and h2),
//!                431/400 on bad framing]
//! request
//!         → request_filter [decide: route → policies (address rules, CORS) → auth → limits, all
//!                           or none → act] (no I/O)
//!         → upstream_peer  [select_with(healthy ∧ breaker allows ∧ not yet tried)] (503 when nothing is left)
//!         → upstream_response_filter / fail_to_connect / fail_to_proxy [breaker.record once per attempt;
//!           connect failures retried on another target, bounded by `retries`]
//!         → response_filter [the route's policies: header rules, CORS, compression]
//!         → logging        [telemetry::record: metrics, live stats, access-log queue]
//!
//! Every phase from routing on also calls the route's policies (`policy::RoutePolicy`).
//!
//! background: health checks · JWKS refresh · redis sync · access-log writer · echo upstream ·
//!             admin HTTP (metrics, stats, dashboard) · readiness
//! ```
#![deny(clippy::unwrap_used)]

pub mod app;
pub mod auth;
pub mod config;
pub mod connection;
pub mod consumers;
pub mod error;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod routing;
pub mod services;
pub mod telemetry;
pub mod tls;
pub mod traces;
pub mod upstream;
pub mod vocab;

#[cfg(test)]
mod import_direction;
