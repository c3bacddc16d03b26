//! What the identity layer costs per request.
//!
//! - `token/cached`: an Entra-sized RS256 token (about 1.6 KiB, 20 groups)
//!   seen before: one SHA-256 and one map read. Target: 2 µs.
//! - `token/first_rs256`: the same token with the cache off: decode, RS256
//!   signature, claim checks, policy, the `Caller`. Target: 100 µs.
//! - `client_key`: a key checked against ten stored hashes. Target: 500 ns.
//! - `service/cached`: the cached token through `Identity<S>::call` over a
//!   service that answers at once: the layer's whole overhead, no box.
//! - `reference/sha256_token`: SHA-256 of the token alone, the floor of the
//!   cached path; on a loaded machine compare the others against it.

use std::convert::Infallible;
use std::hint::black_box;

use claude_tower_identity::test_util::{SigningKey, jwks, now};
use claude_tower_identity::{IdentityConfig, IdentityLayer};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, Request, Response};
use serde_json::json;
use tower::{Layer, Service};

const ISS: &str = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
const AUD: &str = "https://cognitiveservices.azure.com";

fn layer(key: &SigningKey, cache: usize) -> IdentityLayer {
    let mut config = IdentityConfig::default()
        .with_issuer_keys(ISS, jwks(&[key]))
        .with_audience(AUD)
        .with_required_role("Claude.Use")
        .with_token_cache_size(cache);
    for i in 0..10 {
        config =
            config.with_client_key(format!("dev-{i}"), format!("k-{i:02}-7f3a9c1e5b2d4f6a8c0e"));
    }
    IdentityLayer::new(config).expect("bench settings")
}

fn entra_token(key: &SigningKey) -> String {
    let groups: Vec<String> = (0..20)
        .map(|i| format!("6f1c0e2a-0000-4000-8000-{i:012}"))
        .collect();
    key.sign(&json!({
        "aud": AUD, "iss": ISS, "iat": now(), "nbf": now(), "exp": now() + 3600,
        "aio": "AWQAm/8YAAAA", "azp": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "azpacr": "0",
        "name": "Ada Lovelace", "oid": "6f1c0e2a-0000-4000-8000-000000000001",
        "preferred_username": "ada@contoso.com", "rh": "0.AXEAv4j5cvGGr0GRqy180BHbR5W",
        "roles": ["Claude.Use"], "groups": groups, "scp": "user_impersonation",
        "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA", "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "upn": "ada@contoso.com", "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "2.0",
    }))
}

fn headers(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, HeaderValue::from_str(value).expect("a header value"));
    h
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::rsa("bench-1");
    let token = entra_token(&key);
    let bearer = headers("authorization", &format!("Bearer {token}"));
    let check = |layer: &IdentityLayer, h: &HeaderMap| {
        layer
            .authenticate(black_box(h))
            .now_or_never()
            .expect("no wait: keys are given")
            .expect("accepted")
    };

    let cached = layer(&key, 10_000);
    check(&cached, &bearer);
    c.bench_function("token/cached", |b| b.iter(|| check(&cached, &bearer)));

    let uncached = layer(&key, 0);
    c.bench_function("token/first_rs256", |b| {
        b.iter(|| check(&uncached, &bearer))
    });

    let key_headers = headers("x-api-key", "k-07-7f3a9c1e5b2d4f6a8c0e");
    c.bench_function("client_key", |b| b.iter(|| check(&cached, &key_headers)));

    let mut service = cached.layer(tower::service_fn(|_req: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(())))
    }));
    c.bench_function("service/cached", |b| {
        b.iter(|| {
            let mut request = Request::new(());
            *request.headers_mut() = bearer.clone();
            service
                .call(request)
                .now_or_never()
                .expect("ready")
                .expect("ok")
        })
    });
    c.bench_function("reference/sha256_token", |b| {
        b.iter(|| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, black_box(token.as_bytes()))
        })
    });
    eprintln!("token length: {} bytes", token.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
