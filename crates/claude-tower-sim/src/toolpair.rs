//! The simulator's own, deliberately simple tool-pairing check.
//!
//! This is the reference ("oracle") implementation: it walks
//! `serde_json::Value`s in the plainest way, so a faster validator (such as
//! `claude-tower-toolpair`) can be property-tested against it. Both faces of
//! the simulator answer 400 with its message when it fails.
//!
//! The rules, checked message by message in order (the first violation wins):
//!
//! 1. Every `tool_use` block of an assistant message at index `N` needs a
//!    `tool_result` with the same id among the **leading** `tool_result` blocks
//!    of message `N + 1`, which must be a user message. A result placed after a
//!    text block, a missing next message and a next message from the assistant
//!    all count as missing. Wording (the API's own):
//!    ``messages.N: `tool_use` ids were found without `tool_result` blocks immediately after: ID1, ID2. Each `tool_use` block must have a corresponding `tool_result` block in the next message.``
//!    (ids in the order of their `tool_use` blocks, joined by `", "`).
//! 2. Every `tool_result` block (at `messages.N.content.M`) of a user message
//!    must name a `tool_use` id of message `N - 1`, which must be an assistant
//!    message. Wording (the API's own):
//!    ``messages.N.content.M: unexpected `tool_use_id` found in `tool_result` blocks: ID. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.``
//! 3. `tool_use` ids are unique across the conversation. Wording (ours; the
//!    API's is not on record): ``messages.N.content.M: `tool_use` ids must be unique: ID``.
//!
//! A message's `content` may be a string (no blocks). Messages that are not
//! objects, blocks that are not objects and ids that are not strings are
//! ignored here: shape errors are another check's business.

use std::collections::HashSet;
use std::fmt;

use serde_json::Value;

/// A broken tool_use / tool_result pairing, with the API's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairingViolation {
    kind: ViolationKind,
    message: String,
}

/// Which pairing rule was broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViolationKind {
    /// `tool_use` ids without `tool_result` blocks immediately after.
    MissingResult,
    /// A `tool_result` whose id is not a `tool_use` of the previous message.
    UnexpectedResult,
    /// A `tool_use` id used twice.
    DuplicateId,
}

impl PairingViolation {
    /// Which rule was broken.
    pub fn kind(&self) -> ViolationKind {
        self.kind
    }

    /// The error message, worded as the API words it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PairingViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PairingViolation {}

fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

fn blocks(message: &Value) -> &[Value] {
    message
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn block_type(block: &Value) -> Option<&str> {
    block.get("type").and_then(Value::as_str)
}

fn tool_use_ids(message: &Value) -> Vec<(usize, &str)> {
    if role(message) != Some("assistant") {
        return Vec::new();
    }
    blocks(message)
        .iter()
        .enumerate()
        .filter(|(_, b)| block_type(b) == Some("tool_use"))
        .filter_map(|(m, b)| b.get("id").and_then(Value::as_str).map(|id| (m, id)))
        .collect()
}

/// Checks the pairing of `tool_use` and `tool_result` blocks in `messages`
/// (the request's `messages` array) by the rules in the module docs.
///
/// ```
/// use claude_tower_sim::toolpair::check_tool_pairing;
/// use serde_json::json;
///
/// let messages = json!([
///     {"role": "user", "content": "weather?"},
///     {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
///     {"role": "user", "content": "never mind"},
/// ]);
/// let err = check_tool_pairing(messages.as_array().unwrap()).unwrap_err();
/// assert_eq!(
///     err.message(),
///     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: t1. \
///      Each `tool_use` block must have a corresponding `tool_result` block in the next message."
/// );
/// ```
pub fn check_tool_pairing(messages: &[Value]) -> Result<(), PairingViolation> {
    let mut seen: HashSet<&str> = HashSet::new();
    for (n, message) in messages.iter().enumerate() {
        // Rule 3 first within a message: a duplicate id is reported where it appears.
        let uses = tool_use_ids(message);
        for &(m, id) in &uses {
            if !seen.insert(id) {
                return Err(PairingViolation {
                    kind: ViolationKind::DuplicateId,
                    message: format!(
                        "messages.{n}.content.{m}: `tool_use` ids must be unique: {id}"
                    ),
                });
            }
        }

        // Rule 2: results in this (user) message must answer the previous assistant message.
        if role(message) == Some("user") {
            let previous: Vec<&str> = n
                .checked_sub(1)
                .and_then(|p| messages.get(p))
                .map(|p| tool_use_ids(p).into_iter().map(|(_, id)| id).collect())
                .unwrap_or_default();
            for (m, block) in blocks(message).iter().enumerate() {
                if block_type(block) != Some("tool_result") {
                    continue;
                }
                let Some(id) = block.get("tool_use_id").and_then(Value::as_str) else {
                    continue;
                };
                if !previous.contains(&id) {
                    return Err(PairingViolation {
                        kind: ViolationKind::UnexpectedResult,
                        message: format!(
                            "messages.{n}.content.{m}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. \
                             Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ),
                    });
                }
            }
        }

        // Rule 1: this message's tool_use ids need leading results in the next message.
        if uses.is_empty() {
            continue;
        }
        let answered: Vec<&str> = match messages.get(n + 1) {
            Some(next) if role(next) == Some("user") => blocks(next)
                .iter()
                .take_while(|b| block_type(b) == Some("tool_result"))
                .filter_map(|b| b.get("tool_use_id").and_then(Value::as_str))
                .collect(),
            _ => Vec::new(),
        };
        let missing: Vec<&str> = uses
            .iter()
            .map(|&(_, id)| id)
            .filter(|id| !answered.contains(id))
            .collect();
        if !missing.is_empty() {
            return Err(PairingViolation {
                kind: ViolationKind::MissingResult,
                message: format!(
                    "messages.{n}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. \
                     Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    missing.join(", ")
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<(), PairingViolation> {
        check_tool_pairing(v.as_array().unwrap())
    }

    fn tool_use(id: &str) -> Value {
        json!({"type": "tool_use", "id": id, "name": "t", "input": {}})
    }

    fn tool_result(id: &str) -> Value {
        json!({"type": "tool_result", "tool_use_id": id, "content": "ok"})
    }

    #[test]
    fn well_paired_conversation_passes() {
        let v = json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "a"}, tool_use("a"), tool_use("b")]},
            {"role": "user", "content": [tool_result("b"), tool_result("a"), {"type": "text", "text": "more"}]},
            {"role": "assistant", "content": "done"},
        ]);
        assert_eq!(check(v), Ok(()));
        assert_eq!(check(json!([])), Ok(()));
    }

    #[test]
    fn missing_result_lists_ids_in_order() {
        let v = json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [tool_use("a"), tool_use("b"), tool_use("c")]},
            {"role": "user", "content": [tool_result("b")]},
        ]);
        let e = check(v).unwrap_err();
        assert_eq!(e.kind(), ViolationKind::MissingResult);
        assert!(e.message().starts_with(
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: a, c. Each"
        ));
    }

    #[test]
    fn result_after_text_counts_as_missing() {
        let v = json!([
            {"role": "assistant", "content": [tool_use("a")]},
            {"role": "user", "content": [{"type": "text", "text": "x"}, tool_result("a")]},
        ]);
        assert_eq!(check(v).unwrap_err().kind(), ViolationKind::MissingResult);
    }

    #[test]
    fn trailing_tool_use_is_missing_its_result() {
        let v = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": [tool_use("a")]}]);
        assert!(check(v).unwrap_err().message().starts_with("messages.1: "));
    }

    #[test]
    fn unexpected_result_names_its_position() {
        let v = json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [tool_use("a")]},
            {"role": "user", "content": [tool_result("a"), tool_result("zzz")]},
        ]);
        let e = check(v).unwrap_err();
        assert_eq!(e.kind(), ViolationKind::UnexpectedResult);
        assert_eq!(
            e.message(),
            "messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: zzz. \
             Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
        );
        let first = json!([{"role": "user", "content": [tool_result("x")]}]);
        assert!(
            check(first)
                .unwrap_err()
                .message()
                .starts_with("messages.0.content.0: ")
        );
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let v = json!([
            {"role": "assistant", "content": [tool_use("a")]},
            {"role": "user", "content": [tool_result("a")]},
            {"role": "assistant", "content": [tool_use("a")]},
            {"role": "user", "content": [tool_result("a")]},
        ]);
        let e = check(v).unwrap_err();
        assert_eq!(e.kind(), ViolationKind::DuplicateId);
        assert_eq!(
            e.message(),
            "messages.2.content.0: `tool_use` ids must be unique: a"
        );
    }
}
