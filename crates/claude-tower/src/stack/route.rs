//! One route of the stack: [`Route`] (its settings) and [`RouteAttempt`]
//! (what one attempt on it goes through).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use claude_tower_auth::{Auth, AuthLayer, Credential, Endpoint};
use claude_tower_core::{ClaudeError, Face, ReplayBody, RouteId};
use claude_tower_normalize::hold::{HoldBody, StreamHold, StreamHoldLayer};
use claude_tower_normalize::{Normalize, NormalizeBody, NormalizeLayer, transport_error};
use claude_tower_retry::{Retry, RetryAfterPolicy};
use claude_tower_toolpair::{ModelMap, ModelMapLayer, ModelMapping};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either};
use pin_project_lite::pin_project;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body a [`Route::layer`] sees and returns: boxed, because a
/// route's layers are chosen at run time (see [`Route::layer`]).
pub type RouteBody = BoxBody<Bytes, BoxError>;

/// The service a [`Route::layer`] wraps: the rest of the route below it
/// (StreamHold -> Normalize -> ModelMap -> Auth -> transport), boxed.
pub type RouteInner = BoxCloneSyncService<Request<ReplayBody>, Response<RouteBody>, ClaudeError>;

type LayerFn = Arc<dyn Fn(RouteInner) -> RouteInner + Send + Sync>;

// === impl Route ===

/// One upstream route: where it is, how to authenticate, how its models are
/// named, how to retry on it, and any layers of the user's for each attempt.
#[derive(Clone)]
pub struct Route {
    pub(crate) id: RouteId,
    pub(crate) auth: AuthLayer,
    pub(crate) model_map: ModelMapping,
    pub(crate) retry: Option<RetryAfterPolicy>,
    pub(crate) priority: Option<u32>,
    pub(crate) weight: u32,
    stream_hold: bool,
    stream_hold_limits: Option<(usize, Duration)>,
    // First added = outermost.
    layers: Vec<LayerFn>,
}

impl Route {
    /// A route named `id` at `endpoint`, authenticating with `credential`.
    /// Its [`Face`] follows from the endpoint.
    pub fn new(id: impl Into<RouteId>, endpoint: Endpoint, credential: Credential) -> Self {
        Self::from_auth(id, AuthLayer::new(endpoint, credential))
    }

    /// A route from a ready [`AuthLayer`], e.g. [`AuthLayer::from_env`].
    pub fn from_auth(id: impl Into<RouteId>, auth: AuthLayer) -> Self {
        let id = id.into();
        Self {
            auth: auth.with_route(id.clone()),
            id,
            model_map: ModelMapping::new(),
            retry: None,
            priority: None,
            weight: 1,
            stream_hold: true,
            stream_hold_limits: None,
            layers: Vec::new(),
        }
    }

    /// Maps the request's `model` to this route's deployment or model id.
    pub fn with_model_map(mut self, mapping: ModelMapping) -> Self {
        self.model_map = mapping;
        self
    }

    /// Retry settings for this route (default: [`RetryAfterPolicy::new`]).
    pub fn with_retry(mut self, policy: RetryAfterPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// An explicit priority (lower is tried first) and weight among routes
    /// of equal priority. Without it, routes are tried in the order added.
    pub fn with_priority(mut self, priority: u32, weight: u32) -> Self {
        self.priority = Some(priority);
        self.weight = weight;
        self
    }

    /// Whether this route holds a stream's first events back until its first
    /// content, so that an `event: error` before any content is retried and
    /// failed over like a 529 (default on; see [`claude_tower_normalize::hold`]).
    pub fn with_stream_hold(mut self, hold: bool) -> Self {
        self.stream_hold = hold;
        self
    }

    /// How much of a stream's start this route holds at most, in bytes and in
    /// time, before releasing it without content (default 64 KiB and 10 s:
    /// [`DEFAULT_HOLD_BYTE_LIMIT`], [`DEFAULT_HOLD_TIME_LIMIT`]).
    ///
    /// [`DEFAULT_HOLD_BYTE_LIMIT`]: claude_tower_normalize::hold::DEFAULT_HOLD_BYTE_LIMIT
    /// [`DEFAULT_HOLD_TIME_LIMIT`]: claude_tower_normalize::hold::DEFAULT_HOLD_TIME_LIMIT
    pub fn with_stream_hold_limits(mut self, bytes: usize, time: Duration) -> Self {
        self.stream_hold_limits = Some((bytes, time));
        self
    }

    /// Adds a layer of the user's inside this route, run once per attempt:
    /// below Retry (a retried attempt goes through it again) and above
    /// Normalize (so it sees classified responses, and an error it makes is
    /// classified like a transport error: tower's `Elapsed` is a
    /// [`Timeout`](claude_tower_core::ErrorClass::Timeout)). A per-attempt
    /// timeout, a concurrency limit or per-route metrics go here. The first
    /// layer added is the outermost, as with `ServiceBuilder`.
    ///
    /// The layer wraps a [`RouteInner`] and must answer with a
    /// [`RouteBody`]. Because the layers of a route are only known at run
    /// time, a route with at least one such layer boxes the service below
    /// them and its response body (one allocation each per attempt); a route
    /// without any is not boxed at all.
    ///
    /// ```
    /// use std::time::Duration;
    /// use claude_tower::prelude::*;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let route = Route::new(
    ///     "anthropic",
    ///     Endpoint::anthropic(),
    ///     Credential::anthropic_api_key(Secret::new("sk-ant-..."))?,
    /// )
    /// .layer(tower::limit::ConcurrencyLimitLayer::new(64))
    /// .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(60)));
    /// # drop(route);
    /// # Ok(()) }
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<RouteInner> + Send + Sync + 'static,
        L::Service: Service<Request<ReplayBody>, Response = Response<RouteBody>>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request<ReplayBody>>>::Error: Into<BoxError>,
        <L::Service as Service<Request<ReplayBody>>>::Future: Send + 'static,
    {
        let route = self.id.clone();
        self.layers.push(Arc::new(move |inner: RouteInner| {
            let route = route.clone();
            let service = layer.layer(inner).map_err(move |err| {
                let err = transport_error(err.into());
                if err.route().is_some() {
                    err
                } else {
                    err.with_route(route.clone())
                }
            });
            BoxCloneSyncService::new(service)
        }));
        self
    }

    /// The route's name.
    pub fn id(&self) -> &RouteId {
        &self.id
    }

    /// The error surface the route speaks.
    pub fn face(&self) -> Face {
        self.auth.endpoint().face()
    }

    /// The route's endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        self.auth.endpoint()
    }

    /// The route's credential (its `Debug` is redacted).
    pub fn credential(&self) -> &Credential {
        self.auth.credential()
    }

    /// The route's model mapping.
    pub fn model_map(&self) -> &ModelMapping {
        &self.model_map
    }

    /// How many layers of the user's the route has.
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// One attempt's stack over `transport`: [layers] -> StreamHold ->
    /// Normalize -> ModelMap -> Auth -> transport.
    pub(crate) fn attempt<T, TB>(&self, normalize: NormalizeLayer, transport: T) -> RouteAttempt<T>
    where
        T: Service<Request<ReplayBody>, Response = Response<TB>> + Clone + Send + Sync + 'static,
        T::Error: Into<BoxError>,
        T::Future: Send + 'static,
        TB: Body<Data = Bytes> + Unpin + Send + Sync + 'static,
        TB::Error: Into<BoxError> + Send + Sync + 'static,
    {
        let mut hold =
            StreamHoldLayer::new(self.id.clone(), self.face()).with_enabled(self.stream_hold);
        if let Some((bytes, time)) = self.stream_hold_limits {
            hold = hold.with_byte_limit(bytes).with_time_limit(time);
        }
        let plain =
            hold.layer(normalize.layer(
                ModelMapLayer::new(self.model_map.clone()).layer(self.auth.layer(transport)),
            ));
        if self.layers.is_empty() {
            return RouteAttempt {
                kind: AttemptKind::Plain(plain),
            };
        }
        let boxed = plain.map_response(|res: Response<HoldBody<NormalizeBody<TB>>>| {
            res.map(|body| body.map_err(Into::into).boxed())
        });
        let mut service = RouteInner::new(boxed);
        // The last added is the innermost: wrap from the inside out.
        for layer in self.layers.iter().rev() {
            service = layer(service);
        }
        RouteAttempt {
            kind: AttemptKind::Layered(service),
        }
    }

    /// The retry policy of the route.
    pub(crate) fn policy(&self) -> RetryAfterPolicy {
        self.retry
            .clone()
            .unwrap_or_else(|| RetryAfterPolicy::new(self.id.clone()))
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("id", &self.id)
            .field("auth", &self.auth)
            .field("model_map", &self.model_map)
            .field("retry", &self.retry)
            .field("priority", &self.priority)
            .field("weight", &self.weight)
            .field("layers", &self.layers.len())
            .finish()
    }
}

// === impl RouteAttempt ===

/// One route's whole stack: Retry over one attempt.
pub type RouteService<T> = Retry<RouteAttempt<T>>;

/// What one attempt on a route goes through: the route's own layers, if
/// any, then StreamHold -> Normalize -> ModelMap -> Auth -> the transport `T`.
pub struct RouteAttempt<T> {
    kind: AttemptKind<T>,
}

enum AttemptKind<T> {
    Plain(StreamHold<Normalize<ModelMap<Auth<T>>>>),
    Layered(RouteInner),
}

impl<T: Clone> Clone for RouteAttempt<T> {
    fn clone(&self) -> Self {
        let kind = match &self.kind {
            AttemptKind::Plain(svc) => AttemptKind::Plain(svc.clone()),
            AttemptKind::Layered(svc) => AttemptKind::Layered(svc.clone()),
        };
        Self { kind }
    }
}

impl<T> fmt::Debug for RouteAttempt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            AttemptKind::Plain(_) => "plain",
            AttemptKind::Layered(_) => "layered",
        };
        f.debug_struct("RouteAttempt").field("kind", &kind).finish()
    }
}

impl<T, TB> Service<Request<ReplayBody>> for RouteAttempt<T>
where
    T: Service<Request<ReplayBody>, Response = Response<TB>> + Clone,
    T::Error: Into<BoxError>,
    TB: Body<Data = Bytes> + Unpin,
    TB::Error: Into<BoxError>,
{
    type Response = Response<AttemptBody<TB>>;
    type Error = ClaudeError;
    type Future = AttemptFuture<
        <StreamHold<Normalize<ModelMap<Auth<T>>>> as Service<Request<ReplayBody>>>::Future,
        TB,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ClaudeError>> {
        match &mut self.kind {
            AttemptKind::Plain(svc) => svc.poll_ready(cx),
            AttemptKind::Layered(svc) => svc.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Request<ReplayBody>) -> Self::Future {
        let kind = match &mut self.kind {
            AttemptKind::Plain(svc) => FutureKind::Plain {
                future: svc.call(req),
            },
            AttemptKind::Layered(svc) => FutureKind::Boxed {
                future: svc.call(req),
            },
        };
        AttemptFuture {
            kind,
            _body: std::marker::PhantomData,
        }
    }
}

type BoxedFuture = Pin<Box<dyn Future<Output = Result<Response<RouteBody>, ClaudeError>> + Send>>;

pin_project! {
    /// Response future of [`RouteAttempt`].
    pub struct AttemptFuture<F, B> {
        #[pin]
        kind: FutureKind<F>,
        _body: std::marker::PhantomData<fn() -> B>,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<F> {
        Plain { #[pin] future: F },
        Boxed { future: BoxedFuture },
    }
}

impl<F, B> Future for AttemptFuture<F, B>
where
    F: Future<Output = Result<Response<HoldBody<NormalizeBody<B>>>, ClaudeError>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<AttemptBody<B>>, ClaudeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Plain { future } => future.poll(cx).map(|result| {
                result.map(|res| {
                    res.map(|body| AttemptBody {
                        kind: Either::Left(body),
                    })
                })
            }),
            FutureKindProj::Boxed { future, .. } => future.as_mut().poll(cx).map(|result| {
                result.map(|res| {
                    res.map(|body| AttemptBody {
                        kind: Either::Right(body),
                    })
                })
            }),
        }
    }
}

impl<F, B> fmt::Debug for AttemptFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// Response body of [`RouteAttempt`]: StreamHold's body, or the boxed
    /// body of a route with layers of its own.
    pub struct AttemptBody<B>
    where
        B: Body<Data = Bytes>,
    {
        #[pin]
        kind: Either<HoldBody<NormalizeBody<B>>, RouteBody>,
    }
}

impl<B> Body for AttemptBody<B>
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
        self.project().kind.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.kind.size_hint()
    }
}

impl<B: Body<Data = Bytes>> fmt::Debug for AttemptBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Either::Left(body) => f.debug_tuple("AttemptBody").field(body).finish(),
            Either::Right(_) => f.write_str("AttemptBody(boxed)"),
        }
    }
}
