//! Upstream membership: configured addresses as they are, names looked up with an
//! in-process resolver (the configured nameservers, or the system's) by the
//! balancer's background service every `resolve_interval`, never on the request
//! path. Every address a name resolves to is a target. A lookup that fails or
//! finds nothing keeps that name's last good addresses and is logged and counted,
//! so a DNS outage never empties a pool.

use super::targets::Targets;
use crate::config::{Dns, TargetSpec, Upstream};
use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct Discovery {
    upstream: String,
    specs: Vec<TargetSpec>,
    dns: Dns,
    targets: Arc<Targets>,
    /// Per name (index into `specs`), the addresses of its last good lookup.
    last_good: Mutex<HashMap<usize, Vec<SocketAddr>>>,
    /// Failed lookups so far, for metrics.
    pub errors: Arc<AtomicU64>,
    started: AtomicBool,
}

impl Discovery {
    pub fn new(upstream: &str, specs: Vec<TargetSpec>, dns: Dns, targets: Arc<Targets>) -> Discovery {
        Discovery {
            upstream: upstream.to_string(),
            specs,
            dns,
            targets,
            last_good: Mutex::default(),
            errors: Arc::default(),
            started: AtomicBool::new(false),
        }
    }

    pub fn has_names(&self) -> bool {
        self.specs.iter().any(|s| matches!(s, TargetSpec::Name { .. }))
    }

    /// The first target as configured: the Host of health probes unless one is set.
    pub fn first_target(&self) -> Option<String> {
        self.specs.first().map(ToString::to_string)
    }

    /// The current addresses: configured ones, and each name's fresh or last good lookup.
    pub async fn addresses(&self) -> BTreeSet<SocketAddr> {
        let mut resolver = None;
        let mut found = BTreeSet::new();
        for (i, spec) in self.specs.iter().enumerate() {
            match spec {
                TargetSpec::Addr(addr) => {
                    found.insert(*addr);
                }
                TargetSpec::Name { host, port } => {
                    let looked_up = match resolver.get_or_insert_with(|| build_resolver(&self.dns)) {
                        Ok(resolver) => lookup(resolver, host, *port).await,
                        Err(e) => Err(e.clone()),
                    };
                    found.extend(self.remember(i, spec, looked_up));
                }
            }
        }
        found
    }

    /// A good lookup replaces the name's addresses; a failed one keeps the last good.
    fn remember(
        &self,
        index: usize,
        spec: &TargetSpec,
        looked_up: Result<Vec<SocketAddr>, String>,
    ) -> Vec<SocketAddr> {
        let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        match looked_up {
            Ok(addrs) => {
                last_good.insert(index, addrs.clone());
                addrs
            }
            Err(why) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let kept = last_good.get(&index).cloned().unwrap_or_default();
                log::warn!(
                    "upstreams.{}.targets[{index}]: cannot resolve {spec}: {why}; keeping its {} last good address(es)",
                    self.upstream,
                    kept.len()
                );
                kept
            }
        }
    }
}

#[async_trait]
impl ServiceDiscovery for Discovery {
    async fn discover(&self) -> pingora_error::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let addrs = self.addresses().await;
        let first = !self.started.swap(true, Ordering::Relaxed);
        let change = self.targets.set(&addrs, first);
        for addr in &change.added {
            log::info!("upstream {}: target {addr} added", self.upstream);
        }
        for addr in &change.removed {
            log::info!("upstream {}: target {addr} removed; it drains", self.upstream);
        }
        let backends = addrs
            .into_iter()
            .map(|addr| Backend {
                addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(addr),
                weight: 1,
                ext: Default::default(),
            })
            .collect();
        Ok((backends, HashMap::new()))
    }
}

/// The names among the targets that do not resolve now, each as `key path: why`:
/// what `-t` warns of. The gateway would start without them and keep looking.
pub fn unresolved_names(upstreams: &[Upstream], dns: &Dns) -> Vec<String> {
    let names: Vec<(String, &TargetSpec)> = upstreams
        .iter()
        .flat_map(|u| {
            u.targets
                .iter()
                .enumerate()
                .map(move |(i, spec)| (format!("upstreams.{}.targets[{i}]", u.name), spec))
        })
        .filter(|(_, spec)| matches!(spec, TargetSpec::Name { .. }))
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return vec![format!("dns: no runtime to look names up: {e}")],
    };
    runtime.block_on(async {
        let resolver = build_resolver(dns);
        let mut unresolved = Vec::new();
        for (path, spec) in names {
            let TargetSpec::Name { host, port } = spec else {
                continue;
            };
            let looked_up = match &resolver {
                Ok(resolver) => lookup(resolver, host, *port).await.map(drop),
                Err(e) => Err(e.clone()),
            };
            if let Err(why) = looked_up {
                unresolved.push(format!("{path}: cannot resolve {spec} now: {why}"));
            }
        }
        unresolved
    })
}

/// A resolver per round: it reads the system's configuration afresh and holds no
/// connection across rounds (or across the runtimes that run them).
fn build_resolver(dns: &Dns) -> Result<TokioResolver, String> {
    let mut builder = if dns.nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| format!("no system resolver configuration: {e}"))?
    } else {
        let mut config = ResolverConfig::new();
        for addr in &dns.nameservers {
            config.add_name_server(NameServerConfig::new(*addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*addr, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.timeout = dns.timeout;
    options.attempts = 2;
    // Every round asks the nameserver: a moved pod is seen within one interval.
    options.cache_size = 0;
    Ok(builder.build())
}

async fn lookup(resolver: &TokioResolver, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let found = resolver.lookup_ip(host).await.map_err(|e| e.to_string())?;
    let mut addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    addrs.sort_unstable();
    addrs.dedup();
    if addrs.is_empty() {
        return Err("no address in the answer".into());
    }
    Ok(addrs)
}
