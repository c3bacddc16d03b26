//! The response future of [`ToolPairing`](crate::ToolPairing).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use claude_tower_core::{RequestedModel, ResponseBody};

use crate::Repairs;

pin_project! {
    /// Resolves to the inner service's response, or to a local rejection.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // The request went to the inner service.
        Called {
            #[pin]
            future: F,
            repairs: Option<Repairs>,
            model: Option<RequestedModel>,
        },
        // Answered here; `None` once yielded.
        Local {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(
        future: F,
        repairs: Option<Repairs>,
        model: Option<RequestedModel>,
    ) -> Self {
        Self {
            state: State::Called {
                future,
                repairs,
                model,
            },
        }
    }

    pub(crate) fn local(response: Response<Bytes>) -> Self {
        Self {
            state: State::Local {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                future,
                repairs,
                model,
            } => {
                let mut response = ready!(future.poll(cx))?.map(ResponseBody::upstream);
                if let Some(repairs) = repairs.take() {
                    response.extensions_mut().insert(repairs);
                }
                if let Some(model) = model.take() {
                    response.extensions_mut().insert(model);
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Local { response } => {
                // NOTE: polling again after completion is a caller bug; an
                // empty 500 is a safe answer rather than a panic.
                let response = response.take().unwrap_or_else(|| {
                    let mut r = Response::new(Bytes::new());
                    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    r
                });
                Poll::Ready(Ok(response.map(ResponseBody::local)))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Local { .. } => "local",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
