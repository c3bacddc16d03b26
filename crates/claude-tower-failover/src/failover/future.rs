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
        table: Arc<Table<S>>,
        // Kept for the next route; `None` once the last possible route has it.
        request: Option<Request<ReplayBody>>,
        current: usize,
        admission: Admission,
        probe: Option<ProbeGuard>,
        tried: u64,
        report: FailoverReport,
        best: Option<Best<B>>,
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

/// A failed outcome kept as a candidate for "the most informative".
enum Best<B> {
    Response(Response<B>),
    Error(ClaudeError, tower::BoxError),
}

impl<B> Best<B> {
    /// The rule for which failure to return when every route failed:
    /// a response (the route answered; it has a real status, body and
    /// request ids) beats an error; a classified error beats a bare
    /// transport error. Ties go to the route tried first, i.e. the
    /// higher-priority one.
    fn rank(&self) -> u8 {
        match self {
            Best::Response(_) => 2,
            Best::Error(e, _) if e.class() != ErrorClass::Transport => 1,
            Best::Error(..) => 0,
        }
    }
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
        let mut this = Self {
            state: State::Exhausted,
            report: FailoverReport::new(),
            table,
            request: Some(request),
            current: 0,
            admission: Admission::Closed,
            probe: None,
            tried: 0,
            best: None,
        };
        if let Some((k, admission)) = first {
            this.state = this.start(k, admission);
        }
        this
    }

    /// Marks route `k` tried and builds its call (readiness is driven inside
    /// the `Oneshot`, on the clone).
    fn start(&mut self, k: usize, admission: Admission) -> State<Oneshot<S, Request<ReplayBody>>> {
        start(
            &self.table,
            &mut self.request,
            &mut self.current,
            &mut self.admission,
            &mut self.probe,
            &mut self.tried,
            k,
            admission,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn start<S>(
    table: &Arc<Table<S>>,
    request: &mut Option<Request<ReplayBody>>,
    current: &mut usize,
    slot: &mut Admission,
    probe: &mut Option<ProbeGuard>,
    tried: &mut u64,
    k: usize,
    admission: Admission,
) -> State<Oneshot<S, Request<ReplayBody>>>
where
    S: Service<Request<ReplayBody>> + Clone,
{
    *tried |= 1 << k;
    *current = k;
    *slot = admission;
    *probe = (admission == Admission::Probe).then(|| ProbeGuard::new(table.breakers.clone(), k));
    // The last route that could be tried takes the request; earlier ones a clone.
    let req = if *tried == table.all() {
        request.take()
    } else {
        request.clone()
    };
    match req {
        Some(req) => State::Calling {
            call: Oneshot::new(table.routes[k].service.clone(), req),
        },
        None => State::Exhausted,
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
                StateProj::Exhausted => return Poll::Ready(finish(this.report, this.best.take())),
            };
            let k = *this.current;
            let route = &this.table.routes[k].id;
            let breaker = &this.table.breakers[k];
            let admission = *this.admission;
            let probe = this.probe.take();

            let failed = match outcome {
                Ok(response) => {
                    let attempts = response
                        .extensions()
                        .get::<Attempt>()
                        .map_or(1, Attempt::number);
                    this.report.record(route.clone(), attempts);
                    match response.extensions().get::<ClaudeError>() {
                        Some(err) if err.failover_worthy() => {
                            let wait = err
                                .retry_after()
                                .or_else(|| response.extensions().get::<RetryAfter>().copied())
                                .map(RetryAfter::duration);
                            tracing::debug!(%route, error = %err, "route failed; failing over");
                            breaker.on_failure(admission, wait, Instant::now());
                            Best::Response(response)
                        }
                        // A success, or a failure no other route would answer
                        // differently (400, 401, 409): return it at once. Either
                        // way the route is up, which is what the breaker tracks.
                        other => {
                            let succeeded = other.is_none();
                            breaker.on_success(admission);
                            if let Some(probe) = probe {
                                probe.disarm();
                            }
                            this.report.finish(Some(route.clone()), succeeded);
                            let mut response = response;
                            response
                                .extensions_mut()
                                .insert(std::mem::take(this.report));
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                Err(err) => {
                    let err: tower::BoxError = err.into();
                    let classified = classify_error(route, &err);
                    this.report.record(route.clone(), 1);
                    if !classified.failover_worthy() {
                        // e.g. Auth could not get this route's credential: the
                        // class table says fail fast, so a misconfiguration
                        // is seen rather than hidden behind another route.
                        breaker.on_success(admission);
                        if let Some(probe) = probe {
                            probe.disarm();
                        }
                        this.report.finish(Some(route.clone()), false);
                        return Poll::Ready(Err(reported(
                            classified,
                            std::mem::take(this.report),
                            err,
                        )));
                    }
                    tracing::debug!(%route, error = %classified, "route errored; failing over");
                    let wait = classified.retry_after().map(RetryAfter::duration);
                    breaker.on_failure(admission, wait, Instant::now());
                    Best::Error(classified, err)
                }
            };
            if let Some(probe) = probe {
                probe.disarm();
            }
            // NOTE: ties keep the earlier candidate: routes are tried in
            // priority order, so that is the primary's failure.
            let keep_old = this
                .best
                .as_ref()
                .is_some_and(|b| b.rank() >= failed.rank());
            if keep_old {
                drop(failed);
            } else {
                *this.best = Some(failed);
                // The answering route for the report is the candidate's.
                this.report.finish(Some(route.clone()), false);
            }

            let next = this.table.pick(*this.tried, &mut LazyNow::new());
            let state = match next {
                Some((k, admission)) => start(
                    this.table,
                    this.request,
                    this.current,
                    this.admission,
                    this.probe,
                    this.tried,
                    k,
                    admission,
                ),
                None => State::Exhausted,
            };
            this.state.set(state);
        }
    }
}

// NOTE: `ClaudeError` is large, but it is the contract's error type and this
// runs once per request, on the way out.
#[allow(clippy::result_large_err)]
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
                &self.table.routes.get(self.current).map(|r| &r.id),
            )
            .field("tried", &format_args!("{:#b}", self.tried))
            .field("report", &self.report)
            .finish()
    }
}
