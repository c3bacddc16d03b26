//! [`UsageLayer`] and the [`Usage`] service.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use claude_tower_core::usage::UsageSink;
use claude_tower_core::{Caller, ReplayBody};
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::UsageBody;
use crate::future::{ResponseFuture, Start};
use crate::json::DEFAULT_JSON_LIMIT;
use crate::sse::DEFAULT_EVENT_LIMIT;
use crate::stats::ReadStats;

/// The model a request asked for; lives in core so the stack can set it
/// without depending on this crate.
pub use claude_tower_core::RequestedModel;

/// What every [`Usage`] service of one layer shares.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) sinks: Vec<Arc<dyn UsageSink>>,
    pub(crate) json_limit: usize,
    pub(crate) event_limit: usize,
    pub(crate) local_without_route: bool,
    pub(crate) stats: Arc<ReadStats>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("sinks", &self.sinks.len())
            .field("json_limit", &self.json_limit)
            .field("event_limit", &self.event_limit)
            .field("local_without_route", &self.local_without_route)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Reads the usage of every response as it streams and hands one
/// [`UsageRecord`](claude_tower_core::usage::UsageRecord) per request to
/// its sinks, then to the response's
/// [`UsageHook`](claude_tower_core::usage::UsageHook).
///
/// See the [crate docs](crate) for what is read and when the record goes.
#[derive(Clone, Debug)]
pub struct UsageLayer {
    config: Arc<Config>,
}

impl Default for UsageLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageLayer {
    /// A layer with no sink yet (hooks in responses are still called).
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                sinks: Vec::new(),
                json_limit: DEFAULT_JSON_LIMIT,
                event_limit: DEFAULT_EVENT_LIMIT,
                local_without_route: true,
                stats: Arc::new(ReadStats::default()),
            }),
        }
    }

    /// Adds a sink; sinks are called in the order they were added.
    pub fn sink(mut self, sink: impl UsageSink) -> Self {
        Arc::make_mut(&mut self.config).sinks.push(Arc::new(sink));
        self
    }

    /// The largest non-streaming JSON body read for usage (default
    /// [`DEFAULT_JSON_LIMIT`]); a longer one passes unread and its usage is
    /// unknown.
    pub fn with_json_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).json_limit = bytes;
        self
    }

    /// The most bytes held for one interesting SSE event (default
    /// [`DEFAULT_EVENT_LIMIT`]).
    pub fn with_event_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).event_limit = bytes;
        self
    }

    /// Whether a response without a [`RouteId`](claude_tower_core::RouteId)
    /// extension counts as answered locally (default `true`): its record
    /// gets `local: true` and zero tokens, and its body is not read.
    ///
    /// claude-tower's Normalize names the route on every upstream response.
    /// Turn this off when the usage layer wraps a service without it.
    pub fn with_local_without_route(mut self, local: bool) -> Self {
        Arc::make_mut(&mut self.config).local_without_route = local;
        self
    }

    /// The counters of usage that could not be read, shared by every
    /// service this layer makes.
    pub fn stats(&self) -> Arc<ReadStats> {
        Arc::clone(&self.config.stats)
    }
}

impl<S> Layer<S> for UsageLayer {
    type Service = Usage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Usage {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service [`UsageLayer`] makes.
#[derive(Clone, Debug)]
pub struct Usage<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Usage<S> {
    /// Wraps `inner` with `layer`'s settings.
    pub fn new(inner: S, layer: &UsageLayer) -> Self {
        layer.layer(inner)
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

impl<S, ReqB, ResB> Service<Request<ReqB>> for Usage<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: 'static,
    ReqB: 'static,
    ResB: Body<Data = Bytes>,
{
    type Response = Response<UsageBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let at = Instant::now();
        // Without sinks only a usage hook (a quota settlement) reads the
        // record, and it needs the tokens alone.
        let (caller, requested_model) = if self.config.sinks.is_empty() {
            (None, None)
        } else {
            (
                req.extensions().get::<Caller>().cloned(),
                requested_model(&req),
            )
        };
        let start = Start {
            config: Arc::clone(&self.config),
            caller,
            requested_model,
            at,
        };
        ResponseFuture::new(self.inner.call(req), start)
    }
}

/// The request's model: a [`RequestedModel`] hint, else the top-level
/// `model` of a [`ReplayBody`].
fn requested_model<B: 'static>(req: &Request<B>) -> Option<Arc<str>> {
    if let Some(RequestedModel(model)) = req.extensions().get::<RequestedModel>() {
        return Some(Arc::clone(model));
    }
    let body = (req.body() as &dyn Any).downcast_ref::<ReplayBody>()?;
    claude_tower_toolpair::model_map::requested_model(body.as_bytes()).map(Into::into)
}
