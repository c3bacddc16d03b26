//! A circuit breaker per route.
//!
//! A route that keeps failing costs every request a wasted round trip (and,
//! behind [Retry], several). The breaker remembers that, so [`Failover`]
//! can skip the route without spending an attempt on it:
//!
//! - **Closed**: requests flow. Each failover-worthy failure adds one to a
//!   count of consecutive failures; any other outcome (a success, or an
//!   answer such as a 400 that proves the route is up) resets it. At
//!   [`failure_threshold`](BreakerConfig::failure_threshold) failures (default
//!   5) the breaker opens for [`cool_down`](BreakerConfig::cool_down).
//! - A failure carrying a `RetryAfter` longer than
//!   [`retry_after_cap`](BreakerConfig::retry_after_cap) (default 30 s, the
//!   same cap Retry honours) opens the breaker at once, for exactly that
//!   long: the server told us when it will take requests again, so waiting
//!   out a shorter cool-down would only earn another 429.
//! - **Open**: the route is skipped. When the cool-down has passed, the next
//!   request that reaches it is let through as the single **probe**
//!   (**half-open**); every other request keeps skipping it until the probe
//!   answers. A probe that succeeds closes the breaker; one that fails
//!   re-opens it. A probe whose request is dropped before it answers (the
//!   caller went away) gives the probe slot back.
//!
//! Outcomes of requests that were admitted while the breaker was closed but
//! answer after it opened are not used to close it: they started before the
//! breaker had its reason to open. (A long `RetryAfter` still extends an open
//! breaker, whoever reports it.)
//!
//! # Hot path
//!
//! A breaker that is closed with no failures counted is marked "clean" in an
//! atomic flag; admitting a request and recording its success then cost one
//! atomic load each. Every other transition takes a short `std::sync::Mutex`
//! that is held for a few field writes and never across an `.await`.
//!
//! Time is [`tokio::time::Instant`], so tests drive cool-downs with
//! `tokio::time::pause()` and `advance`.
//!
//! [Retry]: https://docs.rs/claude-tower-retry
//! [`Failover`]: crate::Failover

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use claude_tower_core::RouteId;
use tokio::time::Instant;

/// Default number of consecutive failover-worthy failures that open a breaker.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// Default time an opened breaker stays open before it lets a probe through.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(10);
/// Default `RetryAfter` above which a single answer opens the breaker.
pub const DEFAULT_RETRY_AFTER_CAP: Duration = Duration::from_secs(30);

/// Settings shared by every route's breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    failure_threshold: u32,
    cool_down: Duration,
    retry_after_cap: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            cool_down: DEFAULT_COOL_DOWN,
            retry_after_cap: DEFAULT_RETRY_AFTER_CAP,
        }
    }
}

impl BreakerConfig {
    /// The defaults: 5 failures, 10 s cool-down, 30 s `RetryAfter` cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consecutive failover-worthy failures that open the breaker (at least 1).
    pub fn with_failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures.max(1);
        self
    }

    /// How long the breaker stays open after `failure_threshold` failures or
    /// a failed probe.
    pub fn with_cool_down(mut self, cool_down: Duration) -> Self {
        self.cool_down = cool_down;
        self
    }

    /// A `RetryAfter` longer than this opens the breaker for exactly that long.
    ///
    /// Set it to the same cap as the route's Retry layer: a wait Retry would
    /// honour is not a reason to stop using the route.
    pub fn with_retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// The configured failure threshold.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// The configured cool-down.
    pub fn cool_down(&self) -> Duration {
        self.cool_down
    }

    /// The configured `RetryAfter` cap.
    pub fn retry_after_cap(&self) -> Duration {
        self.retry_after_cap
    }
}

// === impl Breaker ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// The cool-down is over and one probe is in flight.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive_failures: u32,
}

/// How a request got past a breaker; decides what its outcome may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Admitted by a closed breaker.
    Closed,
    /// The single half-open probe.
    Probe,
    /// Sent to an open breaker because every route's breaker was open.
    Forced,
}

pub(crate) struct Breaker {
    route: RouteId,
    config: BreakerConfig,
    /// `true` while the state is `Closed` with zero failures: lets the hot
    /// path admit and record success without taking the lock.
    clean: AtomicBool,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub(crate) fn new(route: RouteId, config: BreakerConfig) -> Self {
        Self {
            route,
            config,
            clean: AtomicBool::new(true),
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive_failures: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // NOTE: nothing panics while the lock is held, but a poisoned breaker
        // must never take the gateway down: its data stays consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, inner: &mut Inner, state: State, failures: u32) {
        inner.state = state;
        inner.consecutive_failures = failures;
        self.clean
            .store(state == State::Closed && failures == 0, Ordering::Release);
    }

    /// Closed with no failures counted: admit without the lock or the clock.
    pub(crate) fn is_clean(&self) -> bool {
        self.clean.load(Ordering::Acquire)
    }

    /// Whether a request could be admitted now, without taking the probe.
    pub(crate) fn may_admit(&self, now: Instant) -> bool {
        if self.clean.load(Ordering::Acquire) {
            return true;
        }
        match self.lock().state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen => false,
        }
    }

    /// Admits a request, taking the probe slot if the cool-down has passed.
    pub(crate) fn try_admit(&self, now: Instant) -> Option<Admission> {
        if self.clean.load(Ordering::Acquire) {
            return Some(Admission::Closed);
        }
        let mut inner = self.lock();
        match inner.state {
            State::Closed => Some(Admission::Closed),
            State::Open { until } if now >= until => {
                // Open -> HalfOpen: this request is the one probe.
                let failures = inner.consecutive_failures;
                self.set(&mut inner, State::HalfOpen, failures);
                tracing::debug!(route = %self.route, "circuit half-open: probing");
                Some(Admission::Probe)
            }
            State::Open { .. } | State::HalfOpen => None,
        }
    }

    /// When the route will take a request again; `None` if it would now.
    pub(crate) fn reopens_at(&self, now: Instant) -> Option<Instant> {
        if self.clean.load(Ordering::Acquire) {
            return None;
        }
        match self.lock().state {
            State::Closed => None,
            State::Open { until } if until > now => Some(until),
            State::Open { .. } => None,
            // The probe may take as long as any request; nothing better known.
            State::HalfOpen => Some(now),
        }
    }

    /// Records an outcome that says nothing against the route.
    pub(crate) fn on_success(&self, admission: Admission) {
        if admission == Admission::Closed && self.clean.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.lock();
        match (inner.state, admission) {
            (State::Closed, _)
            | (State::HalfOpen, Admission::Probe)
            | (State::Open { .. }, Admission::Forced) => {
                if inner.state != State::Closed {
                    tracing::info!(route = %self.route, "circuit closed");
                }
                self.set(&mut inner, State::Closed, 0);
            }
            // Admitted before the breaker opened: stale evidence.
            _ => {}
        }
    }

    /// Records a failover-worthy failure, with the server's `RetryAfter`.
    pub(crate) fn on_failure(
        &self,
        admission: Admission,
        retry_after: Option<Duration>,
        now: Instant,
    ) {
        let long_wait = retry_after.filter(|wait| *wait > self.config.retry_after_cap);
        let mut inner = self.lock();
        let failures = inner.consecutive_failures.saturating_add(1);
        let open_for = long_wait.unwrap_or(self.config.cool_down);
        let next = match (inner.state, admission) {
            (State::Closed, _) => {
                if long_wait.is_some() || failures >= self.config.failure_threshold {
                    Some(State::Open {
                        until: now + open_for,
                    })
                } else {
                    Some(State::Closed)
                }
            }
            (State::HalfOpen, Admission::Probe) => Some(State::Open {
                until: now + open_for,
            }),
            (State::Open { until }, _) if admission == Admission::Forced || long_wait.is_some() => {
                Some(State::Open {
                    until: until.max(now + open_for),
                })
            }
            _ => None,
        };
        if let Some(next) = next {
            if matches!(next, State::Open { .. }) && !matches!(inner.state, State::Open { .. }) {
                tracing::warn!(
                    route = %self.route,
                    failures,
                    open_for_ms = open_for.as_millis() as u64,
                    "circuit opened"
                );
            }
            self.set(&mut inner, next, failures);
        }
    }

    /// Gives the probe slot back when the probe was dropped unanswered.
    pub(crate) fn release_probe(&self, now: Instant) {
        let mut inner = self.lock();
        if inner.state == State::HalfOpen {
            let failures = inner.consecutive_failures;
            self.set(&mut inner, State::Open { until: now }, failures);
        }
    }

    pub(crate) fn health(&self, now: Instant) -> RouteHealth {
        let inner = self.lock();
        let (state, reopens_in) = match inner.state {
            State::Closed => (CircuitState::Closed, None),
            State::Open { until } if until > now => (CircuitState::Open, Some(until - now)),
            // Cool-down over: the next request is the probe.
            State::Open { .. } => (CircuitState::HalfOpen, Some(Duration::ZERO)),
            State::HalfOpen => (CircuitState::HalfOpen, None),
        };
        RouteHealth {
            route: self.route.clone(),
            state,
            consecutive_failures: inner.consecutive_failures,
            reopens_in,
        }
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Breaker")
            .field("route", &self.route)
            .field("state", &inner.state)
            .field("consecutive_failures", &inner.consecutive_failures)
            .finish()
    }
}

/// Holds a half-open probe slot; gives it back if dropped before an outcome.
pub(crate) struct ProbeGuard {
    breakers: Arc<[Breaker]>,
    index: usize,
    armed: bool,
}

impl ProbeGuard {
    pub(crate) fn new(breakers: Arc<[Breaker]>, index: usize) -> Self {
        Self {
            breakers,
            index,
            armed: true,
        }
    }

    /// The outcome was recorded: nothing to give back.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.armed
            && let Some(breaker) = self.breakers.get(self.index)
        {
            breaker.release_probe(Instant::now());
        }
    }
}

impl fmt::Debug for ProbeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeGuard")
            .field("index", &self.index)
            .finish()
    }
}

// === snapshot API ===

/// A route breaker's state, as `/healthz` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Requests flow.
    Closed,
    /// The route is skipped until the cool-down ends.
    Open,
    /// The cool-down is over: one probe is in flight or the next request is it.
    HalfOpen,
}

impl CircuitState {
    /// `"closed"`, `"open"` or `"half-open"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One route's breaker at the moment of a [`Breakers::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteHealth {
    route: RouteId,
    state: CircuitState,
    consecutive_failures: u32,
    reopens_in: Option<Duration>,
}

impl RouteHealth {
    /// The route.
    pub fn route(&self) -> &RouteId {
        &self.route
    }

    /// Closed, open or half-open.
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// Failover-worthy failures since the route last answered well.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Time until an open breaker lets its probe through (`None` unless open
    /// or waiting for its probe request).
    pub fn reopens_in(&self) -> Option<Duration> {
        self.reopens_in
    }

    /// [`reopens_in`](Self::reopens_in) in whole seconds, rounded up; 0 when
    /// not open.
    pub fn seconds_until_reopen(&self) -> u64 {
        self.reopens_in
            .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
    }
}

/// A cheap, cloneable handle on every route's breaker, for health endpoints.
///
/// Get it from [`Failover::breakers`](crate::Failover::breakers) before the
/// service is moved into a stack; it keeps seeing the live state.
///
/// ```
/// use claude_tower_core::{ReplayBody, RouteId};
/// use claude_tower_failover::{CircuitState, Failover};
/// use http::{Request, Response};
/// use tower::service_fn;
///
/// let route = service_fn(|_: Request<ReplayBody>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(()))
/// });
/// let failover = Failover::new([(RouteId::new("anthropic"), route)]);
/// let health = failover.breakers();
/// for route in health.snapshot() {
///     // e.g. {"route":"anthropic","state":"closed","consecutive_failures":0,"reopens_in_s":0}
///     assert_eq!(route.route(), "anthropic");
///     assert_eq!(route.state(), CircuitState::Closed);
///     assert_eq!(route.seconds_until_reopen(), 0);
/// }
/// ```
#[derive(Clone)]
pub struct Breakers {
    pub(crate) breakers: Arc<[Breaker]>,
}

impl Breakers {
    /// Every route's breaker, in priority order (configuration order within a
    /// priority).
    pub fn snapshot(&self) -> Vec<RouteHealth> {
        let now = Instant::now();
        self.breakers.iter().map(|b| b.health(now)).collect()
    }

    /// One route's breaker, by id.
    pub fn get(&self, route: &str) -> Option<RouteHealth> {
        let now = Instant::now();
        self.breakers
            .iter()
            .find(|b| b.route == route)
            .map(|b| b.health(now))
    }
}

impl fmt::Debug for Breakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.breakers.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(
            RouteId::new("r"),
            BreakerConfig::new()
                .with_failure_threshold(threshold)
                .with_cool_down(Duration::from_secs(10)),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let b = breaker(3);
        let now = Instant::now();
        b.on_failure(Admission::Closed, None, now);
        b.on_failure(Admission::Closed, None, now);
        b.on_success(Admission::Closed);
        assert_eq!(b.health(now).consecutive_failures(), 0);
        assert!(b.clean.load(Ordering::Acquire));
        for _ in 0..3 {
            assert_eq!(b.try_admit(now), Some(Admission::Closed));
            b.on_failure(Admission::Closed, None, now);
        }
        let h = b.health(now);
        assert_eq!(h.state(), CircuitState::Open);
        assert_eq!(h.consecutive_failures(), 3);
        assert_eq!(h.seconds_until_reopen(), 10);
        assert!(!b.may_admit(now));
        assert_eq!(b.try_admit(now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_after_cool_down_then_close_or_reopen() {
        let b = breaker(1);
        let t0 = Instant::now();
        b.on_failure(Admission::Closed, None, t0);
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.may_admit(t1));
        assert_eq!(b.try_admit(t1), Some(Admission::Probe));
        assert_eq!(b.try_admit(t1), None, "only one probe");
        assert_eq!(b.health(t1).state(), CircuitState::HalfOpen);
        b.on_failure(Admission::Probe, None, t1);
        assert_eq!(b.health(t1).state(), CircuitState::Open);
        assert_eq!(b.reopens_at(t1), Some(t1 + Duration::from_secs(10)));

        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(b.try_admit(t2), Some(Admission::Probe));
        b.on_success(Admission::Probe);
        assert_eq!(b.health(t2).state(), CircuitState::Closed);
        assert_eq!(b.try_admit(t2), Some(Admission::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn long_retry_after_opens_for_exactly_that_long() {
        let b = breaker(5);
        let t0 = Instant::now();
        b.on_failure(Admission::Closed, Some(Duration::from_secs(30)), t0);
        assert_eq!(
            b.health(t0).state(),
            CircuitState::Closed,
            "at the cap: retry honours it"
        );
        b.on_failure(Admission::Closed, Some(Duration::from_secs(120)), t0);
        assert_eq!(b.reopens_at(t0), Some(t0 + Duration::from_secs(120)));
        assert!(!b.may_admit(t0 + Duration::from_millis(119_999)));
        assert!(b.may_admit(t0 + Duration::from_secs(120)));
    }

    #[tokio::test(start_paused = true)]
    async fn stale_success_does_not_close_and_dropped_probe_is_returned() {
        let b = breaker(1);
        let t0 = Instant::now();
        b.on_failure(Admission::Closed, None, t0);
        b.on_success(Admission::Closed);
        assert_eq!(b.health(t0).state(), CircuitState::Open);

        let breakers: Arc<[Breaker]> = Arc::from(vec![b]);
        tokio::time::advance(Duration::from_secs(10)).await;
        let now = Instant::now();
        assert_eq!(breakers[0].try_admit(now), Some(Admission::Probe));
        drop(ProbeGuard::new(breakers.clone(), 0));
        assert_eq!(breakers[0].try_admit(now), Some(Admission::Probe));
        let guard = ProbeGuard::new(breakers.clone(), 0);
        breakers[0].on_success(Admission::Probe);
        guard.disarm();
        assert_eq!(breakers[0].health(now).state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn forced_outcomes_count_on_an_open_breaker() {
        let b = breaker(1);
        let t0 = Instant::now();
        b.on_failure(Admission::Closed, Some(Duration::from_secs(60)), t0);
        b.on_failure(Admission::Forced, None, t0 + Duration::from_secs(1));
        assert_eq!(
            b.reopens_at(t0),
            Some(t0 + Duration::from_secs(60)),
            "never shortened"
        );
        b.on_success(Admission::Forced);
        assert_eq!(b.health(t0).state(), CircuitState::Closed);
    }

    #[test]
    fn seconds_round_up() {
        let h = RouteHealth {
            route: RouteId::new("r"),
            state: CircuitState::Open,
            consecutive_failures: 1,
            reopens_in: Some(Duration::from_millis(1500)),
        };
        assert_eq!(h.seconds_until_reopen(), 2);
        assert_eq!(CircuitState::HalfOpen.to_string(), "half-open");
    }
}
