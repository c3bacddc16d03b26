//! Counters of what the watchers could not read.

use std::sync::atomic::{AtomicU64, Ordering};

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
