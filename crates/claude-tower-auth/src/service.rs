//! [`Auth`]: the per-request work.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use claude_tower_core::headers::{
    ANTHROPIC_VERSION, ANTHROPIC_VERSION_VALUE, AUTHORIZATION, CREDENTIAL_HEADERS,
};
use claude_tower_core::{ClaudeError, ErrorClass, Face};
use http::{HeaderValue, Request, Response, Version};
use tower_service::Service;

use crate::BoxError;
use crate::credential::{Credential, Kind, PASSTHROUGH_FACE_CODE};
use crate::endpoint::caller_face;
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

    /// The error of this route, named when it has a name.
    fn error(&self, err: ClaudeError) -> BoxError {
        Box::new(match &self.config.route {
            Some(route) => err.with_route(route.clone()),
            None => err,
        })
    }

    /// A passthrough route's checks, before anything is changed: the caller
    /// speaks this route's face (see [`Credential::passthrough`]).
    fn admit_caller<B>(&self, req: &Request<B>) -> Result<(), BoxError> {
        let face = self.config.endpoint.face();
        if caller_face(req.uri().path()) == face {
            return Ok(());
        }
        let wanted = match face {
            Face::Foundry => "Foundry-mode callers (requests under /anthropic/)",
            Face::Anthropic => "Anthropic-mode callers (requests not under /anthropic/)",
        };
        Err(self.error(
            ClaudeError::new(
                ErrorClass::RouteUnavailable,
                format!("this route forwards the caller's own credential and takes only {wanted}"),
            )
            .with_code(PASSTHROUGH_FACE_CODE),
        ))
    }

    /// Everything but the credential: strip, rewrite, version.
    fn prepare<B>(&self, req: &mut Request<B>, keep_credentials: bool) -> Result<(), BoxError> {
        // NOTE: the caller's HTTP version described the caller's connection.
        // hyper-util's client refuses an HTTP/2 request on an HTTP/1
        // connection, while HTTP/1.1 is sent as HTTP/2 on a connection whose
        // ALPN chose h2 (h2 encodes the absolute URI as `:scheme` and
        // `:authority` whatever the version says). So HTTP/1.1 lets the
        // transport choose, and an HTTP/1.0 caller does not make the route
        // speak 1.0 (no chunked bodies, no keep-alive).
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        // Hop-by-hop headers; the inbound Host, which names us (or the
        // caller's gateway), not the route; the caller's credentials.
        hop::strip_request_for_route(headers, keep_credentials);
        headers
            .entry(ANTHROPIC_VERSION)
            .or_insert(HeaderValue::from_static(ANTHROPIC_VERSION_VALUE));
        let uri = self
            .config
            .endpoint
            .rewrite_owned(std::mem::take(req.uri_mut()))
            .map_err(|e| {
                self.error(
                    ClaudeError::new(
                        ErrorClass::InvalidRequest,
                        format!(
                            "request path cannot be moved onto {}",
                            self.config.endpoint.base_url()
                        ),
                    )
                    .with_source(e),
                )
            })?;
        *req.uri_mut() = uri;
        Ok(())
    }
}

impl<S> Auth<S> {
    /// Passthrough: keeps the caller's credential headers, marked sensitive;
    /// a request without one is refused here, unsent.
    fn keep_callers_credential<B>(&self, req: &mut Request<B>) -> Result<(), BoxError> {
        let headers = req.headers_mut();
        // NOTE: only a bearer token is a credential for either API; another
        // scheme (Basic for a proxy in front, say) is not forwarded.
        if let Some(value) = headers.get(AUTHORIZATION)
            && !is_bearer(value)
        {
            headers.remove(AUTHORIZATION);
        }
        let mut found = false;
        for name in CREDENTIAL_HEADERS {
            if let http::header::Entry::Occupied(mut entry) = headers.entry(name) {
                for value in entry.iter_mut() {
                    found |= !value.as_bytes().trim_ascii().is_empty();
                    value.set_sensitive(true);
                }
            }
        }
        if found {
            return Ok(());
        }
        Err(self.error(ClaudeError::new(
            ErrorClass::Auth,
            "this route forwards the caller's own credential and the request carries none: \
                 send x-api-key, api-key or Authorization: Bearer",
        )))
    }
}

/// `Bearer <token>`, the scheme compared case-insensitively.
fn is_bearer(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ")
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
        let passthrough = self.config.credential.is_passthrough();
        let prepared = if passthrough {
            self.admit_caller(&req)
                .and_then(|()| self.prepare(&mut req, true))
                .and_then(|()| self.keep_callers_credential(&mut req))
        } else {
            self.prepare(&mut req, false)
        };
        if let Err(err) = prepared {
            return ResponseFuture::failed(err);
        }
        match &self.config.credential.kind {
            Kind::None | Kind::Passthrough => ResponseFuture::called(self.inner.call(req), None),
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
