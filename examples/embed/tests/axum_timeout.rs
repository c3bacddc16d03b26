//! (a) `ClaudeService` mounted in an axum `Router` under tower-http's
//! `TimeoutLayer` (which needs the response body to implement `Default`).

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use claude_tower::transport::https_client;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

fn post() -> Request<Body> {
    Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Body::from(common::HELLO))
        .unwrap()
}

#[tokio::test]
async fn claude_service_serves_under_tower_http_timeout() {
    let sim = common::sim().await;
    let claude = common::stack_of(common::routes(&sim))
        .with_report_headers(true)
        .build(https_client().unwrap())
        .unwrap();
    let app =
        Router::new()
            .route_service("/v1/messages", claude)
            .layer(TimeoutLayer::with_status_code(
                StatusCode::GATEWAY_TIMEOUT,
                Duration::from_millis(300),
            ));

    let res = app.clone().oneshot(post()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-claude-tower-route"], "anthropic");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["type"], "message");

    // Slower than the timeout: tower-http answers with an empty body.
    sim.set_faults("anthropic=delay:5s").unwrap();
    let res = app.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
}
