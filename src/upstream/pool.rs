//! One [`Pool`] per configured upstream: the targets discovery finds, a background
//! service (`app` registers it) that runs the active health check and looks names up
//! again (Pingora's `LoadBalancer`, used for those two only), and one circuit breaker
//! per target. Health, membership and breaker meet in the [`Candidates`]: a target is
//! one only if it is healthy, has joined and its breaker admits a request, and
//! selection chooses among them. Selection is lock-free while breakers are closed:
//! the candidates are an `ArcSwap` snapshot, and a closed breaker answers with one
//! atomic load.

use super::breaker::{Admission, BreakerState, Transition};
use super::candidates::{Candidates, Start};
use super::discovery::{Discovery, Refusal};
use super::targets::{JoinAfterChecks, Target, Targets};
use crate::config::{Balance, Dns, HealthCheckKind, TargetSpec, Upstream};
use crate::tls::upstream::Transport;
use futures::FutureExt;
use pingora_core::services::background::GenBackgroundService;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Pool {
    pub name: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub retries: u32,
    pub transport: Transport,
    targets: Arc<Targets>,
    /// Failed lookups of the upstream's names, for metrics.
    resolve_errors: Arc<AtomicU64>,
    /// Addresses `refuse_private_answers` dropped from answers, for metrics.
    refused_answers: Arc<AtomicU64>,
    balance: Balance,
    /// Round robin's turn, across requests.
    turn: AtomicUsize,
}

/// A breaker's admission of one attempt, to be reported back exactly once.
#[derive(Clone, Copy, Debug)]
pub struct BreakerTicket {
    pub addr: SocketAddr,
    /// The target's arrival the admission came from.
    pub arrival: u64,
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
    /// Passes its health check and has joined the pool.
    pub healthy: bool,
    pub breaker: Option<BreakerStatus>,
    /// Transitions so far into closed, half-open and open.
    pub transitions: [u64; 3],
}

impl Pool {
    /// Builds the pool, with its first membership, and the background service that
    /// runs its health check and looks its names up again (when it has either).
    /// `own`: the gateway's listen and admin addresses, which `refuse_private_answers` refuses too.
    pub fn build(
        upstream: &Upstream,
        specs: Vec<TargetSpec>,
        dns: &Dns,
        own: &[SocketAddr],
    ) -> (Pool, Option<BackgroundService>) {
        let targets = Arc::new(Targets::new(
            upstream.breaker,
            upstream.health_check.is_some(),
            upstream.balance == Balance::ConsistentHash,
        ));
        let refusal = upstream
            .refuse_private_answers
            .then(|| Refusal { own: own.to_vec() });
        let discovery = Discovery::new(&upstream.name, specs, dns.clone(), targets.clone(), refusal);
        let resolve_errors = discovery.errors.clone();
        let refused_answers = discovery.refused.clone();
        let service = background(upstream, discovery, &targets);
        let pool = Pool {
            name: upstream.name.clone(),
            connect_timeout: upstream.connect_timeout,
            read_timeout: upstream.read_timeout,
            write_timeout: upstream.write_timeout,
            retries: upstream.retries,
            transport: upstream.transport.clone(),
            targets,
            resolve_errors,
            refused_answers,
            balance: upstream.balance,
            turn: AtomicUsize::new(0),
        };
        (pool, service)
    }

    pub fn resolve_errors(&self) -> u64 {
        self.resolve_errors.load(Ordering::Relaxed)
    }

    pub fn refused_answers(&self) -> u64 {
        self.refused_answers.load(Ordering::Relaxed)
    }

    /// A candidate whose breaker admits this attempt and that has not failed this
    /// request yet (`exclude`), as the upstream's `balance` orders them. A breaker's
    /// half-open probe slots can be taken by a concurrent request after the candidates
    /// were built; then the next candidate is tried.
    pub fn select(&self, key: &[u8], exclude: &[SocketAddr]) -> Selection {
        let candidates = self.targets.candidates();
        let start = match self.balance {
            Balance::RoundRobin => Start::Turn(self.turn.fetch_add(1, Ordering::Relaxed)),
            Balance::Random => Start::Turn(fastrand::usize(..)),
            Balance::ConsistentHash => Start::Key(key),
        };
        let mut admitted = None;
        // A probe taken, a refusal or a transition changes who the candidates are.
        let mut breaker_moved = false;
        let chosen = candidates.pick(start, |target| {
            if exclude.contains(&target.addr) {
                return false;
            }
            let Some(breaker) = &target.breaker else {
                return true;
            };
            let (admission, transition) = breaker.try_acquire();
            self.log_transition(target, transition);
            breaker_moved |= transition.is_some() || admission != Some(Admission::Normal);
            admitted = admission;
            admission.is_some()
        });
        let chosen = chosen.map(|target| Selection::Target {
            addr: target.addr,
            ticket: admitted.map(|admission| BreakerTicket {
                addr: target.addr,
                arrival: target.arrival,
                admission,
            }),
        });
        if breaker_moved {
            self.targets.refresh();
        }
        if let Some(selection) = chosen {
            return selection;
        }
        // The soonest a breaker lets a probe through; health checks are re-run every interval.
        let soonest = self
            .targets
            .snapshot()
            .iter()
            .filter_map(|t| t.breaker.as_ref()?.time_to_half_open())
            .min()
            .map_or(1, |d| d.as_secs_f64().ceil() as u64);
        Selection::Unavailable {
            retry_after_s: soonest.max(1),
        }
    }

    /// The result of an attempt admitted by `select`: `None` gives the admission back
    /// unused. A target removed (or removed and back) since then has no say any more.
    pub fn report(&self, ticket: BreakerTicket, success: Option<bool>) {
        let live = self.targets.snapshot();
        let Some(target) = live.get(&ticket.addr).filter(|t| t.arrival == ticket.arrival) else {
            return;
        };
        let Some(breaker) = &target.breaker else {
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
        self.log_transition(target, transition);
        // A probe's slot is free again, or the breaker moved.
        if ticket.admission == Admission::Probe || transition.is_some() {
            self.targets.refresh();
        }
    }

    fn log_transition(&self, target: &Target, transition: Option<Transition>) {
        if let Some(t) = transition {
            target.transitions[t.to.gauge() as usize].fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "circuit breaker {}/{}: {} -> {}",
                self.name,
                target.addr,
                t.from.as_str(),
                t.to.as_str()
            );
        }
    }

    /// Health and breaker state of every target, by address.
    pub fn status(&self) -> Vec<TargetStatus> {
        let live = self.targets.snapshot();
        live.iter()
            .map(|t| TargetStatus {
                addr: t.addr,
                healthy: t.joined() && t.healthy(),
                breaker: t.breaker.as_ref().map(|b| BreakerStatus {
                    state: b.state(),
                    failures_in_window: b.failures_in_window(),
                    half_open_in: b.time_to_half_open(),
                }),
                transitions: std::array::from_fn(|k| t.transitions[k].load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// The candidates now, for benchmarks and tests.
    pub fn candidates(&self) -> arc_swap::Guard<Arc<Candidates>> {
        self.targets.candidates()
    }
}

/// A health check or a name to look up again makes the balancer a background service.
pub type BackgroundService = Box<dyn pingora_core::services::ServiceWithDependents>;

/// Pingora's balancer runs discovery and health checks; choosing is the candidates'
/// job, so it builds no selection of its own.
struct ChosenByCandidates;

impl BackendSelection for ChosenByCandidates {
    type Iter = ChosenByCandidates;
    type Config = ();

    fn build(_: &BTreeSet<Backend>) -> Self {
        ChosenByCandidates
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Self::Iter {
        ChosenByCandidates
    }
}

impl BackendIter for ChosenByCandidates {
    fn next(&mut self) -> Option<&Backend> {
        None
    }
}

type Balancer = LoadBalancer<ChosenByCandidates>;

/// Finds the first targets, and returns the service that keeps them up to date.
fn background(
    upstream: &Upstream,
    discovery: Discovery,
    targets: &Arc<Targets>,
) -> Option<BackgroundService> {
    let has_names = discovery.has_names();
    let probe_host = discovery.first_target().unwrap_or_default();
    let mut backends = Backends::new(Box::new(discovery));
    if let Some(hc) = &upstream.health_check {
        let check: Box<dyn HealthCheck + Send + Sync> = match hc.kind {
            HealthCheckKind::Tcp => {
                let mut check = TcpHealthCheck::new();
                check.consecutive_success = hc.consecutive_success;
                check.consecutive_failure = hc.consecutive_failure;
                check.peer_template.options.connection_timeout = Some(upstream.connect_timeout);
                upstream.transport.apply_basic(&mut check.peer_template);
                check
            }
            HealthCheckKind::Http => {
                let host = hc.host.clone().unwrap_or(probe_host);
                let mut check = HttpHealthCheck::new(&host, false);
                check.consecutive_success = hc.consecutive_success;
                check.consecutive_failure = hc.consecutive_failure;
                check.peer_template.options.connection_timeout = Some(upstream.connect_timeout);
                check.peer_template.options.read_timeout = Some(upstream.read_timeout);
                upstream.transport.apply(&mut check.peer_template);
                check.req.set_uri(hc.path.clone());
                Box::new(check)
            }
        };
        backends.set_health_check(Box::new(JoinAfterChecks {
            check,
            targets: targets.clone(),
        }));
    }
    let mut lb = Balancer::from_backends(backends);
    first_update(&lb, upstream, has_names);
    if let Some(hc) = &upstream.health_check {
        lb.health_check_frequency = Some(hc.interval);
        // Targets are checked together: one that hangs until its timeout delays
        // neither the others nor the next lookup of names.
        lb.parallel_health_check = true;
    }
    if has_names {
        lb.update_frequency = Some(upstream.resolve_interval);
    }
    (upstream.health_check.is_some() || has_names).then(|| {
        Box::new(GenBackgroundService::new(
            format!("targets of upstream {}", upstream.name),
            Arc::new(lb),
        )) as BackgroundService
    })
}

/// The pool has its first targets before the first request: addresses at once,
/// names after one lookup on a runtime of its own (startup is not async yet).
fn first_update(lb: &Balancer, upstream: &Upstream, has_names: bool) {
    let result = if has_names {
        match super::startup_runtime::block_on(lb.update()) {
            Ok(result) => result,
            Err(e) => {
                log::error!("upstream {}: no runtime for the first lookup: {e}", upstream.name);
                return;
            }
        }
    } else {
        lb.update().now_or_never().unwrap_or(Ok(()))
    };
    if let Err(e) = result {
        log::error!("upstream {}: initial target update failed: {e}", upstream.name);
    }
}
