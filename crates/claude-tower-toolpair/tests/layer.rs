//! `ToolPairingLayer` in each mode, over a recording inner service.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use claude_tower_core::ReplayBody;
use claude_tower_toolpair::{Change, Repairs, ToolPairingLayer, ToolPairingMode};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt, service_fn};

type Seen = Arc<Mutex<Vec<Request<Bytes>>>>;

/// An upstream that records what it was sent and answers 200 "upstream".
fn upstream(
    seen: Seen,
) -> impl Service<
    Request<ReplayBody>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone {
    service_fn(move |req: Request<ReplayBody>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.into_bytes();
            seen.lock().unwrap().push(Request::from_parts(parts, bytes));
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"upstream"))))
        }
    })
}

const BROKEN: &str = r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"go"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"ls","input":{}}]},{"role":"user","content":"what now?"}]}"#;
const VALID: &str = r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"go"}]}"#;
const DUPLICATE: &str = r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","input":{}},{"type":"tool_use","id":"a","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"a"}]}]}"#;

fn post(uri: &str, body: &'static str) -> Request<ReplayBody> {
    Request::post(uri)
        .header("content-length", body.len())
        .body(ReplayBody::from(body))
        .unwrap()
}

async fn send(
    mode: ToolPairingMode,
    req: Request<ReplayBody>,
) -> (http::response::Parts, Bytes, Vec<Request<Bytes>>) {
    let seen = Seen::default();
    let svc = ToolPairingLayer::new(mode).layer(upstream(seen.clone()));
    let res = svc.oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (parts, body, seen)
}

#[tokio::test]
async fn reject_answers_400_in_anthropics_envelope_and_sends_nothing() {
    let (parts, body, seen) = send(
        ToolPairingMode::Reject,
        post("http://gw/v1/messages", BROKEN),
    )
    .await;
    assert_eq!(parts.status, 400);
    assert_eq!(parts.headers["content-type"], "application/json");
    assert_eq!(parts.headers["x-should-retry"], "false");
    let local = parts
        .extensions
        .get::<claude_tower_core::ClaudeError>()
        .expect("the rejection carries its ClaudeError");
    assert_eq!(local.class(), claude_tower_core::ErrorClass::InvalidRequest);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "invalid_request_error");
    assert_eq!(
        json["error"]["message"],
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1. \
         Each `tool_use` block must have a corresponding `tool_result` block in the next message."
    );
    assert!(seen.is_empty());
}

#[tokio::test]
async fn responses_name_the_requested_model_for_a_usage_layer_further_out() {
    use claude_tower_core::RequestedModel;
    let named = |parts: &http::response::Parts| {
        parts
            .extensions
            .get::<RequestedModel>()
            .map(|m| m.as_str().to_owned())
    };
    for mode in [
        ToolPairingMode::Reject,
        ToolPairingMode::Repair,
        ToolPairingMode::Observe,
    ] {
        let (parts, _, _) = send(mode, post("http://gw/v1/messages", VALID)).await;
        assert_eq!(named(&parts).as_deref(), Some("m"), "{mode:?}");
    }
    // Repaired and sent: still named; not a Messages request: nothing read.
    let (parts, _, _) = send(
        ToolPairingMode::Repair,
        post("http://gw/v1/messages", BROKEN),
    )
    .await;
    assert_eq!(named(&parts).as_deref(), Some("m"));
    let (parts, _, _) = send(ToolPairingMode::Reject, post("http://gw/v1/files", VALID)).await;
    assert_eq!(named(&parts), None);
    // A conversation without tool blocks takes the short way: still named.
    let plain = r#"{"messages":[{"role":"user","content":"hi"}],"model":"plain-m"}"#;
    assert!(!plain.contains("tool_") && !plain.contains("\\u"));
    let (parts, _, seen) = send(
        ToolPairingMode::Reject,
        post("http://gw/v1/messages", plain),
    )
    .await;
    assert_eq!(named(&parts).as_deref(), Some("plain-m"));
    assert_eq!(seen.len(), 1, "sent on");
}

#[tokio::test]
async fn reject_is_the_default() {
    assert_eq!(ToolPairingLayer::default().mode(), ToolPairingMode::Reject);
    assert_eq!(ToolPairingMode::default(), ToolPairingMode::Reject);
}

#[tokio::test]
async fn valid_requests_pass_untouched() {
    let (parts, body, seen) = send(
        ToolPairingMode::Reject,
        post("http://gw/v1/messages", VALID),
    )
    .await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, "upstream");
    assert_eq!(seen[0].body(), VALID);
    assert!(parts.extensions.get::<Repairs>().is_none());
}

#[tokio::test]
async fn messages_paths_match_with_prefix_query_and_count_tokens() {
    for uri in [
        "https://x.services.ai.azure.com/anthropic/v1/messages?beta=true",
        "http://gw/v1/messages/",
        "http://gw/v1/messages/count_tokens",
        "http://gw/prefix/v1/messages/count_tokens?x=1",
    ] {
        let (parts, _, seen) = send(ToolPairingMode::Reject, post(uri, BROKEN)).await;
        assert_eq!(parts.status, 400, "{uri}");
        assert!(seen.is_empty());
    }
}

#[tokio::test]
async fn other_requests_and_non_json_bodies_pass_through() {
    for req in [
        post("http://gw/v1/models", BROKEN),
        post("http://gw/v1/messages/batches", BROKEN),
        post("http://gw/v1/messagesx", BROKEN),
        Request::get("http://gw/v1/messages")
            .body(ReplayBody::from(BROKEN))
            .unwrap(),
        post("http://gw/v1/messages", "not json {"),
        post("http://gw/v1/messages", r#"{"prompt":"x"}"#),
    ] {
        let sent = req.body().as_bytes().clone();
        let (parts, _, seen) = send(ToolPairingMode::Reject, req).await;
        assert_eq!(parts.status, 200);
        assert_eq!(seen[0].body(), &sent);
    }
}

#[tokio::test]
async fn repair_sends_the_repaired_body_and_records_the_changes() {
    let (parts, body, seen) = send(
        ToolPairingMode::Repair,
        post("http://gw/v1/messages", BROKEN),
    )
    .await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, "upstream");
    let sent = seen[0].body();
    assert!(claude_tower_toolpair::validate(sent).unwrap().is_checked());
    assert_eq!(
        seen[0].headers()["content-length"],
        sent.len().to_string().as_str()
    );
    let sent: Value = serde_json::from_slice(sent).unwrap();
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "toolu_1");
    assert_eq!(sent["messages"][2]["content"][0]["is_error"], true);
    let repairs = parts.extensions.get::<Repairs>().expect("repairs recorded");
    assert_eq!(
        repairs.changes(),
        [Change::AddedToolResult {
            tool_use_message: 1,
            id: "toolu_1".into(),
            into_message: None
        }]
    );
    assert_eq!(json!(sent["messages"].as_array().unwrap().len()), 4);
}

#[tokio::test]
async fn repair_rejects_what_it_cannot_fix() {
    let (parts, body, seen) = send(
        ToolPairingMode::Repair,
        post("http://gw/v1/messages", DUPLICATE),
    )
    .await;
    assert_eq!(parts.status, 400);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json["error"]["message"],
        "messages.0.content.1: `tool_use` ids must be unique"
    );
    assert!(seen.is_empty());
}

#[tokio::test]
async fn observe_sends_the_request_unchanged() {
    let (parts, _, seen) = send(
        ToolPairingMode::Observe,
        post("http://gw/v1/messages", BROKEN),
    )
    .await;
    assert_eq!(parts.status, 200);
    assert_eq!(seen[0].body(), BROKEN);
    assert!(parts.extensions.get::<Repairs>().is_none());
}
