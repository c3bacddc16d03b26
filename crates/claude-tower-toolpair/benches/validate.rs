//! `validate` against `serde_json::from_slice::<Value>` on the same bytes:
//! a generated ~5 MB, 400-message conversation with tool calls, a system
//! prompt and tool definitions. Both run in one bench so their ratio comes
//! from one run.
//!
//! Two bodies: `claude_code_like`, where tool results hold source files
//! (a string literal every few lines, a `\n` escape on every line) and tool
//! inputs hold escape-dense edits; and `dense_escapes`, a harsher one where
//! every tool result line carries four escaped quotes.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const SOURCE: &str = r#"use std::collections::HashMap;
use std::path::Path;

/// Loads the configuration from disk, one `key = value` per line.
pub fn load(path: &Path) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path)?;
    let mut map = HashMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=') {
            map.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    tracing::debug!(keys = map.len(), "loaded {}", path.display());
    Ok(Config { map })
}

"#;

/// A Claude Code-like body: long text, nested tool inputs, tool results
/// holding source code, ~`target` bytes over `turns` messages.
fn conversation(turns: usize, target: usize, dense: bool) -> Vec<u8> {
    let per = target / turns;
    let code_line =
        "    let value = map.get(\"key\").unwrap_or(&default); // a \"quoted\" \\ path\tand tab\n";
    let prose = "The quick brown fox jumps over the lazy dog while the compiler checks lifetimes. ";
    let mut messages = Vec::with_capacity(turns);
    for i in 0..turns / 2 {
        let id = format!("toolu_{i:020}");
        let text = prose.repeat(per / 3 / prose.len());
        messages.push(json!({
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": text, "signature": "sig"},
                {"type": "text", "text": "Let me look at the file."},
                {"type": "tool_use", "id": id, "name": "Edit", "input": {
                    "file_path": format!("/src/module_{i}.rs"),
                    "edits": [{"old": code_line.repeat(8), "new": code_line.repeat(8), "opts": {"n": [1, 2.5e3, -3, true, null]}}]
                }}
            ]
        }));
        let line = if dense { code_line } else { SOURCE };
        let content = line.repeat(per / 2 / line.len());
        messages.push(json!({
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": content}]},
                {"type": "text", "text": "continue"}
            ]
        }));
    }
    let tools: Vec<_> = (0..40)
        .map(|t| json!({"name": format!("tool_{t}"), "description": prose.repeat(20),
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}))
        .collect();
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": true,
        "system": [{"type": "text", "text": prose.repeat(400), "cache_control": {"type": "ephemeral"}}],
        "tools": tools,
        "messages": messages,
        "metadata": {"user_id": "u"},
    });
    serde_json::to_vec_pretty(&body).expect("serializable")
}

fn bench(c: &mut Criterion) {
    for (name, dense) in [("claude_code_like", false), ("dense_escapes", true)] {
        let body = conversation(400, 5 * 1024 * 1024, dense);
        let report = claude_tower_toolpair::validate(&body).expect("valid pairing");
        assert!(report.is_checked());
        assert_eq!(report.messages(), 400);

        let mut group = c.benchmark_group(format!("validate_5mb_400_turns/{name}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("toolpair_validate", |b| {
            b.iter(|| claude_tower_toolpair::validate(black_box(&body)))
        });
        group.bench_function("serde_json_value", |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).map(drop))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
