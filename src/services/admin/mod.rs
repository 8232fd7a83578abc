//! The admin listener (separate port): `/health` while the process runs, `/ready`
//! once the config is loaded and every proxy listener accepts connections, and
//! `GET /metrics` (Prometheus), `GET /admin/stats`, `GET /admin/circuit-breakers`,
//! the live dashboard at `GET /`, and the consumers API under `/admin/consumers`
//! (consumers.rs: runtime keys, tier overrides, the consumer view; consumer_list.rs: the list). Writes need the bearer `admin.token`; so do the stats and the
//! breakers, which name consumers, client addresses and targets, unless
//! `admin.public_stats` publishes them. `/metrics` holds none of those.

pub mod client;
mod consumer_id;
pub mod consumer_list;
mod consumer_view;
mod consumers;
mod stats;

pub use consumers::Consumers;

use crate::connection::head_clock;
use crate::connection::limits::ConnectionLimits;
use crate::consumers::overrides::TierOverrides;
use crate::ratelimit::RateLimiter;
use crate::services::redis_sync::budgets::BudgetStore;
use crate::telemetry::Telemetry;
use crate::upstream::Pool;
use crate::vocab::ids::{ById, UpstreamId};
use async_trait::async_trait;
use http::{Method, Response};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Admin request bodies are small; anything larger is refused unread.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct Admin {
    pub ready: Arc<AtomicBool>,
    /// Bearer token for writes; `None` disables them.
    pub token: Option<String>,
    /// Stats and breakers readable without the token.
    pub public_stats: bool,
    pub limiter: Arc<RateLimiter>,
    pub overrides: Arc<TierOverrides>,
    /// Redis's side of the cluster budgets; `None` without Redis.
    pub budgets: Option<BudgetStore>,
    /// Runtime keys, and the config's keys they must not collide with.
    pub consumers: Consumers,
    pub tier_names: Vec<String>,
    pub pools: Arc<ById<UpstreamId, Pool>>,
    pub telemetry: Arc<Telemetry>,
    /// The proxy listener's connection caps.
    pub connections: Arc<ConnectionLimits>,
    /// One scrape at a time: the mirrored series are read, updated and pruned together.
    pub scrape: std::sync::Mutex<()>,
}

/// The dashboard: one self-contained page (no CDN) polling the JSON endpoints.
const DASHBOARD: &str = include_str!("../dashboard.html");

fn error(status: u16, code: &str, message: &str) -> Response<Vec<u8>> {
    super::json_response(
        status,
        serde_json::json!({"error": code, "message": message}).to_string(),
    )
}

/// Removes the series of `vec` for which `live(upstream, target)` is false.
fn prune<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    live: impl Fn(&str, &str) -> bool,
) {
    use prometheus::core::Collector;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: std::collections::HashMap<&str, &str> =
                metric.get_label().iter().map(|l| (l.name(), l.value())).collect();
            let (Some(upstream), Some(target)) = (labels.get("upstream"), labels.get("target")) else {
                continue;
            };
            if !live(upstream, target) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

impl Admin {
    /// Gauges that mirror state owned elsewhere are read at scrape time.
    fn refresh_gauges(&self) {
        let t = &self.telemetry;
        let mut live: Vec<(&str, String)> = Vec::new();
        for (u, pool) in self.pools.iter_enumerated() {
            let upstream = t.upstream_name(u);
            let errors = t.state.upstream_resolve_errors.with_label_values(&[upstream]);
            errors.inc_by(pool.resolve_errors().saturating_sub(errors.get()));
            let refused = t.state.upstream_refused_answers.with_label_values(&[upstream]);
            refused.inc_by(pool.refused_answers().saturating_sub(refused.get()));
            for target in pool.status() {
                let addr = target.addr.to_string();
                let labels = [upstream, addr.as_str()];
                t.state
                    .upstream_healthy
                    .with_label_values(&labels)
                    .set(i64::from(target.healthy));
                if let Some(breaker) = target.breaker {
                    t.state
                        .breaker_state
                        .with_label_values(&labels)
                        .set(breaker.state.gauge());
                    for (to, count) in ["closed", "half_open", "open"].iter().zip(target.transitions) {
                        let counter =
                            t.state
                                .breaker_transitions
                                .with_label_values(&[upstream, addr.as_str(), to]);
                        counter.inc_by(count.saturating_sub(counter.get()));
                    }
                }
                live.push((upstream, addr));
            }
        }
        // A target discovery removed takes its series with it.
        let is_live = |upstream: &str, target: &str| live.iter().any(|(u, a)| *u == upstream && a == target);
        prune(&t.state.upstream_healthy, is_live);
        prune(&t.state.breaker_state, is_live);
        prune(&t.state.breaker_transitions, is_live);
        t.state.open_connections.set(self.connections.open() as i64);
        let refused = self.connections.refused.load(Ordering::Relaxed);
        t.state
            .connections_refused
            .inc_by(refused.saturating_sub(t.state.connections_refused.get()));
        let sync = &self.limiter.sync;
        let errors = sync.errors.load(Ordering::Relaxed);
        t.state
            .redis_sync_errors
            .inc_by(errors.saturating_sub(t.state.redis_sync_errors.get()));
        t.state
            .redis_last_sync
            .set((sync.last_sync_ms.load(Ordering::Relaxed) / 1000) as i64);
        t.state
            .global_limit_degraded
            .set(i64::from(sync.degraded.load(Ordering::Relaxed)));
        t.state
            .redis_sync_keys
            .set(sync.keys_synced.load(Ordering::Relaxed) as i64);
        t.state
            .redis_sync_keys_waiting
            .set(sync.keys_waiting.load(Ordering::Relaxed) as i64);
    }

    fn circuit_breakers(&self) -> serde_json::Value {
        let upstreams: Vec<serde_json::Value> = self
            .pools
            .iter()
            .map(|pool| {
                let targets: Vec<serde_json::Value> = pool
                    .status()
                    .into_iter()
                    .map(|t| {
                        let breaker = t.breaker.map(|b| {
                            serde_json::json!({
                                "state": b.state.as_str(),
                                "failures_in_window": b.failures_in_window,
                                "half_open_in_s": b.half_open_in.map(|d| d.as_secs_f64()),
                            })
                        });
                        serde_json::json!({
                            "target": t.addr.to_string(),
                            "healthy": t.healthy,
                            "breaker": breaker,
                        })
                    })
                    .collect();
                serde_json::json!({"name": pool.name, "targets": targets})
            })
            .collect();
        serde_json::json!({ "upstreams": upstreams })
    }

    fn authorized(&self, session: &ServerSession) -> Result<(), Box<Response<Vec<u8>>>> {
        let Some(token) = &self.token else {
            return Err(Box::new(error(
                403,
                "forbidden",
                "disabled: set admin.token (and admin.public_stats for public stats)",
            )));
        };
        let mut values = session
            .req_header()
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter();
        let (first, second) = (values.next(), values.next());
        if second.is_some() {
            return Err(Box::new(error(
                400,
                "bad_request",
                "two Authorization headers: send one",
            )));
        }
        let presented = first
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim());
        if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(Box::new(error(
                401,
                "unauthorized",
                "an admin bearer token is required",
            )))
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // The connection's header deadline rests while a request is being answered.
        head_clock::head_received();
        let answer = self.answer(session).await;
        head_clock::request_done();
        answer
    }
}

impl Admin {
    async fn answer(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let get = method == Method::GET || method == Method::HEAD;
        let headers = &session.req_header().headers;
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let has_body =
            declared.is_some_and(|n| n > 0) || headers.contains_key(http::header::TRANSFER_ENCODING);
        if has_body && method != Method::PUT && method != Method::POST {
            // A body nobody reads is never waited for: answer, then close.
            session.set_keepalive(None);
        }
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            session.set_keepalive(None);
            return error(413, "body_too_large", "admin bodies are at most 64 KiB");
        }
        if let Some(answer) = self.consumers_api(session, &method, &path).await {
            return answer;
        }
        let private = matches!(path.as_str(), "/admin/stats" | "/admin/circuit-breakers");
        if get && private && !self.public_stats {
            if let Err(denied) = self.authorized(session) {
                return *denied;
            }
        }
        match (get, path.as_str()) {
            (true, "/health") => super::json_response(200, r#"{"status":"ok"}"#.into()),
            (true, "/admin/circuit-breakers") => {
                super::json_response(200, self.circuit_breakers().to_string())
            }
            (true, "/admin/stats") => super::json_response(
                200,
                stats::stats(&self.telemetry, crate::vocab::clock::unix_now().as_secs()).to_string(),
            ),
            (true, "/metrics") => {
                let scraping = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
                self.refresh_gauges();
                let body = self.telemetry.render();
                drop(scraping);
                Response::builder()
                    .status(200)
                    .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                    .header(http::header::CONTENT_LENGTH, body.len())
                    .body(body)
                    .unwrap_or_default()
            }
            (true, "/") => Response::builder()
                .status(200)
                .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
                .header(http::header::CONTENT_LENGTH, DASHBOARD.len())
                .body(DASHBOARD.as_bytes().to_vec())
                .unwrap_or_default(),
            (true, "/ready") if self.ready.load(Ordering::Acquire) => {
                super::json_response(200, r#"{"status":"ready"}"#.into())
            }
            (true, "/ready") => super::json_response(503, r#"{"status":"starting"}"#.into()),
            (false, "/health" | "/ready") => error(405, "method_not_allowed", "use GET"),
            _ => error(404, "no_route", "no admin endpoint here"),
        }
    }
}
