//! The default stack, composed by `ClaudeStack`, against the simulator's two faces.

use std::time::Duration;

use bytes::Bytes;
use claude_tower::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use claude_tower::stack::{
    ATTEMPTS_HEADER, ClaudeBody, ClaudeService, MAX_ROUTES, ROUTE_HEADER, RouteInner, StackError,
};
use claude_tower::transport::{HttpsClient, https_client};
use claude_tower_core::Face;
use claude_tower_sim::{Sim, SimConfig};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;

const HELLO: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":32,"messages":[{"role":"user","content":"Hello"}]}"#;

fn fast_retry(id: &str) -> RetryAfterPolicy {
    RetryAfterPolicy::builder(id)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .no_budget()
        .build()
        .expect("valid retry settings")
}

async fn sim() -> Sim {
    Sim::start(
        SimConfig::default()
            .anthropic_key("sk-ant-route")
            .foundry_key("foundry-route-key"),
    )
    .await
    .expect("simulator starts")
}

fn anthropic(sim: &Sim) -> Route {
    Route::new(
        "anthropic",
        Endpoint::anthropic_base_url(&sim.anthropic_base_url()).unwrap(),
        Credential::anthropic_api_key(Secret::new("sk-ant-route")).unwrap(),
    )
}

fn foundry(sim: &Sim) -> Route {
    Route::new(
        "foundry",
        Endpoint::foundry_base_url(&sim.foundry_base_url()).unwrap(),
        Credential::foundry_api_key(Secret::new("foundry-route-key")).unwrap(),
    )
}

/// An anthropic route at a port nothing listens on (bound, read, closed).
fn unreachable() -> Route {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    Route::new(
        "anthropic",
        Endpoint::anthropic_base_url(&format!("http://{closed}")).unwrap(),
        Credential::anthropic_api_key(Secret::new("k")).unwrap(),
    )
}

fn stack(sim: &Sim) -> ClaudeService<HttpsClient> {
    ClaudeStack::new()
        .route(anthropic(sim).with_retry(fast_retry("anthropic")))
        .route(
            foundry(sim)
                .with_model_map(
                    ModelMapping::new().exact("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
                )
                .with_retry(fast_retry("foundry")),
        )
        .build(https_client().expect("TLS set up"))
        .expect("stack builds")
}

fn post(path: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        // A caller's own key: it must never reach either route.
        .header("x-api-key", "sk-ant-CALLER-SECRET")
        .header("authorization", "Bearer gateway-token")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn json(
    res: http::Response<impl http_body::Body<Data = Bytes, Error = impl std::fmt::Debug>>,
) -> (StatusCode, serde_json::Value) {
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn healthy_primary_serves_and_credentials_are_the_routes_own() {
    let sim = sim().await;
    let res = stack(&sim)
        .oneshot(post("/v1/messages?beta=true", HELLO))
        .await
        .unwrap();
    let report = res.extensions().get::<FailoverReport>().cloned().unwrap();
    assert_eq!(report.served_by().unwrap(), "anthropic");
    let (status, body) = json(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["type"], "message");

    let seen = sim.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].route, Face::Anthropic);
    assert!(seen[0].accepted, "the route's own key was accepted");
    assert_eq!(seen[0].query.as_deref(), Some("beta=true"));
}

#[tokio::test]
async fn overload_on_the_primary_fails_over_with_the_model_mapped() {
    let sim = sim().await;
    sim.set_faults("anthropic=529*10").unwrap();
    let res = stack(&sim)
        .oneshot(post("/v1/messages", HELLO))
        .await
        .unwrap();
    let report = res.extensions().get::<FailoverReport>().cloned().unwrap();
    let (status, body) = json(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(report.served_by().unwrap(), "foundry");
    assert_eq!(report.attempts_on("anthropic"), 3, "{report}");
    assert_eq!(report.attempts_on("foundry"), 1, "{report}");

    let foundry: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.route == Face::Foundry)
        .collect();
    assert_eq!(foundry.len(), 1);
    assert_eq!(
        foundry[0].model.as_deref(),
        Some("claude-sonnet-4-5"),
        "model mapped for Foundry"
    );
    assert!(foundry[0].accepted);
}

#[tokio::test]
async fn an_invalid_request_fails_fast_and_is_never_sent_twice() {
    let sim = sim().await;
    sim.set_faults("anthropic=400").unwrap();
    let (status, body) = json(
        stack(&sim)
            .oneshot(post("/v1/messages", HELLO))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let seen = sim.requests();
    assert_eq!(seen.len(), 1, "one attempt, on one route: {seen:?}");
    assert_eq!(seen[0].route, Face::Anthropic);
}

#[tokio::test]
async fn a_foundry_rate_limit_reaches_the_client_in_anthropics_shape() {
    let sim = sim().await;
    // Only Foundry, rate limited on every attempt, with an HTTP-date hint.
    sim.set_faults("foundry=429:xms20*10").unwrap();
    let only_foundry = ClaudeStack::new()
        .route(foundry(&sim).with_retry(fast_retry("foundry")))
        .build(https_client().unwrap())
        .unwrap();
    let res = only_foundry
        .oneshot(post("/v1/messages", HELLO))
        .await
        .unwrap();
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["retry-after-ms"], "20");
    let (status, body) = json(res).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(sim.requests().len(), 3, "three attempts on the one route");
}

#[tokio::test]
async fn broken_tool_pairing_is_rejected_before_any_request() {
    let sim = sim().await;
    let dangling = r#"{"model":"m","max_tokens":8,"messages":[
        {"role":"user","content":"weather?"},
        {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}]},
        {"role":"user","content":"never mind"}]}"#;
    let (status, body) = json(
        stack(&sim)
            .oneshot(post("/v1/messages", dangling))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1. \
         Each `tool_use` block must have a corresponding `tool_result` block in the next message."
    );
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_never_sent() {
    let sim = sim().await;
    let small = ClaudeStack::new()
        .route(anthropic(&sim))
        .with_body_limit(16)
        .build(https_client().unwrap())
        .unwrap();
    let (status, body) = json(small.oneshot(post("/v1/messages", HELLO)).await.unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["type"], "request_too_large");
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn no_route_reachable_is_a_502_envelope_not_an_error() {
    let dead = ClaudeStack::new()
        .route(unreachable().with_retry(fast_retry("anthropic")))
        .build(https_client().unwrap())
        .unwrap();
    let res = dead.oneshot(post("/v1/messages", HELLO)).await.unwrap();
    assert!(res.extensions().get::<ClaudeError>().is_some());
    let (status, body) = json(res).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["type"], "api_error");
}

#[test]
fn the_stack_is_what_axum_needs() {
    fn assert_axum_ready<S: Clone + Send + Sync + 'static>() {}
    assert_axum_ready::<ClaudeService<HttpsClient>>();
}

#[test]
fn the_body_implements_default_for_tower_http_timeouts() {
    fn assert_default<B: Default>() {}
    assert_default::<ClaudeBody<hyper::body::Incoming>>();
}

#[tokio::test]
async fn an_empty_stack_is_a_clear_error() {
    let err = ClaudeStack::new()
        .build(https_client().unwrap())
        .unwrap_err();
    assert_eq!(err.to_string(), "a Claude stack needs at least one route");
}

#[tokio::test]
async fn too_many_routes_is_an_error_not_a_truncation() {
    let mut stack = ClaudeStack::new();
    for i in 0..=MAX_ROUTES {
        stack = stack.route(Route::new(
            format!("r{i}"),
            Endpoint::anthropic(),
            Credential::anthropic_api_key(Secret::new("k")).unwrap(),
        ));
    }
    let err = stack.build(https_client().unwrap()).unwrap_err();
    assert_eq!(
        err,
        StackError::TooManyRoutes {
            count: MAX_ROUTES + 1
        }
    );
}

/// A transport that never answers.
fn silent() -> impl tower::Service<
    Request<ReplayBody>,
    Response = http::Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(|_req: Request<ReplayBody>| {
        std::future::pending::<Result<http::Response<Full<Bytes>>, std::convert::Infallible>>()
    })
}

fn key_route(id: &str) -> Route {
    Route::new(
        id,
        Endpoint::anthropic_base_url("http://127.0.0.1:9").unwrap(),
        Credential::anthropic_api_key(Secret::new("k")).unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn the_deadline_answers_504_when_no_head_comes_in_time() {
    let stack = ClaudeStack::new()
        .route(key_route("anthropic"))
        .with_deadline(Duration::from_secs(5))
        .build(silent())
        .unwrap();
    let started = tokio::time::Instant::now();
    let res = stack.oneshot(post("/v1/messages", HELLO)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(res.body().is_local());
    assert_eq!(
        res.extensions().get::<ClaudeError>().unwrap().class(),
        ErrorClass::Timeout
    );
    let (status, body) = json(res).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["error"]["type"], "timeout_error");
}

#[tokio::test]
async fn report_headers_name_the_route_and_the_attempts() {
    let sim = sim().await;
    sim.set_faults("anthropic=529*10").unwrap();
    let stack = ClaudeStack::new()
        .route(anthropic(&sim).with_retry(fast_retry("anthropic")))
        .route(foundry(&sim))
        .with_report_headers(true)
        .build(https_client().unwrap())
        .unwrap();
    let res = stack.oneshot(post("/v1/messages", HELLO)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[ROUTE_HEADER], "foundry");
    assert_eq!(res.headers()[ATTEMPTS_HEADER], "anthropic=3, foundry=1");

    // Off by default.
    let res = self::stack(&sim)
        .oneshot(post("/v1/messages", HELLO))
        .await
        .unwrap();
    assert!(res.headers().get(ATTEMPTS_HEADER).is_none());
}

#[tokio::test]
async fn the_route_header_follows_the_report_when_no_route_answered() {
    let dead = ClaudeStack::new()
        .route(unreachable().with_retry(fast_retry("anthropic")))
        .with_report_headers(true)
        .build(https_client().unwrap())
        .unwrap();
    let res = dead.oneshot(post("/v1/messages", HELLO)).await.unwrap();
    let report = res.extensions().get::<FailoverReport>().cloned().unwrap();
    assert_eq!(res.headers()[ATTEMPTS_HEADER], report.to_string().as_str());
    assert_eq!(
        res.headers().get(ROUTE_HEADER).map(|v| v.to_str().unwrap()),
        report.answered_by().map(RouteId::as_str),
    );
}

#[tokio::test]
async fn a_route_layer_runs_once_per_attempt_inside_retry() {
    let sim = sim().await;
    sim.set_faults("anthropic=503,ok").unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let stack = ClaudeStack::new()
        .route(
            anthropic(&sim)
                .with_retry(fast_retry("anthropic"))
                .layer(tower::limit::ConcurrencyLimitLayer::new(4))
                .layer(tower::layer::layer_fn(move |inner: RouteInner| {
                    let counter = counter.clone();
                    inner.map_request(move |req: Request<ReplayBody>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        req
                    })
                })),
        )
        .build(https_client().unwrap())
        .unwrap();
    let (status, body) = json(stack.oneshot(post("/v1/messages", HELLO)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "once per attempt");
}

#[tokio::test]
async fn a_per_attempt_timeout_in_a_route_layer_is_retried_as_a_timeout() {
    let sim = sim().await;
    sim.set_faults("anthropic=delay:5s").unwrap();
    let stack = ClaudeStack::new()
        .route(anthropic(&sim).with_retry(fast_retry("anthropic")).layer(
            tower::timeout::TimeoutLayer::new(Duration::from_millis(200)),
        ))
        .build(https_client().unwrap())
        .unwrap();
    let res = stack.oneshot(post("/v1/messages", HELLO)).await.unwrap();
    let report = res.extensions().get::<FailoverReport>().cloned().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(report.attempts_on("anthropic"), 2, "{report}");
}

/// A layer that records its name when a request passes.
#[derive(Clone)]
struct Mark {
    name: &'static str,
    order: Arc<Mutex<Vec<&'static str>>>,
}

impl<S> tower::Layer<S> for Mark {
    type Service = tower::util::MapRequest<
        S,
        Box<dyn Fn(Request<Full<Bytes>>) -> Request<Full<Bytes>> + Send + Sync>,
    >;

    fn layer(&self, inner: S) -> Self::Service {
        let (name, order) = (self.name, self.order.clone());
        tower::util::MapRequest::new(
            inner,
            Box::new(move |req| {
                order.lock().unwrap().push(name);
                req
            }),
        )
    }
}

#[tokio::test]
async fn stack_layers_wrap_the_whole_stack_first_added_outermost() {
    let sim = sim().await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mark = |name: &'static str| Mark {
        name,
        order: order.clone(),
    };
    let stack = ClaudeStack::new()
        .route(anthropic(&sim))
        .layer(mark("outer"))
        .layer(mark("inner"))
        .build(https_client().unwrap())
        .unwrap();
    assert_eq!(stack.breakers().snapshot().len(), 1);
    let res = stack.oneshot(post("/v1/messages", HELLO)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(*order.lock().unwrap(), ["outer", "inner"]);
}
