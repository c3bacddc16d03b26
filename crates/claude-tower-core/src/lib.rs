//! The shared vocabulary of claude-tower.
//!
//! Every layer in the claude-tower family speaks these types, so that a
//! response classified by `claude-tower-normalize` can be acted on by
//! `claude-tower-retry` and `claude-tower-failover` without either of them
//! knowing which route answered:
//!
//! - [`RouteId`]: a route's name (`"anthropic"`, `"foundry-eastus2"`).
//! - [`Face`]: which error surface a route speaks (Anthropic's or Azure's).
//! - [`RetryAfter`]: the wait a server asked for, already folded from its headers.
//! - [`ErrorClass`]: what kind of failure a response is, with two separate
//!   answers: [`retryable`](ErrorClass::retryable) (try the same route again)
//!   and [`failover_worthy`](ErrorClass::failover_worthy) (move to another route).
//! - [`ClaudeError`]: a classified failure, with everything a log line or a
//!   support ticket needs.
//! - [`RequestIds`]: every request id either platform hands out.
//! - [`Attempt`]: which attempt on which route produced a response.
//! - [`ReplayBody`]: a request body buffered once, cheap to clone, so retry
//!   and failover can send it again; [`ReplayLayer`] ([`replay`]) makes one
//!   from any inbound body (413 over the limit, after reading the rest so
//!   the client can read the answer); [`BufferedBody`] is what the layers
//!   that read request bodies accept.
//! - [`error_response`]: renders any [`ClaudeError`] as Anthropic's error
//!   envelope; every layer that answers locally uses it.
//! - [`ResponseBody`]: the inner service's body or a small local one; the
//!   body of every layer that can answer without calling inward.
//! - [`Caller`]: who is calling, set by an identity layer.
//! - [`usage`]: [`TokenUsage`], the per-request [`UsageRecord`], the
//!   [`UsageSink`] trait and the [`UsageHook`] a quota settles through.
//!
//! This crate does no I/O (the replay layer reads the body it is given, and
//! uses tokio's timer to bound how long it drains one).
//!
//! # Classify, then decide
//!
//! Classification ("what kind of failure is this?") and policy ("what do we
//! do about it?") are kept apart, as in `tower-http`'s `classify` module.
//! The class table is fixed here; the policies live in the layers.
//!
//! ```
//! use claude_tower_core::{ClaudeError, ErrorClass, RetryAfter, RouteId, error_response};
//! use http::StatusCode;
//! use std::time::Duration;
//!
//! let err = ClaudeError::new(ErrorClass::RateLimited, "slow down")
//!     .with_route(RouteId::new("foundry"))
//!     .with_status(StatusCode::TOO_MANY_REQUESTS)
//!     .with_retry_after(RetryAfter::new(Duration::from_millis(1500)));
//!
//! assert!(err.class().retryable());
//! assert!(err.class().failover_worthy());
//!
//! let response = error_response::<bytes::Bytes>(&err);
//! assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(response.headers()["retry-after"], "2");
//! let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
//! assert_eq!(json["error"]["type"], "rate_limit_error");
//! ```

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod attempt;
mod body;
mod caller;
mod class;
mod error;
mod face;
pub mod headers;
mod render;
pub mod replay;
mod request_ids;
mod response_body;
mod retry_after;
mod route;
pub mod usage;

pub use attempt::Attempt;
pub use body::{BufferError, BufferedBody, DEFAULT_REQUEST_BODY_LIMIT, ReplayBody};
pub use caller::{AuthMethod, Caller};
pub use class::ErrorClass;
pub use error::ClaudeError;
pub use face::Face;
pub use render::{envelope_json, error_response};
pub use replay::{Replay, ReplayLayer};
pub use request_ids::RequestIds;
pub use response_body::ResponseBody;
pub use retry_after::RetryAfter;
pub use route::RouteId;
pub use usage::{RequestedModel, TokenUsage, UsageHook, UsageRecord, UsageSink};
