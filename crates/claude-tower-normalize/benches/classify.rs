//! `classify` on the two shapes that matter: a success (the hot path, which
//! must cost next to nothing) and a 1 KiB Foundry error body.

use std::hint::black_box;
use std::time::SystemTime;

use claude_tower_core::Face;
use claude_tower_normalize::classify;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, StatusCode};

fn foundry_error_body() -> Vec<u8> {
    let prefix = r#"{"error":{"code":"429","message":"Requests to the Messages API have exceeded the token rate limit of your current pricing tier. "#;
    let suffix = r#"","innererror":{"code":"rate_limit_exceeded"}}}"#;
    let mut message = String::new();
    while prefix.len() + message.len() + suffix.len() < 1024 {
        message.push_str("Please retry after the interval in the Retry-After header. ");
    }
    message.truncate(1024 - prefix.len() - suffix.len());
    let body = format!("{prefix}{message}{suffix}");
    assert_eq!(body.len(), 1024);
    body.into_bytes()
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    let mut ok_headers = HeaderMap::new();
    ok_headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    ok_headers.insert("request-id", HeaderValue::from_static("req_011CSim"));
    c.bench_function("classify/success", |b| {
        b.iter(|| {
            classify(
                black_box(Face::Anthropic),
                black_box(StatusCode::OK),
                black_box(&ok_headers),
                black_box(b""),
                now,
            )
        })
    });

    let mut err_headers = HeaderMap::new();
    err_headers.insert("content-type", HeaderValue::from_static("application/json"));
    err_headers.insert("apim-request-id", HeaderValue::from_static("5b1c2d3e-apim"));
    err_headers.insert("x-ms-request-id", HeaderValue::from_static("9f2e-ms"));
    err_headers.insert("retry-after", HeaderValue::from_static("2"));
    let body = foundry_error_body();
    c.bench_function("classify/foundry_1kib_error", |b| {
        b.iter(|| {
            classify(
                black_box(Face::Foundry),
                black_box(StatusCode::TOO_MANY_REQUESTS),
                black_box(&err_headers),
                black_box(&body),
                now,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
