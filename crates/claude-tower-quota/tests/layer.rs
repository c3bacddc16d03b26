//! The layer over the memory store: answers, headers, settlement.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::{
    AuthMethod, Caller, ClaudeError, ResponseBody, TokenUsage, UsageHook, UsageRecord,
};
use claude_tower_quota::{
    Estimate, HeaderPrecedence, Limits, MemoryStore, Policy, QuotaConfig, QuotaKey, QuotaLayer,
    Rate, Weights,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

type Res = Response<ResponseBody<Full<Bytes>>>;

fn request(caller: &str, body: &'static str) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::from_static(body.as_bytes())));
    req.extensions_mut()
        .insert(Caller::new(caller, AuthMethod::Token).with_groups(["devs"]));
    req
}

fn upstream(
    calls: Arc<AtomicUsize>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone {
    tower::service_fn(move |_req: Request<Full<Bytes>>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}")))) }
    })
}

async fn send<S>(svc: &mut S, req: Request<Full<Bytes>>) -> Res
where
    S: Service<Request<Full<Bytes>>, Response = Res, Error = Infallible>,
{
    svc.ready().await.unwrap().call(req).await.unwrap()
}

fn settle(res: &mut Res, status: StatusCode, usage: Option<TokenUsage>) {
    let hook = res
        .extensions_mut()
        .remove::<UsageHook>()
        .expect("admitted responses carry a hook");
    let mut record = UsageRecord::new(status);
    record.usage = usage;
    hook.call(&record);
    // Called twice (a buggy usage layer): counted once.
    hook.call(&record);
}

fn tokens(n: u64) -> Option<TokenUsage> {
    Some(TokenUsage {
        input: n,
        ..TokenUsage::default()
    })
}

async fn json(res: Res) -> serde_json::Value {
    let body = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn debt_is_waited_out_and_retry_after_when_honoured_is_admitted() {
    let calls = Arc::new(AtomicUsize::new(0));
    let policy = Policy::unlimited().with_tokens(Rate::per_minute(6_000).unwrap());
    let layer =
        QuotaLayer::new(Limits::new(policy), MemoryStore::new()).with_estimate(Estimate::none());
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(calls.clone()));

    let mut res = send(&mut svc, request("ada", "")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["anthropic-ratelimit-tokens-limit"], "6000");
    assert_eq!(
        res.headers()["anthropic-ratelimit-tokens-remaining"],
        "6000"
    );
    // 6500 tokens: 500 into debt at 100 tokens/s.
    settle(&mut res, StatusCode::OK, tokens(6_500));

    let res = send(&mut svc, request("ada", "")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "5");
    assert_eq!(res.headers()["retry-after-ms"], "5000");
    assert_eq!(res.headers()["x-should-retry"], "true");
    assert_eq!(res.headers()["anthropic-ratelimit-tokens-remaining"], "0");
    let reset = res.headers()["anthropic-ratelimit-tokens-reset"]
        .to_str()
        .unwrap();
    assert!(reset.ends_with('Z') && reset.contains('T'), "{reset}");
    assert!(res.extensions().get::<ClaudeError>().is_some());
    let v = json(res).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // Another caller is not affected.
    let res = send(&mut svc, request("bob", "")).await;
    assert_eq!(res.status(), StatusCode::OK);
    drop(res);

    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert_eq!(send(&mut svc, request("ada", "")).await.status(), 429);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(send(&mut svc, request("ada", "")).await.status(), 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "refused requests never reach upstream"
    );
    let health = layer.health();
    assert_eq!(health.settled, 1);
    // The admitted requests whose hooks were dropped: usage unknown.
    assert_eq!(health.unknown_usage, 2);
}

#[tokio::test(start_paused = true)]
async fn the_estimate_makes_concurrent_requests_see_each_other_and_is_settled() {
    let policy =
        Policy::unlimited().with_tokens(Rate::per_minute(600).unwrap().with_burst(100).unwrap());
    let layer = QuotaLayer::new(Limits::new(policy), MemoryStore::new());
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(Arc::new(AtomicUsize::new(0))));
    // 400 bytes = 100 tokens estimated: the bucket is empty after one.
    let body = &*"x".repeat(400).leak();
    let mut first = send(&mut svc, request("ada", body)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        send(&mut svc, request("ada", body)).await.status(),
        200,
        "not in deficit yet"
    );
    assert_eq!(send(&mut svc, request("ada", body)).await.status(), 429);
    // The first one used 10 tokens: 90 refunded.
    settle(&mut first, StatusCode::OK, tokens(10));
    let standing = layer
        .standing(&QuotaKey::caller("ada"))
        .await
        .unwrap()
        .tokens
        .unwrap();
    assert_eq!(standing.remaining, 0);
    assert_eq!(standing.debt, 10);
}

#[tokio::test(start_paused = true)]
async fn failures_settle_nothing_and_unknown_usage_keeps_the_estimate() {
    let policy = Policy::unlimited().with_quota("1000/day".parse().unwrap());
    let layer = QuotaLayer::new(Limits::new(policy), MemoryStore::new())
        .with_estimate(Estimate {
            bytes_per_token: 4.0,
            output_tokens: 100,
        })
        .with_weights(Weights {
            cache_read: 0.5,
            ..Weights::default()
        });
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(Arc::new(AtomicUsize::new(0))));
    let used = |layer: &QuotaLayer| {
        let layer = layer.clone();
        async move {
            layer
                .standing(&QuotaKey::caller("ada"))
                .await
                .unwrap()
                .quota
                .unwrap()
                .used
        }
    };
    // A 500 with no usage: refunded.
    let mut res = send(&mut svc, request("ada", "")).await;
    assert_eq!(used(&layer).await, 100);
    settle(&mut res, StatusCode::INTERNAL_SERVER_ERROR, None);
    assert_eq!(used(&layer).await, 0);
    // Weighted: 10 + 0.5 * 100 + 20.
    let mut res = send(&mut svc, request("ada", "")).await;
    settle(
        &mut res,
        StatusCode::OK,
        Some(TokenUsage {
            input: 10,
            output: 20,
            cache_read_input: 100,
            cache_creation_input: 0,
        }),
    );
    assert_eq!(used(&layer).await, 80);
    // A 200 whose usage could not be read, and a dropped hook: the estimate stands.
    let mut res = send(&mut svc, request("ada", "")).await;
    settle(&mut res, StatusCode::OK, None);
    drop(send(&mut svc, request("ada", "")).await);
    assert_eq!(used(&layer).await, 280);
    assert_eq!(layer.health().unknown_usage, 2);
    // The inner service failing: nothing billed.
    let failing = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Err::<Response<Full<Bytes>>, BoxError>("connection refused".into())
    });
    let mut failing = ServiceBuilder::new().layer(layer.clone()).service(failing);
    assert!(
        failing
            .ready()
            .await
            .unwrap()
            .call(request("ada", ""))
            .await
            .is_err()
    );
    assert_eq!(used(&layer).await, 280);
}

#[tokio::test(start_paused = true)]
async fn quota_answers_403_naming_the_reset() {
    let policy = Policy::unlimited().with_quota("100/month".parse().unwrap());
    let layer =
        QuotaLayer::new(Limits::new(policy), MemoryStore::new()).with_estimate(Estimate::none());
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(upstream(Arc::new(AtomicUsize::new(0))));
    let mut res = send(&mut svc, request("ada", "")).await;
    assert_eq!(res.headers()["x-quota-tokens-limit"], "100");
    assert_eq!(res.headers()["anthropic-ratelimit-tokens-limit"], "100");
    settle(&mut res, StatusCode::OK, tokens(150));
    let res = send(&mut svc, request("ada", "")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()["x-should-retry"], "false");
    assert_eq!(res.headers()["x-quota-tokens-remaining"], "0");
    let reset = res.headers()["x-quota-tokens-reset"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(reset.ends_with("-01T00:00:00Z"), "{reset}");
    let v = json(res).await;
    assert_eq!(v["error"]["type"], "permission_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&reset) && message.contains("per month"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn upstream_rate_limit_headers_win_unless_configured() {
    let upstream_with_headers = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"{}")));
        res.headers_mut().insert(
            "anthropic-ratelimit-requests-limit",
            "4000".parse().unwrap(),
        );
        Ok::<_, Infallible>(res)
    });
    let policy = Policy::unlimited().with_requests(Rate::per_minute(60).unwrap());
    let layer = QuotaLayer::new(Limits::new(policy), MemoryStore::new());
    let mut kept = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream_with_headers);
    let res = send(&mut kept, request("ada", "")).await;
    assert_eq!(res.headers()["anthropic-ratelimit-requests-limit"], "4000");
    assert!(
        res.headers()
            .get("anthropic-ratelimit-requests-remaining")
            .is_none()
    );

    let mut ours = ServiceBuilder::new()
        .layer(layer.with_upstream_headers(HeaderPrecedence::Ours))
        .service(upstream_with_headers);
    let res = send(&mut ours, request("ada", "")).await;
    assert_eq!(res.headers()["anthropic-ratelimit-requests-limit"], "60");
    assert_eq!(
        res.headers()["anthropic-ratelimit-requests-remaining"],
        "58"
    );
}

#[tokio::test(start_paused = true)]
async fn config_built_layer_keys_by_header_and_resolves_groups() {
    let config: QuotaConfig = serde_json::from_value(serde_json::json!({
        "key_header": "x-team",
        "default": {"requests_per_minute": 1},
        "groups": {"devs": {"requests_per_minute": 2}},
        "callers": {"blue": {"requests_per_minute": "unlimited"}},
    }))
    .unwrap();
    let layer = QuotaLayer::from_config(&config).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(calls.clone()));
    // A caller in `devs`: 2 per minute.
    for expect in [200, 200, 429] {
        assert_eq!(send(&mut svc, request("ada", "")).await.status(), expect);
    }
    // No caller: keyed by x-team; `blue` is unlimited, `red` has the default.
    let team = |t: &'static str| {
        let mut req = Request::new(Full::new(Bytes::new()));
        req.headers_mut().insert("x-team", t.parse().unwrap());
        req
    };
    for _ in 0..5 {
        assert_eq!(send(&mut svc, team("blue")).await.status(), 200);
    }
    assert!(
        send(&mut svc, team("blue"))
            .await
            .headers()
            .get("anthropic-ratelimit-requests-limit")
            .is_none()
    );
    for expect in [200, 429] {
        assert_eq!(send(&mut svc, team("red")).await.status(), expect);
    }
    // Neither: the global key.
    let anon = || Request::new(Full::new(Bytes::new()));
    for expect in [200, 429] {
        assert_eq!(send(&mut svc, anon()).await.status(), expect);
    }
    let keys: Vec<String> = layer
        .snapshot()
        .await
        .into_iter()
        .map(|s| s.key.to_string())
        .collect();
    assert_eq!(keys, ["caller:ada", "global", "header:red"]);
    let json = serde_json::to_value(layer.snapshot().await).unwrap();
    assert_eq!(json[0]["requests"]["limit"], 2);
    assert!(
        json[0]["requests"]["reset"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}

#[tokio::test(start_paused = true)]
async fn a_10kb_odd_caller_id_is_limited_like_any_other() {
    let odd: String = "ä{}\u{7f}\"\\ \t".repeat(1_200);
    assert!(odd.len() >= 10_000);
    let policy = Policy::unlimited().with_requests(Rate::per_minute(1).unwrap());
    let layer = QuotaLayer::new(Limits::new(policy), MemoryStore::new());
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(Arc::new(AtomicUsize::new(0))));
    let mk = || {
        let mut req = Request::new(Full::new(Bytes::new()));
        req.extensions_mut()
            .insert(Caller::new(odd.as_str(), AuthMethod::ClientKey));
        req
    };
    assert_eq!(send(&mut svc, mk()).await.status(), 200);
    assert_eq!(send(&mut svc, mk()).await.status(), 429);
    let snap = layer.snapshot().await;
    assert_eq!(snap.len(), 1);
    assert!(snap[0].key.as_str().len() < 64);
}
