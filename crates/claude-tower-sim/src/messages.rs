//! The Messages API itself: request parsing and validation, and the answers
//! (a `message` object, an SSE stream, a token count).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::body::{self, DEFAULT_WORDS, Segment, SseBody, TextSource};
use crate::toolpair::check_tool_pairing;

/// The marker that makes the simulator answer with a `tool_use` block.
pub const TOOL_USE_MARKER: &str = "sim:tool_use";

/// The parts of a Messages request the simulator looks at; everything else is
/// skipped without being kept.
#[derive(Debug, Deserialize)]
pub(crate) struct MessagesRequest {
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) messages: Option<Vec<Value>>,
    #[serde(default)]
    pub(crate) tools: Option<Vec<ToolDef>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ToolDef {
    pub(crate) name: Option<String>,
}

/// Which endpoint a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Messages,
    CountTokens,
}

impl MessagesRequest {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        match serde_json::from_slice::<MessagesRequest>(body) {
            Ok(req) => Ok(req),
            Err(e) if e.is_syntax() || e.is_eof() => {
                Err(format!("The request body is not valid JSON: {e}"))
            }
            Err(e) => Err(format!("Invalid request body: {e}")),
        }
    }

    /// The API's 400 message for a request it would refuse, if any.
    pub(crate) fn validate(&self, endpoint: Endpoint) -> Result<(), String> {
        if self.model.as_deref().is_none_or(str::is_empty) {
            return Err("model: Field required".to_owned());
        }
        if endpoint == Endpoint::Messages && self.max_tokens.is_none() {
            return Err("max_tokens: Field required".to_owned());
        }
        let Some(messages) = &self.messages else {
            return Err("messages: Field required".to_owned());
        };
        check_tool_pairing(messages).map_err(|v| v.message().to_owned())
    }

    /// The tool to call, when the request offers tools and its last user
    /// message contains [`TOOL_USE_MARKER`] (optionally `sim:tool_use:NAME`).
    pub(crate) fn tool_to_call(&self) -> Option<String> {
        let tools = self.tools.as_ref()?;
        let last = self.messages.as_ref()?.last()?;
        if last.get("role").and_then(Value::as_str) != Some("user") {
            return None;
        }
        let text = match last.get("content")? {
            Value::String(s) => s.clone(),
            Value::Array(blocks) => blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            _ => return None,
        };
        let at = text.find(TOOL_USE_MARKER)?;
        let names: Vec<&str> = tools.iter().filter_map(|t| t.name.as_deref()).collect();
        let wanted = text[at + TOOL_USE_MARKER.len()..]
            .strip_prefix(':')
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|name| names.contains(name));
        wanted.or(names.first().copied()).map(str::to_owned)
    }
}

/// A plausible input token count: about four bytes per token.
pub(crate) fn input_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(4).max(1)
}

/// What a successful answer contains.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) message_id: String,
    pub(crate) model: String,
    pub(crate) input_tokens: u64,
    pub(crate) text: TextSource,
    /// `(tool_use id, tool name)` when answering with a tool call.
    pub(crate) tool: Option<(String, String)>,
}

/// The event names of an SSE body, in order, with the `ping`s left out (they
/// may come anywhere): what a test compares streams by.
///
/// ```
/// let sse = b"event: message_start\ndata: {}\n\nevent: ping\ndata: {}\n\nevent: error\ndata: {}\n\n";
/// assert_eq!(claude_tower_sim::event_names(sse), ["message_start", "error"]);
/// ```
pub fn event_names(sse: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(sse)
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .filter(|name| *name != "ping")
        .map(str::to_owned)
        .collect()
}

/// How a streamed answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// `message_stop`: the whole answer.
    Complete,
    /// Two text deltas, then `event: error` (`stream-error`).
    ErrorAfterContent,
    /// `message_start` and a `ping`, then `event: error` (`stream-error:early`).
    ErrorBeforeContent,
}

const TOOL_INPUT: [&str; 2] = ["{\"query\": ", "\"simulated\"}"];

// === wire shapes ===
//
// Structs rather than `json!` so fields go out in the API's order (`type` first),
// which line-oriented SSE consumers may rely on.

#[derive(Serialize, Clone, Copy)]
struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: Usage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: String,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: ToolInput,
    },
}

#[derive(Serialize)]
struct ToolInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: Message<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: Block<'a>,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: StopDelta,
        usage: Usage,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta<'a> {
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
}

#[derive(Serialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'static str,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
            Event::Error { .. } => "error",
        }
    }

    fn segment(&self) -> Segment {
        Segment::Event(body::event(self.name(), self))
    }
}

impl Answer {
    fn output_tokens(&self) -> u64 {
        let tool = if self.tool.is_some() { 10 } else { 0 };
        (self.text.len() as u64).div_ceil(4).max(1) + tool
    }

    fn stop_reason(&self) -> &'static str {
        if self.tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    fn usage(&self, output_tokens: u64) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
            output_tokens,
        }
    }

    /// The non-streaming `message` object.
    pub(crate) fn message_json(&self) -> Vec<u8> {
        let mut content = vec![Block::Text {
            text: self.text.collect(),
        }];
        if let Some((id, name)) = &self.tool {
            content.push(Block::ToolUse {
                id,
                name,
                input: ToolInput {
                    query: Some("simulated"),
                },
            });
        }
        let message = Message {
            id: &self.message_id,
            kind: "message",
            role: "assistant",
            model: &self.model,
            content,
            stop_reason: Some(self.stop_reason()),
            stop_sequence: None,
            usage: self.usage(self.output_tokens()),
        };
        serde_json::to_vec(&message).unwrap_or_default()
    }

    /// The SSE stream, ending as `ending` says.
    pub(crate) fn stream(self, ending: Ending, gap: Option<Duration>) -> SseBody {
        let mut segs = VecDeque::new();
        let start = Event::MessageStart {
            message: Message {
                id: &self.message_id,
                kind: "message",
                role: "assistant",
                model: &self.model,
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: self.usage(1),
            },
        };
        segs.push_back(start.segment());
        segs.push_back(Segment::Event(body::ping()));
        let overloaded = || {
            Event::Error {
                error: ErrorBody {
                    kind: "overloaded_error",
                    message: "Overloaded",
                },
            }
            .segment()
        };
        if ending == Ending::ErrorBeforeContent {
            segs.push_back(overloaded());
            return SseBody::new(segs, gap);
        }
        let text_start = Event::ContentBlockStart {
            index: 0,
            content_block: Block::Text {
                text: String::new(),
            },
        };
        segs.push_back(text_start.segment());
        if ending == Ending::ErrorAfterContent {
            segs.push_back(Segment::Text {
                index: 0,
                source: TextSource::Words(&DEFAULT_WORDS[..2]),
                sent: 0,
            });
            segs.push_back(overloaded());
            return SseBody::new(segs, gap);
        }
        let usage = self.usage(self.output_tokens());
        let stop_reason = self.stop_reason();
        let mut tail = Vec::new();
        tail.push(Event::ContentBlockStop { index: 0 }.segment());
        if let Some((id, name)) = &self.tool {
            let block = Block::ToolUse {
                id,
                name,
                input: ToolInput { query: None },
            };
            tail.push(
                Event::ContentBlockStart {
                    index: 1,
                    content_block: block,
                }
                .segment(),
            );
            for part in TOOL_INPUT {
                let delta = Delta::InputJsonDelta { partial_json: part };
                tail.push(Event::ContentBlockDelta { index: 1, delta }.segment());
            }
            tail.push(Event::ContentBlockStop { index: 1 }.segment());
        }
        let delta = StopDelta {
            stop_reason,
            stop_sequence: None,
        };
        tail.push(Event::MessageDelta { delta, usage }.segment());
        tail.push(Event::MessageStop.segment());
        segs.push_back(Segment::Text {
            index: 0,
            source: self.text,
            sent: 0,
        });
        segs.extend(tail);
        SseBody::new(segs, gap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_trigger_needs_tools_and_the_marker_in_the_last_user_message() {
        let req = |body: Value| MessagesRequest::parse(body.to_string().as_bytes()).unwrap();
        let tools = json!([{"name": "search", "input_schema": {}}, {"name": "weather"}]);
        let r = req(json!({"model": "m", "max_tokens": 1, "tools": tools,
                           "messages": [{"role": "user", "content": "please sim:tool_use"}]}));
        assert_eq!(r.tool_to_call().as_deref(), Some("search"));
        let r = req(json!({"model": "m", "max_tokens": 1, "tools": tools,
                           "messages": [{"role": "user", "content": [{"type": "text", "text": "sim:tool_use:weather now"}]}]}));
        assert_eq!(r.tool_to_call().as_deref(), Some("weather"));
        let r = req(json!({"model": "m", "max_tokens": 1,
                           "messages": [{"role": "user", "content": "sim:tool_use"}]}));
        assert_eq!(r.tool_to_call(), None);
        let r = req(json!({"model": "m", "max_tokens": 1, "tools": tools,
                           "messages": [{"role": "user", "content": "hello"}]}));
        assert_eq!(r.tool_to_call(), None);
    }

    #[test]
    fn validation_messages() {
        let v = |body: Value, e| {
            MessagesRequest::parse(body.to_string().as_bytes())
                .unwrap()
                .validate(e)
        };
        assert_eq!(
            v(json!({"max_tokens": 1, "messages": []}), Endpoint::Messages),
            Err("model: Field required".into())
        );
        assert_eq!(
            v(json!({"model": "m", "messages": []}), Endpoint::Messages),
            Err("max_tokens: Field required".into())
        );
        assert_eq!(
            v(json!({"model": "m", "messages": []}), Endpoint::CountTokens),
            Ok(())
        );
        assert_eq!(
            v(json!({"model": "m", "max_tokens": 1}), Endpoint::Messages),
            Err("messages: Field required".into())
        );
        assert!(
            MessagesRequest::parse(b"{nope")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(MessagesRequest::parse(b"{\"stream\": 3}").is_err());
    }
}
