//! docs later
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod body;
#[cfg(any(feature = "prometheus", feature = "otlp"))]
mod export;
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
#[cfg(feature = "prometheus")]
pub use export::PrometheusExporter;
#[cfg(any(feature = "prometheus", feature = "otlp"))]
pub use export::{MetricsSetupError, resource_from_env};
#[cfg(feature = "otlp")]
pub use export::{otlp_configured, otlp_reader_from_env};
pub use json::DEFAULT_JSON_LIMIT;
pub use layer::{RequestedModel, Usage, UsageLayer};
pub use log::TracingSink;
pub use metrics::MetricsSink;
pub use sse::{DEFAULT_EVENT_LIMIT, SseUsageReader};
pub use stats::ReadStats;

#[cfg(test)]
mod tests;
