use std::sync::Arc;
use std::task::{Context, Poll};

use claude_tower_core::{ClaudeError, Face, RouteId};
use http::{Request, Response};
use http_body::Body;
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::NormalizeBody;
use crate::future::ResponseFuture;

/// How many bytes of an error body are read to classify it: 64 KiB.
pub const DEFAULT_ERROR_BODY_LIMIT: usize = 64 * 1024;

/// What one route's [`Normalize`] does; shared by every request through it.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) route: RouteId,
    pub(crate) face: Face,
    pub(crate) rewrite_envelope: bool,
    pub(crate) canonical_retry_headers: bool,
    pub(crate) error_body_limit: usize,
}

/// Applies [`Normalize`] to one route's service.
///
/// Both options are off by default so that the layer alone changes nothing a
/// client sees except through extensions; the `claude-tower` gateway turns
/// them on.
#[derive(Clone, Debug)]
pub struct NormalizeLayer {
    config: Config,
}

impl NormalizeLayer {
    /// Normalizes responses of route `route`, which speaks `face`.
    pub fn new(route: RouteId, face: Face) -> Self {
        Self {
            config: Config {
                route,
                face,
                rewrite_envelope: false,
                canonical_retry_headers: false,
                error_body_limit: DEFAULT_ERROR_BODY_LIMIT,
            },
        }
    }

    /// Rewrites a Foundry error body in Azure's envelope into Anthropic's
    /// (default off).
    ///
    /// The Anthropic `error.type` follows the class, the message is
    /// upstream's verbatim (Claude Code's recovery reads it: "prompt is too
    /// long" starts a compaction) and the status is kept, with one exception:
    /// [`TransientAuth`](claude_tower_core::ErrorClass::TransientAuth) is
    /// answered as `503` `api_error` with `x-should-retry: true`, because an
    /// Anthropic SDK raises `AuthenticationError` on a 401 and never retries
    /// it, while this failure is a platform blip worth retrying. The
    /// [`ClaudeError`] in the extensions keeps the upstream status.
    ///
    /// A rewritten response also gets `content-type: application/json` and,
    /// unless upstream sent one, `x-should-retry` matching the class table,
    /// as Anthropic's API sends it.
    ///
    /// Everything else passes through byte for byte with its headers, and is
    /// classified by status and headers alone: bodies already in Anthropic's
    /// envelope, bodies that do not parse as either envelope (an HTML page
    /// from a proxy, truncated JSON, an empty body), bodies under a
    /// `content-encoding` (never read: a gzip body re-labelled or decoded
    /// behind the client's back is one it cannot read), bodies over the
    /// [limit](Self::with_error_body_limit), and everything from a route with
    /// the Anthropic face.
    pub fn with_rewrite_envelope(mut self, rewrite: bool) -> Self {
        self.config.rewrite_envelope = rewrite;
        self
    }

    /// Writes canonical retry headers on failed responses (default off).
    ///
    /// Any `retry-after`, `retry-after-ms` and `x-ms-retry-after-ms` from
    /// upstream are replaced by `retry-after` in whole seconds (rounded up)
    /// and `retry-after-ms`, when a hint is known; a client never sees an
    /// HTTP-date or a hint this crate rejected.
    pub fn with_canonical_retry_headers(mut self, canonical: bool) -> Self {
        self.config.canonical_retry_headers = canonical;
        self
    }

    /// How many bytes of an error body to read (default
    /// [`DEFAULT_ERROR_BODY_LIMIT`]). A longer body is classified by status
    /// and passed on unread.
    pub fn with_error_body_limit(mut self, limit: usize) -> Self {
        self.config.error_body_limit = limit;
        self
    }
}

impl<S> Layer<S> for NormalizeLayer {
    type Service = Normalize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Normalize {
            inner,
            config: Arc::new(self.config.clone()),
        }
    }
}

/// Attaches [`ClaudeError`], [`RetryAfter`](claude_tower_core::RetryAfter)
/// and [`RequestIds`](claude_tower_core::RequestIds) to one route's responses,
/// and turns its transport errors into [`ClaudeError`]s.
///
/// See the [crate docs](crate) for the whole story.
#[derive(Clone, Debug)]
pub struct Normalize<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Normalize<S> {
    /// Wraps `inner`, a service for route `route` speaking `face`, with the
    /// [`NormalizeLayer`] defaults.
    pub fn new(inner: S, route: RouteId, face: Face) -> Self {
        NormalizeLayer::new(route, face).layer(inner)
    }

    /// A [`NormalizeLayer`] for route `route` speaking `face`.
    pub fn layer(route: RouteId, face: Face) -> NormalizeLayer {
        NormalizeLayer::new(route, face)
    }

    /// The route this service normalizes.
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

impl<S, ReqB, ResB> Service<Request<ReqB>> for Normalize<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body<Data = bytes::Bytes>,
{
    type Response = Response<NormalizeBody<ResB>>;
    type Error = ClaudeError;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| crate::future::transport_failure(e.into(), &self.config))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        ResponseFuture::new(self.inner.call(req), self.config.clone())
    }
}
