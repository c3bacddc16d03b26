use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use claude_tower_core::{Attempt, ErrorClass, RetryAfter, RouteId};
use http::{Request, Response};
use tokio::time::Instant;
use tower::retry::Policy;
use tower::retry::budget::Budget;

use crate::body::ReplayableBody;
use crate::config::{RetryAfterPolicyBuilder, Shared};
use crate::future::RetryWait;
use crate::jitter::clamp_unit;
use crate::outcome::{ErrorSource, Outcome};

/// A [`tower::retry::Policy`] for one Claude route: retries what the route
/// may answer differently next time, waits as long as the server asked (up
/// to a cap) or a jittered backoff, and stops at `max_attempts`, the
/// per-request deadline or the retry budget.
///
/// See the [crate docs](crate) for the decision table and the reasoning.
///
/// Cloning is cheap (one reference count): tower's `Retry` clones the policy
/// for every request, and each clone carries that request's attempt count
/// and deadline, while the settings, the budget and the jitter source are
/// shared.
#[derive(Clone)]
pub struct RetryAfterPolicy {
    shared: Arc<Shared>,
    // === per request ===
    // Attempts sent so far; 0 until the first send.
    attempt: u32,
    // When the first attempt was sent; the deadline counts from here.
    started: Option<Instant>,
    // Set when `retry` approved a retry: the next `clone_request` belongs to
    // the re-send, not to a new request.
    resending: bool,
}

/// Why the policy stopped retrying a retryable failure.
#[derive(Clone, Copy, Debug)]
enum GiveUp {
    Attempts,
    RetryAfterOverCap(Duration),
    Deadline,
    Budget,
}

impl GiveUp {
    fn as_str(self) -> &'static str {
        match self {
            GiveUp::Attempts => "attempts exhausted",
            GiveUp::RetryAfterOverCap(_) => "server asked for a wait above the cap",
            GiveUp::Deadline => "the wait would end past the deadline",
            GiveUp::Budget => "retry budget exhausted",
        }
    }
}

// === impl RetryAfterPolicy ===

impl RetryAfterPolicy {
    /// A policy for `route` with the default settings: 3 attempts,
    /// Retry-After honoured up to 30 s, full-jitter backoff from 500 ms to
    /// 8 s, a 120 s deadline, and a budget of 20 % of the last 10 s of
    /// requests plus one retry per second.
    pub fn new(route: impl Into<RouteId>) -> Self {
        RetryAfterPolicyBuilder::new(route.into()).assemble()
    }

    /// A builder for `route`, starting from the defaults of [`new`](Self::new).
    pub fn builder(route: impl Into<RouteId>) -> RetryAfterPolicyBuilder {
        RetryAfterPolicyBuilder::new(route.into())
    }

    pub(crate) fn from_shared(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
            attempt: 0,
            started: None,
            resending: false,
        }
    }

    /// The route this policy retries on; it names the [`Attempt`]s.
    pub fn route(&self) -> &RouteId {
        &self.shared.route
    }

    /// Attempts per request, counting the first send.
    pub fn max_attempts(&self) -> u32 {
        self.shared.max_attempts
    }

    /// The longest server-requested wait honoured.
    pub fn max_retry_after(&self) -> Duration {
        self.shared.max_retry_after
    }

    /// The per-request deadline, if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.shared.deadline
    }

    /// The wait before the next attempt, or why there is none.
    fn next_wait(&self, retry_after: Option<RetryAfter>) -> Result<(Duration, bool), GiveUp> {
        let shared = &*self.shared;
        if self.attempt >= shared.max_attempts {
            return Err(GiveUp::Attempts);
        }
        let (wait, from_server) = match retry_after {
            Some(wait) if wait.duration() > shared.max_retry_after => {
                return Err(GiveUp::RetryAfterOverCap(wait.duration()));
            }
            Some(wait) => (wait.duration(), true),
            None => (self.backoff(), false),
        };
        if let Some(deadline) = shared.deadline {
            let started = self.started.unwrap_or_else(Instant::now);
            let ends = Instant::now().checked_add(wait).ok_or(GiveUp::Deadline)?;
            if ends.saturating_duration_since(started) > deadline {
                return Err(GiveUp::Deadline);
            }
        }
        // Last, so that a retry refused for another reason costs nothing.
        if let Some(budget) = &shared.budget
            && !budget.withdraw()
        {
            return Err(GiveUp::Budget);
        }
        Ok((wait, from_server))
    }

    /// Full jitter: uniform in `[0, min(cap, base * 2^retries)]`.
    fn backoff(&self) -> Duration {
        let shared = &*self.shared;
        let retries = self.attempt.saturating_sub(1).min(31);
        let window = shared
            .base
            .checked_mul(1 << retries)
            .map_or(shared.cap, |w| w.min(shared.cap));
        let fraction = clamp_unit(shared.jitter.sample());
        Duration::try_from_secs_f64(window.as_secs_f64() * fraction).unwrap_or(window)
    }

    fn attempt(&self) -> Attempt {
        Attempt::new(self.shared.route.clone(), self.attempt)
    }

    /// Marks the final outcome with the attempt that produced it: the
    /// response's extensions, or the error itself (see
    /// [`ErrorSource::record_attempt`]).
    fn finish<ResB, E: ErrorSource>(&self, result: &mut Result<Response<ResB>, E>) {
        match result {
            Ok(response) => {
                response.extensions_mut().insert(self.attempt());
            }
            Err(err) => err.record_attempt(self.attempt()),
        }
    }
}

impl<B, ResB, E> Policy<Request<B>, Response<ResB>, E> for RetryAfterPolicy
where
    B: ReplayableBody,
    E: ErrorSource,
{
    type Future = RetryWait;

    fn retry(
        &mut self,
        req: &mut Request<B>,
        result: &mut Result<Response<ResB>, E>,
    ) -> Option<RetryWait> {
        // NOTE: tower's `Retry` calls this on the per-request clone, after
        // `clone_request` has recorded the first send on it.
        self.attempt = self.attempt.max(1);
        let (class, retry_after) = match Outcome::of(result) {
            Outcome::Success => {
                self.finish(result);
                return None;
            }
            Outcome::Failure {
                class, retryable, ..
            } if !retryable => {
                tracing::trace!(
                    route = %self.shared.route,
                    attempt = self.attempt,
                    class = %class,
                    "not retryable",
                );
                self.finish(result);
                return None;
            }
            Outcome::Failure {
                class, retry_after, ..
            } => (class, retry_after),
        };

        match self.next_wait(retry_after) {
            Ok((wait, from_server)) => {
                self.attempt += 1;
                self.resending = true;
                tracing::debug!(
                    route = %self.shared.route,
                    attempt = self.attempt,
                    class = %class,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    server_wait = from_server,
                    "retrying on the same route",
                );
                req.extensions_mut().insert(self.attempt());
                Some(RetryWait::new(wait))
            }
            Err(reason) => {
                give_up(&self.shared.route, self.attempt, class, reason);
                self.finish(result);
                None
            }
        }
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        if self.resending {
            self.resending = false;
        } else {
            // NOTE: a new request. tower's `Retry::call` asks the service's
            // own policy, then clones it into the request's future, so the
            // clone starts from this state; the service's copy is reset on
            // the next call.
            self.attempt = 1;
            // The clock is only read when a deadline needs it.
            self.started = self.shared.deadline.map(|_| Instant::now());
            if let Some(budget) = &self.shared.budget {
                budget.deposit();
            }
        }
        let Some(body) = req.body().replay() else {
            tracing::debug!(
                route = %self.shared.route,
                attempt = self.attempt,
                "request body is not replayable; it is sent once and not retried",
            );
            return None;
        };
        let mut clone = Request::new(body);
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}

fn give_up(route: &RouteId, attempt: u32, class: ErrorClass, reason: GiveUp) {
    match reason {
        GiveUp::RetryAfterOverCap(wait) => tracing::debug!(
            %route,
            attempt,
            class = %class,
            retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "not retrying: {}",
            reason.as_str(),
        ),
        _ => tracing::debug!(
            %route,
            attempt,
            class = %class,
            "not retrying: {}",
            reason.as_str(),
        ),
    }
}

impl fmt::Debug for RetryAfterPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The settings print under the policy's name; per-request state only
        // matters once a request is under way.
        if self.attempt == 0 {
            fmt::Debug::fmt(&*self.shared, f)
        } else {
            f.debug_struct("RetryAfterPolicy")
                .field("settings", &*self.shared)
                .field("attempt", &self.attempt)
                .field("started", &self.started)
                .finish()
        }
    }
}
