//! Ordered route failover.
//!
//! [`Failover`] holds an ordered list of routes, each a `(RouteId, service)`
//! where the service is that route's whole stack (Retry -> Normalize ->
//! ModelMap -> Auth -> transport). For each request:
//!
//! 1. The route with the best priority whose circuit breaker admits the
//!    request is tried. Routes of equal priority share requests by weight
//!    ([`FailoverBuilder::weighted_route`]). A route whose breaker is open
//!    is skipped without spending an attempt.
//! 2. Its outcome is classified as the [contracts](claude_tower_core) say: a
//!    response is failed when its extensions hold a [`ClaudeError`]; an
//!    error is classified by the first `ClaudeError` in its source chain, or
//!    as [`ErrorClass::Transport`] when there is none.
//! 3. A success is returned. A failure whose class is not
//!    [`failover_worthy`](claude_tower_core::ErrorClass::failover_worthy) (InvalidRequest,
//!    Auth, Conflict) is returned **at once**: a 400 is the same 400 on every
//!    route, and sending it twice could bill twice. A failover-worthy
//!    failure moves on to the next route.
//! 4. Each route is tried at most once per request (same-route retries are
//!    Retry's job, below this layer).
//!
//! The decision is made on the response head only: a 200 streaming response
//! is returned as it is, its body untouched.
//!
//! # What a route's breaker is told
//!
//! The breaker tracks whether the *route* works, so a failure the request
//! caused never counts against it:
//!
//! | outcome | breaker |
//! |---|---|
//! | a response: success, or a failure no route would answer differently (400, 401, 409) | up |
//! | a response: 404 for the model or deployment the request named (RouteUnavailable) | up (the request still moves on: another route may have the model) |
//! | a response: 429, 5xx, 402, transient auth | down |
//! | an error: transport, timeout | down |
//! | an error the request or this side caused (InvalidRequest, Auth: a path Auth could not move, a token it could not get, a passthrough request without a credential) | nothing; a half-open probe slot is given back |
//! | an error of class RouteUnavailable without a status: the route turned the request away unsent (a passthrough route for the other face's callers) | nothing, and no attempt is recorded: the request moves on as if the breaker were open |
//!
//! One model missing on one route thus never opens that route for the
//! others, and a burst of malformed requests cannot open a healthy route.
//!
//! # The most informative failure
//!
//! When every route fails, one route's own outcome is returned, chosen by:
//!
//! 1. a **response** (the route answered: it carries a real status, the
//!    upstream body, request ids for a support ticket) beats an **error**;
//! 2. among errors, a classified one (timeout, a boxed `ClaudeError` such as
//!    a credential failure) beats a bare [`ErrorClass::Transport`] one,
//!    which beats a route turning the request away unsent (below);
//! 3. on a tie, the route tried first, which is the higher-priority route.
//!
//! So a primary's 529 beats a secondary's connection refusal, and a
//! primary's 529 beats a secondary's 503.
//!
//! # What comes back
//!
//! Every response carries a [`FailoverReport`] extension: the route that
//! answered, if one did, and the attempts spent on each route tried (Retry's
//! [`Attempt`](claude_tower_core::Attempt) from the route's final response or,
//! when the route ended in an error, from the error's
//! [`ClaudeError::attempt`](claude_tower_core::ClaudeError::attempt); 1 if
//! neither has one). When every route ended in an error (connections
//! refused, say) no route answered and
//! [`answered_by`](FailoverReport::answered_by) is `None`. The error type is [`ClaudeError`], so the layers above can
//! render it with [`error_response`](claude_tower_core::error_response): it
//! is the route's own `ClaudeError` (route filled in), and its source is the
//! report, whose source is the route's original error; read the report with
//! [`FailoverReport::from_error`].
//!
//! # Readiness
//!
//! `poll_ready` is always ready, and each attempt calls
//! [`ServiceExt::oneshot`](tower::ServiceExt::oneshot) on a **clone** of its
//! route's service, which drives that clone's `poll_ready` before `call`.
//! Which route a request needs is only known while it is being routed (the
//! breaker state, the weighted roll, and the earlier routes' outcomes
//! decide), so readiness cannot be reserved up front: readying every route
//! would hold capacity (a concurrency slot, a rate-limit token) on routes
//! the request will never use, and one saturated fallback route would stall
//! the healthy primary. This is the clone-then-ready pattern tower's
//! `Steer` docs recommend when the choice is made in `call`. Backpressure
//! therefore shows up as latency inside the response future, and a route's
//! service must be cheap to clone (hyper-util's and reqwest's clients, and
//! tower layers over them, are).
//!
//! The routes are shared by every clone of `Failover` and every in-flight
//! future through one `Arc`, so the future is `Send` when the route service
//! is `Send + Sync`. Routes of different types can be boxed with
//! `tower::util::BoxCloneSyncService`.
//!
//! # Cost on the healthy path
//!
//! No box per request: the future is a state machine holding the route's
//! `Oneshot`. A healthy first route costs one `Arc` clone, one clone of the
//! route service, one clone of the request head (kept in case a later
//! route is needed; skipped when only one route could be tried), two atomic
//! loads on the breaker, and the report's insertion into the extensions.
//!
//! # Example
//!
//! ```
//! use claude_tower_core::{ClaudeError, ErrorClass, ReplayBody, RouteId};
//! use claude_tower_failover::{Failover, FailoverReport};
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Two stand-in routes: the primary is overloaded, the secondary serves.
//! let route = |overloaded: bool| {
//!     service_fn(move |_req: Request<ReplayBody>| async move {
//!         let mut response = Response::new(String::new());
//!         if overloaded {
//!             *response.status_mut() = StatusCode::from_u16(529).unwrap();
//!             response
//!                 .extensions_mut()
//!                 .insert(ClaudeError::new(ErrorClass::Overloaded, "overloaded"));
//!         }
//!         Ok::<_, ClaudeError>(response)
//!     })
//! };
//! let failover = Failover::new([
//!     (RouteId::new("anthropic"), route(true)),
//!     (RouteId::new("foundry"), route(false)),
//! ]);
//!
//! let request = Request::post("/v1/messages").body(ReplayBody::from("{}")).unwrap();
//! let response = failover.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! let report = response.extensions().get::<FailoverReport>().unwrap();
//! assert_eq!(report.served_by().unwrap(), "foundry");
//! assert_eq!(report.to_string(), "anthropic=1, foundry=1");
//! # }
//! ```
//!
//! [`ClaudeError`]: claude_tower_core::ClaudeError
//! [`ErrorClass::Transport`]: claude_tower_core::ErrorClass::Transport
//! [`ErrorClass`]: claude_tower_core::ErrorClass

mod future;
mod report;
mod service;
mod table;

pub use future::ResponseFuture;
pub use report::FailoverReport;
pub use service::{Failover, FailoverBuilder, FailoverLayer};
pub use table::MAX_ROUTES;

#[cfg(test)]
mod tests;
