use bytes::{Buf, Bytes};
use claude_tower_core::ReplayBody;
use http_body_util::{Either, Empty, Full};

/// A request body that can be sent again.
///
/// [`RetryAfterPolicy`](crate::RetryAfterPolicy) only retries requests whose
/// body it can replay from the start. Bodies that cannot be replayed are
/// handled in one of two ways, and neither is silent:
///
/// - A body type that does not implement this trait at all (hyper's
///   `Incoming`, a boxed stream) does not satisfy the policy's
///   `tower::retry::Policy` bounds: the stack does not compile. Buffer the
///   body into a [`ReplayBody`] first (`ReplayBody::buffer(body, limit)`),
///   as claude-tower's default stack does before any route is tried.
/// - A body type that decides at run time returns `None` from
///   [`replay`](Self::replay). That request is sent once and not retried,
///   and the policy records it with a `DEBUG` event.
///
/// Implemented for core's [`ReplayBody`], `http_body_util`'s [`Full`] and
/// [`Empty`], [`Bytes`], [`String`], `Vec<u8>`, `()`, and [`Either`] of two
/// replayable bodies.
///
/// ```
/// use claude_tower_retry::ReplayableBody;
/// use claude_tower_core::ReplayBody;
///
/// let body = ReplayBody::from("{}");
/// assert_eq!(body.replay().unwrap().as_bytes(), "{}");
/// ```
pub trait ReplayableBody: Sized {
    /// A body that yields the whole of this one from the start, or `None`
    /// when this body cannot be sent again.
    ///
    /// The policy calls it on the request before the request is sent.
    fn replay(&self) -> Option<Self>;
}

impl ReplayableBody for ReplayBody {
    fn replay(&self) -> Option<Self> {
        // Rebuilt from the shared bytes rather than cloned, so a replay
        // starts at the beginning whatever this instance has yielded.
        Some(ReplayBody::new(self.as_bytes().clone()))
    }
}

impl<D: Buf + Clone> ReplayableBody for Full<D> {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayableBody for Empty<D> {
    fn replay(&self) -> Option<Self> {
        Some(Empty::new())
    }
}

impl ReplayableBody for Bytes {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayableBody for String {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayableBody for Vec<u8> {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayableBody for () {
    fn replay(&self) -> Option<Self> {
        Some(())
    }
}

impl<L: ReplayableBody, R: ReplayableBody> ReplayableBody for Either<L, R> {
    fn replay(&self) -> Option<Self> {
        match self {
            Either::Left(l) => l.replay().map(Either::Left),
            Either::Right(r) => r.replay().map(Either::Right),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_replay_starts_from_the_beginning() {
        let mut body = ReplayBody::from("hello");
        // Drain this instance; its replay still yields everything.
        let frame = body.frame().await.expect("a frame").expect("infallible");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"hello"[..]));
        let again = body.replay().expect("replayable");
        assert_eq!(again.collect().await.unwrap().to_bytes(), "hello");
    }

    #[test]
    fn either_replays_the_side_it_holds() {
        let body: Either<Full<Bytes>, Empty<Bytes>> = Either::Left(Full::new(Bytes::from("x")));
        assert!(matches!(body.replay(), Some(Either::Left(_))));
        let body: Either<Full<Bytes>, Empty<Bytes>> = Either::Right(Empty::new());
        assert!(matches!(body.replay(), Some(Either::Right(_))));
    }
}
