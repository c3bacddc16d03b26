use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use claude_tower_core::{Attempt, ClaudeError, ErrorClass, ReplayBody, RetryAfter};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::util::Oneshot;
use tower_service::Service;

use super::report::{FailoverReport, Reported, classify_error};
use super::table::{LazyNow, Table};
use crate::breaker::{Admission, ProbeGuard};

pin_project! {
    /// Response future of [`Failover`](crate::Failover).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<ReplayBody>, Response = Response<B>>,
    {
        #[pin]
        state: State<Oneshot<S, Request<ReplayBody>>>,
        ctx: Ctx<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] call: F },
        // No route left to try: return the best outcome seen.
        Exhausted,
    }
}

/// Everything but the in-flight call.
struct Ctx<S, B> {
    table: Arc<Table<S>>,
    /// Kept for the next route; `None` once the last possible route has it.
    request: Option<Request<ReplayBody>>,
    current: usize,
    admission: Admission,
    probe: Option<ProbeGuard>,
    /// Bit `k` set: route `k` was tried (each route at most once).
    tried: u64,
    report: FailoverReport,
    /// Boxed: only a failed route fills it, and inline its response would
    /// make every request's future (moved by each layer around it) 264
    /// bytes larger.
    best: Option<Box<Best<B>>>,
}

/// A failed outcome kept as a candidate for "the most informative".
enum Best<B> {
    Response(Response<B>),
    Error(ClaudeError, tower::BoxError),
}

impl<B> Best<B> {
    /// The rule for which failure to return when every route failed:
    /// a response (the route answered; it has a real status, body and
    /// request ids) beats an error; a classified error beats a bare
    /// transport error, which beats a route turning the request away
    /// unsent. Ties go to the route tried first, i.e. the higher-priority
    /// one.
    fn rank(&self) -> u8 {
        match self {
            Best::Response(_) => 3,
            Best::Error(e, _) if turned_away(e) => 0,
            Best::Error(e, _) if e.class() != ErrorClass::Transport => 2,
            Best::Error(..) => 1,
        }
    }
}

/// What one route's outcome says about the route, for its breaker.
enum Evidence {
    /// It answered (a success, or a failure of the request, not the route).
    Up,
    /// It failed, maybe asking for a wait.
    Down(Option<std::time::Duration>),
    /// Nothing: no response came, and the failure was not the route's.
    None,
}

/// Whether a failover-worthy failure belongs to this request rather than to
/// the route: a 404 for the model or deployment the request named. Another
/// route may have that model, so the request moves on; but the route
/// answered, and every other model on it still works, so its breaker is not
/// charged. (A 402, a 5xx or a 429 is the route's own state and is.)
fn caused_by_the_request(err: &ClaudeError) -> bool {
    err.class() == ErrorClass::RouteUnavailable && err.status() == Some(http::StatusCode::NOT_FOUND)
}

/// Whether a route turned the request away before sending it: a
/// RouteUnavailable error without a status, made below Failover (a
/// passthrough route for the other face's callers, a route that cannot
/// address the request). It is no attempt and no evidence about the route.
fn turned_away(err: &ClaudeError) -> bool {
    err.class() == ErrorClass::RouteUnavailable && err.status().is_none()
}

/// What one route's outcome means for the request.
enum Verdict<B> {
    /// Return this now (a success, or a failure no other route would change).
    Return(Result<Response<B>, ClaudeError>),
    /// Failover-worthy: keep it as a candidate and try the next route.
    Next(Best<B>),
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody>, Response = Response<B>> + Clone,
{
    pub(crate) fn new(table: Arc<Table<S>>, request: Request<ReplayBody>) -> Self {
        let mut now = LazyNow::new();
        let first = table.pick(0, &mut now).or_else(|| {
            // Every breaker is open: rather than fail with nothing tried,
            // try the route that will reopen soonest.
            table.soonest(0, &mut now).map(|k| (k, Admission::Forced))
        });
        let mut ctx = Ctx {
            table,
            request: Some(request),
            current: 0,
            admission: Admission::Closed,
            probe: None,
            tried: 0,
            report: FailoverReport::new(),
            best: None,
        };
        let state = match first {
            Some((k, admission)) => ctx.start(k, admission),
            None => State::Exhausted,
        };
        Self { state, ctx }
    }
}

impl<S, B> Ctx<S, B>
where
    S: Service<Request<ReplayBody>, Response = Response<B>> + Clone,
{
    /// Marks route `k` tried and builds its call; readiness is driven inside
    /// the `Oneshot`, on the clone (see the module docs).
    fn start(&mut self, k: usize, admission: Admission) -> State<Oneshot<S, Request<ReplayBody>>> {
        self.tried |= 1 << k;
        self.current = k;
        self.admission = admission;
        self.probe = (admission == Admission::Probe)
            .then(|| ProbeGuard::new(self.table.breakers.clone(), k));
        // The last route that could be tried takes the request; earlier ones a clone.
        let request = if self.tried == self.table.all() {
            self.request.take()
        } else {
            self.request.clone()
        };
        match request {
            Some(request) => State::Calling {
                call: Oneshot::new(self.table.routes[k].service.clone(), request),
            },
            None => State::Exhausted,
        }
    }

    /// Records the current route's outcome in the report and its breaker.
    fn judge(&mut self, outcome: Result<Response<B>, S::Error>) -> Verdict<B>
    where
        S::Error: Into<tower::BoxError>,
    {
        let k = self.current;
        let route = &self.table.routes[k].id;
        let (verdict, evidence) = match outcome {
            Ok(mut response) => {
                let attempts = response
                    .extensions()
                    .get::<Attempt>()
                    .map_or(1, Attempt::number);
                self.report.record(route.clone(), attempts);
                match response.extensions().get::<ClaudeError>() {
                    Some(err) if err.failover_worthy() => {
                        tracing::debug!(%route, error = %err, "route failed; failing over");
                        let evidence = if caused_by_the_request(err) {
                            // The route answered: it is up.
                            Evidence::Up
                        } else {
                            let wait = err
                                .retry_after()
                                .or_else(|| response.extensions().get::<RetryAfter>().copied())
                                .map(RetryAfter::duration);
                            Evidence::Down(wait)
                        };
                        (Verdict::Next(Best::Response(response)), evidence)
                    }
                    // A success, or a failure no other route would answer
                    // differently (400, 401, 409). Either way the route is
                    // up, which is all the breaker tracks.
                    other => {
                        let succeeded = other.is_none();
                        self.report.answer_with_last(succeeded);
                        response
                            .extensions_mut()
                            .insert(std::mem::take(&mut self.report));
                        (Verdict::Return(Ok(response)), Evidence::Up)
                    }
                }
            }
            Err(err) => {
                let err: tower::BoxError = err.into();
                let classified = classify_error(route, &err);
                if turned_away(&classified) {
                    // Not this route's request: skipped as an open breaker
                    // would skip it (nothing recorded), and kept only in case
                    // nothing else happens.
                    tracing::debug!(%route, error = %classified, "route turned the request away");
                    self.note(Evidence::None);
                    return Verdict::Next(Best::Error(classified, err));
                }
                // Retry puts its count on the error it gives up with.
                let attempts = classified.attempt().map_or(1, Attempt::number);
                self.report.record(route.clone(), attempts);
                if !classified.failover_worthy() {
                    // e.g. a request Auth could not move onto the route, or a
                    // credential it could not get: fail fast so that a
                    // misconfiguration is seen rather than hidden behind
                    // another route. No response came, so nothing is known
                    // about the route either way.
                    self.report.answer_with_error();
                    let report = std::mem::take(&mut self.report);
                    let verdict = Verdict::Return(Err(reported(classified, report, err)));
                    (verdict, Evidence::None)
                } else {
                    tracing::debug!(%route, error = %classified, "route errored; failing over");
                    let wait = classified.retry_after().map(RetryAfter::duration);
                    (
                        Verdict::Next(Best::Error(classified, err)),
                        Evidence::Down(wait),
                    )
                }
            }
        };
        self.note(evidence);
        verdict
    }

    /// Tells the current route's breaker what its outcome says.
    fn note(&mut self, evidence: Evidence) {
        let breaker = &self.table.breakers[self.current];
        let admission = self.admission;
        let wait = match evidence {
            // Dropping an armed probe guard gives the slot back: the next
            // request probes instead.
            Evidence::None => {
                self.probe = None;
                return;
            }
            Evidence::Up => None,
            Evidence::Down(wait) => Some(wait),
        };
        // The outcome is recorded: the probe slot is not given back.
        if let Some(probe) = self.probe.take() {
            probe.disarm();
        }
        match wait {
            None => breaker.on_success(admission),
            Some(wait) => breaker.on_failure(admission, wait, Instant::now()),
        }
    }

    /// Keeps `failed` if it is more informative than the best so far.
    fn keep(&mut self, failed: Best<B>) {
        // NOTE: ties keep the earlier candidate: routes are tried in
        // priority order, so that is the primary's failure.
        if self
            .best
            .as_ref()
            .is_some_and(|b| b.rank() >= failed.rank())
        {
            return;
        }
        match failed {
            Best::Response(_) => self.report.answer_with_last(false),
            Best::Error(..) => self.report.answer_with_error(),
        }
        self.best = Some(Box::new(failed));
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody>, Response = Response<B>> + Clone,
    S::Error: Into<tower::BoxError>,
{
    type Output = Result<Response<B>, ClaudeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let outcome = match this.state.as_mut().project() {
                StateProj::Calling { call } => ready!(call.poll(cx)),
                StateProj::Exhausted => {
                    let ctx = &mut *this.ctx;
                    return Poll::Ready(finish(&mut ctx.report, ctx.best.take().map(|b| *b)));
                }
            };
            match this.ctx.judge(outcome) {
                Verdict::Return(out) => return Poll::Ready(out),
                Verdict::Next(failed) => this.ctx.keep(failed),
            }
            // Breakers may have changed while this route was busy: pick afresh.
            let next = this.ctx.table.pick(this.ctx.tried, &mut LazyNow::new());
            let state = match next {
                Some((k, admission)) => this.ctx.start(k, admission),
                None => State::Exhausted,
            };
            this.state.set(state);
        }
    }
}

fn finish<B>(
    report: &mut FailoverReport,
    best: Option<Best<B>>,
) -> Result<Response<B>, ClaudeError> {
    let report = std::mem::take(report);
    match best {
        Some(Best::Response(mut response)) => {
            response.extensions_mut().insert(report);
            Ok(response)
        }
        Some(Best::Error(classified, err)) => Err(reported(classified, report, err)),
        None => Err(ClaudeError::new(
            ErrorClass::RouteUnavailable,
            "no failover route is configured",
        )
        .with_source(Reported {
            report,
            cause: None,
        })),
    }
}

/// The route's own `ClaudeError`, with the report and the original error
/// (its whole chain) as its source.
fn reported(classified: ClaudeError, report: FailoverReport, err: tower::BoxError) -> ClaudeError {
    classified.with_source(Reported {
        report,
        cause: Some(err),
    })
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody>, Response = Response<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field(
                "current",
                &self.ctx.table.routes.get(self.ctx.current).map(|r| &r.id),
            )
            .field("tried", &format_args!("{:#b}", self.ctx.tried))
            .field("report", &self.ctx.report)
            .finish()
    }
}
