//! claude-tower in a `reqwest_middleware::ClientWithMiddleware`, in one line.
//!
//! Against the simulator started in-process: an overloaded primary fails
//! over to Foundry, a rate limit is retried after the wait the server asked
//! for, a 400 is returned at once without touching Foundry, and a broken
//! tool pairing is answered locally. No credentials needed.
//!
//! ```text
//! cargo run -p claude-tower-reqwest --example middleware
//! ```

use claude_tower::prelude::*;
use claude_tower_reqwest::ClaudeMiddleware;
use claude_tower_sim::{Sim, SimConfig};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

const HELLO: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Say hello."}]}"#;
const BROKEN: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[
    {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_gone","content":"42"}]}]}"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::start(SimConfig::default()).await?;

    // The same ClaudeStack and Routes a tower or axum user builds; each
    // route carries its own credential.
    let stack = ClaudeStack::new()
        .route(Route::new(
            "anthropic",
            Endpoint::anthropic_base_url(&sim.anthropic_base_url())?,
            Credential::anthropic_api_key(Secret::new("sk-sim"))?,
        ))
        .route(Route::new(
            "foundry",
            Endpoint::foundry_base_url(&sim.foundry_base_url())?,
            Credential::foundry_api_key(Secret::new("foundry-sim"))?,
        ));
    // The one line: `.with(ClaudeMiddleware::new(stack)?)`.
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(ClaudeMiddleware::new(stack)?)
        .build();

    for (faults, body, what) in [
        ("anthropic=529*10", HELLO, "primary overloaded"),
        ("anthropic=429:ms300,ok", HELLO, "rate limited once"),
        ("anthropic=400", HELLO, "bad request"),
        ("", BROKEN, "broken tool pairing"),
    ] {
        sim.reset();
        sim.set_faults(faults)?;
        send(&client, &sim, body, what).await?;
    }
    Ok(())
}

async fn send(
    client: &ClientWithMiddleware,
    sim: &Sim,
    body: &'static str,
    what: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let response = client
        .post(format!("{}/v1/messages", sim.anthropic_base_url()))
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .map_or_else(|| "answered locally".to_owned(), ToString::to_string);
    let class = response
        .extensions()
        .get::<ClaudeError>()
        .map(|e| e.class().to_string());
    let text = response.text().await?;
    println!("== {what}: {status} (attempts: {report}, class: {class:?})");
    println!("   {}", text.chars().take(160).collect::<String>());
    println!("   upstream requests: {}", sim.requests().len());
    Ok(())
}
