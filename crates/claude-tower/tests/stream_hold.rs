//! An overload inside a stream, before any content, through the default
//! stack: retried on the route, failed over, counted by the breaker; after
//! content, passed through.

use std::time::Duration;

use bytes::Bytes;
use claude_tower::prelude::*;
use claude_tower::stack::ClaudeService;
use claude_tower::transport::{HttpsClient, https_client};
use claude_tower_core::{ClaudeError, Face};
use claude_tower_sim::{Sim, SimConfig, event_names};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;

const HELLO_STREAM: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;

/// Anthropic first, then Foundry, both with fast retries; `hold` for both.
fn stack(sim: &Sim, hold: bool) -> ClaudeService<HttpsClient> {
    let retry = |id: &str| {
        RetryAfterPolicy::builder(id)
            .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
            .no_budget()
            .build()
            .expect("valid retry settings")
    };
    let anthropic = Endpoint::anthropic_base_url(&sim.anthropic_base_url()).unwrap();
    let foundry = Endpoint::foundry_base_url(&sim.foundry_base_url()).unwrap();
    ClaudeStack::new()
        .route(
            Route::new(
                "anthropic",
                anthropic,
                Credential::anthropic_api_key(Secret::new("k")).unwrap(),
            )
            .with_retry(retry("anthropic"))
            .with_stream_hold(hold),
        )
        .route(
            Route::new(
                "foundry",
                foundry,
                Credential::foundry_api_key(Secret::new("k")).unwrap(),
            )
            .with_retry(retry("foundry"))
            .with_stream_hold(hold),
        )
        .build(https_client().expect("TLS set up"))
        .expect("stack builds")
}

/// Streams one request with `faults`; the report, the error if any, the
/// event names (pings left out) and the simulator.
async fn stream(faults: &str, hold: bool) -> (FailoverReport, bool, Vec<String>, Sim) {
    let sim = Sim::start(SimConfig::default().faults(faults))
        .await
        .expect("simulator starts");
    let service = stack(&sim, hold);
    let req = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from_static(HELLO_STREAM.as_bytes())))
        .unwrap();
    let res = service.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let report = res.extensions().get::<FailoverReport>().cloned().unwrap();
    let failed = res.extensions().get::<ClaudeError>().is_some();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let names = event_names(&body);
    if faults.contains("*50") {
        let health = service.breakers().get("anthropic").unwrap();
        assert_eq!(health.consecutive_failures(), 1, "the breaker counted it");
    }
    (report, failed, names, sim)
}

fn assert_one_complete_stream(names: &[String]) {
    assert_eq!(names.first().unwrap(), "message_start", "{names:?}");
    assert_eq!(names.last().unwrap(), "message_stop", "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "message_start").count(), 1);
    assert!(!names.iter().any(|n| n == "error"), "{names:?}");
}

#[tokio::test]
async fn an_early_overload_is_retried_on_the_same_route() {
    let (report, failed, names, sim) = stream("anthropic=stream-error:early", true).await;
    assert!(!failed);
    assert_one_complete_stream(&names);
    assert_eq!(report.to_string(), "anthropic=2");
    assert_eq!(report.served_by().unwrap(), "anthropic");
    assert_eq!(sim.requests().len(), 2);
}

#[tokio::test]
async fn a_route_that_keeps_overloading_early_fails_over() {
    let (report, failed, names, sim) = stream("anthropic=stream-error:early*50", true).await;
    assert!(!failed);
    assert_one_complete_stream(&names);
    assert_eq!(report.served_by().unwrap(), "foundry", "{report}");
    assert_eq!(report.attempts_on("anthropic"), 3, "{report}");
    assert_eq!(report.attempts_on("foundry"), 1, "{report}");
    let foundry = sim
        .requests()
        .into_iter()
        .filter(|r| r.route == Face::Foundry);
    assert_eq!(foundry.count(), 1);
}

#[tokio::test]
async fn an_overload_after_content_passes_through_unretried() {
    let (report, failed, names, sim) = stream("anthropic=stream-error", true).await;
    assert!(!failed, "nothing to decide once content went out");
    assert!(names.contains(&"content_block_delta".to_owned()));
    assert_eq!(names.last().unwrap(), "error");
    assert_eq!(report.to_string(), "anthropic=1");
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn a_route_with_the_hold_off_passes_an_early_overload_through() {
    let (report, _, names, sim) = stream("anthropic=stream-error:early", false).await;
    assert_eq!(names, ["message_start", "error"]);
    assert_eq!(report.to_string(), "anthropic=1");
    assert_eq!(sim.requests().len(), 1);
}
