//! A simulator of Anthropic direct and Azure AI Foundry with fault injection, for tests, benches and demos.
//!
//! **Not implemented yet.** This crate will hold the simulator library and its binary.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
