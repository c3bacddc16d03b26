//! Answer a failure as Anthropic would, so the stack never returns an error.
//!
//! [`Failover`](claude_tower_failover::Failover) returns `Err(ClaudeError)`
//! when no route produced a response at all (every route refused the
//! connection, or a credential could not be obtained). A gateway must still
//! answer its client, and an axum service must be infallible, so
//! [`ErrorEnvelopeLayer`] renders that error with
//! [`error_response`]: Anthropic's
//! envelope, the class's status (502 for a transport failure, 504 for a
//! timeout, 401 for a credential failure), canonical retry headers and
//! `x-should-retry`. The [`ClaudeError`] and the
//! [`FailoverReport`] ride along in the
//! response extensions, exactly as on a response a route produced.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use claude_tower_core::{ClaudeError, error_response};
use claude_tower_failover::FailoverReport;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// Renders errors of the inner service as Anthropic error responses.
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
        ErrorEnvelope { inner }
    }
}

/// Middleware that turns `Err(ClaudeError)` into an error response; see
/// [`ErrorEnvelopeLayer`].
#[derive(Clone, Debug)]
pub struct ErrorEnvelope<S> {
    inner: S,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ErrorEnvelope<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>, Error = ClaudeError>,
    ResB: From<Bytes>,
{
    type Response = Response<ResB>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // NOTE: a service that fails readiness has no way to answer; the
        // error is rendered by the request that follows instead.
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(err)) => {
                tracing::warn!(error = %err, "inner service failed readiness");
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// Response future of [`ErrorEnvelope`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, ResB> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, ClaudeError>>,
    ResB: From<Bytes>,
{
    type Output = Result<Response<ResB>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match ready!(self.project().inner.poll(cx)) {
            Ok(response) => response,
            Err(err) => render(err),
        };
        Poll::Ready(Ok(response))
    }
}

fn render<ResB: From<Bytes>>(err: ClaudeError) -> Response<ResB> {
    let mut response = error_response::<ResB>(&err);
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
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_transport_error_becomes_a_502_envelope() {
        let failing = tower::service_fn(|_req: Request<()>| async {
            Err::<Response<Bytes>, _>(
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
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(v["error"]["message"], "connection refused");
        let kept = res.extensions().get::<ClaudeError>().unwrap();
        assert_eq!(kept.route().map(RouteId::as_str), Some("anthropic"));
    }

    #[tokio::test]
    async fn responses_pass_untouched() {
        let ok = tower::service_fn(|_req: Request<()>| async {
            Ok::<_, ClaudeError>(Response::new(Bytes::from_static(b"fine")))
        });
        let res = ErrorEnvelope { inner: ok }
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.body(), "fine");
    }
}
