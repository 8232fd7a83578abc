//! One [`Pool`] per configured upstream: a `pingora-load-balancing` LoadBalancer
//! over targets resolved at load, plus its active health check, which runs as a
//! background service (`app` registers it), and one circuit breaker per target.
//! Health and breaker meet at selection: a target is a candidate only if it is
//! healthy and its breaker admits a request. Selection is lock-free while breakers
//! are closed: the balancer keeps its selector and health in `ArcSwap`s, and a
//! closed breaker answers with one atomic load.

use super::breaker::{Admission, Breaker, BreakerState, SystemClock, Transition};
use crate::config::{Balance, HealthCheckKind, Upstream};
use futures::FutureExt;
use pingora_core::services::background::GenBackgroundService;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Consistent, Random, RoundRobin};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bound on how many candidates one selection walks (the balancer's `max_iterations`).
const MAX_SELECT_ITERATIONS: usize = 256;

enum Balancer {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    Random(Arc<LoadBalancer<Random>>),
    ConsistentHash(Arc<LoadBalancer<Consistent>>),
}

pub struct Pool {
    pub name: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub retries: u32,
    pub targets: Vec<SocketAddr>,
    /// One per target, in `targets` order; empty when the upstream has no breaker.
    breakers: Vec<Breaker>,
    /// Transitions per target into each state (indexed by `BreakerState::gauge`), for metrics.
    transitions: Vec<[AtomicU64; 3]>,
    balancer: Balancer,
}

/// A breaker's admission of one attempt, to be reported back exactly once.
#[derive(Clone, Copy, Debug)]
pub struct BreakerTicket {
    /// Index into `targets`.
    pub target: usize,
    pub admission: Admission,
}

/// The outcome of choosing a target for one attempt.
pub enum Selection {
    Target {
        addr: SocketAddr,
        /// `None` when the upstream has no breakers.
        ticket: Option<BreakerTicket>,
    },
    /// Every target is unhealthy, open or already tried; retry after this long.
    Unavailable { retry_after_s: u64 },
}

/// A target's breaker as the admin API shows it.
#[derive(Clone, Copy, Debug)]
pub struct BreakerStatus {
    pub state: BreakerState,
    pub failures_in_window: u32,
    /// Time left until an open breaker lets probes through.
    pub half_open_in: Option<Duration>,
}

/// One target's state, for the admin API and metrics.
pub struct TargetStatus {
    pub addr: SocketAddr,
    pub healthy: bool,
    pub breaker: Option<BreakerStatus>,
    /// Transitions so far into closed, half-open and open.
    pub transitions: [u64; 3],
}

/// A background service that runs a pool's health checks.
pub type HealthService = Box<dyn pingora_core::services::ServiceWithDependents>;

impl Pool {
    /// Builds the pool and, when the upstream has a health check, the service running it.
    /// `targets` overrides the configured ones (the echo upstream's address is known only at build).
    pub fn build(upstream: &Upstream, targets: Vec<SocketAddr>) -> (Pool, Option<HealthService>) {
        let (balancer, service) = match upstream.balance {
            Balance::RoundRobin => {
                let (lb, svc) = balancer::<RoundRobin>(upstream, &targets);
                (Balancer::RoundRobin(lb), svc)
            }
            Balance::Random => {
                let (lb, svc) = balancer::<Random>(upstream, &targets);
                (Balancer::Random(lb), svc)
            }
            Balance::ConsistentHash => {
                let (lb, svc) = balancer::<Consistent>(upstream, &targets);
                (Balancer::ConsistentHash(lb), svc)
            }
        };
        let breakers = match upstream.breaker {
            Some(settings) => targets
                .iter()
                .map(|_| Breaker::new(settings, Arc::new(SystemClock)))
                .collect(),
            None => Vec::new(),
        };
        let transitions = breakers.iter().map(|_| Default::default()).collect();
        let pool = Pool {
            transitions,
            name: upstream.name.clone(),
            connect_timeout: upstream.connect_timeout,
            read_timeout: upstream.read_timeout,
            write_timeout: upstream.write_timeout,
            retries: upstream.retries,
            targets,
            breakers,
            balancer,
        };
        (pool, service)
    }

    fn breaker_of(&self, addr: &SocketAddr) -> Option<(usize, &Breaker)> {
        let index = self.targets.iter().position(|t| t == addr)?;
        self.breakers.get(index).map(|b| (index, b))
    }

    /// A healthy target whose breaker admits a request and that has not failed this
    /// request yet (`exclude`). A breaker's half-open probe slots can be taken by a
    /// concurrent request between the check and the admission; then the next
    /// candidate is tried.
    pub fn select(&self, key: &[u8], exclude: &[SocketAddr]) -> Selection {
        let mut lost_race: Vec<SocketAddr> = Vec::new();
        for _ in 0..=self.targets.len() {
            let accept = |b: &Backend, healthy: bool| {
                healthy
                    && b.addr.as_inet().is_some_and(|a| {
                        !exclude.contains(a)
                            && !lost_race.contains(a)
                            && self.breaker_of(a).is_none_or(|(_, br)| br.allows())
                    })
            };
            let chosen = match &self.balancer {
                Balancer::RoundRobin(lb) => lb.select_with(key, MAX_SELECT_ITERATIONS, accept),
                Balancer::Random(lb) => lb.select_with(key, MAX_SELECT_ITERATIONS, accept),
                Balancer::ConsistentHash(lb) => lb.select_with(key, MAX_SELECT_ITERATIONS, accept),
            };
            let Some(addr) = chosen.and_then(|b| b.addr.as_inet().copied()) else {
                break;
            };
            let Some((index, breaker)) = self.breaker_of(&addr) else {
                return Selection::Target { addr, ticket: None };
            };
            let (admission, transition) = breaker.try_acquire();
            self.log_transition(addr, transition);
            match admission {
                Some(admission) => {
                    return Selection::Target {
                        addr,
                        ticket: Some(BreakerTicket {
                            target: index,
                            admission,
                        }),
                    }
                }
                None => lost_race.push(addr),
            }
        }
        // The soonest a breaker lets a probe through; health checks are re-run every interval.
        let soonest = self
            .breakers
            .iter()
            .filter_map(Breaker::time_to_half_open)
            .min()
            .map_or(1, |d| d.as_secs_f64().ceil() as u64);
        Selection::Unavailable {
            retry_after_s: soonest.max(1),
        }
    }

    /// The result of an attempt admitted by `select`: `None` gives the admission back unused.
    pub fn report(&self, ticket: BreakerTicket, success: Option<bool>) {
        let Some(breaker) = self.breakers.get(ticket.target) else {
            return;
        };
        let transition = match success {
            Some(true) => breaker.record_success(ticket.admission),
            Some(false) => breaker.record_failure(ticket.admission),
            None => {
                breaker.release(ticket.admission);
                None
            }
        };
        self.log_transition(self.targets[ticket.target], transition);
    }

    fn log_transition(&self, addr: SocketAddr, transition: Option<Transition>) {
        if let Some(t) = transition {
            if let Some(counts) = self.breaker_of(&addr).and_then(|(i, _)| self.transitions.get(i)) {
                counts[t.to.gauge() as usize].fetch_add(1, Ordering::Relaxed);
            }
            log::warn!(
                "circuit breaker {}/{addr}: {} -> {}",
                self.name,
                t.from.as_str(),
                t.to.as_str()
            );
        }
    }

    /// Health and breaker state of every target.
    pub fn status(&self) -> Vec<TargetStatus> {
        let health = self.health();
        self.targets
            .iter()
            .enumerate()
            .map(|(i, addr)| TargetStatus {
                addr: *addr,
                healthy: health.iter().any(|(a, h)| a == addr && *h),
                breaker: self.breakers.get(i).map(|b| BreakerStatus {
                    state: b.state(),
                    failures_in_window: b.failures_in_window(),
                    half_open_in: b.time_to_half_open(),
                }),
                transitions: self
                    .transitions
                    .get(i)
                    .map_or([0; 3], |t| std::array::from_fn(|k| t[k].load(Ordering::Relaxed))),
            })
            .collect()
    }

    /// Health of each target as the last check saw it.
    fn health(&self) -> Vec<(SocketAddr, bool)> {
        fn read<S: BackendSelection + 'static>(lb: &LoadBalancer<S>) -> Vec<(SocketAddr, bool)>
        where
            S::Iter: BackendIter,
        {
            let backends = lb.backends();
            backends
                .get_backend()
                .iter()
                .filter_map(|b| b.addr.as_inet().map(|a| (*a, backends.ready(b))))
                .collect()
        }
        match &self.balancer {
            Balancer::RoundRobin(lb) => read(lb),
            Balancer::Random(lb) => read(lb),
            Balancer::ConsistentHash(lb) => read(lb),
        }
    }
}

fn balancer<S>(upstream: &Upstream, targets: &[SocketAddr]) -> (Arc<LoadBalancer<S>>, Option<HealthService>)
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    let set: BTreeSet<Backend> = targets
        .iter()
        .map(|addr| Backend {
            addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(*addr),
            weight: 1,
            ext: Default::default(),
        })
        .collect();
    let mut backends = Backends::new(Static::new(set));
    if let Some(hc) = &upstream.health_check {
        match hc.kind {
            HealthCheckKind::Tcp => {
                let mut check = TcpHealthCheck::new();
                check.consecutive_success = hc.consecutive_success;
                check.consecutive_failure = hc.consecutive_failure;
                check.peer_template.options.connection_timeout = Some(upstream.connect_timeout);
                backends.set_health_check(check);
            }
            HealthCheckKind::Http => {
                let host = hc
                    .host
                    .clone()
                    .unwrap_or_else(|| targets.first().map(ToString::to_string).unwrap_or_default());
                let mut check = HttpHealthCheck::new(&host, false);
                check.consecutive_success = hc.consecutive_success;
                check.consecutive_failure = hc.consecutive_failure;
                check.peer_template.options.connection_timeout = Some(upstream.connect_timeout);
                check.peer_template.options.read_timeout = Some(upstream.read_timeout);
                check.req.set_uri(hc.path.clone());
                backends.set_health_check(Box::new(check));
            }
        }
    }
    let mut lb = LoadBalancer::<S>::from_backends(backends);
    // Static discovery never blocks, so the first update completes at once and the
    // pool has its targets before the first request.
    if let Some(Err(e)) = lb.update().now_or_never() {
        log::error!("upstream {}: initial target update failed: {e}", upstream.name);
    }
    if let Some(hc) = &upstream.health_check {
        lb.health_check_frequency = Some(hc.interval);
    }
    let lb = Arc::new(lb);
    let service = upstream.health_check.as_ref().map(|_| {
        Box::new(GenBackgroundService::new(
            format!("health check {}", upstream.name),
            lb.clone(),
        )) as HealthService
    });
    (lb, service)
}
