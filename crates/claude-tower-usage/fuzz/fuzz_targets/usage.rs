//! The usage layer on arbitrary bodies in arbitrary chunkings, as an event
//! stream or as JSON: the bytes reach the client unchanged, exactly one
//! record is delivered, nothing panics, and the SSE reader gives the same
//! answer however the bytes were cut.

#![no_main]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use claude_tower_core::usage::{RequestedModel, UsageRecord};
use claude_tower_core::{Face, RouteId};
use claude_tower_usage::{SseUsageReader, UsageLayer};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt, service_fn};

fuzz_target!(|data: &[u8]| {
    // Layout: kind (1), then a chunk-size seed (1); the rest is the body.
    let [kind, seed, body @ ..] = data else {
        return;
    };
    // Chunk lengths from the seed: 1..=64, varying along the body.
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut s = *seed as usize;
    while at < body.len() {
        s = s.wrapping_mul(31).wrapping_add(7);
        let len = (s % 64 + 1).min(body.len() - at);
        chunks.push(&body[at..at + len]);
        at += len;
    }

    // The reader alone: whole vs chunked.
    let mut whole = SseUsageReader::with_event_limit(512);
    whole.feed(body);
    let mut cut = SseUsageReader::with_event_limit(512);
    for c in &chunks {
        cut.feed(c);
    }
    assert_eq!(whole.usage(), cut.usage());
    assert_eq!(whole.model(), cut.model());
    assert_eq!(whole.stop_reason(), cut.stop_reason());
    assert_eq!(whole.error_class(), cut.error_class());
    assert_eq!(whole.is_stopped(), cut.is_stopped());

    // Through the layer.
    let content_type = if kind & 1 == 0 {
        "text/event-stream"
    } else {
        "application/json"
    };
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let mut response = Response::builder()
        .header("content-type", content_type)
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    response.extensions_mut().insert(RouteId::new("fuzz"));
    response.extensions_mut().insert(Face::Anthropic);
    let mut slot = Some(response);
    let inner = service_fn(move |_req: Request<()>| std::future::ready(slot.take().ok_or("twice")));
    let records: Arc<Mutex<Vec<UsageRecord>>> = Arc::default();
    let sink = Arc::clone(&records);
    let layer = UsageLayer::new()
        .with_json_limit(4096)
        .with_event_limit(512)
        .sink(move |r: &UsageRecord| sink.lock().unwrap().push(r.clone()));
    // The request names a model (bit 2): a response naming the same one
    // shares it.
    let mut request = Request::new(());
    if kind & 4 != 0 {
        request
            .extensions_mut()
            .insert(RequestedModel(Arc::from("m")));
    }
    let response = layer
        .layer(inner)
        .oneshot(request)
        .now_or_never()
        .expect("ready")
        .expect("a response");
    if kind & 2 == 0 {
        let out = response
            .into_body()
            .collect()
            .now_or_never()
            .unwrap()
            .unwrap()
            .to_bytes();
        assert_eq!(&out[..], body);
    } else {
        // The client goes away halfway.
        let mut b = response.into_body();
        for _ in 0..chunks.len() / 2 {
            let _ = b.frame().now_or_never();
        }
        drop(b);
    }
    let records = records.lock().unwrap();
    assert_eq!(records.len(), 1);
    if content_type == "text/event-stream" && kind & 2 == 0 {
        assert_eq!(records[0].usage, whole.usage());
    }
    if kind & 4 != 0 {
        assert_eq!(records[0].requested_model.as_deref(), Some("m"));
    }
});
