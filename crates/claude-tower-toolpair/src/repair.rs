use std::fmt;

use bytes::Bytes;

use crate::scan::{self, Block, Content, Kind, Role, Span};

/// The explanation a synthetic `tool_result` carries.
pub const SYNTHETIC_RESULT_TEXT: &str = "No result was recorded for this tool call (the conversation history was trimmed or compacted); claude-tower added this placeholder.";

/// One edit [`repair`] made. Indices refer to the body as it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A synthetic `tool_result` (`is_error: true`) was added for a
    /// `tool_use` that had none.
    AddedToolResult {
        /// The assistant message holding the `tool_use`.
        tool_use_message: usize,
        /// The `tool_use` id.
        id: String,
        /// The user message that received it, or `None` when a new user
        /// message was inserted after the assistant message to carry it.
        into_message: Option<usize>,
    },
    /// A `tool_result` (or server tool result) answering nothing was dropped.
    DroppedToolResult {
        /// The message that held it.
        message: usize,
        /// Its block index.
        block: usize,
        /// Its `tool_use_id`.
        id: String,
    },
    /// The message's `tool_result` blocks were moved ahead of its other blocks.
    MovedToolResults {
        /// The user message.
        message: usize,
    },
    /// A message left with no blocks after the drops above was removed.
    DroppedEmptyMessage {
        /// The message.
        message: usize,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddedToolResult {
                tool_use_message,
                id,
                into_message: Some(m),
            } => write!(
                f,
                "added an error tool_result for {id} (messages.{tool_use_message}) to messages.{m}"
            ),
            Change::AddedToolResult {
                tool_use_message,
                id,
                into_message: None,
            } => write!(
                f,
                "added an error tool_result for {id} (messages.{tool_use_message}) in a new user message"
            ),
            Change::DroppedToolResult { message, block, id } => {
                write!(
                    f,
                    "dropped messages.{message}.content.{block}, a result for {id} that answers no tool use"
                )
            }
            Change::MovedToolResults { message } => {
                write!(
                    f,
                    "moved the tool_result blocks of messages.{message} first"
                )
            }
            Change::DroppedEmptyMessage { message } => {
                write!(f, "removed messages.{message}, left empty")
            }
        }
    }
}

/// The output of [`repair`]: the body to send and what was changed.
#[derive(Debug, Clone)]
pub struct Repaired {
    /// The repaired body; the input itself when `changes` is empty.
    pub body: Bytes,
    /// What was changed, in message order; empty when nothing was.
    pub changes: Vec<Change>,
}

/// Repairs tool pairing in a Messages body, conservatively.
///
/// The fixes, and nothing else:
///
/// - a `tool_use` with no result in the next message gets a synthetic
///   `tool_result` with `is_error: true` and a short explanation
///   ([`SYNTHETIC_RESULT_TEXT`]), at the start of the next user message, or
///   in a new user message inserted right after when the next message is not
///   a user message with content blocks;
/// - a `tool_result` that answers no `tool_use` of the previous message
///   (an orphan, a repeat, or one in an assistant message), and a server
///   tool result with no `server_tool_use` before it, is dropped; a message
///   left with no blocks is removed;
/// - `tool_result` blocks are moved ahead of the other blocks of their
///   message (keeping their order), so a result placed after text counts.
///
/// Repeated `tool_use` ids are not repaired (choosing which call to keep
/// would be a guess): [`validate`](crate::validate) still reports them.
///
/// Every other byte is kept: edits are spliced at the offsets the scanner
/// found, and the separators between kept elements stay as they were. A body
/// with nothing to fix, or that is not a Messages request, comes back
/// byte-identical.
pub fn repair(body: &[u8]) -> Repaired {
    match plan(body) {
        Some((out, changes)) => Repaired {
            body: Bytes::from(out),
            changes,
        },
        None => Repaired {
            body: Bytes::copy_from_slice(body),
            changes: Vec::new(),
        },
    }
}

/// [`repair`] for a body already in [`Bytes`]: when nothing changes, the
/// same `Bytes` come back (a reference count, no copy).
pub fn repair_bytes(body: Bytes) -> Repaired {
    match plan(&body) {
        Some((out, changes)) => Repaired {
            body: Bytes::from(out),
            changes,
        },
        None => Repaired {
            body,
            changes: Vec::new(),
        },
    }
}

enum Item {
    /// An original element, by span.
    Keep(Span),
    /// New bytes.
    New(Vec<u8>),
}

fn plan(body: &[u8]) -> Option<(Vec<u8>, Vec<Change>)> {
    let conv = scan::scan(body).ok()?;
    let mut changes = Vec::new();
    let mut items: Vec<Item> = Vec::with_capacity(conv.messages.len() + 1);
    let mut changed = false;
    // The client tool uses of the previous message in the output, with the
    // original index of that assistant message.
    let mut pending: Vec<&Block<'_>> = Vec::new();
    let mut pending_from = 0;

    for (i, message) in conv.messages.iter().enumerate() {
        let blocks = conv.blocks_of(message);
        let has_blocks = matches!(message.content, Content::Blocks { .. });
        let takes_results = message.role == Role::User && has_blocks;
        if !pending.is_empty() && !takes_results {
            let uses = distinct(&pending);
            pending.clear();
            items.push(Item::New(synthetic_message(body, &uses)));
            for u in uses {
                changes.push(Change::AddedToolResult {
                    tool_use_message: pending_from,
                    id: u.id.to_string(),
                    into_message: None,
                });
            }
            changed = true;
        }
        let Content::Blocks { open, close, .. } = message.content else {
            items.push(Item::Keep(message.span));
            continue;
        };

        let mut results: Vec<usize> = Vec::new();
        let mut others: Vec<usize> = Vec::new();
        let mut dropped = false;
        let mut server_uses: Vec<&str> = Vec::new();
        let mut uses: Vec<&Block<'_>> = Vec::new();
        for (k, block) in blocks.iter().enumerate() {
            let keep = match &block.kind {
                Kind::ToolResult => {
                    let answers = message.role == Role::User
                        && pending.iter().any(|u| u.id == block.id)
                        && !results.iter().any(|&r| blocks[r].id == block.id);
                    if answers {
                        results.push(k);
                        continue;
                    }
                    false
                }
                Kind::ServerToolResult(_) => server_uses.contains(&&*block.id),
                Kind::ServerToolUse => {
                    server_uses.push(&block.id);
                    true
                }
                Kind::ToolUse => {
                    if message.role == Role::Assistant {
                        uses.push(block);
                    }
                    true
                }
                Kind::Other => true,
            };
            if keep {
                others.push(k);
            } else {
                dropped = true;
                changes.push(Change::DroppedToolResult {
                    message: i,
                    block: k,
                    id: block.id.to_string(),
                });
            }
        }
        let missing: Vec<&Block<'_>> = distinct(&pending)
            .into_iter()
            .filter(|u| !results.iter().any(|&r| blocks[r].id == u.id))
            .collect();
        let kept: Vec<usize> = results.iter().chain(&others).copied().collect();
        let reordered = kept.windows(2).any(|w| w[0] > w[1]);

        let emptied = dropped && results.is_empty() && missing.is_empty() && others.is_empty();
        if emptied {
            changes.push(Change::DroppedEmptyMessage { message: i });
            changed = true;
        } else if dropped || reordered || !missing.is_empty() {
            if reordered {
                changes.push(Change::MovedToolResults { message: i });
            }
            for u in &missing {
                changes.push(Change::AddedToolResult {
                    tool_use_message: pending_from,
                    id: u.id.to_string(),
                    into_message: Some(i),
                });
            }
            let mut elements: Vec<Item> = results
                .iter()
                .map(|&r| Item::Keep(blocks[r].span))
                .collect();
            elements.extend(missing.iter().map(|u| Item::New(synthetic_result(body, u))));
            elements.extend(others.iter().map(|&k| Item::Keep(blocks[k].span)));
            let spans: Vec<Span> = blocks.iter().map(|b| b.span).collect();
            let mut out = Vec::with_capacity(message.span.end - message.span.start + 256);
            out.extend_from_slice(&body[message.span.start..=open]);
            join(body, open, close, &spans, &elements, &mut out);
            out.extend_from_slice(&body[close..message.span.end]);
            items.push(Item::New(out));
            changed = true;
        } else {
            items.push(Item::Keep(message.span));
        }
        // A removed message leaves the previous one as the neighbour; it had
        // no pending uses, or this message would have received results.
        if !emptied {
            pending = uses;
            pending_from = i;
        }
    }
    if !pending.is_empty() {
        let uses = distinct(&pending);
        items.push(Item::New(synthetic_message(body, &uses)));
        for u in uses {
            changes.push(Change::AddedToolResult {
                tool_use_message: pending_from,
                id: u.id.to_string(),
                into_message: None,
            });
        }
        changed = true;
    }
    if !changed {
        return None;
    }
    let spans: Vec<Span> = conv.messages.iter().map(|m| m.span).collect();
    let mut out = Vec::with_capacity(body.len() + 1024);
    out.extend_from_slice(&body[..=conv.open]);
    join(body, conv.open, conv.close, &spans, &items, &mut out);
    out.extend_from_slice(&body[conv.close..]);
    Some((out, changes))
}

/// The tool uses with distinct ids, first occurrence kept: a repeated id
/// gets one synthetic result, not two (the repeat itself is left to
/// [`validate`](crate::validate) to report).
fn distinct<'b, 'a>(uses: &[&'b Block<'a>]) -> Vec<&'b Block<'a>> {
    let mut out: Vec<&Block<'a>> = Vec::with_capacity(uses.len());
    for u in uses {
        if !out.iter().any(|o| o.id == u.id) {
            out.push(u);
        }
    }
    out
}

/// Writes the inside of an array (between `open` and `close`) holding
/// `items`, reusing the original array's leading and trailing whitespace and
/// its separators, position by position.
fn join(
    body: &[u8],
    open: usize,
    close: usize,
    original: &[Span],
    items: &[Item],
    out: &mut Vec<u8>,
) {
    let (leading, trailing) = match (original.first(), original.last()) {
        (Some(first), Some(last)) => (&body[open + 1..first.start], &body[last.end..close]),
        _ => (&body[open + 1..close], &b""[..]),
    };
    out.extend_from_slice(leading);
    for (pos, item) in items.iter().enumerate() {
        if pos > 0 {
            let sep = original
                .get(pos - 1)
                .zip(original.get(pos))
                .map(|(a, b)| &body[a.end..b.start])
                .or_else(|| {
                    original
                        .windows(2)
                        .last()
                        .map(|w| &body[w[0].end..w[1].start])
                })
                .unwrap_or(b",");
            out.extend_from_slice(sep);
        }
        match item {
            Item::Keep(span) => out.extend_from_slice(&body[span.start..span.end]),
            Item::New(bytes) => out.extend_from_slice(bytes),
        }
    }
    out.extend_from_slice(trailing);
}

fn synthetic_result(body: &[u8], tool_use: &Block<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + SYNTHETIC_RESULT_TEXT.len());
    out.extend_from_slice(br#"{"type":"tool_result","tool_use_id":"#);
    out.extend_from_slice(&body[tool_use.id_raw.start..tool_use.id_raw.end]);
    out.extend_from_slice(br#","is_error":true,"content":""#);
    out.extend_from_slice(SYNTHETIC_RESULT_TEXT.as_bytes());
    out.extend_from_slice(br#""}"#);
    out
}

fn synthetic_message(body: &[u8], uses: &[&Block<'_>]) -> Vec<u8> {
    let mut out = br#"{"role":"user","content":["#.to_vec();
    for (i, u) in uses.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&synthetic_result(body, u));
    }
    out.extend_from_slice(b"]}");
    out
}
