//! What `Failover` adds to a request when its first route is healthy.
//!
//! Both benches send the same request (a Claude Code-like header set, a
//! small JSON body) to an in-memory route that answers at once with a 200
//! carrying an extension (as Normalize's `RequestIds` would). `direct` calls
//! the route itself; `failover` goes through a two-route `Failover`. The
//! difference is the layer's cost: target <= 1 µs. `failover_single_route`
//! shows the layer without the request copy it keeps for a later route, and
//! `request_clone` the price of that copy.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use claude_tower_core::{ReplayBody, RouteId};
use claude_tower_failover::Failover;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Service, ServiceExt};

#[derive(Clone, Copy)]
struct Healthy;

#[derive(Clone)]
struct Served;

impl Service<Request<ReplayBody>> for Healthy {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReplayBody>) -> Self::Future {
        std::hint::black_box(&req);
        let mut res = Response::new(());
        res.extensions_mut().insert(Served);
        ready(Ok(res))
    }
}

fn request() -> Request<ReplayBody> {
    let mut builder = Request::post("/v1/messages?beta=true")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
        )
        .header("user-agent", "claude-cli/2.0.0 (external, cli)")
        .header("accept", "application/json");
    for name in [
        "x-stainless-lang",
        "x-stainless-os",
        "x-stainless-arch",
        "x-stainless-runtime",
    ] {
        builder = builder.header(name, "value");
    }
    builder
        .body(ReplayBody::from(
            r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .expect("valid request")
}

fn run<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the in-memory route answers at once"),
    }
}

fn healthy(c: &mut Criterion) {
    let template = request();
    let mut group = c.benchmark_group("healthy_first_route");

    group.bench_function("direct", |b| {
        b.iter(|| run(Healthy.oneshot(template.clone())).is_ok())
    });

    let failover = Failover::new([
        (RouteId::new("anthropic"), Healthy),
        (RouteId::new("foundry"), Healthy),
    ]);
    group.bench_function("failover", |b| {
        b.iter(|| run(failover.clone().oneshot(template.clone())).is_ok())
    });

    // One route: nothing can follow, so no copy of the request is kept.
    let single = Failover::new([(RouteId::new("anthropic"), Healthy)]);
    group.bench_function("failover_single_route", |b| {
        b.iter(|| run(single.clone().oneshot(template.clone())).is_ok())
    });

    // The one extra request clone a two-route failover keeps for the next route.
    group.bench_function("request_clone", |b| b.iter(|| template.clone()));
    group.finish();
}

criterion_group!(benches, healthy);
criterion_main!(benches);
