use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// The Messages API's request size limit, 32 MiB: the default for buffering.
pub const DEFAULT_REQUEST_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// A request body buffered once, so retry and failover can send it again.
///
/// Cloning is a reference count increment (the bytes are shared), and each
/// clone yields the whole body from the start: that is what makes a request
/// replayable. Layers that look inside the body (tool pairing, model mapping)
/// read [`as_bytes`](Self::as_bytes) without copying.
///
/// ```
/// use claude_tower_core::ReplayBody;
/// use http_body_util::BodyExt;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let body = ReplayBody::from(r#"{"model":"claude-sonnet-4-5"}"#);
/// let again = body.clone();
/// let first = body.collect().await.unwrap().to_bytes();
/// let second = again.collect().await.unwrap().to_bytes();
/// assert_eq!(first, second);
/// # }
/// ```
#[derive(Default)]
pub struct ReplayBody {
    bytes: Bytes,
    // Whether this instance has yielded its data frame; clones start afresh.
    done: bool,
}

impl ReplayBody {
    /// A replayable body over `bytes`.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self {
            bytes: bytes.into(),
            done: false,
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The whole body, however much of it this instance has yielded.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The body's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Takes the bytes out.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Buffers any body into a replayable one, reading at most `limit` bytes.
    ///
    /// Over the limit it stops reading and answers
    /// [`BufferError::TooLarge`]; the caller answers 413 in Anthropic's
    /// envelope. A body that declares an exact length over the limit is
    /// refused before anything is read.
    pub async fn buffer<B>(body: B, limit: usize) -> Result<Self, BufferError>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(exact) = body.size_hint().exact()
            && exact > limit as u64
        {
            return Err(BufferError::TooLarge { limit });
        }
        let limited = http_body_util::Limited::new(body, limit);
        match limited.collect().await {
            Ok(collected) => Ok(Self::new(collected.to_bytes())),
            Err(err) => {
                if err.is::<http_body_util::LengthLimitError>() {
                    Err(BufferError::TooLarge { limit })
                } else {
                    Err(BufferError::Body(err))
                }
            }
        }
    }
}

impl Clone for ReplayBody {
    /// A clone yields the whole body from the start, even when this instance
    /// has already been read: that is what makes a request replayable.
    fn clone(&self) -> Self {
        Self::new(self.bytes.clone())
    }
}

impl fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("len", &self.bytes.len())
            .field("done", &self.done)
            .finish()
    }
}

impl From<Bytes> for ReplayBody {
    fn from(bytes: Bytes) -> Self {
        Self::new(bytes)
    }
}

impl From<Vec<u8>> for ReplayBody {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl From<String> for ReplayBody {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&'static str> for ReplayBody {
    fn from(s: &'static str) -> Self {
        Self::new(Bytes::from_static(s.as_bytes()))
    }
}

impl From<&'static [u8]> for ReplayBody {
    fn from(s: &'static [u8]) -> Self {
        Self::new(Bytes::from_static(s))
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.done || this.bytes.is_empty() {
            this.done = true;
            return Poll::Ready(None);
        }
        this.done = true;
        Poll::Ready(Some(Ok(Frame::data(this.bytes.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.bytes.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::with_exact(self.bytes.len() as u64)
        }
    }
}

/// A request body already in memory, which layers can read and replace.
///
/// The layers that look inside a request body (tool pairing, model mapping)
/// take any `Request<B>` with `B: BufferedBody`. Implemented for
/// [`ReplayBody`] (what [`ReplayLayer`](crate::ReplayLayer) produces, and
/// what retry and failover resend) and for [`Bytes`]. A body that is only
/// sometimes in memory returns `None` from [`buffered`](Self::buffered):
/// such a request is passed on unread.
///
/// ```
/// use bytes::Bytes;
/// use claude_tower_core::{BufferedBody, ReplayBody};
///
/// let body = ReplayBody::from("{}");
/// assert_eq!(body.buffered().unwrap(), "{}");
/// let replaced = ReplayBody::from_buffered(Bytes::from_static(b"[]"));
/// assert_eq!(replaced.as_bytes(), "[]");
/// ```
pub trait BufferedBody: Sized {
    /// The whole body (a cheap, shared copy), or `None` when it is not in memory.
    fn buffered(&self) -> Option<Bytes>;

    /// A body of `bytes`, to replace this one after a rewrite.
    fn from_buffered(bytes: Bytes) -> Self;
}

impl BufferedBody for ReplayBody {
    fn buffered(&self) -> Option<Bytes> {
        Some(self.bytes.clone())
    }

    fn from_buffered(bytes: Bytes) -> Self {
        Self::new(bytes)
    }
}

impl BufferedBody for Bytes {
    fn buffered(&self) -> Option<Bytes> {
        Some(self.clone())
    }

    fn from_buffered(bytes: Bytes) -> Self {
        bytes
    }
}

/// Why a body could not be buffered.
#[derive(Debug)]
#[non_exhaustive]
pub enum BufferError {
    /// The body is larger than the limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body failed while being read.
    Body(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for BufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BufferError::TooLarge { limit } => {
                write!(f, "request body is larger than the {limit} byte limit")
            }
            BufferError::Body(err) => write!(f, "reading the request body failed: {err}"),
        }
    }
}

impl std::error::Error for BufferError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BufferError::TooLarge { .. } => None,
            BufferError::Body(err) => Some(&**err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn yields_once_per_clone() {
        let body = ReplayBody::from("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        let clone = body.clone();
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello");
        assert!(!clone.is_end_stream());
        assert_eq!(clone.collect().await.unwrap().to_bytes(), "hello");
    }

    #[tokio::test]
    async fn a_clone_of_a_read_body_starts_afresh() {
        let mut body = ReplayBody::from("again");
        let first = std::pin::Pin::new(&mut body)
            .frame()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.into_data().unwrap(), "again");
        assert!(body.is_end_stream());
        let replay = body.clone();
        assert!(!replay.is_end_stream());
        assert_eq!(replay.collect().await.unwrap().to_bytes(), "again");
    }

    #[tokio::test]
    async fn empty_body_is_at_end() {
        let body = ReplayBody::empty();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.collect().await.unwrap().to_bytes().is_empty());
    }

    #[tokio::test]
    async fn buffers_within_the_limit() {
        let body = ReplayBody::buffer(Full::new(Bytes::from_static(b"abc")), 3)
            .await
            .unwrap();
        assert_eq!(body.as_bytes(), "abc");
    }

    #[tokio::test]
    async fn refuses_a_declared_length_over_the_limit() {
        let err = ReplayBody::buffer(Full::new(Bytes::from_static(b"abcd")), 3)
            .await
            .unwrap_err();
        assert!(matches!(err, BufferError::TooLarge { limit: 3 }));
    }

    #[tokio::test]
    async fn stops_reading_a_stream_over_the_limit() {
        let chunks = (0..10).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"xx"))));
        let stream = StreamBody::new(futures_util::stream::iter(chunks));
        let err = ReplayBody::buffer(stream, 5).await.unwrap_err();
        assert!(matches!(err, BufferError::TooLarge { limit: 5 }));
        assert_eq!(
            err.to_string(),
            "request body is larger than the 5 byte limit"
        );
    }

    #[tokio::test]
    async fn reports_a_failing_body() {
        let chunks = vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Err(std::io::Error::other("peer went away")),
        ];
        let stream = StreamBody::new(futures_util::stream::iter(chunks));
        let err = ReplayBody::buffer(stream, 100).await.unwrap_err();
        assert!(matches!(err, BufferError::Body(_)));
        assert!(err.to_string().contains("peer went away"));
    }
}
