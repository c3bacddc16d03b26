//! Response bodies: a whole buffer, or an SSE stream produced event by event.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The simulator's response body.
#[derive(Debug)]
pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Sse(Box<SseBody>),
}

impl SimBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        SimBody::Full(Some(bytes.into()))
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SimBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Sse(sse) => sse.poll_event(cx).map(|e| e.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(bytes) => bytes.is_none(),
            SimBody::Sse(sse) => sse.segments.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            SimBody::Sse(_) => SizeHint::default(),
        }
    }
}

/// The words of the default answer, one per text delta.
pub(crate) const DEFAULT_WORDS: [&str; 6] =
    ["Hello", " from", " the", " claude-tower", " simulator", "."];

macro_rules! filler_text {
    () => {
        "The quick brown fox jumps over the lazy dog while the simulator streams. "
    };
}

/// Text repeated to fill a large stream (`x-sim-stream-bytes`): plain ASCII, no
/// character that needs JSON escaping.
const FILLER: &str = filler_text!();
/// [`FILLER`] repeated past [`CHUNK`] bytes, so one delta can be cut from it
/// at any offset within the first [`FILLER`].
const FILLER_RUN: &str = concat!(
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
    filler_text!(),
);
/// Text bytes per delta of a large stream.
const CHUNK: usize = 1024;
const _: () = assert!(FILLER_RUN.len() >= FILLER.len() + CHUNK);
/// A ping goes out after every this many text deltas.
const PING_EVERY: u32 = 4;

/// One part of an SSE stream still to send.
#[derive(Debug)]
pub(crate) enum Segment {
    /// A whole event, already rendered.
    Event(Bytes),
    /// Text deltas for block `index`, generated on demand: either the default
    /// words or `remaining` bytes of filler.
    Text {
        index: usize,
        source: TextSource,
        sent: u32,
    },
}

/// Where a run of text deltas comes from.
#[derive(Debug)]
pub(crate) enum TextSource {
    /// These words, one per delta.
    Words(&'static [&'static str]),
    /// This many bytes of filler, [`CHUNK`] bytes per delta.
    Filler { remaining: usize, offset: usize },
}

impl TextSource {
    /// The total text length this source produces.
    pub(crate) fn len(&self) -> usize {
        match self {
            TextSource::Words(w) => w.iter().map(|s| s.len()).sum(),
            TextSource::Filler { remaining, .. } => *remaining,
        }
    }

    /// The whole text (only for small sources: the non-streaming answer).
    pub(crate) fn collect(&self) -> String {
        match self {
            TextSource::Words(w) => w.concat(),
            TextSource::Filler { remaining, .. } => {
                FILLER.chars().cycle().take(*remaining).collect()
            }
        }
    }
}

/// An SSE stream: segments sent in order, optionally with a gap between events.
#[derive(Debug)]
pub(crate) struct SseBody {
    segments: VecDeque<Segment>,
    gap: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    started: bool,
    pending_ping: bool,
}

impl SseBody {
    pub(crate) fn new(segments: VecDeque<Segment>, gap: Option<Duration>) -> Self {
        Self {
            segments,
            gap,
            sleep: None,
            waiting: false,
            started: false,
            pending_ping: false,
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.segments.is_empty() && !self.pending_ping {
            return Poll::Ready(None);
        }
        if let (Some(gap), true) = (self.gap, self.started) {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            if !self.waiting {
                sleep.as_mut().reset(Instant::now() + gap);
                self.waiting = true;
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.waiting = false;
        }
        self.started = true;
        Poll::Ready(self.next_event())
    }

    fn next_event(&mut self) -> Option<Bytes> {
        if self.pending_ping {
            self.pending_ping = false;
            return Some(Bytes::from_static(PING));
        }
        let front = self.segments.front_mut()?;
        let event = match front {
            Segment::Event(bytes) => {
                let bytes = std::mem::take(bytes);
                self.segments.pop_front();
                return Some(bytes);
            }
            Segment::Text {
                index,
                source,
                sent,
            } => {
                let (text, done): (&str, bool) = match source {
                    TextSource::Words(words) => {
                        let (first, rest) = words.split_first()?;
                        *words = rest;
                        (first, rest.is_empty())
                    }
                    TextSource::Filler { remaining, offset } => {
                        // NOTE: FILLER is ASCII, so any byte offset is a char boundary,
                        // and `offset < FILLER.len()` keeps the slice inside FILLER_RUN.
                        let take = (*remaining).min(CHUNK);
                        let text = FILLER_RUN.get(*offset..*offset + take).unwrap_or("");
                        *offset = (*offset + take) % FILLER.len();
                        *remaining -= take;
                        (text, *remaining == 0)
                    }
                };
                *sent += 1;
                let event = text_delta(*index, text);
                if *sent % PING_EVERY == 0 && !done {
                    self.pending_ping = true;
                }
                if done {
                    self.segments.pop_front();
                }
                event
            }
        };
        Some(event)
    }
}

const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// An event frame: `event: NAME\ndata: JSON\n\n`.
pub(crate) fn event(name: &str, data: &impl serde::Serialize) -> Bytes {
    let mut out = format!("event: {name}\ndata: ").into_bytes();
    // NOTE: the simulator's own structs of strings and numbers always serialize.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

pub(crate) fn ping() -> Bytes {
    Bytes::from_static(PING)
}

/// A `text_delta`; `text` must need no JSON escaping (filler and default words don't).
fn text_delta(index: usize, text: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + 128);
    out.put_slice(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
    );
    out.put_slice(index.to_string().as_bytes());
    out.put_slice(b",\"delta\":{\"type\":\"text_delta\",\"text\":\"");
    out.put_slice(text.as_bytes());
    out.put_slice(b"\"}}\n\n");
    out.freeze()
}

/// The filler source for a stream of about `bytes` text bytes.
pub(crate) fn filler(bytes: usize) -> TextSource {
    TextSource::Filler {
        remaining: bytes,
        offset: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn filler_stream_is_incremental_and_exact() {
        let segs = VecDeque::from([Segment::Text {
            index: 0,
            source: filler(10_000),
            sent: 0,
        }]);
        let mut body = SimBody::Sse(Box::new(SseBody::new(segs, None)));
        let mut text = 0;
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() < CHUNK + 200);
            if frames == 0 {
                assert!(data.len() > CHUNK);
            }
            let s = std::str::from_utf8(&data).unwrap();
            if let Some(json) = s.strip_prefix("event: content_block_delta\ndata: ") {
                let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
                text += v["delta"]["text"].as_str().unwrap().len();
            }
            frames += 1;
        }
        assert_eq!(text, 10_000);
        assert!(frames > 10);
        assert!(body.is_end_stream());
    }
}
