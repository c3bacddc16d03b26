//! One error surface for both routes.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod classify;
mod envelope;
mod retry_after;

pub use classify::{TRANSIENT_AUTH_CODE, classify};
pub use retry_after::{MAX_RETRY_AFTER, retry_after};
