//! [`ReplayLayer`]: buffer the request body once, so every layer below can
//! read it and send it again.
//!
//! The Messages API takes bodies up to 32 MiB, and retry and failover must be
//! able to send a request more than once. [`ReplayLayer`] reads the inbound
//! body into a [`ReplayBody`] (shared bytes; cloning a request is a reference
//! count increment) and hands `Request<ReplayBody>` to the service below.
//! It lives here, beside [`ReplayBody`], so that a user of one layer that
//! reads bodies (tool pairing, model mapping, retry) needs no other crate to
//! produce its input.
//!
//! A body over the limit is answered locally with 413 in Anthropic's
//! envelope (`request_too_large`) and nothing is sent inward; a body whose
//! stream fails while being read is answered with 400. Response bodies are
//! never touched: only the request is buffered. Local answers use
//! [`ResponseBody::local`], so the layer keeps the inner body type.
//!
//! # Why an oversize body is read to its end before the 413
//!
//! Many HTTP clients (Python's `http.client` and `httpx`, so the Anthropic
//! Python SDK; curl without `Expect: 100-continue`) write the whole request
//! before they read a byte of the response. If the server answers 413 and
//! closes the connection while such a client is still writing, the client
//! sees a broken pipe or a connection reset instead of the 413, and retries
//! or reports a network error. So over the limit, the rest of the body is
//! read and discarded before the 413 is returned, and the connection stays
//! usable. The discarding is bounded so that it cannot be abused as a sink:
//! at most [`DEFAULT_DRAIN_LIMIT`] more bytes (64 MiB) and
//! [`DEFAULT_DRAIN_TIME`] (10 s) by default, configurable with
//! [`ReplayLayer::with_drain`]. Past either bound, or when a body declares a
//! length beyond what would be drained, the 413 is sent at once (the
//! server then closes the connection: nothing better can be done).
//! `with_drain(0, Duration::ZERO)` answers at once, as a proxy that only
//! serves write-then-read clients behind `Expect: 100-continue` may prefer.
//!
//! ```
//! use bytes::Bytes;
//! use claude_tower_core::{ReplayBody, ReplayLayer};
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let echo_len = tower::service_fn(|req: Request<ReplayBody>| async move {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(req.body().len().to_string()))))
//! });
//! let svc = ServiceBuilder::new().layer(ReplayLayer::new().with_limit(8)).service(echo_len);
//!
//! let ok = svc.clone().oneshot(Request::new(Full::new(Bytes::from("12345")))).await.unwrap();
//! assert!(!ok.body().is_local());
//! let too_big = svc.oneshot(Request::new(Full::new(Bytes::from("123456789")))).await.unwrap();
//! assert_eq!(too_big.status(), 413);
//! assert!(too_big.body().is_local());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    BufferError, ClaudeError, DEFAULT_REQUEST_BODY_LIMIT, ErrorClass, ReplayBody, ResponseBody,
    error_response,
};

/// The most bytes read and discarded past the limit before a 413 (64 MiB).
pub const DEFAULT_DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// The longest time spent discarding an oversize body before a 413 (10 s).
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// === impl ReplayLayer ===

/// Buffers request bodies into [`ReplayBody`] up to a limit (default 32 MiB);
/// see the [module docs](self).
#[derive(Clone, Copy, Debug)]
pub struct ReplayLayer {
    limit: usize,
    drain_limit: u64,
    drain_time: Duration,
}

impl ReplayLayer {
    /// A layer with the Messages API's 32 MiB limit and the default drain
    /// bounds (64 MiB, 10 s).
    pub fn new() -> Self {
        Self {
            limit: DEFAULT_REQUEST_BODY_LIMIT,
            drain_limit: DEFAULT_DRAIN_LIMIT,
            drain_time: DEFAULT_DRAIN_TIME,
        }
    }

    /// The largest body, in bytes, that is buffered; larger bodies get 413.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// How much of an oversize body is read and discarded (bytes past the
    /// limit) and for how long, before the 413 is answered.
    pub fn with_drain(mut self, max_bytes: u64, max_time: Duration) -> Self {
        self.drain_limit = max_bytes;
        self.drain_time = max_time;
        self
    }

    /// The body limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
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
            config: *self,
        }
    }
}

// === impl Replay ===

/// Middleware that buffers request bodies; see [`ReplayLayer`].
#[derive(Clone, Debug)]
pub struct Replay<S> {
    inner: S,
    config: ReplayLayer,
}

impl<S> Replay<S> {
    /// Wraps `inner` with the default limit.
    pub fn new(inner: S) -> Self {
        ReplayLayer::new().layer(inner)
    }

    /// The wrapped service.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for Replay<S>
where
    S: Service<Request<ReplayBody>, Response = Response<ResB>> + Clone,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResB>>;
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
        let limit = self.config.limit as u64;
        let state = match body.size_hint().exact() {
            // Refused before a byte is read; drained when it would fit the bound.
            Some(len) if len > limit => {
                if len - limit <= self.config.drain_limit {
                    State::draining(0, self.config.drain_time)
                } else {
                    State::Done {
                        response: Some(too_large(self.config.limit)),
                    }
                }
            }
            hint => State::Buffering {
                buf: Buffer::with_capacity(hint.map_or(0, |n| n as usize)),
                parts: Some(parts),
                inner: Some(inner),
            },
        };
        ResponseFuture {
            body,
            state,
            config: self.config,
        }
    }
}

// === the response future ===

pin_project! {
    /// Response future of [`Replay`].
    pub struct ResponseFuture<B, S>
    where
        S: Service<Request<ReplayBody>>,
    {
        // NOTE: kept here, not in the state, so that the same body can be
        // buffered and then drained; it is dropped with the future.
        #[pin]
        body: B,
        #[pin]
        state: State<S>,
        config: ReplayLayer,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S>
    where
        S: Service<Request<ReplayBody>>,
    {
        Buffering {
            buf: Buffer,
            parts: Option<Parts>,
            inner: Option<S>,
        },
        // Over the limit: reading the rest and discarding it, then the 413.
        Draining {
            read: u64,
            #[pin]
            sleep: Option<Sleep>,
            drain_time: Duration,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Done {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S: Service<Request<ReplayBody>>> State<S> {
    /// Discarding the rest of an oversize body, `read` bytes of it read so
    /// far. The timer starts on the first poll (it needs the runtime).
    fn draining(read: u64, drain_time: Duration) -> Self {
        State::Draining {
            read,
            sleep: None,
            drain_time,
        }
    }
}

impl<B, S, ResB> Future for ResponseFuture<B, S>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<ReplayBody>, Response = Response<ResB>>,
{
    type Output = Result<Response<ResponseBody<ResB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Buffering { buf, parts, inner } => {
                    let frame = ready!(this.body.as_mut().poll_frame(cx));
                    let data = match frame {
                        Some(Ok(frame)) => match frame.into_data() {
                            // Zero-copy for `Bytes`, the usual `Data`.
                            Ok(mut data) => data.copy_to_bytes(data.remaining()),
                            // Trailers are not forwarded.
                            Err(_) => continue,
                        },
                        Some(Err(err)) => {
                            let response = unreadable(err.into());
                            this.state.set(State::Done {
                                response: Some(response),
                            });
                            continue;
                        }
                        None => {
                            let (Some(parts), Some(mut inner)) = (parts.take(), inner.take())
                            else {
                                // NOTE: both are only taken here, right before
                                // the state changes, so they are always present.
                                unreachable!("Replay future polled after buffering finished");
                            };
                            let body = ReplayBody::new(buf.take());
                            let future = inner.call(Request::from_parts(parts, body));
                            this.state.set(State::Calling { future });
                            continue;
                        }
                    };
                    if buf.len() + data.len() > this.config.limit {
                        let read = (buf.len() + data.len()) as u64;
                        this.state
                            .set(State::draining(read, this.config.drain_time));
                        continue;
                    }
                    buf.push(data);
                }
                StateProj::Draining {
                    read,
                    mut sleep,
                    drain_time,
                } => {
                    let limit = this.config.limit;
                    let bound = (limit as u64).saturating_add(this.config.drain_limit);
                    if *read > bound || this.body.is_end_stream() {
                        this.state.set(State::Done {
                            response: Some(too_large(limit)),
                        });
                        continue;
                    }
                    if sleep.is_none() {
                        sleep.set(Some(tokio::time::sleep(*drain_time)));
                    }
                    if let Some(sleep) = sleep.as_mut().as_pin_mut()
                        && sleep.poll(cx).is_ready()
                    {
                        this.state.set(State::Done {
                            response: Some(too_large(limit)),
                        });
                        continue;
                    }
                    match ready!(this.body.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => {
                            if let Some(data) = frame.data_ref() {
                                *read += data.remaining() as u64;
                            }
                        }
                        // The end, or a failing body: either way, answer now.
                        Some(Err(_)) | None => {
                            this.state.set(State::Done {
                                response: Some(too_large(limit)),
                            });
                        }
                    }
                }
                StateProj::Calling { future } => {
                    return future
                        .poll(cx)
                        .map(|result| result.map(|res| res.map(ResponseBody::upstream)));
                }
                StateProj::Done { response } => {
                    let response = response
                        .take()
                        .expect("Replay future polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::local)));
                }
            }
        }
    }
}

impl<B, S> fmt::Debug for ResponseFuture<B, S>
where
    S: Service<Request<ReplayBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Buffering { .. } => "buffering",
            State::Draining { .. } => "draining",
            State::Calling { .. } => "calling",
            State::Done { .. } => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// The chunks read so far; one chunk (the common case for a body already in
/// memory) is handed on without a copy.
#[derive(Default)]
struct Buffer {
    first: Option<Bytes>,
    rest: BytesMut,
    capacity: usize,
}

impl Buffer {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            first: None,
            rest: BytesMut::new(),
            capacity,
        }
    }

    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.rest.len()
    }

    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match &self.first {
            None if self.rest.is_empty() => self.first = Some(data),
            _ => {
                if let Some(first) = self.first.take() {
                    self.rest
                        .reserve(self.capacity.max(first.len() + data.len()));
                    self.rest.extend_from_slice(&first);
                }
                self.rest.extend_from_slice(&data);
            }
        }
    }

    fn take(&mut self) -> Bytes {
        match self.first.take() {
            Some(first) => first,
            None => std::mem::take(&mut self.rest).freeze(),
        }
    }
}

fn unreadable(err: BoxError) -> Response<Bytes> {
    let err = BufferError::Body(err);
    let local = ClaudeError::new(ErrorClass::InvalidRequest, err.to_string())
        .with_status(StatusCode::BAD_REQUEST);
    error_response(&local)
}

fn too_large(limit: usize) -> Response<Bytes> {
    let err = BufferError::TooLarge { limit };
    let local = ClaudeError::new(ErrorClass::InvalidRequest, err.to_string())
        .with_status(StatusCode::PAYLOAD_TOO_LARGE);
    error_response(&local)
}

#[cfg(test)]
mod tests;
