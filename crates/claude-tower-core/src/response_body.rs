use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A response body that is either the inner service's, streamed untouched,
    /// or a small one a layer answered with locally (an error envelope, a 413,
    /// a 401 from identity, a 429 from a quota).
    ///
    /// Every layer that can answer without calling its inner service uses this
    /// one type, so stacking such layers nests one enum per layer and no box.
    /// `Default` is an empty local body (tower-http's `TimeoutLayer` needs it).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use claude_tower_core::ResponseBody;
    /// use http_body::Body;
    ///
    /// let local: ResponseBody<http_body_util::Empty<Bytes>> = ResponseBody::local("{}");
    /// assert_eq!(local.size_hint().exact(), Some(2));
    /// assert!(local.is_local());
    /// ```
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Upstream { #[pin] body: B },
        // `None` once sent.
        Local { bytes: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// The inner service's body, passed through.
    pub fn upstream(body: B) -> Self {
        Self {
            kind: Kind::Upstream { body },
        }
    }

    /// A body of `bytes` made locally.
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            kind: Kind::Local {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }

    /// Whether the body was made locally.
    pub fn is_local(&self) -> bool {
        matches!(self.kind, Kind::Local { .. })
    }

    /// The inner service's body, when this is one.
    pub fn as_upstream(&self) -> Option<&B> {
        match &self.kind {
            Kind::Upstream { body } => Some(body),
            Kind::Local { .. } => None,
        }
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self {
            kind: Kind::Local { bytes: None },
        }
    }
}

impl<B> From<Bytes> for ResponseBody<B> {
    fn from(bytes: Bytes) -> Self {
        Self::local(bytes)
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Upstream { body } => body.poll_frame(cx),
            KindProj::Local { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream { body } => body.is_end_stream(),
            Kind::Local { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream { body } => body.size_hint(),
            Kind::Local { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn upstream_passes_through_and_local_sends_once() {
        let up: ResponseBody<Full<Bytes>> = ResponseBody::upstream(Full::new(Bytes::from("abc")));
        assert!(!up.is_local());
        assert_eq!(up.collect().await.unwrap().to_bytes(), "abc");

        let local: ResponseBody<Full<Bytes>> = ResponseBody::local("{\"a\":1}");
        assert!(local.is_local());
        assert_eq!(local.size_hint().exact(), Some(7));
        assert_eq!(local.collect().await.unwrap().to_bytes(), "{\"a\":1}");

        let empty = ResponseBody::<Full<Bytes>>::default();
        assert!(empty.is_end_stream());
        assert_eq!(empty.collect().await.unwrap().to_bytes(), "");
    }
}
