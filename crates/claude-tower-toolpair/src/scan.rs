//! The scanner: one pass over the body that skips everything except the
//! handful of fields pairing depends on.
//!
//! It materializes, per message, the `role` and the byte span of the message
//! and of its `content` array; per content block, its `type`, `id` and
//! `tool_use_id`. Everything else (text, tool inputs, tool result contents,
//! the system prompt, tool definitions) is skipped: strings by a search for
//! the closing quote (word at a time for short strings, 64-byte SIMD masks
//! for long ones, see `closing_quote`), containers with an explicit stack
//! (no recursion, so deeply nested garbage cannot overflow the stack).
//!
//! `wide` gives the 16-byte compares and masks safely (the crate forbids
//! `unsafe`), on SSE2 (every x86-64), NEON and WASM SIMD, with a portable
//! fallback elsewhere; the standard library's `portable_simd` is not stable.
//!
//! NOTE: the scanner is structurally strict (objects, arrays, literals,
//! numbers, trailing bytes) but lexically lenient inside strings it skips: it
//! does not check escapes, raw control characters or UTF-8 there. Those
//! bodies are invalid JSON the upstream rejects with its own 400 anyway; the
//! strings it does materialize (keys it compares, roles, types, ids) are
//! decoded strictly.

use std::borrow::Cow;
use std::fmt;

use memchr::memchr;
use wide::u8x16;

/// A byte range in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// A client `tool_use` (carries `id`).
    ToolUse,
    /// `server_tool_use` or `mcp_tool_use` (carries `id`).
    ServerToolUse,
    /// A client `tool_result` (carries `tool_use_id`).
    ToolResult,
    /// `web_search_tool_result` and every other `*_tool_result` (carries `tool_use_id`).
    ServerToolResult(Cow<'a, str>),
    /// Anything else: text, image, thinking, document...
    Other,
}

#[derive(Debug, Clone)]
pub(crate) struct Block<'a> {
    pub(crate) span: Span,
    pub(crate) kind: Kind<'a>,
    /// `id` or `tool_use_id`, decoded, for the tool kinds.
    pub(crate) id: Cow<'a, str>,
    /// The id's JSON string as written, quotes included.
    pub(crate) id_raw: Span,
}

#[derive(Debug, Clone)]
pub(crate) enum Content {
    Text,
    Blocks {
        /// Offset of `[`.
        open: usize,
        /// Offset of `]`.
        close: usize,
        /// Indices into [`Conversation::blocks`].
        first: usize,
        len: usize,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) span: Span,
    pub(crate) role: Role,
    pub(crate) content: Content,
}

/// The parts of a Messages body pairing depends on, borrowed from the body.
#[derive(Debug, Default)]
pub(crate) struct Conversation<'a> {
    pub(crate) messages: Vec<Message>,
    pub(crate) blocks: Vec<Block<'a>>,
    /// Offsets of the `messages` array's `[` and `]`.
    pub(crate) open: usize,
    pub(crate) close: usize,
}

impl<'a> Conversation<'a> {
    pub(crate) fn blocks_of(&self, message: &Message) -> &[Block<'a>] {
        match message.content {
            Content::Text => &[],
            Content::Blocks { first, len, .. } => &self.blocks[first..first + len],
        }
    }
}

/// Why a body was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unchecked {
    NotJson(crate::JsonError),
    NotMessages(&'static str),
}

type R<T> = Result<T, crate::JsonError>;

/// Scans `body` into a [`Conversation`], or says why it cannot.
pub(crate) fn scan(body: &[u8]) -> Result<Conversation<'_>, Unchecked> {
    scan_with_model(body).0
}

/// [`scan`], and the span (quotes included) of the value of the first
/// top-level `model` member whose value is a string, as [`top_level_string`]
/// finds it, read in the same pass (kept even when the body breaks after it).
pub(crate) fn scan_with_model(body: &[u8]) -> (Result<Conversation<'_>, Unchecked>, Option<Span>) {
    let mut p = Parser::new(body);
    let result = match p.top() {
        Err(e) => Err(Unchecked::NotJson(e)),
        Ok(()) => {
            if let Some(why) = p.shape {
                Err(Unchecked::NotMessages(why))
            } else if !p.found {
                Err(Unchecked::NotMessages("the body has no `messages` field"))
            } else {
                Ok(std::mem::take(&mut p.conv))
            }
        }
    };
    (result, p.model)
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
    stack: Nesting,
    /// The first way the body departs from the Messages shape.
    shape: Option<&'static str>,
    found: bool,
    conv: Conversation<'a>,
    /// The first top-level `model` member's string value (quotes included).
    model: Option<Span>,
}

/// The containers [`Parser::skip`] is inside, innermost last (`true`: an
/// object): a bit per level for the first 64 levels, a vector beyond. A
/// request's JSON is a few levels deep, so skipping it allocates nothing.
#[derive(Debug, Default)]
struct Nesting {
    bits: u64,
    depth: usize,
    deeper: Vec<bool>,
}

impl Nesting {
    const INLINE: usize = u64::BITS as usize;

    fn push(&mut self, is_object: bool) {
        if self.depth < Self::INLINE {
            let bit = 1u64 << self.depth;
            if is_object {
                self.bits |= bit;
            } else {
                self.bits &= !bit;
            }
        } else {
            self.deeper.push(is_object);
        }
        self.depth += 1;
    }

    fn last(&self) -> Option<bool> {
        match self.depth {
            0 => None,
            d if d <= Self::INLINE => Some(self.bits >> (d - 1) & 1 == 1),
            _ => self.deeper.last().copied(),
        }
    }

    fn pop(&mut self) {
        if self.depth > Self::INLINE {
            self.deeper.pop();
        }
        self.depth = self.depth.saturating_sub(1);
    }

    fn clear(&mut self) {
        self.depth = 0;
        self.deeper.clear();
    }

    fn is_empty(&self) -> bool {
        self.depth == 0
    }
}

/// A JSON string as written: the span between the quotes.
#[derive(Clone, Copy)]
struct RawStr {
    inner: Span,
}

impl<'a> Parser<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self {
            b,
            pos: 0,
            stack: Nesting::default(),
            shape: None,
            found: false,
            conv: Conversation::default(),
            model: None,
        }
    }

    // === lexing ===

    fn err(&self, what: &'static str) -> crate::JsonError {
        crate::JsonError {
            offset: self.pos,
            what,
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8, what: &'static str) -> R<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// Skips a string; `pos` is at its opening quote.
    #[inline]
    fn string(&mut self) -> R<RawStr> {
        let open = self.pos;
        let Some(quote) = closing_quote(self.b, open) else {
            self.pos = self.b.len();
            return Err(self.err("unterminated string"));
        };
        self.pos = quote + 1;
        Ok(RawStr {
            inner: Span {
                start: open + 1,
                end: quote,
            },
        })
    }

    fn literal(&mut self, word: &'static [u8]) -> R<()> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> R<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        Ok(())
    }

    /// Skips one scalar at `pos` (after whitespace). Containers are the caller's.
    #[inline]
    fn scalar(&mut self, c: u8) -> R<()> {
        match c {
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.err("expected a value")),
        }
    }

    /// Reads `"key" :` inside an object.
    fn key(&mut self) -> R<RawStr> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.err("expected an object key"));
        }
        let key = self.string()?;
        self.expect(b':', "expected `:` after an object key")?;
        Ok(key)
    }

    /// Skips any value, iteratively.
    fn skip(&mut self) -> R<()> {
        debug_assert!(self.stack.is_empty());
        self.stack.clear();
        loop {
            // Expect a value.
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        self.stack.push(true);
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        self.stack.push(false);
                        continue;
                    }
                }
                Some(c) => self.scalar(c)?,
                None => return Err(self.err("unexpected end of input")),
            }
            // A value is complete: close containers until one wants more.
            loop {
                let Some(is_object) = self.stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if is_object {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if is_object => {
                        self.pos += 1;
                        self.stack.pop();
                    }
                    Some(b']') if !is_object => {
                        self.pos += 1;
                        self.stack.pop();
                    }
                    _ => {
                        self.stack.clear();
                        return Err(self.err("expected `,` or the end of a container"));
                    }
                }
            }
        }
    }

    /// The bytes between a string's quotes, as written.
    #[inline]
    fn raw(&self, s: RawStr) -> &'a [u8] {
        let body: &'a [u8] = self.b;
        &body[s.inner.start..s.inner.end]
    }

    #[inline]
    fn is(&self, s: RawStr, lit: &str) -> bool {
        let raw = self.raw(s);
        // An escape is longer than the character it stands for: a key
        // written as long as `lit` matches byte for byte or not at all, and
        // only a longer one with a backslash needs decoding (rare: keys are
        // seldom escaped). A first byte that is no backslash stands for
        // itself: most longer keys are turned away on it.
        match raw.len().cmp(&lit.len()) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => raw == lit.as_bytes(),
            std::cmp::Ordering::Greater => {
                let first = raw[0];
                (first == b'\\' || lit.as_bytes().first() == Some(&first))
                    && has_backslash(raw)
                    && decode(raw).is_some_and(|d| d == lit)
            }
        }
    }

    /// The string `s`, decoded, where `names` are the values it most often
    /// has: one written exactly as a name is valid and means it, so only a
    /// string that is none of them pays for decoding (and checking).
    #[inline]
    fn text(&self, s: RawStr, names: &[&'static str]) -> R<Cow<'a, str>> {
        let raw = self.raw(s);
        match names.iter().find(|name| raw == name.as_bytes()) {
            Some(&name) => Ok(Cow::Borrowed(name)),
            None => self.decoded(s),
        }
    }

    fn decoded(&self, s: RawStr) -> R<Cow<'a, str>> {
        decode(self.raw(s)).ok_or(crate::JsonError {
            offset: s.inner.start,
            what: "invalid string",
        })
    }

    /// Iterates an object's members; `pos` is at `{`. `member` is called
    /// with `pos` at the value and must consume it.
    fn object(&mut self, mut member: impl FnMut(&mut Self, RawStr) -> R<()>) -> R<()> {
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected `,` or `}`")),
            }
        }
    }

    /// Iterates an array's elements; `pos` is at `[`. Returns the offset of `]`.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> R<()>) -> R<usize> {
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(self.pos - 1);
        }
        loop {
            self.ws();
            element(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(self.pos - 1);
                }
                _ => return Err(self.err("expected `,` or `]`")),
            }
        }
    }

    fn shape(&mut self, why: &'static str) {
        self.shape.get_or_insert(why);
    }

    // === the Messages shape ===

    fn top(&mut self) -> R<()> {
        self.ws();
        if self.peek() == Some(b'{') {
            self.object(|p, key| {
                if p.is(key, "messages") {
                    p.messages()
                } else if p.model.is_none() && p.peek() == Some(b'"') && p.is(key, "model") {
                    let open = p.pos;
                    let value = p.string()?;
                    p.model = Some(Span {
                        start: open,
                        end: value.inner.end + 1,
                    });
                    Ok(())
                } else {
                    p.skip()
                }
            })?;
        } else {
            self.skip()?;
            self.shape("the body is not a JSON object");
        }
        self.ws();
        if self.pos != self.b.len() {
            return Err(self.err("trailing characters after the JSON value"));
        }
        Ok(())
    }

    fn messages(&mut self) -> R<()> {
        // A repeated key: the last one wins, as in serde_json.
        self.found = true;
        self.conv = Conversation::default();
        if self.peek() != Some(b'[') {
            self.shape("`messages` is not an array");
            return self.skip();
        }
        // Room for a message per 4 KB and a block per KB of what is left
        // (a Claude Code conversation has fewer): growing one at a time cost
        // eleven reallocations for the load harness's 221 KB body.
        let left = self.b.len() - self.pos;
        self.conv.messages = Vec::with_capacity((left / 4096).clamp(4, 256));
        self.conv.blocks = Vec::with_capacity((left / 1024).clamp(8, 1024));
        self.conv.open = self.pos;
        self.conv.close = self.array(|p| p.message())?;
        Ok(())
    }

    fn message(&mut self) -> R<()> {
        let start = self.pos;
        if self.peek() != Some(b'{') {
            self.shape("a message is not an object");
            return self.skip();
        }
        let mut role = None;
        let mut content = None;
        self.object(|p, key| {
            if p.is(key, "role") {
                if p.peek() == Some(b'"') {
                    let s = p.string()?;
                    role = match &*p.text(s, &["user", "assistant"])? {
                        "user" => Some(Role::User),
                        "assistant" => Some(Role::Assistant),
                        _ => None,
                    };
                    if role.is_none() {
                        p.shape("a message has an unknown `role`");
                    }
                    Ok(())
                } else {
                    p.shape("a message's `role` is not a string");
                    p.skip()
                }
            } else if p.is(key, "content") {
                content = Some(p.content()?);
                Ok(())
            } else {
                p.skip()
            }
        })?;
        let span = Span {
            start,
            end: self.pos,
        };
        match (role, content) {
            (Some(role), Some(Some(content))) => self.conv.messages.push(Message {
                span,
                role,
                content,
            }),
            (None, _) => self.shape("a message has no `role`"),
            (_, _) => self.shape("a message has no usable `content`"),
        }
        Ok(())
    }

    fn content(&mut self) -> R<Option<Content>> {
        match self.peek() {
            Some(b'"') => {
                self.string()?;
                Ok(Some(Content::Text))
            }
            Some(b'[') => {
                let open = self.pos;
                let first = self.conv.blocks.len();
                let close = self.array(|p| p.block())?;
                Ok(Some(Content::Blocks {
                    open,
                    close,
                    first,
                    len: self.conv.blocks.len() - first,
                }))
            }
            _ => {
                self.skip()?;
                Ok(None)
            }
        }
    }

    fn block(&mut self) -> R<()> {
        let start = self.pos;
        if self.peek() != Some(b'{') {
            self.shape("a content block is not an object");
            return self.skip();
        }
        let mut kind = None;
        let mut id = None;
        let mut tool_use_id = None;
        self.object(|p, key| {
            let slot = if p.is(key, "type") {
                &mut kind
            } else if p.is(key, "id") {
                &mut id
            } else if p.is(key, "tool_use_id") {
                &mut tool_use_id
            } else {
                return p.skip();
            };
            if p.peek() == Some(b'"') {
                let s = p.string()?;
                *slot = Some(s);
                Ok(())
            } else {
                *slot = None;
                p.skip()
            }
        })?;
        let span = Span {
            start,
            end: self.pos,
        };
        let Some(kind) = kind else {
            self.shape("a content block has no `type`");
            return Ok(());
        };
        let common = ["text", "tool_use", "tool_result", "thinking"];
        let kind = match &*self.text(kind, &common)? {
            "tool_use" => Kind::ToolUse,
            "server_tool_use" | "mcp_tool_use" => Kind::ServerToolUse,
            "tool_result" => Kind::ToolResult,
            t if t.ends_with("_tool_result") => Kind::ServerToolResult(self.decoded(kind)?),
            _ => Kind::Other,
        };
        let raw = match kind {
            Kind::Other => None,
            Kind::ToolUse | Kind::ServerToolUse => match id {
                Some(raw) => Some(raw),
                None => {
                    self.shape("a tool use block has no string `id`");
                    return Ok(());
                }
            },
            Kind::ToolResult | Kind::ServerToolResult(_) => match tool_use_id {
                Some(raw) => Some(raw),
                None => {
                    self.shape("a tool result block has no string `tool_use_id`");
                    return Ok(());
                }
            },
        };
        let (id, id_raw) = match raw {
            Some(raw) => (
                self.decoded(raw)?,
                Span {
                    start: raw.inner.start - 1,
                    end: raw.inner.end + 1,
                },
            ),
            None => (Cow::Borrowed(""), Span { start, end: start }),
        };
        self.conv.blocks.push(Block {
            span,
            kind,
            id,
            id_raw,
        });
        Ok(())
    }
}

/// The offset of the quote that closes the string opened at `open`.
///
/// A quote closes the string unless an odd run of backslashes stands right
/// before it. Most strings the scanner skips are short (keys, roles, ids,
/// short text): their first 16 bytes are read eight at a time in a register
/// (an exact per-byte "equals `"`" mask on `word ^ 0x2222..`), and each
/// quote found is checked by counting the backslashes before it. A longer
/// string (tool results, file contents, JSON-in-text, where escaped quotes
/// are everywhere) goes on in [`closing_quote_long`], 64 bytes at a time.
#[inline(always)]
fn closing_quote(b: &[u8], open: usize) -> Option<usize> {
    const LOWS: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = 0x2222_2222_2222_2222;
    let mut at = open + 1;
    for _ in 0..2 {
        let Some(Ok(word)) = b.get(at..at + 8).map(<[u8; 8]>::try_from) else {
            return closing_quote_tail(b, at);
        };
        let x = u64::from_le_bytes(word) ^ QUOTES;
        // High bit set exactly in the bytes where `x` is zero.
        let mut hits = !(((x & LOWS) + LOWS) | x) & HIGHS;
        while hits != 0 {
            let quote = at + (hits.trailing_zeros() / 8) as usize;
            if !escaped(b, quote) {
                return Some(quote);
            }
            hits &= hits - 1;
        }
        at += 8;
    }
    closing_quote_long(b, at)
}

/// Whether the byte at `at` is escaped: an odd run of backslashes stands
/// right before it. The string's opening quote ends the walk back.
#[inline(always)]
fn escaped(b: &[u8], at: usize) -> bool {
    let mut run = 0;
    while b[at - 1 - run] == b'\\' {
        run += 1;
    }
    run % 2 == 1
}

/// [`closing_quote`] from `at` on, 64 bytes at a time: one mask of the
/// quotes and one of the backslashes per block (16-byte SIMD compares,
/// through `wide`), the escaped bytes found from the backslash mask with
/// integer arithmetic (simdjson's method: the backslash runs that start on
/// an even or an odd byte are told apart with one subtraction), carried
/// from block to block. Every quote and backslash costs the same, so text
/// dense with escaped quotes reads as fast as plain text (3.6 instructions
/// per byte for a word-at-a-time loop with a walk back from each quote).
/// A block without a quote whose last byte is no backslash is passed on one
/// folded compare ([`has_quote`]): on the load harness's 221 KB tool-use
/// body, where three blocks in five hold no quote, the search costs 0.76
/// instructions per byte instead of 0.96. The last bytes, fewer than 64, go
/// [`closing_quote_tail`]'s way.
#[inline(never)]
fn closing_quote_long(b: &[u8], mut at: usize) -> Option<usize> {
    const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;
    // Whether the first byte of the next block is escaped.
    let mut next_is_escaped = u64::from(escaped(b, at));
    while let Some(block) = b.get(at..).and_then(<[u8]>::first_chunk::<64>) {
        if !has_quote(block) && block[63] != b'\\' {
            // Nothing closes here, and the next block's first byte is not
            // escaped whatever came before: its predecessor is no backslash.
            next_is_escaped = 0;
            at += 64;
            continue;
        }
        let (quotes, backslashes) = quotes_and_backslashes(block);
        let escaped = if backslashes == 0 {
            std::mem::take(&mut next_is_escaped)
        } else {
            // A backslash that is itself escaped does not escape.
            let potential = backslashes & !next_is_escaped;
            // Runs starting on an odd byte subtract into zeros with the
            // escaped byte after them set; runs starting on an even byte
            // into ones with that byte clear. The xor with the odd bits
            // turns both into: escapes on alternating bytes, the escaped
            // byte after each run set.
            let codes = ((potential << 1) | ODD_BITS).wrapping_sub(potential) ^ ODD_BITS;
            let escaped = codes ^ (backslashes | next_is_escaped);
            next_is_escaped = (codes & backslashes) >> 63;
            escaped
        };
        let closing = quotes & !escaped;
        if closing != 0 {
            return Some(at + closing.trailing_zeros() as usize);
        }
        at += 64;
    }
    closing_quote_tail(b, at)
}

/// Whether a 64-byte block holds a quote: four compares folded into one
/// mask, so a block of text without quotes costs about a third of
/// [`quotes_and_backslashes`].
#[inline(always)]
fn has_quote(block: &[u8; 64]) -> bool {
    let quote = u8x16::splat(b'"');
    let mut any = u8x16::splat(0);
    for bytes in block.as_chunks::<16>().0 {
        any |= u8x16::new(*bytes).simd_eq(quote);
    }
    any.to_bitmask() != 0
}

/// The masks of the quotes and of the backslashes in a 64-byte block, bit
/// `i` for byte `i`.
#[inline(always)]
fn quotes_and_backslashes(block: &[u8; 64]) -> (u64, u64) {
    let quote = u8x16::splat(b'"');
    let backslash = u8x16::splat(b'\\');
    let mut quotes = 0;
    let mut backslashes = 0;
    for (i, bytes) in block.as_chunks::<16>().0.iter().enumerate() {
        let v = u8x16::new(*bytes);
        quotes |= u64::from(v.simd_eq(quote).to_bitmask()) << (16 * i);
        backslashes |= u64::from(v.simd_eq(backslash).to_bitmask()) << (16 * i);
    }
    (quotes, backslashes)
}

/// [`closing_quote`] from `at` on with `memchr`, each quote checked by
/// counting the backslashes before it: the last bytes of the body.
fn closing_quote_tail(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let quote = at + memchr(b'"', b.get(at..)?)?;
        if !escaped(b, quote) {
            return Some(quote);
        }
        at = quote + 1;
    }
}

/// The span (quotes included) of the string value of the first top-level
/// member named `key` (compared decoded) of the JSON object `body`, or
/// `None` when there is none, its value is not a string, or the JSON is
/// broken before it. Stops at that member: the rest is not looked at.
pub(crate) fn top_level_string(body: &[u8], key: &str) -> Option<Span> {
    let mut p = Parser::new(body);
    p.ws();
    if p.peek() != Some(b'{') {
        return None;
    }
    p.pos += 1;
    p.ws();
    if p.peek() == Some(b'}') {
        return None;
    }
    loop {
        let name = p.key().ok()?;
        p.ws();
        if p.is(name, key) && p.peek() == Some(b'"') {
            let open = p.pos;
            let value = p.string().ok()?;
            return Some(Span {
                start: open,
                end: value.inner.end + 1,
            });
        }
        p.skip().ok()?;
        p.ws();
        if p.peek() != Some(b',') {
            return None;
        }
        p.pos += 1;
    }
}

/// The raw values of the top-level members of the JSON object `body` named
/// in `keys` (the last one when a key repeats, as in serde_json), or `None`
/// when `body` is not one well-formed object (structurally: see the module
/// note) with nothing after it. Every other value is skipped unparsed.
pub(crate) fn top_level_members<'a, const N: usize>(
    body: &'a [u8],
    keys: [&str; N],
) -> Option<[Option<&'a [u8]>; N]> {
    let mut found = [None; N];
    let mut p = Parser::new(body);
    p.ws();
    if p.peek() != Some(b'{') {
        return None;
    }
    p.object(|p, name| {
        let start = p.pos;
        p.skip()?;
        if let Some(i) = keys.iter().position(|k| p.is(name, k)) {
            found[i] = Some(&body[start..p.pos]);
        }
        Ok(())
    })
    .ok()?;
    p.ws();
    (p.pos == body.len()).then_some(found)
}

/// Appends `s` as a JSON string, quotes included.
pub(crate) fn encode_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Whether `raw` (a key [`Parser::is`] may have to decode) holds a
/// backslash. Keys are short, and for them the standard library's search (a
/// plain loop at that length) is cheaper than the `memchr` crate's call,
/// whose dispatch and set-up cost more than they save below a few dozen
/// bytes (44k instructions less for the harness's 200 KB tool-use
/// conversation when types, roles and ids were searched this way too;
/// [`decode`] now asks in its own pass).
#[inline]
fn has_backslash(raw: &[u8]) -> bool {
    const SHORT: usize = 32;
    if raw.len() <= SHORT {
        raw.contains(&b'\\')
    } else {
        memchr(b'\\', raw).is_some()
    }
}

/// Decodes a JSON string's inner bytes strictly: valid escapes, no raw
/// control characters or quotes, valid UTF-8, no lone surrogates.
pub(crate) fn decode(raw: &[u8]) -> Option<Cow<'_, str>> {
    // One pass for both questions, without an early exit so that it runs
    // 16 bytes at a time: most strings decoded (ids, types, roles) are
    // short, plain and valid.
    let (mut forbidden, mut backslash) = (false, false);
    for &c in raw {
        forbidden |= (c < 0x20) | (c == b'"');
        backslash |= c == b'\\';
    }
    if !backslash {
        if forbidden {
            return None;
        }
        return std::str::from_utf8(raw).ok().map(Cow::Borrowed);
    }
    // A quote may stand escaped: the loop below judges each byte.
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c < 0x20 || c == b'"' {
            return None;
        }
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let esc = *raw.get(i + 1)?;
        i += 2;
        let simple = match esc {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = hex4(raw.get(i..i + 4)?)?;
                i += 4;
                let ch = if (0xD800..0xDC00).contains(&hi) {
                    if raw.get(i..i + 2)? != b"\\u" {
                        return None;
                    }
                    let lo = hex4(raw.get(i + 2..i + 6)?)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                } else {
                    char::from_u32(hi)?
                };
                let mut buf = [0; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            _ => return None,
        };
        out.push(simple);
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex4(h: &[u8]) -> Option<u32> {
    let mut v = 0;
    for &c in h {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

impl fmt::Display for Unchecked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unchecked::NotJson(e) => write!(f, "not JSON: {e}"),
            Unchecked::NotMessages(why) => write!(f, "not a Messages request: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Conversation<'_> {
        scan(body.as_bytes()).expect("a Messages body")
    }

    #[test]
    fn decodes_escapes_strictly() {
        assert_eq!(decode(br"a\u00e9\n").as_deref(), Some("a\u{e9}\n"));
        assert_eq!(decode(br"\ud83d\ude00").as_deref(), Some("\u{1F600}"));
        assert_eq!(decode(br"\ud83d"), None);
        assert_eq!(decode(br"\x"), None);
        assert_eq!(decode(b"a\nb"), None);
        assert_eq!(decode(b"\xff"), None);
    }

    #[test]
    fn skips_strings_with_escaped_quotes_and_backslashes() {
        let conv =
            ok(r#"{"system":"say \"hi\" \\","messages":[{"role":"user","content":"x\\\"y\\\\"}]}"#);
        assert_eq!(conv.messages.len(), 1);
    }

    #[test]
    fn materializes_escaped_keys_and_ids() {
        let conv = ok(
            r#"{"m\u0065ssages":[{"role":"assistant","content":[{"t\u0079pe":"tool_use","id":"a\u0062","input":{"x":[1,{"y":null}]}}]}]}"#,
        );
        assert_eq!(conv.blocks[0].kind, Kind::ToolUse);
        assert_eq!(conv.blocks[0].id, "ab");
    }

    #[test]
    fn whitespace_anywhere() {
        let conv = ok(
            " {\n \"messages\" :\t[ { \"role\" : \"user\" , \"content\" : [ { \"type\" : \"text\" , \"text\" : \"hi\" } ] } ] } \r\n",
        );
        assert_eq!(conv.blocks.len(), 1);
    }

    #[test]
    fn garbage_is_not_json() {
        for body in [
            "",
            "{",
            "[",
            "{\"messages\":[}",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"x}]}",
            "{\"a\":tru}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{} x",
            "{\"a\" 1}",
            "{,}",
            "[1,]",
            "\"\\\"",
        ] {
            assert!(
                matches!(scan(body.as_bytes()), Err(Unchecked::NotJson(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn other_json_is_not_messages() {
        for body in [
            "[]",
            "1",
            "{}",
            "{\"messages\":{}}",
            "{\"messages\":[1]}",
            "{\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
            "{\"messages\":[{\"role\":\"user\"}]}",
            "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
            "{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\"}]}]}",
        ] {
            assert!(
                matches!(scan(body.as_bytes()), Err(Unchecked::NotMessages(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn escapes_across_block_boundaries() {
        // Backslash runs of every parity ending at and around each 64-byte
        // block edge, checked against serde_json.
        let mut valid = 0;
        for pad in 0..140 {
            for run in 0..6 {
                for tail in ["", "n", "\\\""] {
                    let body = format!(
                        "{{\"s\":\"{}{}{}\",\"messages\":[]}}",
                        "a".repeat(pad),
                        "\\".repeat(run),
                        tail
                    );
                    let serde = serde_json::from_str::<serde_json::Value>(&body).is_ok();
                    valid += usize::from(serde);
                    let ours = scan(body.as_bytes()).is_ok();
                    assert_eq!(ours, serde, "{body}");
                }
            }
        }
        assert!(valid > 1000 && valid < 140 * 18, "{valid}");
    }

    #[test]
    fn the_model_comes_from_the_same_pass_as_top_level_string_finds_it() {
        for body in [
            &br#"{"model":"m-1","messages":[]}"#[..],
            br#"{"metadata":{"model":"x"},"model":"m\u002d2","messages":[],"model":"late"}"#,
            br#"{"messages":[],"model":7}"#,
            br#"{"model":7,"messages":[],"model":"second"}"#,
            br#"{"model":"m-3","messages":[broken"#,
            br#"{"messages":{},"model":"m-4"}"#,
            br#"[{"model":"m"}]"#,
            b"not json",
        ] {
            let (_, span) = scan_with_model(body);
            assert_eq!(
                span,
                top_level_string(body, "model"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Objects and arrays alternate across the 64 levels kept in a word and
    /// the ones beyond: every close must match its open.
    #[test]
    fn skip_matches_closes_to_opens_past_64_levels() {
        for depth in [1, 63, 64, 65, 130] {
            let (mut open, mut close) = (String::new(), String::new());
            for level in 0..depth {
                if level % 3 == 0 {
                    open.push_str("{\"k\":");
                    close.insert(0, '}');
                } else {
                    open.push('[');
                    close.insert(0, ']');
                }
            }
            let body = format!("{{\"x\":{open}1{close},\"model\":\"m\"}}");
            let span = top_level_string(body.as_bytes(), "model").expect("well formed");
            assert_eq!(&body[span.start..span.end], "\"m\"", "depth {depth}");
            // The innermost close swapped for the other kind: broken.
            let swapped = match close.as_bytes()[0] {
                b'}' => close.replacen('}', "]", 1),
                _ => close.replacen(']', "}", 1),
            };
            let broken = format!("{{\"x\":{open}1{swapped},\"model\":\"m\"}}");
            assert_eq!(
                top_level_string(broken.as_bytes(), "model"),
                None,
                "depth {depth}"
            );
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let body = format!("{{\"x\":{}{}}}", "[".repeat(200_000), "]".repeat(200_000));
        assert!(matches!(
            scan(body.as_bytes()),
            Err(Unchecked::NotMessages(_))
        ));
        let body = "[".repeat(200_000);
        assert!(matches!(scan(body.as_bytes()), Err(Unchecked::NotJson(_))));
    }
}

#[cfg(test)]
mod closing_quote_tests {
    use proptest::prelude::*;

    use super::*;

    /// The definition: the first quote after `open` with an even run of
    /// backslashes (none included) right before it.
    fn reference(b: &[u8], open: usize) -> Option<usize> {
        (open + 1..b.len()).find(|&i| {
            b[i] == b'"'
                && b[open + 1..i]
                    .iter()
                    .rev()
                    .take_while(|&&c| c == b'\\')
                    .count()
                    % 2
                    == 0
        })
    }

    #[test]
    fn runs_of_backslashes_across_block_edges() {
        // A run of n backslashes ending right before a quote, with the run
        // and the quote at every offset around the short part and the
        // 64-byte blocks.
        for pad in 0..150 {
            for n in 0..8 {
                let mut b = vec![b'"'];
                b.extend(std::iter::repeat_n(b'a', pad));
                b.extend(std::iter::repeat_n(b'\\', n));
                b.push(b'"');
                b.extend(b"xyz\"");
                b.extend(std::iter::repeat_n(b'b', 70));
                assert_eq!(closing_quote(&b, 0), reference(&b, 0), "pad {pad}, run {n}");
            }
        }
    }

    #[test]
    fn unterminated_strings_have_no_closing_quote() {
        for len in 0..200 {
            let mut b = vec![b'"'];
            b.extend((0..len).map(|i| if i % 3 == 0 { b'\\' } else { b'a' }));
            if len % 2 == 1 {
                b.push(b'\\');
                b.push(b'"');
            }
            assert_eq!(closing_quote(&b, 0), reference(&b, 0), "len {len}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Text made of quotes, backslashes and letters, dense with both:
        /// the block method finds the same quote as the definition.
        #[test]
        fn the_same_quote_as_the_definition(
            prefix in 0usize..3,
            text in proptest::collection::vec(
                prop_oneof![4 => Just(b'a'), 2 => Just(b'\\'), 1 => Just(b'"'), 1 => Just(b'n')],
                0..400,
            ),
        ) {
            let mut b = vec![b' '; prefix];
            b.push(b'"');
            b.extend(&text);
            prop_assert_eq!(closing_quote(&b, prefix), reference(&b, prefix));
        }

        /// Long text with few quotes and backslashes, most blocks without a
        /// quote (the blocks skipped on the quote test alone), runs of
        /// backslashes now and then ending a block.
        #[test]
        fn sparse_quotes_across_skipped_blocks(
            prefix in 0usize..3,
            text in proptest::collection::vec(
                prop_oneof![200 => Just(b'a'), 3 => Just(b'\\'), 1 => Just(b'"')],
                0..1200,
            ),
        ) {
            let mut b = vec![b' '; prefix];
            b.push(b'"');
            b.extend(&text);
            prop_assert_eq!(closing_quote(&b, prefix), reference(&b, prefix));
        }

        /// Long runs of backslashes, where the carry between blocks matters.
        #[test]
        fn long_backslash_runs(
            runs in proptest::collection::vec((0usize..140, any::<bool>()), 1..6),
        ) {
            let mut b = vec![b'"'];
            for (n, quote) in runs {
                b.extend(std::iter::repeat_n(b'\\', n));
                b.push(if quote { b'"' } else { b'x' });
            }
            b.extend(std::iter::repeat_n(b'y', 64));
            prop_assert_eq!(closing_quote(&b, 0), reference(&b, 0));
        }
    }
}
