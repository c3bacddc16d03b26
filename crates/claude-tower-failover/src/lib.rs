//! Ordered route failover, per-route circuit breaking and model-id mapping
//! for Claude.
//!
//! - [`Failover`] / [`FailoverLayer`] ([`failover`]): tries routes in
//!   priority order (with weighted spreading inside a priority tier), moves
//!   on when a route's outcome is failover-worthy, returns anything else at
//!   once, and reports which route served and what each route cost in a
//!   [`FailoverReport`].
//! - A circuit breaker per route ([`breaker`]): skips a route that keeps
//!   failing, or that asked for a wait longer than the retry cap, and probes
//!   it once after the cool-down. [`Breakers::snapshot`] feeds `/healthz`.
//! - [`ModelMap`] / [`ModelMapLayer`] ([`model_map`]): rewrites the request
//!   body's top-level `"model"` to the route's own model id or deployment
//!   name, touching no other byte of the body.
//!
//! In the default stack, Failover sits above the routes and ModelMap inside
//! each route:
//!
//! ```text
//! ReplayBody -> ToolPairing -> Failover -> route k: Retry -> Normalize -> ModelMap -> Auth -> transport
//! ```

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod breaker;
pub mod failover;
pub mod model_map;

pub use breaker::{BreakerConfig, Breakers, CircuitState, RouteHealth};
pub use failover::{Failover, FailoverBuilder, FailoverLayer, FailoverReport};
pub use model_map::{ModelMap, ModelMapLayer, ModelMapping};
