//! reqwest transport service and reqwest-middleware adapter for claude-tower.
//!
//! **Not implemented yet.** This crate will hold a tower `Service` over `reqwest::Client` and a `reqwest_middleware::Middleware` adapter.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
