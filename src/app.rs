//! The one composition root: turns a validated [`Config`] into a Pingora server
//! with the proxy, its health checks, the echo upstream, the admin listener and
//! the readiness probe registered as services.

use crate::auth::Authenticator;
use crate::config::schema::{RedisSpec, TierSpec, UpstreamKind};
use crate::config::{AccessLogTarget, Config};
use crate::error::StartupError;
use crate::proxy::guard::HeaderGuard;
use crate::proxy::Gateway;
use crate::ratelimit::global::GlobalWindow;
use crate::ratelimit::local::BucketParams;
use crate::ratelimit::RateLimiter;
use crate::routing::RouteTable;
use crate::services::{
    access_log::AccessLogWriter, admin::Admin, echo::Echo, jwks::JwksRefresher, readiness::ReadinessProbe,
    redis_sync::RedisSync,
};
use crate::telemetry::{Telemetry, ACCESS_LOG_QUEUE};
use crate::upstream::Pool;
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_core::services::ServiceWithDependents;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Drain window when the config sets no `graceful_shutdown_timeout_seconds` (Pingora's
/// own default grace period, 300 s, outlasts any systemd stop timeout).
const DEFAULT_DRAIN_S: u64 = 10;

/// What `-t` checks beyond the file itself: key files load and every algorithm self-tests.
pub fn check(config: &Config) -> Result<(), StartupError> {
    if let Some(spec) = &config.auth {
        Authenticator::build(spec, &config.tiers).map_err(StartupError::Invalid)?;
    }
    Ok(())
}

pub fn build(mut config: Config, opt: Opt) -> Result<Server, StartupError> {
    // Pingora retries a taken port for half a minute and its failure is easy to miss;
    // fail at once instead. An upgrade inherits its sockets, so there is nothing to check.
    let upgrading = opt.upgrade;
    if !upgrading {
        for addr in config.listen.iter().chain(std::iter::once(&config.admin_listen)) {
            TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr: *addr, source })?;
        }
    }
    // Retries are ours to bound (per upstream, in fail_to_connect); Pingora's own cap
    // of 16 would otherwise resend a request on stale pooled connections that often.
    let most_retries = config
        .upstreams
        .iter()
        .map(|u| u.retries as usize)
        .max()
        .unwrap_or(0);
    config.server.max_retries = config.server.max_retries.min(most_retries + 1);
    // Pingora drains requests in flight only during its grace period, then cancels what is
    // left (tokio's shutdown_timeout bounds blocking threads, not tasks). The drain window
    // operators set is graceful_shutdown_timeout_seconds, so the grace period covers it.
    let drain = config
        .server
        .graceful_shutdown_timeout_seconds
        .unwrap_or(DEFAULT_DRAIN_S);
    config.server.grace_period_seconds = Some(config.server.grace_period_seconds.unwrap_or(0).max(drain));

    let server_conf = std::mem::take(&mut config.server);
    let mut server = Server::new_with_opt_and_conf(Some(opt), server_conf);
    server.bootstrap();
    let mut services = Vec::new();
    let Parts {
        gateway,
        limiter,
        telemetry,
        tier_names,
    } = assemble(&mut config, &mut services)?;
    for service in services {
        server.add_boxed_service(service);
    }
    let limits = gateway.limits();
    let pools = gateway.pools();
    let proxy = pingora_proxy::http_proxy(&server.configuration, gateway);
    let guarded = HeaderGuard::new(
        proxy,
        limits,
        Duration::from_millis(config.client.header_timeout_ms),
    );
    let mut proxy_service = Service::new("floodgate proxy".to_string(), guarded);
    for addr in &config.listen {
        proxy_service.add_tcp(&addr.to_string());
    }
    server.add_service(proxy_service);

    // An upgrade inherits listening sockets that the kernel already accepts on, and the
    // admin socket is shared with the old process during the hand-over: this process is
    // ready from its first answer, or a probe landing on it would see a spurious 503.
    let ready = Arc::new(AtomicBool::new(upgrading));
    let admin_app = Admin {
        ready: ready.clone(),
        token: config.admin_token.clone(),
        limiter,
        tier_names,
        pools,
        telemetry,
    };
    let mut admin = Service::new("floodgate admin".to_string(), admin_app);
    admin.add_tcp(&config.admin_listen.to_string());
    server.add_service(admin);
    server.add_service(background_service(
        "readiness",
        ReadinessProbe {
            listeners: config.listen.clone(),
            ready,
        },
    ));
    Ok(server)
}

/// The proxy and what the admin listener reads, without a Pingora server: the
/// background services they need are handed out in `services`.
pub struct Parts {
    pub gateway: Gateway,
    pub limiter: Arc<RateLimiter>,
    pub telemetry: Arc<Telemetry>,
    pub tier_names: Vec<String>,
}

pub fn assemble(
    config: &mut Config,
    services: &mut Vec<Box<dyn ServiceWithDependents>>,
) -> Result<Parts, StartupError> {
    let mut pools = Vec::with_capacity(config.upstreams.len());
    for upstream in &config.upstreams {
        let targets = match upstream.kind {
            UpstreamKind::Http => upstream.targets.clone(),
            UpstreamKind::Echo => {
                let addr = free_loopback_addr()?;
                let mut echo = Service::new(format!("echo upstream {}", upstream.name), Echo);
                echo.add_tcp(&addr.to_string());
                services.push(Box::new(echo));
                log::info!("upstream {}: built-in echo on {addr}", upstream.name);
                vec![addr]
            }
        };
        let (pool, health_service) = Pool::build(upstream, targets);
        services.extend(health_service);
        pools.push(pool);
    }

    let auth = config
        .auth
        .as_ref()
        .map(|spec| Authenticator::build(spec, &config.tiers))
        .transpose()
        .map_err(StartupError::Invalid)?;
    if let Some(jwt) = auth
        .as_ref()
        .and_then(|a| a.jwt())
        .filter(|j| j.refresh().is_some())
    {
        services.push(Box::new(background_service(
            "jwks refresh",
            JwksRefresher {
                verifier: jwt.clone(),
            },
        )));
    }
    let tier_names: Vec<String> = config.tiers.iter().map(|(n, _)| n.clone()).collect();
    let routes = RouteTable::new(std::mem::take(&mut config.routes));
    let limiter = Arc::new(rate_limiter(
        &config.tiers,
        config.anonymous,
        std::mem::take(&mut config.trusted_proxies),
        &routes,
        config.redis.as_ref(),
    ));
    if let Some(redis) = &config.redis {
        let client = redis::Client::open(redis.url.as_str()).map_err(|e| {
            StartupError::Invalid(vec![crate::error::ConfigProblem {
                path: "redis.url".into(),
                message: e.to_string(),
            }])
        })?;
        services.push(Box::new(background_service(
            "redis sync",
            RedisSync {
                client,
                interval: Duration::from_millis(redis.sync_interval_ms),
                key_prefix: redis.key_prefix.clone(),
                limiter: limiter.clone(),
                tier_names: tier_names.clone(),
                instance_id: format!("{:016x}", fastrand::u64(..)),
            },
        )));
    }
    let access_log = match &config.access_log {
        AccessLogTarget::Off => None,
        target => {
            let (tx, rx) = std::sync::mpsc::sync_channel(ACCESS_LOG_QUEUE);
            services.push(Box::new(background_service(
                "access log",
                AccessLogWriter {
                    target: target.clone(),
                    lines: std::sync::Mutex::new(Some(rx)),
                },
            )));
            Some(tx)
        }
    };
    let telemetry = Arc::new(
        Telemetry::new(
            routes.routes().iter().map(|r| r.name.clone()).collect(),
            config.upstreams.iter().map(|u| u.name.clone()).collect(),
            access_log,
        )
        .map_err(|e| StartupError::Metrics(e.to_string()))?,
    );
    let gateway = Gateway::new(
        routes,
        pools,
        &config.client,
        auth,
        limiter.clone(),
        telemetry.clone(),
        &tier_names,
    );
    Ok(Parts {
        gateway,
        limiter,
        telemetry,
        tier_names,
    })
}

fn rate_limiter(
    tiers: &[(String, TierSpec)],
    anonymous: Option<TierSpec>,
    trusted_proxies: Vec<ipnet::IpNet>,
    routes: &RouteTable,
    redis: Option<&RedisSpec>,
) -> RateLimiter {
    let bucket = |t: TierSpec| BucketParams {
        rate: t.rate,
        burst: t.burst,
    };
    // Indexed like the route table, which the proxy's ctx.route refers to.
    let globals = routes
        .routes()
        .iter()
        .map(|r| {
            r.global_limit
                .map(|g| Arc::new(GlobalWindow::new(r.name.clone(), g.rate, g.per_s * 1000)))
        })
        .collect();
    RateLimiter::new(
        tiers.iter().map(|(n, t)| (n.clone(), bucket(*t))).collect(),
        anonymous.map(bucket),
        trusted_proxies,
        globals,
        redis.map(|r| r.on_unavailable),
    )
}

/// A loopback port for the in-process echo upstream. The socket is released for
/// Pingora to bind moments later; nothing else on loopback races for it in practice.
fn free_loopback_addr() -> Result<SocketAddr, StartupError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(StartupError::EchoBind)?;
    listener.local_addr().map_err(StartupError::EchoBind)
}
