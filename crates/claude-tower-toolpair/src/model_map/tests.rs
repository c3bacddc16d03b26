use super::*;
use claude_tower_core::ReplayBody;
use std::convert::Infallible;
use tower::{ServiceExt, service_fn};

fn foundry() -> ModelMapping {
    ModelMapping::new()
        .exact("claude-sonnet-4-5-20250929", "claude-sonnet-4-5")
        .prefix("claude-opus-4", "opus-4")
        .prefix("claude-opus-4-1", "opus-4-1")
        .alias("sonnet", "claude-sonnet-4-5-20250929")
        .alias("haiku", "claude-haiku-4-5")
}

fn rewrite(body: &str) -> String {
    let bytes = Bytes::copy_from_slice(body.as_bytes());
    match rewrite_model(&bytes, &foundry()) {
        Some(out) => String::from_utf8(out.to_vec()).unwrap(),
        None => body.to_owned(),
    }
}

#[test]
fn rules_exact_prefix_alias_and_unmapped() {
    let m = foundry();
    assert_eq!(
        m.resolve("claude-sonnet-4-5-20250929"),
        Some("claude-sonnet-4-5")
    );
    assert_eq!(
        m.resolve("sonnet"),
        Some("claude-sonnet-4-5"),
        "alias, then exact"
    );
    assert_eq!(m.resolve("haiku"), Some("claude-haiku-4-5"), "alias alone");
    assert_eq!(
        m.resolve("claude-opus-4-1-20250805"),
        Some("opus-4-1"),
        "longest prefix"
    );
    assert_eq!(m.resolve("claude-opus-4-20250514"), Some("opus-4"));
    assert_eq!(m.resolve("claude-3-5-haiku-latest"), None);
    assert_eq!(
        ModelMapping::new().exact("a", "a").resolve("a"),
        None,
        "identity is no rewrite"
    );
}

#[test]
fn only_the_top_level_model_changes() {
    let body = r#"{
  "metadata": {"user_id": "u", "model": "sonnet"},
  "tools": [{"name": "t", "input_schema": {"properties": {"model": {"type": "string"}}}}],
  "messages": [{"role": "user", "content": [{"type": "tool_result", "content": "{\"model\": \"sonnet\"}"}]}],
  "max_tokens": 1024, "stream": true, "temperature": 0.5e0, "x": null,
  "model" :	"sonnet",
  "system": "say \"model\": sonnet } ] {"
}"#;
    let expected = body.replace(
        "\"model\" :\t\"sonnet\"",
        "\"model\" :\t\"claude-sonnet-4-5\"",
    );
    assert_ne!(expected, body);
    assert_eq!(rewrite(body), expected);
}

#[test]
fn first_key_compact_and_escaped_forms() {
    assert_eq!(
        rewrite(r#"{"model":"claude-opus-4-1-20250805","max_tokens":1}"#),
        r#"{"model":"opus-4-1","max_tokens":1}"#
    );
    // An escaped key and value are still the model.
    assert_eq!(
        rewrite(r#"{"mod\u0065l":"sonn\u0065t"}"#),
        r#"{"mod\u0065l":"claude-sonnet-4-5"}"#
    );
    // A mapped name that needs escaping is escaped.
    let m = ModelMapping::new().exact("a", "we\"ird");
    let out = rewrite_model(&Bytes::from_static(br#"{"model":"a"}"#), &m).unwrap();
    assert_eq!(&out[..], br#"{"model":"we\"ird"}"#);
}

#[test]
fn garbage_and_non_objects_pass_unchanged() {
    for body in [
        "",
        "[]",
        "{}",
        "null",
        r#"{"model": 5}"#,
        r#"{"messages": [1, 2"#,
        r#"{"a": "unterminated"#,
        r#"{"a" 1, "model": "sonnet"}"#,
        "{\"a\": \"\\",
        r#"{"metadata": {"model": "sonnet"}}"#,
        r#"{"model": "unmapped-model"}"#,
    ] {
        assert_eq!(rewrite(body), body, "{body:?}");
    }
}

#[tokio::test]
async fn layer_rewrites_the_body_and_its_content_length() {
    let svc =
        ModelMapLayer::new(foundry()).layer(service_fn(|req: Request<ReplayBody>| async move {
            let len = req.headers().get(CONTENT_LENGTH).cloned();
            Ok::<_, Infallible>((len, req.into_body().into_bytes()))
        }));
    let body = r#"{"model":"sonnet","max_tokens":1}"#;
    let req = Request::post("/v1/messages")
        .header(CONTENT_LENGTH, body.len())
        .body(ReplayBody::from(body))
        .unwrap();
    let (len, sent) = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(sent, r#"{"model":"claude-sonnet-4-5","max_tokens":1}"#);
    assert_eq!(len.unwrap(), sent.len().to_string().as_str());

    // Unmapped: the very same buffer goes through.
    let original = Bytes::from_static(br#"{"model":"other"}"#);
    let req = Request::post("/")
        .body(ReplayBody::new(original.clone()))
        .unwrap();
    let (len, sent) = svc.oneshot(req).await.unwrap();
    assert!(len.is_none());
    assert_eq!(sent.as_ptr(), original.as_ptr());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn scanner_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let _ = rewrite_model(&Bytes::from(bytes), &foundry());
    }

    #[test]
    fn rewrite_matches_serde(
        before in proptest::collection::btree_map("[a-z]{1,6}", proptest::prelude::any::<i32>(), 0..4),
        model in "[a-z-]{0,12}",
    ) {
        let mut object = serde_json::Map::new();
        for (k, v) in &before {
            if k != "model" {
                object.insert(k.clone(), serde_json::json!({"model": v, "list": [v, "]}"]}));
            }
        }
        object.insert("model".into(), serde_json::Value::String(model.clone()));
        let body = serde_json::to_vec_pretty(&object).unwrap();
        let m = ModelMapping::new().prefix("", "mapped");
        let out = rewrite_model(&Bytes::from(body.clone()), &m);
        let expected_change = model != "mapped";
        proptest::prop_assert_eq!(out.is_some(), expected_change);
        if let Some(out) = out {
            let mut parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
            proptest::prop_assert_eq!(&parsed["model"], "mapped");
            parsed["model"] = serde_json::Value::String(model);
            proptest::prop_assert_eq!(parsed, serde_json::Value::Object(object));
        }
    }
}
