use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use claude_tower_core::{
    BufferedBody, ClaudeError, ErrorClass, RequestedModel, ResponseBody, error_response,
};
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::model_map::requested_model;
use crate::validate::{may_hold_tool_blocks, validate_with_model};
use crate::{Change, PairingError, repair_bytes, validate};

/// What [`ToolPairing`] does with a request whose pairing is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolPairingMode {
    /// Answer locally with a 400 in Anthropic's envelope and the API's own
    /// wording; nothing is sent upstream. The default.
    #[default]
    Reject,
    /// Send the [repaired](crate::repair) body; the changes go into a
    /// [`Repairs`] response extension and a tracing event. A body repair
    /// cannot fix (repeated `tool_use` ids) is rejected as in `Reject`.
    Repair,
    /// Log the violation and send the request unchanged.
    Observe,
}

/// The changes [`ToolPairingMode::Repair`] made to a request, as a response extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repairs(Arc<[Change]>);

impl Repairs {
    /// The changes, in message order.
    pub fn changes(&self) -> &[Change] {
        &self.0
    }
}

/// Applies [`ToolPairing`]: checks tool pairing of Messages requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct ToolPairingLayer {
    mode: ToolPairingMode,
}

impl ToolPairingLayer {
    /// A layer in the given mode.
    pub fn new(mode: ToolPairingMode) -> Self {
        Self { mode }
    }

    /// Rejects broken requests locally (the default).
    pub fn reject() -> Self {
        Self::new(ToolPairingMode::Reject)
    }

    /// Repairs broken requests before sending them.
    pub fn repair() -> Self {
        Self::new(ToolPairingMode::Repair)
    }

    /// Only logs broken requests.
    pub fn observe() -> Self {
        Self::new(ToolPairingMode::Observe)
    }

    /// The mode.
    pub fn mode(&self) -> ToolPairingMode {
        self.mode
    }
}

impl<S> Layer<S> for ToolPairingLayer {
    type Service = ToolPairing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ToolPairing {
            inner,
            mode: self.mode,
        }
    }
}

/// Checks (and in [`ToolPairingMode::Repair`] fixes) `tool_use` / `tool_result`
/// pairing of `POST .../v1/messages` and `.../v1/messages/count_tokens`
/// requests before they cost a round trip. See the [crate docs](crate).
///
/// It also names the model the request asked for: a response to a buffered
/// Messages request carries a [`RequestedModel`] extension (the body's
/// top-level `model`, before any route's model map), so a usage layer
/// outside the stack, which cannot read the request body, records it.
#[derive(Clone)]
pub struct ToolPairing<S> {
    inner: S,
    mode: ToolPairingMode,
}

impl<S> ToolPairing<S> {
    /// Wraps `inner` in the given mode.
    pub fn new(inner: S, mode: ToolPairingMode) -> Self {
        Self { inner, mode }
    }

    /// The layer for this service.
    pub fn layer(mode: ToolPairingMode) -> ToolPairingLayer {
        ToolPairingLayer::new(mode)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> fmt::Debug for ToolPairing<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolPairing")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Whether the request is a Messages (or count_tokens) call: `POST`, any
/// prefix (`/anthropic`), any query string.
pub(crate) fn is_messages_request<B>(req: &Request<B>) -> bool {
    if req.method() != Method::POST {
        return false;
    }
    let path = req.uri().path();
    let path = path.strip_suffix('/').unwrap_or(path);
    path.ends_with("/v1/messages") || path.ends_with("/v1/messages/count_tokens")
}

/// The local 400, carrying its `ClaudeError` in the extensions like every
/// other failure the stack returns, so logs and metrics above see one model.
fn rejection(err: &PairingError) -> Response<Bytes> {
    let err = ClaudeError::new(ErrorClass::InvalidRequest, err.to_string())
        .with_status(StatusCode::BAD_REQUEST);
    let mut response = error_response::<Bytes>(&err);
    response.extensions_mut().insert(err);
    response
}

impl<S, B, ResBody> Service<Request<B>> for ToolPairing<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: BufferedBody,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !is_messages_request(&req) {
            return ResponseFuture::called(self.inner.call(req), None, None);
        }
        // A body that is not in memory cannot be checked; it goes on as is.
        let Some(body) = req.body().buffered() else {
            return ResponseFuture::called(self.inner.call(req), None, None);
        };
        // Read once here, where the body is in memory, for a usage layer
        // further out (it cannot read a streaming request body).
        let (checked, model) = if may_hold_tool_blocks(&body) {
            let (checked, model) = validate_with_model(&body);
            (checked.map(drop), model)
        } else {
            // No tool block: nothing to pair; only the model is read.
            (Ok(()), requested_model(&body))
        };
        let model = model.map(|m| RequestedModel(Arc::from(m.as_ref())));
        let err = match checked {
            Ok(()) => return ResponseFuture::called(self.inner.call(req), None, model),
            Err(err) => err,
        };
        match self.mode {
            ToolPairingMode::Observe => {
                tracing::warn!(error = %err, "tool pairing broken; sending as is (observe mode)");
                ResponseFuture::called(self.inner.call(req), None, model)
            }
            ToolPairingMode::Reject => {
                tracing::warn!(error = %err, "tool pairing broken; rejected locally");
                ResponseFuture::local(rejection(&err))
            }
            ToolPairingMode::Repair => {
                let repaired = repair_bytes(body);
                if let Err(left) = validate(&repaired.body) {
                    tracing::warn!(error = %left, "tool pairing broken beyond repair; rejected locally");
                    return ResponseFuture::local(rejection(&left));
                }
                tracing::warn!(
                    error = %err,
                    changes = repaired.changes.len(),
                    details = ?repaired.changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "tool pairing repaired",
                );
                if req.headers().contains_key(CONTENT_LENGTH) {
                    req.headers_mut()
                        .insert(CONTENT_LENGTH, HeaderValue::from(repaired.body.len()));
                }
                *req.body_mut() = B::from_buffered(repaired.body);
                let repairs = Repairs(repaired.changes.into());
                ResponseFuture::called(self.inner.call(req), Some(repairs), model)
            }
        }
    }
}
