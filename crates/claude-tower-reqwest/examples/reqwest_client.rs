//! A reqwest client as the transport under claude-tower's stack.
//!
//! Two routes, each `Retry -> Normalize -> ReqwestService`, under
//! `ToolPairing -> Failover`, against the simulator started in-process with
//! the primary overloaded: the request fails over to Foundry and its SSE
//! stream is printed as it arrives. No credentials needed.
//!
//! ```text
//! cargo run -p claude-tower-reqwest --example reqwest_client
//! ```

use std::time::Duration;

use claude_tower::failover::{Failover, FailoverReport};
use claude_tower::retry::{RetryAfterPolicy, RetryLayer};
use claude_tower::toolpair::ToolPairingLayer;
use claude_tower_core::{Face, ReplayBody, RouteId};
use claude_tower_normalize::NormalizeLayer;
use claude_tower_reqwest::ReqwestService;
use claude_tower_sim::{Sim, SimConfig};
use http_body_util::BodyExt;
use tower::{Layer, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::start(SimConfig::default()).await?;
    sim.set_faults("anthropic=529*10")?;

    // One client (one connection pool) shared by every route.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let route = |id: &str, base: String, face: Face| -> Result<_, Box<dyn std::error::Error>> {
        let policy = RetryAfterPolicy::builder(id)
            .with_backoff(Duration::from_millis(50), Duration::from_millis(200))
            .build()?;
        Ok(ServiceBuilder::new()
            .layer(RetryLayer::new(policy))
            .layer(NormalizeLayer::new(RouteId::new(id), face))
            .service(ReqwestService::new(client.clone()).with_base_url(base.parse()?)))
    };
    let failover = Failover::new([
        (
            RouteId::new("anthropic"),
            route("anthropic", sim.anthropic_base_url(), Face::Anthropic)?,
        ),
        (
            RouteId::new("foundry"),
            route("foundry", sim.foundry_base_url(), Face::Foundry)?,
        ),
    ]);
    let stack = ToolPairingLayer::reject().layer(failover);

    let request = http::Request::post("/v1/messages?beta=true")
        .header("x-api-key", "sk-sim")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(ReplayBody::from(
            r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,
                "messages":[{"role":"user","content":"Say hello."}]}"#,
        ))?;
    let response = stack.oneshot(request).await?;
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .map(ToString::to_string)
        .unwrap_or_default();
    println!("status {} (attempts: {report})", response.status());

    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            print!("{}", String::from_utf8_lossy(&data));
        }
    }
    for r in sim.requests() {
        println!(
            "sim saw: {:?} {} -> {} ({})",
            r.route, r.path, r.status, r.step
        );
    }
    Ok(())
}
