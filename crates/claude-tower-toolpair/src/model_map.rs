//! Per-route model-id mapping: [`ModelMapLayer`].
//!
//! It lives in this crate, beside tool pairing, because both read the
//! request body with the same scanner ([`crate`] docs: why a hand-written
//! one); it is unrelated to pairing otherwise.
//!
//! The same model has different names on different routes: Anthropic takes
//! the model id (`claude-sonnet-4-5-20250929`) or an alias, a Foundry
//! resource takes the name of its deployment (`claude-sonnet-4-5`, or
//! whatever the operator called it). [`ModelMap`] sits inside one route's
//! stack and rewrites the request body's top-level `"model"` value with
//! that route's [`ModelMapping`]:
//!
//! 1. an **alias** is resolved first (`"sonnet"` -> `"claude-sonnet-4-5-20250929"`);
//! 2. an **exact** rule for the (resolved) name wins;
//! 3. otherwise the **longest matching prefix** rule
//!    (`"claude-sonnet-4-5"` matches `"claude-sonnet-4-5-20250929"`);
//! 4. otherwise the resolved name is sent (unchanged when no alias applied).
//!
//! It is its own layer because model-id resolution has nothing to do with
//! error handling: Failover picks the route, the route knows its names.
//!
//! # Only the model's bytes change
//!
//! Bodies from Claude Code run to ~90 KB with fields this crate has never
//! heard of, and `"model"` also appears nested (tool inputs, `metadata`).
//! Parsing into a `serde_json::Value` and writing it back would reorder
//! keys, reformat numbers and re-escape strings. Instead the crate's scanner
//! walks the top-level object only, skipping nested values without looking
//! inside, finds the byte range of the first top-level `"model"` string, and
//! splices the new value (JSON-escaped) into that range. Every other byte
//! stays identical; a `content-length` header, if present, is updated.
//!
//! A body that is not a JSON object, has no top-level string `"model"`, or
//! whose model is unmapped passes through untouched (no copy); the upstream
//! API then gives its own answer to malformed JSON.
//!
//! # Example
//!
//! ```
//! use claude_tower_core::ReplayBody;
//! use claude_tower_toolpair::{ModelMapLayer, ModelMapping};
//! use http::Request;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mapping = ModelMapping::new()
//!     .exact("claude-sonnet-4-5-20250929", "claude-sonnet-4-5")
//!     .prefix("claude-opus-4-1", "opus-prod")
//!     .alias("sonnet", "claude-sonnet-4-5-20250929");
//!
//! let echo = service_fn(|req: Request<ReplayBody>| async move {
//!     Ok::<_, std::convert::Infallible>(req.into_body().into_bytes())
//! });
//! let foundry = ModelMapLayer::new(mapping).layer(echo);
//!
//! let body = r#"{"model": "sonnet", "metadata": {"model": "sonnet"}}"#;
//! let sent = foundry
//!     .oneshot(Request::post("/v1/messages").body(ReplayBody::from(body)).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(sent, r#"{"model": "claude-sonnet-4-5", "metadata": {"model": "sonnet"}}"#);
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use claude_tower_core::BufferedBody;
use http::{HeaderValue, Request, header::CONTENT_LENGTH};
use tower_layer::Layer;
use tower_service::Service;

// === impl ModelMapping ===

/// One route's model-name rules: exact names, prefixes and aliases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelMapping {
    aliases: HashMap<String, String>,
    exact: HashMap<String, String>,
    /// Longest prefix first.
    prefixes: Vec<(String, String)>,
}

impl ModelMapping {
    /// No rules: every model passes unchanged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `to` when the model is exactly `from` (after alias resolution).
    pub fn exact(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.exact.insert(from.into(), to.into());
        self
    }

    /// Sends `to` for every model that starts with `prefix` and has no exact
    /// rule; the longest matching prefix wins.
    pub fn prefix(mut self, prefix: impl Into<String>, to: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.prefixes.retain(|(p, _)| *p != prefix);
        self.prefixes.push((prefix, to.into()));
        self.prefixes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        self
    }

    /// Resolves the name `alias` to `model` before the other rules apply.
    pub fn alias(mut self, alias: impl Into<String>, model: impl Into<String>) -> Self {
        self.aliases.insert(alias.into(), model.into());
        self
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty() && self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// The name to send for `model`, or `None` when it passes unchanged.
    pub fn resolve(&self, model: &str) -> Option<&str> {
        let alias = self.aliases.get(model).map(String::as_str);
        let name = alias.unwrap_or(model);
        let mapped = self.exact.get(name).map(String::as_str).or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix.as_str()))
                .map(|(_, to)| to.as_str())
        });
        mapped.or(alias).filter(|to| *to != model)
    }
}

// === impl ModelMapLayer ===

/// Applies a route's [`ModelMapping`] to request bodies; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct ModelMapLayer {
    mapping: Arc<ModelMapping>,
}

impl ModelMapLayer {
    /// A layer applying `mapping`.
    pub fn new(mapping: ModelMapping) -> Self {
        Self {
            mapping: Arc::new(mapping),
        }
    }
}

impl<S> Layer<S> for ModelMapLayer {
    type Service = ModelMap<S>;

    fn layer(&self, inner: S) -> ModelMap<S> {
        ModelMap {
            inner,
            mapping: self.mapping.clone(),
        }
    }
}

/// Rewrites the top-level `"model"` of a JSON request body; see the [module docs](self).
#[derive(Clone)]
pub struct ModelMap<S> {
    inner: S,
    mapping: Arc<ModelMapping>,
}

impl<S> ModelMap<S> {
    /// Wraps `inner` with `mapping`.
    pub fn new(inner: S, mapping: ModelMapping) -> Self {
        Self {
            inner,
            mapping: Arc::new(mapping),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ModelMap<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelMap")
            .field("inner", &self.inner)
            .field("mapping", &self.mapping)
            .finish()
    }
}

impl<S, B> Service<Request<B>> for ModelMap<S>
where
    S: Service<Request<B>>,
    B: BufferedBody,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if self.mapping.is_empty() {
            return self.inner.call(request);
        }
        let rewritten = request
            .body()
            .buffered()
            .and_then(|body| rewrite_model(&body, &self.mapping));
        if let Some(bytes) = rewritten {
            if request.headers().contains_key(CONTENT_LENGTH) {
                request
                    .headers_mut()
                    .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            }
            *request.body_mut() = B::from_buffered(bytes);
        }
        self.inner.call(request)
    }
}

/// The top-level `"model"` of a Messages request body, decoded; `None` when
/// the body is not a JSON object with a string `model` at its top level.
///
/// Nested `"model"` keys (inside `metadata`, a tool's input) are not looked at.
///
/// ```
/// use claude_tower_toolpair::model_map::requested_model;
///
/// let body = br#"{"metadata":{"model":"x"},"model":"claude-sonnet-4-6","max_tokens":1}"#;
/// assert_eq!(requested_model(body).as_deref(), Some("claude-sonnet-4-6"));
/// assert_eq!(requested_model(b"not json"), None);
/// ```
pub fn requested_model(body: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let span = crate::scan::top_level_string(body, "model")?;
    crate::scan::decode(&body[span.start + 1..span.end - 1])
}

/// The body with its top-level `"model"` mapped, or `None` to send it as is.
pub fn rewrite_model(body: &[u8], mapping: &ModelMapping) -> Option<Bytes> {
    let span = crate::scan::top_level_string(body, "model")?;
    let decoded = crate::scan::decode(&body[span.start + 1..span.end - 1])?;
    let to = mapping.resolve(&decoded)?;
    let mut out = Vec::with_capacity(body.len() - (span.end - span.start) + to.len() + 2);
    out.extend_from_slice(&body[..span.start]);
    crate::scan::encode_string(to, &mut out);
    out.extend_from_slice(&body[span.end..]);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests;
