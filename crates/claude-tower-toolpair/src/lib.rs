//! Validation and repair of tool_use / tool_result pairing in Messages API requests.
//!
//! **Not implemented yet.** This crate will hold `validate`, `repair` and `ToolPairingLayer`.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
