//! (c) The reqwest middleware built from the same `Route`s as the facade's
//! hyper stack: one builder, one set of defaults.

mod common;

use bytes::Bytes;
use claude_tower::prelude::*;
use claude_tower::transport::https_client;
use claude_tower_reqwest::ClaudeMiddleware;
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;

#[tokio::test]
async fn the_same_routes_serve_through_hyper_and_through_reqwest() {
    let sim = common::sim().await;
    sim.set_faults("anthropic=529*10").unwrap();
    let routes = common::routes(&sim);

    let tower_stack = common::stack_of(routes.clone())
        .build(https_client().unwrap())
        .unwrap();
    let res = tower_stack
        .oneshot(
            Request::post("/v1/messages")
                .header("anthropic-version", "2023-06-01")
                .body(Full::new(Bytes::from_static(common::HELLO.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let via_tower = res.extensions().get::<FailoverReport>().cloned().unwrap();

    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(ClaudeMiddleware::new(common::stack_of(routes)).unwrap())
        .build();
    let res = client
        .post(format!("{}/v1/messages", sim.anthropic_base_url()))
        .header("anthropic-version", "2023-06-01")
        .body(common::HELLO)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let via_reqwest = res.extensions().get::<FailoverReport>().cloned().unwrap();

    // Same routes, same defaults: the same decisions.
    assert_eq!(via_tower.to_string(), via_reqwest.to_string());
    assert_eq!(via_reqwest.served_by().unwrap(), "foundry");
    let models: Vec<_> = sim
        .requests()
        .into_iter()
        .filter_map(|r| r.model)
        .filter(|m| m == "sonnet-deployment")
        .collect();
    assert_eq!(models.len(), 2, "Foundry's model name on both roads");
}
