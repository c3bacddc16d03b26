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

criterion_group!(benches, sse, layer);
criterion_main!(benches);
