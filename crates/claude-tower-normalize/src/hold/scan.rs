//! An incremental reader of the start of an SSE stream: is this still the
//! preamble (`message_start`, `ping`), has something else begun, or is it an
//! `event: error`?
//!
//! It reads the bytes as they come, in chunks cut anywhere (inside a field
//! name, between `\r` and `\n`, inside the JSON of `data:`), and keeps no copy
//! of them except the data of an `error` event, which is needed to classify
//! it, up to a cap. Lines end in `\n`, `\r\n` or `\r`; a line starting with
//! `:` is a comment; `field: value` drops one space after the colon; a blank
//! line ends an event (the SSE rules of the WHATWG HTML standard).
//!
//! Only what it has to know is decided, as early as it can be:
//! - an `event:` line naming anything but `message_start`, `ping` or `error`
//!   ends the preamble at the end of that line (the first
//!   `content_block_start` normally): the hold can end before its data;
//! - an event with data and no `event:` line at all ends the preamble when
//!   it ends (Anthropic never sends one; whatever it is, it is not ours to
//!   hold back);
//! - an `error` event is reported when it ends, with its data.

/// What the stream has shown so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Still the preamble: keep holding.
    Hold,
    /// Something other than the preamble has begun.
    Release,
    /// An `event: error` ended; its data is [`Scanner::error_data`].
    Error,
}

/// Longest `event:` value that is kept to compare; longer ones are none of
/// the names looked for.
const EVENT_CAP: usize = 16;

/// The known field names are at most this long (`event`).
const NAME_CAP: usize = 5;

/// Where the scanner is within the current line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// Nothing read on this line yet.
    Start,
    /// Reading the field name (kept in `buf`).
    Name,
    /// Just after `field:`: one space here is not part of the value.
    Space(Field),
    /// Reading the value of a field.
    Value(Field),
    /// A comment, an unknown field or an over-long name: skip to the line end.
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Event,
    Data,
}

/// The current event's type, from its `event:` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// No `event:` line yet.
    Unnamed,
    /// `message_start` or `ping`.
    Preamble,
    Error,
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Scanner {
    line: Line,
    /// The last byte was `\r`: a `\n` right after it ends no second line.
    after_cr: bool,
    /// The field name, then the `event:` value, of the current line.
    buf: [u8; EVENT_CAP],
    len: usize,
    /// The `event:` value did not fit in `buf`.
    overflow: bool,
    event: Event,
    /// The current event has had a `data:` line.
    has_data: bool,
    /// The data of the current `error` event, up to `data_cap` bytes.
    data: Vec<u8>,
    data_cap: usize,
}

impl Scanner {
    /// A scanner keeping at most `data_cap` bytes of an error's data.
    pub(crate) fn new(data_cap: usize) -> Self {
        Self {
            line: Line::Start,
            after_cr: false,
            buf: [0; EVENT_CAP],
            len: 0,
            overflow: false,
            event: Event::Unnamed,
            has_data: false,
            data: Vec::new(),
            data_cap,
        }
    }

    /// The data of the `error` event [`Verdict::Error`] reported.
    pub(crate) fn error_data(&self) -> &[u8] {
        &self.data
    }

    /// Reads the next chunk. Once it returns anything but
    /// [`Verdict::Hold`], the rest of `chunk` is not read and the scanner
    /// is done.
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) -> Verdict {
        while let Some((&first, rest)) = chunk.split_first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                chunk = rest;
                continue;
            }
            // Skipped lines and data values go by in runs, up to the line end.
            if matches!(self.line, Line::Skip | Line::Value(Field::Data)) {
                let end = chunk.iter().position(|&b| b == b'\n' || b == b'\r');
                let run = &chunk[..end.unwrap_or(chunk.len())];
                if self.line == Line::Value(Field::Data) {
                    self.push_data(run);
                }
                let Some(end) = end else {
                    return Verdict::Hold;
                };
                self.after_cr = chunk[end] == b'\r';
                chunk = &chunk[end + 1..];
                let verdict = self.end_line();
                if verdict != Verdict::Hold {
                    return verdict;
                }
                continue;
            }
            chunk = rest;
            if first == b'\n' || first == b'\r' {
                self.after_cr = first == b'\r';
                let verdict = self.end_line();
                if verdict != Verdict::Hold {
                    return verdict;
                }
                continue;
            }
            self.byte(first);
        }
        Verdict::Hold
    }

    /// The stream ended: an event cut short by the end counts as ended (the
    /// standard drops it; an error cut short is still an error).
    pub(crate) fn finish(&mut self) -> Verdict {
        if self.line != Line::Start {
            let verdict = self.end_line();
            if verdict != Verdict::Hold {
                return verdict;
            }
        }
        self.end_line()
    }

    fn byte(&mut self, b: u8) {
        match self.line {
            Line::Start if b == b':' => self.line = Line::Skip,
            Line::Start => {
                self.line = Line::Name;
                self.buf[0] = b;
                self.len = 1;
            }
            Line::Name if b == b':' => {
                self.line = match &self.buf[..self.len] {
                    b"event" => Line::Space(Field::Event),
                    b"data" => Line::Space(Field::Data),
                    _ => Line::Skip,
                };
                self.len = 0;
                self.overflow = false;
            }
            Line::Name if self.len < NAME_CAP => {
                self.buf[self.len] = b;
                self.len += 1;
            }
            Line::Name => self.line = Line::Skip,
            Line::Space(field) => {
                self.line = Line::Value(field);
                if b != b' ' {
                    self.byte(b);
                }
            }
            Line::Value(Field::Event) if self.len < EVENT_CAP => {
                self.buf[self.len] = b;
                self.len += 1;
            }
            Line::Value(Field::Event) => self.overflow = true,
            Line::Value(Field::Data) => self.push_data(&[b]),
            Line::Skip => {}
        }
    }

    fn push_data(&mut self, run: &[u8]) {
        if self.event == Event::Error {
            let room = self.data_cap.saturating_sub(self.data.len());
            self.data.extend_from_slice(&run[..run.len().min(room)]);
        }
    }

    fn end_line(&mut self) -> Verdict {
        let line = std::mem::replace(&mut self.line, Line::Start);
        let field = match line {
            // A blank line: the event ends.
            Line::Start => return self.end_event(),
            Line::Skip => return Verdict::Hold,
            // A line without a colon is a field name with an empty value.
            Line::Name => match &self.buf[..self.len] {
                b"event" => {
                    self.len = 0;
                    Field::Event
                }
                b"data" => Field::Data,
                _ => return Verdict::Hold,
            },
            Line::Space(field) | Line::Value(field) => field,
        };
        match field {
            Field::Data => {
                self.has_data = true;
                // Lines of one event's data are joined with `\n`.
                self.push_data(b"\n");
                Verdict::Hold
            }
            Field::Event => {
                let name = if self.overflow {
                    &b""[..]
                } else {
                    &self.buf[..self.len]
                };
                self.event = match name {
                    b"message_start" | b"ping" => Event::Preamble,
                    b"error" => Event::Error,
                    _ => return Verdict::Release,
                };
                Verdict::Hold
            }
        }
    }

    fn end_event(&mut self) -> Verdict {
        let event = std::mem::replace(&mut self.event, Event::Unnamed);
        let has_data = std::mem::take(&mut self.has_data);
        match event {
            Event::Error => Verdict::Error,
            Event::Unnamed if has_data => Verdict::Release,
            // A preamble event, or a blank line with nothing before it.
            Event::Preamble | Event::Unnamed => Verdict::Hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\"}}\n\n";
    const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";
    const BLOCK: &str =
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0}\n\n";
    const ERROR: &str = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    const ERROR_JSON: &str = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n";

    /// Feeds `chunks` in order; the verdict, and how many bytes were read
    /// before it was reached (all of them when still holding).
    fn scan(chunks: &[&[u8]]) -> (Verdict, Scanner) {
        let mut s = Scanner::new(1024);
        for chunk in chunks {
            let v = s.feed(chunk);
            if v != Verdict::Hold {
                return (v, s);
            }
        }
        (Verdict::Hold, s)
    }

    #[test]
    fn the_preamble_holds_and_content_releases() {
        let (v, _) = scan(&[START.as_bytes(), PING.as_bytes()]);
        assert_eq!(v, Verdict::Hold);
        let (v, _) = scan(&[START.as_bytes(), PING.as_bytes(), BLOCK.as_bytes()]);
        assert_eq!(v, Verdict::Release);
    }

    #[test]
    fn content_releases_at_the_end_of_its_event_line() {
        let mut s = Scanner::new(1024);
        assert_eq!(s.feed(START.as_bytes()), Verdict::Hold);
        assert_eq!(s.feed(b"event: content_block_delta"), Verdict::Hold);
        assert_eq!(s.feed(b"\n"), Verdict::Release);
    }

    #[test]
    fn an_error_is_reported_with_its_data() {
        let (v, s) = scan(&[START.as_bytes(), PING.as_bytes(), ERROR.as_bytes()]);
        assert_eq!(v, Verdict::Error);
        assert_eq!(std::str::from_utf8(s.error_data()).unwrap(), ERROR_JSON);
    }

    #[test]
    fn line_endings_comments_and_spaces() {
        let crlf = "event:message_start\r\ndata: {}\r\n\r\n: keep-alive\r\nevent:ping\r\n\r\nevent: error\rdata:{\"a\":1}\rdata: 2\r\r";
        let (v, s) = scan(&[crlf.as_bytes()]);
        assert_eq!(v, Verdict::Error);
        assert_eq!(s.error_data(), b"{\"a\":1}\n2\n");
        // `event:  ping` keeps the second space: not a preamble name.
        let (v, _) = scan(&[b"event:  ping\n"]);
        assert_eq!(v, Verdict::Release);
    }

    #[test]
    fn unknown_named_and_unnamed_events_release() {
        assert_eq!(scan(&[b"event: surprise\n"]).0, Verdict::Release);
        assert_eq!(
            scan(&[b"event: a_very_long_event_name_indeed\n"]).0,
            Verdict::Release
        );
        assert_eq!(scan(&[b"data: {}\n"]).0, Verdict::Hold);
        assert_eq!(scan(&[b"data: {}\n\n"]).0, Verdict::Release);
        assert_eq!(scan(&[b"retry: 10\nid: 1\n\n\n"]).0, Verdict::Hold);
        assert_eq!(scan(&[b"event\n"]).0, Verdict::Release);
        assert_eq!(scan(&[b"datum: x\nevents: y\n\n"]).0, Verdict::Hold);
    }

    #[test]
    fn an_error_cut_short_by_the_end_is_still_an_error() {
        let mut s = Scanner::new(1024);
        assert_eq!(
            s.feed(b"event: error\ndata: {\"error\":{\"type\":\"api_error\"}}"),
            Verdict::Hold
        );
        assert_eq!(s.finish(), Verdict::Error);
        assert_eq!(s.error_data(), b"{\"error\":{\"type\":\"api_error\"}}\n");
        let mut s = Scanner::new(1024);
        assert_eq!(s.feed(START.as_bytes()), Verdict::Hold);
        assert_eq!(s.finish(), Verdict::Hold);
    }

    #[test]
    fn error_data_is_capped() {
        let mut s = Scanner::new(8);
        let big = format!("event: error\ndata: {}\n\n", "x".repeat(100));
        assert_eq!(s.feed(big.as_bytes()), Verdict::Error);
        assert_eq!(s.error_data(), b"xxxxxxxx");
    }

    #[test]
    fn only_error_data_is_kept() {
        let mut s = Scanner::new(1 << 20);
        assert_eq!(s.feed(START.as_bytes()), Verdict::Hold);
        assert_eq!(s.feed(PING.as_bytes()), Verdict::Hold);
        assert!(s.error_data().is_empty());
        assert_eq!(s.data.capacity(), 0);
    }

    /// The stream as the simulator and Anthropic send it, with each ending.
    fn streams() -> [(String, Verdict); 4] {
        [
            (format!("{START}{PING}{BLOCK}"), Verdict::Release),
            (format!("{START}{PING}{ERROR}"), Verdict::Error),
            (format!("{START}{PING}"), Verdict::Hold),
            (
                format!(
                    "{}{}{}",
                    START.replace('\n', "\r\n"),
                    PING.replace('\n', "\r"),
                    ERROR.replace('\n', "\r\n")
                ),
                Verdict::Error,
            ),
        ]
    }

    #[test]
    fn every_split_point_gives_the_same_verdict() {
        for (stream, expected) in streams() {
            let bytes = stream.as_bytes();
            for at in 0..=bytes.len() {
                let (v, s) = scan(&[&bytes[..at], &bytes[at..]]);
                assert_eq!(v, expected, "split at {at} of {stream:?}");
                if v == Verdict::Error {
                    assert_eq!(
                        std::str::from_utf8(s.error_data()).unwrap().trim_end(),
                        ERROR_JSON.trim_end()
                    );
                }
            }
        }
    }

    proptest! {
        /// Any chunking, down to single bytes, gives the verdict of the whole.
        #[test]
        fn any_chunking_gives_the_same_verdict(
            which in 0usize..4,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let (stream, expected) = streams()[which].clone();
            let bytes = stream.as_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.push(0);
            at.push(bytes.len());
            at.sort_unstable();
            let chunks: Vec<&[u8]> = at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
            let (v, s) = scan(&chunks);
            prop_assert_eq!(v, expected);
            if v == Verdict::Error {
                prop_assert_eq!(
                    std::str::from_utf8(s.error_data()).unwrap().trim_end(),
                    ERROR_JSON.trim_end()
                );
            }
        }

        /// Arbitrary bytes never panic the scanner, and its copy stays capped.
        #[test]
        fn arbitrary_bytes_are_safe(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut s = Scanner::new(32);
            for chunk in &chunks {
                if s.feed(chunk) != Verdict::Hold {
                    break;
                }
            }
            prop_assert!(s.error_data().len() <= 32);
        }
    }
}
