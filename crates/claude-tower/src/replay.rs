//! Buffer the request body once, so every layer below can replay it.
//!
//! The Messages API takes bodies up to 32 MiB, and retry and failover must be
//! able to send a request more than once. [`ReplayLayer`] reads the inbound
//! body into a [`ReplayBody`] (shared bytes; cloning a request is a reference
//! count increment) and hands `Request<ReplayBody>` to the stack below.
//!
//! A body over the limit is answered locally with 413 in Anthropic's
//! envelope (`request_too_large`) and nothing is sent upstream; a body whose
//! stream fails while being read is answered with 400. Response bodies are
//! never touched: only the request is buffered.
//!
//! ```
//! use bytes::Bytes;
//! use claude_tower::replay::ReplayLayer;
//! use claude_tower_core::ReplayBody;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let echo_len = tower::service_fn(|req: Request<ReplayBody>| async move {
//!     Ok::<_, std::convert::Infallible>(Response::new(Bytes::from(req.body().len().to_string())))
//! });
//! let svc = ServiceBuilder::new().layer(ReplayLayer::new().limit(8)).service(echo_len);
//!
//! let ok = svc.clone().oneshot(Request::new(Full::new(Bytes::from("12345")))).await.unwrap();
//! assert_eq!(ok.body(), "5");
//! let too_big = svc.oneshot(Request::new(Full::new(Bytes::from("123456789")))).await.unwrap();
//! assert_eq!(too_big.status(), 413);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use claude_tower_core::{
    BufferError, ClaudeError, DEFAULT_REQUEST_BODY_LIMIT, ErrorClass, ReplayBody, error_response,
};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// Buffers request bodies into [`ReplayBody`] up to a limit (default 32 MiB).
#[derive(Clone, Copy, Debug)]
pub struct ReplayLayer {
    limit: usize,
}

impl ReplayLayer {
    /// A layer with the Messages API's 32 MiB limit.
    pub fn new() -> Self {
        Self {
            limit: DEFAULT_REQUEST_BODY_LIMIT,
        }
    }

    /// Sets the largest body, in bytes, that is buffered; larger bodies get 413.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

impl Default for ReplayLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ReplayLayer {
    type Service = Replay<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Replay {
            inner,
            limit: self.limit,
        }
    }
}

/// Middleware that buffers request bodies; see [`ReplayLayer`].
#[derive(Clone, Debug)]
pub struct Replay<S> {
    inner: S,
    limit: usize,
}

impl<S> Replay<S> {
    /// Wraps `inner` with the default limit.
    pub fn new(inner: S) -> Self {
        ReplayLayer::new().layer(inner)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for Replay<S>
where
    S: Service<Request<ReplayBody>, Response = Response<ResB>> + Clone,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResB: From<Bytes>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<B, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The inner service was driven to readiness in `poll_ready`; keep that
        // instance for this request and leave a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        let state = if body
            .size_hint()
            .exact()
            .is_some_and(|len| len > self.limit as u64)
        {
            // Refused before a byte is read.
            State::Done {
                response: Some(too_large(self.limit)),
            }
        } else {
            State::Buffering {
                collect: Limited::new(body, self.limit).collect(),
                parts: Some(parts),
                inner: Some(inner),
            }
        };
        ResponseFuture {
            state,
            limit: self.limit,
        }
    }
}

pin_project! {
    /// Response future of [`Replay`].
    pub struct ResponseFuture<B, S>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        S: Service<Request<ReplayBody>>,
    {
        #[pin]
        state: State<B, S>,
        limit: usize,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, S>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        S: Service<Request<ReplayBody>>,
    {
        Buffering {
            #[pin]
            collect: Collect<Limited<B>>,
            parts: Option<Parts>,
            inner: Option<S>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Done {
            response: Option<S::Response>,
        },
    }
}

impl<B, S, ResB> Future for ResponseFuture<B, S>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S: Service<Request<ReplayBody>, Response = Response<ResB>>,
    ResB: From<Bytes>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Buffering {
                    collect,
                    parts,
                    inner,
                } => {
                    let outcome = ready!(collect.poll(cx));
                    let (Some(parts), Some(mut inner)) = (parts.take(), inner.take()) else {
                        // NOTE: both are only taken here, right before the
                        // state changes, so they are always present.
                        unreachable!("Replay future polled after buffering finished");
                    };
                    match outcome {
                        Ok(collected) => {
                            let body = ReplayBody::new(collected.to_bytes());
                            let future = inner.call(Request::from_parts(parts, body));
                            this.state.set(State::Calling { future });
                        }
                        Err(err) => {
                            let response = buffer_failed(err, *this.limit);
                            this.state.set(State::Done {
                                response: Some(response),
                            });
                        }
                    }
                }
                StateProj::Calling { future } => return future.poll(cx),
                StateProj::Done { response } => {
                    let response = response
                        .take()
                        .expect("Replay future polled after completion");
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

fn buffer_failed<ResB: From<Bytes>>(
    err: Box<dyn std::error::Error + Send + Sync>,
    limit: usize,
) -> Response<ResB> {
    if err.is::<LengthLimitError>() {
        return too_large(limit);
    }
    let err = BufferError::Body(err);
    let local = ClaudeError::new(ErrorClass::InvalidRequest, err.to_string())
        .with_status(StatusCode::BAD_REQUEST);
    error_response(&local)
}

fn too_large<ResB: From<Bytes>>(limit: usize) -> Response<ResB> {
    let err = BufferError::TooLarge { limit };
    let local = ClaudeError::new(ErrorClass::InvalidRequest, err.to_string())
        .with_status(StatusCode::PAYLOAD_TOO_LARGE);
    error_response(&local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::{Full, StreamBody};
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    fn counting() -> (
        Arc<AtomicUsize>,
        impl Service<
            Request<ReplayBody>,
            Response = Response<Bytes>,
            Error = Infallible,
            Future = impl Send,
        > + Clone,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let svc = tower::service_fn(move |req: Request<ReplayBody>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, Infallible>(Response::new(req.into_body().into_bytes())) }
        });
        (calls, svc)
    }

    fn envelope(res: &Response<Bytes>) -> serde_json::Value {
        serde_json::from_slice(res.body()).expect("JSON envelope")
    }

    #[tokio::test]
    async fn passes_the_whole_body_and_the_head() {
        let (calls, svc) = counting();
        let svc = ReplayLayer::new().layer(svc);
        let req = Request::post("/v1/messages?beta=true")
            .header("anthropic-version", "2023-06-01")
            .body(Full::new(Bytes::from_static(b"{\"model\":\"m\"}")))
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.body(), "{\"model\":\"m\"}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_streamed_body_over_the_limit_is_413_and_never_sent() {
        let (calls, svc) = counting();
        let svc = ReplayLayer::new().limit(10).layer(svc);
        let chunks = (0..6).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"xx"))));
        let req = Request::new(StreamBody::new(futures_util::stream::iter(chunks)));
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(envelope(&res)["error"]["type"], "request_too_large");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        let (calls, svc) = counting();
        let svc = ReplayLayer::new().limit(3).layer(svc);
        let res = svc
            .oneshot(Request::new(Full::new(Bytes::from_static(b"abcd"))))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failing_body_is_400() {
        let (calls, svc) = counting();
        let svc = ReplayLayer::new().layer(svc);
        let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"{"))),
            Err(std::io::Error::other("client went away")),
        ];
        let req = Request::new(StreamBody::new(futures_util::stream::iter(chunks)));
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let v = envelope(&res);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("client went away")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
