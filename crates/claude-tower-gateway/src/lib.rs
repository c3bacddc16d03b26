//! A Claude gateway for Claude Code and the Anthropic SDKs: Anthropic direct
//! and Azure AI Foundry behind one endpoint, built from claude-tower's layers.
//!
//! This crate is both the `claude-tower-gateway` binary and the library it is
//! made of, for embedding or testing in-process:
//!
//! ```sh
//! cargo install --path crates/claude-tower-gateway
//! claude-tower-gateway --help
//! claude-tower-gateway check --config gateway.toml   # validate, print with secrets redacted
//! ```
//!
//! - [`settings`]: flags beside their `CLAUDE_TOWER_*` variables (clap);
//!   [`file`](mod@file): the optional TOML config file; [`config`]: both resolved,
//!   with defaults, into a [`GatewayConfig`](config::GatewayConfig).
//! - [`upstream`]: the routes from the variables Claude Code reads or the
//!   file, or the simulator — failing closed on anything partial.
//! - [`gateway`]: the stack and the router (paths, `/healthz`, `/readyz`,
//!   `/metrics`, `/usage`, the Anthropic-only APIs); [`dispatch`]: Messages
//!   requests to the stack without the router; [`server`]: the accept
//!   loop (HTTP/1 and HTTP/2, timeouts, connection cap); [`tls`]: TLS
//!   termination.
//! - The stack is identity -> usage -> quota -> routes: [`access`] (who may
//!   call, the identity layer when one is configured), [`telemetry`]
//!   (metrics, OTLP, `/usage`), limits from the quota crate.
//!
//! In-process, on the simulator (feature `simulator`, on by default):
//!
//! ```
//! # #[cfg(feature = "simulator")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use claude_tower_gateway::{Gateway, gateway::Mode};
//!
//! // Nothing upstream is set and the listen address is loopback: the simulator.
//! let gateway = Gateway::from_lookup(|name| match name {
//!     "CLAUDE_TOWER_LISTEN" => Some("127.0.0.1:0".to_owned()),
//!     _ => None,
//! })
//! .await?;
//! assert!(matches!(gateway.mode(), Mode::Simulator(_)));
//! let listener = tokio::net::TcpListener::bind(gateway.config().listen).await?;
//! println!("{}", gateway.banner(listener.local_addr()?));
//! // gateway.serve(listener, claude_tower_gateway::shutdown_signal()).await?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "simulator"))]
//! # fn main() {}
//! ```

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod access;
pub mod check;
pub mod config;
pub mod dispatch;
pub mod file;
pub mod gateway;
mod paths;
pub mod routes;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod wrap;

pub use gateway::{Gateway, GatewayError, shutdown_signal};
