use std::fmt;

use claude_tower_core::{DEFAULT_REQUEST_BODY_LIMIT, Face, RouteId};
use claude_tower_failover::failover::MAX_ROUTES;
use claude_tower_failover::{BreakerConfig, Failover, ModelMapLayer, ModelMapping};
use claude_tower_normalize::NormalizeLayer;
use claude_tower_retry::{RetryAfterPolicy, RetryLayer};
use claude_tower_toolpair::{Mode, ToolPairingLayer};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use tower::ServiceBuilder;
use tower_layer::Layer;

use super::ClaudeMiddleware;
use super::dispatch::RouteTransport;

/// One route of a [`ClaudeMiddleware`]: a name, a base URL, the error face
/// it speaks, and optionally its own retry policy, model names and headers.
///
/// ```
/// use claude_tower_core::Face;
/// use claude_tower_failover::ModelMapping;
/// use claude_tower_reqwest::Route;
/// use claude_tower_retry::RetryAfterPolicy;
/// use http::{HeaderName, HeaderValue};
///
/// let route = Route::new("foundry", "https://my-resource.services.ai.azure.com/anthropic", Face::Foundry)
///     .retry(RetryAfterPolicy::builder("foundry").max_attempts(2).build().unwrap())
///     .header(HeaderName::from_static("api-key"), HeaderValue::from_static("secret"));
/// // Credential headers never reach a log line.
/// assert!(!format!("{route:?}").contains("secret"));
/// ```
pub struct Route {
    id: RouteId,
    base: String,
    face: Face,
    retry: Option<RetryAfterPolicy>,
    models: ModelMapping,
    headers: HeaderMap,
}

impl Route {
    /// A route named `id` at `base` (scheme, host, port and path prefix:
    /// `https://api.anthropic.com` or
    /// `https://{resource}.services.ai.azure.com/anthropic`), speaking `face`.
    /// The URL is checked by [`ClaudeMiddlewareBuilder::build`].
    pub fn new(id: impl Into<RouteId>, base: impl AsRef<str>, face: Face) -> Self {
        Self {
            id: id.into(),
            base: base.as_ref().to_owned(),
            face,
            retry: None,
            models: ModelMapping::new(),
            headers: HeaderMap::new(),
        }
    }

    /// The retry policy for this route (default
    /// [`RetryAfterPolicy::new`] for the route's name).
    pub fn retry(mut self, policy: RetryAfterPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// This route's model names: the request body's top-level `"model"` is
    /// rewritten with `mapping` before it is sent here (a Foundry
    /// deployment name for a model id, say). Default: sent as it is.
    pub fn models(mut self, mapping: ModelMapping) -> Self {
        self.models = mapping;
        self
    }

    /// A header set on every request sent to this route, replacing any the
    /// request had (for example this route's credential: `x-api-key`,
    /// `api-key` or `authorization`). Values are marked sensitive, so they
    /// are redacted from `Debug` output and never indexed by HTTP/2's HPACK.
    pub fn header(mut self, name: HeaderName, mut value: HeaderValue) -> Self {
        value.set_sensitive(true);
        self.headers.append(name, value);
        self
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("id", &self.id)
            .field("base", &redact_str(&self.base))
            .field("face", &self.face)
            .field("retry", &self.retry)
            .field("models", &self.models)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn redact_str(base: &str) -> String {
    Url::parse(base).map_or_else(|_| "<invalid URL>".to_owned(), |u| crate::redacted_url(&u))
}

/// Builds a [`ClaudeMiddleware`]; from [`ClaudeMiddleware::builder`].
pub struct ClaudeMiddlewareBuilder {
    routes: Vec<Route>,
    mode: Mode,
    breaker: BreakerConfig,
    rewrite_envelope: bool,
    canonical_retry_headers: bool,
    body_limit: usize,
}

impl ClaudeMiddlewareBuilder {
    pub(crate) fn new() -> Self {
        Self {
            routes: Vec::new(),
            mode: Mode::Reject,
            breaker: BreakerConfig::default(),
            rewrite_envelope: false,
            canonical_retry_headers: false,
            body_limit: DEFAULT_REQUEST_BODY_LIMIT,
        }
    }

    /// Adds a route below every route added so far, with the default retry
    /// policy and no headers of its own.
    pub fn route(self, id: impl Into<RouteId>, base: impl AsRef<str>, face: Face) -> Self {
        self.add_route(Route::new(id, base, face))
    }

    /// Adds a configured [`Route`] below every route added so far.
    pub fn add_route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// What to do with a request whose `tool_use` / `tool_result` pairing
    /// is broken (default [`Mode::Reject`]: a local 400, nothing sent).
    pub fn tool_pairing(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Circuit breaker settings for every route.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Rewrites Foundry error bodies into Anthropic's envelope (default
    /// off); see [`NormalizeLayer::with_rewrite_envelope`].
    pub fn rewrite_envelope(mut self, rewrite: bool) -> Self {
        self.rewrite_envelope = rewrite;
        self
    }

    /// Writes canonical retry headers on failed responses (default off);
    /// see [`NormalizeLayer::with_canonical_retry_headers`].
    pub fn canonical_retry_headers(mut self, canonical: bool) -> Self {
        self.canonical_retry_headers = canonical;
        self
    }

    /// The largest request body sent (default 32 MiB, the Messages API's
    /// limit); a larger one is answered locally with a 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Checks every route's URL and builds the middleware.
    pub fn build(self) -> Result<ClaudeMiddleware, BuildError> {
        if self.routes.is_empty() {
            return Err(BuildError::NoRoutes);
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(BuildError::TooManyRoutes {
                count: self.routes.len(),
            });
        }
        for (i, route) in self.routes.iter().enumerate() {
            if self.routes[..i].iter().any(|r| r.id == route.id) {
                return Err(BuildError::DuplicateRoute {
                    route: route.id.clone(),
                });
            }
        }
        let mut failover = Failover::builder().breaker(self.breaker);
        let mut bases = Vec::with_capacity(self.routes.len());
        for route in self.routes {
            let base = parse_base(&route.id, &route.base)?;
            bases.push(base.clone());
            let policy = route
                .retry
                .unwrap_or_else(|| RetryAfterPolicy::new(route.id.clone()));
            let normalize = NormalizeLayer::new(route.id.clone(), route.face)
                .with_rewrite_envelope(self.rewrite_envelope)
                .with_canonical_retry_headers(self.canonical_retry_headers);
            let service = ServiceBuilder::new()
                .layer(RetryLayer::new(policy))
                .layer(normalize)
                .layer(ModelMapLayer::new(route.models))
                .service(RouteTransport::new(base, route.headers));
            failover = failover.route(route.id, service);
        }
        // Longest path prefix first, so `/anthropic` is stripped before `/`.
        bases.sort_by_key(|b| std::cmp::Reverse(b.path().trim_end_matches('/').len()));
        let failover = failover.build();
        Ok(ClaudeMiddleware {
            breakers: failover.breakers(),
            stack: ToolPairingLayer::new(self.mode).layer(failover),
            bases: bases.into(),
            body_limit: self.body_limit,
        })
    }
}

impl fmt::Debug for ClaudeMiddlewareBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaudeMiddlewareBuilder")
            .field("routes", &self.routes)
            .field("tool_pairing", &self.mode)
            .field("breaker", &self.breaker)
            .field("rewrite_envelope", &self.rewrite_envelope)
            .field("canonical_retry_headers", &self.canonical_retry_headers)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

fn parse_base(id: &RouteId, base: &str) -> Result<Url, BuildError> {
    let invalid = |reason: String| BuildError::InvalidBaseUrl {
        route: id.clone(),
        reason,
    };
    let url = Url::parse(base).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {} is not http or https",
            url.scheme()
        )));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(invalid("the URL has no host".to_owned()));
    }
    if url.query().is_some() {
        return Err(invalid("a base URL cannot carry a query".to_owned()));
    }
    Ok(url)
}

/// Why [`ClaudeMiddlewareBuilder::build`] refused its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// No route was added.
    NoRoutes,
    /// More routes than Failover keeps
    /// ([`MAX_ROUTES`](claude_tower_failover::failover::MAX_ROUTES)).
    TooManyRoutes {
        /// How many were added.
        count: usize,
    },
    /// Two routes share a name; breakers and reports go by name.
    DuplicateRoute {
        /// The name.
        route: RouteId,
    },
    /// A route's base URL is not an absolute `http` or `https` URL.
    InvalidBaseUrl {
        /// The route.
        route: RouteId,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoRoutes => f.write_str("claude middleware: no route was added"),
            BuildError::TooManyRoutes { count } => write!(
                f,
                "claude middleware: {count} routes added, at most {MAX_ROUTES} are supported"
            ),
            BuildError::DuplicateRoute { route } => {
                write!(f, "claude middleware: route {route} was added twice")
            }
            BuildError::InvalidBaseUrl { route, reason } => {
                write!(
                    f,
                    "claude middleware: route {route}: invalid base URL: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for BuildError {}
