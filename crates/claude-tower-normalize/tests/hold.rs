//! StreamHold against the simulator, in a route's stack as the facade builds
//! it: Retry -> StreamHold -> Normalize -> a real hyper client.

use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::{Attempt, ClaudeError, ErrorClass, Face, ReplayBody, RouteId};
use claude_tower_normalize::NormalizeLayer;
use claude_tower_normalize::hold::StreamHoldLayer;
use claude_tower_retry::{RetryAfterPolicy, RetryLayer};
use claude_tower_sim::{Sim, SimConfig, event_names as events};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

const STREAM_BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// Sends one streaming request on `face` through Retry -> StreamHold ->
/// Normalize, with `faults` as the simulator's script.
async fn send(
    faults: &str,
    face: Face,
    hold: bool,
) -> (
    Sim,
    Response<impl Body<Data = Bytes, Error: std::fmt::Debug>>,
) {
    let sim = Sim::start(SimConfig::default().faults(faults))
        .await
        .expect("sim starts");
    let route = RouteId::new(face.as_str());
    let policy = RetryAfterPolicy::builder(route.clone())
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .expect("valid policy");
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody>();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .layer(StreamHoldLayer::new(route.clone(), face).with_enabled(hold))
        .layer(NormalizeLayer::new(route, face))
        .service(client);
    let base = match face {
        Face::Anthropic => sim.anthropic_base_url(),
        Face::Foundry => sim.foundry_base_url(),
    };
    let request = Request::post(format!("{base}/v1/messages"))
        .header("x-api-key", "test-key")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(ReplayBody::from(STREAM_BODY))
        .expect("request");
    let response = service.oneshot(request).await.expect("a response");
    (sim, response)
}

fn assert_complete(sse: &[u8]) {
    let names = events(sse);
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert_eq!(
        names.iter().filter(|n| *n == "message_start").count(),
        1,
        "one stream, not two spliced: {names:?}"
    );
    assert!(!names.iter().any(|n| n == "error"), "{names:?}");
}

#[tokio::test]
async fn an_early_overload_is_retried_into_one_complete_stream() {
    for face in [Face::Anthropic, Face::Foundry] {
        let faults = format!("{}=stream-error:early", face.as_str());
        let (sim, res) = send(&faults, face, true).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.extensions().get::<ClaudeError>().is_none());
        assert_eq!(
            res.extensions().get::<Attempt>().map(Attempt::number),
            Some(2)
        );
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_complete(&body);
        let steps: Vec<String> = sim.requests().into_iter().map(|r| r.step).collect();
        assert_eq!(steps, ["stream-error:early", "ok"], "{face}");
    }
}

#[tokio::test]
async fn an_overload_after_content_passes_through_unretried() {
    let (sim, res) = send("anthropic=stream-error", Face::Anthropic, true).await;
    assert!(res.extensions().get::<ClaudeError>().is_none());
    assert_eq!(
        res.extensions().get::<Attempt>().map(Attempt::number),
        Some(1)
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let names = events(&body);
    assert!(names.contains(&"content_block_delta".to_owned()));
    assert_eq!(names.last().map(String::as_str), Some("error"));
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn when_retries_run_out_the_client_gets_what_upstream_sent() {
    let (sim, res) = send("anthropic=stream-error:early*50", Face::Anthropic, true).await;
    assert_eq!(res.status(), StatusCode::OK);
    let err = res.extensions().get::<ClaudeError>().expect("classified");
    assert_eq!(err.class(), ErrorClass::Overloaded);
    assert_eq!(err.route().map(RouteId::as_str), Some("anthropic"));
    assert!(
        err.request_ids()
            .request_id()
            .is_some_and(|id| id.starts_with("req_sim_"))
    );
    assert_eq!(
        res.extensions().get::<Attempt>().map(Attempt::number),
        Some(3)
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(events(&body), ["message_start", "error"]);
    assert!(String::from_utf8_lossy(&body).contains("overloaded_error"));
    assert_eq!(sim.requests().len(), 3);
}

#[tokio::test]
async fn turned_off_the_early_overload_reaches_the_client() {
    let (sim, res) = send("anthropic=stream-error:early", Face::Anthropic, false).await;
    assert!(res.extensions().get::<ClaudeError>().is_none());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(events(&body), ["message_start", "error"]);
    assert_eq!(sim.requests().len(), 1);
}
