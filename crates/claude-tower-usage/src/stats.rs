//! Counters of what the watchers could not read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

/// How often usage could not be read, shared by every service one
/// [`UsageLayer`](crate::UsageLayer) made ([`UsageLayer::stats`](crate::UsageLayer::stats)).
///
/// A response is never failed for any of these: its record says
/// `usage: None` (unknown) and one of these counters goes up.
#[derive(Debug, Default)]
pub struct ReadStats {
    malformed: AtomicU64,
    oversized_events: AtomicU64,
    oversized_json: AtomicU64,
    encoded: AtomicU64,
}

impl ReadStats {
    /// A `message_start`, `message_delta`, `error` event or a JSON body that
    /// did not parse (broken JSON, counts that are strings or negative).
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// Interesting events whose `data` was over the per-event limit: skipped.
    pub fn oversized_events(&self) -> u64 {
        self.oversized_events.load(Ordering::Relaxed)
    }

    /// JSON bodies over the JSON limit: skipped.
    pub fn oversized_json(&self) -> u64 {
        self.oversized_json.load(Ordering::Relaxed)
    }

    /// Reports these counters on `meter` as `claude_tower.usage.read_failures`
    /// (`{event}`), attribute `claude_tower.reason` = `malformed`,
    /// `oversized_event`, `oversized_json` or `encoded`, read at each
    /// collection.
    pub fn observe(self: Arc<Self>, meter: &Meter) {
        meter
            .u64_observable_counter("claude_tower.usage.read_failures")
            .with_unit("{event}")
            .with_description("Usage that could not be read, by reason.")
            .with_callback(move |counter| {
                for (reason, n) in [
                    ("malformed", self.malformed()),
                    ("oversized_event", self.oversized_events()),
                    ("oversized_json", self.oversized_json()),
                    ("encoded", self.encoded()),
                ] {
                    counter.observe(n, &[KeyValue::new("claude_tower.reason", reason)]);
                }
            })
            .build();
    }

    /// Successful responses under a `content-encoding` (gzip, br, ...):
    /// passed on unread.
    pub fn encoded(&self) -> u64 {
        self.encoded.load(Ordering::Relaxed)
    }

    pub(crate) fn count_encoded(&self) {
        self.encoded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_oversized_event(&self) {
        self.oversized_events.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_oversized_json(&self) {
        self.oversized_json.fetch_add(1, Ordering::Relaxed);
    }
}
