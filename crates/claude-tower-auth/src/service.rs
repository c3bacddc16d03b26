//! [`Auth`]: the per-request work.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use claude_tower_core::headers::{ANTHROPIC_VERSION, ANTHROPIC_VERSION_VALUE, CREDENTIAL_HEADERS};
use claude_tower_core::{ClaudeError, ErrorClass};
use http::{HeaderValue, Request, Response, Version, header::HOST};
use tower_service::Service;

use crate::BoxError;
use crate::credential::{Credential, Kind};
use crate::future::ResponseFuture;
use crate::hop;
use crate::layer::AuthConfig;

/// Strips inbound credentials and hop-by-hop headers, moves the request onto
/// the route's endpoint as HTTP/1.1 (the transport may upgrade it to HTTP/2
/// by ALPN), sets `anthropic-version` when absent and injects the route's
/// credential; drops hop-by-hop headers from the response.
///
/// Built by [`AuthLayer`](crate::AuthLayer). Errors are [`BoxError`]s: the
/// inner service's errors unchanged, or a boxed [`ClaudeError`] of class
/// [`Auth`](ErrorClass::Auth) when no valid token can be had.
pub struct Auth<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<AuthConfig>,
}

impl<S: Clone> Clone for Auth<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("endpoint", &self.config.endpoint.base_url())
            .field("credential", &self.config.credential)
            .finish()
    }
}

impl<S> Auth<S> {
    /// Wraps `inner`; see [`AuthLayer`](crate::AuthLayer).
    pub fn new(inner: S, endpoint: crate::Endpoint, credential: Credential) -> Self {
        tower_layer::Layer::layer(&crate::AuthLayer::new(endpoint, credential), inner)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Everything but the credential: strip, rewrite, version.
    fn prepare<B>(&self, req: &mut Request<B>) -> Result<(), BoxError> {
        // NOTE: the caller's HTTP version described the caller's connection.
        // hyper-util's client refuses an HTTP/2 request on an HTTP/1
        // connection, while HTTP/1.1 is sent as HTTP/2 on a connection whose
        // ALPN chose h2 (h2 encodes the absolute URI as `:scheme` and
        // `:authority` whatever the version says). So HTTP/1.1 lets the
        // transport choose, and an HTTP/1.0 caller does not make the route
        // speak 1.0 (no chunked bodies, no keep-alive).
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        hop::strip_request(headers);
        for name in CREDENTIAL_HEADERS {
            headers.remove(name);
        }
        // The inbound Host names us (or the caller's gateway), not the route.
        headers.remove(HOST);
        headers
            .entry(ANTHROPIC_VERSION)
            .or_insert(HeaderValue::from_static(ANTHROPIC_VERSION_VALUE));
        let uri = self
            .config
            .endpoint
            .rewrite_owned(std::mem::take(req.uri_mut()))
            .map_err(|e| {
                let err = ClaudeError::new(
                    ErrorClass::InvalidRequest,
                    format!(
                        "request path cannot be moved onto {}",
                        self.config.endpoint.base_url()
                    ),
                )
                .with_source(e);
                let err = match &self.config.route {
                    Some(route) => err.with_route(route.clone()),
                    None => err,
                };
                Box::new(err)
            })?;
        *req.uri_mut() = uri;
        Ok(())
    }
}

impl<S, B, ResB> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Err(err) = self.prepare(&mut req) {
            return ResponseFuture::failed(err);
        }
        match &self.config.credential.kind {
            Kind::None => ResponseFuture::called(self.inner.call(req), None),
            Kind::ApiKey {
                value,
                azure_header,
            } => {
                Credential::inject_key(value, *azure_header, req.headers_mut());
                ResponseFuture::called(self.inner.call(req), None)
            }
            #[cfg(feature = "entra")]
            Kind::Bearer(cache) => match cache.cached() {
                Some((header, ticket)) => {
                    req.headers_mut()
                        .insert(http::header::AUTHORIZATION, header);
                    ResponseFuture::called(self.inner.call(req), Some(ticket))
                }
                None => {
                    // Cold path: the ready service goes into the future and a
                    // clone takes its place (tower's Buffer/Oneshot pattern).
                    let clone = self.inner.clone();
                    let ready = std::mem::replace(&mut self.inner, clone);
                    let route = self.config.route.clone();
                    let fetch = cache.clone().fetch();
                    ResponseFuture::fetching(
                        Box::pin(async move {
                            fetch.await.map_err(|err| match (route, err.route()) {
                                (Some(route), None) => err.with_route(route),
                                _ => err,
                            })
                        }),
                        ready,
                        req,
                    )
                }
            },
        }
    }
}
