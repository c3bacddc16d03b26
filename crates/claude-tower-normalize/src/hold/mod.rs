//! Hold back the start of a stream, so that an overload inside it, before any
//! content, is retried or failed over like a 529.
//!
//! Anthropic answers a streaming request with `200` at once and reports an
//! overload later, inside the stream: `message_start`, maybe a `ping`, then
//! `event: error` with `overloaded_error` (or `api_error`), before a single
//! token. By then the `200` has gone out; Retry and Failover decided on it
//! and returned it, and the client sees a failed turn that the gateway
//! existed to spare it.
//!
//! [`StreamHoldLayer`] sits in each route's stack between Retry and
//! Normalize (`Retry -> StreamHold -> Normalize -> ModelMap -> Auth`). For a
//! successful `text/event-stream` response it does not resolve the
//! response future at once: it reads the stream's first events and keeps
//! them, until one of these happens:
//!
//! - **The first content arrives**: an `event:` line naming anything other
//!   than `message_start`, `ping` or `error`, normally
//!   `content_block_start`. The response resolves with a [`HoldBody`] that
//!   yields the held frames in the order they came, then the rest of the
//!   upstream body untouched, frame for frame.
//! - **An `event: error` ends** while nothing has been released. The error's
//!   data is classified like the body of an HTTP error
//!   (`overloaded_error` -> [`Overloaded`](claude_tower_core::ErrorClass::Overloaded),
//!   `api_error` -> [`Server`](claude_tower_core::ErrorClass::Server),
//!   `rate_limit_error` -> [`RateLimited`](claude_tower_core::ErrorClass::RateLimited), ...)
//!   and the response resolves with that [`ClaudeError`] in its extensions
//!   and, as its body, what was held and the rest of the upstream body.
//!   Retry and Failover decide from the extension, never from the status,
//!   so they treat it exactly like a 529 or a 500 from this route: retry
//!   with backoff, count it against the breaker, fail over. If they give
//!   up, the client gets exactly what upstream sent.
//! - **A bound is reached**: the bytes held reach the byte limit (64 KiB by
//!   default, checked per frame) or the time limit passes (10 s by default,
//!   counted from the response head). What was held is released as for
//!   content; an error after that passes through as it always did.
//! - **The body ends**: what was held is released, then the end. An error
//!   event cut short by the end still counts as an error.
//! - **The body fails** (a reset, a connection closed mid-body) while
//!   nothing has been released: the route failed to answer, as if the
//!   connection had closed before a response, so the response gets a
//!   [`Transport`](claude_tower_core::ErrorClass::Transport)
//!   [`ClaudeError`] and, as its body, what was held, then the failure.
//!
//! Everything else passes at once with no work beyond a header check:
//! non-streaming responses, failures (Normalize already classified them),
//! transport errors, and every response when the layer is
//! [turned off](StreamHoldLayer::with_enabled).
//!
//! # Why hold only until the first content
//!
//! The preamble (`message_start`, `ping`) carries nothing a user waits for:
//! no token. Holding it back until the first content event costs nothing in
//! time to first token, because the content event is released the moment
//! its `event:` line arrives, in the frame it arrived in. Once content has
//! gone out, a client has acted on it (printed text, started a tool call),
//! and another attempt would produce different content: there is no clean
//! way to splice two answers, so from then on an error passes through as it
//! does today, and the client's own retry takes over. Holding longer would
//! only add latency for no failure that could still be hidden.
//!
//! # Why a time bound
//!
//! Time to first token grows with the prompt: a long context can take tens
//! of seconds before the first content event. Without a bound, a client
//! would see no response head for all that time, and could not tell a slow
//! model from a dead gateway; anything with a header timeout (a load
//! balancer, an SDK, the gateway's own deadline on the response head) would
//! give up. So a client sees its `message_start` within the first content
//! or 10 s, whichever comes first; an overload after that passes through,
//! which is no worse than without the layer. The byte bound is for memory:
//! a real preamble is well under 1 KiB, so only an upstream misbehaving
//! (pings without end) gets near 64 KiB.
//!
//! # Why the HTTP classification table
//!
//! An `overloaded_error` inside a stream is the same condition as a 529:
//! the route is out of capacity right now. Classifying it with the very
//! table that classifies error bodies (the one behind
//! [`classify`](crate::classify)) means one decision for one condition: the
//! same retry, the same breaker, the same failover, and a change to the
//! table changes both. The [`ClaudeError`]'s status is the one the error's
//! type stands for (the class's
//! [`default_status`](claude_tower_core::ErrorClass::default_status): 503 for
//! `overloaded_error`, 500 for `api_error` and anything unknown), since the
//! stream's own `200` says nothing about the failure.
//!
//! # Memory and cost
//!
//! Per held stream: the frames held, fewer than the byte limit plus one
//! frame (hyper's frames are bounded by its read buffer, 64 KiB with
//! claude-tower's transport); the data of an error event, copied for
//! classification up to 64 KiB and only for an error event; and a fixed
//! scanner of a few dozen bytes. With the defaults that is under 192 KiB
//! in the worst case and about the size of the preamble (under 1 KiB) in
//! practice. The SSE reader is incremental (a chunk may end anywhere, even
//! between `\r` and `\n`) and keeps no copy of what it reads. Once the hold
//! ends, nothing more is read or kept: the body costs one branch per frame.
//! A held stream costs a tokio timer; a response that is not held costs a
//! header lookup.
//!
//! The response body must be `Unpin` (it is read here, then handed on):
//! hyper's `Incoming`, reqwest's `Body` and [`NormalizeBody`](crate::NormalizeBody)
//! over either are; `Pin<Box<B>>` makes any body so. The layer needs a
//! tokio runtime with the time driver for held streams.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use claude_tower_core::{Attempt, ClaudeError, Face, ReplayBody, RouteId};
//! use claude_tower_normalize::hold::StreamHoldLayer;
//! use claude_tower_retry::{RetryAfterPolicy, RetryLayer};
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! const START: &str = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n";
//! const OVERLOADED: &str = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
//! const CONTENT: &str = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0}\n\n";
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // Stands in for Normalize over a route whose first stream is overloaded
//! // after the 200, before any content.
//! let calls = Arc::new(AtomicU32::new(0));
//! let route = service_fn(move |_req: Request<ReplayBody>| {
//!     let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
//!     async move {
//!         let sse = if first { format!("{START}{OVERLOADED}") } else { format!("{START}{CONTENT}") };
//!         let res = Response::builder()
//!             .header("content-type", "text/event-stream")
//!             .body(Full::new(Bytes::from(sse)))
//!             .unwrap();
//!         Ok::<_, ClaudeError>(res)
//!     }
//! });
//!
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryAfterPolicy::new("anthropic")))
//!     .layer(StreamHoldLayer::new(RouteId::new("anthropic"), Face::Anthropic))
//!     .service(route);
//!
//! let res = service.oneshot(Request::new(ReplayBody::from("{}"))).await.unwrap();
//! // The overloaded stream was retried; the client sees only the second one.
//! assert_eq!(res.extensions().get::<Attempt>().unwrap().number(), 2);
//! assert!(res.extensions().get::<ClaudeError>().is_none());
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, format!("{START}{CONTENT}"));
//! # }
//! ```
//!
//! [`ClaudeError`]: claude_tower_core::ClaudeError

mod body;
pub mod future;
mod layer;
mod scan;

pub use body::HoldBody;
pub use layer::{DEFAULT_HOLD_BYTE_LIMIT, DEFAULT_HOLD_TIME_LIMIT, StreamHold, StreamHoldLayer};

#[cfg(test)]
mod tests;
