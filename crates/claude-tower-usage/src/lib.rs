//! docs later
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod body;
pub mod future;
mod json;
mod layer;
mod log;
pub mod metrics;
mod payload;
mod sse;
mod stats;
mod watch;

pub use body::UsageBody;
pub use json::DEFAULT_JSON_LIMIT;
pub use layer::{RequestedModel, Usage, UsageLayer};
pub use log::TracingSink;
pub use metrics::MetricsSink;
pub use sse::{DEFAULT_EVENT_LIMIT, SseUsageReader};
pub use stats::ReadStats;

#[cfg(test)]
mod tests;
