//! What StreamHold costs when nothing fails.
//!
//! - `hold/ttfc`: time to the first content event (`content_block_start`) of
//!   a stream from the simulator over loopback HTTP, through Normalize alone
//!   and through StreamHold -> Normalize. The hold ends with the first
//!   content event, so the two should differ by the scan of the preamble.
//! - `hold/in_memory`: the same on an in-memory stream (no network), where
//!   the layer's own work is all there is to measure: the future, the timer,
//!   the scan of the preamble, the release.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use claude_tower_core::{Face, RouteId};
use claude_tower_normalize::NormalizeLayer;
use claude_tower_normalize::hold::StreamHoldLayer;
use claude_tower_sim::{Sim, SimConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, Service, ServiceExt, service_fn};

const STREAM_BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n";
const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";
const BLOCK: &str = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";

fn route() -> RouteId {
    RouteId::new("anthropic")
}

/// Reads `body` until a frame holds the first content event; the rest is
/// drained afterwards, outside the measurement.
async fn first_content<B>(res: Response<B>) -> B
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut body = res.into_body();
    loop {
        let frame = body.frame().await.expect("a frame").expect("no error");
        if frame
            .data_ref()
            .is_some_and(|d| d.windows(19).any(|w| w == b"content_block_start"))
        {
            return body;
        }
    }
}

fn ttfc(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = rt
        .block_on(Sim::start(SimConfig::default()))
        .expect("sim starts");
    let url = format!("{}/v1/messages", sim.anthropic_base_url());
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = move || {
        Request::post(url.as_str())
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(STREAM_BODY.as_bytes())))
            .expect("request")
    };
    let bare = NormalizeLayer::new(route(), Face::Anthropic).layer(client.clone());
    let held = StreamHoldLayer::new(route(), Face::Anthropic)
        .layer(NormalizeLayer::new(route(), Face::Anthropic).layer(client));

    let mut group = c.benchmark_group("hold/ttfc");
    macro_rules! measure {
        ($name:literal, $svc:expr) => {
            group.bench_function($name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let started = Instant::now();
                            let res = $svc.clone().oneshot(request()).await.expect("a response");
                            let body = first_content(res).await;
                            total += started.elapsed();
                            body.collect().await.expect("the rest");
                        }
                        total
                    })
                })
            });
        };
    }
    measure!("normalize", bare);
    measure!("stream_hold+normalize", held);
    group.finish();
    drop(sim);
}

fn in_memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let stream = Bytes::from(format!("{START}{PING}{BLOCK}"));
    let upstream = service_fn(move |_req: Request<()>| {
        let mut res = Response::new(Full::new(stream.clone()));
        res.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        std::future::ready(Ok::<_, std::convert::Infallible>(res))
    });
    let mut group = c.benchmark_group("hold/in_memory");
    group.bench_function("without", |b| {
        let mut svc = upstream.clone();
        b.iter(|| {
            let res = svc.call(Request::new(())).now_or_never().unwrap().unwrap();
            let mut body = res.into_body();
            black_box(body.frame().now_or_never().unwrap());
        })
    });
    let mut held = StreamHoldLayer::new(route(), Face::Anthropic).layer(upstream.clone());
    group.bench_function("stream_hold", |b| {
        b.iter(|| {
            let res = held.call(Request::new(())).now_or_never().unwrap().unwrap();
            let mut body = res.into_body();
            black_box(body.frame().now_or_never().unwrap());
        })
    });
    let mut off = StreamHoldLayer::new(route(), Face::Anthropic)
        .with_enabled(false)
        .layer(upstream);
    group.bench_function("stream_hold_off", |b| {
        b.iter(|| {
            let res = off.call(Request::new(())).now_or_never().unwrap().unwrap();
            let mut body = res.into_body();
            black_box(body.frame().now_or_never().unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, in_memory, ttfc);
criterion_main!(benches);
