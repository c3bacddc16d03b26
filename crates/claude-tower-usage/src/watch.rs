//! What a watcher learned from a response body, and which watcher a
//! response gets.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use claude_tower_core::ErrorClass;
use claude_tower_core::usage::TokenUsage;

use crate::json::JsonWatcher;
use crate::sse::SseUsageReader;
use crate::stats::ReadStats;

/// Everything read from one response so far.
#[derive(Debug, Default)]
pub(crate) struct Reading {
    pub(crate) usage: TokenUsage,
    /// A `usage` object (or a usage-free JSON message) was read.
    pub(crate) usage_seen: bool,
    /// An event or body that should carry usage could not be read: the
    /// usage is unknown.
    pub(crate) unreadable: bool,
    pub(crate) model: Option<Arc<str>>,
    pub(crate) stop_reason: Option<Cow<'static, str>>,
    /// The class of an `event: error` inside a stream.
    pub(crate) error: Option<ErrorClass>,
    /// `message_stop` was seen.
    pub(crate) stopped: bool,
    /// A content event (`content_block_delta`) was seen.
    pub(crate) content_seen: bool,
}

impl Reading {
    /// The usage to report: `None` when unknown.
    pub(crate) fn usage(&self) -> Option<TokenUsage> {
        (self.usage_seen && !self.unreadable).then_some(self.usage)
    }
}

/// The watcher a response body gets, chosen from its head.
#[derive(Debug)]
pub(crate) enum Watch {
    Sse(SseUsageReader),
    Json(JsonWatcher),
    /// Not read: a local answer, an error status, or a content type that
    /// carries no usage.
    Off,
}

impl Watch {
    /// Looks at one data frame as it passes.
    pub(crate) fn feed(&mut self, chunk: &Bytes) {
        match self {
            Watch::Sse(sse) => sse.feed(chunk),
            Watch::Json(json) => json.feed(chunk),
            Watch::Off => {}
        }
    }

    /// Whether the first content event has been seen.
    pub(crate) fn content_seen(&self) -> bool {
        match self {
            Watch::Sse(sse) => sse.reading().content_seen,
            _ => false,
        }
    }

    /// Ends the watch. `complete` is whether the body reached its end (a
    /// JSON body cut short is not malformed, only unread); `requested` is
    /// the model asked for, shared by the reading when the response names
    /// the same one.
    pub(crate) fn finish(
        self,
        complete: bool,
        stats: &ReadStats,
        requested: Option<&Arc<str>>,
    ) -> Option<Reading> {
        match self {
            Watch::Sse(sse) => {
                for _ in 0..sse.malformed_events() {
                    stats.count_malformed();
                }
                for _ in 0..sse.oversized_events() {
                    stats.count_oversized_event();
                }
                Some(sse.into_reading())
            }
            Watch::Json(json) => Some(json.finish(complete, stats, requested)),
            Watch::Off => None,
        }
    }
}

/// A response's `model` as a record holds it: `requested` itself (one
/// allocation shared) when the bytes are the same, else a new one; `None`
/// when `raw` is not UTF-8.
pub(crate) fn model_of(raw: &[u8], requested: Option<&Arc<str>>) -> Option<Arc<str>> {
    match requested {
        Some(requested) if requested.as_bytes() == raw => Some(Arc::clone(requested)),
        _ => std::str::from_utf8(raw).ok().map(Arc::from),
    }
}
