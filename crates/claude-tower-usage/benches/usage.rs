//! The usage reader and layer: SSE throughput on an event-dense stream, the
//! non-streaming JSON path, and the layer's cost per small request.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use claude_tower_core::{Face, RouteId};
use claude_tower_usage::{SseUsageReader, UsageLayer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, service_fn};

/// A long answer as the API streams it: one small `content_block_delta`
/// per token or two, a `ping` every few events. About 150 bytes per event:
/// the densest stream the watcher meets.
fn dense_stream(bytes: usize) -> Vec<u8> {
    let mut s = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":2095,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":51200,\"output_tokens\":1}}}\n\n",
    );
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    let mut i = 0;
    while s.len() < bytes {
        s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" token\"}}\n\n");
        i += 1;
        if i % 8 == 0 {
            s.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
        }
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4000}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

/// A long answer as the simulator streams it for `x-sim-stream-bytes`
/// (the load harness's bulk check): 1 KiB of text per `content_block_delta`,
/// a `ping` after every fourth, each event its own chunk, as hyper hands a
/// chunked body over (one frame per chunk).
fn text_events(bytes: usize) -> Vec<Vec<u8>> {
    let text = "The quick brown fox jumps over the lazy dog while the simulator streams. "
        .repeat(16)[..1024]
        .to_owned();
    let mut events = vec![
        b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n".to_vec(),
    ];
    let mut len = 0;
    while len < bytes {
        let event = format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n"
        );
        len += event.len();
        events.push(event.into_bytes());
        if events.len() % 4 == 0 {
            events.push(b"event: ping\ndata: {\"type\": \"ping\"}\n\n".to_vec());
        }
    }
    events.push(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4000}}\n\n".to_vec());
    events.push(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_vec());
    events
}

fn json_message(text_bytes: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"{}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":2095,"cache_creation_input_tokens":0,"cache_read_input_tokens":51200,"output_tokens":503}}}}"#,
        "word ".repeat(text_bytes / 5)
    )
    .into_bytes()
}

fn sse(c: &mut Criterion) {
    let stream = dense_stream(1 << 20);
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    // Chunks as hyper hands them over (the transport's read buffer).
    for chunk in [16 * 1024, 1024] {
        group.bench_function(format!("reader/dense-1MiB/{chunk}B-chunks"), |b| {
            b.iter(|| {
                let mut reader = SseUsageReader::new();
                for c in stream.chunks(chunk) {
                    reader.feed(black_box(c));
                }
                black_box(reader.usage())
            })
        });
    }
    group.finish();

    let events = text_events(1 << 20);
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(
        events.iter().map(Vec::len).sum::<usize>() as u64,
    ));
    group.bench_function("reader/text-1MiB/event-per-chunk", |b| {
        b.iter(|| {
            let mut reader = SseUsageReader::new();
            for event in &events {
                reader.feed(black_box(event));
            }
            black_box(reader.usage())
        })
    });
    // What the machine gives right now: only finding every line end,
    // the least any SSE reader must do. Compare the reader against it when
    // the machine is shared.
    group.bench_function("baseline/memchr2-line-ends", |b| {
        b.iter(|| black_box(memchr::memchr2_iter(b'\n', b'\r', black_box(&stream)).count()))
    });
    group.finish();
}

/// One request through `Usage` over a service answering at once, the body
/// collected; the baseline is the same without the layer.
fn layer(c: &mut Criterion) {
    let json = Bytes::from(json_message(400));
    let sse = Bytes::from(dense_stream(2048));
    let mut group = c.benchmark_group("layer");
    for (name, ct, body) in [
        ("json-small", "application/json", json.clone()),
        ("sse-2KiB", "text/event-stream", sse),
    ] {
        let make = move || {
            let body = body.clone();
            service_fn(move |_req: Request<()>| {
                let mut res = Response::builder()
                    .header("content-type", ct)
                    .body(Full::new(body.clone()))
                    .unwrap();
                res.extensions_mut().insert(RouteId::new("anthropic"));
                res.extensions_mut().insert(Face::Anthropic);
                std::future::ready(Ok::<_, Infallible>(res))
            })
        };
        let mut bare = make();
        group.bench_function(format!("{name}/bare"), |b| {
            b.iter(|| {
                let res = bare.call(Request::new(())).now_or_never().unwrap().unwrap();
                black_box(res.into_body().collect().now_or_never().unwrap().unwrap())
            })
        });
        let mut with = UsageLayer::new()
            .sink(|r: &_| {
                black_box(r);
            })
            .layer(make());
        group.bench_function(format!("{name}/usage"), |b| {
            b.iter(|| {
                let res = with.call(Request::new(())).now_or_never().unwrap().unwrap();
                black_box(res.into_body().collect().now_or_never().unwrap().unwrap())
            })
        });
    }
    // The JSON path on a large non-streaming answer: one frame (no copy).
    let big = Bytes::from(json_message(256 * 1024));
    group.throughput(Throughput::Bytes(big.len() as u64));
    let mut with = UsageLayer::new().layer(service_fn(move |_req: Request<()>| {
        let mut res = Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(big.clone()))
            .unwrap();
        res.extensions_mut().insert(RouteId::new("anthropic"));
        std::future::ready(Ok::<_, Infallible>(res))
    }));
    group.bench_function("json-256KiB/usage", |b| {
        b.iter(|| {
            let res = with.call(Request::new(())).now_or_never().unwrap().unwrap();
            black_box(res.into_body().collect().now_or_never().unwrap().unwrap())
        })
    });
    group.finish();
}

/// A streamed body handing over prepared frames one by one, as hyper hands
/// over a chunked upstream answer: the first frame, the middle ones
/// `repeat` times over, the last ones. The middle frames (256 KiB) stay in
/// the cache, as a frame does in a proxy that has just read it from the
/// socket.
struct Frames {
    events: std::sync::Arc<[Bytes]>,
    repeat: usize,
    at: usize,
}

impl Frames {
    fn nth(&self, at: usize) -> Option<&Bytes> {
        let n = self.events.len();
        let middle = n - 3;
        match at {
            0 => self.events.first(),
            k if k <= middle * self.repeat => self.events.get(1 + (k - 1) % middle),
            k => self.events.get(k - middle * self.repeat + middle),
        }
    }
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let frame = self.nth(self.at).cloned();
        self.at += 1;
        std::task::Poll::Ready(frame.map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.nth(self.at).is_none()
    }
}

/// The layer's whole cost on a 10 MiB stream shaped like the simulator's
/// (the load harness's bulk check): the body wrapper's per-frame work and
/// the reader, against the same frames without the layer. Frames are read
/// and dropped, as a server writes them out.
fn stream(c: &mut Criterion) {
    let events: std::sync::Arc<[Bytes]> = text_events(256 << 10)
        .into_iter()
        .map(Bytes::from)
        .collect();
    const REPEAT: usize = 40;
    let check = Frames {
        events: events.clone(),
        repeat: REPEAT,
        at: 0,
    };
    let total: usize = (0..).map_while(|k| check.nth(k)).map(Bytes::len).sum();
    assert!(total >= 10 << 20, "{total}");
    let mut group = c.benchmark_group("layer");
    group.throughput(Throughput::Bytes(total as u64));
    group.sample_size(20);
    let make = move || {
        let events = events.clone();
        service_fn(move |_req: Request<()>| {
            let mut res = Response::builder()
                .header("content-type", "text/event-stream")
                .body(Frames {
                    events: events.clone(),
                    repeat: REPEAT,
                    at: 0,
                })
                .unwrap();
            res.extensions_mut().insert(RouteId::new("anthropic"));
            std::future::ready(Ok::<_, Infallible>(res))
        })
    };
    fn drain<B: http_body::Body<Data = Bytes> + Unpin>(mut body: B) -> usize {
        let mut n = 0;
        while let Some(Some(Ok(frame))) = body.frame().now_or_never() {
            n += black_box(frame).data_ref().map_or(0, Bytes::len);
        }
        n
    }
    let mut bare = make();
    group.bench_function("sse-10MiB-event-frames/bare", |b| {
        b.iter(|| {
            let res = bare.call(Request::new(())).now_or_never().unwrap().unwrap();
            assert_eq!(drain(res.into_body()), total);
        })
    });
    let mut with = UsageLayer::new()
        .sink(|r: &_| {
            black_box(r);
        })
        .layer(make());
    group.bench_function("sse-10MiB-event-frames/usage", |b| {
        b.iter(|| {
            let res = with.call(Request::new(())).now_or_never().unwrap().unwrap();
            assert_eq!(drain(Box::pin(res.into_body())), total);
        })
    });
    group.finish();
}

criterion_group!(benches, sse, layer, stream);
criterion_main!(benches);
