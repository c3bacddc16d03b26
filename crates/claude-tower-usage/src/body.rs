//! [`UsageBody`]: forwards every frame and watches it pass.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use claude_tower_core::ErrorClass;
use claude_tower_core::usage::{UsageHook, UsageRecord};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::future::deliver;
use crate::layer::Config;
use crate::watch::Watch;

pin_project! {
    /// Response body of [`Usage`](crate::Usage).
    ///
    /// Every frame of the inner body is passed on unchanged, as it arrives.
    /// Data frames are shown to the usage reader on the way. The request's
    /// record is delivered when the body ends, fails, or is dropped
    /// unfinished (the client went away), whichever comes first, once.
    pub struct UsageBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: B,
        // Boxed: the record and the reader's state are ~540 bytes, and
        // every layer and server wrapping above this one moves the
        // response; the box keeps each move ~540 bytes shorter.
        recorder: Option<Box<Recorder>>,
    }

    impl<B> PinnedDrop for UsageBody<B>
    where
        B: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(recorder) = this.recorder.take() {
                // NOTE: a server may stop polling once `is_end_stream` says
                // so; that is an end, not a disconnect.
                let end = if this.inner.is_end_stream() { End::Complete } else { End::Dropped };
                recorder.finish(end);
            }
        }
    }
}

impl<B: Body> UsageBody<B> {
    pub(crate) fn new(inner: B, recorder: Box<Recorder>) -> Self {
        Self {
            inner,
            recorder: Some(recorder),
        }
    }

    /// Forwards `inner` without watching it (no sink, no hook).
    pub(crate) fn unwatched(inner: B) -> Self {
        Self {
            inner,
            recorder: None,
        }
    }
}

impl<B: Body> std::fmt::Debug for UsageBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageBody")
            .field("recorder", &self.recorder)
            .finish_non_exhaustive()
    }
}

impl<B> Body for UsageBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(recorder), Some(data)) = (this.recorder.as_mut(), frame.data_ref()) {
                    recorder.data(data);
                }
                if this.inner.is_end_stream()
                    && let Some(recorder) = this.recorder.take()
                {
                    recorder.finish(End::Complete);
                }
            }
            Some(Err(_)) => {
                if let Some(recorder) = this.recorder.take() {
                    recorder.finish(End::Failed);
                }
            }
            None => {
                if let Some(recorder) = this.recorder.take() {
                    recorder.finish(End::Complete);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a body finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Complete,
    Failed,
    Dropped,
}

/// The record being built, moved into the body so that it is delivered
/// however the body ends (tower-http's in-flight guard, with a payload).
#[derive(Debug)]
pub(crate) struct Recorder {
    config: Arc<Config>,
    record: UsageRecord,
    at: Instant,
    watch: Watch,
    hook: Option<UsageHook>,
}

impl Recorder {
    pub(crate) fn new(
        config: Arc<Config>,
        record: UsageRecord,
        at: Instant,
        watch: Watch,
        hook: Option<UsageHook>,
    ) -> Self {
        Self {
            config,
            record,
            at,
            watch,
            hook,
        }
    }

    fn data(&mut self, data: &Bytes) {
        self.watch.feed(data);
        if self.record.time_to_first_chunk.is_none() && self.watch.content_seen() {
            self.record.time_to_first_chunk = Some(self.at.elapsed());
        }
    }

    fn finish(mut self: Box<Self>, end: End) {
        let record = &mut self.record;
        let complete = end == End::Complete;
        let watch = std::mem::replace(&mut self.watch, Watch::Off);
        let requested = record.requested_model.as_ref();
        if let Some(reading) = watch.finish(complete, &self.config.stats, requested) {
            record.usage = reading.usage();
            record.response_model = reading.model;
            record.stop_reason = reading.stop_reason;
            if let Some(class) = reading.error {
                record.error_class.get_or_insert(class);
            } else if complete && record.streamed && !reading.stopped {
                // The upstream ended the stream without `message_stop`.
                record.error_class.get_or_insert(ErrorClass::Transport);
            }
        }
        match end {
            End::Complete => {}
            End::Failed => {
                record.error_class.get_or_insert(ErrorClass::Transport);
            }
            End::Dropped => record.client_disconnected = true,
        }
        record.duration = self.at.elapsed();
        deliver(&self.config, &self.record, self.hook.take());
    }
}
