//! Retry -> Normalize -> hyper-util client -> the simulator, with the
//! simulator's fault scripts, under paused tokio time (the clock jumps over
//! every wait; nothing sleeps for real).

use std::time::Duration;

use claude_tower_core::{Attempt, ClaudeError, ErrorClass, Face, ReplayBody, RetryAfter, RouteId};
use claude_tower_normalize::NormalizeLayer;
use claude_tower_retry::{RetryAfterPolicy, RetryLayer};
use claude_tower_sim::{Sim, SimConfig};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

const BODY: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
const STREAM_BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

fn client() -> Client<HttpConnector, ReplayBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(base: &str, body: &'static str) -> Request<ReplayBody> {
    Request::post(format!("{base}/v1/messages"))
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(ReplayBody::from(body))
        .expect("a valid request")
}

/// A fixed jitter of one half, so backoff waits are exact.
fn policy(route: &str) -> RetryAfterPolicy {
    RetryAfterPolicy::builder(route)
        .with_jitter(|| 0.5)
        .build()
        .expect("valid settings")
}

struct Outcome<B> {
    response: Response<B>,
    waited: Duration,
    attempts: usize,
}

async fn send(
    sim: &Sim,
    face: Face,
    policy: RetryAfterPolicy,
    body: &'static str,
) -> Outcome<impl http_body::Body<Data = bytes::Bytes, Error: std::fmt::Debug>> {
    let (route, base) = match face {
        Face::Anthropic => ("anthropic", sim.anthropic_base_url()),
        _ => ("foundry", sim.foundry_base_url()),
    };
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .layer(NormalizeLayer::new(RouteId::new(route), face))
        .service(client());
    let started = Instant::now();
    let response = service
        .oneshot(request(&base, body))
        .await
        .expect("an answer from the simulator");
    Outcome {
        response,
        waited: started.elapsed(),
        attempts: sim.requests().len(),
    }
}

fn attempt<B>(response: &Response<B>) -> u32 {
    response
        .extensions()
        .get::<Attempt>()
        .map(Attempt::number)
        .expect("the final response carries an Attempt")
}

async fn sim(faults: &str) -> Sim {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    sim.set_faults(faults).expect("a valid fault script");
    sim
}

#[tokio::test(start_paused = true)]
async fn foundry_date_then_503_then_ok_succeeds_on_the_third_attempt() {
    let sim = sim("foundry=429:date+1s,503,ok").await;
    let out = send(&sim, Face::Foundry, policy("foundry"), BODY).await;
    assert_eq!(out.response.status(), StatusCode::OK);
    assert_eq!(out.attempts, 3);
    assert_eq!(attempt(&out.response), 3);
    // The HTTP-date is whole seconds at least 1 s ahead of the wall clock,
    // so the server's wait is between 1 and 2 s; then retry 1's backoff is
    // half of its 1 s window.
    let backoff = Duration::from_millis(500);
    assert!(
        out.waited >= Duration::from_millis(900) + backoff
            && out.waited <= Duration::from_secs(2) + backoff,
        "waited {:?}",
        out.waited
    );
    let steps: Vec<_> = sim.requests().into_iter().map(|r| r.step).collect();
    assert_eq!(steps, ["429:date+1s", "503", "ok"]);
}

#[tokio::test(start_paused = true)]
async fn anthropic_retry_after_seconds_are_honoured_exactly() {
    let sim = sim("anthropic=429:2s,ok").await;
    let out = send(&sim, Face::Anthropic, policy("anthropic"), BODY).await;
    assert_eq!(out.response.status(), StatusCode::OK);
    assert_eq!(out.attempts, 2);
    assert_eq!(out.waited, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn foundry_millisecond_hints_are_honoured_exactly() {
    for (script, wait) in [
        ("foundry=429:ms1500,ok", 1500),
        ("foundry=429:xms1200,ok", 1200),
        ("foundry=429:1.5s,ok", 1500),
    ] {
        let sim = sim(script).await;
        let out = send(&sim, Face::Foundry, policy("foundry"), BODY).await;
        assert_eq!(out.response.status(), StatusCode::OK, "{script}");
        assert_eq!(out.waited, Duration::from_millis(wait), "{script}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_above_the_cap_returns_at_once() {
    let sim = sim("anthropic=429:45s,ok").await;
    let out = send(&sim, Face::Anthropic, policy("anthropic"), BODY).await;
    assert_eq!(out.response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!((out.attempts, out.waited), (1, Duration::ZERO));
    assert_eq!(
        out.response.extensions().get::<RetryAfter>(),
        Some(&RetryAfter::new(Duration::from_secs(45)))
    );
    // The client still sees the route's own answer and its wait.
    assert_eq!(out.response.headers()["retry-after"], "45");
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_never_retried() {
    for (face, script) in [
        (Face::Anthropic, "anthropic=400,ok"),
        (Face::Anthropic, "anthropic=401,ok"),
        (Face::Anthropic, "anthropic=403,ok"),
        (Face::Foundry, "foundry=400,ok"),
        (Face::Foundry, "foundry=401,ok"),
        (Face::Foundry, "foundry=403,ok"),
        (Face::Foundry, "foundry=404:deployment,ok"),
    ] {
        let sim = sim(script).await;
        let out = send(&sim, face, policy("r"), BODY).await;
        assert!(out.response.status().is_client_error(), "{script}");
        assert_eq!(out.attempts, 1, "{script}");
        assert_eq!(out.waited, Duration::ZERO, "{script}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_not_retried() {
    let sim = Sim::start(SimConfig::default().body_limit(16))
        .await
        .expect("sim starts");
    let out = send(&sim, Face::Anthropic, policy("anthropic"), BODY).await;
    assert_eq!(out.response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(out.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn foundry_transient_auth_is_retried() {
    let sim = sim("foundry=transient-auth,ok").await;
    let out = send(&sim, Face::Foundry, policy("foundry"), BODY).await;
    assert_eq!(out.response.status(), StatusCode::OK);
    assert_eq!(out.attempts, 2);
    // No server wait: the first backoff, half of 500 ms.
    assert_eq!(out.waited, Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_is_retried() {
    let sim = sim("anthropic=reset,ok").await;
    let out = send(&sim, Face::Anthropic, policy("anthropic"), BODY).await;
    assert_eq!(out.response.status(), StatusCode::OK);
    assert_eq!(attempt(&out.response), 2);
}

#[tokio::test(start_paused = true)]
async fn attempts_run_out_and_the_last_failure_goes_up() {
    let sim = sim("foundry=503*5").await;
    let out = send(&sim, Face::Foundry, policy("foundry"), BODY).await;
    assert_eq!(out.response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(out.attempts, 3);
    assert_eq!(attempt(&out.response), 3);
    let err = out.response.extensions().get::<ClaudeError>().unwrap();
    assert_eq!(err.class(), ErrorClass::Overloaded);
    // Backoff windows 500 ms and 1 s, jitter one half.
    assert_eq!(out.waited, Duration::from_millis(250 + 500));
}

#[tokio::test(start_paused = true)]
async fn a_streaming_200_is_never_retried() {
    let sim = sim("anthropic=stream-error,ok").await;
    let out = send(&sim, Face::Anthropic, policy("anthropic"), STREAM_BODY).await;
    assert_eq!(out.response.status(), StatusCode::OK);
    let body = out.response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("event: error"), "{text}");
    assert_eq!(sim.requests().len(), 1);
}
