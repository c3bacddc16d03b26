//! (b) ToolPairing alone in front of a hyper client, using only
//! `claude-tower-toolpair` and `claude-tower-core` (plus hyper): core's
//! `ReplayLayer` makes the `ReplayBody` tool pairing reads.

use bytes::Bytes;
use claude_tower_core::{ReplayBody, ReplayLayer};
use claude_tower_sim::{Sim, SimConfig};
use claude_tower_toolpair::{ToolPairingLayer, ToolPairingMode};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

const BROKEN: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[
    {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_gone","content":"42"}]}]}"#;
const HELLO: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn tool_pairing_alone_in_front_of_a_hyper_client() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody>();
    let svc = ServiceBuilder::new()
        .layer(ReplayLayer::new())
        .layer(ToolPairingLayer::new(ToolPairingMode::Reject))
        .service(client);
    let post = |body: &'static str| {
        Request::post(format!("{}/v1/messages", sim.anthropic_base_url()))
            .header("x-api-key", "sk-test")
            .header("anthropic-version", "2023-06-01")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };

    let res = svc.clone().oneshot(post(HELLO)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(sim.requests().len(), 1);

    let res = svc.oneshot(post(BROKEN)).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["type"], "invalid_request_error");
    assert_eq!(sim.requests().len(), 1, "the broken request was never sent");
}
