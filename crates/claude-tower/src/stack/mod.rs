//! [`ClaudeStack`]: the stack of the design, from a list of routes. The one
//! place it is assembled: the gateway and the reqwest adapter
//! (`claude-tower-reqwest`) build theirs here too.
//!
//! ```text
//! Request<B>
//!   -> [ClaudeStack::layer]  the user's layers around the whole stack, first added outermost
//!   -> options        with_report_headers (x-claude-tower-route / -attempts),
//!                     with_deadline (504 when no response head came in time)
//!   -> Replay         body buffered once (413 over the limit, after draining it)
//!   -> ToolPairing    reject / repair / observe broken tool_use pairing
//!   -> ErrorEnvelope  an error becomes Anthropic's envelope: never Err
//!   -> Failover       priority order, circuit breakers
//!        route k:
//!        -> Retry            same-route retries honouring Retry-After
//!        -> [Route::layer]   the user's layers, once per attempt
//!        -> Normalize        ClaudeError / RetryAfter / RequestIds; canonical headers
//!        -> ModelMap         model -> this route's deployment
//!        -> Auth             strip inbound credentials; endpoint; this route's credential
//!        -> transport        any Service<Request<ReplayBody>>: hyper-util, reqwest, a mock
//! ```
//!
//! The result, [`ClaudeService`], is `Clone + Send + Sync`; without layers
//! of the user's it is infallible, its future is the named
//! [`ResponseFuture`] (which holds the stack's own state, about 900
//! bytes, in one box, so that the layers outside it move a pointer), and
//! its body [`ClaudeBody`] implements `Default`. It mounts as an axum
//! `Router::fallback_service` / `route_service` (also under tower-http's
//! `TimeoutLayer`) and works as a plain tower service for client use.
//!
//! # Defaults
//!
//! One set, for every user: tool pairing `Reject`, a 32 MiB body limit,
//! default breakers (5 failures, 10 s cool-down), Azure error bodies
//! rewritten into Anthropic's envelope and canonical retry headers (what an
//! Anthropic SDK client expects), no deadline, no report headers, at most
//! [`MAX_ROUTES`] routes.
//!
//! ```no_run
//! use std::time::Duration;
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
//!         .with_model_map(ModelMapping::new().exact("claude-sonnet-4-5-20250929", "claude-sonnet-4-5")),
//!     )
//!     .with_tool_pairing(ToolPairingMode::Repair)
//!     .with_deadline(Duration::from_secs(600))
//!     .with_report_headers(true)
//!     .build(claude_tower::transport::https_client()?)?;
//! # drop(stack);
//! # Ok(())
//! # }
//! ```

mod route;
mod service;

use service::ReportHeaders;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::{DEFAULT_REQUEST_BODY_LIMIT, ReplayBody, ReplayLayer};
use claude_tower_failover::{BreakerConfig, ErrorEnvelopeLayer, Failover};
use claude_tower_normalize::NormalizeLayer;
use claude_tower_retry::Retry;
use claude_tower_toolpair::{ToolPairingLayer, ToolPairingMode};
use http::{Request, Response};
use http_body::Body;
use tower_layer::{Identity, Layer, Stack};
use tower_service::Service;

pub use claude_tower_failover::failover::MAX_ROUTES;
pub use route::{
    AttemptBody, AttemptFuture, Route, RouteAttempt, RouteBody, RouteInner, RouteService,
};
pub use service::{
    ATTEMPTS_HEADER, ClaudeBody, ClaudeService, ROUTE_HEADER, ResponseFuture, StackService,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a stack could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StackError {
    /// No route was given.
    NoRoutes,
    /// More routes than Failover keeps ([`MAX_ROUTES`]).
    TooManyRoutes {
        /// How many were given.
        count: usize,
    },
    /// Two routes share a name; breakers and reports go by name.
    DuplicateRoute(String),
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::NoRoutes => f.write_str("a Claude stack needs at least one route"),
            StackError::TooManyRoutes { count } => write!(
                f,
                "{count} routes configured; a Claude stack takes at most {MAX_ROUTES}"
            ),
            StackError::DuplicateRoute(id) => write!(f, "route `{id}` is configured twice"),
        }
    }
}

impl std::error::Error for StackError {}

/// Builder of the stack; see the [module docs](self).
///
/// `L` is the layers added with [`layer`](Self::layer), as in
/// `tower::ServiceBuilder`.
#[derive(Clone, Debug)]
pub struct ClaudeStack<L = Identity> {
    routes: Vec<Route>,
    tool_pairing: ToolPairingMode,
    body_limit: usize,
    breaker: BreakerConfig,
    rewrite_envelope: bool,
    canonical_retry_headers: bool,
    deadline: Option<Duration>,
    report_headers: bool,
    layer: L,
}

impl Default for ClaudeStack {
    fn default() -> Self {
        Self::new()
    }
}

impl ClaudeStack {
    /// An empty stack with the [defaults](self#defaults).
    pub fn new() -> Self {
        Self {
            routes: Vec::new(),
            tool_pairing: ToolPairingMode::Reject,
            body_limit: DEFAULT_REQUEST_BODY_LIMIT,
            breaker: BreakerConfig::new(),
            rewrite_envelope: true,
            canonical_retry_headers: true,
            deadline: None,
            report_headers: false,
            layer: Identity::new(),
        }
    }
}

impl<L> ClaudeStack<L> {
    /// Adds a route; routes are tried in the order added unless given a
    /// [priority](Route::with_priority).
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Adds a layer around the whole stack (outside the stack options and
    /// Replay: it sees the caller's request body). The first layer added is
    /// the outermost, as with `ServiceBuilder`. Identity, usage and quota
    /// layers go here, so the stack's order is written in one place.
    pub fn layer<N>(self, layer: N) -> ClaudeStack<Stack<N, L>> {
        ClaudeStack {
            routes: self.routes,
            tool_pairing: self.tool_pairing,
            body_limit: self.body_limit,
            breaker: self.breaker,
            rewrite_envelope: self.rewrite_envelope,
            canonical_retry_headers: self.canonical_retry_headers,
            deadline: self.deadline,
            report_headers: self.report_headers,
            layer: Stack::new(layer, self.layer),
        }
    }

    /// The tool pairing mode (default `Reject`).
    pub fn with_tool_pairing(mut self, mode: ToolPairingMode) -> Self {
        self.tool_pairing = mode;
        self
    }

    /// The request body limit in bytes (larger bodies get 413).
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// Circuit breaker settings for every route.
    pub fn with_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Whether Azure error bodies are rewritten into Anthropic's envelope
    /// (default on).
    pub fn with_rewrite_envelope(mut self, rewrite: bool) -> Self {
        self.rewrite_envelope = rewrite;
        self
    }

    /// Whether `retry-after` / `retry-after-ms` are rewritten canonically
    /// (default on).
    pub fn with_canonical_retry_headers(mut self, canonical: bool) -> Self {
        self.canonical_retry_headers = canonical;
        self
    }

    /// A deadline on the response head: when no response head (a route's,
    /// or a local answer) is ready within `deadline` of the call, the answer
    /// is a 504 in Anthropic's envelope (`timeout_error`) and the request
    /// is dropped. A streaming body, once its head is out, is not cut. No
    /// box: the timer lives in the stack's future. Default: none.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Whether every response carries [`ROUTE_HEADER`] (the route that
    /// answered; absent when none did) and [`ATTEMPTS_HEADER`] (attempts per
    /// route), written from the `FailoverReport`. Default off.
    pub fn with_report_headers(mut self, report: bool) -> Self {
        self.report_headers = report;
        self
    }

    /// The routes added so far.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The request body limit in bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// Builds the stack over `transport`, which every route shares (one
    /// connection pool).
    pub fn build<T, TB>(self, transport: T) -> Result<ClaudeService<T, L>, StackError>
    where
        L: Layer<StackService<T>>,
        T: Service<Request<ReplayBody>, Response = Response<TB>> + Clone + Send + Sync + 'static,
        T::Error: Into<BoxError>,
        T::Future: Send + 'static,
        TB: Body<Data = Bytes> + Unpin + Send + Sync + 'static,
        TB::Error: Into<BoxError> + Send + Sync + 'static,
    {
        if self.routes.is_empty() {
            return Err(StackError::NoRoutes);
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(StackError::TooManyRoutes {
                count: self.routes.len(),
            });
        }
        for (i, route) in self.routes.iter().enumerate() {
            if self.routes[..i].iter().any(|r| r.id == route.id) {
                return Err(StackError::DuplicateRoute(route.id.to_string()));
            }
        }
        let mut failover = Failover::builder().with_breaker(self.breaker);
        for (i, route) in self.routes.iter().enumerate() {
            let normalize = NormalizeLayer::new(route.id.clone(), route.face())
                .with_rewrite_envelope(self.rewrite_envelope)
                .with_canonical_retry_headers(self.canonical_retry_headers);
            let service = Retry::new(route.policy(), route.attempt(normalize, transport.clone()));
            let priority = route
                .priority
                .unwrap_or(u32::try_from(i).unwrap_or(u32::MAX));
            failover = failover.weighted_route(route.id.clone(), service, priority, route.weight);
        }
        let failover = failover.build();
        let breakers = failover.breakers();
        let replay = ReplayLayer::new().with_limit(self.body_limit).layer(
            ToolPairingLayer::new(self.tool_pairing)
                .layer(ErrorEnvelopeLayer::new().layer(failover)),
        );
        let report_headers = self
            .report_headers
            .then(|| ReportHeaders::new(self.routes.iter().map(|r| &r.id)));
        let stack = StackService::new(replay, self.deadline, report_headers);
        Ok(ClaudeService::new(self.layer.layer(stack), breakers))
    }
}
