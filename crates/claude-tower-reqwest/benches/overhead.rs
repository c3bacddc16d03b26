//! What claude-tower costs on the healthy path over reqwest, against the
//! simulator on loopback: a small non-streaming Messages call, answered 200.
//!
//! - `bare`: `reqwest::Client` alone.
//! - `client_with_middleware`: an empty `ClientWithMiddleware`.
//! - `claude_middleware`: `ClientWithMiddleware` with `ClaudeMiddleware`
//!   (two routes; the first serves).
//! - `reqwest_service_route`: Retry -> Normalize -> `ReqwestService`.
//!
//! Loopback HTTP dominates every figure; the differences are the overhead.
//!
//! `cargo bench -p claude-tower-reqwest --bench overhead -- --warm-up-time 1 --measurement-time 3`

use claude_tower::prelude::*;
use claude_tower::retry::{RetryAfterPolicy, RetryLayer};
use claude_tower_core::{Face, ReplayBody, RouteId};
use claude_tower_normalize::NormalizeLayer;
use claude_tower_reqwest::{ClaudeMiddleware, ReqwestService};
use claude_tower_sim::{Sim, SimConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use reqwest_middleware::ClientBuilder;
use tower::{ServiceBuilder, ServiceExt};

const BODY: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sim = rt
        .block_on(Sim::start(SimConfig::default().log_capacity(16)))
        .expect("simulator");
    let url = format!("{}/v1/messages", sim.anthropic_base_url());
    let client = reqwest::Client::new();

    let mut group = c.benchmark_group("healthy_call");

    group.bench_function("bare", |b| {
        b.iter(|| {
            rt.block_on(async {
                let response = client
                    .post(&url)
                    .header("x-api-key", "k")
                    .header("anthropic-version", "2023-06-01")
                    .body(BODY)
                    .send()
                    .await
                    .expect("response");
                response.bytes().await.expect("body")
            })
        })
    });

    let plain = ClientBuilder::new(client.clone()).build();
    group.bench_function("client_with_middleware", |b| {
        b.iter(|| {
            rt.block_on(async {
                let response = plain
                    .post(&url)
                    .header("x-api-key", "k")
                    .header("anthropic-version", "2023-06-01")
                    .body(BODY)
                    .send()
                    .await
                    .expect("response");
                response.bytes().await.expect("body")
            })
        })
    });

    let claude = ClientBuilder::new(client.clone())
        .with(
            ClaudeMiddleware::new(
                ClaudeStack::new()
                    .route(Route::new(
                        "anthropic",
                        Endpoint::anthropic_base_url(&sim.anthropic_base_url()).expect("URL"),
                        Credential::anthropic_api_key(Secret::new("k")).expect("key"),
                    ))
                    .route(Route::new(
                        "foundry",
                        Endpoint::foundry_base_url(&sim.foundry_base_url()).expect("URL"),
                        Credential::foundry_api_key(Secret::new("k")).expect("key"),
                    )),
            )
            .expect("middleware"),
        )
        .build();
    group.bench_function("claude_middleware", |b| {
        b.iter(|| {
            rt.block_on(async {
                let response = claude
                    .post(&url)
                    .header("x-api-key", "k")
                    .header("anthropic-version", "2023-06-01")
                    .body(BODY)
                    .send()
                    .await
                    .expect("response");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("body")
            })
        })
    });

    let route = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryAfterPolicy::new("anthropic")))
        .layer(NormalizeLayer::new(
            RouteId::new("anthropic"),
            Face::Anthropic,
        ))
        .service(ReqwestService::new(client.clone()));
    group.bench_function("reqwest_service_route", |b| {
        b.iter(|| {
            rt.block_on(async {
                let request = http::Request::post(&url)
                    .header("x-api-key", "k")
                    .header("anthropic-version", "2023-06-01")
                    .body(ReplayBody::from(BODY))
                    .expect("request");
                let response = route.clone().oneshot(request).await.expect("response");
                response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes()
            })
        })
    });

    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
