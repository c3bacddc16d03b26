//! The future [`StreamHold`](super::StreamHold) returns.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::Bytes;
use claude_tower_core::{ClaudeError, ErrorClass, RequestIds};
use http::header::CONTENT_TYPE;
use http::response::Parts;
use http::{HeaderMap, Response};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::body::{HoldBody, Rest};
use super::layer::HoldConfig;
use super::scan::{Scanner, Verdict};
use crate::classify::classify_stream_error;

pin_project! {
    /// Response future of [`StreamHold`](super::StreamHold).
    ///
    /// Resolves as soon as the inner response arrives, unless it is a
    /// successful event stream; then once its first content event arrives,
    /// an `event: error` ends it, or a bound is reached.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        config: Arc<HoldConfig>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        // Waiting for the inner service.
        Called {
            #[pin]
            future: F,
        },
        // A successful stream: reading its first events.
        Holding {
            hold: Pin<Box<Holding<B>>>,
        },
        Done,
    }
}

pin_project! {
    /// A hold in progress. Boxed, once per held stream: inline, its 456
    /// bytes would make every request's future, streamed or not (and each
    /// layer around this one moves it), that much larger.
    #[project = HoldingProj]
    struct Holding<B> {
        #[pin]
        deadline: Sleep,
        held: Option<Held<B>>,
    }
}

/// A stream being held: its head, its body and what was read of it.
struct Held<B> {
    parts: Parts,
    body: B,
    frames: VecDeque<Frame<Bytes>>,
    bytes: usize,
    scanner: Scanner,
}

/// Why a hold ended.
enum End<E> {
    /// Content (or anything that is not the preamble) began.
    Content,
    /// The byte bound was reached.
    Bytes,
    /// The time bound was reached.
    Time,
    /// An `event: error` before any content.
    Error,
    /// The upstream body ended (`true`: with an error event cut short).
    Ended(bool),
    /// The upstream body failed (a reset, a connection closed mid-body).
    Failed(E),
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, config: Arc<HoldConfig>) -> Self {
        Self {
            state: State::Called { future },
            config,
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "Called",
            State::Holding { .. } => "Holding",
            State::Done => "Done",
        };
        f.debug_struct("ResponseFuture")
            .field("route", &self.config.route)
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    // NOTE: the body is polled here, then moved into the response: it must
    // be `Unpin` (hyper's `Incoming`, reqwest's `Body` and `NormalizeBody`
    // over either are); `Pin<Box<B>>` makes any body so.
    B: Body<Data = Bytes> + Unpin,
{
    type Output = Result<Response<HoldBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let config = &**this.config;
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(e) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(e));
                        }
                    };
                    if !config.enabled || !is_stream(&response) {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(response.map(HoldBody::passthrough)));
                    }
                    // State transition: Called -> Holding (a successful stream).
                    let (parts, body) = response.into_parts();
                    this.state.set(State::Holding {
                        hold: Box::pin(Holding {
                            deadline: tokio::time::sleep(config.time_limit),
                            held: Some(Held {
                                parts,
                                body,
                                frames: VecDeque::new(),
                                bytes: 0,
                                scanner: Scanner::new(config.error_data_limit),
                            }),
                        }),
                    });
                }
                StateProj::Holding { hold } => {
                    let HoldingProj { deadline, held } = hold.as_mut().project();
                    let Some(hold) = held.as_mut() else {
                        panic!("ResponseFuture polled after completion");
                    };
                    let end = ready!(hold.poll_end(deadline, cx, config.byte_limit));
                    let Some(hold) = held.take() else {
                        panic!("ResponseFuture polled after completion");
                    };
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(hold.finish(end, config)));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// A successful response whose body is an event stream and that no layer
/// below marked as failed.
fn is_stream<B>(response: &Response<B>) -> bool {
    response.status().is_success()
        && response.extensions().get::<ClaudeError>().is_none()
        && is_event_stream(response.headers())
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    const SSE: &[u8] = b"text/event-stream";
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= SSE.len()
            && v[..SSE.len()].eq_ignore_ascii_case(SSE)
            && matches!(v.get(SSE.len()), None | Some(b';' | b' ' | b'\t'))
    })
}

// === impl Held ===

impl<B> Held<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    /// Reads frames until the hold ends.
    fn poll_end(
        &mut self,
        mut deadline: Pin<&mut Sleep>,
        cx: &mut Context<'_>,
        byte_limit: usize,
    ) -> Poll<End<B::Error>> {
        loop {
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(End::Failed(e)),
                Poll::Ready(None) => {
                    let error = self.scanner.finish() == Verdict::Error;
                    return Poll::Ready(End::Ended(error));
                }
                Poll::Pending => {
                    // NOTE: the clock is only looked at while upstream is
                    // quiet; a stream that never pauses reaches the byte
                    // bound instead.
                    ready!(deadline.as_mut().poll(cx));
                    return Poll::Ready(End::Time);
                }
            };
            // Trailers end the body: the next poll says so.
            let verdict = match frame.data_ref() {
                Some(data) => {
                    self.bytes += data.len();
                    self.scanner.feed(data)
                }
                None => Verdict::Hold,
            };
            self.frames.push_back(frame);
            match verdict {
                Verdict::Release => return Poll::Ready(End::Content),
                Verdict::Error => return Poll::Ready(End::Error),
                Verdict::Hold if self.bytes >= byte_limit => return Poll::Ready(End::Bytes),
                Verdict::Hold => {}
            }
        }
    }

    /// The response, once the hold has ended.
    fn finish(self, end: End<B::Error>, config: &HoldConfig) -> Response<HoldBody<B>> {
        let Held {
            mut parts,
            body,
            frames,
            bytes,
            scanner,
        } = self;
        let rest = match end {
            End::Content => Rest::body(body),
            End::Bytes => {
                tracing::debug!(
                    route = %config.route,
                    held_bytes = bytes,
                    "stream released at the byte bound before any content",
                );
                Rest::body(body)
            }
            End::Time => {
                tracing::debug!(
                    route = %config.route,
                    held_bytes = bytes,
                    wait_ms = u64::try_from(config.time_limit.as_millis()).unwrap_or(u64::MAX),
                    "stream released at the time bound before any content",
                );
                Rest::body(body)
            }
            End::Error | End::Ended(true) => {
                let err = classify_stream_error(
                    config.face,
                    &parts.headers,
                    scanner.error_data(),
                    SystemTime::now(),
                );
                failed(&mut parts, err, config);
                match end {
                    End::Error => Rest::body(body),
                    _ => Rest::Ended,
                }
            }
            End::Ended(false) => Rest::Ended,
            End::Failed(e) => {
                // A stream cut off before any content is a route that failed
                // to answer, like a connection closed before a response.
                let err = ClaudeError::new(
                    ErrorClass::Transport,
                    "the stream broke off before any content",
                )
                .with_request_ids(RequestIds::from_headers(&parts.headers));
                failed(&mut parts, err, config);
                Rest::failed(e)
            }
        };
        Response::from_parts(parts, HoldBody::released(frames, rest))
    }
}

/// Marks a held response as a failure of this route, logged.
fn failed(parts: &mut Parts, err: ClaudeError, config: &HoldConfig) {
    let err = err.with_route(config.route.clone());
    tracing::warn!(
        route = %config.route,
        class = err.class().as_str(),
        code = err.code().unwrap_or(""),
        request_ids = %err.request_ids(),
        "route's stream failed before any content",
    );
    if let Some(wait) = err.retry_after() {
        parts.extensions.insert(wait);
    }
    parts.extensions.insert(err);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn event_stream_content_types() {
        let check = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            is_event_stream(&h)
        };
        assert!(check("text/event-stream"));
        assert!(check("Text/Event-Stream; charset=utf-8"));
        assert!(!check("text/event-streams"));
        assert!(!check("application/json"));
        assert!(!check("text/event"));
        assert!(!is_event_stream(&HeaderMap::new()));
    }
}
