use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::scan::{self, Content, Conversation, Kind, Role, Unchecked};

/// Where and why a body is not valid JSON, as far as the scanner looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    pub(crate) offset: usize,
    pub(crate) what: &'static str,
}

impl JsonError {
    /// The byte offset at which the scanner gave up.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for JsonError {}

/// What kind of body [`validate`] was given.
///
/// Only [`Messages`](BodyKind::Messages) bodies are checked. The other two
/// are not this layer's business: the upstream answers them with its own
/// error, so the layer passes them through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyKind {
    /// A Messages API request body; its pairing was checked and holds.
    Messages,
    /// Not JSON (or JSON the scanner could not follow).
    NotJson(JsonError),
    /// JSON, but not shaped like a Messages request (no `messages` array, a
    /// message without `role` or `content`, a block without `type`...).
    NotMessages(&'static str),
}

/// The outcome of a successful [`validate`]: what the body was, and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    kind: BodyKind,
    messages: usize,
    tool_uses: usize,
    tool_results: usize,
    server_tool_uses: usize,
    server_tool_results: usize,
}

impl Report {
    fn unchecked(kind: BodyKind) -> Self {
        Report {
            kind,
            messages: 0,
            tool_uses: 0,
            tool_results: 0,
            server_tool_uses: 0,
            server_tool_results: 0,
        }
    }

    /// What kind of body it was.
    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// Whether the body was a Messages request, i.e. whether pairing was checked.
    pub fn is_checked(&self) -> bool {
        self.kind == BodyKind::Messages
    }

    /// Number of messages.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// Number of client `tool_use` blocks.
    pub fn tool_uses(&self) -> usize {
        self.tool_uses
    }

    /// Number of client `tool_result` blocks.
    pub fn tool_results(&self) -> usize {
        self.tool_results
    }

    /// Number of `server_tool_use` / `mcp_tool_use` blocks.
    pub fn server_tool_uses(&self) -> usize {
        self.server_tool_uses
    }

    /// Number of `*_tool_result` server blocks (`web_search_tool_result`...).
    pub fn server_tool_results(&self) -> usize {
        self.server_tool_results
    }
}

/// A `tool_use` block named in a [`PairingError`]: its block index and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolUseRef {
    /// Index of the block in its message's `content`.
    pub block: usize,
    /// The `tool_use` id.
    pub id: String,
}

/// A broken tool pairing, located as the API locates it.
///
/// `Display` renders exactly the API's own wording, so clients that
/// pattern-match the API's text keep working when the gateway answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PairingError {
    /// An assistant message's `tool_use` blocks have no `tool_result` at the
    /// start of the next message (no next message, the next one is not a
    /// user message, it lacks the result, or the result comes after other
    /// content).
    MissingToolResult {
        /// Index of the assistant message.
        message: usize,
        /// The `tool_use` blocks left without a result, in order.
        tool_uses: Vec<ToolUseRef>,
    },
    /// A `tool_result` that answers no `tool_use` of the previous message
    /// (an orphan, or a result in an assistant message).
    UnexpectedToolResult {
        /// Index of the message holding the result.
        message: usize,
        /// Index of the block.
        block: usize,
        /// Its `tool_use_id`.
        id: String,
    },
    /// A second `tool_result` for the same `tool_use` in one message.
    DuplicateToolResult {
        /// Index of the message.
        message: usize,
        /// Index of the second result.
        block: usize,
        /// The `tool_use_id`.
        id: String,
    },
    /// A server tool result (`web_search_tool_result`...) with no matching
    /// `server_tool_use` before it in the same message.
    UnexpectedServerToolResult {
        /// Index of the message.
        message: usize,
        /// Index of the block.
        block: usize,
        /// Its `tool_use_id`.
        id: String,
        /// The block's type, e.g. `web_search_tool_result`.
        block_type: String,
    },
    /// A `tool_use` id seen before in the conversation.
    DuplicateToolUseId {
        /// Index of the message holding the repeat.
        message: usize,
        /// Index of the repeated block.
        block: usize,
        /// The id.
        id: String,
        /// Where the id first appeared: (message, block).
        first: (usize, usize),
    },
}

impl PairingError {
    /// The message the API names (`messages.N`).
    pub fn message_index(&self) -> usize {
        match self {
            PairingError::MissingToolResult { message, .. }
            | PairingError::UnexpectedToolResult { message, .. }
            | PairingError::DuplicateToolResult { message, .. }
            | PairingError::UnexpectedServerToolResult { message, .. }
            | PairingError::DuplicateToolUseId { message, .. } => *message,
        }
    }

    /// The block the API names (`content.M`); for a missing result, the
    /// first `tool_use` left without one.
    pub fn block_index(&self) -> Option<usize> {
        match self {
            PairingError::MissingToolResult { tool_uses, .. } => tool_uses.first().map(|t| t.block),
            PairingError::UnexpectedToolResult { block, .. }
            | PairingError::DuplicateToolResult { block, .. }
            | PairingError::UnexpectedServerToolResult { block, .. }
            | PairingError::DuplicateToolUseId { block, .. } => Some(*block),
        }
    }

    /// The ids involved.
    pub fn ids(&self) -> Vec<&str> {
        match self {
            PairingError::MissingToolResult { tool_uses, .. } => {
                tool_uses.iter().map(|t| t.id.as_str()).collect()
            }
            PairingError::UnexpectedToolResult { id, .. }
            | PairingError::DuplicateToolResult { id, .. }
            | PairingError::UnexpectedServerToolResult { id, .. }
            | PairingError::DuplicateToolUseId { id, .. } => vec![id.as_str()],
        }
    }
}

impl fmt::Display for PairingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PairingError::MissingToolResult { message, tool_uses } => {
                write!(
                    f,
                    "messages.{message}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                )?;
                for (i, t) in tool_uses.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(&t.id)?;
                }
                f.write_str(
                    ". Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                )
            }
            PairingError::UnexpectedToolResult { message, block, id } => write!(
                f,
                "messages.{message}.content.{block}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. \
                 Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            ),
            PairingError::DuplicateToolResult { message, block, id } => write!(
                f,
                "messages.{message}.content.{block}: each tool_use must have a single result. \
                 Found multiple `tool_result` blocks with id: {id}"
            ),
            PairingError::UnexpectedServerToolResult {
                message,
                block,
                id,
                block_type,
            } => {
                let partner = if block_type == "mcp_tool_result" {
                    "mcp_tool_use"
                } else {
                    "server_tool_use"
                };
                write!(
                    f,
                    "messages.{message}.content.{block}: unexpected `tool_use_id` found in `{block_type}` blocks: {id}. \
                     Each `{block_type}` block must have a corresponding `{partner}` block before it."
                )
            }
            PairingError::DuplicateToolUseId { message, block, .. } => write!(
                f,
                "messages.{message}.content.{block}: `tool_use` ids must be unique"
            ),
        }
    }
}

impl std::error::Error for PairingError {}

/// Checks the tool pairing of a Messages API request body.
///
/// `Ok` means "nothing to reject": either a Messages body whose pairing
/// holds, or a body that is not a Messages request at all
/// ([`Report::kind`] tells which). `Err` is the first violation in message
/// order, as the API would report it. The body is borrowed, never copied.
///
/// ```
/// use claude_tower_toolpair::validate;
///
/// let body = br#"{"model":"m","max_tokens":1,"messages":[
///   {"role":"user","content":"list files"},
///   {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"ls","input":{}}]},
///   {"role":"user","content":[{"type":"text","text":"never mind"}]}]}"#;
/// let err = validate(body).unwrap_err();
/// assert_eq!(err.message_index(), 1);
/// assert!(err.to_string().starts_with(
///     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1."
/// ));
/// ```
pub fn validate(body: &[u8]) -> Result<Report, PairingError> {
    match scan::scan(body) {
        Ok(conv) => check(&conv),
        Err(Unchecked::NotJson(e)) => Ok(Report::unchecked(BodyKind::NotJson(e))),
        Err(Unchecked::NotMessages(why)) => Ok(Report::unchecked(BodyKind::NotMessages(why))),
    }
}

/// Whether `body` may hold a block the pairing check looks at: every such
/// block's `type` (`tool_use`, `server_tool_use`, `mcp_tool_use`,
/// `tool_result`, `*_tool_result`) contains `tool_`. In JSON a letter or an
/// underscore of a decoded string is either that byte as written or a
/// `\u` escape (the other escapes stand for punctuation and controls), so a
/// body with neither `tool_` nor `\u` in its bytes has no tool block, and
/// its pairing cannot be broken: most requests (a conversation before any
/// tool is called) are answered by two vectorized searches, not a parse.
pub(crate) fn may_hold_tool_blocks(body: &[u8]) -> bool {
    static TOOL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"tool_"));
    static ESCAPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br"\u"));
    TOOL.find(body).is_some() || ESCAPE.find(body).is_some()
}

/// [`validate`], and the body's top-level `model` (the first, decoded), read
/// in the same pass.
pub(crate) fn validate_with_model(
    body: &[u8],
) -> (
    Result<Report, PairingError>,
    Option<std::borrow::Cow<'_, str>>,
) {
    let (scanned, model) = scan::scan_with_model(body);
    let model = model.and_then(|span| scan::decode(&body[span.start + 1..span.end - 1]));
    let report = match scanned {
        Ok(conv) => check(&conv),
        Err(Unchecked::NotJson(e)) => Ok(Report::unchecked(BodyKind::NotJson(e))),
        Err(Unchecked::NotMessages(why)) => Ok(Report::unchecked(BodyKind::NotMessages(why))),
    };
    (report, model)
}

pub(crate) fn check(conv: &Conversation<'_>) -> Result<Report, PairingError> {
    let mut report = Report::unchecked(BodyKind::Messages);
    report.messages = conv.messages.len();
    // Sized for every block up front (a bound on the tool uses, and as
    // large as the body allows): no rehash of the ids seen so far as a
    // long conversation's ids go in.
    let mut seen_ids: HashMap<&str, (usize, usize)> = HashMap::with_capacity(conv.blocks.len());
    // Scratch lists, reused per message.
    let mut results: Vec<&str> = Vec::new();
    let mut server_uses: Vec<&str> = Vec::new();

    for (i, message) in conv.messages.iter().enumerate() {
        let blocks = conv.blocks_of(message);
        let prev = i
            .checked_sub(1)
            .map(|p| &conv.messages[p])
            .filter(|p| p.role == Role::Assistant);
        let prev_uses = prev.map(|p| conv.blocks_of(p)).unwrap_or_default();
        results.clear();
        server_uses.clear();

        for (k, block) in blocks.iter().enumerate() {
            let id = &*block.id;
            match &block.kind {
                Kind::ToolUse | Kind::ServerToolUse => {
                    if block.kind == Kind::ToolUse {
                        report.tool_uses += 1;
                        if message.role == Role::User {
                            // Not a pairing matter; the upstream judges it.
                            continue;
                        }
                    } else {
                        report.server_tool_uses += 1;
                        server_uses.push(id);
                    }
                    // One hash per id: the entry either is the first use or
                    // says where it was.
                    match seen_ids.entry(id) {
                        Entry::Occupied(first) => {
                            return Err(PairingError::DuplicateToolUseId {
                                message: i,
                                block: k,
                                id: id.to_owned(),
                                first: *first.get(),
                            });
                        }
                        Entry::Vacant(slot) => {
                            slot.insert((i, k));
                        }
                    }
                }
                Kind::ToolResult => {
                    report.tool_results += 1;
                    let answers = message.role == Role::User
                        && prev_uses
                            .iter()
                            .any(|u| u.kind == Kind::ToolUse && u.id == id);
                    if !answers {
                        return Err(PairingError::UnexpectedToolResult {
                            message: i,
                            block: k,
                            id: id.to_owned(),
                        });
                    }
                    if results.contains(&id) {
                        return Err(PairingError::DuplicateToolResult {
                            message: i,
                            block: k,
                            id: id.to_owned(),
                        });
                    }
                    results.push(id);
                }
                Kind::ServerToolResult(block_type) => {
                    report.server_tool_results += 1;
                    if !server_uses.contains(&id) {
                        return Err(PairingError::UnexpectedServerToolResult {
                            message: i,
                            block: k,
                            id: id.to_owned(),
                            block_type: block_type.to_string(),
                        });
                    }
                }
                Kind::Other => {}
            }
        }

        if message.role == Role::Assistant {
            let missing = missing_results(conv, i);
            if !missing.is_empty() {
                return Err(PairingError::MissingToolResult {
                    message: i,
                    tool_uses: missing,
                });
            }
        }
    }
    Ok(report)
}

/// The `tool_use` blocks of assistant message `i` that have no result in the
/// leading run of `tool_result` blocks of message `i + 1`: the API does not
/// look past the first block that is not a `tool_result`.
fn missing_results(conv: &Conversation<'_>, i: usize) -> Vec<ToolUseRef> {
    let uses = conv.blocks_of(&conv.messages[i]);
    if !uses.iter().any(|b| b.kind == Kind::ToolUse) {
        return Vec::new();
    }
    let leading = match conv.messages.get(i + 1) {
        Some(next) if next.role == Role::User && matches!(next.content, Content::Blocks { .. }) => {
            let blocks = conv.blocks_of(next);
            let n = blocks
                .iter()
                .position(|b| b.kind != Kind::ToolResult)
                .unwrap_or(blocks.len());
            &blocks[..n]
        }
        _ => &[],
    };
    uses.iter()
        .enumerate()
        .filter(|(_, b)| b.kind == Kind::ToolUse && !leading.iter().any(|r| r.id == b.id))
        .map(|(k, b)| ToolUseRef {
            block: k,
            id: b.id.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tool_free_tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model_map::requested_model;

    /// Content blocks, tool blocks written plainly and through escapes
    /// among them, and strings that look like them.
    const BLOCKS: &[&str] = &[
        r#"{"type":"text","text":"a"}"#,
        r#"{"type":"tool_use","id":"t1","name":"n","input":{}}"#,
        r#"{"type":"tool_result","tool_use_id":"t1","content":"r"}"#,
        r#"{"type":"\u0074ool_use","id":"t1","name":"n","input":{}}"#,
        r#"{"type":"\u0074ool_result","\u0074ool_use_id":"t1"}"#,
        r#"{"type":"web_search_\u0074ool_result","\u0074ool_use_id":"s1","content":[]}"#,
        r#"{"type":"server_\u0074ool_use","id":"s1","name":"web_search","input":{}}"#,
        r#"{"type":"image","source":{"type":"base64","data":"\\u"}}"#,
        r#"{"type":"text","text":"tool\n_use \" tool\\_result"}"#,
        r#"{"type":"thinking","thinking":"t","signature":"s"}"#,
        r#"{"type":"t\u0068inking","thinking":"t","signature":"s"}"#,
    ];

    /// Top-level `model` members, good and bad.
    const MODELS: &[&str] = &[
        r#""model":"m-1""#,
        r#""model":"\u006d""#,
        r#""model":7"#,
        r#""model":null"#,
    ];

    /// Messages bodies of random conversations, some cut short.
    fn body() -> impl Strategy<Value = String> {
        // Roles written plainly and through escapes.
        let roles = ["user", "assistant", r"\u0075ser", r"\u0061ssistant"];
        let message = (
            0..roles.len(),
            proptest::collection::vec(0..BLOCKS.len(), 0..4),
        )
            .prop_map(move |(role, blocks)| {
                let role = roles[role];
                let blocks: Vec<&str> = blocks.into_iter().map(|i| BLOCKS[i]).collect();
                format!(r#"{{"role":"{role}","content":[{}]}}"#, blocks.join(","))
            });
        (
            proptest::option::of(0..MODELS.len()),
            proptest::collection::vec(message, 0..5),
            proptest::option::of(0..MODELS.len()),
            proptest::option::of(any::<proptest::sample::Index>()),
        )
            .prop_map(|(first, messages, last, cut)| {
                let mut members: Vec<String> = Vec::new();
                members.extend(first.map(|i| MODELS[i].to_owned()));
                members.push(format!(r#""messages":[{}]"#, messages.join(",")));
                members.extend(last.map(|i| MODELS[i].to_owned()));
                let mut body = format!("{{{}}}", members.join(","));
                if let Some(cut) = cut {
                    let mut at = cut.index(body.len() + 1);
                    while !body.is_char_boundary(at) {
                        at -= 1;
                    }
                    body.truncate(at);
                }
                body
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// The layer's shortcut: a body it lets pass without the check
        /// passes the check, and the model read alone is the model the
        /// check reads.
        #[test]
        fn a_body_without_tool_blocks_passes_and_reads_the_same_model(body in body()) {
            let bytes = body.as_bytes();
            let (checked, model) = validate_with_model(bytes);
            if !may_hold_tool_blocks(bytes) {
                prop_assert!(checked.is_ok(), "{} -> {:?}", body, checked);
                prop_assert_eq!(requested_model(bytes), model);
            }
        }
    }

    #[test]
    fn roles_and_types_read_the_same_written_plainly_or_escaped() {
        let turn = |assistant: &str, user: &str, thinking: &str, result_id: &str| {
            format!(
                r#"{{"messages":[{{"role":"{assistant}","content":[{{"type":"{thinking}","thinking":"t","signature":"s"}},{{"type":"tool_use","id":"a","name":"n","input":{{}}}}]}},{{"role":"{user}","content":[{{"type":"tool_result","tool_use_id":"{result_id}"}}]}}]}}"#
            )
        };
        for (assistant, user, thinking) in [
            ("assistant", "user", "thinking"),
            (r"\u0061ssistant", r"\u0075ser", r"t\u0068inking"),
        ] {
            let paired = validate(turn(assistant, user, thinking, "a").as_bytes()).unwrap();
            assert!(paired.is_checked(), "{assistant}");
            assert_eq!(
                (paired.messages(), paired.tool_uses(), paired.tool_results()),
                (2, 1, 1)
            );
            assert!(validate(turn(assistant, user, thinking, "b").as_bytes()).is_err());
        }
        // A role that is neither, escaped or not, leaves the body unchecked.
        for role in ["system", r"\u0073ystem", r"\u0075sers"] {
            let body = turn("assistant", role, "thinking", "a");
            assert!(!validate(body.as_bytes()).unwrap().is_checked(), "{role}");
        }
    }

    #[test]
    fn tool_blocks_written_any_way_are_noticed() {
        for body in [
            r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"n","input":{}}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a"}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"\u0074ool_result","\u0074ool_use_id":"a"}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"mcp_tool_result","tool_use_id":"a"}]}]}"#,
        ] {
            assert!(may_hold_tool_blocks(body.as_bytes()), "{body}");
        }
        let plain = r#"{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
        assert!(!may_hold_tool_blocks(plain.as_bytes()));
        let broken = r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"n","input":{}}]}]}"#;
        assert!(
            validate(broken.as_bytes()).is_err(),
            "the slow way still judges"
        );
    }
}
