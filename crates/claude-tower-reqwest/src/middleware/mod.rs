//! [`ClaudeMiddleware`]: claude-tower's stack as a `reqwest_middleware`
//! middleware.
//!
//! A team that already sends its Claude calls through a
//! `reqwest_middleware::ClientWithMiddleware` adds tool-pairing checks,
//! failover across routes, Retry-After-aware retries and one error surface
//! for both routes in one line. The middleware is built from the same
//! [`ClaudeStack`] and [`Route`](claude_tower::stack::Route)s as a tower or
//! axum user's stack: one builder, one set of defaults, one error type.
//!
//! ```
//! use claude_tower::prelude::*;
//! use claude_tower_reqwest::ClaudeMiddleware;
//! use claude_tower_sim::{Sim, SimConfig};
//! use reqwest_middleware::ClientBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Sim::start(SimConfig::default()).await?;
//! sim.set_faults("anthropic=529*10")?; // the primary is overloaded
//!
//! let stack = ClaudeStack::new()
//!     .route(Route::new(
//!         "anthropic",
//!         Endpoint::anthropic_base_url(&sim.anthropic_base_url())?,
//!         Credential::anthropic_api_key(Secret::new("sk-ant-..."))?,
//!     ))
//!     .route(Route::new(
//!         "foundry",
//!         Endpoint::foundry_base_url(&sim.foundry_base_url())?,
//!         Credential::foundry_api_key(Secret::new("foundry-key"))?,
//!     ));
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(ClaudeMiddleware::new(stack)?)
//!     .build();
//!
//! let response = client
//!     .post(format!("{}/v1/messages", sim.anthropic_base_url()))
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
//! Exactly what [`ClaudeStack`] assembles (see `claude_tower::stack`), with
//! the rest of the middleware chain (`Next`) as the transport: Replay (the
//! body as bytes; over the limit a local 413), ToolPairing, ErrorEnvelope,
//! Failover, and per route Retry -> the route's own layers -> Normalize ->
//! ModelMap -> Auth -> `Next`, once per attempt. Layers added with
//! `ClaudeStack::layer` are not supported here (the middleware takes a
//! `ClaudeStack` without them); per-route layers are.
//!
//! # Addressing
//!
//! Requests are addressed as to any one of the routes: the path below a
//! route's base URL (and the query) is kept, and each route's Auth moves it
//! onto its own endpoint. `{anthropic}/v1/messages?beta=true` and
//! `{foundry}/anthropic/v1/messages?beta=true` both become
//! `/v1/messages?beta=true` on every route. A URL that matches no route's
//! base keeps its whole path.
//!
//! # Credentials
//!
//! Each route's [`Credential`](claude_tower::auth::Credential) is sent to that
//! route, as in every claude-tower stack, and credential headers on the
//! request (or the `reqwest::Client`'s default headers) are removed first, so
//! a key meant for one route never reaches another. Entra ID tokens work
//! here too (`claude-tower` feature `entra`).
//!
//! # What comes back
//!
//! - The route's response, streamed (an SSE body is never buffered). Its
//!   `url()` is the URL that answered. Its extensions hold the
//!   [`FailoverReport`](claude_tower::failover::FailoverReport), the
//!   [`Attempt`](claude_tower_core::Attempt),
//!   [`RequestIds`](claude_tower_core::RequestIds), and, for a failed
//!   answer, the [`ClaudeError`] that classified it.
//! - A local answer (413, a pairing 400, every breaker open) is a response in
//!   Anthropic's envelope, with the [`ClaudeError`] in its extensions.
//! - When every route failed without an answer because the chain below
//!   failed (connect failures, timeouts, a later middleware's error), the
//!   error of the attempt Failover chose, **as the chain below returned
//!   it**: a `reqwest_middleware::Error::Reqwest` still answers
//!   `is_timeout()` and `is_connect()`.
//! - The `http::Extensions` the middlewares after this one left on the
//!   attempt that answered are merged into the caller's; each attempt
//!   starts from a copy of the caller's.
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
//! call anyway). The stack itself (breakers, retry budgets) is built once
//! and shared by every request.

mod dispatch;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use claude_tower::failover::Breakers;
use claude_tower::stack::{ClaudeService, ClaudeStack, StackError};
use claude_tower_core::{ClaudeError, ErrorClass};
use http::{Extensions, Uri};
use reqwest::Url;
use reqwest_middleware::{Middleware, Next};
use tower::ServiceExt;

use crate::convert::remember_url;
use dispatch::{AttemptExtensions, Dispatch, NextTransport, drive};

/// claude-tower's stack around the rest of a `reqwest_middleware` chain.
///
/// See the [module docs](self) for what runs and what comes back.
#[derive(Clone)]
pub struct ClaudeMiddleware {
    stack: ClaudeService<NextTransport>,
    // Route base URLs, longest path first, to find a request's path below
    // the route it was addressed to.
    bases: Arc<[Url]>,
}

impl ClaudeMiddleware {
    /// The middleware for `stack`'s routes and settings.
    pub fn new(stack: ClaudeStack) -> Result<Self, StackError> {
        let mut bases: Vec<Url> = stack
            .routes()
            .iter()
            .filter_map(|route| Url::parse(route.endpoint().base_url()).ok())
            .collect();
        // Longest path prefix first, so `/anthropic` is stripped before `/`.
        bases.sort_by_key(|b| std::cmp::Reverse(b.path().trim_end_matches('/').len()));
        Ok(Self {
            stack: stack.build(NextTransport)?,
            bases: bases.into(),
        })
    }

    /// A handle on every route's circuit breaker (for a health endpoint or
    /// metrics); it stays live after the middleware is moved into a client.
    pub fn breakers(&self) -> Breakers {
        self.stack.breakers().clone()
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
            .field("breakers", self.stack.breakers())
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
        let body = request
            .body_mut()
            .take()
            .unwrap_or_else(|| reqwest::Body::from(Bytes::new()));
        let http_request =
            http::Request::try_from(request).map_err(reqwest_middleware::Error::Reqwest)?;
        let (mut parts, _) = http_request.into_parts();
        parts.uri = uri;
        let (dispatch, jobs) = Dispatch::new(extensions.clone());
        parts.extensions.insert(dispatch);
        let request = http::Request::from_parts(parts, body);

        let (result, mut failures) = drive(next, jobs, self.stack.clone().oneshot(request)).await;
        let response = match result {
            Ok(response) => response,
            Err(never) => match never {},
        };
        // No route answered because the chain below failed: hand back its
        // own error, so `is_connect()` and friends keep working.
        if let Some(err) = response.extensions().get::<ClaudeError>()
            && let Some(original) = failures.take_original(err)
        {
            tracing::debug!(error = %err, "every route failed without an answer");
            return Err(original);
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_tower::prelude::*;

    fn middleware() -> ClaudeMiddleware {
        let stack = ClaudeStack::new()
            .route(Route::new(
                "anthropic",
                Endpoint::anthropic(),
                Credential::none(),
            ))
            .route(Route::new(
                "foundry",
                Endpoint::foundry_base_url("https://res.services.ai.azure.com/anthropic/").unwrap(),
                Credential::none(),
            ));
        ClaudeMiddleware::new(stack).unwrap()
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
