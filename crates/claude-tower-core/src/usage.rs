//! Token usage: what one request consumed, and how it is handed on.
//!
//! A usage layer (`claude-tower-usage`) reads the usage from every response
//! as it streams and, when the body ends, errors or is dropped, builds one
//! [`UsageRecord`] and hands it to each [`UsageSink`]: metrics, logs, and the
//! quota settlement of the request.
//!
//! The vocabulary lives here, not in the usage crate, so that a layer which
//! settles on usage (quotas) depends on this crate only. A layer *inside* the
//! usage layer that wants the record of the request it handled puts a
//! [`UsageHook`] into the response's extensions; the usage layer takes it out
//! and calls it with the final record, after the configured sinks.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::{Caller, ErrorClass, Face, RequestIds, RouteId};

/// Token counts as Anthropic's `usage` object reports them.
///
/// `input` excludes cached tokens: [`total_input`](Self::total_input) is what
/// the OpenTelemetry GenAI conventions call input tokens for Anthropic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenUsage {
    /// `input_tokens`: uncached prompt tokens.
    pub input: u64,
    /// `output_tokens`.
    pub output: u64,
    /// `cache_creation_input_tokens`.
    pub cache_creation_input: u64,
    /// `cache_read_input_tokens`.
    pub cache_read_input: u64,
}

impl TokenUsage {
    /// Input, cache creation and cache read tokens together.
    pub fn total_input(&self) -> u64 {
        self.input
            .saturating_add(self.cache_creation_input)
            .saturating_add(self.cache_read_input)
    }

    /// Every token, input of all kinds and output.
    pub fn total(&self) -> u64 {
        self.total_input().saturating_add(self.output)
    }

    /// Whether no token was counted.
    pub fn is_zero(&self) -> bool {
        self.total() == 0
    }
}

/// One request's usage and outcome, delivered exactly once per request.
///
/// Built by the usage layer; fields are public to read. `usage` is `None`
/// when the response could not be read for usage (malformed events, an
/// oversized JSON body): *unknown*, not zero. A request answered locally
/// (413, a tool-pairing 400, a quota 429) has `Some(TokenUsage::default())`
/// and `local: true`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UsageRecord {
    /// Who called, when an identity layer said.
    pub caller: Option<Caller>,
    /// The route whose response was returned, if a route answered.
    pub route: Option<RouteId>,
    /// That route's error surface.
    pub face: Option<Face>,
    /// Upstream attempts across all routes (0 when answered locally).
    pub attempts: u32,
    /// The `model` the caller asked for (shared with the request's
    /// [`RequestedModel`], not copied).
    pub requested_model: Option<Arc<str>>,
    /// The `model` the response named: the same allocation as
    /// `requested_model` when the two are equal, as they mostly are.
    pub response_model: Option<Arc<str>>,
    /// The tokens, as seen so far if the response was cut short.
    pub usage: Option<TokenUsage>,
    /// `stop_reason`, when the response got that far: borrowed for the
    /// values the Messages API documents (see [`stop_reason`]), owned for
    /// any other.
    pub stop_reason: Option<Cow<'static, str>>,
    /// The response status sent to the caller.
    pub status: StatusCode,
    /// The failure class, for error statuses and for `event: error` in a stream.
    pub error_class: Option<ErrorClass>,
    /// Whether the response was an event stream.
    pub streamed: bool,
    /// Whether the response was made by a layer, without an upstream call.
    pub local: bool,
    /// From the request to the end (or drop) of the response body.
    pub duration: Duration,
    /// From the request to the response head.
    pub time_to_first_byte: Option<Duration>,
    /// From the request to the first content chunk of a stream.
    pub time_to_first_chunk: Option<Duration>,
    /// Whether the client went away before the body ended.
    pub client_disconnected: bool,
    /// The upstream request ids.
    pub request_ids: RequestIds,
}

impl UsageRecord {
    /// An empty record for a response with `status`; the usage layer fills
    /// in the rest.
    pub fn new(status: StatusCode) -> Self {
        Self {
            caller: None,
            route: None,
            face: None,
            attempts: 0,
            requested_model: None,
            response_model: None,
            usage: None,
            stop_reason: None,
            status,
            error_class: None,
            streamed: false,
            local: false,
            duration: Duration::ZERO,
            time_to_first_byte: None,
            time_to_first_chunk: None,
            client_disconnected: false,
            request_ids: RequestIds::default(),
        }
    }

    /// The tokens counted, zero when unknown.
    pub fn tokens(&self) -> TokenUsage {
        self.usage.unwrap_or_default()
    }
}

/// Where usage records go: metrics, logs, quota settlement.
///
/// Called on the task that finished the response body, so an implementation
/// must not block: update atomics or a lock held for a few instructions, or
/// hand the record to a channel.
pub trait UsageSink: Send + Sync + 'static {
    /// Takes one request's record.
    fn record(&self, record: &UsageRecord);
}

impl<F> UsageSink for F
where
    F: Fn(&UsageRecord) + Send + Sync + 'static,
{
    fn record(&self, record: &UsageRecord) {
        self(record)
    }
}

impl<S: UsageSink + ?Sized> UsageSink for Arc<S> {
    fn record(&self, record: &UsageRecord) {
        (**self).record(record)
    }
}

/// A response extension asking the usage layer to hand this request's record
/// to one more sink: how a layer inside the usage layer (a quota) settles the
/// request it admitted.
///
/// The usage layer removes it from the response head and calls it once, after
/// its own sinks. Where no usage layer runs, the hook is dropped uncalled with
/// the response: a settling layer should treat that drop as "usage unknown".
#[derive(Clone)]
pub struct UsageHook(Arc<dyn UsageSink>);

impl UsageHook {
    /// A hook calling `sink`.
    pub fn new(sink: impl UsageSink) -> Self {
        Self(Arc::new(sink))
    }

    /// A hook calling a sink already behind an [`Arc`]: a layer that keeps
    /// its own reference to the sink (to settle it when no response comes)
    /// hands the same allocation over.
    pub fn from_arc<S: UsageSink>(sink: Arc<S>) -> Self {
        Self(sink)
    }

    /// Hands `record` to the hook's sink.
    pub fn call(&self, record: &UsageRecord) {
        self.0.record(record);
    }
}

/// The model a request asked for (its body's top-level `model`, before any
/// per-route model map), as a request or response extension.
///
/// A usage layer cannot read a streaming request body, so whoever already
/// holds the buffered body says which model was asked for: a layer outside
/// the usage layer on the request, or the stack on the way back — the
/// facade's tool-pairing step reads it once from the buffered body and puts
/// it into the response's extensions, so a usage layer outside the whole
/// stack (as in the gateway) still sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedModel(pub Arc<str>);

impl RequestedModel {
    /// The model id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The `stop_reason` values the Messages API documents.
pub const STOP_REASONS: [&str; 6] = [
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
];

/// A `stop_reason` as a record holds it: one of [`STOP_REASONS`] borrowed
/// (no allocation per record), anything else owned. `None` when `raw` is
/// not UTF-8.
///
/// ```
/// use std::borrow::Cow;
/// use claude_tower_core::usage::stop_reason;
///
/// assert!(matches!(stop_reason(b"end_turn"), Some(Cow::Borrowed("end_turn"))));
/// assert_eq!(stop_reason(b"a_new_reason").as_deref(), Some("a_new_reason"));
/// assert_eq!(stop_reason(b"\xff"), None);
/// ```
pub fn stop_reason(raw: &[u8]) -> Option<Cow<'static, str>> {
    match STOP_REASONS.iter().find(|known| known.as_bytes() == raw) {
        Some(known) => Some(Cow::Borrowed(known)),
        None => std::str::from_utf8(raw)
            .ok()
            .map(|text| Cow::Owned(text.to_owned())),
    }
}

impl fmt::Debug for UsageHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UsageHook(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn totals_add_cache_tokens_to_input() {
        let usage = TokenUsage {
            input: 10,
            output: 5,
            cache_creation_input: 100,
            cache_read_input: 1000,
        };
        assert_eq!(usage.total_input(), 1110);
        assert_eq!(usage.total(), 1115);
        assert!(!usage.is_zero());
        assert!(TokenUsage::default().is_zero());
        let huge = TokenUsage {
            input: u64::MAX,
            output: 1,
            ..TokenUsage::default()
        };
        assert_eq!(huge.total(), u64::MAX);
    }

    #[test]
    fn a_hook_reaches_its_sink() {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let hook = UsageHook::new(move |r: &UsageRecord| {
            counter.fetch_add(r.tokens().total(), Ordering::Relaxed);
        });
        let mut record = UsageRecord::new(StatusCode::OK);
        record.usage = Some(TokenUsage {
            input: 3,
            output: 4,
            ..TokenUsage::default()
        });
        hook.clone().call(&record);
        assert_eq!(seen.load(Ordering::Relaxed), 7);
        assert_eq!(format!("{hook:?}"), "UsageHook(..)");
    }
}
