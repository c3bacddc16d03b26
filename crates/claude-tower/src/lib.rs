//! Tower middleware for calling Claude reliably over Anthropic direct and Azure AI Foundry.
//!
//! **Not implemented yet.** This facade will re-export each layer crate behind a feature and offer the `ClaudeStack` builder; today it re-exports the shared vocabulary only.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub use claude_tower_core as core;
