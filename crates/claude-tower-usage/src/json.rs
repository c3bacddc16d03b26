//! Reads `model`, `stop_reason` and `usage` from a non-streaming JSON body.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use claude_tower_core::usage::{TokenUsage, stop_reason};
use claude_tower_toolpair::skim::{decode_string, first_string, top_level_members};

use crate::plain::{Plain, special};

use crate::payload::UsageFields;
use crate::stats::ReadStats;
use crate::watch::{Reading, model_of};

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

    /// The reading of the body; `requested` is the model asked for, shared
    /// when the message names the same.
    pub(crate) fn finish(
        self,
        complete: bool,
        stats: &ReadStats,
        requested: Option<&Arc<str>>,
    ) -> Reading {
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
        match read_message(bytes, requested) {
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
/// A message as the Messages API writes it (`usage` its last member, right
/// after `stop_reason` and `stop_sequence`) is read from its two ends: the
/// `model` near the start, `stop_reason` and `usage` at the end, the content
/// between them not looked at. Anything else, and any doubt, goes the whole
/// way: the body is skimmed (the tool-pairing scanner: structure checked,
/// strings skipped unparsed) and the three members parsed strictly.
///
/// `requested` is the model the request asked for: a message naming the
/// same model shares it instead of holding a copy.
pub(crate) fn read_message(bytes: &[u8], requested: Option<&Arc<str>>) -> Option<Reading> {
    match read_ends(bytes, requested) {
        Some(reading) => Some(reading),
        None => read_whole(bytes, requested),
    }
}

/// The whole-body read.
fn read_whole(bytes: &[u8], requested: Option<&Arc<str>>) -> Option<Reading> {
    let [model, reason, usage] = top_level_members(bytes, ["model", "stop_reason", "usage"])?;
    // A member that is `null` or absent is `None`; any other value must be
    // a string.
    fn string(raw: Option<&[u8]>) -> Option<Option<Cow<'_, str>>> {
        match raw {
            None | Some(b"null") => Some(None),
            Some(raw) => decode_string(raw).map(Some),
        }
    }
    let model = string(model)?;
    let reason = string(reason)?;
    let mut reading = Reading {
        usage_seen: true,
        model: model.and_then(|m| model_of(m.as_bytes(), requested)),
        stop_reason: reason.and_then(|r| stop_reason(r.as_bytes())),
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

/// The read from both ends; `None` (go the whole way) unless the body ends
/// `"stop_reason":S,"stop_sequence":Q,"usage":{..}}` with plain values.
///
/// Why the `usage` found from the end is the top-level one: in valid JSON an
/// unescaped `"usage":{` is a key; its object must be one well-formed object
/// followed by exactly one `}` and the end of the body, so the object that
/// `}` closes is the body itself. `stop_reason` and `stop_sequence` are then
/// its siblings by adjacency.
fn read_ends(b: &[u8], requested: Option<&Arc<str>>) -> Option<Reading> {
    let end = last_non_ws(b, b.len())?;
    let close = last_non_ws(b, end)?;
    if b[end] != b'}' || b[close] != b'}' || b.first() != Some(&b'{') {
        return None;
    }
    let at = last_usage_key(&b[..close])?;
    let object = at + USAGE_KEY.len() - 1;
    let (usage, after) = compact_usage(b, object).or_else(|| plain_usage(b, object))?;
    if after != close + 1 {
        return None;
    }
    let stop_reason = stop_members(&b[..at])?;
    let model = match leading_model(b).and_then(|raw| model_of(raw, requested)) {
        Some(model) => Some(model),
        None => match Plain::new(b, 0).leading_string(b"model") {
            Some(model) => model_of(model.as_bytes(), requested),
            None => first_string(b, "model").and_then(|m| model_of(m.as_bytes(), requested)),
        },
    };
    Some(Reading {
        usage_seen: true,
        usage,
        model,
        stop_reason,
        ..Reading::default()
    })
}

/// How far into a message [`leading_model`] looks for its key.
const LEADING_WINDOW: usize = 1024;

/// The message's `model`, read by walking from string to string over its
/// first [`LEADING_WINDOW`] bytes without parsing the members before it,
/// when nothing there can hide structure: `b` is an object, and before the
/// key no container opens or closes and no string holds an escape or a
/// control character.
/// Without an escape every quote opens or closes a string, so the walk
/// knows which strings are tokens; with no container opened since the first
/// `{`, a string `"model"` followed by `:` right after the `{` or a `,` is
/// a key of the message itself, and the first of that name. The value must
/// be a plain string. `None` leaves the model to [`Plain::leading_string`]
/// (the Messages API writes `id`, `type` and `role` first: this walk skips
/// their six strings with one `special` search each and reads nothing else).
fn leading_model(b: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = br#""model":""#;
    if b.first() != Some(&b'{') {
        return None;
    }
    let head = &b[..b.len().min(LEADING_WINDOW)];
    if let Some(model) = api_leading_model(b, head) {
        return Some(model);
    }
    // From string to string: `special` stops at every quote, backslash and
    // control character, so each stop outside a string must be a quote
    // that opens one, and each stop inside must be the quote that closes it.
    let mut pos = 1;
    loop {
        let open = special(head, pos)?;
        if head[open] != b'"'
            || head[pos..open]
                .iter()
                .any(|&c| matches!(c, b'{' | b'[' | b'}' | b']'))
        {
            return None;
        }
        if head[open + 1..].starts_with(b"model\"") {
            // The first `"model"`: the key, after `{` or `,`, or nothing.
            if !head[open..].starts_with(KEY) || !matches!(head[open - 1], b'{' | b',') {
                return None;
            }
            let start = open + KEY.len();
            let end = special(b, start)?;
            if b[end] != b'"' {
                return None;
            }
            // Not yet UTF-8 checked: `model_of` shares the requested
            // model when the bytes are the same, and checks otherwise.
            return Some(&b[start..end]);
        }
        let close = special(head, open + 1)?;
        if head[close] != b'"' {
            return None;
        }
        pos = close + 1;
    }
}

/// [`leading_model`] for a message that starts exactly as the Messages API
/// writes one, `{"id":"…","type":"message","role":"assistant","model":"…"`,
/// with plain id and model strings: two string searches and one comparison
/// instead of a walk over six strings. The `model` there is a key of the
/// message itself and the first of that name, as the walk would conclude.
fn api_leading_model<'a>(b: &'a [u8], head: &[u8]) -> Option<&'a [u8]> {
    const START: &[u8] = br#"{"id":""#;
    const AFTER_ID: &[u8] = br#"","type":"message","role":"assistant","model":""#;
    if !head.starts_with(START) {
        return None;
    }
    let id_end = special(head, START.len())?;
    if !head[id_end..].starts_with(AFTER_ID) {
        return None;
    }
    let start = id_end + AFTER_ID.len();
    let end = special(b, start)?;
    (b[end] == b'"').then(|| &b[start..end])
}

/// The four counts' keys, quoted and with their colon, in the order the
/// Messages API writes them; [`count_at`] gives the field of each.
const COUNT_KEYS: [&[u8]; 4] = [
    br#""input_tokens":"#,
    br#""cache_creation_input_tokens":"#,
    br#""cache_read_input_tokens":"#,
    br#""output_tokens":"#,
];

/// The field of the `i`-th of [`COUNT_KEYS`].
fn count_at(usage: &mut TokenUsage, i: usize) -> &mut u64 {
    match i {
        0 => &mut usage.input,
        1 => &mut usage.cache_creation_input,
        2 => &mut usage.cache_read_input,
        _ => &mut usage.output,
    }
}

/// The usage count a key (unquoted) names, if it is one of the four.
fn count_field<'u>(usage: &'u mut TokenUsage, key: &[u8]) -> Option<&'u mut u64> {
    let i = COUNT_KEYS
        .iter()
        .position(|quoted| &quoted[1..quoted.len() - 2] == key)?;
    Some(count_at(usage, i))
}

/// The `usage` object at `pos` read with [`Plain::object`]: its counts and
/// the index after its `}`.
fn plain_usage(b: &[u8], pos: usize) -> Option<(TokenUsage, usize)> {
    let mut usage = TokenUsage::default();
    let mut object = Plain::new(b, pos);
    object.object(0, |key, value| {
        if let Some(field) = count_field(&mut usage, key)
            && let Some(n) = count(value)?
        {
            *field = n;
        }
        Some(())
    })?;
    Some((usage, object.pos))
}

/// [`plain_usage`] for an object written without whitespace, as the
/// Messages API writes it: the same counts and end, member by member with
/// no whitespace skipped and each count parsed where it is found. `None`
/// for anything else (whitespace included), and the caller reads it with
/// [`plain_usage`]. Other members' values (`service_tier`, the nested
/// `cache_creation` and `server_tool_use`) are skipped by [`Plain`].
fn compact_usage(b: &[u8], pos: usize) -> Option<(TokenUsage, usize)> {
    let mut usage = TokenUsage::default();
    if b.get(pos) != Some(&b'{') {
        return None;
    }
    let mut at = pos + 1;
    if b.get(at) == Some(&b'}') {
        return Some((usage, at + 1));
    }
    // The counts in the order the API writes them: the next one expected is
    // recognised by one comparison, without searching for the key's end.
    let mut expected = 0;
    loop {
        let field = match COUNT_KEYS.get(expected) {
            Some(key) if b[at..].starts_with(key) => {
                at += key.len();
                expected += 1;
                Some(count_at(&mut usage, expected - 1))
            }
            _ => {
                if b.get(at) != Some(&b'"') {
                    return None;
                }
                let end = special(b, at + 1)?;
                if b[end] != b'"' || b.get(end + 1) != Some(&b':') {
                    return None;
                }
                let key = &b[at + 1..end];
                at = end + 2;
                count_field(&mut usage, key)
            }
        };
        match field {
            Some(field) => {
                // Digits parsed as they are passed: a count that fits a
                // `u64`, without a leading zero (`count`'s rules).
                let start = at;
                let mut n: u64 = 0;
                while let Some(&c) = b.get(at).filter(|c| c.is_ascii_digit()) {
                    n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                    at += 1;
                }
                if at > start {
                    if at - start > 1 && b[start] == b'0' {
                        return None;
                    }
                    *field = n;
                } else if b[at..].starts_with(b"null") {
                    at += 4;
                } else {
                    return None;
                }
            }
            None => {
                // `Plain` would skip whitespace before the value; here it
                // means the object is not compact.
                if matches!(b.get(at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
                    return None;
                }
                let mut value = Plain::new(b, at);
                value.value(0)?;
                at = value.pos;
            }
        }
        match b.get(at)? {
            b',' => at += 1,
            b'}' => return Some((usage, at + 1)),
            _ => return None,
        }
    }
}

/// `,"usage":{` as the Messages API writes it before the last member.
const USAGE_KEY: &[u8] = br#","usage":{"#;

/// How far from the end [`last_usage_key`] looks: a `usage` object is a few
/// hundred bytes; a body whose last one starts further back (or has none)
/// goes the whole way, so a large body without one costs no reverse scan.
const USAGE_WINDOW: usize = 4096;

/// Where the last `,"usage":{` in the last [`USAGE_WINDOW`] bytes of `head`
/// starts. Each occurrence ends in a `{`, so the `{`s are visited from the
/// end (`memrchr`, vectorized) and the bytes before each compared: a
/// `usage` object holds few braces, and the first match is the last one.
fn last_usage_key(head: &[u8]) -> Option<usize> {
    let window = head.len().saturating_sub(USAGE_WINDOW);
    let mut end = head.len();
    while let Some(brace) = memchr::memrchr(b'{', &head[window..end]) {
        let brace = window + brace;
        if head[..=brace].ends_with(USAGE_KEY) {
            return Some(brace + 1 - USAGE_KEY.len());
        }
        end = brace;
    }
    None
}

/// A usage count as written: `null` is `Some(None)`; digits that fit a
/// `u64` are the count; anything else (a string, a sign, a fraction, a
/// leading zero, a count past `u64`) is `None`, and the whole-body read
/// decides.
fn count(raw: &[u8]) -> Option<Option<u64>> {
    if raw == b"null" {
        return Some(None);
    }
    if raw.is_empty() || raw.len() > 1 && raw[0] == b'0' {
        return None;
    }
    raw.iter()
        .try_fold(0u64, |n, &c| {
            let digit = c.checked_sub(b'0').filter(|d| *d < 10)?;
            n.checked_mul(10)?.checked_add(u64::from(digit))
        })
        .map(Some)
}

/// `"stop_reason":S,"stop_sequence":Q` right before `,"usage"` (the end of
/// `head`), values plain strings (no escapes) or `null`: the stop reason.
fn stop_members(head: &[u8]) -> Option<Option<Cow<'static, str>>> {
    let (head, sequence) = plain_member(head, b"stop_sequence")?;
    let (head, reason) = plain_member(head.strip_suffix(b",")?, b"stop_reason")?;
    // The member before is anything but must end at a `,`.
    if last_non_ws(head, head.len()).map(|i| head[i]) != Some(b',') {
        return None;
    }
    // Both values must be UTF-8 (else the whole read decides); a documented
    // stop reason is, and is kept without a copy.
    if let Some(sequence) = sequence {
        std::str::from_utf8(sequence).ok()?;
    }
    match reason {
        Some(reason) => Some(Some(stop_reason(reason)?)),
        None => Some(None),
    }
}

/// Splits `,"name":value` off the end of `head`: what is before it, and the
/// value (a string's bytes, without escapes or quotes, not yet checked to be
/// UTF-8; or `None` for `null`).
fn plain_member<'a>(head: &'a [u8], name: &[u8]) -> Option<(&'a [u8], Option<&'a [u8]>)> {
    let (rest, value) = if let Some(rest) = head.strip_suffix(b"null") {
        (rest, None)
    } else {
        let inner = head.strip_suffix(b"\"")?;
        let open = memchr::memrchr(b'"', inner)?;
        let text = &inner[open + 1..];
        // No quote in `text` (the one before it was the last): any stop
        // `special` finds is an escape or a control character.
        if special(text, 0).is_some() {
            return None;
        }
        (&inner[..open], Some(text))
    };
    let rest = rest.strip_suffix(b":")?.strip_suffix(b"\"")?;
    let rest = rest.strip_suffix(name)?.strip_suffix(b"\"")?;
    Some((rest, value))
}

/// The index of the last byte before `end` that is not JSON whitespace.
fn last_non_ws(b: &[u8], end: usize) -> Option<usize> {
    b[..end]
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(chunks: &[&[u8]], limit: usize, complete: bool) -> (Reading, ReadStats) {
        let stats = ReadStats::default();
        let mut w = JsonWatcher::with_expected(limit, 0);
        for c in chunks {
            w.feed(&Bytes::copy_from_slice(c));
        }
        (w.finish(complete, &stats, None), stats)
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

    /// The read from both ends agrees with the whole-body read, and takes
    /// the bodies the Messages API writes.
    #[test]
    fn the_ends_read_agrees_with_the_whole_read() {
        let same = |body: &str| {
            let ends = read_ends(body.as_bytes(), None);
            let whole = read_whole(body.as_bytes(), None);
            if let Some(ends) = &ends {
                let whole = whole
                    .as_ref()
                    .expect("the whole read agrees it is a message");
                assert_eq!(ends.usage(), whole.usage(), "{body}");
                assert_eq!(ends.model, whole.model, "{body}");
                assert_eq!(ends.stop_reason, whole.stop_reason, "{body}");
            }
            ends.is_some()
        };
        // Taken from both ends.
        assert!(same(MESSAGE));
        assert!(same(
            r#"{"id":"m","model":"claude-opus-4-1","content":[{"type":"tool_use","id":"t","name":"n","input":{"usage":{"input_tokens":1}}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":5,"cache_creation_input_tokens":null,"output_tokens":6,"server_tool_use":{"web_search_requests":0},"service_tier":"standard"}}"#
        ));
        assert!(same(
            r#"{"model":"m","content":[],"stop_reason":null,"stop_sequence":"STOP","usage":{"output_tokens":0}}"#
        ));
        let r = read_ends(MESSAGE.as_bytes(), None).unwrap();
        assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(r.usage().map(|u| u.total_input()), Some(16));
        // Left to the whole read: other orders, spacing, escapes, nesting,
        // counts that are not plain, bodies that do not end as a message.
        for body in [
            r#"{"usage":{"output_tokens":1},"stop_reason":"end_turn","model":"m"}"#,
            r#"{ "model": "m", "stop_reason": "end_turn", "stop_sequence": null, "usage": {"output_tokens": 1} }"#,
            r#"{"model":"m","stop_reason":"end_turn","stop_sequence":"a"b","usage":{"output_tokens":1}}"#,
            r#"{"model":"m","stop_reason":"end_turn","stop_sequence":null,"usage":{"output_tokens":-1}}"#,
            r#"{"model":"m","stop_reason":"end_turn","stop_sequence":null,"usage":{"output_tokens":"1"}}"#,
            r#"{"model":"m","stop_reason":"end_turn","stop_sequence":null,"usage":{"output_tokens":1.0}}"#,
            r#"{"model":"m","stop_reason":"end_turn","stop_sequence":null,"usage":{"output_tokens":01}}"#,
            r#"{"x":{"model":"m","stop_reason":"end_turn","stop_sequence":null,"usage":{"output_tokens":1}}}"#,
            r#"{"model":"m","stop_reason":"end_turn","stop_sequence":null,"usage":{"output_tokens":1}"#,
            r#"{"model":"m","stop_reason":"end_turn","stop_sequence":null,"usage":{"output_tokens":1}}}"#,
            r#"["model","stop_reason":"end_turn","stop_sequence":null,"usage":{"output_tokens":1}}"#,
            r#"{"model":"m","stop_reason":"end_turn","stop_sequence":null,"usage":{"a":1,"usage":{"output_tokens":1}}}"#,
        ] {
            assert!(!same(body), "{body}");
        }
    }

    proptest::proptest! {
        /// Messages written the way the API writes them, with any text,
        /// ids, model names, tool inputs and counts: the ends read takes
        /// every one whose strings at the ends are plain, and agrees with
        /// the whole read on all it takes.
        #[test]
        fn the_ends_read_takes_api_shaped_messages(
            id in "[a-zA-Z0-9_]{0,30}",
            model in proptest::prelude::any::<String>(),
            text in proptest::prelude::any::<String>(),
            input_key in "(usage|model|stop_reason|x)",
            stop in proptest::option::of("(end_turn|tool_use|max_tokens|stop_sequence)"),
            sequence in proptest::option::of(proptest::prelude::any::<String>()),
            counts in proptest::collection::vec(proptest::option::of(0u64..=u64::MAX), 4),
            nested in proptest::prelude::any::<bool>(),
        ) {
            let j = |s: &str| serde_json::to_string(s).unwrap();
            let n = |c: Option<u64>| c.map_or("null".to_owned(), |c| c.to_string());
            let body = format!(
                r#"{{"id":{},"type":"message","role":"assistant","model":{},"content":[{{"type":"text","text":{}}},{{"type":"tool_use","id":"t","name":"n","input":{{{}:{{"output_tokens":1}}}}}}],"stop_reason":{},"stop_sequence":{},"usage":{{"input_tokens":{},"cache_creation_input_tokens":{},"cache_read_input_tokens":{},{}"output_tokens":{},"service_tier":"standard"}}}}"#,
                j(&id), j(&model), j(&text), j(&input_key),
                stop.as_deref().map_or("null".to_owned(), j),
                sequence.as_deref().map_or("null".to_owned(), j),
                n(counts[0]), n(counts[1]), n(counts[2]),
                if nested { r#""server_tool_use":{"web_search_requests":0},"cache_creation":{"ephemeral_5m_input_tokens":0},"# } else { "" },
                n(counts[3]),
            );
            let whole = read_whole(body.as_bytes(), None).expect("a valid message reads whole");
            let plain = |s: &str| !s.contains(['"', '\\']) && !s.chars().any(|c| c < ' ');
            let ends = read_ends(body.as_bytes(), None);
            if sequence.as_deref().is_none_or(plain) {
                proptest::prop_assert!(ends.is_some(), "{}", body);
            }
            if let Some(ends) = ends {
                proptest::prop_assert_eq!(ends.usage(), whole.usage());
                proptest::prop_assert_eq!(&ends.model, &whole.model);
                proptest::prop_assert_eq!(&ends.stop_reason, &whole.stop_reason);
            }
        }
    }

    #[test]
    fn the_requested_model_is_shared_and_documented_stop_reasons_are_not_copied() {
        let asked: Arc<str> = Arc::from("claude-sonnet-4-5");
        let other: Arc<str> = Arc::from("claude-opus-4-1");
        // Both ends, and the whole read (spaced: not read from the ends).
        let spaced = MESSAGE.replace(r#""usage":{"#, r#""usage": {"#);
        for body in [MESSAGE, spaced.as_str()] {
            let r = read_message(body.as_bytes(), Some(&asked)).unwrap();
            let model = r.model.as_ref().unwrap();
            assert!(Arc::ptr_eq(model, &asked), "{body}");
            assert!(
                matches!(r.stop_reason, Some(Cow::Borrowed("end_turn"))),
                "{body}"
            );
            let r = read_message(body.as_bytes(), Some(&other)).unwrap();
            assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5"), "{body}");
            assert!(!Arc::ptr_eq(r.model.as_ref().unwrap(), &other));
        }
        assert!(read_whole(spaced.as_bytes(), None).is_some());
        assert!(read_ends(spaced.as_bytes(), None).is_none());
        // An undocumented stop reason is kept, owned.
        let novel = MESSAGE.replace("end_turn", "a_new_reason");
        let r = read_message(novel.as_bytes(), None).unwrap();
        assert!(matches!(r.stop_reason, Some(Cow::Owned(ref s)) if s == "a_new_reason"));
        // Bytes that are not UTF-8: a model is left out (the usage is still
        // read); a stop reason leaves the body to the whole read, which
        // refuses it.
        let replaced = |from: &[u8], to: &[u8]| {
            let mut body = MESSAGE.as_bytes().to_vec();
            let at = body.windows(from.len()).position(|w| w == from).unwrap();
            body.splice(at..at + from.len(), to.iter().copied());
            body
        };
        let body = replaced(b"claude-sonnet-4-5", b"claude-\xff");
        let r = read_message(&body, Some(&asked)).unwrap();
        assert_eq!(r.model, None);
        assert_eq!(r.usage().map(|u| u.output), Some(7));
        let body = replaced(b"end_turn", b"end_\xff");
        assert!(read_ends(&body, Some(&asked)).is_none());
        assert!(read_message(&body, Some(&asked)).is_none());
    }

    #[test]
    fn the_model_is_found_by_one_search_only_where_it_is_a_key() {
        fn model(s: &str) -> Option<&str> {
            leading_model(s.as_bytes()).map(|raw| std::str::from_utf8(raw).unwrap())
        }
        assert_eq!(model(MESSAGE), Some("claude-sonnet-4-5"));
        assert_eq!(model(r#"{"model":"m","x":1}"#), Some("m"));
        assert_eq!(
            model(r#"{"model":5,"model":"m"}"#),
            None,
            "the first model is not a string"
        );
        assert_eq!(model(r#"{"id":"a,b","n":1,"model":"m"}"#), Some("m"));
        // Left to the member-by-member read:
        for body in [
            r#"{"x":{"model":"inner"},"model":"m"}"#,
            r#"{"x":["model"],"model":"m"}"#,
            r#"{"x":"\"","model":"m"}"#,
            r#"{"x":"a,"model":"m"}"#,
            r#"{ "model":"m"}"#,
            r#"{"model":"m\u0041"}"#,
            r#"{"x":1 "model":"m"}"#,
            r#"{"x":1},"model":"m"}"#,
            r#"["model":"m"]"#,
        ] {
            assert_eq!(model(body), None, "{body}");
        }
        let far = format!(r#"{{"id":"{}","model":"m"}}"#, "z".repeat(LEADING_WINDOW));
        assert_eq!(model(&far), None, "past the window");
    }

    #[test]
    fn the_api_start_is_read_by_one_comparison() {
        let api = |id: &str, model: &str| {
            format!(
                r#"{{"id":{id},"type":"message","role":"assistant","model":{model},"content":[]}}"#
            )
        };
        fn found(body: &str) -> Option<&[u8]> {
            api_leading_model(body.as_bytes(), body.as_bytes())
        }
        assert_eq!(found(MESSAGE), Some(&b"claude-sonnet-4-5"[..]));
        assert_eq!(found(&api(r#""""#, r#""m""#)), Some(&b"m"[..]));
        assert_eq!(found(&api(r#""""#, r#""""#)), Some(&b""[..]));
        for body in [
            api(r#""a\"b""#, r#""m""#),
            api(r#""a""#, r#""m\u0041""#),
            api(r#""a""#, "null"),
            api("1", r#""m""#),
            MESSAGE.replace("assistant", "user"),
            r#"{"id":"a","type":"message","role":"assistant","model":"m"#.to_owned(),
        ] {
            assert_eq!(found(&body), None, "{body}");
        }
    }

    /// A member's value: a string with quotes, commas, colons, braces,
    /// brackets and backslashes in it, an object or an array holding a
    /// look-alike `model`, or a number; as JSON.
    fn member_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy as _;
        let json = |s: String| serde_json::to_string(&s).unwrap();
        proptest::prop_oneof![
            r#"[a-z,:"{}\[\]\\]{0,8}"#.prop_map(json),
            r#"[a-z"]{0,4}"#.prop_map(move |s| format!(r#"{{"model":{}}}"#, json(s))),
            "[a-z]{0,4}".prop_map(move |s| format!(r#"["model",{}]"#, json(s))),
            (0u32..100).prop_map(|n| n.to_string()),
        ]
    }

    proptest::proptest! {
        /// Whatever members come first (strings with quotes, escapes and
        /// look-alike keys, nested objects and arrays, another `model`),
        /// the one search finds the same model as the general read, or
        /// leaves it to it.
        #[test]
        fn the_one_search_agrees_with_the_general_read(
            members in proptest::collection::vec((r#"(id|model|x|"model"|model\\)"#, member_value()), 0..5),
            model in r#"[a-z"\\-]{0,6}"#,
            last in proptest::prelude::any::<bool>(),
        ) {
            let mut parts: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
                .collect();
            let at = if last { parts.len() } else { parts.len() / 2 };
            parts.insert(at, format!(r#""model":{}"#, serde_json::to_string(&model).unwrap()));
            let body = format!("{{{}}}", parts.join(","));
            if let Some(found) = leading_model(body.as_bytes()) {
                let general = first_string(body.as_bytes(), "model");
                proptest::prop_assert_eq!(Some(found), general.as_deref().map(str::as_bytes), "{}", body);
            }
        }
    }

    proptest::proptest! {
        /// A message that starts as the API writes one, with any id and
        /// model (quotes and backslashes escaped): the model found is the
        /// general read's, and it is found whenever neither string has an
        /// escape.
        #[test]
        fn the_api_start_agrees_with_the_general_read(
            id in r#"[a-z_"\\]{0,8}"#,
            model in r#"[a-z\-"\\]{0,8}"#,
            role in "(assistant|user)",
        ) {
            let json = |s: &str| serde_json::to_string(s).unwrap();
            let body = format!(
                r#"{{"id":{},"type":"message","role":{},"model":{},"content":[]}}"#,
                json(&id), json(&role), json(&model)
            );
            let general = first_string(body.as_bytes(), "model");
            match leading_model(body.as_bytes()) {
                Some(found) => {
                    proptest::prop_assert_eq!(Some(found), general.as_deref().map(str::as_bytes), "{}", body);
                }
                None => proptest::prop_assert!(id.contains(['"', '\\']) || model.contains(['"', '\\']), "{}", body),
            }
        }
    }

    #[test]
    fn the_last_usage_key_is_found_within_the_window() {
        let key = |s: &str| last_usage_key(s.as_bytes());
        assert_eq!(key(r#"{"a":{},"usage":{"b":{}"#), Some(7));
        assert_eq!(key(r#"{"usage":{"x":1},"usage":{"y":{}"#), Some(16));
        assert_eq!(key(r#"{"usage":{"#), None);
        assert_eq!(key(r#",usage":{"#), None);
        assert_eq!(key(r#","usage":{"#), Some(0));
        let far = format!(r#"{{"x":1,"usage":{{"y":"{}""#, "z".repeat(USAGE_WINDOW));
        assert_eq!(key(&far), None, "past the window: the whole read decides");
    }

    /// A usage object's members in the order given, as JSON; `spaced`
    /// puts a space after each `:` and `,`.
    fn usage_json(members: &[(String, String)], spaced: bool) -> String {
        let (colon, comma) = if spaced { (": ", ", ") } else { (":", ",") };
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}{colon}{v}", serde_json::to_string(k).unwrap()))
            .collect();
        format!("{{{}}}", body.join(comma))
    }

    #[test]
    fn the_compact_usage_read_agrees_with_the_member_walk() {
        for body in [
            r#"{"input_tokens":30,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":10}"#,
            r#"{}"#,
            r#"{"input_tokens":null,"output_tokens":7,"service_tier":"standard","cache_creation":{"ephemeral_5m_input_tokens":0},"server_tool_use":{"web_search_requests":1}}"#,
        ] {
            let compact = compact_usage(body.as_bytes(), 0);
            assert!(compact.is_some(), "{body}");
            assert_eq!(compact, plain_usage(body.as_bytes(), 0), "{body}");
        }
        // Left to the member walk (and from it, maybe, the whole read):
        for body in [
            r#"{ "input_tokens":1}"#,
            r#"{"input_tokens": 1}"#,
            r#"{"input_tokens":1 ,"output_tokens":2}"#,
            r#"{"x": "y"}"#,
            r#"{"input_tokens":1.0}"#,
            r#"{"input_tokens":01}"#,
            r#"{"input_tokens":-1}"#,
            r#"{"input_tokens":"1"}"#,
            r#"{"input_tokens":99999999999999999999}"#,
            r#"{"input\u005ftokens":1}"#,
            r#"{"input_tokens":1"#,
        ] {
            assert_eq!(compact_usage(body.as_bytes(), 0), None, "{body}");
        }
    }

    /// A usage member's value: a count of any size, `null`, or something a
    /// count must not be (a sign, a fraction, an exponent, a leading zero,
    /// a string, a literal, an object, one past `u64`).
    fn usage_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy as _;
        proptest::prop_oneof![
            proptest::prelude::any::<u64>().prop_map(|n| n.to_string()),
            proptest::strategy::Just("null".to_owned()),
            proptest::sample::select(vec![
                "-1",
                "1.5",
                "01",
                "1e3",
                "\"1\"",
                "true",
                "\"standard\"",
                "{\"a\":1}",
                "{}",
                "18446744073709551616",
            ])
            .prop_map(str::to_owned),
        ]
    }

    proptest::proptest! {
        /// Whatever the members, written without whitespace the compact
        /// read gives exactly what the member walk gives (both `None` when a
        /// count is not plain); spaced, it leaves the object to the walk.
        #[test]
        fn the_compact_usage_read_agrees_on_any_object(
            members in proptest::collection::vec(
                (
                    "(input_tokens|output_tokens|cache_creation_input_tokens|cache_read_input_tokens|service_tier|cache_creation|x)",
                    usage_value(),
                ),
                0..6,
            ),
            spaced in proptest::prelude::any::<bool>(),
            in_order in proptest::prelude::any::<bool>(),
        ) {
            let mut members = members;
            if in_order {
                // As the API writes them, so the expected-key comparisons
                // carry the read from one count to the next.
                const ORDER: [&str; 7] = [
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                    "cache_creation",
                    "output_tokens",
                    "service_tier",
                    "x",
                ];
                members.sort_by_key(|(k, _)| ORDER.iter().position(|o| o == k));
            }
            let body = usage_json(&members, spaced);
            let walk = plain_usage(body.as_bytes(), 0);
            let compact = compact_usage(body.as_bytes(), 0);
            if spaced && !members.is_empty() {
                proptest::prop_assert_eq!(compact, None, "{}", body);
            } else {
                proptest::prop_assert_eq!(compact, walk, "{}", body);
            }
        }
    }

    #[test]
    fn counts_are_plain_digits_that_fit() {
        assert_eq!(count(b"0"), Some(Some(0)));
        assert_eq!(count(b"1234"), Some(Some(1234)));
        assert_eq!(count(b"18446744073709551615"), Some(Some(u64::MAX)));
        assert_eq!(count(b"null"), Some(None));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"99999999999999999999",
            b"01",
            b"-1",
            b"1.0",
            b"1e3",
            b"\"1\"",
            b"nul",
            b"1/",
            b"1:",
        ] {
            assert_eq!(count(bad), None, "{}", String::from_utf8_lossy(bad));
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
