//! A tower retry policy for Claude that honours Retry-After on both routes,
//! with jittered backoff and a budget.
//!
//! [`RetryAfterPolicy`] implements [`tower::retry::Policy`] for
//! `http::Request<B>` with a [replayable](ReplayableBody) body. It retries
//! on the *same* route only; moving to another route is
//! `claude-tower-failover`'s job, one layer up. Put it above
//! `claude-tower-normalize`, which classifies every answer into a
//! [`ClaudeError`](claude_tower_core::ClaudeError) in the response
//! extensions:
//!
//! ```
//! use bytes::Bytes;
//! use claude_tower_core::{ClaudeError, ErrorClass, ReplayBody, RetryAfter};
//! use claude_tower_retry::{Attempt, RetryAfterPolicy, RetryLayer};
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // Stands in for Normalize over a route that is rate limited once.
//! let calls = std::sync::Arc::new(AtomicU32::new(0));
//! let route = tower::service_fn(move |_req: Request<ReplayBody>| {
//!     let n = calls.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         let mut response = Response::new(Bytes::new());
//!         if n == 0 {
//!             *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
//!             response.extensions_mut().insert(
//!                 ClaudeError::new(ErrorClass::RateLimited, "slow down")
//!                     .with_retry_after(RetryAfter::new(Duration::from_secs(2))),
//!             );
//!         }
//!         Ok::<_, Infallible>(response)
//!     }
//! });
//!
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryAfterPolicy::new("anthropic")))
//!     .service(route);
//!
//! let started = tokio::time::Instant::now();
//! let response = service.oneshot(Request::new(ReplayBody::from("{}"))).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(started.elapsed(), Duration::from_secs(2)); // exactly what the server asked
//! assert_eq!(response.extensions().get::<Attempt>().unwrap().number(), 2);
//! # }
//! ```
//!
//! # What is retried
//!
//! The decision is made from the attempt's outcome alone:
//!
//! - A response without a `ClaudeError` is a success and is returned. The
//!   decision is made on the response head, so a streaming 200 is never
//!   retried for what happens on its body after the head. (With
//!   `claude-tower-normalize`'s `StreamHoldLayer` below this policy, the
//!   head of a stream waits for its first content event, and a stream whose
//!   `event: error` comes before it arrives as a 200 *with* a `ClaudeError`:
//!   it is retried like any other failure, since the status is not looked at.)
//! - A response with a `ClaudeError` is retried when
//!   [`ClaudeError::retryable`](claude_tower_core::ClaudeError::retryable)
//!   says so: the class table of
//!   [`ErrorClass`](claude_tower_core::ErrorClass) (429, 529/503, 5xx,
//!   timeouts, transport failures, Foundry's transient auth blip and 409 are
//!   retryable; 400, 401, 403, 404-deployment, 413 and 422 are not),
//!   overridden by the server's `x-should-retry` header when it sent one.
//! - An error is searched through its source chain for a `ClaudeError`
//!   (see [`ErrorSource`]); an error without one counts as a transport
//!   failure, which is retryable.
//!
//! # How long to wait
//!
//! When the server named a wait (Normalize folds `retry-after-ms`,
//! `x-ms-retry-after-ms` and `retry-after` seconds or HTTP-date into one
//! [`RetryAfter`](claude_tower_core::RetryAfter)), the policy waits exactly
//! that long. Otherwise it backs off with full jitter: retry `n` (from 0)
//! waits a uniform time in `[0, min(cap, base * 2^n)]`, 500 ms and 8 s by
//! default, the range the official SDKs use. Full jitter spreads a crowd of
//! clients that failed together over the whole window instead of bunching
//! them at its edges.
//!
//! ## Why Retry-After is capped, and why over the cap means "not here"
//!
//! A server that asks for 60 s is saying this route will not serve the
//! request for a minute. Waiting that out holds a connection, a task and a
//! user for a minute, and a client that waits a shorter time than asked is
//! only burning rate limit. So the policy honours a server wait exactly, up
//! to `max_retry_after` (30 s by default), and above it does not retry on
//! this route at all: it returns the failure at once, with its `ClaudeError`
//! and `RetryAfter` intact, so that a failover layer above can try another
//! route now, and a caller without one sees the wait the server asked for.
//!
//! # Limits
//!
//! - `max_attempts` (3 by default) counts every send, the first included.
//! - A per-request `deadline` (120 s by default) counts from the first send
//!   and includes every wait; a wait that would end past it is not started.
//! - A retry budget ([`TpsBudget`]): every request deposits, every retry
//!   withdraws; by default 20 % of the last 10 s of requests may be retried,
//!   plus about one retry per second whatever the traffic.
//!
//! ## Why a budget, and not only a maximum number of attempts
//!
//! `max_attempts` bounds the retries of one request, not of the whole
//! client. When a route is down every request fails, and three attempts
//! each triple the load on an upstream that is already failing: the retry
//! storm keeps it down. A budget bounds retries as a share of recent
//! traffic, so a healthy route with a rare blip gets its retry, and a route
//! that is failing everything gets a trickle of retries and fast failures
//! that a failover layer can act on. (This is the reasoning of tower's own
//! `retry::budget` module and of Finagle, where the idea comes from.)
//!
//! # Bodies that cannot be replayed
//!
//! A retry sends the request again, so the body must be readable twice.
//! Bodies are replayed through [`ReplayableBody`], which core's
//! [`ReplayBody`](claude_tower_core::ReplayBody) and `http_body_util`'s
//! `Full` and `Empty` implement. A body type without the trait does not
//! compile into the stack (buffer it first); a body that answers `None` at
//! run time is sent once, not retried, and the policy says so in a `DEBUG`
//! event.
//!
//! # What it records
//!
//! Each re-sent request carries an [`Attempt`] extension (`number` from 2),
//! and the final response carries the [`Attempt`] that produced it, so a
//! failover layer can count attempts per route. The first send goes out as
//! the caller made it (tower's `Retry` hands the original request to the
//! inner service; the policy only sees a copy), so no `Attempt` there means
//! attempt 1. An `Err` outcome carries it on the error instead
//! ([`ClaudeError::attempt`](claude_tower_core::ClaudeError::attempt), through
//! [`ErrorSource::record_attempt`]), so a route that was refused three times
//! counts three attempts. Each retry emits a `DEBUG`
//! tracing event with `route`, `attempt`, `class`, `wait_ms` and
//! `server_wait` (whether the wait came from the server); giving up on a
//! retryable failure emits one with the reason.
//!
//! # Cost
//!
//! Besides the request clone that tower's `Retry` needs to send a request
//! again, the policy costs a reference count, a clock read, a budget deposit
//! and the final response's [`Attempt`] extension per request; the waits are
//! tokio timers, not boxed futures.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod body;
mod config;
pub mod future;
mod jitter;
mod outcome;
mod policy;

pub use body::ReplayableBody;
pub use claude_tower_core::Attempt;
pub use config::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, DEFAULT_BUDGET_MIN_PER_SEC,
    DEFAULT_BUDGET_RETRY_PERCENT, DEFAULT_BUDGET_TTL, DEFAULT_DEADLINE, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_AFTER, InvalidRetryConfig, RetryAfterPolicyBuilder,
};
pub use jitter::{FastrandJitter, Jitter};
pub use outcome::ErrorSource;
pub use policy::RetryAfterPolicy;
pub use tower::retry::budget::TpsBudget;

/// tower's retry layer with a [`RetryAfterPolicy`]:
/// `ServiceBuilder::new().layer(RetryLayer::new(policy))`.
pub type RetryLayer = tower::retry::RetryLayer<RetryAfterPolicy>;

/// tower's retry service with a [`RetryAfterPolicy`] around `S`.
pub type Retry<S> = tower::retry::Retry<RetryAfterPolicy, S>;

#[cfg(test)]
mod tests;
