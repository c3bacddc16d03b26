//! A tower retry policy for Claude that honours Retry-After on both routes, with jittered backoff and a budget.
//!
//! **Not implemented yet.** This crate will hold `RetryAfterPolicy` and `RetryLayer`: same-route retries only.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
