//! The integration tests, one crate: the real `floodgate` binary against real loopback
//! upstreams, redis-server and headless Chromium. One module per area; the harness is in
//! `common`. `cargo test --test integration ratelimit::` runs one area.

mod common;

mod admin;
mod auth;
mod breakers;
mod cluster_budget;
mod config;
mod consumers;
mod discovery;
mod exhaustion;
mod fleet;
mod forwarding_hardening;
mod hardening;
mod host_hardening;
mod lifecycle;
mod proxy;
mod ratelimit;
mod route_policies;
mod systemd_unit;
mod telemetry;
mod tls;
mod upstreams;
