//! Cost of [`Auth`] per request: strip inbound credentials, rewrite the URI,
//! set `anthropic-version`, inject the route's credential (an API key, or a
//! cached Entra ID token). The inner service answers at once and hands the
//! request back in the response, which criterion drops outside the timed
//! loop: the figure is the layer's own work plus one `call` and one `poll`
//! (`inject/passthrough` is that floor without the layer).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::task::{Context, Poll};

use claude_tower_auth::{Auth, AuthLayer, Credential, Endpoint, Secret};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Layer, Service};

#[derive(Clone)]
struct Answer;

impl Service<Request<()>> for Answer {
    type Response = Response<Request<()>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Request<()>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        ready(Ok(Response::new(black_box(req))))
    }
}

/// What Claude Code sends a gateway in Foundry mode, minus the body.
fn inbound() -> Request<()> {
    inbound_at("/anthropic/v1/messages?beta=true")
}

/// What Claude Code sends a gateway in Anthropic mode.
fn inbound_direct() -> Request<()> {
    inbound_at("/v1/messages?beta=true")
}

/// Anthropic mode over HTTP/1.1 with `Connection: keep-alive`.
fn inbound_keep_alive() -> Request<()> {
    let mut request = inbound_direct();
    request
        .headers_mut()
        .insert("connection", http::HeaderValue::from_static("keep-alive"));
    request
}

fn inbound_at(path: &'static str) -> Request<()> {
    Request::post(path)
        .header("authorization", "Bearer developer-gateway-token")
        .header("x-api-key", "caller-key")
        .header("content-type", "application/json")
        .header(
            "anthropic-beta",
            "interleaved-thinking-2025-05-14,context-management-2025-06-27",
        )
        .header("x-stainless-lang", "js")
        .body(())
        .expect("request")
}

fn run(c: &mut Criterion, name: &str, svc: Auth<Answer>) {
    run_with(c, name, svc, inbound)
}

fn run_with(c: &mut Criterion, name: &str, mut svc: Auth<Answer>, input: fn() -> Request<()>) {
    c.bench_function(name, |b| {
        b.iter_batched(
            input,
            |req| svc.call(req).now_or_never(),
            BatchSize::SmallInput,
        )
    });
}

fn keys(c: &mut Criterion) {
    let anthropic = AuthLayer::new(
        Endpoint::anthropic(),
        Credential::anthropic_api_key(Secret::new("sk-ant-bench")).expect("key"),
    );
    run_with(
        c,
        "inject/anthropic-api-key",
        anthropic.layer(Answer),
        inbound_direct,
    );
    // An inbound `/anthropic` prefix sent to Anthropic direct: the one case
    // that builds a new path.
    run(
        c,
        "inject/anthropic-api-key-prefix-dropped",
        anthropic.layer(Answer),
    );

    // What Node's and Python's HTTP/1.1 clients add: a `Connection` to drop.
    run_with(
        c,
        "inject/anthropic-api-key-keep-alive",
        anthropic.layer(Answer),
        inbound_keep_alive,
    );

    let foundry = AuthLayer::new(
        Endpoint::foundry_resource("bench").expect("resource"),
        Credential::foundry_api_key(Secret::new("foundry-bench")).expect("key"),
    );
    run(c, "inject/foundry-api-key", foundry.layer(Answer));

    // The floor: the same call and poll without the layer.
    let mut bare = Answer;
    c.bench_function("inject/passthrough", |b| {
        b.iter_batched(
            inbound,
            |req| bare.call(req).now_or_never(),
            BatchSize::SmallInput,
        )
    });
}

#[cfg(feature = "entra")]
fn entra(c: &mut Criterion) {
    use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
    use azure_core::time::{Duration, OffsetDateTime};
    use std::sync::Arc;
    use tower::ServiceExt;

    #[derive(Debug)]
    struct Fixed;

    #[async_trait::async_trait]
    impl TokenCredential for Fixed {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            Ok(AccessToken::new(
                "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.bench",
                OffsetDateTime::now_utc() + Duration::hours(24),
            ))
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _entered = rt.enter();
    let layer = AuthLayer::new(
        Endpoint::foundry_resource("bench").expect("resource"),
        Credential::entra(Arc::new(Fixed)),
    );
    let svc = layer.layer(Answer);
    // Warm the cache: the first request fetches the token.
    rt.block_on(svc.clone().oneshot(inbound())).expect("warm");
    run(c, "inject/entra-cached-token", svc);
}

#[cfg(not(feature = "entra"))]
fn entra(_: &mut Criterion) {}

criterion_group!(benches, keys, entra);
criterion_main!(benches);
