use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::{Face, RouteId};
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::body::HoldBody;
use super::future::ResponseFuture;
use crate::layer::DEFAULT_ERROR_BODY_LIMIT;

/// How many bytes of a stream's start are held at most: 64 KiB.
pub const DEFAULT_HOLD_BYTE_LIMIT: usize = 64 * 1024;

/// How long a stream's start is held at most: 10 s.
pub const DEFAULT_HOLD_TIME_LIMIT: Duration = Duration::from_secs(10);

/// What one route's [`StreamHold`] does; shared by every request through it.
#[derive(Clone, Debug)]
pub(crate) struct HoldConfig {
    pub(crate) route: RouteId,
    pub(crate) face: Face,
    pub(crate) enabled: bool,
    pub(crate) byte_limit: usize,
    pub(crate) time_limit: Duration,
    pub(crate) error_data_limit: usize,
}

/// Applies [`StreamHold`] to one route's service; see the
/// [module docs](super) for what it does and why.
///
/// ```
/// use claude_tower_core::{Face, RouteId};
/// use claude_tower_normalize::hold::StreamHoldLayer;
/// use std::time::Duration;
///
/// let layer = StreamHoldLayer::new(RouteId::new("anthropic"), Face::Anthropic)
///     .with_byte_limit(16 * 1024)
///     .with_time_limit(Duration::from_secs(5));
/// # drop(layer);
/// ```
#[derive(Clone, Debug)]
pub struct StreamHoldLayer {
    config: HoldConfig,
}

impl StreamHoldLayer {
    /// Holds the start of route `route`'s streams, which speak `face`, up to
    /// [`DEFAULT_HOLD_BYTE_LIMIT`] and [`DEFAULT_HOLD_TIME_LIMIT`].
    pub fn new(route: RouteId, face: Face) -> Self {
        Self {
            config: HoldConfig {
                route,
                face,
                enabled: true,
                byte_limit: DEFAULT_HOLD_BYTE_LIMIT,
                time_limit: DEFAULT_HOLD_TIME_LIMIT,
                error_data_limit: DEFAULT_ERROR_BODY_LIMIT,
            },
        }
    }

    /// Whether streams are held at all (default on). Off, every response
    /// passes as it comes, and an error inside a stream reaches the client
    /// as upstream sent it, unretried.
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// Releases a stream once this many bytes of it are held without
    /// content (default [`DEFAULT_HOLD_BYTE_LIMIT`]). The check is made per
    /// frame, so up to one frame more may be held.
    pub fn with_byte_limit(mut self, limit: usize) -> Self {
        self.config.byte_limit = limit;
        self
    }

    /// Releases a stream once it has been held this long without content
    /// (default [`DEFAULT_HOLD_TIME_LIMIT`]): the longest a client waits
    /// for its `message_start` beyond what upstream takes.
    pub fn with_time_limit(mut self, limit: Duration) -> Self {
        self.config.time_limit = limit;
        self
    }
}

impl<S> Layer<S> for StreamHoldLayer {
    type Service = StreamHold<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamHold {
            inner,
            config: Arc::new(self.config.clone()),
        }
    }
}

/// Holds back the start of one route's successful streams until the first
/// content event, so that an `event: error` before any content becomes a
/// classified failure that Retry and Failover act on.
///
/// See the [module docs](super) for the whole story.
#[derive(Clone, Debug)]
pub struct StreamHold<S> {
    inner: S,
    config: Arc<HoldConfig>,
}

impl<S> StreamHold<S> {
    /// Wraps `inner`, a service for route `route` speaking `face`, with the
    /// [`StreamHoldLayer`] defaults.
    pub fn new(inner: S, route: RouteId, face: Face) -> Self {
        StreamHoldLayer::new(route, face).layer(inner)
    }

    /// A [`StreamHoldLayer`] for route `route` speaking `face`.
    pub fn layer(route: RouteId, face: Face) -> StreamHoldLayer {
        StreamHoldLayer::new(route, face)
    }

    /// The route whose streams this service holds.
    pub fn route(&self) -> &RouteId {
        &self.config.route
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for StreamHold<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes> + Unpin,
{
    type Response = Response<HoldBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        ResponseFuture::new(self.inner.call(req), self.config.clone())
    }
}
