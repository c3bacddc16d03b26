//! One error surface for both routes: retry hints, error envelopes and request ids.
//!
//! Anthropic direct and Azure AI Foundry fail differently: Anthropic answers
//! `{"type":"error","error":{"type":"overloaded_error",..}}` with a 529 and
//! `retry-after` in seconds; Foundry answers `{"error":{"code":"503",..}}`,
//! sends `Retry-After` as seconds or an HTTP-date (or `retry-after-ms`), and
//! has failures of its own (`DeploymentNotFound`,
//! `invalid_model_endpoint_authentication`). This crate turns both into the
//! shared vocabulary of `claude-tower-core`, so that everything above a route
//! (Retry, Failover) can stay route-agnostic.
//!
//! - [`retry_after`] folds the retry headers into one wait.
//! - [`classify`] turns a status, headers and body into a [`ClaudeError`].
//! - [`transport_error`] turns an inner service's error into a [`ClaudeError`]
//!   of class `Transport` or `Timeout`.
//! - [`NormalizeLayer`] does all of that on every response of one route.
//! - [`hold::StreamHoldLayer`], above Normalize, holds back the start of a
//!   stream until its first content, so that an `event: error` before any
//!   content is classified too and Retry and Failover can act on it.
//!
//! # What [`Normalize`] does to a response
//!
//! - **Success** (below 400): [`RequestIds`] goes into the extensions and
//!   nothing else changes. The body is never polled: an SSE stream passes
//!   through byte for byte, frame for frame.
//! - **Failure**: the body is read up to a bound (64 KiB by default) and
//!   classified; the extensions get the [`ClaudeError`] (route filled in),
//!   its [`RetryAfter`] when the server gave a usable one, and
//!   [`RequestIds`]. The body is handed on as read. A body over the bound is
//!   classified by status alone and passed on unread past what was read; a
//!   body under a `content-encoding` is not read at all. Optionally Azure's
//!   envelope is rewritten into Anthropic's with the message verbatim, and
//!   the retry headers into canonical ones ([`NormalizeLayer`] options); a
//!   body that is not in Azure's envelope is never replaced.
//! - **Either**: the route's [`RouteId`] and [`Face`] go into the
//!   extensions, so a layer further out (usage, metrics) knows which route
//!   answered without a route table.
//! - **Transport error**: `Err(ClaudeError)` with class `Transport` or
//!   `Timeout`, found by walking the error's source chain; an error that
//!   already is (or boxes) a [`ClaudeError`] passes through, with the route
//!   filled in when missing.
//!
//! A failed upstream answer is an `Ok` response, not an `Err`: the client
//! should still see the route's own answer when nothing better can be done,
//! and Retry and Failover decide from the extension.
//!
//! Each response logs one `tracing` event with the route, status, class and
//! request ids: at `debug` for a success, `warn` for a failure.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use claude_tower_core::{ClaudeError, ErrorClass, Face, RequestIds, RouteId};
//! use claude_tower_normalize::NormalizeLayer;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A Foundry route whose deployment does not exist.
//! let route = service_fn(|_req: Request<Full<Bytes>>| async {
//!     let body = r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#;
//!     let res = Response::builder()
//!         .status(StatusCode::NOT_FOUND)
//!         .header("apim-request-id", "5b1c")
//!         .body(Full::new(Bytes::from(body)))
//!         .unwrap();
//!     Ok::<_, std::io::Error>(res)
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(NormalizeLayer::new(RouteId::new("foundry"), Face::Foundry).with_rewrite_envelope(true))
//!     .service(route);
//!
//! let res = svc.oneshot(Request::new(Full::new(Bytes::new()))).await.unwrap();
//! let err = res.extensions().get::<ClaudeError>().unwrap();
//! assert_eq!(err.class(), ErrorClass::RouteUnavailable);
//! assert!(err.failover_worthy() && !err.retryable());
//! assert_eq!(err.route().unwrap(), "foundry");
//! assert_eq!(res.extensions().get::<RequestIds>().unwrap().apim_request_id(), Some("5b1c"));
//!
//! // An Anthropic SDK client reading this body raises NotFoundError.
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["error"]["type"], "not_found_error");
//! assert_eq!(
//!     json["error"]["message"],
//!     "The API deployment for this resource does not exist.",
//! );
//! # }
//! ```
//!
//! # Features
//!
//! - `hyper` (default): recognise `hyper` and `hyper-util` client errors
//!   (timeouts, connections closed before a response, connect failures).
//!   Without it, transport errors are still classified from the
//!   `std::io::Error` kinds and `tower` timeouts in their chain.
//!
//! [`ClaudeError`]: claude_tower_core::ClaudeError
//! [`RetryAfter`]: claude_tower_core::RetryAfter
//! [`RequestIds`]: claude_tower_core::RequestIds
//! [`RouteId`]: claude_tower_core::RouteId
//! [`Face`]: claude_tower_core::Face

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod body;
mod classify;
mod error_body;
pub mod future;
pub mod hold;
mod layer;
mod retry_after;
mod transport;

pub use body::NormalizeBody;
pub use classify::{TRANSIENT_AUTH_CODE, classify};
pub use layer::{DEFAULT_ERROR_BODY_LIMIT, Normalize, NormalizeLayer};
pub use retry_after::{MAX_RETRY_AFTER, retry_after};
pub use transport::transport_error;

#[cfg(test)]
mod tests;
