use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body [`StreamHold`](super::StreamHold) hands on: the
    /// frames it held back, in the order they came, then the rest of the
    /// upstream body untouched.
    ///
    /// For every response that was not held (not a stream, a failure, the
    /// layer turned off) nothing was held and every poll goes straight to
    /// the upstream body.
    ///
    /// `From<Bytes>` makes a complete body, so a layer above can answer
    /// with [`claude_tower_core::error_response`] in the same body type.
    pub struct HoldBody<B>
    where
        B: Body,
    {
        held: VecDeque<Frame<Bytes>>,
        #[pin]
        rest: Rest<B>,
    }
}

pin_project! {
    #[project = RestProj]
    pub(crate) enum Rest<B>
    where
        B: Body,
    {
        Body {
            #[pin]
            body: B,
        },
        // The upstream body failed while it was held; the error comes after
        // what was held.
        Failed {
            error: Option<B::Error>,
        },
        Ended,
    }
}

impl<B: Body> Rest<B> {
    pub(crate) fn body(body: B) -> Self {
        Rest::Body { body }
    }

    pub(crate) fn failed(error: B::Error) -> Self {
        Rest::Failed { error: Some(error) }
    }
}

impl<B: Body> HoldBody<B> {
    /// The upstream body, untouched.
    pub fn passthrough(inner: B) -> Self {
        Self {
            held: VecDeque::new(),
            rest: Rest::body(inner),
        }
    }

    /// `held`, then `rest`.
    pub(crate) fn released(held: VecDeque<Frame<Bytes>>, rest: Rest<B>) -> Self {
        Self { held, rest }
    }

    fn held_len(&self) -> u64 {
        self.held
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum()
    }
}

impl<B: Body> From<Bytes> for HoldBody<B> {
    fn from(data: Bytes) -> Self {
        let mut held = VecDeque::new();
        if !data.is_empty() {
            held.push_back(Frame::data(data));
        }
        Self::released(held, Rest::Ended)
    }
}

impl<B> Body for HoldBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(frame) = this.held.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.rest.project() {
            RestProj::Body { body } => body.poll_frame(cx),
            RestProj::Failed { error } => Poll::Ready(error.take().map(Err)),
            RestProj::Ended => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty()
            && match &self.rest {
                Rest::Body { body } => body.is_end_stream(),
                Rest::Failed { error } => error.is_none(),
                Rest::Ended => true,
            }
    }

    fn size_hint(&self) -> SizeHint {
        let rest = match &self.rest {
            Rest::Body { body } => body.size_hint(),
            Rest::Failed { .. } => SizeHint::new(),
            Rest::Ended => SizeHint::with_exact(0),
        };
        if self.held.is_empty() {
            return rest;
        }
        let held = self.held_len();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(held));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

impl<B: Body> fmt::Debug for HoldBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rest = match &self.rest {
            Rest::Body { .. } => "Body",
            Rest::Failed { .. } => "Failed",
            Rest::Ended => "Ended",
        };
        f.debug_struct("HoldBody")
            .field("held_frames", &self.held.len())
            .field("rest", &rest)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http_body_util::{BodyExt, Full, StreamBody};

    type Stream = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>,
    >;

    fn stream(parts: &[&'static str]) -> Stream {
        let frames: Vec<_> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn held_frames_come_first_and_in_order_then_the_rest() {
        let held: VecDeque<_> = ["a", "b"]
            .into_iter()
            .map(|s| Frame::data(Bytes::from_static(s.as_bytes())))
            .collect();
        let body = HoldBody::released(held, Rest::body(stream(&["c", "d"])));
        let mut body = std::pin::pin!(body);
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            seen.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(seen, ["a", "b", "c", "d"]);
    }

    #[tokio::test]
    async fn passthrough_forwards_size_and_end() {
        let body = HoldBody::passthrough(Full::new(Bytes::from_static(b"abc")));
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
    }

    #[tokio::test]
    async fn held_bytes_count_in_the_size_hint() {
        let held = VecDeque::from([Frame::data(Bytes::from_static(b"xy"))]);
        let body = HoldBody::released(held, Rest::body(Full::new(Bytes::from_static(b"abc"))));
        assert_eq!(body.size_hint().exact(), Some(5));
        let local = HoldBody::<Full<Bytes>>::from(Bytes::from_static(b"{}"));
        assert_eq!(local.size_hint().exact(), Some(2));
        assert!(HoldBody::<Full<Bytes>>::from(Bytes::new()).is_end_stream());
    }

    #[tokio::test]
    async fn a_failure_while_held_comes_after_the_held_bytes() {
        let held = VecDeque::from([
            Frame::data(Bytes::from_static(b"start")),
            Frame::trailers(HeaderMap::new()),
        ]);
        let body: HoldBody<Stream> =
            HoldBody::released(held, Rest::failed(std::io::Error::other("reset")));
        let mut body = std::pin::pin!(body);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "start");
        assert!(body.frame().await.unwrap().unwrap().is_trailers());
        assert_eq!(
            body.frame().await.unwrap().unwrap_err().to_string(),
            "reset"
        );
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }
}
