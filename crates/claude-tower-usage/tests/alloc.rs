//! No allocation per chunk: the reader and the body wrapper allocate for
//! the events they parse (`message_start`, `message_delta`), never for the
//! chunks and events they pass over. Counted with a counting global
//! allocator, on this thread only.

use std::convert::Infallible;

use bytes::Bytes;
use claude_tower_core::{Face, RouteId};
use claude_tower_usage::{SseUsageReader, UsageLayer};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tower::{ServiceExt, service_fn};

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n";
const DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello, world \"}}\n\n";
const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";

#[test]
fn the_counter_counts() {
    let info = allocation_counter::measure(|| {
        std::hint::black_box(vec![1u8; 10]);
    });
    assert_eq!(info.count_total, 1);
}

#[test]
fn the_reader_allocates_nothing_per_chunk() {
    let mut reader = SseUsageReader::new();
    reader.feed(START.as_bytes());
    let dense = format!("{DELTA}{DELTA}{PING}{DELTA}").repeat(64);
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            // Odd chunk sizes: events split everywhere.
            for chunk in dense.as_bytes().chunks(61) {
                reader.feed(chunk);
            }
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
    assert_eq!(reader.usage().map(|u| u.input), Some(12));
}

#[test]
fn the_layer_body_allocates_nothing_per_chunk() {
    let chunks = 10_000;
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> =
        vec![Ok(Frame::data(Bytes::from_static(START.as_bytes())))];
    for _ in 0..chunks {
        frames.push(Ok(Frame::data(Bytes::from_static(DELTA.as_bytes()))));
    }
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let mut response = Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap();
    response.extensions_mut().insert(RouteId::new("anthropic"));
    response.extensions_mut().insert(Face::Anthropic);
    let mut slot = Some(response);
    let inner = service_fn(move |_req: Request<()>| std::future::ready(slot.take().ok_or("twice")));
    let svc = tower::Layer::layer(&UsageLayer::new().sink(|_: &_| {}), inner);
    let response = svc
        .oneshot(Request::new(()))
        .now_or_never()
        .expect("ready")
        .expect("a response");
    let mut body = response.into_body();
    // message_start: parsed, the model kept (allocates, once per request).
    body.frame().now_or_never().unwrap().unwrap().unwrap();
    let info = allocation_counter::measure(|| {
        for _ in 0..chunks {
            let frame = body.frame().now_or_never().unwrap().unwrap().unwrap();
            assert!(frame.is_data());
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}
