//! The incremental SSE reader: finds event names and, for the four events
//! that carry usage, their `data`, across any chunking.

use claude_tower_core::ErrorClass;
use claude_tower_core::usage::{TokenUsage, stop_reason};
use memchr::{memchr, memchr2};

use crate::payload::{ErrorEvent, MessageDelta, MessageStart, Typed, class_of_error_type};
use crate::watch::Reading;

/// The most `data` bytes kept for one interesting event (64 KiB): a
/// `message_start` is a few hundred bytes. Longer events are skipped.
pub const DEFAULT_EVENT_LIMIT: usize = 64 * 1024;

/// Longest field name or event name looked at; longer ones are skipped.
const NAME_MAX: usize = 24;

/// Reads usage from a `text/event-stream` body fed in chunks of any size.
///
/// It follows the SSE framing (lines ending in `\n`, `\r\n` or `\r`, events
/// ending at a blank line, `:` comments, `data` lines joined) and parses only
/// `message_start`, `message_delta` and `error` events; `message_stop` is
/// noted, `content_block_delta` timed, every other event skipped without its
/// data being copied. At most [`DEFAULT_EVENT_LIMIT`] (or the configured
/// limit) bytes are held for one event; a longer event is skipped and makes
/// the usage unknown if it was one that carries usage.
///
/// The layer uses it on every event-stream response; it is public for
/// callers that see the bytes some other way.
///
/// ```
/// use claude_tower_usage::SseUsageReader;
///
/// let mut reader = SseUsageReader::new();
/// let stream = concat!(
///     "event: message_start\n",
///     "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
///     "event: message_delta\n",
///     "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":30}}\n\n",
///     "event: message_stop\n",
///     "data: {\"type\":\"message_stop\"}\n\n",
/// );
/// for chunk in stream.as_bytes().chunks(7) {
///     reader.feed(chunk);
/// }
/// let usage = reader.usage().unwrap();
/// assert_eq!((usage.input, usage.output), (12, 30));
/// assert_eq!(reader.model(), Some("claude-x"));
/// assert_eq!(reader.stop_reason(), Some("end_turn"));
/// assert!(reader.is_stopped());
/// ```
#[derive(Debug)]
pub struct SseUsageReader {
    line: Line,
    /// The previous chunk ended in `\r`: a `\n` first in the next one
    /// belongs to it.
    cr: bool,
    /// Whether the current line has any byte (a blank line ends an event).
    line_empty: bool,
    name: [u8; NAME_MAX],
    name_len: usize,
    kind: Kind,
    data: Vec<u8>,
    /// The current event's data went over the limit.
    oversized: bool,
    /// The current event has at least one `data` line.
    has_data: bool,
    limit: usize,
    reading: Reading,
    malformed_events: u32,
    oversized_events: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// Reading a field name into `name`.
    Field,
    /// Just after `field:`; an optional space comes next.
    Colon(Value),
    /// Reading a value.
    Value(Value),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    /// An `event` value, into `name`.
    Event,
    /// A `data` value kept in `data`.
    Data,
    /// Anything else: a comment, an unknown field, data of a skipped event.
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// No `event:` line yet.
    Unnamed,
    Start,
    Delta,
    Stop,
    Error,
    Content,
    Other,
}

impl Kind {
    fn of(name: &[u8]) -> Kind {
        match name {
            b"message_start" => Kind::Start,
            b"message_delta" => Kind::Delta,
            b"message_stop" => Kind::Stop,
            b"error" => Kind::Error,
            b"content_block_delta" => Kind::Content,
            _ => Kind::Other,
        }
    }

    /// Whether the event's data is read.
    fn wants_data(self) -> bool {
        matches!(
            self,
            Kind::Unnamed | Kind::Start | Kind::Delta | Kind::Error
        )
    }
}

impl Default for SseUsageReader {
    fn default() -> Self {
        Self::new()
    }
}

impl SseUsageReader {
    /// A reader holding at most [`DEFAULT_EVENT_LIMIT`] bytes of one event.
    pub fn new() -> Self {
        Self::with_event_limit(DEFAULT_EVENT_LIMIT)
    }

    /// A reader holding at most `limit` bytes of one event's data.
    pub fn with_event_limit(limit: usize) -> Self {
        Self {
            line: Line::Start,
            cr: false,
            line_empty: true,
            name: [0; NAME_MAX],
            name_len: 0,
            kind: Kind::Unnamed,
            data: Vec::new(),
            oversized: false,
            has_data: false,
            limit,
            reading: Reading::default(),
            malformed_events: 0,
            oversized_events: 0,
        }
    }

    /// Reads the next bytes of the stream.
    pub fn feed(&mut self, mut buf: &[u8]) {
        if self.cr {
            self.cr = false;
            if let Some((b'\n', rest)) = buf.split_first() {
                buf = rest;
            }
        }
        while !buf.is_empty() {
            match self.line {
                Line::Value(value) => match memchr2(b'\n', b'\r', buf) {
                    None => {
                        self.value(value, buf);
                        return;
                    }
                    Some(end) => {
                        self.value(value, &buf[..end]);
                        buf = self.end_line(&buf[end..]);
                    }
                },
                Line::Start => {
                    if let Some(len) = self.skippable_event(buf) {
                        buf = &buf[len..];
                        continue;
                    }
                    if let Some(end) = memchr2(b'\n', b'\r', buf) {
                        // The whole line is in this chunk: read it in one go.
                        self.whole_line(&buf[..end]);
                        self.line = Line::Start;
                        buf = self.terminator(&buf[end..]);
                        continue;
                    }
                    buf = self.line_start(buf);
                }
                Line::Field => {
                    let b = buf[0];
                    match b {
                        b':' => {
                            self.line = Line::Colon(self.field_value());
                            buf = &buf[1..];
                        }
                        b'\n' | b'\r' => {
                            // A field without a colon has an empty value.
                            let value = self.field_value();
                            self.line = Line::Value(value);
                            buf = self.end_line(buf);
                        }
                        _ => {
                            if self.name_len < NAME_MAX {
                                self.name[self.name_len] = b;
                                self.name_len += 1;
                            } else {
                                self.line = Line::Value(Value::Skip);
                            }
                            buf = &buf[1..];
                        }
                    }
                }
                Line::Colon(value) => {
                    if buf[0] == b' ' {
                        buf = &buf[1..];
                    }
                    self.line = Line::Value(value);
                }
            }
        }
    }

    /// The length of the event `buf` starts with, if the reader may skip it
    /// whole: the current event has nothing yet (this is its first line or
    /// the lines before held nothing it keeps), its first line names an
    /// event whose data is not read (`content_block_delta`, `ping`, ...), it
    /// ends in this chunk, its lines end in `\n` only, and none of them names
    /// the event again. Reading it line by line would change nothing but
    /// `content_seen`, so this does that and skips it: a few `memchr` calls
    /// per event instead of a walk over every line (the dense stream's
    /// events are mostly `content_block_delta`). Anything else returns
    /// `None`, and the line-by-line reading below takes it.
    fn skippable_event(&mut self, buf: &[u8]) -> Option<usize> {
        if self.kind != Kind::Unnamed || self.has_data || self.oversized {
            return None;
        }
        const CONTENT: &[u8] = b"event: content_block_delta\n";
        let (kind, lines_at) = if buf.starts_with(CONTENT) {
            // Most events of a stream: no search for the name's end.
            (Kind::Content, CONTENT.len())
        } else {
            let name_at = b"event: ".len();
            let name_len = memchr2(b'\n', b'\r', buf.strip_prefix(b"event: ")?)?;
            let lines_at = name_at + name_len + 1;
            if buf[lines_at - 1] != b'\n' {
                return None;
            }
            (Kind::of(&buf[name_at..lines_at - 1]), lines_at)
        };
        if kind.wants_data() || kind == Kind::Stop {
            return None;
        }
        // The event's other lines, up to the blank line that ends it.
        let mut at = lines_at;
        loop {
            let line = buf.get(at..)?;
            match line.first()? {
                b'\n' => break,
                b'\r' => return None,
                _ if line.starts_with(b"event") => return None,
                _ => {}
            }
            let end = memchr2(b'\n', b'\r', line)?;
            if line[end] == b'\r' {
                return None;
            }
            at += end + 1;
        }
        if kind == Kind::Content {
            self.reading.content_seen = true;
        }
        Some(at + 1)
    }

    /// What the value of the field named in `name` becomes, set up for it.
    fn field_value(&mut self) -> Value {
        match &self.name[..self.name_len] {
            b"event" => {
                self.name_len = 0;
                Value::Event
            }
            b"data" if self.kind.wants_data() && !self.oversized => {
                if self.has_data {
                    self.push_data(b"\n");
                }
                self.has_data = true;
                Value::Data
            }
            b"data" => {
                self.has_data = true;
                Value::Skip
            }
            _ => Value::Skip,
        }
    }

    fn value(&mut self, value: Value, bytes: &[u8]) {
        match value {
            Value::Skip => {}
            Value::Data => self.push_data(bytes),
            Value::Event => {
                let room = NAME_MAX - self.name_len;
                if bytes.len() > room {
                    // Longer than any name we read.
                    self.kind = Kind::Other;
                    self.data.clear();
                    self.line = Line::Value(Value::Skip);
                } else {
                    self.name[self.name_len..self.name_len + bytes.len()].copy_from_slice(bytes);
                    self.name_len += bytes.len();
                }
            }
        }
    }

    fn push_data(&mut self, bytes: &[u8]) {
        if self.oversized {
            return;
        }
        if self.data.len() + bytes.len() > self.limit {
            self.oversized = true;
            self.data = Vec::new();
            self.line = Line::Value(Value::Skip);
        } else {
            self.data.extend_from_slice(bytes);
        }
    }

    /// The start of a line whose end is not in this chunk: a comment, a
    /// field name to read byte by byte, or (fast) `data: ` / `event: `.
    fn line_start<'a>(&mut self, buf: &'a [u8]) -> &'a [u8] {
        self.line_empty = false;
        if buf[0] == b':' {
            self.line = Line::Value(Value::Skip);
            return &buf[1..];
        }
        let (field, len): (&[u8], usize) = if buf.starts_with(b"data: ") {
            (b"data", 6)
        } else if buf.starts_with(b"event: ") {
            (b"event", 7)
        } else {
            self.name_len = 0;
            self.line = Line::Field;
            return buf;
        };
        self.name[..field.len()].copy_from_slice(field);
        self.name_len = field.len();
        self.line = Line::Value(self.field_value());
        &buf[len..]
    }

    /// One line without its terminator, all of it at hand. Does what the
    /// byte-wise path below does for the same line, with one `memchr`.
    fn whole_line(&mut self, line: &[u8]) {
        let Some(&first) = line.first() else {
            self.dispatch();
            return;
        };
        if first == b':' {
            return;
        }
        let (name, value) = match memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"event" => self.named(value),
            b"data" => {
                if self.kind.wants_data() && !self.oversized {
                    if self.has_data {
                        self.push_data(b"\n");
                    }
                    self.push_data(value);
                }
                self.has_data = true;
            }
            _ => {}
        }
    }

    /// The event's name is known.
    fn named(&mut self, name: &[u8]) {
        self.kind = Kind::of(name);
        if !self.kind.wants_data() {
            // Data read before the name belongs to a skipped event.
            self.data.clear();
        }
        if self.kind == Kind::Content {
            self.reading.content_seen = true;
        }
    }

    /// Consumes the line terminator at the start of `rest` (`\r\n`, `\n`,
    /// or `\r`, which may be the first half of a `\r\n` split across chunks).
    fn terminator<'a>(&mut self, rest: &'a [u8]) -> &'a [u8] {
        match rest {
            [b'\r', b'\n', tail @ ..] => tail,
            [b'\r'] => {
                self.cr = true;
                &[]
            }
            [_, tail @ ..] => tail,
            [] => rest,
        }
    }

    /// At a line end (`rest` starts with `\r` or `\n`): finishes the line
    /// and returns what follows the line end.
    fn end_line<'a>(&mut self, rest: &'a [u8]) -> &'a [u8] {
        let rest = self.terminator(rest);
        if self.line == Line::Value(Value::Event) {
            let name = self.name;
            self.named(&name[..self.name_len]);
        }
        if self.line == Line::Start && self.line_empty {
            self.dispatch();
        }
        self.line = Line::Start;
        self.line_empty = true;
        rest
    }

    /// A blank line: the event is complete.
    fn dispatch(&mut self) {
        let mut kind = self.kind;
        if self.oversized {
            if kind.wants_data() {
                self.oversized_events += 1;
                if kind != Kind::Error {
                    self.reading.unreadable = true;
                }
                if kind == Kind::Error {
                    self.reading.error.get_or_insert(ErrorClass::Server);
                }
            }
        } else if self.has_data {
            if kind == Kind::Unnamed {
                kind = match serde_json::from_slice::<Typed<'_>>(&self.data) {
                    Ok(Typed { kind: Some(name) }) => Kind::of(name.as_bytes()),
                    _ => Kind::Other,
                };
                if kind == Kind::Content {
                    self.reading.content_seen = true;
                }
            }
            self.parse(kind);
        } else if kind == Kind::Error {
            self.reading.error.get_or_insert(ErrorClass::Server);
        }
        if kind == Kind::Stop {
            self.reading.stopped = true;
        }
        self.kind = Kind::Unnamed;
        self.data.clear();
        self.oversized = false;
        self.has_data = false;
    }

    fn parse(&mut self, kind: Kind) {
        let reading = &mut self.reading;
        let ok = match kind {
            Kind::Start => match serde_json::from_slice::<MessageStart<'_>>(&self.data) {
                Ok(start) => {
                    if let Some(model) = start.message.model {
                        reading.model = Some(model.into());
                    }
                    if let Some(usage) = start.message.usage {
                        usage.merge_into(&mut reading.usage);
                        reading.usage_seen = true;
                    }
                    true
                }
                Err(_) => false,
            },
            Kind::Delta => match serde_json::from_slice::<MessageDelta<'_>>(&self.data) {
                Ok(delta) => {
                    if let Some(reason) = delta.delta.and_then(|d| d.stop_reason) {
                        reading.stop_reason = stop_reason(reason.as_bytes());
                    }
                    if let Some(usage) = delta.usage {
                        usage.merge_into(&mut reading.usage);
                        reading.usage_seen = true;
                    }
                    true
                }
                Err(_) => false,
            },
            Kind::Error => {
                let class = serde_json::from_slice::<ErrorEvent<'_>>(&self.data)
                    .ok()
                    .and_then(|e| e.error.kind)
                    .map_or(ErrorClass::Server, |k| class_of_error_type(&k));
                reading.error.get_or_insert(class);
                true
            }
            _ => true,
        };
        if !ok {
            reading.unreadable = true;
            self.malformed_events += 1;
        }
    }

    /// The tokens read so far; `None` when no usage was read or an event
    /// that carries usage could not be read.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.reading.usage()
    }

    /// The `model` of `message_start`.
    pub fn model(&self) -> Option<&str> {
        self.reading.model.as_deref()
    }

    /// The last `stop_reason` of a `message_delta`.
    pub fn stop_reason(&self) -> Option<&str> {
        self.reading.stop_reason.as_deref()
    }

    /// The class of the first `event: error`.
    pub fn error_class(&self) -> Option<ErrorClass> {
        self.reading.error
    }

    /// Whether `message_stop` was seen.
    pub fn is_stopped(&self) -> bool {
        self.reading.stopped
    }

    /// Events that carry usage but did not parse.
    pub fn malformed_events(&self) -> u32 {
        self.malformed_events
    }

    /// Events skipped for being over the limit.
    pub fn oversized_events(&self) -> u32 {
        self.oversized_events
    }

    pub(crate) fn reading(&self) -> &Reading {
        &self.reading
    }

    pub(crate) fn into_reading(self) -> Reading {
        self.reading
    }
}

#[cfg(test)]
pub(crate) mod tests;
