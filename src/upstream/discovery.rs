//! Upstream membership: configured addresses as they are, names looked up with an
//! in-process resolver (the configured nameservers, or the system's) by the
//! balancer's background service every `resolve_interval`, never on the request
//! path. Every address a name resolves to is a target: its A records, or its AAAA
//! records when it has no A record. A lookup that fails, finds nothing or outlasts
//! its deadline keeps that name's last good addresses and is logged and counted, so
//! a DNS outage never empties a pool. With `refuse_private_answers`, addresses no
//! public upstream has are dropped from answers first (an answer left with none is
//! a failed lookup).

use super::targets::Targets;
use crate::config::{Dns, TargetSpec, Upstream};
use async_trait::async_trait;
use futures::future::join_all;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::ResolveError;
use hickory_resolver::TokioResolver;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lookup attempts per name; its deadline is this many `dns.timeout`s, search
/// domains and retries included, so a slow nameserver never holds up the health
/// checks that share the background service for longer.
const ATTEMPTS: u32 = 2;

/// `refuse_private_answers`: what an answer may not name.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The gateway's own listen and admin addresses.
    pub own: Vec<SocketAddr>,
}

impl Refusal {
    pub fn refuses(&self, addr: &SocketAddr) -> bool {
        is_private(addr.ip()) || self.own.contains(addr)
    }
}

/// Addresses a public upstream never has: loopback, unspecified (`0.0.0.0/8`, `::`),
/// link-local, private (RFC 1918, ULA `fc00::/7`), multicast and broadcast, in
/// either family (an IPv4-mapped IPv6 address is judged as its IPv4 address).
fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.octets()[0] == 0
                || v4.is_link_local()
                || v4.is_private()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unicast_link_local()
                || v6.is_unique_local()
                || v6.is_multicast()
        }
    }
}

pub struct Discovery {
    upstream: String,
    specs: Vec<TargetSpec>,
    dns: Dns,
    targets: Arc<Targets>,
    refusal: Option<Refusal>,
    /// Per name (index into `specs`), the addresses of its last good lookup.
    last_good: Mutex<HashMap<usize, Vec<SocketAddr>>>,
    /// Per name, the addresses its last answer had refused, so a refusal is logged when it changes.
    last_refused: Mutex<HashMap<usize, Vec<SocketAddr>>>,
    /// Failed lookups so far, for metrics.
    pub errors: Arc<AtomicU64>,
    /// Addresses dropped from answers so far, for metrics.
    pub refused: Arc<AtomicU64>,
    started: AtomicBool,
}

impl Discovery {
    pub fn new(
        upstream: &str,
        specs: Vec<TargetSpec>,
        dns: Dns,
        targets: Arc<Targets>,
        refusal: Option<Refusal>,
    ) -> Discovery {
        Discovery {
            upstream: upstream.to_string(),
            specs,
            dns,
            targets,
            refusal,
            last_good: Mutex::default(),
            last_refused: Mutex::default(),
            errors: Arc::default(),
            refused: Arc::default(),
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

    /// The current addresses: configured ones, and each name's fresh or last good
    /// lookup (the names looked up together, each within its deadline).
    pub async fn addresses(&self) -> BTreeSet<SocketAddr> {
        let mut found: BTreeSet<SocketAddr> = self
            .specs
            .iter()
            .filter_map(|spec| match spec {
                TargetSpec::Addr(addr) => Some(*addr),
                TargetSpec::Name { .. } => None,
            })
            .collect();
        if !self.has_names() {
            return found;
        }
        let resolver = &build_resolver(&self.dns);
        let lookups = self.specs.iter().enumerate().filter_map(|(i, spec)| match spec {
            TargetSpec::Name { host, port } => {
                Some(async move { (i, spec, lookup_within(resolver, &self.dns, host, *port).await) })
            }
            TargetSpec::Addr(_) => None,
        });
        for (i, spec, looked_up) in join_all(lookups).await {
            let looked_up = looked_up.and_then(|addrs| self.screen(i, spec, addrs));
            found.extend(self.remember(i, spec, looked_up));
        }
        found
    }

    /// Drops the addresses `refuse_private_answers` refuses: counted, and logged when
    /// they differ from the name's last answer's. None left is a failed lookup.
    fn screen(
        &self,
        index: usize,
        spec: &TargetSpec,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, String> {
        let Some(refusal) = &self.refusal else {
            return Ok(addrs);
        };
        let (refused, kept): (Vec<SocketAddr>, Vec<SocketAddr>) =
            addrs.into_iter().partition(|a| refusal.refuses(a));
        self.refused.fetch_add(refused.len() as u64, Ordering::Relaxed);
        let list = || {
            refused
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut last_refused = self.last_refused.lock().unwrap_or_else(|p| p.into_inner());
        if last_refused.get(&index) != Some(&refused) {
            if !refused.is_empty() {
                log::warn!(
                    "upstreams.{}.targets[{index}]: {spec} answered {}, refused by refuse_private_answers",
                    self.upstream,
                    list()
                );
            }
            last_refused.insert(index, refused.clone());
        }
        if kept.is_empty() {
            return Err(format!(
                "every address in the answer is refused by refuse_private_answers ({})",
                list()
            ));
        }
        Ok(kept)
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
    super::startup_runtime::block_on(async {
        let resolver = build_resolver(dns);
        let mut unresolved = Vec::new();
        for (path, spec) in names {
            let TargetSpec::Name { host, port } = spec else {
                continue;
            };
            let looked_up = lookup_within(&resolver, dns, host, *port).await;
            if let Err(why) = looked_up {
                unresolved.push(format!("{path}: cannot resolve {spec} now: {why}"));
            }
        }
        unresolved
    })
    .unwrap_or_else(|e| vec![format!("dns: no runtime to look names up: {e}")])
}

/// A resolver per round: it reads the system's configuration afresh and holds no
/// connection across rounds (or across the runtimes that run them). Configured
/// nameservers replace only the system's nameservers: its search domains and
/// `ndots` still apply, as they would to any program in the pod.
fn build_resolver(dns: &Dns) -> Result<TokioResolver, String> {
    let system = hickory_resolver::system_conf::read_system_conf();
    let (config, mut options) = match (system, dns.nameservers.is_empty()) {
        (Ok(system), true) => system,
        (Err(e), true) => return Err(format!("no system resolver configuration: {e}")),
        (system, false) => {
            let (base, options) = system.unwrap_or_default();
            let servers: Vec<NameServerConfig> = dns
                .nameservers
                .iter()
                .flat_map(|addr| [Protocol::Udp, Protocol::Tcp].map(|p| NameServerConfig::new(*addr, p)))
                .collect();
            let config = ResolverConfig::from_parts(base.domain().cloned(), base.search().to_vec(), servers);
            (config, options)
        }
    };
    set_options(&mut options, dns.timeout);
    let mut builder = TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    *builder.options_mut() = options;
    Ok(builder.build())
}

fn set_options(options: &mut ResolverOpts, timeout: Duration) {
    options.timeout = timeout;
    options.attempts = ATTEMPTS as usize;
    // Every round asks the nameserver: a moved pod is seen within one interval.
    options.cache_size = 0;
}

/// `lookup` within the name's deadline.
async fn lookup_within(
    resolver: &Result<TokioResolver, String>,
    dns: &Dns,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    let resolver = resolver.as_ref().map_err(Clone::clone)?;
    let deadline = dns.timeout * ATTEMPTS;
    tokio::time::timeout(deadline, lookup(resolver, host, port))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {deadline:?}")))
}

/// The name exists and has no A record (NOERROR, no data): SERVFAIL, NXDOMAIN and
/// time-outs are failures.
fn has_no_a_record(e: &ResolveError) -> bool {
    e.proto().is_some_and(|p| {
        matches!(
            p.kind(),
            ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NoError,
                ..
            }
        )
    })
}

/// A records, or AAAA records when the name has no A record. A failed A query is a
/// failed lookup, never a reason to fall back to AAAA: a pool must not swap
/// families because one query timed out.
async fn lookup(resolver: &TokioResolver, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let mut addrs: Vec<SocketAddr> = match resolver.ipv4_lookup(host).await {
        Ok(found) => found.iter().map(|a| SocketAddr::new(a.0.into(), port)).collect(),
        Err(e) if has_no_a_record(&e) => {
            let found = resolver.ipv6_lookup(host).await.map_err(|e| e.to_string())?;
            found.iter().map(|a| SocketAddr::new(a.0.into(), port)).collect()
        }
        Err(e) => return Err(e.to_string()),
    };
    addrs.sort_unstable();
    addrs.dedup();
    if addrs.is_empty() {
        return Err("no address in the answer".into());
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_answers_are_the_addresses_no_public_upstream_has_and_our_own() {
        let refusal = Refusal {
            own: vec!["203.0.113.7:8080".parse().expect("addr")],
        };
        for refused in [
            "127.0.0.1:80",
            "127.9.9.9:80",
            "0.0.0.0:80",
            "0.1.2.3:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "[::1]:80",
            "[::]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[fc00::1]:80",
            "[ff02::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.0.0.1]:80",
            "203.0.113.7:8080",
        ] {
            let addr: SocketAddr = refused.parse().expect("addr");
            assert!(refusal.refuses(&addr), "{refused} is refused");
        }
        for kept in [
            "203.0.113.7:8081",
            "198.51.100.1:80",
            "[2001:db8::1]:80",
            "172.32.0.1:80",
        ] {
            let addr: SocketAddr = kept.parse().expect("addr");
            assert!(!refusal.refuses(&addr), "{kept} is kept");
        }
    }
}
