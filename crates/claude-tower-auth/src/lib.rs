//! Endpoint and credential injection for Anthropic direct and Azure AI Foundry (API keys, Entra ID).
//!
//! **Not implemented yet.** This crate will hold the auth layer: it strips inbound credentials, rewrites the URI onto the route's endpoint and injects the route's API key or cached Entra ID token.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
