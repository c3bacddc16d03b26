//! [`ClaudeMiddleware`]: claude-tower's layers as a `reqwest_middleware`
//! middleware.
//!
//! A team that already sends its Claude calls through a
//! `reqwest_middleware::ClientWithMiddleware` adds tool-pairing checks,
//! failover across routes, Retry-After-aware retries and one error surface
//! for both routes in one line:
//!
//! ```
//! use claude_tower_core::{ClaudeError, Face};
//! use claude_tower_failover::FailoverReport;
//! use claude_tower_reqwest::ClaudeMiddleware;
//! use claude_tower_sim::{Sim, SimConfig};
//! use reqwest_middleware::ClientBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Sim::start(SimConfig::default()).await?;
//! sim.set_faults("anthropic=529*10")?; // the primary is overloaded
//!
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(
//!         ClaudeMiddleware::builder()
//!             .route("anthropic", sim.anthropic_base_url(), Face::Anthropic)
//!             .route("foundry", sim.foundry_base_url(), Face::Foundry)
//!             .build()?,
//!     )
//!     .build();
//!
//! let response = client
//!     .post(format!("{}/v1/messages", sim.anthropic_base_url()))
//!     .header("x-api-key", "sk-test")
//!     .header("anthropic-version", "2023-06-01")
//!     .body(r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#)
//!     .send()
//!     .await?;
//! assert_eq!(response.status(), 200);
//! let report = response.extensions().get::<FailoverReport>().unwrap();
//! assert_eq!(report.served_by().unwrap(), "foundry");
//! # Ok(()) }
//! ```
//!
//! # What runs, in order
//!
//! 1. The request body is taken as bytes ([`ReplayBody`]); over the
//!    [limit](ClaudeMiddlewareBuilder::body_limit) the answer is a local
//!    413 in Anthropic's envelope.
//! 2. Tool pairing ([`Mode`](claude_tower_toolpair::Mode), default
//!    `Reject`): a broken conversation is answered with a local 400 in
//!    Anthropic's envelope and the API's own wording; nothing is sent.
//! 3. Failover across the routes in the order they were added, with a
//!    circuit breaker per route ([`breakers`](ClaudeMiddleware::breakers)).
//!    A 400 never fails over; a 429, 529, 5xx, timeout or connect failure
//!    does.
//! 4. Per route: Retry ([`RetryAfterPolicy`](claude_tower_retry::RetryAfterPolicy),
//!    honouring Retry-After up to a cap) above Normalize (classifies every
//!    answer of the route's [`Face`](claude_tower_core::Face)) above
//!    ModelMap (the route's [model names](Route::models), if any).
//! 5. The request is re-based on the route's base URL and sent through the
//!    rest of the middleware chain (`Next`), once per attempt.
//!
//! # Addressing
//!
//! Requests are addressed as to any one of the routes: the path below a
//! route's base URL (and the query) is kept, and re-based on each route's
//! base URL in turn. `{anthropic}/v1/messages?beta=true` and
//! `{foundry}/anthropic/v1/messages?beta=true` both become
//! `/v1/messages?beta=true` on every route. A URL that matches no route's
//! base keeps its whole path.
//!
//! # What comes back
//!
//! - The route's response, streamed (an SSE body is never buffered). Its
//!   `url()` is the URL that answered. Its extensions hold the
//!   [`FailoverReport`](claude_tower_failover::FailoverReport) (which route
//!   served, attempts per route), the
//!   [`Attempt`](claude_tower_core::Attempt),
//!   [`RequestIds`](claude_tower_core::RequestIds), and, for a failed
//!   answer, the [`ClaudeError`] that
//!   classified it.
//! - When every route failed without an answer (connect failures,
//!   timeouts), the error of the attempt Failover chose, **as the chain
//!   below returned it**: a `reqwest_middleware::Error::Reqwest` still
//!   answers `is_timeout()` and `is_connect()`. An error made by the layers
//!   themselves (every breaker open) is `Error::Middleware` holding a
//!   [`ClaudeError`].
//! - The `http::Extensions` the middlewares after this one left on the
//!   attempt that answered are merged into the caller's; each attempt
//!   starts from a copy of the caller's.
//!
//! # Credentials
//!
//! Credentials are the client's business: the headers on the request (or
//! the `reqwest::Client`'s default headers) go to every route as they are.
//! When routes need different credentials, set them per route with
//! [`Route::header`]; those replace the request's. For Entra ID tokens, put
//! `claude-tower-auth` in a tower stack over [`ReqwestService`](crate::ReqwestService)
//! instead.
//!
//! # Requests that cannot be replayed
//!
//! A request whose body is a stream (`reqwest::Body::wrap_stream`, where
//! `body.as_bytes()` is `None`) could be sent only once, so it is passed
//! straight to the rest of the chain: no tool-pairing check, no retry, no
//! failover. Messages requests are JSON bodies built in memory, so in
//! practice this is only uploads.
//!
//! # Cost
//!
//! Per request: one channel, the conversion of the request into an
//! `http::Request` and back for each attempt, a oneshot for each attempt,
//! and a re-boxed response body (reqwest-middleware boxes every middleware
//! call anyway). The stack itself (breakers, retry budgets)
//! is built once and shared by every request.

mod builder;
mod dispatch;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use claude_tower_core::{BufferError, ClaudeError, ErrorClass, ReplayBody, error_response};
use claude_tower_failover::{Breakers, Failover, ModelMap};
use claude_tower_normalize::Normalize;
use claude_tower_retry::Retry;
use claude_tower_toolpair::ToolPairing;
use http::{Extensions, StatusCode, Uri};
use reqwest::Url;
use reqwest_middleware::{Middleware, Next};
use tower::ServiceExt;

pub use builder::{BuildError, ClaudeMiddlewareBuilder, Route};

use crate::convert::remember_url;
use dispatch::{AttemptExtensions, Dispatch, RouteTransport, drive};

type RouteStack = Retry<Normalize<ModelMap<RouteTransport>>>;
type Stack = ToolPairing<Failover<RouteStack>>;

/// claude-tower's layers around the rest of a `reqwest_middleware` chain:
/// tool pairing, failover across routes, per-route retry and normalize.
///
/// See the [module docs](self) for what runs and what comes back.
#[derive(Clone)]
pub struct ClaudeMiddleware {
    stack: Stack,
    breakers: Breakers,
    // Route base URLs, longest path first, to find a request's path below
    // the route it was addressed to.
    bases: Arc<[Url]>,
    body_limit: usize,
}

impl ClaudeMiddleware {
    /// A builder; add at least one route.
    pub fn builder() -> ClaudeMiddlewareBuilder {
        ClaudeMiddlewareBuilder::new()
    }

    /// A handle on every route's circuit breaker (for a health endpoint or
    /// metrics); it stays live after the middleware is moved into a client.
    pub fn breakers(&self) -> Breakers {
        self.breakers.clone()
    }

    /// The request's path below the route base it was addressed to, and its
    /// query, as an origin-form URI.
    fn relative_uri(&self, url: &Url) -> Result<Uri, http::uri::InvalidUri> {
        let path = url.path();
        let below = self
            .bases
            .iter()
            .filter(|base| {
                base.scheme() == url.scheme()
                    && base.host_str() == url.host_str()
                    && base.port_or_known_default() == url.port_or_known_default()
            })
            .find_map(|base| {
                let prefix = base.path().trim_end_matches('/');
                let rest = path.strip_prefix(prefix)?;
                (rest.is_empty() || rest.starts_with('/')).then_some(rest)
            })
            .unwrap_or(path);
        let below = if below.is_empty() { "/" } else { below };
        match url.query() {
            Some(query) => format!("{below}?{query}").parse(),
            None => below.parse(),
        }
    }
}

impl fmt::Debug for ClaudeMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaudeMiddleware")
            .field(
                "routes",
                &self
                    .bases
                    .iter()
                    .map(crate::redacted_url)
                    .collect::<Vec<_>>(),
            )
            .field("breakers", &self.breakers)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Middleware for ClaudeMiddleware {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        if request.body().is_some_and(|b| b.as_bytes().is_none()) {
            tracing::debug!("request body is a stream; sent once, without claude-tower");
            return next.run(request, extensions).await;
        }
        let url = request.url().clone();
        let uri = match self.relative_uri(&url) {
            Ok(uri) => uri,
            Err(e) => {
                let err =
                    ClaudeError::new(ErrorClass::InvalidRequest, "request URL is not a valid URI")
                        .with_source(e);
                return Err(reqwest_middleware::Error::middleware(err));
            }
        };
        let body = request.body_mut().take();
        let http_request =
            http::Request::try_from(request).map_err(reqwest_middleware::Error::Reqwest)?;
        let (mut parts, _) = http_request.into_parts();
        let body = match body {
            None => ReplayBody::empty(),
            Some(body) => match ReplayBody::buffer(body, self.body_limit).await {
                Ok(body) => body,
                Err(BufferError::TooLarge { limit }) => {
                    let err = ClaudeError::new(
                        ErrorClass::InvalidRequest,
                        format!("request body is larger than the {limit} byte limit"),
                    )
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE);
                    return Ok(local_response(&err, url));
                }
                Err(err) => return Err(reqwest_middleware::Error::middleware(err)),
            },
        };
        parts.uri = uri;
        let (dispatch, jobs) = Dispatch::new(extensions.clone());
        parts.extensions.insert(dispatch);
        let request = http::Request::from_parts(parts, body);

        let (result, mut failures) = drive(next, jobs, self.stack.clone().oneshot(request)).await;
        match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                if let Some(AttemptExtensions(attempt)) = parts.extensions.remove() {
                    extensions.extend(attempt);
                }
                if body.is_local() {
                    remember_url(&mut parts.extensions, url);
                }
                let body = reqwest::Body::wrap(body);
                Ok(reqwest::Response::from(http::Response::from_parts(
                    parts, body,
                )))
            }
            Err(err) => {
                tracing::debug!(error = %err, "every route failed without an answer");
                match failures.take_original(&err) {
                    Some(original) => Err(original),
                    None => Err(reqwest_middleware::Error::middleware(err)),
                }
            }
        }
    }
}

/// A local answer in Anthropic's envelope, as a `reqwest::Response`.
fn local_response(err: &ClaudeError, url: Url) -> reqwest::Response {
    let (mut parts, body) = error_response::<Bytes>(err).into_parts();
    remember_url(&mut parts.extensions, url);
    reqwest::Response::from(http::Response::from_parts(parts, reqwest::Body::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_tower_core::Face;

    fn middleware() -> ClaudeMiddleware {
        ClaudeMiddleware::builder()
            .route("anthropic", "https://api.anthropic.com", Face::Anthropic)
            .route(
                "foundry",
                "https://res.services.ai.azure.com/anthropic/",
                Face::Foundry,
            )
            .build()
            .unwrap()
    }

    fn relative(url: &str) -> String {
        middleware()
            .relative_uri(&Url::parse(url).unwrap())
            .unwrap()
            .to_string()
    }

    #[test]
    fn finds_the_path_below_the_route_a_request_was_addressed_to() {
        assert_eq!(
            relative("https://res.services.ai.azure.com/anthropic/v1/messages?beta=true"),
            "/v1/messages?beta=true"
        );
        assert_eq!(
            relative("https://api.anthropic.com/v1/messages"),
            "/v1/messages"
        );
        // Same host, but not below the base path: kept whole.
        assert_eq!(
            relative("https://res.services.ai.azure.com/anthropicx/v1/messages"),
            "/anthropicx/v1/messages"
        );
        // Another host or port: kept whole.
        assert_eq!(
            relative("https://gateway.local/anthropic/v1/messages"),
            "/anthropic/v1/messages"
        );
        assert_eq!(
            relative("https://res.services.ai.azure.com:8443/anthropic/v1/messages"),
            "/anthropic/v1/messages"
        );
        assert_eq!(relative("https://res.services.ai.azure.com/anthropic"), "/");
    }
}
