//! [`ClaudeStack`]: the default stack of the design, from a list of routes.
//!
//! ```text
//! Request<B>
//!   -> Replay         body buffered once (413 over the limit)
//!   -> ToolPairing    reject / repair / observe broken tool_use pairing
//!   -> ErrorEnvelope  an error becomes Anthropic's envelope: never Err
//!   -> Failover       priority order, circuit breakers
//!        route k:
//!        -> Retry      same-route retries honouring Retry-After
//!        -> Normalize  ClaudeError / RetryAfter / RequestIds; canonical headers
//!        -> ModelMap   model -> this route's deployment
//!        -> Auth       strip inbound credentials; endpoint; this route's credential
//!        -> transport  any Service<Request<ReplayBody>>: hyper-util, reqwest, a mock
//! ```
//!
//! The result, [`ClaudeService`], is `Clone + Send + Sync`, infallible, and
//! usable both as an axum `Router::fallback_service` / `route_service` and as
//! a plain tower service for client use.
//!
//! ```no_run
//! use claude_tower::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = ClaudeStack::new()
//!     .route(Route::new(
//!         "anthropic",
//!         Endpoint::anthropic(),
//!         Credential::anthropic_api_key(Secret::new("sk-ant-..."))?,
//!     ))
//!     .route(
//!         Route::new(
//!             "foundry",
//!             Endpoint::foundry_resource("my-resource")?,
//!             Credential::foundry_api_key(Secret::new("..."))?,
//!         )
//!         .model_map(ModelMapping::new().exact("claude-sonnet-4-5-20250929", "claude-sonnet-4-5")),
//!     )
//!     .tool_pairing(Mode::Repair)
//!     .build(claude_tower::transport::https_client()?)?;
//! # drop(stack);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use claude_tower_auth::{Auth, AuthLayer, Credential, Endpoint};
use claude_tower_core::{DEFAULT_REQUEST_BODY_LIMIT, Face, ReplayBody, RouteId};
use claude_tower_failover::{
    BreakerConfig, Breakers, Failover, ModelMap, ModelMapLayer, ModelMapping,
};
use claude_tower_normalize::{Normalize, NormalizeBody, NormalizeLayer};
use claude_tower_retry::{Retry, RetryAfterPolicy};
use claude_tower_toolpair::{Mode, ResponseBody, ToolPairing, ToolPairingLayer};
use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::envelope::{ErrorEnvelope, ErrorEnvelopeLayer};
use claude_tower_core::replay::{self, Replay, ReplayLayer};

/// One upstream route: where it is, how to authenticate, how its models are
/// named, and how to retry on it.
#[derive(Clone, Debug)]
pub struct Route {
    id: RouteId,
    auth: AuthLayer,
    model_map: ModelMapping,
    retry: Option<RetryAfterPolicy>,
    priority: Option<u32>,
    weight: u32,
}

impl Route {
    /// A route named `id` at `endpoint`, authenticating with `credential`.
    /// Its [`Face`] follows from the endpoint.
    pub fn new(id: impl Into<RouteId>, endpoint: Endpoint, credential: Credential) -> Self {
        let id = id.into();
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
        }
    }

    /// Maps the request's `model` to this route's deployment or model id.
    pub fn model_map(mut self, mapping: ModelMapping) -> Self {
        self.model_map = mapping;
        self
    }

    /// Retry settings for this route (default: [`RetryAfterPolicy::new`]).
    pub fn retry(mut self, policy: RetryAfterPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// An explicit priority (lower is tried first) and weight among routes
    /// of equal priority. Without it, routes are tried in the order added.
    pub fn priority(mut self, priority: u32, weight: u32) -> Self {
        self.priority = Some(priority);
        self.weight = weight;
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
}

/// Why a stack could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StackError {
    /// No route was given.
    NoRoutes,
    /// Two routes share a name.
    DuplicateRoute(String),
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::NoRoutes => f.write_str("a Claude stack needs at least one route"),
            StackError::DuplicateRoute(id) => write!(f, "route `{id}` is configured twice"),
        }
    }
}

impl std::error::Error for StackError {}

/// Builder of the default stack; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct ClaudeStack {
    routes: Vec<Route>,
    tool_pairing: Mode,
    body_limit: usize,
    breaker: BreakerConfig,
    rewrite_envelope: bool,
    canonical_retry_headers: bool,
}

impl Default for ClaudeStack {
    fn default() -> Self {
        Self::new()
    }
}

impl ClaudeStack {
    /// An empty stack: tool pairing `Reject`, a 32 MiB body limit, default
    /// breakers, Azure envelopes rewritten to Anthropic's and canonical retry
    /// headers on (what a gateway in front of Anthropic SDK clients wants).
    pub fn new() -> Self {
        Self {
            routes: Vec::new(),
            tool_pairing: Mode::Reject,
            body_limit: DEFAULT_REQUEST_BODY_LIMIT,
            breaker: BreakerConfig::new(),
            rewrite_envelope: true,
            canonical_retry_headers: true,
        }
    }

    /// Adds a route; routes are tried in the order added unless given a
    /// [priority](Route::priority).
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// The tool pairing mode.
    pub fn tool_pairing(mut self, mode: Mode) -> Self {
        self.tool_pairing = mode;
        self
    }

    /// The request body limit in bytes (larger bodies get 413).
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// Circuit breaker settings for every route.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Whether Azure error bodies are rewritten into Anthropic's envelope.
    pub fn rewrite_envelope(mut self, rewrite: bool) -> Self {
        self.rewrite_envelope = rewrite;
        self
    }

    /// Whether `retry-after` / `retry-after-ms` are rewritten canonically.
    pub fn canonical_retry_headers(mut self, canonical: bool) -> Self {
        self.canonical_retry_headers = canonical;
        self
    }

    /// The routes added so far.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Builds the stack over `transport`, which every route shares (one
    /// connection pool).
    pub fn build<T>(self, transport: T) -> Result<ClaudeService<T>, StackError>
    where
        T: Clone,
    {
        if self.routes.is_empty() {
            return Err(StackError::NoRoutes);
        }
        for (i, route) in self.routes.iter().enumerate() {
            if self.routes[..i].iter().any(|r| r.id == route.id) {
                return Err(StackError::DuplicateRoute(route.id.to_string()));
            }
        }
        // The breaker opens for exactly a Retry-After the retry policy
        // refused to wait out; keep the two caps equal unless told otherwise.
        let mut failover = Failover::builder().breaker(self.breaker);
        for (i, route) in self.routes.into_iter().enumerate() {
            let normalize = NormalizeLayer::new(route.id.clone(), route.face())
                .with_rewrite_envelope(self.rewrite_envelope)
                .with_canonical_retry_headers(self.canonical_retry_headers);
            let policy = route
                .retry
                .unwrap_or_else(|| RetryAfterPolicy::new(route.id.clone()));
            let service = Retry::new(
                policy,
                normalize.layer(
                    ModelMapLayer::new(route.model_map).layer(route.auth.layer(transport.clone())),
                ),
            );
            let priority = route
                .priority
                .unwrap_or(u32::try_from(i).unwrap_or(u32::MAX));
            failover = failover.weighted_route(route.id, service, priority, route.weight);
        }
        let failover = failover.build();
        let breakers = failover.breakers();
        let inner = ReplayLayer::new().with_limit(self.body_limit).layer(
            ToolPairingLayer::new(self.tool_pairing)
                .layer(ErrorEnvelopeLayer::new().layer(failover)),
        );
        Ok(ClaudeService { inner, breakers })
    }
}

/// One route's own stack: Retry -> Normalize -> ModelMap -> Auth -> transport.
pub type RouteService<T> = Retry<Normalize<ModelMap<Auth<T>>>>;

type Inner<T> = Replay<ToolPairing<ErrorEnvelope<Failover<RouteService<T>>>>>;

/// The response body of a [`ClaudeService`]: the upstream body, streamed
/// untouched on success, or a locally rendered or normalized error body.
pub type ClaudeBody<B> = claude_tower_core::ResponseBody<ResponseBody<NormalizeBody<B>>>;

/// The composed default stack, built by [`ClaudeStack::build`].
///
/// Infallible: every failure is an Anthropic-shaped error response. Cloning
/// is cheap and clones share breakers, token caches and the retry budget.
pub struct ClaudeService<T> {
    inner: Inner<T>,
    breakers: Breakers,
}

impl<T> ClaudeService<T> {
    /// Every route's circuit breaker, for health endpoints.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }
}

impl<T: Clone> Clone for ClaudeService<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breakers: self.breakers.clone(),
        }
    }
}

impl<T> fmt::Debug for ClaudeService<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaudeService")
            .field("routes", &self.breakers.snapshot())
            .finish_non_exhaustive()
    }
}

impl<T, TB, B> Service<Request<B>> for ClaudeService<T>
where
    T: Service<Request<ReplayBody>, Response = Response<TB>> + Clone,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TB: Body<Data = Bytes>,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ClaudeBody<TB>>;
    type Error = std::convert::Infallible;
    type Future = replay::ResponseFuture<B, ToolPairing<ErrorEnvelope<Failover<RouteService<T>>>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <Inner<T> as Service<Request<B>>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}
