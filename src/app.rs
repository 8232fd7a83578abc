//! The one composition root: turns a validated [`Config`] into a Pingora server
//! with the proxy, its health checks, the echo upstream, the admin listener and
//! the readiness probe registered as services.

use crate::auth::jwt::JwksRefresh;
use crate::auth::Authenticator;
use crate::config::{Config, Listener, TargetSpec, UpstreamKind};
use crate::connection::guard::{HeaderGuard, ListenerPlan};
use crate::connection::limits::ConnectionLimits;
use crate::connection::stream::Deadlines;
use crate::consumers::durability::Durability;
use crate::consumers::keys::RuntimeKeys;
use crate::consumers::overrides::TierOverrides;
use crate::error::StartupError;
use crate::proxy::decide::Decider;
use crate::proxy::Gateway;
use crate::ratelimit::RateLimiter;
use crate::routing::RouteTable;
use crate::services::{
    access_log::AccessLogWriter,
    admin::Admin,
    admin::Consumers,
    drain::Drain,
    echo::Echo,
    jwks::JwksRefresher,
    quota_saver,
    quota_saver::QuotaSaver,
    readiness::ReadinessProbe,
    redis_sync::budgets::BudgetStore,
    redis_sync::{RedisSync, RegionSettle},
    region_sync::RegionSync,
    state_file::StateFile,
    state_file::StateFileWriter,
};
use crate::telemetry::Telemetry;
use crate::traces::{SpanExport, SpanQueue, TraceMetrics, Tracer};
use crate::upstream::Pool;
use crate::vocab::clock::unix_now;
use crate::vocab::ids::{ById, UpstreamId};
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_core::services::ServiceWithDependents;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Drain window when the config sets no `graceful_shutdown_timeout_seconds` (Pingora's
/// own default grace period, 300 s, outlasts any systemd stop timeout).
const DEFAULT_DRAIN_S: u64 = 10;
/// Pingora reads each connection through a 64 KiB buffer from its accept, the
/// bulk of what an idle connection costs; a request head rarely needs 4 KiB, and
/// bodies stream through the smaller buffer with more, smaller reads.
const CLIENT_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(16 * 1024),
    write: None,
};
/// Scrapers, probes and an operator: never many.
const ADMIN_MAX_CONNECTIONS: usize = 1024;

pub fn build(mut config: Config, state_file: Option<StateFile>, opt: Opt) -> Result<Server, StartupError> {
    // Pingora retries a taken port for half a minute and its failure is easy to miss;
    // fail at once instead. An upgrade inherits its sockets, so there is nothing to check.
    let upgrading = opt.upgrade;
    if !upgrading {
        let proxy_addrs = config.listen.iter().map(|l| &l.addr);
        for addr in proxy_addrs.chain(std::iter::once(&config.admin.listen)) {
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
    let grace = config.server.grace_period_seconds.unwrap_or(0).max(drain);
    config.server.grace_period_seconds = Some(grace);

    let server_conf = std::mem::take(&mut config.server);
    let mut server = Server::new_with_opt_and_conf(Some(opt), server_conf);
    server.bootstrap();
    let mut services = Vec::new();
    let phases = server.watch_execution_phase();
    let Parts {
        gateway,
        limiter,
        telemetry,
        pools,
        overrides,
        budgets,
        consumers,
        jwks,
        first_round,
        draining,
    } = assemble(&mut config, state_file, &mut services)?;
    server.add_service(background_service(
        "drain",
        Drain {
            phases: std::sync::Mutex::new(Some(phases)),
            draining,
            inflight: telemetry.state.inflight.clone(),
            grace: std::time::Duration::from_secs(grace),
        },
    ));
    for service in services {
        server.add_boxed_service(service);
    }
    let limits = gateway.limits();
    let mut proxy = pingora_proxy::http_proxy(&server.configuration, gateway);
    // An HTTP/2 connection with no stream open is closed after the keep-alive time
    // an idle HTTP/1.1 connection gets.
    let mut http = HttpServerOptions::default();
    http.h2_idle_timeout = Some(std::time::Duration::from_secs(config.client.keepalive_timeout_s));
    proxy.server_options = Some(http);
    // An HTTP/2 header list is held to the size an HTTP/1.1 head may have; Pingora's
    // defaults bound the streams (100 at once) and the h2 crate counts resets (rapid reset).
    let mut h2 = pingora_core::protocols::http::v2::server::default_h2_options();
    h2.max_header_list_size(u32::try_from(config.client.max_header_bytes).unwrap_or(u32::MAX));
    proxy.h2_options = Some(h2);
    let deadlines = Deadlines {
        header: config.client.header_timeout,
        send: config.client.send_timeout,
    };
    let connections = ConnectionLimits::new(
        config.client.max_connections,
        config.client.max_connections_per_ip,
    );
    for warning in crate::config::expiring_certificates(&config.listen, std::time::SystemTime::now()) {
        log::warn!("certificate: {warning}");
    }
    let plans = config
        .listen
        .iter()
        .map(listener_plan)
        .collect::<Result<Vec<_>, _>>()?;
    let guarded = HeaderGuard::new(
        proxy,
        limits,
        deadlines,
        connections.clone(),
        plans,
        config.trusted_proxies.clone(),
    );
    let mut proxy_service = Service::new("floodgate proxy".to_string(), guarded);
    // Pingora sees plain TCP on every listener: the guard does TLS under floodgate's deadline.
    for listener in &config.listen {
        proxy_service.add_listener(ListenerConfig::tcp(listener.addr.to_string()).l4_buffer(CLIENT_BUFFERS));
    }
    server.add_service(proxy_service);

    // An upgrade inherits listening sockets that the kernel already accepts on, and the
    // admin socket is shared with the old process during the hand-over: this process is
    // ready from its first answer, or a probe landing on it would see a spurious 503.
    let ready = Arc::new(AtomicBool::new(upgrading));
    let admin_app = Admin {
        ready: ready.clone(),
        token: config.admin.token.take(),
        public_stats: config.admin.public_stats,
        limiter,
        overrides,
        budgets,
        consumers,
        tier_names: config.tier_names(),
        pools,
        telemetry,
        connections,
        scrape: Default::default(),
    };
    // The admin listener gets the proxy's header deadline and head checks, and a
    // small connection cap of its own: it must stay reachable when the proxy is full.
    let admin_guard = HeaderGuard::new(
        admin_app,
        limits,
        deadlines,
        ConnectionLimits::new(ADMIN_MAX_CONNECTIONS, None),
        Vec::new(),
        Default::default(),
    );
    let mut admin = Service::new("floodgate admin".to_string(), admin_guard);
    admin.add_tcp(&config.admin.listen.to_string());
    server.add_service(admin);
    server.add_service(background_service(
        "readiness",
        ReadinessProbe {
            listeners: config.listen.iter().map(|l| l.addr).collect(),
            ready,
            jwks,
            first_round,
        },
    ));
    Ok(server)
}

fn listener_plan(listener: &Listener) -> Result<ListenerPlan, StartupError> {
    let tls = match &listener.tls {
        Some(tls) => Some(Arc::new(
            crate::tls::server::acceptor(&tls.certs, tls.h2).ok_or(StartupError::Tls(listener.addr))?,
        )),
        None => None,
    };
    Ok(ListenerPlan {
        addr: listener.addr,
        tls,
        h2c: listener.h2c,
        proxy_protocol: listener.proxy_protocol,
    })
}

/// The proxy and what the admin listener and readiness read, without a Pingora
/// server: the background services they need are handed out in `services`.
pub struct Parts {
    pub gateway: Gateway,
    pub limiter: Arc<RateLimiter>,
    pub telemetry: Arc<Telemetry>,
    pub pools: Arc<ById<UpstreamId, Pool>>,
    pub overrides: Arc<TierOverrides>,
    /// Redis's side of the callers' cluster budgets, for the admin API; `None` without Redis.
    pub budgets: Option<BudgetStore>,
    /// Runtime keys and what the admin API needs to manage them.
    pub consumers: Consumers,
    /// The JWKS refresh `/ready` waits for, when a JWKS is configured.
    pub jwks: Option<Arc<JwksRefresh>>,
    /// The Redis sync's first round, which `/ready` waits for: runtime consumers loaded.
    pub first_round: Option<tokio::sync::watch::Receiver<bool>>,
    /// Set when a graceful upgrade or stop starts.
    pub draining: Arc<AtomicBool>,
}

/// Builds the proxy from the config, taking what it consumes out of `config`, and
/// puts back in force what a state file kept.
pub fn assemble(
    config: &mut Config,
    state_file: Option<StateFile>,
    services: &mut Vec<Box<dyn ServiceWithDependents>>,
) -> Result<Parts, StartupError> {
    let mut pools = Vec::with_capacity(config.upstreams.len());
    // No DNS answer may send requests back into the gateway (`refuse_private_answers`).
    let own_addrs: Vec<SocketAddr> = config
        .listen
        .iter()
        .map(|l| l.addr)
        .chain([config.admin.listen])
        .collect();
    for upstream in &config.upstreams {
        let targets = match upstream.kind {
            UpstreamKind::Http => upstream.targets.clone(),
            UpstreamKind::Echo => {
                let (echo, addr) = Echo::service(&upstream.name)?;
                services.push(Box::new(echo));
                vec![TargetSpec::Addr(addr)]
            }
        };
        let (pool, health_service) = Pool::build(upstream, targets, &config.dns, &own_addrs);
        services.extend(health_service);
        pools.push(pool);
    }

    let tier_names = config.tier_names();
    let runtime_keys = Arc::new(RuntimeKeys::default());
    let overrides = Arc::new(TierOverrides::default());
    let routes = RouteTable::new(std::mem::take(&mut config.routes));
    let limiter = Arc::new(RateLimiter::from_config(config, routes.routes().iter()));
    let access_log = AccessLogWriter::from_config(&config.access_log).map(|(writer, lines)| {
        services.push(Box::new(background_service("access log", writer)));
        lines
    });
    let telemetry = Arc::new(
        Telemetry::new(
            routes.routes().iter().map(|r| r.name.clone()).collect(),
            config.upstreams.iter().map(|u| u.name.clone()).collect(),
            access_log,
        )
        .map_err(|e| StartupError::Metrics(e.to_string()))?,
    );

    // Runtime consumers outlive a restart in Redis (which the sync adopts), or in
    // the state file of a single instance, which also keeps its quota counts.
    let mut budgets = None;
    let mut first_round = None;
    let durability = match (config.redis.take(), state_file) {
        (Some(redis), _) => {
            let mut sync = RedisSync::new(
                redis.target,
                redis.sync_interval,
                redis.key_prefix,
                redis.max_keys_per_sync,
                limiter.clone(),
                overrides.clone(),
                runtime_keys.clone(),
                tier_names.clone(),
                format!("{:016x}", fastrand::u64(..)),
                telemetry.state.redis_sync_duration.clone(),
                redis.consumers_log_entries,
            );
            if let Some(region) = redis.region {
                sync.region = Some(RegionSettle {
                    name: region.name.clone(),
                    regions: region.peers.len() as u32 + 1,
                    interval: region.sync_interval,
                    due: Default::default(),
                });
                let regions = RegionSync::new(
                    region,
                    sync.key_prefix.clone(),
                    sync.instance_id.clone(),
                    sync.consumers_log_entries,
                    sync.backend.clone(),
                    telemetry.region.clone(),
                );
                services.push(Box::new(background_service("region sync", regions)));
            }
            first_round = Some(sync.first_round());
            budgets = Some(sync.budget_store());
            let store = sync.consumer_store();
            services.push(Box::new(background_service("redis sync", sync)));
            Durability::Redis(store)
        }
        (None, Some(StateFile { path, doc, journal })) => {
            doc.restore(&tier_names, &runtime_keys, &overrides);
            quota_saver::restore(&limiter, &doc.quotas, unix_now().as_secs());
            let file = Arc::new(StateFileWriter::open(path, journal).map_err(StartupError::StateFile)?);
            services.push(Box::new(background_service(
                "quota saver",
                QuotaSaver {
                    limiter: limiter.clone(),
                    file: file.clone(),
                },
            )));
            Durability::StateFile(file)
        }
        (None, None) => Durability::Memory,
    };
    let consumers = Consumers::new(config.auth.as_ref(), runtime_keys.clone(), durability);

    let auth = config
        .auth
        .take()
        .map(|a| Authenticator::new(a, &tier_names, runtime_keys));
    let jwks = auth
        .as_ref()
        .and_then(|a| a.jwt())
        .and_then(|jwt| jwt.refresh().map(|r| (jwt.clone(), r.clone())));
    if let Some((verifier, _)) = &jwks {
        services.push(Box::new(background_service(
            "jwks refresh",
            JwksRefresher {
                verifier: verifier.clone(),
            },
        )));
    }
    let pools: Arc<ById<UpstreamId, Pool>> = Arc::new(pools.into());
    let draining = Arc::new(AtomicBool::new(false));
    let decider = Decider {
        routes,
        auth,
        limiter: limiter.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        overrides: overrides.clone(),
    };
    let tracer = match config.tracing.take() {
        Some(tracing) => {
            let metrics =
                TraceMetrics::new(telemetry.registry()).map_err(|e| StartupError::Metrics(e.to_string()))?;
            let (queue, spans) = SpanQueue::new(tracing.max_queue, metrics.clone());
            let tracer = Arc::new(Tracer::new(&tracing, queue));
            services.push(Box::new(background_service(
                "span export",
                SpanExport::new(tracing, spans, metrics),
            )));
            Some(tracer)
        }
        None => None,
    };
    let gateway = Gateway::new(
        decider,
        pools.clone(),
        &config.client,
        telemetry.clone(),
        &tier_names,
        draining.clone(),
    )
    .with_tracer(tracer);
    Ok(Parts {
        gateway,
        limiter,
        telemetry,
        pools,
        overrides,
        budgets,
        consumers,
        jwks: jwks.map(|(_, refresh)| refresh),
        first_round,
        draining,
    })
}
