//! Ordered route failover, per-route circuit breaking and model-id mapping for Claude.
//!
//! **Not implemented yet.** This crate will hold `FailoverLayer`, the per-route circuit breaker and `ModelMapLayer`.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
