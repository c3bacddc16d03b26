//! The cost of a quota check: the memory store (target <= 1 µs for check +
//! settle), the whole layer around a no-op service, and a Redis round trip.
//!
//! `cargo bench -p claude-tower-quota --bench quota -- --measurement-time 3 --warm-up-time 1`
//! (the Redis group needs `redis-server` on PATH and is skipped without it).

#[path = "../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use claude_tower_core::{AuthMethod, Caller};
use claude_tower_quota::{
    Limits, MemoryStore, Policy, QuotaKey, QuotaLayer, QuotaStore, Rate, RedisStore,
};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};

fn policy() -> Policy {
    Policy::unlimited()
        .with_tokens(Rate::per_minute(1_000_000_000).unwrap())
        .with_requests(Rate::per_minute(1_000_000_000).unwrap())
        .with_quota("1000000000000/month".parse().unwrap())
}

fn memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let store = MemoryStore::new();
    let policy = policy();
    let keys: Vec<QuotaKey> = (0..1_000)
        .map(|i| QuotaKey::caller(&format!("user{i}@contoso.com")))
        .collect();
    let mut i = 0;
    c.bench_function("memory check + settle", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let adm = store.check_now(&keys[i], &policy, 1_000);
            store.settle_now(black_box(adm.reservation.as_ref().unwrap()), 1_200);
        })
    });

    // The whole layer: key, policy, check, headers, hook, settlement.
    let layer = QuotaLayer::new(Limits::new(policy), store.clone());
    let mut svc = layer.layer(tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    let callers: Vec<Caller> = (0..1_000)
        .map(|i| Caller::new(format!("user{i}@contoso.com"), AuthMethod::Token))
        .collect();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    c.bench_function("layer call (memory store, no-op inner)", |b| {
        b.iter(|| {
            i = (i + 1) % callers.len();
            let mut req = Request::new(Full::new(Bytes::from_static(b"{}")));
            req.extensions_mut().insert(callers[i].clone());
            let mut fut = std::pin::pin!(svc.call(req));
            // The memory path is ready at once.
            let std::task::Poll::Ready(res) = fut.as_mut().poll(&mut cx) else {
                unreachable!()
            };
            black_box(res.unwrap());
        })
    });
}

fn redis(c: &mut Criterion) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("redis-server").is_file()));
    if !found {
        eprintln!("redis-server not on PATH: skipping the Redis benchmarks");
        return;
    }
    let server = support::RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(async {
        let s = RedisStore::builder(server.url()).build().unwrap();
        // Load the script and connect outside the measurement.
        let _ = s.check(&QuotaKey::caller("warm"), &policy(), 0).await;
        s
    });
    let policy = policy();
    // A caller seen once in a while: no lease, one EVALSHA round trip per
    // check (the keys come round every few seconds, past the store's "busy"
    // second).
    let keys: Vec<QuotaKey> = (0..200_000)
        .map(|i| QuotaKey::caller(&format!("dev{i}@contoso.com")))
        .collect();
    let mut next = 0;
    c.bench_function(
        "redis check, occasional caller (one EVALSHA round trip)",
        |b| {
            b.to_async(&rt).iter(|| {
                next = (next + 1) % keys.len();
                let key = &keys[next];
                async { black_box(store.check(key, &policy, 1_000).await) }
            })
        },
    );
    // One busy caller: its checks are answered from leases, a round trip
    // now and then. Estimates of 1 token keep the bucket far from empty.
    let key = QuotaKey::caller("ada@contoso.com");
    c.bench_function("redis check, busy caller (leases)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(store.check(&key, &policy, 1).await);
        })
    });
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
