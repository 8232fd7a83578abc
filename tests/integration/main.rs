//! The integration tests, one crate: the real `floodgate` binary against real loopback
//! upstreams, redis-server and headless Chromium. One module per area (a folder where the area's
//! files share a fixture); every server and process the tests run is in `common`.
//! `cargo test --test integration ratelimit::` runs one area.

mod common;

mod admin;
mod auth;
mod breakers;
mod cluster_budget;
mod config;
mod connection_caps;
mod consumers;
mod consumers_at_scale;
mod discovery;
mod fleet;
mod forwarded_headers;
mod host_header;
mod http2;
mod lifecycle;
mod many_routes;
mod otlp_receiver;
mod path_spellings;
mod pooled_connections;
mod proxy;
mod proxy_protocol;
mod ratelimit;
mod regions;
mod relay;
mod request_framing;
mod route_policies;
mod slow_readers;
mod slow_requests;
mod systemd_unit;
mod telemetry;
mod tls;
mod traces;
mod upstreams;
mod websocket;
