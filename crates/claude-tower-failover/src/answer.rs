//! [`ErrorEnvelopeLayer`]: answer a failure as Anthropic would, so the
//! service above never sees an error.
//!
//! [`Failover`](crate::Failover) returns `Err(ClaudeError)` when no route
//! produced a response at all (every route refused the connection, or a
//! credential could not be obtained). A gateway must still answer its
//! client, and an axum service must be infallible, so [`ErrorEnvelopeLayer`]
//! renders that error with [`error_response`]: Anthropic's envelope, the
//! class's status (502 for a transport failure, 504 for a timeout, 401 for a
//! credential failure), canonical retry headers and `x-should-retry`. The
//! [`ClaudeError`] and the [`FailoverReport`] ride along in the response
//! extensions, exactly as on a response a route produced. The body is core's
//! [`ResponseBody`]: the inner body untouched, or the local envelope.
//!
//! # Readiness errors
//!
//! The layer is infallible (`Error = Infallible`) for any inner service
//! whose error converts into a [`ClaudeError`]. A readiness error cannot be
//! returned from `poll_ready` then, and it must not be swallowed either. So
//! when the inner service fails `poll_ready`, the layer reports ready, keeps
//! the error, and answers it as the envelope of the call that follows, and
//! of every later call on this instance, without polling or calling the
//! inner service again: tower's contract is that a service which failed
//! readiness is not to be used any more. (Failover itself is always ready;
//! this matters for a user's service under the layer, such as a
//! `tower::buffer::Buffer` whose worker died.)
//!
//! ```
//! use bytes::Bytes;
//! use claude_tower_core::{ClaudeError, ErrorClass};
//! use claude_tower_failover::ErrorEnvelopeLayer;
//! use http::{Request, Response};
//! use http_body_util::Empty;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let unreachable = service_fn(|_req: Request<()>| async {
//!     Err::<Response<Empty<Bytes>>, _>(ClaudeError::new(ErrorClass::Transport, "connection refused"))
//! });
//! let res = ErrorEnvelopeLayer::new().layer(unreachable).oneshot(Request::new(())).await.unwrap();
//! assert_eq!(res.status(), 502);
//! assert!(res.body().is_local());
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use claude_tower_core::{ClaudeError, ResponseBody, error_response};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::FailoverReport;

/// Renders errors of the inner service as Anthropic error responses; see the
/// [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorEnvelopeLayer {
    _priv: (),
}

impl ErrorEnvelopeLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for ErrorEnvelopeLayer {
    type Service = ErrorEnvelope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorEnvelope::new(inner)
    }
}

/// Middleware that turns `Err(ClaudeError)` into an error response; see
/// [`ErrorEnvelopeLayer`].
#[derive(Clone)]
pub struct ErrorEnvelope<S> {
    inner: S,
    // The inner service failed readiness: every call answers this.
    failed: Option<ClaudeError>,
}

impl<S> ErrorEnvelope<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            failed: None,
        }
    }

    /// The wrapped service.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ErrorEnvelope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorEnvelope")
            .field("inner", &self.inner)
            .field("failed", &self.failed)
            .finish()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ErrorEnvelope<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<ClaudeError>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.failed.is_some() {
            return Poll::Ready(Ok(()));
        }
        match ready!(self.inner.poll_ready(cx)) {
            Ok(()) => {}
            Err(err) => {
                let err: ClaudeError = err.into();
                tracing::warn!(error = %err, "inner service failed readiness; answering with its error");
                self.failed = Some(err);
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let state = match &self.failed {
            Some(err) => State::Failed {
                err: Some(err.clone()),
            },
            None => State::Called {
                future: self.inner.call(req),
            },
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// Response future of [`ErrorEnvelope`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] future: F },
        // The inner service failed readiness; `None` once answered.
        Failed { err: Option<ClaudeError> },
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<ClaudeError>,
{
    type Output = Result<Response<ResponseBody<ResB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project().state.project() {
            StateProj::Called { future } => match ready!(future.poll(cx)) {
                Ok(response) => response.map(ResponseBody::upstream),
                Err(err) => render(err.into()),
            },
            StateProj::Failed { err } => {
                let err = err
                    .take()
                    .expect("ErrorEnvelope future polled after completion");
                render(err)
            }
        };
        Poll::Ready(Ok(response))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

fn render<B>(err: ClaudeError) -> Response<ResponseBody<B>> {
    let mut response = error_response::<Bytes>(&err).map(ResponseBody::local);
    if let Some(report) = FailoverReport::from_error(&err) {
        response.extensions_mut().insert(report.clone());
    }
    response.extensions_mut().insert(err);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_tower_core::{ErrorClass, RouteId};
    use http_body_util::{BodyExt, Full};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    async fn json(res: Response<ResponseBody<Full<Bytes>>>) -> serde_json::Value {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_transport_error_becomes_a_502_envelope() {
        let failing = tower::service_fn(|_req: Request<()>| async {
            Err::<Response<Full<Bytes>>, _>(
                ClaudeError::new(ErrorClass::Transport, "connection refused")
                    .with_route(RouteId::new("anthropic")),
            )
        });
        let res = ErrorEnvelopeLayer::new()
            .layer(failing)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(res.status(), 502);
        assert_eq!(res.headers()["x-should-retry"], "true");
        let kept = res.extensions().get::<ClaudeError>().unwrap();
        assert_eq!(kept.route().map(RouteId::as_str), Some("anthropic"));
        let v = json(res).await;
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(v["error"]["message"], "connection refused");
    }

    #[tokio::test]
    async fn responses_pass_untouched() {
        let ok = tower::service_fn(|_req: Request<()>| async {
            Ok::<_, ClaudeError>(Response::new(Full::new(Bytes::from_static(b"fine"))))
        });
        let res = ErrorEnvelope::new(ok)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(!res.body().is_local());
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "fine");
    }

    /// A service whose readiness fails once it has served `healthy` calls.
    #[derive(Clone)]
    struct Dies {
        polled: Arc<AtomicUsize>,
        called: Arc<AtomicUsize>,
        healthy: usize,
    }

    impl Service<Request<()>> for Dies {
        type Response = Response<Full<Bytes>>;
        type Error = ClaudeError;
        type Future = std::future::Ready<Result<Self::Response, ClaudeError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ClaudeError>> {
            let n = self.polled.fetch_add(1, Ordering::SeqCst);
            if n < self.healthy {
                Poll::Ready(Ok(()))
            } else {
                Poll::Ready(Err(ClaudeError::new(
                    ErrorClass::Overloaded,
                    "the worker is gone",
                )))
            }
        }

        fn call(&mut self, _req: Request<()>) -> Self::Future {
            self.called.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
        }
    }

    #[tokio::test]
    async fn a_readiness_error_is_answered_by_every_later_call_not_swallowed() {
        let dies = Dies {
            polled: Arc::default(),
            called: Arc::default(),
            healthy: 1,
        };
        let (polled, called) = (dies.polled.clone(), dies.called.clone());
        let mut svc = ErrorEnvelopeLayer::new().layer(dies);

        let first = svc.ready().await.unwrap().call(Request::new(())).await;
        assert_eq!(first.unwrap().status(), 200);

        for _ in 0..2 {
            let res = svc
                .ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap();
            assert_eq!(res.status(), 503);
            assert_eq!(
                res.extensions().get::<ClaudeError>().unwrap().class(),
                ErrorClass::Overloaded
            );
            assert_eq!(json(res).await["error"]["message"], "the worker is gone");
        }
        // Polled until it failed, then never again; called only while healthy.
        assert_eq!(polled.load(Ordering::SeqCst), 2);
        assert_eq!(called.load(Ordering::SeqCst), 1);
    }
}
