//! `ReqwestService` as the transport under a route's stack, against the
//! simulator.

use std::error::Error as _;
use std::time::Duration;

use claude_tower::retry::{Attempt, RetryAfterPolicy, RetryLayer};
use claude_tower_core::{ClaudeError, ErrorClass, Face, ReplayBody, RequestIds, RouteId};
use claude_tower_normalize::NormalizeLayer;
use claude_tower_reqwest::ReqwestService;
use claude_tower_sim::{Sim, SimConfig};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};

const STREAM_BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const BODY: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

fn request(uri: &str, body: &'static str) -> http::Request<ReplayBody> {
    http::Request::post(uri)
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .header("x-sim-stream-bytes", "65536")
        .body(ReplayBody::from(body))
        .unwrap()
}

fn normalized(transport: ReqwestService) -> claude_tower_normalize::Normalize<ReqwestService> {
    ServiceBuilder::new()
        .layer(NormalizeLayer::new(
            RouteId::new("anthropic"),
            Face::Anthropic,
        ))
        .service(transport)
}

#[tokio::test]
async fn a_streaming_response_passes_through_frame_by_frame() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let transport = ReqwestService::new(reqwest::Client::new())
        .with_base_url(sim.anthropic_base_url().parse().unwrap());

    let response = normalized(transport)
        .oneshot(request("/v1/messages", STREAM_BODY))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.extensions().get::<ClaudeError>().is_none());
    assert!(response.extensions().get::<RequestIds>().is_some());

    let mut body = response.into_body();
    let mut frames = 0;
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Ok(data) = frame.into_data() {
            frames += 1;
            text.extend_from_slice(&data);
        }
    }
    assert!(frames > 1, "the stream arrived in {frames} frame(s)");
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with("event: message_start"));
    assert!(text.contains("event: message_stop"));
    assert!(text.len() > 65536);
}

#[tokio::test]
async fn an_absolute_uri_needs_no_base_and_the_url_is_kept() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let url = format!(
        "{}/anthropic/v1/messages?beta=true",
        sim.anthropic_base_url()
    );
    let response = ReqwestService::new(reqwest::Client::new())
        .oneshot(request(&url, BODY))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = reqwest::Response::from(response);
    assert_eq!(response.url().as_str(), url);
    assert_eq!(sim.requests()[0].route, Face::Foundry);
}

#[tokio::test]
async fn upstream_failures_are_classified_by_normalize() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_faults("anthropic=529").unwrap();
    let transport = ReqwestService::new(reqwest::Client::new())
        .with_base_url(sim.anthropic_base_url().parse().unwrap());
    let response = normalized(transport)
        .oneshot(request("/v1/messages", BODY))
        .await
        .unwrap();
    assert_eq!(response.status(), 529);
    let err = response.extensions().get::<ClaudeError>().unwrap();
    assert_eq!(err.class(), ErrorClass::Overloaded);
    assert_eq!(err.route().unwrap(), "anthropic");
    assert!(err.request_ids().primary().is_some());
}

#[tokio::test]
async fn a_timeout_is_class_timeout_with_the_reqwest_error_as_source() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_faults("anthropic=delay:300ms").unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let transport =
        ReqwestService::new(client).with_base_url(sim.anthropic_base_url().parse().unwrap());
    let err = normalized(transport)
        .oneshot(request("/v1/messages", BODY))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert!(err.retryable() && err.failover_worthy());
    assert_eq!(err.route().unwrap(), "anthropic");
    let source = err
        .source()
        .unwrap()
        .downcast_ref::<reqwest::Error>()
        .unwrap();
    assert!(source.is_timeout());
}

#[tokio::test]
async fn a_refused_connection_is_class_transport() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let transport = ReqwestService::new(reqwest::Client::new())
        .with_base_url(format!("http://{addr}").parse().unwrap());
    let err = normalized(transport)
        .oneshot(request("/v1/messages", BODY))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport);
    assert_eq!(err.message(), "connect failed");
    let source = err
        .source()
        .unwrap()
        .downcast_ref::<reqwest::Error>()
        .unwrap();
    assert!(source.is_connect());
}

#[tokio::test]
async fn a_relative_uri_without_a_base_is_refused_before_sending() {
    let err = ReqwestService::new(reqwest::Client::new())
        .oneshot(request("/v1/messages", BODY))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::RouteUnavailable);
}

#[tokio::test]
async fn retry_over_the_transport_honours_retry_after() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_faults("anthropic=429:ms100,ok").unwrap();
    let transport = ReqwestService::new(reqwest::Client::new())
        .with_base_url(sim.anthropic_base_url().parse().unwrap());
    let route = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryAfterPolicy::new("anthropic")))
        .layer(NormalizeLayer::new(
            RouteId::new("anthropic"),
            Face::Anthropic,
        ))
        .service(transport);

    let started = std::time::Instant::now();
    let response = route.oneshot(request("/v1/messages", BODY)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(response.extensions().get::<Attempt>().unwrap().number(), 2);
    assert_eq!(sim.requests().len(), 2);
}
