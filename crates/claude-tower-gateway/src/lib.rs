//! The reference Claude gateway, built from claude-tower's layers.
//!
//! This is what `cargo run --release --example gateway` runs, and what the
//! end-to-end tests in `tests/` drive in-process. It is an axum app that puts
//! the default stack of the design in front of one or more upstream routes
//! (Anthropic direct, Azure AI Foundry), reading its routes from the same
//! variables Claude Code reads and its own knobs from `CLAUDE_TOWER_*`
//! (see [`config`]). With no upstream credentials at all it starts the
//! simulator in-process behind both routes, so a newcomer sees retries and
//! failover at work on first run.
//!
//! Not published: it is the example application, and the place where the
//! workspace's examples and cross-crate tests live.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod client_auth;
pub mod config;
pub mod gateway;
pub mod routes;

pub use gateway::{Gateway, GatewayError, shutdown_signal};
