//! [`ReqwestService`]: a `reqwest::Client` as the transport under a route's
//! stack.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use claude_tower_core::{ClaudeError, ReplayBody};
use http::{Request, Response};
use pin_project_lite::pin_project;
use reqwest::{Client, Url};
use tower_service::Service;

use crate::convert::{classify_reqwest_error, from_reqwest, into_reqwest, target_url};

/// A [`reqwest::Client`] as a tower `Service<http::Request<ReplayBody>>`:
/// the transport at the bottom of a claude-tower route
/// (Retry -> Normalize -> ModelMap -> Auth -> **transport**).
///
/// - The request URI is sent as it is when it is absolute (Auth's endpoint
///   rewrite makes it so), or appended to the [base URL](Self::with_base_url)
///   when one is set. A `Host` header is dropped: reqwest writes the right one.
/// - The response is `http::Response<reqwest::Body>`, streamed: the body is
///   never read here, so an SSE stream passes through frame by frame. The
///   URL that answered is kept, so `reqwest::Response::from(response)`
///   reports it.
/// - Errors are [`ClaudeError`]s of class
///   [`Timeout`](claude_tower_core::ErrorClass::Timeout) (reqwest's
///   `is_timeout`) or [`Transport`](claude_tower_core::ErrorClass::Transport)
///   (connect failures, resets, connections closed before a response), with
///   the `reqwest::Error` as their [`source`](std::error::Error::source).
///   Normalize passes them through and fills in the route; Retry and
///   Failover read the class.
///
/// Nothing is boxed per request beyond what reqwest itself does: the
/// future wraps `reqwest::Client`'s own `Service` future.
///
/// Credentials are not this service's business: Auth (or the caller) sets
/// them on the request, and a `reqwest::Client` built with default headers
/// adds its own.
///
/// ```
/// use claude_tower_core::{ReplayBody, RouteId, Face};
/// use claude_tower_normalize::NormalizeLayer;
/// use claude_tower_reqwest::ReqwestService;
/// use claude_tower_sim::{Sim, SimConfig};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sim = Sim::start(SimConfig::default()).await.unwrap();
/// let transport = ReqwestService::new(reqwest::Client::new())
///     .with_base_url(sim.anthropic_base_url().parse().unwrap());
/// let route = ServiceBuilder::new()
///     .layer(NormalizeLayer::new(RouteId::new("anthropic"), Face::Anthropic))
///     .service(transport);
///
/// let request = http::Request::post("/v1/messages")
///     .header("x-api-key", "sk-test")
///     .header("anthropic-version", "2023-06-01")
///     .body(ReplayBody::from(r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#))
///     .unwrap();
/// let response = route.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct ReqwestService {
    client: Client,
    base: Option<Url>,
}

impl ReqwestService {
    /// Sends requests through `client`; request URIs must be absolute.
    pub fn new(client: Client) -> Self {
        Self { client, base: None }
    }

    /// Appends each request's path and query to `base` (its scheme, host,
    /// port and path prefix): `https://r.services.ai.azure.com/anthropic`
    /// turns `/v1/messages?beta=true` into
    /// `https://r.services.ai.azure.com/anthropic/v1/messages?beta=true`.
    pub fn with_base_url(mut self, base: Url) -> Self {
        self.base = Some(base);
        self
    }

    /// The client requests are sent through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The base URL, if one is set.
    pub fn base_url(&self) -> Option<&Url> {
        self.base.as_ref()
    }
}

impl fmt::Debug for ReqwestService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestService")
            .field("base", &self.base.as_ref().map(crate::redacted_url))
            .finish_non_exhaustive()
    }
}

impl Service<Request<ReplayBody>> for ReqwestService {
    type Response = Response<reqwest::Body>;
    type Error = ClaudeError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // NOTE: reqwest's client is always ready; its pool waits inside the
        // request future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReplayBody>) -> Self::Future {
        let request = target_url(request.uri(), self.base.as_ref())
            .and_then(|url| into_reqwest(request, &url));
        match request {
            Ok(request) => ResponseFuture::sending(self.client.call(request)),
            Err(err) => ResponseFuture::failed(err),
        }
    }
}

/// reqwest's own future for `Client::call`; named through the `Service`
/// impl because reqwest does not export the type.
type Pending = <Client as Service<reqwest::Request>>::Future;

pin_project! {
    /// The response future of [`ReqwestService`].
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Sending { #[pin] pending: Pending },
        Failed { err: Option<ClaudeError> },
    }
}

impl ResponseFuture {
    fn sending(pending: Pending) -> Self {
        Self {
            state: State::Sending { pending },
        }
    }

    fn failed(err: ClaudeError) -> Self {
        Self {
            state: State::Failed { err: Some(err) },
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Sending { .. } => "sending",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<reqwest::Body>, ClaudeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sending { pending } => pending
                .poll(cx)
                .map(|result| result.map(from_reqwest).map_err(classify_reqwest_error)),
            StateProj::Failed { err } => Poll::Ready(Err(err.take().unwrap_or_else(|| {
                ClaudeError::new(
                    claude_tower_core::ErrorClass::Transport,
                    "response future polled after completion",
                )
            }))),
        }
    }
}
