//! The built stack: [`ClaudeService`], [`StackService`] and their body and
//! future.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::replay::{self, Replay};
use claude_tower_core::{
    ClaudeError, ErrorClass, ReplayBody, ResponseBody, RouteId, error_response,
};
use claude_tower_failover::{Breakers, ErrorEnvelope, Failover, FailoverReport};
use claude_tower_toolpair::ToolPairing;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::{Identity, Layer};
use tower_service::Service;

use super::route::{AttemptBody, RouteService};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `x-claude-tower-route`: the route that answered (absent when none did).
pub const ROUTE_HEADER: HeaderName = HeaderName::from_static("x-claude-tower-route");

/// `x-claude-tower-attempts`: attempts per route, `anthropic=2, foundry=1`.
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-claude-tower-attempts");

/// Everything below the stack options: Replay's inner service.
pub(crate) type Routes<T> = ToolPairing<ErrorEnvelope<Failover<RouteService<T>>>>;

// === impl StackService ===

/// The stack [`ClaudeStack::build`](super::ClaudeStack::build) assembles,
/// before the layers added with [`ClaudeStack::layer`](super::ClaudeStack::layer):
/// the stack options (deadline, report headers), then Replay -> ToolPairing
/// -> ErrorEnvelope -> Failover -> the routes.
pub struct StackService<T> {
    inner: Replay<Routes<T>>,
    deadline: Option<Duration>,
    /// With report headers on, their values for each route's usual answer.
    report_headers: Option<Arc<ReportHeaders>>,
}

impl<T> StackService<T> {
    pub(crate) fn new(
        inner: Replay<Routes<T>>,
        deadline: Option<Duration>,
        report_headers: Option<ReportHeaders>,
    ) -> Self {
        Self {
            inner,
            deadline,
            report_headers: report_headers.map(Arc::new),
        }
    }
}

impl<T: Clone> Clone for StackService<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            deadline: self.deadline,
            report_headers: self.report_headers.clone(),
        }
    }
}

impl<T> fmt::Debug for StackService<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackService")
            .field("deadline", &self.deadline)
            .field("report_headers", &self.report_headers.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, TB, B> Service<Request<B>> for StackService<T>
where
    T: Service<Request<ReplayBody>, Response = Response<TB>> + Clone,
    T::Error: Into<BoxError>,
    TB: Body<Data = Bytes> + Unpin,
    TB::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = Response<ClaudeBody<TB>>;
    type Error = Infallible;
    type Future = ResponseFuture<B, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture {
            inner: Box::pin(self.inner.call(req)),
            deadline: self.deadline.map(tokio::time::sleep),
            report_headers: self.report_headers.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`StackService`] (and so of a [`ClaudeService`]
    /// without layers of its own).
    ///
    /// The stack's own future (the request's replay, tool pairing, failover
    /// and retry state) is boxed, once per request, here: every layer and
    /// server wrapping outside the stack moves the future it wraps, and the
    /// gateway has seven such moves (usage, quota, identity, dispatch, the
    /// server's service call and tracing). One allocation costs less than
    /// those copies: 1.4k instructions per small request less through the
    /// gateway when the state was 2 KB (callgrind, BENCHMARKS.md "\[usage\]
    /// pass 6"). The states only failures, held streams and Redis checks
    /// reach are boxed where they start, which keeps this state at 920
    /// bytes, inside what glibc's per-thread cache serves (1,032 bytes;
    /// "\[perf\] pass 7").
    pub struct ResponseFuture<B, T>
    where
        Routes<T>: Service<Request<ReplayBody>>,
    {
        inner: Pin<Box<replay::ResponseFuture<B, Routes<T>>>>,
        #[pin]
        deadline: Option<Sleep>,
        report_headers: Option<Arc<ReportHeaders>>,
    }
}

impl<B, T, TB> Future for ResponseFuture<B, T>
where
    T: Service<Request<ReplayBody>, Response = Response<TB>> + Clone,
    T::Error: Into<BoxError>,
    TB: Body<Data = Bytes> + Unpin,
    TB::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ClaudeBody<TB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.as_mut().poll(cx) {
            let response = match result {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let mut response = response.map(|inner| ClaudeBody { inner });
            if let Some(values) = this.report_headers {
                values.write(&mut response);
            }
            return Poll::Ready(Ok(response));
        }
        if let Some(deadline) = this.deadline.as_pin_mut() {
            ready!(deadline.poll(cx));
            return Poll::Ready(Ok(deadline_passed()));
        }
        Poll::Pending
    }
}

impl<B, T> fmt::Debug for ResponseFuture<B, T>
where
    Routes<T>: Service<Request<ReplayBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .field("deadline", &self.deadline.is_some())
            .finish_non_exhaustive()
    }
}

/// The 504 of [`ClaudeStack::with_deadline`](super::ClaudeStack::with_deadline).
fn deadline_passed<B: Body<Data = Bytes>>() -> Response<ClaudeBody<B>> {
    let err = ClaudeError::new(
        ErrorClass::Timeout,
        "the deadline passed before any route answered",
    )
    .with_status(StatusCode::GATEWAY_TIMEOUT);
    let mut response = error_response::<Bytes>(&err).map(ClaudeBody::local);
    response.extensions_mut().insert(err);
    response
}

/// The report headers' values for each route's usual answer (that route,
/// one attempt), made once when the stack is built: writing them is then a
/// reference count each, not a formatted string and two header values.
pub(crate) struct ReportHeaders {
    /// Per route: its name, and `name=1`.
    routes: Box<[(RouteId, HeaderValue, HeaderValue)]>,
}

impl ReportHeaders {
    pub(crate) fn new<'a>(routes: impl IntoIterator<Item = &'a RouteId>) -> Self {
        let routes = routes
            .into_iter()
            .filter_map(|id| {
                let name = HeaderValue::from_str(id.as_str()).ok()?;
                let once = HeaderValue::from_str(&format!("{id}=1")).ok()?;
                Some((id.clone(), name, once))
            })
            .collect();
        Self { routes }
    }

    fn known(&self, route: &RouteId) -> Option<&(RouteId, HeaderValue, HeaderValue)> {
        self.routes.iter().find(|(id, _, _)| id == route)
    }

    /// Names the route that answered and the attempts per route, from the
    /// [`FailoverReport`]; the route header is absent when no route answered.
    fn write<B>(&self, response: &mut Response<B>) {
        let Some(report) = response.extensions().get::<FailoverReport>() else {
            return;
        };
        let answered = report.answered_by();
        let known = answered.and_then(|route| self.known(route));
        let route = match known {
            Some((_, name, _)) => Some(name.clone()),
            None => answered.and_then(|r| HeaderValue::from_str(r.as_str()).ok()),
        };
        let attempts = match (known, report.attempts()) {
            (Some((id, _, once)), [(only, 1)]) if only == id => Some(once.clone()),
            _ => HeaderValue::from_str(&report.to_string()).ok(),
        };
        let headers = response.headers_mut();
        match route {
            Some(route) => headers.insert(ROUTE_HEADER, route),
            None => headers.remove(ROUTE_HEADER),
        };
        if let Some(attempts) = attempts {
            headers.insert(ATTEMPTS_HEADER, attempts);
        }
    }
}

// === impl ClaudeBody ===

type Nested<B> = ResponseBody<ResponseBody<ResponseBody<AttemptBody<B>>>>;

pin_project! {
    /// The response body of a [`ClaudeService`]: the upstream body, streamed
    /// untouched on success, or a locally rendered or normalized error body.
    ///
    /// `Default` is an empty local body, so tower-http's `TimeoutLayer` can
    /// wrap the service.
    pub struct ClaudeBody<B>
    where
        B: Body<Data = Bytes>,
    {
        #[pin]
        inner: Nested<B>,
    }
}

impl<B: Body<Data = Bytes>> ClaudeBody<B> {
    /// A body of `bytes` made locally.
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        Self {
            inner: ResponseBody::local(bytes),
        }
    }

    /// Whether the stack answered locally (413, a pairing 400, a rendered
    /// transport failure, the deadline) rather than with a route's body.
    pub fn is_local(&self) -> bool {
        let Some(pairing) = self.inner.as_upstream() else {
            return true;
        };
        let Some(envelope) = pairing.as_upstream() else {
            return true;
        };
        envelope.is_local()
    }
}

impl<B: Body<Data = Bytes>> Default for ClaudeBody<B> {
    fn default() -> Self {
        Self {
            inner: ResponseBody::default(),
        }
    }
}

impl<B> Body for ClaudeBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body<Data = Bytes>> fmt::Debug for ClaudeBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaudeBody")
            .field("local", &self.is_local())
            .finish()
    }
}

// === impl ClaudeService ===

/// The composed stack, built by [`ClaudeStack::build`](super::ClaudeStack::build):
/// the layers added with [`ClaudeStack::layer`](super::ClaudeStack::layer)
/// (`L`, none by default) around a [`StackService`] over the transport `T`.
///
/// Without layers of the user's it is infallible: every failure is an
/// Anthropic-shaped error response. Cloning is cheap and clones share
/// breakers, token caches and the retry budget.
pub struct ClaudeService<T, L = Identity>
where
    L: Layer<StackService<T>>,
{
    inner: L::Service,
    breakers: Breakers,
}

impl<T, L> ClaudeService<T, L>
where
    L: Layer<StackService<T>>,
{
    pub(crate) fn new(inner: L::Service, breakers: Breakers) -> Self {
        Self { inner, breakers }
    }

    /// Every route's circuit breaker, for health endpoints.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }
}

impl<T, L> Clone for ClaudeService<T, L>
where
    L: Layer<StackService<T>>,
    L::Service: Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breakers: self.breakers.clone(),
        }
    }
}

impl<T, L> fmt::Debug for ClaudeService<T, L>
where
    L: Layer<StackService<T>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaudeService")
            .field("routes", &self.breakers.snapshot())
            .finish_non_exhaustive()
    }
}

impl<T, L, B> Service<Request<B>> for ClaudeService<T, L>
where
    L: Layer<StackService<T>>,
    L::Service: Service<Request<B>>,
{
    type Response = <L::Service as Service<Request<B>>>::Response;
    type Error = <L::Service as Service<Request<B>>>::Error;
    type Future = <L::Service as Service<Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}
