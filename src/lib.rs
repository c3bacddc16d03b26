//! Host package for claude-tower's workspace-level `examples/` and `tests/`.
//!
//! Not published. It exists so that `cargo test --workspace` runs the
//! cross-crate end-to-end tests and builds the examples.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
