//! The claude-tower gateway: Claude over Anthropic direct and Azure AI
//! Foundry behind one endpoint, with retries, failover, tool-pairing checks
//! and one error surface.
//!
//! ```sh
//! cargo run --release --example gateway
//! ```
//!
//! With no credentials set it runs on the built-in simulator (a fifth of
//! direct-route requests fail, so retries and failover show at once). With
//! `ANTHROPIC_API_KEY` and/or `ANTHROPIC_FOUNDRY_RESOURCE` /
//! `ANTHROPIC_FOUNDRY_BASE_URL` (+ `ANTHROPIC_FOUNDRY_API_KEY`, else Entra ID)
//! it fronts the real routes. Settings: see `claude_tower_gateway::config`.

use std::process::ExitCode;

use claude_tower_gateway::{Gateway, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn")),
        )
        .init();

    let gateway = match Gateway::from_env().await {
        Ok(gateway) => gateway,
        Err(err) => {
            eprintln!("claude-tower gateway: {err}");
            return ExitCode::FAILURE;
        }
    };
    let listen = gateway.config().listen;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("claude-tower gateway: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(listen);
    println!("{}", gateway.banner(bound));
    match gateway.serve(listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("claude-tower gateway: {err}");
            ExitCode::FAILURE
        }
    }
}
