use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body [`Normalize`](crate::Normalize) hands on.
    ///
    /// One of:
    /// - the upstream body untouched (every success, so SSE streams byte for
    ///   byte, and error bodies over the limit whose length was declared);
    /// - an error body read whole (possibly rewritten into Anthropic's envelope);
    /// - the prefix read while looking for the end of an over-long error body,
    ///   then the unread rest of it;
    /// - the prefix read before the upstream body failed, then that failure.
    ///
    /// `From<Bytes>` makes a complete body, so a layer above can answer with
    /// [`claude_tower_core::error_response`] in the same body type.
    pub struct NormalizeBody<B>
    where
        B: Body,
    {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B>
    where
        B: Body,
    {
        Passthrough {
            #[pin]
            inner: B,
        },
        Buffered {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
        },
        Prefixed {
            prefix: Option<Bytes>,
            // NOTE: boxed because it was polled (pinned) while the prefix was
            // read and must move here afterwards; this happens only for error
            // bodies over the limit, never on the success path.
            rest: Pin<Box<B>>,
        },
        Errored {
            prefix: Option<Bytes>,
            error: Option<B::Error>,
        },
    }
}

impl<B: Body> NormalizeBody<B> {
    /// The upstream body, untouched.
    pub fn passthrough(inner: B) -> Self {
        Self {
            kind: Kind::Passthrough { inner },
        }
    }

    /// A complete body of `data` (followed by `trailers`, if any).
    pub(crate) fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    /// `prefix`, then the rest of the body it was read from.
    pub(crate) fn prefixed(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        Self {
            kind: Kind::Prefixed {
                prefix: (!prefix.is_empty()).then_some(prefix),
                rest,
            },
        }
    }

    /// `prefix`, then the error that cut the upstream body short.
    pub(crate) fn errored(prefix: Bytes, error: B::Error) -> Self {
        Self {
            kind: Kind::Errored {
                prefix: (!prefix.is_empty()).then_some(prefix),
                error: Some(error),
            },
        }
    }
}

impl<B: Body> From<Bytes> for NormalizeBody<B> {
    fn from(data: Bytes) -> Self {
        Self::buffered(data, None)
    }
}

impl<B> Body for NormalizeBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { inner } => inner.poll_frame(cx),
            KindProj::Buffered { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            KindProj::Prefixed { prefix, rest } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                rest.as_mut().poll_frame(cx)
            }
            KindProj::Errored { prefix, error } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                Poll::Ready(error.take().map(Err))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { inner } => inner.is_end_stream(),
            Kind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            Kind::Errored { prefix, error } => prefix.is_none() && error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { inner } => inner.size_hint(),
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Prefixed { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(extra));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint
            }
            Kind::Errored { prefix, .. } => {
                let mut hint = SizeHint::new();
                hint.set_lower(prefix.as_ref().map_or(0, |p| p.len() as u64));
                hint
            }
        }
    }
}

impl<B: Body> fmt::Debug for NormalizeBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Passthrough { .. } => "Passthrough",
            Kind::Buffered { .. } => "Buffered",
            Kind::Prefixed { .. } => "Prefixed",
            Kind::Errored { .. } => "Errored",
        };
        f.debug_struct("NormalizeBody")
            .field("kind", &kind)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};
    use std::convert::Infallible;

    #[tokio::test]
    async fn passthrough_keeps_frames() {
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"event: ping\n"))),
            Ok(Frame::data(Bytes::from_static(b"data: {}\n\n"))),
        ];
        let body = NormalizeBody::passthrough(StreamBody::new(futures_util::stream::iter(frames)));
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(out, "event: ping\ndata: {}\n\n");
    }

    #[tokio::test]
    async fn buffered_with_trailers() {
        let mut t = HeaderMap::new();
        t.insert("x-t", "1".parse().unwrap());
        let body = NormalizeBody::<Full<Bytes>>::buffered(Bytes::from_static(b"abc"), Some(t));
        assert_eq!(body.size_hint().exact(), Some(3));
        let collected = body.collect().await.unwrap();
        assert_eq!(
            collected.trailers().map(|t| t["x-t"].clone()),
            Some("1".parse().unwrap())
        );
        assert_eq!(collected.to_bytes(), "abc");
        let empty = NormalizeBody::<Full<Bytes>>::from(Bytes::new());
        assert!(empty.is_end_stream());
    }

    #[tokio::test]
    async fn prefixed_then_rest() {
        let rest = Box::pin(Full::new(Bytes::from_static(b"world")));
        let body = NormalizeBody::prefixed(Bytes::from_static(b"hello "), rest);
        assert_eq!(body.size_hint().exact(), Some(11));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello world");
    }

    #[tokio::test]
    async fn errored_yields_prefix_then_error() {
        let body = NormalizeBody::<
            StreamBody<futures_util::stream::Empty<Result<Frame<Bytes>, std::io::Error>>>,
        >::errored(
            Bytes::from_static(b"partial"),
            std::io::Error::other("reset"),
        );
        let mut body = std::pin::pin!(body);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "partial");
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "reset");
        assert!(body.frame().await.is_none());
    }
}
