//! The future [`Normalize`](crate::Normalize) returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use claude_tower_core::{
    ClaudeError, ErrorClass, Face, RequestIds, RetryAfter, envelope_json, headers,
};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::response::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::BoxError;

use crate::body::NormalizeBody;
use crate::classify::classify_shaped;
use crate::error_body::Shape;
use crate::layer::Config;
use crate::transport_error;

pin_project! {
    /// Response future of [`Normalize`](crate::Normalize).
    ///
    /// Resolves as soon as the inner response arrives for a success; for a
    /// failure, after reading its body up to the limit.
    pub struct ResponseFuture<F, B>
    where
        B: Body,
    {
        #[pin]
        state: State<F, B>,
        config: Arc<Config>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B>
    where
        B: Body,
    {
        // Waiting for the inner service.
        Called {
            #[pin]
            future: F,
        },
        // A failed response: reading its body to classify it.
        Reading {
            read: Box<Reading<B>>,
        },
        Done,
    }
}

/// What reading a failed response's body holds. Boxed: only a failure has
/// it, and inline it would make every request's future (which each layer
/// around this one moves) 200 bytes larger.
struct Reading<B> {
    parts: Option<Parts>,
    body: Option<Pin<Box<B>>>,
    buf: BytesMut,
    trailers: Option<HeaderMap>,
}

impl<F, B: Body> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, config: Arc<Config>) -> Self {
        Self {
            state: State::Called { future },
            config,
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B>
where
    B: Body,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "Called",
            State::Reading { .. } => "Reading",
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
    E: Into<BoxError>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<NormalizeBody<B>>, ClaudeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let config = &**this.config;
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx));
                    let response = match result {
                        Ok(response) => response,
                        Err(e) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(transport_failure(e.into(), config)));
                        }
                    };
                    if response.status().as_u16() < 400 {
                        // NOTE: a success body is never polled here, so an SSE
                        // stream goes through as the transport delivers it.
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(success(response, config)));
                    }
                    let (parts, body) = response.into_parts();
                    if body.is_end_stream() {
                        let res = failure(
                            parts,
                            Some(Bytes::new()),
                            NormalizeBody::passthrough(body),
                            config,
                        );
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(res));
                    }
                    // NOTE: an encoded body (gzip, br, ...) is not read: its
                    // bytes say nothing until decoded, and it must reach the
                    // client exactly as labelled. Status and headers classify it.
                    if is_encoded(&parts.headers)
                        || declared_length(&parts.headers, &body)
                            .is_some_and(|len| len > config.error_body_limit as u64)
                    {
                        let res = failure(parts, None, NormalizeBody::passthrough(body), config);
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(res));
                    }
                    // State transition: Called -> Reading (a failure, within the limit so far).
                    this.state.set(State::Reading {
                        read: Box::new(Reading {
                            parts: Some(parts),
                            body: Some(Box::pin(body)),
                            buf: BytesMut::new(),
                            trailers: None,
                        }),
                    });
                }
                StateProj::Reading { read } => {
                    let Reading {
                        parts,
                        body,
                        buf,
                        trailers,
                    } = &mut **read;
                    let Some(inner) = body.as_mut() else {
                        panic!("ResponseFuture polled after completion");
                    };
                    let frame = ready!(inner.as_mut().poll_frame(cx));
                    let finished = match frame {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => {
                                buf.extend_from_slice(&data);
                                if buf.len() > config.error_body_limit {
                                    // Over the limit: classify by status and
                                    // hand on what was read, then the rest.
                                    body.take().map(|rest| {
                                        let prefix = std::mem::take(buf).freeze();
                                        (None, NormalizeBody::prefixed(prefix, rest))
                                    })
                                } else {
                                    None
                                }
                            }
                            Err(frame) => {
                                if let Ok(t) = frame.into_trailers() {
                                    *trailers = Some(t);
                                }
                                None
                            }
                        },
                        Some(Err(error)) => {
                            body.take();
                            let prefix = std::mem::take(buf).freeze();
                            Some((None, NormalizeBody::errored(prefix, error)))
                        }
                        None => {
                            body.take();
                            let whole = std::mem::take(buf).freeze();
                            let t = trailers.take();
                            Some((Some(whole.clone()), NormalizeBody::buffered(whole, t)))
                        }
                    };
                    if let Some((whole, out)) = finished {
                        let Some(parts) = parts.take() else {
                            panic!("ResponseFuture polled after completion");
                        };
                        let res = failure(parts, whole, out, config);
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(res));
                    }
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// Whether the body is under a `content-encoding` other than `identity`.
fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
}

fn declared_length<B: Body>(headers: &HeaderMap, body: &B) -> Option<u64> {
    body.size_hint().exact().or_else(|| {
        headers
            .get(CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

/// An inner error as a [`ClaudeError`] of this route, logged.
pub(crate) fn transport_failure(err: BoxError, config: &Config) -> ClaudeError {
    let mut err = transport_error(err);
    if err.route().is_none() {
        err = err.with_route(config.route.clone());
    }
    tracing::warn!(
        route = %config.route,
        class = err.class().as_str(),
        error = %err,
        "route failed without a response",
    );
    err
}

fn success<B: Body>(response: Response<B>, config: &Config) -> Response<NormalizeBody<B>> {
    let (mut parts, body) = response.into_parts();
    let ids = RequestIds::from_headers(&parts.headers);
    tracing::debug!(
        route = %config.route,
        status = parts.status.as_u16(),
        request_ids = %ids,
        "route answered",
    );
    parts.extensions.insert(ids);
    mark_route(&mut parts, config);
    Response::from_parts(parts, NormalizeBody::passthrough(body))
}

/// Names the route and its face on every response, so a layer further out
/// (usage, metrics) knows who answered without a route table.
fn mark_route(parts: &mut Parts, config: &Config) {
    parts.extensions.insert(config.route.clone());
    parts.extensions.insert(config.face);
}

/// Classifies a failed response and dresses it as configured. `whole` is the
/// complete body when it was read within the limit.
fn failure<B: Body>(
    mut parts: Parts,
    whole: Option<Bytes>,
    mut body: NormalizeBody<B>,
    config: &Config,
) -> Response<NormalizeBody<B>> {
    mark_route(&mut parts, config);
    let bytes = whole.as_deref().unwrap_or_default();
    let now = SystemTime::now();
    let Some((err, shape)) = classify_shaped(config.face, parts.status, &parts.headers, bytes, now)
    else {
        // NOTE: only responses of 400 and over come here, and those always
        // classify; answer as a success would be if that ever changes.
        parts
            .extensions
            .insert(RequestIds::from_headers(&parts.headers));
        return Response::from_parts(parts, body);
    };
    let err = err.with_route(config.route.clone());

    // Only Azure's own envelope is re-shaped (and a transient-auth blip in
    // either envelope, which must not reach an SDK as a 401), plus an empty
    // body, which has nothing to lose. A body that did not parse (HTML from
    // a proxy, truncated JSON) or was not read (encoded, over the limit)
    // goes through byte for byte with its headers.
    let rewrite = match shape {
        Shape::Azure => true,
        Shape::Anthropic => err.class() == ErrorClass::TransientAuth,
        Shape::Unknown => bytes.is_empty(),
    };
    if config.rewrite_envelope && config.face == Face::Foundry && whole.is_some() && rewrite {
        let (status, json) = anthropic_rendering(&err);
        parts.status = status;
        parts.headers.remove(CONTENT_LENGTH);
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if !parts.headers.contains_key(headers::X_SHOULD_RETRY) {
            let retry = if err.retryable() { "true" } else { "false" };
            parts
                .headers
                .insert(headers::X_SHOULD_RETRY, HeaderValue::from_static(retry));
        }
        // NOTE: upstream trailers belonged to the body being replaced.
        body = NormalizeBody::buffered(json, None);
    }

    if config.canonical_retry_headers {
        let h = &mut parts.headers;
        h.remove(headers::RETRY_AFTER);
        h.remove(headers::RETRY_AFTER_MS);
        h.remove(headers::X_MS_RETRY_AFTER_MS);
        if let Some(wait) = err.retry_after() {
            h.insert(headers::RETRY_AFTER, HeaderValue::from(wait.as_secs_ceil()));
            h.insert(
                headers::RETRY_AFTER_MS,
                HeaderValue::from(wait.as_millis_ceil()),
            );
        }
    }

    tracing::warn!(
        route = %config.route,
        status = parts.status.as_u16(),
        class = err.class().as_str(),
        code = err.code().unwrap_or(""),
        retry_after_ms = err.retry_after().map(RetryAfter::as_millis_ceil),
        request_ids = %err.request_ids(),
        "route answered with an error",
    );

    if let Some(wait) = err.retry_after() {
        parts.extensions.insert(wait);
    }
    parts.extensions.insert(err.request_ids().clone());
    parts.extensions.insert(err);
    Response::from_parts(parts, body)
}

/// The status and Anthropic envelope a client should see for `err`.
///
/// The message is upstream's, verbatim: Claude Code's recovery matches on
/// it ("prompt is too long"). TransientAuth becomes 503: see
/// [`NormalizeLayer::with_rewrite_envelope`](crate::NormalizeLayer::with_rewrite_envelope).
fn anthropic_rendering(err: &ClaudeError) -> (StatusCode, Bytes) {
    let status = match err.class() {
        ErrorClass::TransientAuth => StatusCode::SERVICE_UNAVAILABLE,
        _ => err.response_status(),
    };
    let rendered = ClaudeError::new(err.class(), err.message())
        .with_status(status)
        .with_request_ids(err.request_ids().clone());
    (status, envelope_json(&rendered))
}
