//! A circuit breaker per upstream target: an explicit CLOSED → OPEN → HALF_OPEN state machine
//! driven by an injected [`Clock`].
//!
//! Where it sits: a target whose breaker [`Breaker::allows`] nothing is not among the pool's
//! candidates (rebuilt when a breaker moves, or when an open period ends); `upstream_peer` takes
//! admission with [`Breaker::try_acquire`] for the candidate chosen. The proxy feeds results back: connect errors
//! (`fail_to_connect`), timeouts and 5xx answers (`upstream_response_filter`) are
//! [`Breaker::record_failure`]; other answers are [`Breaker::record_success`]; a probe slot taken
//! for a request that never reached the target goes back through [`Breaker::release`].
//!
//! Why it is shaped this way:
//! - The state lives in an `AtomicU8` mirrored from the authoritative `Phase` behind a mutex.
//!   While CLOSED, which is nearly always, admission is one atomic load: no lock, no clock read.
//!   The mutex is taken only to record a failure or when the breaker is not CLOSED.
//! - Every transition happens under the mutex, so each is observed, and returned as a
//!   [`Transition`], by exactly one caller (metrics and logs count each once).
//! - CLOSED only ever goes to OPEN, and only OPEN goes to HALF_OPEN, once `open` has elapsed:
//!   a tripped target always sits out the full open period.
//! - Results are judged by the [`Admission`] they came from and the state they arrive in: requests
//!   admitted while CLOSED can finish long after the breaker opened, and their results must not
//!   extend the open period or close the breaker. In HALF_OPEN only probes decide.
//! - The failure window is a count of failures in the last `window`, not a streak or a ratio, so
//!   successes while CLOSED carry no information and cost nothing.

pub use crate::config::BreakerSettings;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Time source, injected so tests drive the state machine without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// Gauge value: ordered by severity so a dashboard can plot it as a level.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn code(self) -> u8 {
        match self {
            BreakerState::Closed => CLOSED,
            BreakerState::HalfOpen => HALF_OPEN,
            BreakerState::Open => OPEN,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            CLOSED => BreakerState::Closed,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Open,
        }
    }
}

const CLOSED: u8 = 0;
const HALF_OPEN: u8 = 1;
const OPEN: u8 = 2;

/// What [`Breaker::try_acquire`] granted; hand it back with the request's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Admitted while CLOSED.
    Normal,
    /// One of the HALF_OPEN probe slots.
    Probe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

/// The authoritative state, with what each state needs to know.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Closed,
    /// The open period counts from `since`.
    Open {
        since: Instant,
    },
    /// `probes`: slots taken and not yet resolved or released.
    HalfOpen {
        probes: u32,
    },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

struct Inner {
    phase: Phase,
    /// Failure times, oldest first. Holds fewer than `failures` entries while CLOSED (reaching
    /// the threshold opens the breaker), so it stays bounded however many requests fail.
    failures: VecDeque<Instant>,
}

/// One target's breaker. Every [`Admission::Probe`] must end in exactly one of
/// [`record_success`](Breaker::record_success), [`record_failure`](Breaker::record_failure) or
/// [`release`](Breaker::release), or its slot stays taken.
///
/// A probe slot is not tied to the HALF_OPEN period that granted it: a probe still in flight when
/// a sibling probe re-opened the breaker is ignored while OPEN, but if it outlives the whole open
/// period its result counts for the next HALF_OPEN (it is still a fresh answer from the target).
pub struct Breaker {
    settings: BreakerSettings,
    clock: Arc<dyn Clock>,
    /// Mirror of `inner.phase`, written under the mutex, read without it.
    state: AtomicU8,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// `failures` and `half_open_requests` below 1 are taken as 1: zero probes would keep the
    /// breaker open forever.
    pub fn new(settings: BreakerSettings, clock: Arc<dyn Clock>) -> Self {
        let settings = BreakerSettings {
            failures: settings.failures.max(1),
            half_open_requests: settings.half_open_requests.max(1),
            ..settings
        };
        Breaker {
            settings,
            clock,
            state: AtomicU8::new(CLOSED),
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                failures: VecDeque::new(),
            }),
        }
    }

    /// The settings in effect (after the clamping in [`Breaker::new`]).
    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    /// Side-effect free: would [`Breaker::try_acquire`] succeed now? For building the candidates,
    /// which look at a target without sending it anything.
    pub fn allows(&self) -> bool {
        if self.state() == BreakerState::Closed {
            return true;
        }
        match self.lock().phase {
            Phase::Closed => true,
            Phase::Open { since } => self.open_elapsed(since),
            Phase::HalfOpen { probes } => probes < self.settings.half_open_requests,
        }
    }

    /// Takes admission: `Normal` while CLOSED, `Probe` when a HALF_OPEN slot was taken (moving
    /// OPEN → HALF_OPEN first if the open period is over, reported as the transition), `None`
    /// when refused.
    pub fn try_acquire(&self) -> (Option<Admission>, Option<Transition>) {
        if self.state() == BreakerState::Closed {
            return (Some(Admission::Normal), None);
        }
        let mut inner = self.lock();
        match inner.phase {
            Phase::Closed => (Some(Admission::Normal), None),
            Phase::Open { since } => {
                if !self.open_elapsed(since) {
                    return (None, None);
                }
                let t = self.enter(&mut inner, Phase::HalfOpen { probes: 1 });
                (Some(Admission::Probe), Some(t))
            }
            Phase::HalfOpen { probes } => {
                if probes >= self.settings.half_open_requests {
                    return (None, None);
                }
                inner.phase = Phase::HalfOpen { probes: probes + 1 };
                (Some(Admission::Probe), None)
            }
        }
    }

    /// Gives back a probe slot whose request never reached the target.
    pub fn release(&self, admission: Admission) {
        // Normal admissions hold nothing; probe slots exist only while HALF_OPEN.
        if admission == Admission::Normal || self.state() != BreakerState::HalfOpen {
            return;
        }
        let mut inner = self.lock();
        if let Phase::HalfOpen { probes } = inner.phase {
            inner.phase = Phase::HalfOpen {
                probes: probes.saturating_sub(1),
            };
        }
    }

    pub fn record_success(&self, admission: Admission) -> Option<Transition> {
        // A success never changes CLOSED (failures are counted, not streaks), and only a probe
        // may close a HALF_OPEN breaker; a probe answering while OPEN lost to a failed sibling.
        if admission == Admission::Normal || self.state() != BreakerState::HalfOpen {
            return None;
        }
        let mut inner = self.lock();
        match inner.phase {
            Phase::HalfOpen { .. } => {
                inner.failures.clear();
                Some(self.enter(&mut inner, Phase::Closed))
            }
            Phase::Closed | Phase::Open { .. } => None,
        }
    }

    pub fn record_failure(&self, admission: Admission) -> Option<Transition> {
        // Nothing counts while OPEN: late results must not extend the open period.
        if self.state() == BreakerState::Open {
            return None;
        }
        let mut inner = self.lock();
        match inner.phase {
            Phase::Open { .. } => None,
            // Requests admitted before the breaker opened do not judge the probes' period.
            Phase::HalfOpen { .. } if admission == Admission::Normal => None,
            Phase::HalfOpen { .. } => {
                let since = self.clock.now();
                Some(self.enter(&mut inner, Phase::Open { since }))
            }
            // Any failure seen while CLOSED counts, a straggling probe's included: it is a real
            // answer from the target.
            Phase::Closed => {
                // Read under the lock so the recorded times stay in order.
                let now = self.clock.now();
                self.prune(&mut inner.failures, now);
                inner.failures.push_back(now);
                if inner.failures.len() < self.settings.failures as usize {
                    return None;
                }
                Some(self.enter(&mut inner, Phase::Open { since: now }))
            }
        }
    }

    /// One atomic load. Reports OPEN even once the open period is over, until someone acquires.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_code(self.state.load(Ordering::Acquire))
    }

    pub fn failures_in_window(&self) -> u32 {
        let now = self.clock.now();
        let inner = self.lock();
        let window = self.settings.window;
        let count = inner
            .failures
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) < window)
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Time until an OPEN breaker admits a probe (zero once due); `None` unless OPEN.
    pub fn time_to_half_open(&self) -> Option<Duration> {
        if self.state() != BreakerState::Open {
            return None;
        }
        let now = self.clock.now();
        match self.lock().phase {
            Phase::Open { since } => Some(
                self.settings
                    .open
                    .saturating_sub(now.saturating_duration_since(since)),
            ),
            Phase::Closed | Phase::HalfOpen { .. } => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections leave `Inner` consistent at every step, so a poisoned lock
        // (a panic elsewhere while held) is still safe to use.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open_elapsed(&self, since: Instant) -> bool {
        // saturating: no Instant arithmetic to overflow, whatever `open` is configured to.
        self.clock.now().saturating_duration_since(since) >= self.settings.open
    }

    /// Drops failures that have left the window (a failure exactly `window` old no longer counts).
    fn prune(&self, failures: &mut VecDeque<Instant>, now: Instant) {
        while failures
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= self.settings.window)
        {
            failures.pop_front();
        }
    }

    /// The only place the phase changes, so the atomic mirror cannot drift from it.
    fn enter(&self, inner: &mut Inner, to: Phase) -> Transition {
        let from = inner.phase.state();
        inner.phase = to;
        self.state.store(to.state().code(), Ordering::Release);
        Transition { from, to: to.state() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Barrier;

    /// A clock that moves only when told to, and counts how often it is read.
    struct FakeClock {
        base: Instant,
        offset_ms: AtomicU64,
        reads: AtomicU64,
    }

    impl FakeClock {
        fn new() -> Arc<Self> {
            Arc::new(FakeClock {
                base: Instant::now(),
                offset_ms: AtomicU64::new(0),
                reads: AtomicU64::new(0),
            })
        }

        fn advance(&self, d: Duration) {
            self.offset_ms.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
        }

        /// Moves to `secs` after the start.
        fn set_secs(&self, secs: u64) {
            self.offset_ms.store(secs * 1000, Ordering::SeqCst);
        }

        fn reads(&self) -> u64 {
            self.reads.load(Ordering::SeqCst)
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.base + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
        }
    }

    const CLOSED_TO_OPEN: Transition = Transition {
        from: BreakerState::Closed,
        to: BreakerState::Open,
    };
    const OPEN_TO_HALF: Transition = Transition {
        from: BreakerState::Open,
        to: BreakerState::HalfOpen,
    };
    const HALF_TO_CLOSED: Transition = Transition {
        from: BreakerState::HalfOpen,
        to: BreakerState::Closed,
    };
    const HALF_TO_OPEN: Transition = Transition {
        from: BreakerState::HalfOpen,
        to: BreakerState::Open,
    };

    fn settings(failures: u32, window_s: u64, open_s: u64, half_open_requests: u32) -> BreakerSettings {
        BreakerSettings {
            failures,
            window: Duration::from_secs(window_s),
            open: Duration::from_secs(open_s),
            half_open_requests,
        }
    }

    fn breaker(s: BreakerSettings) -> (Breaker, Arc<FakeClock>) {
        let clock = FakeClock::new();
        (Breaker::new(s, clock.clone()), clock)
    }

    /// failures=3 in 10s, open 30s, one probe; already opened at t=0.
    fn opened(half_open_requests: u32) -> (Breaker, Arc<FakeClock>) {
        let (b, clock) = breaker(settings(3, 10, 30, half_open_requests));
        b.record_failure(Admission::Normal);
        b.record_failure(Admission::Normal);
        assert_eq!(b.record_failure(Admission::Normal), Some(CLOSED_TO_OPEN));
        (b, clock)
    }

    #[test]
    fn breaker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Breaker>();
    }

    #[test]
    fn closed_below_threshold_stays_closed() {
        let (b, clock) = breaker(settings(3, 10, 30, 1));
        assert_eq!(b.record_failure(Admission::Normal), None);
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.record_failure(Admission::Normal), None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.failures_in_window(), 2);
        assert!(b.allows());
        assert_eq!(b.try_acquire(), (Some(Admission::Normal), None));
        assert_eq!(b.time_to_half_open(), None);
    }

    #[test]
    fn failures_within_window_open() {
        let (b, clock) = breaker(settings(3, 10, 30, 1));
        assert_eq!(b.record_failure(Admission::Normal), None);
        clock.set_secs(4);
        assert_eq!(b.record_failure(Admission::Normal), None);
        clock.set_secs(9);
        assert_eq!(b.record_failure(Admission::Normal), Some(CLOSED_TO_OPEN));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.failures_in_window(), 3);
    }

    #[test]
    fn failures_spread_beyond_window_never_open() {
        let (b, clock) = breaker(settings(3, 10, 30, 1));
        for t in [0, 6, 12, 18] {
            clock.set_secs(t);
            assert_eq!(b.record_failure(Admission::Normal), None, "failure at t={t}");
            assert_eq!(b.state(), BreakerState::Closed);
            assert!(b.failures_in_window() <= 2);
        }
    }

    #[test]
    fn failure_exactly_window_old_no_longer_counts() {
        let (b, clock) = breaker(settings(2, 10, 30, 1));
        b.record_failure(Admission::Normal);
        clock.set_secs(10);
        assert_eq!(b.failures_in_window(), 0);
        assert_eq!(b.record_failure(Admission::Normal), None);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn successes_do_not_reset_the_window() {
        // The window counts failures; interleaved successes do not restart it.
        let (b, _clock) = breaker(settings(3, 10, 30, 1));
        for _ in 0..2 {
            b.record_failure(Admission::Normal);
            assert_eq!(b.record_success(Admission::Normal), None);
        }
        assert_eq!(b.record_failure(Admission::Normal), Some(CLOSED_TO_OPEN));
    }

    #[test]
    fn closed_fast_path_reads_no_clock() {
        let (b, clock) = breaker(settings(3, 10, 30, 1));
        for _ in 0..100 {
            assert!(b.allows());
            assert_eq!(b.try_acquire(), (Some(Admission::Normal), None));
            assert_eq!(b.record_success(Admission::Normal), None);
            assert_eq!(b.state(), BreakerState::Closed);
            assert_eq!(b.time_to_half_open(), None);
        }
        assert_eq!(clock.reads(), 0);
    }

    #[test]
    fn open_refuses_until_open_period_elapsed() {
        let (b, clock) = opened(1);
        assert_eq!(b.time_to_half_open(), Some(Duration::from_secs(30)));
        for t in [1, 10, 29] {
            clock.set_secs(t);
            assert!(!b.allows());
            assert_eq!(b.try_acquire(), (None, None));
            assert_eq!(b.state(), BreakerState::Open);
            assert_eq!(b.time_to_half_open(), Some(Duration::from_secs(30 - t)));
        }
        clock.advance(Duration::from_millis(999));
        assert_eq!(b.try_acquire(), (None, None));
        assert_eq!(b.time_to_half_open(), Some(Duration::from_millis(1)));
        clock.set_secs(30);
        assert_eq!(b.time_to_half_open(), Some(Duration::ZERO));
        assert!(b.allows());
        assert_eq!(b.try_acquire(), (Some(Admission::Probe), Some(OPEN_TO_HALF)));
        assert_eq!(b.time_to_half_open(), None);
    }

    #[test]
    fn allows_has_no_side_effects() {
        let (b, clock) = opened(1);
        clock.set_secs(31);
        for _ in 0..5 {
            assert!(b.allows());
        }
        // Still OPEN: only try_acquire moves to HALF_OPEN, and the slot is still there.
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.try_acquire(), (Some(Admission::Probe), Some(OPEN_TO_HALF)));
        assert!(!b.allows());
        assert!(!b.allows());
        assert_eq!(b.try_acquire(), (None, None));
    }

    #[test]
    fn half_open_admits_exactly_configured_probes() {
        let (b, clock) = opened(2);
        clock.set_secs(30);
        assert_eq!(b.try_acquire(), (Some(Admission::Probe), Some(OPEN_TO_HALF)));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.allows());
        assert_eq!(b.try_acquire(), (Some(Admission::Probe), None));
        assert!(!b.allows());
        assert_eq!(b.try_acquire(), (None, None));
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn concurrent_probe_admission_is_exact() {
        const THREADS: usize = 16;
        for half_open_requests in [1, 2, 5] {
            let (b, clock) = opened(half_open_requests);
            clock.set_secs(30);
            let b = Arc::new(b);
            let barrier = Arc::new(Barrier::new(THREADS));
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (b, barrier) = (b.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        b.try_acquire()
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
            let probes = results
                .iter()
                .filter(|(a, _)| *a == Some(Admission::Probe))
                .count();
            let refused = results.iter().filter(|(a, _)| a.is_none()).count();
            let transitions: Vec<_> = results.iter().filter_map(|(_, t)| *t).collect();
            assert_eq!(probes, half_open_requests as usize);
            assert_eq!(refused, THREADS - half_open_requests as usize);
            assert_eq!(transitions, vec![OPEN_TO_HALF]);
            assert_eq!(b.state(), BreakerState::HalfOpen);
        }
    }

    #[test]
    fn concurrent_failures_open_once() {
        const THREADS: usize = 16;
        let (b, _clock) = breaker(settings(3, 10, 30, 1));
        let b = Arc::new(b);
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (b, barrier) = (b.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    b.record_failure(Admission::Normal)
                })
            })
            .collect();
        let transitions: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(transitions, vec![CLOSED_TO_OPEN]);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.failures_in_window(), 3);
    }

    #[test]
    fn probe_success_closes_and_clears_failures() {
        let (b, clock) = opened(1);
        clock.set_secs(30);
        let (admission, _) = b.try_acquire();
        assert_eq!(admission, Some(Admission::Probe));
        assert_eq!(b.record_success(Admission::Probe), Some(HALF_TO_CLOSED));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.failures_in_window(), 0);
        assert_eq!(b.try_acquire(), (Some(Admission::Normal), None));
        // A fresh threshold is needed to open again.
        assert_eq!(b.record_failure(Admission::Normal), None);
        assert_eq!(b.record_failure(Admission::Normal), None);
        assert_eq!(b.record_failure(Admission::Normal), Some(CLOSED_TO_OPEN));
    }

    #[test]
    fn probe_failure_reopens_for_full_open_period() {
        let (b, clock) = opened(1);
        clock.set_secs(30);
        assert_eq!(b.try_acquire().0, Some(Admission::Probe));
        // The probe takes a while to fail; the new open period counts from the failure.
        clock.set_secs(37);
        assert_eq!(b.record_failure(Admission::Probe), Some(HALF_TO_OPEN));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.time_to_half_open(), Some(Duration::from_secs(30)));
        clock.set_secs(66);
        clock.advance(Duration::from_millis(999));
        assert!(!b.allows());
        assert_eq!(b.try_acquire(), (None, None));
        clock.set_secs(67);
        assert_eq!(b.try_acquire(), (Some(Admission::Probe), Some(OPEN_TO_HALF)));
    }

    #[test]
    fn late_normal_failure_while_open_does_not_extend() {
        let (b, clock) = opened(1);
        for t in [5, 20, 29] {
            clock.set_secs(t);
            assert_eq!(b.record_failure(Admission::Normal), None);
        }
        assert_eq!(b.time_to_half_open(), Some(Duration::from_secs(1)));
        clock.set_secs(30);
        assert_eq!(b.try_acquire(), (Some(Admission::Probe), Some(OPEN_TO_HALF)));
    }

    #[test]
    fn late_normal_failure_while_half_open_is_ignored() {
        let (b, clock) = opened(1);
        clock.set_secs(30);
        assert_eq!(b.try_acquire().0, Some(Admission::Probe));
        assert_eq!(b.record_failure(Admission::Normal), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.record_success(Admission::Probe), Some(HALF_TO_CLOSED));
    }

    #[test]
    fn late_normal_success_while_open_or_half_open_does_not_close() {
        let (b, clock) = opened(1);
        assert_eq!(b.record_success(Admission::Normal), None);
        assert_eq!(b.state(), BreakerState::Open);
        clock.set_secs(30);
        assert_eq!(b.try_acquire().0, Some(Admission::Probe));
        assert_eq!(b.record_success(Admission::Normal), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.try_acquire(), (None, None));
    }

    #[test]
    fn stale_probe_result_while_open_is_ignored() {
        let (b, clock) = opened(2);
        clock.set_secs(30);
        assert_eq!(b.try_acquire().0, Some(Admission::Probe));
        assert_eq!(b.try_acquire().0, Some(Admission::Probe));
        clock.set_secs(31);
        assert_eq!(b.record_failure(Admission::Probe), Some(HALF_TO_OPEN));
        // The sibling probe answers after the re-open: neither result changes OPEN.
        clock.set_secs(35);
        assert_eq!(b.record_success(Admission::Probe), None);
        assert_eq!(b.record_failure(Admission::Probe), None);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.time_to_half_open(), Some(Duration::from_secs(26)));
    }

    #[test]
    fn release_returns_probe_slot() {
        let (b, clock) = opened(1);
        clock.set_secs(30);
        assert_eq!(b.try_acquire(), (Some(Admission::Probe), Some(OPEN_TO_HALF)));
        assert_eq!(b.try_acquire(), (None, None));
        b.release(Admission::Probe);
        assert!(b.allows());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.try_acquire(), (Some(Admission::Probe), None));
        assert_eq!(b.try_acquire(), (None, None));
        // Releasing a normal admission holds no slot to return.
        b.release(Admission::Normal);
        assert_eq!(b.try_acquire(), (None, None));
    }

    #[test]
    fn release_outside_half_open_changes_nothing() {
        let (b, clock) = opened(1);
        b.release(Admission::Probe);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.try_acquire(), (None, None));
        clock.set_secs(30);
        assert_eq!(b.try_acquire().0, Some(Admission::Probe));
        assert_eq!(b.record_success(Admission::Probe), Some(HALF_TO_CLOSED));
        b.release(Admission::Probe);
        b.release(Admission::Normal);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn transitions_reported_once() {
        let (b, clock) = breaker(settings(2, 10, 30, 2));
        let mut seen = Vec::new();
        let mut note = |t: Option<Transition>| seen.extend(t);

        note(b.record_failure(Admission::Normal));
        note(b.record_failure(Admission::Normal));
        note(b.record_failure(Admission::Normal));
        note(b.try_acquire().1);
        clock.set_secs(30);
        note(b.try_acquire().1);
        note(b.try_acquire().1);
        note(b.try_acquire().1);
        note(b.record_failure(Admission::Probe));
        note(b.record_failure(Admission::Probe));
        clock.set_secs(60);
        note(b.try_acquire().1);
        note(b.record_success(Admission::Probe));
        note(b.record_success(Admission::Probe));
        note(b.record_success(Admission::Normal));

        assert_eq!(
            seen,
            vec![
                CLOSED_TO_OPEN,
                OPEN_TO_HALF,
                HALF_TO_OPEN,
                OPEN_TO_HALF,
                HALF_TO_CLOSED
            ]
        );
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn zero_counts_are_taken_as_one() {
        let (b, clock) = breaker(settings(0, 10, 30, 0));
        assert_eq!(b.settings().failures, 1);
        assert_eq!(b.settings().half_open_requests, 1);
        assert_eq!(b.record_failure(Admission::Normal), Some(CLOSED_TO_OPEN));
        clock.set_secs(30);
        assert_eq!(b.try_acquire(), (Some(Admission::Probe), Some(OPEN_TO_HALF)));
        assert_eq!(b.try_acquire(), (None, None));
    }

    #[test]
    fn gauge_values_and_names() {
        assert_eq!(BreakerState::Closed.gauge(), 0);
        assert_eq!(BreakerState::HalfOpen.gauge(), 1);
        assert_eq!(BreakerState::Open.gauge(), 2);
        assert_eq!(BreakerState::Closed.as_str(), "closed");
        assert_eq!(BreakerState::Open.as_str(), "open");
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
        for s in [BreakerState::Closed, BreakerState::Open, BreakerState::HalfOpen] {
            assert_eq!(BreakerState::from_code(s.code()), s);
        }
    }

    #[test]
    fn system_clock_drives_a_breaker() {
        let b = Breaker::new(settings(1, 10, 3600, 1), Arc::new(SystemClock));
        assert_eq!(b.record_failure(Admission::Normal), Some(CLOSED_TO_OPEN));
        assert_eq!(b.try_acquire(), (None, None));
        assert!(b
            .time_to_half_open()
            .is_some_and(|d| d > Duration::from_secs(3500)));
    }
}
