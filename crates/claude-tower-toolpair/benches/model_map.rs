//! ModelMap's rewrite of the top-level `"model"` on a Claude Code-sized body
//! (about 90 KB), with `model` first (the usual order) and last (after the
//! whole `messages` array has to be skipped).

use bytes::Bytes;
use claude_tower_toolpair::ModelMapping;
use claude_tower_toolpair::model_map::rewrite_model;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn body(model_last: bool) -> Bytes {
    let mut messages = Vec::new();
    for i in 0..200 {
        let text = format!(
            "line {i}: say \\\"model\\\": sonnet {{ ] [ }} and some more text to skip over, {}",
            "x".repeat(300)
        );
        messages.push(format!(
            r#"{{"role":"{}","content":[{{"type":"text","text":"{text}"}}]}}"#,
            if i % 2 == 0 { "user" } else { "assistant" }
        ));
    }
    let messages = messages.join(",");
    let s = if model_last {
        format!(
            r#"{{"max_tokens":1024,"stream":true,"metadata":{{"user_id":"u"}},"messages":[{messages}],"model":"sonnet"}}"#
        )
    } else {
        format!(
            r#"{{"model":"sonnet","max_tokens":1024,"stream":true,"metadata":{{"user_id":"u"}},"messages":[{messages}]}}"#
        )
    };
    Bytes::from(s)
}

fn bench(c: &mut Criterion) {
    let mapping = ModelMapping::new()
        .alias("sonnet", "claude-sonnet-4-5-20250929")
        .exact("claude-sonnet-4-5-20250929", "sonnet-deployment");
    let mut group = c.benchmark_group("model_map_90kb");
    for (name, last) in [("model_first", false), ("model_last", true)] {
        let body = body(last);
        assert!(rewrite_model(&body, &mapping).is_some());
        group.throughput(criterion::Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(rewrite_model(black_box(&body), &mapping)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
