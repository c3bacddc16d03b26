//! How a tower stack built once reaches a `reqwest_middleware::Next` that
//! only lives for one call.
//!
//! The stack ([`ClaudeStack`](claude_tower::stack::ClaudeStack)'s, routes and
//! Failover) must be built once: the circuit breakers and retry budgets it
//! holds are only worth anything if they outlive a request. But the rest of
//! the middleware chain, `Next<'a>`, is borrowed for one `handle` call. So the
//! transport at the bottom of each route, [`NextTransport`], does not send
//! anything itself: it hands each attempt, as a [`Job`], to the `handle` call
//! that owns the `Next`, through a channel carried in the request's
//! extensions ([`Dispatch`]), and waits for the answer on a oneshot. The
//! `handle` call runs the jobs through `Next` alongside the stack's future
//! (see [`drive`]).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use claude_tower_core::{ClaudeError, ErrorClass, ReplayBody};
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{Extensions, Request, Response};
use pin_project_lite::pin_project;
use reqwest_middleware::Next;
use tokio::sync::{mpsc, oneshot};
use tower_service::Service;

use crate::convert::{from_reqwest, into_reqwest, target_url};

type Reply = Result<Response<reqwest::Body>, ClaudeError>;

/// One attempt on one route, to be sent through `Next`.
pub(crate) struct Job {
    request: reqwest::Request,
    extensions: Extensions,
    reply: oneshot::Sender<Reply>,
}

/// The way from a route's transport back to the `handle` call that owns
/// `Next`; a request extension.
#[derive(Clone)]
pub(crate) struct Dispatch {
    jobs: mpsc::UnboundedSender<Job>,
    // The caller's `http::Extensions`; each attempt gets its own copy, so
    // the middlewares after this one see what they would have seen without it.
    extensions: Arc<Extensions>,
}

impl Dispatch {
    pub(crate) fn new(extensions: Extensions) -> (Self, mpsc::UnboundedReceiver<Job>) {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let dispatch = Self {
            jobs,
            extensions: Arc::new(extensions),
        };
        (dispatch, receiver)
    }
}

/// The `http::Extensions` the middlewares after this one left on the
/// attempt that answered; a response extension, merged back into the
/// caller's extensions.
#[derive(Clone)]
pub(crate) struct AttemptExtensions(pub(crate) Extensions);

/// Marks a [`ClaudeError`] made from an attempt's error, so that the
/// original error can be handed back to the caller untouched.
#[derive(Debug)]
pub(crate) struct Attempted {
    pub(crate) id: usize,
    message: String,
}

impl fmt::Display for Attempted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Attempted {}

impl Attempted {
    /// The first `Attempted` in `err`'s source chain.
    pub(crate) fn find(err: &(dyn StdError + 'static)) -> Option<usize> {
        let mut next = Some(err);
        while let Some(err) = next {
            if let Some(attempted) = err.downcast_ref::<Attempted>() {
                return Some(attempted.id);
            }
            next = err.source();
        }
        None
    }
}

// === impl NextTransport ===

/// The transport at the bottom of every route inside
/// [`ClaudeMiddleware`](crate::ClaudeMiddleware): sends the request (already
/// on the route's endpoint, with its credential: Auth did that) through the
/// rest of the middleware chain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NextTransport;

impl Service<Request<ReplayBody>> for NextTransport {
    type Response = Response<reqwest::Body>;
    type Error = ClaudeError;
    type Future = DispatchFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<ReplayBody>) -> Self::Future {
        let Some(dispatch) = request.extensions_mut().remove::<Dispatch>() else {
            return DispatchFuture::failed(ClaudeError::new(
                ErrorClass::Transport,
                "no middleware chain to send the request through",
            ));
        };
        let request = target_url(request.uri(), None).and_then(|url| into_reqwest(request, &url));
        let request = match request {
            Ok(request) => request,
            Err(err) => return DispatchFuture::failed(err),
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            extensions: (*dispatch.extensions).clone(),
            reply,
        };
        if dispatch.jobs.send(job).is_err() {
            return DispatchFuture::failed(gone());
        }
        DispatchFuture {
            state: State::Waiting { answer },
        }
    }
}

fn gone() -> ClaudeError {
    ClaudeError::new(
        ErrorClass::Transport,
        "the middleware call ended before the request was sent",
    )
}

pin_project! {
    /// Waits for the `handle` call to send one attempt through `Next`.
    pub(crate) struct DispatchFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Waiting { #[pin] answer: oneshot::Receiver<Reply> },
        Failed { err: Option<ClaudeError> },
    }
}

impl DispatchFuture {
    fn failed(err: ClaudeError) -> Self {
        Self {
            state: State::Failed { err: Some(err) },
        }
    }
}

impl Future for DispatchFuture {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        match self.project().state.project() {
            StateProj::Waiting { answer } => answer
                .poll(cx)
                .map(|reply| reply.unwrap_or_else(|_| Err(gone()))),
            StateProj::Failed { err } => Poll::Ready(Err(err.take().unwrap_or_else(gone))),
        }
    }
}

// === impl drive ===

/// Drives `call` (the stack's future) to completion, sending the jobs it
/// makes meanwhile through `next`; returns its output and the original
/// errors of the attempts that failed.
///
/// The jobs' futures live in a `FuturesUnordered` local to this function, so
/// their type is inferred and they are not boxed.
pub(crate) async fn drive<F: Future>(
    next: Next<'_>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    call: F,
) -> (F::Output, Failures) {
    let mut call = std::pin::pin!(call);
    let mut in_flight = FuturesUnordered::new();
    let mut failures = Failures(Vec::new());
    let output = std::future::poll_fn(|cx| {
        // NOTE: a job sent while `call` is polled below wakes this task
        // through the receiver, so it is picked up on the next poll.
        while let Poll::Ready(Some(job)) = jobs.poll_recv(cx) {
            let id = failures.0.len();
            failures.0.push(None);
            in_flight.push(run(next.clone(), job, id));
        }
        while let Poll::Ready(Some(finished)) = in_flight.poll_next_unpin(cx) {
            if let Some((id, err)) = finished
                && let Some(slot) = failures.0.get_mut(id)
            {
                *slot = Some(err);
            }
        }
        call.as_mut().poll(cx)
    })
    .await;
    (output, failures)
}

/// The original errors of the attempts of one `handle` call, by job id.
#[derive(Debug)]
pub(crate) struct Failures(Vec<Option<reqwest_middleware::Error>>);

impl Failures {
    /// The original error of the attempt `err` was made from, if any.
    pub(crate) fn take_original(
        &mut self,
        err: &(dyn StdError + 'static),
    ) -> Option<reqwest_middleware::Error> {
        let id = Attempted::find(err)?;
        self.0.get_mut(id)?.take()
    }
}

type Finished = Option<(usize, reqwest_middleware::Error)>;

async fn run(next: Next<'_>, job: Job, id: usize) -> Finished {
    let Job {
        request,
        mut extensions,
        reply,
    } = job;
    if reply.is_closed() {
        return None;
    }
    match next.run(request, &mut extensions).await {
        Ok(response) => {
            let mut response = from_reqwest(response);
            response
                .extensions_mut()
                .insert(AttemptExtensions(extensions));
            let _ = reply.send(Ok(response));
            None
        }
        Err(err) => {
            let _ = reply.send(Err(classify(&err, id)));
            Some((id, err))
        }
    }
}

/// The [`ClaudeError`] for an attempt's error: a `ClaudeError` already in
/// its chain, else Timeout or Transport from the `reqwest::Error` in it.
fn classify(err: &reqwest_middleware::Error, id: usize) -> ClaudeError {
    let chain: &(dyn StdError + 'static) = match err {
        reqwest_middleware::Error::Reqwest(e) => e,
        reqwest_middleware::Error::Middleware(e) => e.as_ref(),
    };
    let mut next = Some(chain);
    let mut reqwest_err = None;
    while let Some(e) = next {
        if let Some(claude) = e.downcast_ref::<ClaudeError>() {
            return claude.clone();
        }
        if reqwest_err.is_none() {
            reqwest_err = e.downcast_ref::<reqwest::Error>();
        }
        next = e.source();
    }
    let (class, message) = match reqwest_err {
        Some(e) if e.is_timeout() => (ErrorClass::Timeout, "request timed out"),
        Some(e) if e.is_connect() => (ErrorClass::Transport, "connect failed"),
        Some(e) if e.is_builder() => (
            ErrorClass::RouteUnavailable,
            "reqwest could not build the request",
        ),
        _ => (ErrorClass::Transport, "transport error"),
    };
    ClaudeError::new(class, message).with_source(Attempted {
        id,
        message: err.to_string(),
    })
}
