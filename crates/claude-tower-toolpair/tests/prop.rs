//! Property tests on random conversations: `repair` output always validates,
//! `validate` agrees with an independent model of the rules written over
//! `serde_json::Value` and with the simulator's strict check, and the
//! scanner accepts whatever serde_json accepts.

use claude_tower_toolpair::{BodyKind, PairingError, repair, validate};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

/// One generated content block, before ids are assigned.
#[derive(Debug, Clone)]
enum Op {
    Text,
    ToolUse,
    /// A result for the n-th tool use of the previous message (mod its
    /// count), or, when there is none, an id nobody used.
    Result(u8),
    /// A result for any tool use so far (mod count): usually misplaced.
    StrayResult(u8),
    ServerUse,
    /// A server result for the n-th server use of this message, or a stray.
    ServerResult(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Text),
        3 => Just(Op::ToolUse),
        4 => any::<u8>().prop_map(Op::Result),
        1 => any::<u8>().prop_map(Op::StrayResult),
        1 => Just(Op::ServerUse),
        1 => any::<u8>().prop_map(Op::ServerResult),
    ]
}

/// (is_user, string content?, blocks)
fn conversation() -> impl Strategy<Value = Vec<(bool, bool, Vec<Op>)>> {
    prop::collection::vec(
        (
            any::<bool>(),
            prop::bool::weighted(0.15),
            prop::collection::vec(op(), 0..5),
        ),
        0..12,
    )
}

fn build(spec: &[(bool, bool, Vec<Op>)], alternate: bool) -> Value {
    let mut all_uses: Vec<String> = Vec::new();
    let mut prev_uses: Vec<String> = Vec::new();
    let mut n = 0;
    let mut messages = Vec::new();
    for (i, (is_user, string, ops)) in spec.iter().enumerate() {
        let is_user = if alternate { i % 2 == 0 } else { *is_user };
        let role = if is_user { "user" } else { "assistant" };
        if *string {
            messages.push(json!({"role": role, "content": format!("text {i}")}));
            prev_uses.clear();
            continue;
        }
        let mut blocks = Vec::new();
        let mut uses = Vec::new();
        let mut server_uses: Vec<String> = Vec::new();
        for op in ops {
            n += 1;
            blocks.push(match op {
                Op::Text => json!({"type": "text", "text": "t \"q\" \\"}),
                Op::ToolUse => {
                    let id = format!("toolu_{n}");
                    uses.push(id.clone());
                    all_uses.push(id.clone());
                    json!({"type": "tool_use", "id": id, "name": "f", "input": {"a": [1, {"b": "}"}]}})
                }
                Op::Result(k) => {
                    let id = if prev_uses.is_empty() {
                        format!("ghost_{k}")
                    } else {
                        prev_uses[*k as usize % prev_uses.len()].clone()
                    };
                    json!({"type": "tool_result", "tool_use_id": id, "content": "r"})
                }
                Op::StrayResult(k) => {
                    let id = if all_uses.is_empty() {
                        format!("ghost_{k}")
                    } else {
                        all_uses[*k as usize % all_uses.len()].clone()
                    };
                    json!({"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": "r"}]})
                }
                Op::ServerUse => {
                    let id = format!("srvtoolu_{n}");
                    server_uses.push(id.clone());
                    json!({"type": "server_tool_use", "id": id, "name": "web_search", "input": {}})
                }
                Op::ServerResult(k) => {
                    let id = if server_uses.is_empty() {
                        format!("srvghost_{k}")
                    } else {
                        server_uses[*k as usize % server_uses.len()].clone()
                    };
                    json!({"type": "web_search_tool_result", "tool_use_id": id, "content": []})
                }
            });
        }
        prev_uses = if is_user { Vec::new() } else { uses };
        messages.push(json!({"role": role, "content": blocks}));
    }
    json!({"model": "m", "max_tokens": 5, "messages": messages})
}

/// An independent statement of the rules, over `serde_json::Value`:
/// `true` when the pairing holds.
fn model_valid(body: &Value) -> bool {
    let messages = body["messages"].as_array().unwrap();
    let blocks = |m: &Value| -> Vec<Value> { m["content"].as_array().cloned().unwrap_or_default() };
    let mut ids = std::collections::HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let is_user = m["role"] == "user";
        let bs = blocks(m);
        let prev_uses: Vec<&str> = match i.checked_sub(1).map(|p| &messages[p]) {
            Some(p) if p["role"] == "assistant" => p["content"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|b| b["type"] == "tool_use")
                        .filter_map(|b| b["id"].as_str())
                        .collect()
                })
                .unwrap_or_default(),
            _ => vec![],
        };
        let mut server = vec![];
        let mut results = vec![];
        for b in &bs {
            let t = b["type"].as_str().unwrap();
            match t {
                "tool_use" if !is_user && !ids.insert(b["id"].as_str().unwrap().to_owned()) => {
                    return false;
                }
                "server_tool_use" => {
                    let id = b["id"].as_str().unwrap().to_owned();
                    server.push(id.clone());
                    if !ids.insert(id) {
                        return false;
                    }
                }
                "tool_result" => {
                    let id = b["tool_use_id"].as_str().unwrap();
                    if !is_user || !prev_uses.contains(&id) || results.contains(&id.to_owned()) {
                        return false;
                    }
                    results.push(id.to_owned());
                }
                t if t.ends_with("_tool_result")
                    && !server.contains(&b["tool_use_id"].as_str().unwrap().to_owned()) =>
                {
                    return false;
                }
                _ => {}
            }
        }
        if !is_user {
            let uses: Vec<&str> = bs
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .filter_map(|b| b["id"].as_str())
                .collect();
            if uses.is_empty() {
                continue;
            }
            let next = messages.get(i + 1);
            let leading: Vec<String> = match next {
                Some(n) if n["role"] == "user" && n["content"].is_array() => blocks(n)
                    .iter()
                    .take_while(|b| b["type"] == "tool_result")
                    .filter_map(|b| b["tool_use_id"].as_str().map(str::to_owned))
                    .collect(),
                _ => vec![],
            };
            if uses.iter().any(|u| !leading.iter().any(|l| l == u)) {
                return false;
            }
        }
    }
    true
}

fn encode(v: &Value, pretty: bool) -> Vec<u8> {
    if pretty {
        serde_json::to_vec_pretty(v).unwrap()
    } else {
        serde_json::to_vec(v).unwrap()
    }
}

/// Whether `body` stays within what the simulator's check covers: client
/// tool blocks only, no `tool_result` in assistant messages, no repeated
/// result in one message (the simulator leaves those to other checks).
fn in_sim_domain(body: &Value) -> bool {
    body["messages"].as_array().unwrap().iter().all(|m| {
        let blocks = m["content"].as_array().cloned().unwrap_or_default();
        let mut results = Vec::new();
        blocks.iter().all(|b| {
            let t = b["type"].as_str().unwrap();
            match t {
                "tool_result" => {
                    let id = b["tool_use_id"].as_str().unwrap().to_owned();
                    let fresh = !results.contains(&id);
                    results.push(id);
                    m["role"] == "user" && fresh
                }
                "text" | "tool_use" => true,
                _ => false,
            }
        })
    })
}

/// Keeps only client tool blocks, and results only in user messages.
fn sim_spec(spec: Vec<(bool, bool, Vec<Op>)>, alternate: bool) -> Vec<(bool, bool, Vec<Op>)> {
    spec.into_iter()
        .enumerate()
        .map(|(i, (is_user, string, ops))| {
            let user = if alternate { i % 2 == 0 } else { is_user };
            let ops = ops
                .into_iter()
                .map(|op| match op {
                    Op::Result(_) | Op::StrayResult(_) if !user => Op::Text,
                    Op::ServerUse | Op::ServerResult(_) => Op::ToolUse,
                    op => op,
                })
                .collect();
            (is_user, string, ops)
        })
        .collect()
}

#[test]
fn validate_agrees_with_the_simulators_strict_check() {
    let mut runner = TestRunner::new(ProptestConfig::with_cases(512));
    let compared = AtomicUsize::new(0);
    let failing = AtomicUsize::new(0);
    runner
        .run(&(conversation(), any::<bool>()), |(spec, alternate)| {
            let v = build(&sim_spec(spec, alternate), alternate);
            if !in_sim_domain(&v) {
                return Ok(());
            }
            compared.fetch_add(1, Ordering::Relaxed);
            let ours = validate(&encode(&v, false));
            let sim =
                claude_tower_sim::toolpair::check_tool_pairing(v["messages"].as_array().unwrap());
            prop_assert_eq!(ours.is_ok(), sim.is_ok(), "ours {:?} sim {:?}", ours, sim);
            if let (Err(ours), Err(sim)) = (&ours, &sim) {
                failing.fetch_add(1, Ordering::Relaxed);
                // Where both name a missing or unexpected result, the words
                // match (the simulator words repeated ids its own way).
                if !matches!(ours, PairingError::DuplicateToolUseId { .. }) {
                    prop_assert_eq!(ours.to_string(), sim.message());
                }
            }
            Ok(())
        })
        .unwrap();
    let (compared, failing) = (compared.into_inner(), failing.into_inner());
    assert!(
        compared > 300,
        "only {compared} cases in the simulator's domain"
    );
    assert!(
        failing > 50 && failing < compared - 50,
        "{failing} of {compared} broken"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn validate_agrees_with_the_model(spec in conversation(), alternate in any::<bool>(), pretty in any::<bool>()) {
        let v = build(&spec, alternate);
        let raw = encode(&v, pretty);
        let verdict = validate(&raw);
        prop_assert_eq!(verdict.is_ok(), model_valid(&v), "{:?}", verdict);
        if let Ok(report) = verdict {
            prop_assert!(report.is_checked());
        }
    }

    #[test]
    fn repair_output_always_validates(spec in conversation(), alternate in any::<bool>(), pretty in any::<bool>()) {
        let v = build(&spec, alternate);
        let raw = encode(&v, pretty);
        let out = repair(&raw);
        match validate(&out.body) {
            Ok(report) => prop_assert!(report.is_checked()),
            // Repeated ids are the one thing repair leaves alone; the
            // generator never repeats ids.
            Err(e) => prop_assert!(false, "{e}"),
        }
        // Unchanged exactly when the input was valid; idempotent.
        prop_assert_eq!(out.changes.is_empty(), validate(&raw).is_ok());
        if out.changes.is_empty() {
            prop_assert_eq!(&out.body[..], &raw[..]);
        }
        prop_assert!(repair(&out.body).changes.is_empty());
        // Still JSON, and nothing but `messages` changed.
        let mut after: Value = serde_json::from_slice(&out.body).unwrap();
        let mut before = v.clone();
        prop_assert!(model_valid(&after));
        after.as_object_mut().unwrap().remove("messages");
        before.as_object_mut().unwrap().remove("messages");
        prop_assert_eq!(before, after);
    }

    #[test]
    fn repair_keeps_every_paired_block(spec in conversation()) {
        // Every tool_use survives repair: nothing the model said is lost.
        let v = build(&spec, true);
        let out = repair(&encode(&v, false));
        let count = |v: &Value| v["messages"].as_array().unwrap().iter()
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .filter(|b| b["type"] == "tool_use" || b["type"] == "text")
            .count();
        let after: Value = serde_json::from_slice(&out.body).unwrap();
        prop_assert_eq!(count(&v), count(&after));
    }

    #[test]
    fn garbage_never_panics_and_serde_accepted_json_is_never_not_json(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let verdict = validate(&bytes);
        let _ = repair(&bytes);
        if serde_json::from_slice::<Value>(&bytes).is_ok() {
            let kind = verdict.map(|r| r.kind()).unwrap_or(BodyKind::Messages);
            let not_json = matches!(kind, BodyKind::NotJson(_));
            prop_assert!(!not_json);
        }
    }

    #[test]
    fn mutated_bodies_never_panic(spec in conversation(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut raw = encode(&build(&spec, true), false);
        let at = cut.index(raw.len().max(1)).min(raw.len().saturating_sub(1));
        if !raw.is_empty() {
            raw[at] = byte;
        }
        let verdict = validate(&raw);
        let out = repair(&raw);
        if serde_json::from_slice::<Value>(&raw).is_ok() {
            let not_json = matches!(verdict.map(|r| r.kind()), Ok(BodyKind::NotJson(_)));
            prop_assert!(!not_json);
        }
        if !out.changes.is_empty() {
            let missing = matches!(validate(&out.body), Err(PairingError::MissingToolResult { .. }));
            prop_assert!(!missing);
        }
    }
}
