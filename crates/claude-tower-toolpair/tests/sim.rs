//! The layer in front of the simulator, over real HTTP: a rejected request
//! never reaches it, a repaired one passes its strict check, and in observe
//! mode the simulator's own 400 carries the same words as our error.

use claude_tower_core::ReplayBody;
use claude_tower_sim::{Sim, SimConfig};
use claude_tower_toolpair::{Repairs, ToolPairingLayer, ToolPairingMode, validate};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{Layer, ServiceExt, service_fn};

const BROKEN: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[
  {"role":"user","content":"list files"},
  {"role":"assistant","content":[{"type":"text","text":"ok"},{"type":"tool_use","id":"toolu_01A","name":"ls","input":{"path":"/"}}]},
  {"role":"user","content":[{"type":"text","text":"<summary>compacted</summary>"}]},
  {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01A","content":"a b c"}]}]}"#;

async fn send(sim: &Sim, mode: ToolPairingMode, path: &str) -> (u16, Value, bool) {
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody>();
    let svc = ToolPairingLayer::new(mode).layer(service_fn(move |req| {
        let client = client.clone();
        async move { client.request(req).await }
    }));
    let req = Request::post(format!("http://{}{path}", sim.addr()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(ReplayBody::from(BROKEN))
        .unwrap();
    let res = svc.oneshot(req).await.expect("the simulator answers");
    let status = res.status().as_u16();
    let repaired = res.extensions().get::<Repairs>().is_some();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap(), repaired)
}

#[tokio::test]
async fn reject_keeps_the_request_from_the_upstream() {
    let sim = Sim::start(SimConfig::default().anthropic_key("k"))
        .await
        .unwrap();
    for path in ["/v1/messages", "/anthropic/v1/messages?beta=true"] {
        let (status, body, _) = send(&sim, ToolPairingMode::Reject, path).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn a_repaired_request_passes_the_simulators_strict_check() {
    let sim = Sim::start(SimConfig::default().anthropic_key("k"))
        .await
        .unwrap();
    let (status, body, repaired) = send(&sim, ToolPairingMode::Repair, "/v1/messages").await;
    assert_eq!(status, 200, "{body}");
    assert!(repaired);
    assert_eq!(body["type"], "message");
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn observe_lets_the_simulator_answer_in_the_same_words() {
    let sim = Sim::start(SimConfig::default().anthropic_key("k"))
        .await
        .unwrap();
    let (status, body, _) = send(&sim, ToolPairingMode::Observe, "/v1/messages").await;
    assert_eq!(status, 400);
    let ours = validate(BROKEN.as_bytes()).unwrap_err().to_string();
    assert_eq!(body["error"]["message"], ours.as_str());
    assert_eq!(sim.requests().len(), 1);
}
