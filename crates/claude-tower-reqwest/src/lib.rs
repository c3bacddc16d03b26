//! reqwest for claude-tower: a transport service and a
//! `reqwest_middleware` adapter.
//!
//! Two ways to put claude-tower in front of a `reqwest` client:
//!
//! - [`ReqwestService`]: a `reqwest::Client` as a tower
//!   `Service<http::Request<ReplayBody>>`, the transport at the bottom of a
//!   claude-tower route (Retry -> Normalize -> ModelMap -> Auth ->
//!   **transport**), for stacks built with tower.
//! - [`ClaudeMiddleware`]: the stack a `claude_tower::stack::ClaudeStack`
//!   describes, as a `reqwest_middleware::Middleware`, for teams already on
//!   `ClientWithMiddleware`: one `.with(...)` line. See the [`middleware`]
//!   module for the whole story.
//!
//! # Why this crate depends on `claude-tower`, not the other way round
//!
//! The stack (which layers, in which order, with which defaults, how many
//! routes) is assembled in exactly one place: `claude-tower`'s `ClaudeStack`.
//! This crate supplies what is reqwest-specific, the transports, and builds
//! its middleware from a `ClaudeStack` and its `Route`s, so a route
//! configured for the hyper transport configures the middleware too, and a
//! layer added to the stack (the stream hold-back, usage) reaches reqwest
//! users without a second assembly. A small shared crate would have done
//! the same at the price of one more crate to version; the facade with
//! `default-features = false, features = ["stack"]` pulls nothing this crate
//! did not already need (no hyper client, no Azure SDK). The facade in turn
//! no longer re-exports this crate: that would be a cycle.
//!
//! ```
//! use claude_tower::normalize::NormalizeLayer;
//! use claude_tower::retry::{RetryAfterPolicy, RetryLayer};
//! use claude_tower_core::{Face, ReplayBody, RouteId};
//! use claude_tower_reqwest::ReqwestService;
//! use claude_tower_sim::{Sim, SimConfig};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Sim::start(SimConfig::default()).await?;
//! sim.set_faults("anthropic=503,ok")?;
//!
//! let route = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryAfterPolicy::new("anthropic")))
//!     .layer(NormalizeLayer::new(RouteId::new("anthropic"), Face::Anthropic))
//!     .service(ReqwestService::new(reqwest::Client::new()));
//!
//! let request = http::Request::post(format!("{}/v1/messages", sim.anthropic_base_url()))
//!     .header("x-api-key", "sk-test")
//!     .header("anthropic-version", "2023-06-01")
//!     .body(ReplayBody::from(r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#))?;
//! let response = route.oneshot(request).await?;
//! assert_eq!(response.status(), 200); // the 503 was retried
//! assert_eq!(sim.requests().len(), 2);
//! # Ok(()) }
//! ```
//!
//! # TLS
//!
//! The default features build reqwest with rustls (aws-lc-rs) and HTTP/2;
//! OpenSSL is never pulled in. With `default-features = false`, bring a
//! `reqwest::Client` with the TLS of your choice.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod convert;
pub mod middleware;
mod service;

pub use middleware::ClaudeMiddleware;
pub use service::{ReqwestService, ResponseFuture};

/// A URL for a log line: scheme, host, port and path, without user
/// information or query (either may carry a credential).
pub(crate) fn redacted_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}
