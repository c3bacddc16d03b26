//! [`ResponseFuture`], the future of [`Auth`](crate::Auth).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use claude_tower_core::ClaudeError;
use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::BoxError;

#[cfg(feature = "entra")]
pub(crate) use crate::cache::Ticket;

/// Without Entra ID there are no bearer tokens and so no tickets.
#[cfg(not(feature = "entra"))]
pub(crate) enum Ticket {}

#[cfg(not(feature = "entra"))]
impl Ticket {
    fn invalidate(&self) {
        match *self {}
    }
}

/// The cold path's wait for a token. Boxed, but only when no valid token is
/// cached; the hot path never builds one.
pub(crate) type TokenFetch =
    Pin<Box<dyn Future<Output = Result<(HeaderValue, Ticket), ClaudeError>> + Send>>;

pin_project! {
    /// Response future of [`Auth`](crate::Auth).
    pub struct ResponseFuture<F, S, B> {
        #[pin]
        state: State<F, S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        // Waiting for the single-flight token fetch; then the request is
        // sent on the service that was ready when `call` ran. Boxed so the
        // cold path's baggage does not make the hot path's future larger.
        Fetching {
            fetch: TokenFetch,
            pending: Option<Box<(S, Request<B>)>>,
        },
        // Sent. `ticket` names the bearer token used, so a 401 forgets it.
        Called {
            #[pin]
            future: F,
            ticket: Option<Ticket>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<F, S, B> ResponseFuture<F, S, B> {
    pub(crate) fn called(future: F, ticket: Option<Ticket>) -> Self {
        Self {
            state: State::Called { future, ticket },
        }
    }

    #[cfg_attr(not(feature = "entra"), allow(dead_code))]
    pub(crate) fn fetching(fetch: TokenFetch, service: S, request: Request<B>) -> Self {
        Self {
            state: State::Fetching {
                fetch,
                pending: Some(Box::new((service, request))),
            },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, S, B, ResB, E> Future for ResponseFuture<F, S, B>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
    S: Service<Request<B>, Response = Response<ResB>, Error = E, Future = F>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Fetching { fetch, pending } => {
                    let fetched = ready!(fetch.as_mut().poll(cx));
                    let (header, ticket) = match fetched {
                        Ok(ok) => ok,
                        Err(err) => return Poll::Ready(Err(Box::new(err))),
                    };
                    let Some(pending) = pending.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let (mut service, mut request) = *pending;
                    request
                        .headers_mut()
                        .insert(http::header::AUTHORIZATION, header);
                    let future = service.call(request);
                    // Fetching -> Called: the token is on the request.
                    state.set(State::Called {
                        future,
                        ticket: Some(ticket),
                    });
                }
                StateProj::Called { future, ticket } => {
                    let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                    crate::hop::strip_response(response.headers_mut());
                    if response.status() == StatusCode::UNAUTHORIZED
                        && let Some(ticket) = ticket.take()
                    {
                        ticket.invalidate();
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(match error.take() {
                        Some(err) => err,
                        None => polled_after_completion(),
                    }));
                }
            }
        }
    }
}

fn polled_after_completion() -> BoxError {
    "claude-tower-auth ResponseFuture polled after completion".into()
}

impl<F, S, B> fmt::Debug for ResponseFuture<F, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
