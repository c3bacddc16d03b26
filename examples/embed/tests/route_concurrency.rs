//! (d) A per-route `tower::limit::ConcurrencyLimitLayer`.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use claude_tower::prelude::*;
use claude_tower::transport::https_client;
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;
use tower::limit::ConcurrencyLimitLayer;

#[tokio::test]
async fn a_route_with_a_concurrency_limit_of_one_sends_one_at_a_time() {
    let sim = common::sim().await;
    sim.set_faults("anthropic=delay:300ms,delay:300ms").unwrap();
    let mut routes = common::routes(&sim);
    routes.truncate(1);
    let limited = routes.remove(0).layer(ConcurrencyLimitLayer::new(1));
    assert_eq!(limited.layers(), 1);
    let claude = ClaudeStack::new()
        .route(limited)
        .build(https_client().unwrap())
        .unwrap();

    let post = || {
        Request::post("/v1/messages")
            .header("anthropic-version", "2023-06-01")
            .body(Full::new(Bytes::from_static(common::HELLO.as_bytes())))
            .unwrap()
    };
    let started = Instant::now();
    let (a, b) = tokio::join!(
        claude.clone().oneshot(post()),
        claude.clone().oneshot(post())
    );
    assert_eq!(a.unwrap().status(), StatusCode::OK);
    assert_eq!(b.unwrap().status(), StatusCode::OK);
    // Two 300 ms answers, one after the other (the limit is shared by clones).
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(sim.requests().len(), 2);
}
