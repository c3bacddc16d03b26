//! claude-tower embedded as a user outside the workspace would: the tests
//! under `tests/` each take one road in (axum, hyper, reqwest, a per-route
//! layer) against the simulator, depending on the published crates by path
//! only.
//!
//! The README's Rust blocks are compiled here as doctests, so they cannot
//! drift from the API again.

#![forbid(unsafe_code)]

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
