//! The shared vocabulary, seen from outside the crate as a layer author sees it.

use bytes::Bytes;
use claude_tower_core::{ClaudeError, ErrorClass, RouteId, error_response};
use http::StatusCode;

#[test]
fn a_local_rejection_renders_as_anthropic_would() {
    let err = ClaudeError::new(
        ErrorClass::InvalidRequest,
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1.",
    )
    .with_route(RouteId::new("local"));
    let res = error_response::<Bytes>(&err);
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(!err.failover_worthy());
}
