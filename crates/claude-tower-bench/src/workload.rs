//! The three request shapes the harness sends.

use std::fmt;

use bytes::Bytes;
use serde_json::{Value, json};

/// Bytes of SSE each streaming answer carries (`x-sim-stream-bytes`).
pub(crate) const STREAM_BYTES: usize = 64 * 1024;

/// What one request of a run looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    /// A one-line question, a non-streaming answer (~200 B each way).
    Small,
    /// A ~200 KB conversation of tool calls and their results (a long Claude
    /// Code turn), a non-streaming answer: tool-pairing validation runs on
    /// every message.
    Large,
    /// A small question, a streaming answer of [`STREAM_BYTES`].
    Stream,
}

impl Workload {
    pub(crate) const ALL: [Workload; 3] = [Workload::Small, Workload::Large, Workload::Stream];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Small => "small",
            Workload::Large => "200KB",
            Workload::Stream => "stream",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "small" => Some(Workload::Small),
            "large" | "200kb" | "200KB" => Some(Workload::Large),
            "stream" | "streaming" => Some(Workload::Stream),
            _ => None,
        }
    }

    pub(crate) fn body(self) -> Bytes {
        match self {
            Workload::Small => small_body(false),
            Workload::Large => tool_conversation(200 * 1000),
            Workload::Stream => small_body(true),
        }
    }

    /// The `x-sim-stream-bytes` header value, for streaming workloads.
    pub(crate) fn stream_bytes(self) -> Option<usize> {
        (self == Workload::Stream).then_some(STREAM_BYTES)
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) fn small_body(stream: bool) -> Bytes {
    let mut body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    });
    if stream {
        body["stream"] = Value::Bool(true);
    }
    Bytes::from(body.to_string())
}

/// A Messages request of at least `target` bytes: a system prompt, three
/// tools, then rounds of `assistant: text + tool_use` / `user: tool_result`
/// whose results are source-like text (quotes, backslashes, newlines: the
/// escapes a JSON scanner has to step over), ending with a user message that
/// carries the last result and a question. Every pairing rule holds.
pub(crate) fn tool_conversation(target: usize) -> Bytes {
    const SOURCE: &str = "fn parse(line: &str) -> Result<Entry, Error> {\n    \
        let (key, value) = line.split_once('=').ok_or(Error::new(\"missing `=` in \\\"line\\\"\"))?;\n    \
        Ok(Entry { key: key.trim().to_owned(), value: value.trim().to_owned() })\n}\n";
    let tools = json!([
        {"name": "read_file", "description": "Read a file from the workspace.",
         "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
        {"name": "grep", "description": "Search the workspace for a pattern.",
         "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}}, "required": ["pattern"]}},
        {"name": "run", "description": "Run a shell command.",
         "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
    ]);
    let result_text: String = SOURCE.repeat(20); // ~5.5 KB per result
    let mut messages = vec![json!({
        "role": "user",
        "content": "The config parser rejects lines with spaces around `=`. Find out why and fix it.",
    })];
    let mut round = 0usize;
    let mut size = 0usize;
    loop {
        let id_a = format!("toolu_bench_{round:04}_a");
        let id_b = format!("toolu_bench_{round:04}_b");
        messages.push(json!({
            "role": "assistant",
            "content": [
                {"type": "text", "text": format!("Step {round}: reading the parser and searching for its callers.")},
                {"type": "tool_use", "id": id_a, "name": "read_file", "input": {"path": format!("src/config/part{round}.rs")}},
                {"type": "tool_use", "id": id_b, "name": "grep", "input": {"pattern": "parse\\("}},
            ],
        }));
        size += 2 * result_text.len() + 400;
        let done = size >= target;
        let mut content = vec![
            json!({"type": "tool_result", "tool_use_id": id_a, "content": result_text}),
            json!({"type": "tool_result", "tool_use_id": id_b,
                   "content": [{"type": "text", "text": result_text}]}),
        ];
        if done {
            content.push(json!({"type": "text", "text": "Now write the fix."}));
        }
        messages.push(json!({"role": "user", "content": content}));
        round += 1;
        if done {
            break;
        }
    }
    Bytes::from(
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": "You are Claude Code, working in a Rust repository.",
            "tools": tools,
            "messages": messages,
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_body_is_a_valid_tool_conversation_of_about_200_kb() {
        let body = Workload::Large.body();
        assert!((200_000..230_000).contains(&body.len()), "{}", body.len());
        let report = claude_tower_toolpair::validate(&body).expect("pairing holds");
        assert!(report.is_checked(), "{report:?}");
        assert!(report.tool_uses() >= 30, "{report:?}");

        let parsed: Value = serde_json::from_slice(&body).expect("json");
        let messages = parsed["messages"].as_array().expect("messages");
        claude_tower_sim::toolpair::check_tool_pairing(messages).expect("the simulator agrees");
    }

    #[test]
    fn workloads_parse_by_name() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()), Some(w));
        }
        assert_eq!(Workload::parse("nope"), None);
        assert!(Workload::Stream.stream_bytes().is_some());
        assert!(Workload::Small.stream_bytes().is_none());
    }
}
