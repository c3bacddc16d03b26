//! One error surface for both routes: retry hints, error envelopes and request ids.
//!
//! **Not implemented yet.** This crate will hold `retry_after`, `classify` and `NormalizeLayer`, which attach `ClaudeError`, `RetryAfter` and `RequestIds` to every response.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
