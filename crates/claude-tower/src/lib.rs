//! Tower middleware for calling Claude reliably over Anthropic direct and
//! Azure AI Foundry.
//!
//! This facade re-exports each layer crate behind a feature of the same name
//! (all on by default) and adds the pieces that glue them into the default
//! stack of the design:
//!
//! - [`replay`]: buffer the request body once so retry and failover can resend it;
//! - [`transport`]: the default hyper-util + rustls client (feature `transport`).
//!
//! Take one layer alone by depending on its crate (`claude-tower-retry`,
//! `claude-tower-normalize`, ...); nothing here is needed for that.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod replay;
#[cfg(feature = "transport")]
pub mod transport;

/// The shared vocabulary: routes, faces, error classes, `ClaudeError`.
pub use claude_tower_core as core;
