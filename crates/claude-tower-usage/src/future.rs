//! The future [`Usage`](crate::Usage) returns.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use claude_tower_core::usage::{TokenUsage, UsageHook, UsageRecord};
use claude_tower_core::{Attempt, Caller, ClaudeError, ErrorClass, Face, RequestIds, RouteId};
use claude_tower_failover::FailoverReport;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::response::Parts;
use http::{HeaderMap, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use crate::body::{Recorder, UsageBody};
use crate::json::JsonWatcher;
use crate::layer::{Config, RequestedModel};
use crate::sse::SseUsageReader;
use crate::watch::Watch;

/// The status a record carries when the client went away before the
/// response head (nginx's "client closed request").
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What the service knew when the request went in.
#[derive(Debug)]
pub(crate) struct Start {
    pub(crate) config: Arc<Config>,
    pub(crate) caller: Option<Caller>,
    pub(crate) requested_model: Option<Arc<str>>,
    pub(crate) at: Instant,
}

pin_project! {
    /// Response future of [`Usage`](crate::Usage).
    ///
    /// Resolves with the inner response, its body wrapped in a
    /// [`UsageBody`]. If the inner service fails, or this future is dropped
    /// before the response head (the client went away), the record is
    /// delivered here instead.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        start: Option<Start>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(start) = this.project().start.take() {
                start.abandoned();
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, start: Start) -> Self {
        Self {
            inner,
            start: Some(start),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("pending", &self.start.is_some())
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
    E: 'static,
{
    type Output = Result<Response<UsageBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(start) = this.start.take() else {
            panic!("ResponseFuture polled after completion");
        };
        match result {
            Ok(response) => Poll::Ready(Ok(start.respond(response))),
            Err(err) => {
                start.failed(&err);
                Poll::Ready(Err(err))
            }
        }
    }
}

// === impl Start ===

impl Start {
    fn record(&mut self, status: StatusCode) -> UsageRecord {
        let mut record = UsageRecord::new(status);
        record.caller = self.caller.take();
        record.requested_model = self.requested_model.take();
        record
    }

    /// The response head arrived: the record is filled from it and moves
    /// into the body, which delivers it.
    fn respond<B: Body<Data = Bytes>>(mut self, response: Response<B>) -> Response<UsageBody<B>> {
        if self.config.sinks.is_empty() && response.extensions().get::<UsageHook>().is_none() {
            // Nobody reads a record: the body passes unwatched.
            return response.map(UsageBody::unwatched);
        }
        let (mut parts, body) = response.into_parts();
        let mut record = self.record(parts.status);
        record.time_to_first_byte = Some(self.at.elapsed());
        fill_from_head(&mut record, &parts, &self.config);
        let hook = parts.extensions.remove::<UsageHook>();

        let success = parts.status.is_success();
        let kind = BodyKind::of(&parts.headers);
        record.streamed = kind == BodyKind::EventStream;
        let watch = if record.local || !success {
            // Nothing billable: a local answer, or an upstream error.
            record.usage = Some(TokenUsage::default());
            Watch::Off
        } else if is_encoded(&parts.headers) {
            // Compressed bytes: not read here; the usage is unknown.
            self.config.stats.count_encoded();
            Watch::Off
        } else if record.streamed {
            Watch::Sse(SseUsageReader::with_event_limit(self.config.event_limit))
        } else if kind == BodyKind::Json {
            let expected = body.size_hint().exact().unwrap_or(0);
            Watch::Json(JsonWatcher::with_expected(self.config.json_limit, expected))
        } else {
            // No usage travels in other content types.
            record.usage = Some(TokenUsage::default());
            Watch::Off
        };
        let recorder = Box::new(Recorder::new(
            Arc::clone(&self.config),
            record,
            self.at,
            watch,
            hook,
        ));
        Response::from_parts(parts, UsageBody::new(body, recorder))
    }

    /// The inner service failed without a response.
    fn failed<E: 'static>(mut self, err: &E) {
        let (status, class, attempts) = match find_claude_error(err) {
            Some(e) => (e.response_status(), e.class(), e.route().map(|_| 1)),
            None => (StatusCode::BAD_GATEWAY, ErrorClass::Transport, None),
        };
        let mut record = self.record(status);
        record.error_class = Some(class);
        if let Some(e) = find_claude_error(err) {
            record.route = e.route().cloned();
            record.request_ids = e.request_ids().clone();
            let report = (e as &(dyn std::error::Error + 'static))
                .source()
                .and_then(FailoverReport::from_error);
            record.attempts = report.map_or(attempts.unwrap_or(0), FailoverReport::total_attempts);
        }
        record.duration = self.at.elapsed();
        deliver(&self.config, &record, None);
    }

    /// The future was dropped before the response head: the client left.
    fn abandoned(mut self) {
        let status = StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST);
        let mut record = self.record(status);
        record.client_disconnected = true;
        record.duration = self.at.elapsed();
        deliver(&self.config, &record, None);
    }
}

/// Route, face, attempts, error class and ids from the response head.
fn fill_from_head(record: &mut UsageRecord, parts: &Parts, config: &Config) {
    let ext = &parts.extensions;
    let error = ext.get::<ClaudeError>();
    record.route = ext
        .get::<RouteId>()
        .cloned()
        .or_else(|| error.and_then(|e| e.route().cloned()));
    record.face = ext.get::<Face>().copied();
    let report = ext.get::<FailoverReport>();
    record.attempts = match (report, ext.get::<Attempt>()) {
        (Some(report), _) if report.total_attempts() > 0 => report.total_attempts(),
        (_, Some(attempt)) => attempt.number(),
        _ => u32::from(record.route.is_some()),
    };
    record.local = config.local_without_route && record.route.is_none() && record.attempts == 0;
    record.error_class = error.map(ClaudeError::class).or_else(|| {
        (parts.status.is_client_error() || parts.status.is_server_error())
            .then(|| ErrorClass::from_status(parts.status))
            .flatten()
    });
    record.request_ids = ext
        .get::<RequestIds>()
        .cloned()
        .unwrap_or_else(|| RequestIds::from_headers(&parts.headers));
    if record.requested_model.is_none() {
        record.requested_model = ext
            .get::<RequestedModel>()
            .map(|RequestedModel(m)| Arc::clone(m));
    }
}

/// A [`ClaudeError`] that is the error, or is boxed in it.
fn find_claude_error<E: 'static>(err: &E) -> Option<&ClaudeError> {
    let any = err as &dyn Any;
    if let Some(e) = any.downcast_ref::<ClaudeError>() {
        return Some(e);
    }
    let boxed = any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>()?;
    ClaudeError::find_in(boxed.as_ref())
}

/// What a response body is, from its `content-type` (one lookup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    /// `text/event-stream`.
    EventStream,
    /// `application/json` or `*/*+json`, parameters allowed.
    Json,
    /// Anything else, or no `content-type`.
    Other,
}

impl BodyKind {
    fn of(headers: &HeaderMap) -> BodyKind {
        let Some(value) = headers.get(CONTENT_TYPE) else {
            return BodyKind::Other;
        };
        let value = value.as_bytes();
        if value.len() >= 17 && value[..17].eq_ignore_ascii_case(b"text/event-stream") {
            return BodyKind::EventStream;
        }
        let essence = value
            .split(|&c| c == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if essence.eq_ignore_ascii_case(b"application/json")
            || essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json")
        {
            BodyKind::Json
        } else {
            BodyKind::Other
        }
    }
}

fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("identity"))
}

/// Hands a finished record to every sink, then to the hook.
pub(crate) fn deliver(config: &Config, record: &UsageRecord, hook: Option<UsageHook>) {
    for sink in &config.sinks {
        sink.record(record);
    }
    if let Some(hook) = hook {
        hook.call(record);
    }
}

#[cfg(test)]
mod body_kind_tests {
    use super::*;

    #[test]
    fn the_content_type_names_the_body() {
        let kind = |ct: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, http::HeaderValue::from_bytes(ct).unwrap());
            BodyKind::of(&headers)
        };
        assert_eq!(kind(b"text/event-stream"), BodyKind::EventStream);
        assert_eq!(
            kind(b"Text/Event-Stream; charset=utf-8"),
            BodyKind::EventStream
        );
        assert_eq!(kind(b"application/json"), BodyKind::Json);
        assert_eq!(kind(b" Application/JSON ; charset=utf-8"), BodyKind::Json);
        assert_eq!(kind(b"application/problem+json"), BodyKind::Json);
        assert_eq!(kind(b"application/json; charset=\xff"), BodyKind::Json);
        assert_eq!(kind(b"text/plain"), BodyKind::Other);
        assert_eq!(kind(b"+json"), BodyKind::Other);
        assert_eq!(kind(b"text/event"), BodyKind::Other);
        assert_eq!(BodyKind::of(&HeaderMap::new()), BodyKind::Other);
    }
}
