use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use claude_tower_core::{ClaudeError, ReplayBody, RouteId};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::table::{Entry, Table};
use crate::breaker::{BreakerConfig, Breakers};

/// Tries routes in priority order, failing over on failover-worthy outcomes.
///
/// See the [module docs](crate::failover) for the rules.
pub struct Failover<S> {
    table: Arc<Table<S>>,
}

impl<S> Failover<S> {
    /// Routes in priority order (the first is the primary), default breakers.
    pub fn new(routes: impl IntoIterator<Item = (RouteId, S)>) -> Self {
        routes
            .into_iter()
            .fold(Self::builder(), |b, (id, service)| b.route(id, service))
            .build()
    }

    /// A builder for priorities, weights, breaker settings and the seed.
    pub fn builder() -> FailoverBuilder<S> {
        FailoverBuilder {
            routes: Vec::new(),
            breaker: BreakerConfig::default(),
            seed: None,
        }
    }

    /// A handle on every route's circuit breaker, for `/healthz`; it stays
    /// live after this service is moved into a stack.
    pub fn breakers(&self) -> Breakers {
        Breakers {
            breakers: self.table.breakers.clone(),
        }
    }
}

impl<S> Clone for Failover<S> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
        }
    }
}

impl<S> fmt::Debug for Failover<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("routes", &self.table)
            .finish()
    }
}

impl<S, B> Service<Request<ReplayBody>> for Failover<S>
where
    S: Service<Request<ReplayBody>, Response = Response<B>> + Clone,
    S::Error: Into<tower::BoxError>,
{
    type Response = Response<B>;
    type Error = ClaudeError;
    type Future = ResponseFuture<S, B>;

    /// Always ready: which route a request needs is only known once it is
    /// being routed, so each attempt drives its own route's readiness (see
    /// the module docs).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReplayBody>) -> Self::Future {
        ResponseFuture::new(self.table.clone(), request)
    }
}

// === impl FailoverBuilder ===

/// Builds a [`Failover`]; from [`Failover::builder`].
pub struct FailoverBuilder<S> {
    routes: Vec<Entry<S>>,
    breaker: BreakerConfig,
    seed: Option<u64>,
}

impl<S> FailoverBuilder<S> {
    /// Adds a route below every route added so far (its own priority tier).
    pub fn route(self, id: impl Into<RouteId>, service: S) -> Self {
        let priority = self
            .routes
            .iter()
            .map(|r| r.priority.saturating_add(1))
            .max()
            .unwrap_or(0);
        self.weighted_route(id, service, priority, 1)
    }

    /// Adds a route with an explicit priority (lower is tried first) and a
    /// weight: requests spread over the healthy routes of the best tier in
    /// proportion to their weights (a weight of 0 counts as 1).
    pub fn weighted_route(
        mut self,
        id: impl Into<RouteId>,
        service: S,
        priority: u32,
        weight: u32,
    ) -> Self {
        self.routes.push(Entry {
            id: id.into(),
            service,
            priority,
            weight: weight.max(1),
        });
        self
    }

    /// Circuit breaker settings for every route.
    pub fn with_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Seeds the spreading among equal-priority routes, for reproducible
    /// tests. Without it the seed is random.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The service. Only the first [`MAX_ROUTES`](super::MAX_ROUTES) routes
    /// by priority are kept.
    pub fn build(self) -> Failover<S> {
        let seed = self.seed.unwrap_or_else(|| fastrand::u64(..));
        Failover {
            table: Arc::new(Table::new(self.routes, self.breaker, seed)),
        }
    }
}

impl<S> fmt::Debug for FailoverBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverBuilder")
            .field(
                "routes",
                &self
                    .routes
                    .iter()
                    .map(|r| (&r.id, r.priority, r.weight))
                    .collect::<Vec<_>>(),
            )
            .field("breaker", &self.breaker)
            .field("seed", &self.seed)
            .finish()
    }
}

// === impl FailoverLayer ===

/// Turns a list of `(RouteId, service)` (priority order) into a [`Failover`].
///
/// A layer over a *list* of services rather than one: each route is its own
/// stack (Retry, Normalize, ModelMap, Auth, transport) built before this.
///
/// ```
/// use claude_tower_core::{BufferError, ReplayBody, RouteId};
/// use claude_tower_failover::{BreakerConfig, FailoverLayer};
/// use http::{Request, Response};
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let route = |name: &'static str| {
///     service_fn(move |_: Request<ReplayBody>| async move {
///         Ok::<_, BufferError>(Response::new(name))
///     })
/// };
/// let failover = FailoverLayer::new()
///     .with_breaker(BreakerConfig::new().with_retry_after_cap(Duration::from_secs(20)))
///     .layer(vec![
///         (RouteId::new("foundry-eastus2"), route("east")),
///         (RouteId::new("anthropic"), route("direct")),
///     ]);
/// let response = failover
///     .oneshot(Request::post("/v1/messages").body(ReplayBody::empty()).unwrap())
///     .await
///     .unwrap();
/// assert_eq!(*response.body(), "east");
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct FailoverLayer {
    breaker: BreakerConfig,
    seed: Option<u64>,
}

impl FailoverLayer {
    /// Default breakers, random seed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Circuit breaker settings for every route.
    pub fn with_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Seeds the spreading among equal-priority routes.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl<S> Layer<Vec<(RouteId, S)>> for FailoverLayer {
    type Service = Failover<S>;

    fn layer(&self, routes: Vec<(RouteId, S)>) -> Failover<S> {
        let mut builder = routes
            .into_iter()
            .fold(Failover::builder(), |b, (id, service)| b.route(id, service))
            .with_breaker(self.breaker);
        builder.seed = self.seed;
        builder.build()
    }
}
