//! Every pairing rule and every repair, including the orderings real
//! compaction and trimming produce.

use bytes::Bytes;
use claude_tower_toolpair::{
    BodyKind, Change, PairingError, SYNTHETIC_RESULT_TEXT, repair, repair_bytes, validate,
};
use serde_json::{Value, json};

fn body(messages: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You are helpful.",
        "tools": [{"name": "ls", "input_schema": {"type": "object"}}],
        "messages": messages,
    }))
    .unwrap()
}

fn tu(id: &str) -> Value {
    json!({"type": "tool_use", "id": id, "name": "ls", "input": {"path": "/", "deep": {"a": [1, {"b": null}]}}})
}

fn tr(id: &str) -> Value {
    json!({"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": "a \"quoted\" \\ result"}]})
}

fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

fn err(messages: Value) -> PairingError {
    validate(&body(messages)).expect_err("a pairing error")
}

fn messages_of(body: &[u8]) -> Vec<Value> {
    let v: Value = serde_json::from_slice(body).expect("repair output is JSON");
    v["messages"].as_array().unwrap().clone()
}

/// Repairs, checks the output validates, and returns it with the changes.
fn repaired(messages: Value) -> (Vec<Value>, Vec<Change>) {
    let input = body(messages);
    let out = repair(&input);
    let report = validate(&out.body).expect("repair output validates");
    assert!(report.is_checked());
    // Nothing but `messages` changed.
    let mut before: Value = serde_json::from_slice(&input).unwrap();
    let mut after: Value = serde_json::from_slice(&out.body).unwrap();
    before.as_object_mut().unwrap().remove("messages");
    after.as_object_mut().unwrap().remove("messages");
    assert_eq!(before, after);
    (messages_of(&out.body), out.changes)
}

fn synthetic(id: &str) -> Value {
    json!({"type": "tool_result", "tool_use_id": id, "is_error": true, "content": SYNTHETIC_RESULT_TEXT})
}

// === validate: what passes ===

#[test]
fn a_paired_conversation_is_valid_with_counts() {
    let report = validate(&body(json!([
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": [text("sure"), tu("toolu_1"), tu("toolu_2")]},
        {"role": "user", "content": [tr("toolu_2"), tr("toolu_1"), text("thanks")]},
        {"role": "assistant", "content": "done"},
    ])))
    .unwrap();
    assert_eq!(report.kind(), BodyKind::Messages);
    assert_eq!(report.messages(), 4);
    assert_eq!(report.tool_uses(), 2);
    assert_eq!(report.tool_results(), 2);
}

#[test]
fn string_content_and_consecutive_same_roles_are_fine() {
    validate(&body(json!([
        {"role": "user", "content": "a"},
        {"role": "user", "content": [text("b")]},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": []},
    ])))
    .unwrap();
}

#[test]
fn server_tools_pair_within_their_message() {
    let report = validate(&body(json!([
        {"role": "user", "content": "search"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [{"type": "web_search_result", "url": "u"}]},
            {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "x", "server_name": "s", "input": {}},
            {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "content": []},
            text("found it"),
            tu("toolu_1"),
        ]},
        {"role": "user", "content": [tr("toolu_1")]},
        // A server tool use awaiting its result (pause_turn) is allowed.
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_search", "input": {}}
        ]},
    ])))
    .unwrap();
    assert_eq!(report.server_tool_uses(), 3);
    assert_eq!(report.server_tool_results(), 2);
}

#[test]
fn escaped_ids_compare_decoded_and_whitespace_is_anywhere() {
    let raw = br#" {
      "messages" : [
        { "role" : "assistant" , "content" : [ { "type" : "tool_use" , "id" : "toolu_\u0041" , "input" : { "s" : "\"}]" } } ] } ,
        { "content" : [ { "tool_use_id" : "toolu_A" , "type" : "tool_\u0072esult" } ] , "role" : "user" }
      ] , "model" : "m"
    } "#;
    assert!(validate(raw).unwrap().is_checked());
}

#[test]
fn bodies_that_are_not_messages_requests_are_not_checked() {
    for (raw, json) in [
        (&b"not json"[..], false),
        (b"{\"messages\": [", false),
        (b"", false),
        (b"{\"model\":\"m\"}", true),
        (b"[1,2]", true),
        (b"{\"messages\":\"hi\"}", true),
        (
            b"{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
            true,
        ),
    ] {
        let report = validate(raw).unwrap();
        assert!(!report.is_checked());
        match report.kind() {
            BodyKind::NotJson(_) => assert!(!json, "{raw:?}"),
            BodyKind::NotMessages(_) => assert!(json, "{raw:?}"),
            other => panic!("{other:?}"),
        }
    }
}

// === validate: each rule ===

#[test]
fn a_tool_use_without_a_result_names_the_assistant_message() {
    let e = err(json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [text("running"), tu("toolu_01A"), tu("toolu_01B")]},
        {"role": "user", "content": [tr("toolu_01A")]},
    ]));
    assert_eq!(e.message_index(), 1);
    assert_eq!(e.block_index(), Some(2));
    assert_eq!(e.ids(), ["toolu_01B"]);
    assert_eq!(
        e.to_string(),
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01B. \
         Each `tool_use` block must have a corresponding `tool_result` block in the next message."
    );
}

#[test]
fn several_missing_ids_are_listed_like_the_api() {
    let e = err(json!([
        {"role": "assistant", "content": [tu("toolu_1"), tu("toolu_2")]},
        {"role": "user", "content": "what happened?"},
    ]));
    assert!(
        e.to_string()
            .contains("immediately after: toolu_1, toolu_2. Each")
    );
}

#[test]
fn the_next_message_must_exist_and_be_a_user_message() {
    let last = err(json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tu("toolu_1")]},
    ]));
    assert_eq!(last.message_index(), 1);
    let next_assistant = err(json!([
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "assistant", "content": "more"},
    ]));
    assert!(matches!(
        next_assistant,
        PairingError::MissingToolResult { message: 0, .. }
    ));
}

#[test]
fn a_result_after_text_does_not_count() {
    // The API does not look past a leading block that is not a tool_result.
    let e = err(json!([
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "user", "content": [text("here you go"), tr("toolu_1")]},
    ]));
    assert!(matches!(
        e,
        PairingError::MissingToolResult { message: 0, .. }
    ));
}

#[test]
fn trimmed_history_starting_with_a_tool_result_is_an_orphan() {
    let e = err(json!([
        {"role": "user", "content": [tr("toolu_gone"), text("and then?")]},
        {"role": "assistant", "content": "ok"},
    ]));
    assert_eq!(
        e,
        PairingError::UnexpectedToolResult {
            message: 0,
            block: 0,
            id: "toolu_gone".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_gone. \
         Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
    );
}

#[test]
fn a_summary_between_tool_use_and_result_breaks_both_sides() {
    let messages = json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "user", "content": [text("<summary>earlier turns</summary>")]},
        {"role": "user", "content": [tr("toolu_1")]},
    ]);
    assert!(matches!(
        err(messages.clone()),
        PairingError::MissingToolResult { message: 1, .. }
    ));
    // With the first half fixed, the result two messages later is an orphan.
    let mut fixed = messages;
    fixed[2]["content"] = json!([tr("toolu_1"), text("<summary/>")]);
    assert!(matches!(
        err(fixed),
        PairingError::UnexpectedToolResult {
            message: 3,
            block: 0,
            ..
        }
    ));
}

#[test]
fn a_result_for_an_older_tool_use_is_an_orphan() {
    let e = err(json!([
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "user", "content": [tr("toolu_1")]},
        {"role": "assistant", "content": [tu("toolu_2")]},
        {"role": "user", "content": [tr("toolu_2"), tr("toolu_1")]},
    ]));
    assert!(matches!(
        e,
        PairingError::UnexpectedToolResult {
            message: 3,
            block: 1,
            ..
        }
    ));
}

#[test]
fn a_tool_result_in_an_assistant_message_is_unexpected() {
    let e = err(json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tr("toolu_1")]},
    ]));
    assert!(matches!(
        e,
        PairingError::UnexpectedToolResult { message: 1, .. }
    ));
}

#[test]
fn two_results_for_one_tool_use() {
    let e = err(json!([
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "user", "content": [tr("toolu_1"), tr("toolu_1")]},
    ]));
    assert_eq!(
        e.to_string(),
        "messages.1.content.1: each tool_use must have a single result. Found multiple `tool_result` blocks with id: toolu_1"
    );
}

#[test]
fn tool_use_ids_are_unique_across_the_conversation() {
    let e = err(json!([
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "user", "content": [tr("toolu_1")]},
        {"role": "assistant", "content": [text("again"), tu("toolu_1")]},
        {"role": "user", "content": [tr("toolu_1")]},
    ]));
    assert_eq!(
        e,
        PairingError::DuplicateToolUseId {
            message: 2,
            block: 1,
            id: "toolu_1".into(),
            first: (0, 0)
        }
    );
    assert_eq!(
        e.to_string(),
        "messages.2.content.1: `tool_use` ids must be unique"
    );
}

#[test]
fn server_results_never_pair_with_user_tool_results() {
    let orphan = err(json!([
        {"role": "assistant", "content": [
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}
        ]},
    ]));
    assert_eq!(
        orphan.to_string(),
        "messages.0.content.0: unexpected `tool_use_id` found in `web_search_tool_result` blocks: srvtoolu_1. \
         Each `web_search_tool_result` block must have a corresponding `server_tool_use` block before it."
    );
    // The result must come after its use, in the same message.
    let split = err(json!([
        {"role": "assistant", "content": [{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}]},
        {"role": "user", "content": "hm"},
        {"role": "assistant", "content": [{"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}]},
    ]));
    assert!(matches!(
        split,
        PairingError::UnexpectedServerToolResult { message: 2, .. }
    ));
    // A user tool_result cannot answer a server tool use.
    let cross = err(json!([
        {"role": "assistant", "content": [{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}]},
        {"role": "user", "content": [tr("srvtoolu_1")]},
    ]));
    assert!(matches!(
        cross,
        PairingError::UnexpectedToolResult { message: 1, .. }
    ));
}

// === repair ===

#[test]
fn a_valid_body_comes_back_byte_identical() {
    let raw = body(json!([
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "user", "content": [tr("toolu_1")]},
    ]));
    let out = repair(&raw);
    assert!(out.changes.is_empty());
    assert_eq!(&out.body[..], &raw[..]);

    let bytes = Bytes::from(raw);
    let out = repair_bytes(bytes.clone());
    assert_eq!(out.body.as_ptr(), bytes.as_ptr(), "no copy when unchanged");
}

#[test]
fn garbage_comes_back_untouched() {
    for raw in [&b"\xff\x00{"[..], b"{\"messages\":[}", b"[]"] {
        let out = repair(raw);
        assert!(out.changes.is_empty());
        assert_eq!(&out.body[..], raw);
    }
}

#[test]
fn a_missing_result_is_added_first_in_the_next_user_message() {
    let (messages, changes) = repaired(json!([
        {"role": "assistant", "content": [tu("toolu_1"), tu("toolu_2")]},
        {"role": "user", "content": [tr("toolu_1"), text("more")]},
    ]));
    assert_eq!(
        messages[1]["content"],
        json!([tr("toolu_1"), synthetic("toolu_2"), text("more")])
    );
    assert_eq!(
        changes,
        [Change::AddedToolResult {
            tool_use_message: 0,
            id: "toolu_2".into(),
            into_message: Some(1)
        }]
    );
}

#[test]
fn a_missing_next_message_is_created() {
    let (messages, changes) = repaired(json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tu("toolu_1")]},
    ]));
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[2],
        json!({"role": "user", "content": [synthetic("toolu_1")]})
    );
    assert!(matches!(
        changes[..],
        [Change::AddedToolResult {
            into_message: None,
            ..
        }]
    ));
    // Also before a following assistant message, and before string content.
    let (messages, _) = repaired(json!([
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "assistant", "content": "next"},
    ]));
    assert_eq!(messages[1]["content"], json!([synthetic("toolu_1")]));
    assert_eq!(messages[2]["content"], "next");
    let (messages, _) = repaired(json!([
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "user", "content": "a string"},
    ]));
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[2]["content"], "a string");
}

#[test]
fn an_orphan_is_dropped_and_an_emptied_message_removed() {
    let (messages, changes) = repaired(json!([
        {"role": "user", "content": [tr("toolu_gone")]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [tr("toolu_x"), text("keep me")]},
    ]));
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "ok");
    assert_eq!(messages[1]["content"], json!([text("keep me")]));
    assert_eq!(
        changes,
        [
            Change::DroppedToolResult {
                message: 0,
                block: 0,
                id: "toolu_gone".into()
            },
            Change::DroppedEmptyMessage { message: 0 },
            Change::DroppedToolResult {
                message: 2,
                block: 0,
                id: "toolu_x".into()
            },
        ]
    );
}

#[test]
fn results_after_text_are_moved_first() {
    let raw = br#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","input":{}},{"type":"tool_use","id":"b","input":{}}]},{"role":"user","content":[ {"type":"text","text":"x"} , {"type":"tool_result","tool_use_id":"b"},{"type":"tool_result","tool_use_id":"a"} ]}]}"#;
    let out = repair(raw);
    assert_eq!(out.changes, [Change::MovedToolResults { message: 1 }]);
    // Separators and padding stay where they were; only the order changes.
    assert_eq!(
        std::str::from_utf8(&out.body).unwrap(),
        r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","input":{}},{"type":"tool_use","id":"b","input":{}}]},{"role":"user","content":[ {"type":"tool_result","tool_use_id":"b"} , {"type":"tool_result","tool_use_id":"a"},{"type":"text","text":"x"} ]}]}"#
    );
}

#[test]
fn a_summary_inserted_between_is_repaired() {
    let (messages, changes) = repaired(json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "user", "content": [text("<summary/>")]},
        {"role": "user", "content": [tr("toolu_1")]},
        {"role": "assistant", "content": "done"},
    ]));
    assert_eq!(
        messages[2]["content"],
        json!([synthetic("toolu_1"), text("<summary/>")])
    );
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[3]["content"], "done");
    assert_eq!(changes.len(), 3, "{changes:?}");
}

#[test]
fn repeated_results_and_server_orphans_are_dropped() {
    let (messages, _) = repaired(json!([
        {"role": "assistant", "content": [tu("toolu_1"),
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_9", "content": []}]},
        {"role": "user", "content": [tr("toolu_1"), tr("toolu_1")]},
    ]));
    assert_eq!(messages[0]["content"], json!([tu("toolu_1")]));
    assert_eq!(messages[1]["content"], json!([tr("toolu_1")]));
}

#[test]
fn repeated_tool_use_ids_are_left_for_the_caller() {
    let raw = body(json!([
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "user", "content": [tr("toolu_1")]},
        {"role": "assistant", "content": [tu("toolu_1")]},
        {"role": "user", "content": [tr("toolu_1")]},
    ]));
    let out = repair(&raw);
    assert!(out.changes.is_empty());
    assert!(matches!(
        validate(&out.body),
        Err(PairingError::DuplicateToolUseId { .. })
    ));
}

#[test]
fn pretty_printed_bodies_keep_every_untouched_byte() {
    let raw = serde_json::to_vec_pretty(&json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [tu("toolu_1")]},
            {"role": "user", "content": [text("no result")]},
            {"role": "assistant", "content": "bye"},
        ]
    }))
    .unwrap();
    let out = repair(&raw);
    let s = std::str::from_utf8(&out.body).unwrap();
    let orig = std::str::from_utf8(&raw).unwrap();
    // The body only grew by the synthetic block and its separator.
    let head = orig.find("\"no result\"").unwrap();
    let prefix = &orig[..orig[..head].rfind('[').unwrap() + 1];
    assert!(s.starts_with(prefix));
    let tail = &orig[head..];
    assert!(s.ends_with(tail));
    assert!(validate(&out.body).unwrap().is_checked());
}

#[test]
fn a_repeated_id_gets_one_synthetic_result_and_repair_is_idempotent() {
    // Found by the `repair` fuzz target.
    let raw = body(json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tu("toolu_0"), tu("toolu_0")]},
    ]));
    let out = repair(&raw);
    let messages = messages_of(&out.body);
    assert_eq!(messages[2]["content"], json!([synthetic("toolu_0")]));
    assert!(repair(&out.body).changes.is_empty());
    assert!(matches!(
        validate(&out.body),
        Err(PairingError::DuplicateToolUseId { .. })
    ));
}
