//! Shared by the tests: the simulator and two routes to it.

#![allow(dead_code)]

use std::time::Duration;

use claude_tower::prelude::*;
use claude_tower_sim::{Sim, SimConfig};

pub const HELLO: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

pub async fn sim() -> Sim {
    Sim::start(
        SimConfig::default()
            .anthropic_key("sk-ant-route")
            .foundry_key("foundry-route-key"),
    )
    .await
    .expect("simulator starts")
}

pub fn fast_retry(id: &str) -> RetryAfterPolicy {
    RetryAfterPolicy::builder(id)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .no_budget()
        .build()
        .expect("valid retry settings")
}

/// The two routes every test uses; built once, handed to each stack.
pub fn routes(sim: &Sim) -> Vec<Route> {
    vec![
        Route::new(
            "anthropic",
            Endpoint::anthropic_base_url(&sim.anthropic_base_url()).unwrap(),
            Credential::anthropic_api_key(Secret::new("sk-ant-route")).unwrap(),
        )
        .with_retry(fast_retry("anthropic")),
        Route::new(
            "foundry",
            Endpoint::foundry_base_url(&sim.foundry_base_url()).unwrap(),
            Credential::foundry_api_key(Secret::new("foundry-route-key")).unwrap(),
        )
        .with_model_map(ModelMapping::new().exact("claude-sonnet-4-5", "sonnet-deployment"))
        .with_retry(fast_retry("foundry")),
    ]
}

pub fn stack_of(routes: Vec<Route>) -> ClaudeStack {
    routes
        .into_iter()
        .fold(ClaudeStack::new(), |stack, route| stack.route(route))
}
