//! The service the server runs for each connection: a `POST` to a Messages
//! path goes straight to the stack; every other request to the axum router.
//!
//! Nearly all of a gateway's traffic is `POST /v1/messages` (or
//! `/anthropic/v1/messages` in Foundry mode). Through the router each such
//! request paid for what only the rare paths need: path matching, the
//! request and response bodies boxed into axum's `Body`, the route's service
//! cloned into a box and its future boxed, a map of URL parameters, and the
//! client's address stored in the request's extensions (which every copy of
//! the request for a retry or a failover then cloned again). [`Dispatch`]
//! compares the path with the four Messages paths and calls the stack with
//! hyper's own body; its future and body (`http_body_util::Either`) are
//! enums over the two ways, so nothing is boxed on that path.
//!
//! The server keeps one service per connection and calls it for each of the
//! connection's requests in turn (`server::Reuse`): [`Dispatch`] is ready
//! when the stack is, and calls it in place. A clone per request would
//! clone the whole stack's service, whose reference counts every connection
//! shares: a dozen atomic increments and decrements on cache lines the
//! other cores keep taking back.
//!
//! The router still serves every path, the Messages paths included (a
//! trailing slash, another method: the 405, and [`Gateway::router`] for
//! embedding), so both ways answer alike; only the fast one is checked by
//! the path and method alone.
//!
//! [`Gateway::router`]: crate::Gateway::router

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::future::RouteFuture;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower::Service;

use crate::gateway::{MESSAGES_PATHS, PREFIXES};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether `path` is one of the Messages paths under one of the prefixes,
/// exactly (no trailing slash: the router rewrites that).
fn is_messages_path(path: &str) -> bool {
    PREFIXES.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| MESSAGES_PATHS.contains(&rest))
    })
}

/// One connection's service: `POST` on a Messages path to `messages`, the
/// rest to `router` with the client's address as axum's [`ConnectInfo`].
#[derive(Clone)]
pub struct Dispatch<S> {
    messages: S,
    router: Router,
    peer: Option<SocketAddr>,
}

impl<S> Dispatch<S> {
    /// Messages requests to `messages`, the rest to `router`.
    pub fn new(messages: S, router: Router) -> Self {
        Self {
            messages,
            router,
            peer: None,
        }
    }

    /// This dispatch for one connection from `peer`: the router's handlers
    /// see it as `ConnectInfo<SocketAddr>`.
    pub fn for_peer(&self, peer: SocketAddr) -> Self
    where
        S: Clone,
    {
        Self {
            peer: Some(peer),
            ..self.clone()
        }
    }
}

impl<S> fmt::Debug for Dispatch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatch")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<S, SB, B> Service<Request<B>> for Dispatch<S>
where
    S: Service<Request<B>, Response = Response<SB>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<DispatchBody<SB>>;
    type Error = Infallible;
    type Future = ResponseFuture<S, B>;

    /// Ready when the stack and the router both are (the router always is).
    /// The server keeps one `Dispatch` per connection and calls it for each
    /// request in turn, so a request does not clone the stack's service.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        ready!(self.messages.poll_ready(cx))?;
        Service::<Request<Body>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let kind = if req.method() == Method::POST && is_messages_path(req.uri().path()) {
            Kind::Messages {
                call: self.messages.call(req),
            }
        } else {
            if let Some(peer) = self.peer {
                req.extensions_mut().insert(ConnectInfo(peer));
            }
            Kind::Router {
                call: self.router.call(req.map(Body::new)),
            }
        };
        ResponseFuture { kind }
    }
}

pin_project! {
    /// Response future of [`Dispatch`]: the stack's or the router's.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        kind: Kind<S, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B>
    where
        S: Service<Request<B>>,
    {
        Messages { #[pin] call: S::Future },
        Router { #[pin] call: RouteFuture<Infallible> },
    }
}

impl<S, SB, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<SB>, Error = Infallible>,
{
    type Output = Result<Response<DispatchBody<SB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Messages { call } => call.poll(cx).map_ok(|res| res.map(Either::Left)),
            KindProj::Router { call } => call.poll(cx).map_ok(|res| res.map(Either::Right)),
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Response body of [`Dispatch`]: the stack's body as it is (`Left`), or
/// axum's (`Right`).
pub type DispatchBody<SB> = Either<SB, Body>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_messages_paths_take_the_fast_way() {
        for path in [
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/anthropic/v1/messages",
            "/anthropic/v1/messages/count_tokens",
        ] {
            assert!(is_messages_path(path), "{path}");
        }
        for path in [
            "/v1/messages/",
            "/v1/messages/batches",
            "/v1/messagesx",
            "/anthropic/v1/messages/",
            "/anthropicv1/messages",
            "/x/v1/messages",
            "/v1/models",
            "/",
            "",
        ] {
            assert!(!is_messages_path(path), "{path}");
        }
    }
}
