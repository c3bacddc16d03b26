//! The cost of a request that needs no retry: `Retry<RetryAfterPolicy, S>`
//! against the bare service `S`, which answers at once.
//!
//! The difference between `bare` and `retry/*` is the policy's overhead:
//! the request clone tower's `Retry` keeps, the policy clone, a clock read,
//! a budget deposit and the final response's `Attempt` extension.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use claude_tower_core::ReplayBody;
use claude_tower_retry::{Retry, RetryAfterPolicy};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Service, ServiceExt};

const BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"hi"}]}"#;

fn request() -> Request<ReplayBody> {
    Request::post("http://127.0.0.1/v1/messages")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .header("x-api-key", "sk-bench")
        .body(ReplayBody::from(BODY))
        .expect("a valid request")
}

fn ok_service() -> impl Service<
    Request<ReplayBody>,
    Response = Response<Bytes>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<Bytes>, Infallible>>,
> + Clone {
    tower::service_fn(|_req: Request<ReplayBody>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Bytes::from_static(
            b"ok",
        ))))
    })
}

fn drive<S>(svc: &mut S) -> Response<Bytes>
where
    S: Service<Request<ReplayBody>, Response = Response<Bytes>, Error = Infallible>,
{
    // Both services are ready and answer at once: no runtime is needed.
    svc.ready()
        .now_or_never()
        .expect("ready")
        .expect("infallible");
    svc.call(request())
        .now_or_never()
        .expect("answered at once")
        .expect("infallible")
}

fn clone(req: &Request<ReplayBody>) -> Request<ReplayBody> {
    let mut clone = Request::new(req.body().clone());
    *clone.method_mut() = req.method().clone();
    *clone.uri_mut() = req.uri().clone();
    *clone.version_mut() = req.version();
    *clone.headers_mut() = req.headers().clone();
    *clone.extensions_mut() = req.extensions().clone();
    clone
}

fn svc_call<S>(svc: &mut S, req: Request<ReplayBody>, kept: Request<ReplayBody>) -> Response<Bytes>
where
    S: Service<Request<ReplayBody>, Response = Response<Bytes>, Error = Infallible>,
{
    svc.ready()
        .now_or_never()
        .expect("ready")
        .expect("infallible");
    let response = svc
        .call(req)
        .now_or_never()
        .expect("answered at once")
        .expect("infallible");
    drop(black_box(kept));
    response
}

fn no_retry(c: &mut Criterion) {
    let mut group = c.benchmark_group("no_retry");

    let mut bare = ok_service();
    group.bench_function("bare", |b| b.iter(|| black_box(drive(&mut bare))));

    // What tower's `Retry` needs whatever the policy: a copy of the request
    // kept until the answer is in.
    let mut bare = ok_service();
    group.bench_function("bare+request_clone", |b| {
        b.iter(|| {
            let req = request();
            let kept = clone(&req);
            svc_call(&mut bare, req, kept)
        })
    });

    let mut retry = Retry::new(RetryAfterPolicy::new("anthropic"), ok_service());
    group.bench_function("retry/default", |b| b.iter(|| black_box(drive(&mut retry))));

    let policy = RetryAfterPolicy::builder("anthropic")
        .no_budget()
        .build()
        .expect("valid settings");
    let mut retry = Retry::new(policy, ok_service());
    group.bench_function("retry/no_budget", |b| {
        b.iter(|| black_box(drive(&mut retry)))
    });

    group.finish();
}

/// The overhead measured directly: batches of the retry stack and of the
/// bare service alternate, and the bench reports the difference per
/// request, so that load from other processes (which shifts whole runs)
/// falls on both sides alike.
fn overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("no_retry_overhead");
    let mut retry = Retry::new(RetryAfterPolicy::new("anthropic"), ok_service());
    let mut bare = ok_service();
    group.bench_function("retry_minus_bare", |b| {
        difference(
            b,
            || drop(black_box(drive(&mut retry))),
            || drop(black_box(drive(&mut bare))),
        )
    });
    // The policy's own share: against a bare service that also keeps the
    // request copy tower's `Retry` needs.
    group.bench_function("retry_minus_bare_and_request_clone", |b| {
        difference(
            b,
            || drop(black_box(drive(&mut retry))),
            || {
                let req = request();
                let kept = clone(&req);
                drop(black_box(svc_call(&mut bare, req, kept)));
            },
        )
    });
    group.finish();
}

/// Times `with` minus `without` per iteration, in alternating batches.
fn difference(b: &mut criterion::Bencher<'_>, mut with: impl FnMut(), mut without: impl FnMut()) {
    b.iter_custom(|iters| {
        let (mut t_with, mut t_without) = (Duration::ZERO, Duration::ZERO);
        let mut done = 0;
        while done < iters {
            let n = (iters - done).min(64);
            let t = Instant::now();
            for _ in 0..n {
                without();
            }
            t_without += t.elapsed();
            let t = Instant::now();
            for _ in 0..n {
                with();
            }
            t_with += t.elapsed();
            done += n;
        }
        // A sample where load hit the `without` side harder would come out
        // negative; criterion needs a positive time, so floor it (a bias
        // against the policy, not for it).
        t_with
            .saturating_sub(t_without)
            .max(Duration::from_nanos(1))
    })
}

criterion_group!(benches, no_retry, overhead);
criterion_main!(benches);
