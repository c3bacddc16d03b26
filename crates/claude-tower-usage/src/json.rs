//! Reads `model`, `stop_reason` and `usage` from a non-streaming JSON body.

use std::borrow::Cow;

use bytes::Bytes;
use claude_tower_toolpair::skim::top_level_members;

use crate::payload::UsageFields;
use crate::stats::ReadStats;
use crate::watch::Reading;

/// The largest JSON body read for usage (1 MiB). A `message` with the
/// longest output Claude writes stays well under it; a longer body is
/// passed on unread, counted, and its usage is unknown.
pub const DEFAULT_JSON_LIMIT: usize = 1024 * 1024;

/// Collects a JSON body up to a limit, then parses the few fields it needs.
///
/// A body that arrives as one frame is kept by reference (no copy); only a
/// body in several frames is copied, once, into one buffer.
#[derive(Debug)]
pub(crate) struct JsonWatcher {
    first: Option<Bytes>,
    buf: Vec<u8>,
    limit: usize,
    /// The body's declared length, to size the buffer once.
    expected: usize,
    over: bool,
}

impl JsonWatcher {
    /// A watcher for a body declaring `expected` bytes (0: unknown).
    pub(crate) fn with_expected(limit: usize, expected: u64) -> Self {
        let expected = usize::try_from(expected).unwrap_or(usize::MAX).min(limit);
        Self {
            first: None,
            buf: Vec::new(),
            limit,
            expected,
            over: false,
        }
    }

    pub(crate) fn feed(&mut self, chunk: &Bytes) {
        if self.over || chunk.is_empty() {
            return;
        }
        let held = self.first.as_ref().map_or(self.buf.len(), Bytes::len);
        if held + chunk.len() > self.limit {
            self.over = true;
            self.first = None;
            self.buf = Vec::new();
            return;
        }
        if self.buf.is_empty() {
            match self.first.take() {
                None => {
                    self.first = Some(chunk.clone());
                    return;
                }
                Some(first) => {
                    self.buf
                        .reserve(self.expected.max(first.len() + chunk.len()));
                    self.buf.extend_from_slice(&first);
                }
            }
        }
        self.buf.extend_from_slice(chunk);
    }

    pub(crate) fn finish(self, complete: bool, stats: &ReadStats) -> Reading {
        let mut reading = Reading::default();
        if self.over {
            stats.count_oversized_json();
            reading.unreadable = true;
            return reading;
        }
        let bytes: &[u8] = match &self.first {
            Some(first) => first,
            None => &self.buf,
        };
        if bytes.is_empty() && complete {
            // No body (a HEAD, a 204): nothing billed.
            reading.usage_seen = true;
            return reading;
        }
        match read_message(bytes) {
            Some(message) => reading = message,
            None => {
                // A body cut short by a disconnect is unread, not malformed.
                if complete {
                    stats.count_malformed();
                }
                reading.unreadable = true;
            }
        }
        reading
    }
}

/// Reads a whole `message` body; `None` when it is not one JSON object or
/// its `usage` counts are not counts. A JSON object without `usage` (a
/// `count_tokens` answer, a model list) reads as zero tokens.
///
/// The body is skimmed (the tool-pairing scanner: structure checked,
/// content strings skipped unparsed); only the three members read are
/// parsed, strictly, with serde.
pub(crate) fn read_message(bytes: &[u8]) -> Option<Reading> {
    let [model, stop_reason, usage] = top_level_members(bytes, ["model", "stop_reason", "usage"])?;
    let string = |raw: Option<&[u8]>| -> Option<Option<Box<str>>> {
        match raw {
            None => Some(None),
            Some(raw) => serde_json::from_slice::<Option<Cow<'_, str>>>(raw)
                .ok()
                .map(|s| s.map(Into::into)),
        }
    };
    let mut reading = Reading {
        usage_seen: true,
        model: string(model)?,
        stop_reason: string(stop_reason)?,
        ..Reading::default()
    };
    if let Some(raw) = usage {
        let fields: Option<UsageFields> = serde_json::from_slice(raw).ok()?;
        if let Some(fields) = fields {
            fields.merge_into(&mut reading.usage);
        }
    }
    Some(reading)
}

#[cfg(test)]
mod tests {
    use super::*;
    use claude_tower_core::usage::TokenUsage;

    fn watch(chunks: &[&[u8]], limit: usize, complete: bool) -> (Reading, ReadStats) {
        let stats = ReadStats::default();
        let mut w = JsonWatcher::with_expected(limit, 0);
        for c in chunks {
            w.feed(&Bytes::copy_from_slice(c));
        }
        (w.finish(complete, &stats), stats)
    }

    const MESSAGE: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"hi \"usage\": {\"input_tokens\": 9}"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":11,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"output_tokens":7}}"#;

    #[test]
    fn reads_usage_model_and_stop_reason_in_any_chunking() {
        let bytes = MESSAGE.as_bytes();
        for split in 0..bytes.len() {
            let (r, stats) = watch(
                &[&bytes[..split], &bytes[split..]],
                DEFAULT_JSON_LIMIT,
                true,
            );
            let usage = r.usage().expect("usage read");
            assert_eq!(
                (
                    usage.input,
                    usage.output,
                    usage.cache_creation_input,
                    usage.cache_read_input
                ),
                (11, 7, 2, 3)
            );
            assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5"));
            assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
            assert_eq!(stats.malformed(), 0);
        }
    }

    #[test]
    fn truncated_json_is_unknown_and_counted() {
        let bytes = &MESSAGE.as_bytes()[..MESSAGE.len() - 10];
        let (r, stats) = watch(&[bytes], DEFAULT_JSON_LIMIT, true);
        assert_eq!(r.usage(), None);
        assert_eq!(stats.malformed(), 1);
        // Cut short by the client: unknown, but not malformed.
        let (r, stats) = watch(&[bytes], DEFAULT_JSON_LIMIT, false);
        assert_eq!(r.usage(), None);
        assert_eq!(stats.malformed(), 0);
    }

    #[test]
    fn string_and_negative_counts_are_unknown() {
        for body in [
            r#"{"model":"m","usage":{"input_tokens":"11","output_tokens":7}}"#,
            r#"{"model":"m","usage":{"input_tokens":-11,"output_tokens":7}}"#,
        ] {
            let (r, stats) = watch(&[body.as_bytes()], DEFAULT_JSON_LIMIT, true);
            assert_eq!(r.usage(), None, "{body}");
            assert_eq!(stats.malformed(), 1);
        }
    }

    #[test]
    fn over_the_limit_is_skipped_and_counted() {
        let (r, stats) = watch(
            &[&MESSAGE.as_bytes()[..100], &MESSAGE.as_bytes()[100..]],
            128,
            true,
        );
        assert_eq!(r.usage(), None);
        assert_eq!(stats.oversized_json(), 1);
    }

    #[test]
    fn model_and_stop_reason_must_be_strings_or_null() {
        let (r, stats) = watch(
            &[br#"{"model":null,"stop_reason":null,"usage":{"output_tokens":3}}"#],
            DEFAULT_JSON_LIMIT,
            true,
        );
        assert_eq!(r.usage().map(|u| u.output), Some(3));
        assert_eq!((r.model, r.stop_reason), (None, None));
        assert_eq!(stats.malformed(), 0);
        for bad in [
            &br#"{"model":7,"usage":{"output_tokens":3}}"#[..],
            br#"{"model":"m","usage":[1]}"#,
            br#"{"model":"m","usage":{"output_tokens":3}} trailing"#,
            br#"{"model":"\x","usage":{"output_tokens":3}}"#,
        ] {
            let (r, stats) = watch(&[bad], DEFAULT_JSON_LIMIT, true);
            assert_eq!(r.usage(), None, "{}", String::from_utf8_lossy(bad));
            assert_eq!(stats.malformed(), 1);
        }
    }

    #[test]
    fn an_empty_body_is_zero_tokens_not_malformed() {
        let (r, stats) = watch(&[], DEFAULT_JSON_LIMIT, true);
        assert_eq!(r.usage(), Some(TokenUsage::default()));
        assert_eq!(stats.malformed(), 0);
    }

    #[test]
    fn json_without_usage_is_zero_tokens() {
        let (r, _) = watch(&[br#"{"input_tokens": 42}"#], DEFAULT_JSON_LIMIT, true);
        assert_eq!(r.usage(), Some(TokenUsage::default()));
    }
}
