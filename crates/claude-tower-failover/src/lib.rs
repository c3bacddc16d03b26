//! Ordered route failover and per-route circuit breaking for Claude, and the
//! layer that answers what failover could not serve.
//!
//! - [`Failover`] / [`FailoverLayer`] ([`failover`]): tries routes in
//!   priority order (with weighted spreading inside a priority tier), moves
//!   on when a route's outcome is failover-worthy, returns anything else at
//!   once, and reports which route served and what each route cost in a
//!   [`FailoverReport`].
//! - A circuit breaker per route ([`breaker`]): skips a route that keeps
//!   failing, or that asked for a wait longer than the retry cap, and probes
//!   it once after the cool-down. [`Breakers::snapshot`] feeds `/healthz`.
//! - [`ErrorEnvelope`] / [`ErrorEnvelopeLayer`] ([`answer`]): turns
//!   Failover's `Err(ClaudeError)` (no route answered at all) into an
//!   Anthropic-shaped error response, so the service above is infallible.
//!
//! In the default stack (`claude-tower`'s `ClaudeStack`), Failover sits above
//! the routes:
//!
//! ```text
//! Replay -> ToolPairing -> ErrorEnvelope -> Failover -> route k: Retry -> Normalize -> ModelMap -> Auth -> transport
//! ```
//!
//! Per-route model-id mapping (`ModelMapLayer`) lives in
//! `claude-tower-toolpair`, beside the JSON scanner it uses.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod answer;
pub mod breaker;
pub mod failover;

pub use answer::{ErrorEnvelope, ErrorEnvelopeLayer};
pub use breaker::{BreakerConfig, Breakers, CircuitState, RouteHealth};
pub use failover::{Failover, FailoverBuilder, FailoverLayer, FailoverReport};
