//! The usage layer over a real route stack against the simulator.
//!
//! `Usage` -> `Failover` (two routes, both faces) -> per route `Retry` ->
//! `Normalize` -> an endpoint service setting URL and key -> hyper-util.
//! Token counts in the records are checked against what the client read:
//! each body is parsed on the client side, independently of the layer.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::usage::{TokenUsage, UsageHook, UsageRecord};
use claude_tower_core::{AuthMethod, Caller, ErrorClass, Face, ReplayBody, RouteId};
use claude_tower_failover::Failover;
use claude_tower_normalize::NormalizeLayer;
use claude_tower_retry::{Retry, RetryAfterPolicy, RetryLayer};
use claude_tower_sim::{Sim, SimConfig};
use claude_tower_usage::{Usage, UsageLayer};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

#[derive(Clone)]
struct Endpoint {
    client: Client<HttpConnector, ReplayBody>,
    url: Uri,
}

impl Service<Request<ReplayBody>> for Endpoint {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<ReplayBody>>::poll_ready(&mut self.client, cx)
    }

    fn call(&mut self, mut req: Request<ReplayBody>) -> Self::Future {
        let mut url = self.url.to_string();
        if let Some(q) = req.uri().query() {
            url = format!("{url}?{q}");
        }
        *req.uri_mut() = url.parse().unwrap();
        let h = req.headers_mut();
        h.insert("x-api-key", HeaderValue::from_static("k"));
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        self.client.request(req)
    }
}

type Route = Retry<claude_tower_normalize::Normalize<Endpoint>>;

fn route(sim: &Sim, face: Face) -> (RouteId, Route) {
    let (id, base) = match face {
        Face::Anthropic => ("anthropic", sim.anthropic_base_url()),
        _ => ("foundry", sim.foundry_base_url()),
    };
    let route = RouteId::new(id);
    let policy = RetryAfterPolicy::builder(route.clone())
        .with_max_attempts(3)
        .with_max_retry_after(Duration::from_secs(30))
        .with_jitter(|| 0.5)
        .no_budget()
        .build()
        .expect("valid retry settings");
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .layer(NormalizeLayer::new(route.clone(), face))
        .service(Endpoint {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url: format!("{base}/v1/messages").parse().unwrap(),
        });
    (route, stack)
}

type Records = Arc<Mutex<Vec<UsageRecord>>>;

struct Setup {
    sim: Sim,
    svc: Usage<Failover<Route>>,
    records: Records,
}

async fn setup(order: [Face; 2]) -> Setup {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let (a, b) = (route(&sim, order[0]), route(&sim, order[1]));
    let failover = Failover::builder().route(a.0, a.1).route(b.0, b.1).build();
    let records: Records = Arc::default();
    let sink = Arc::clone(&records);
    let layer = UsageLayer::new().sink(move |r: &UsageRecord| sink.lock().unwrap().push(r.clone()));
    Setup {
        svc: layer.layer(failover),
        sim,
        records,
    }
}

fn body(stream: bool, tool: bool, text: &str) -> String {
    let tools = if tool {
        r#","tools":[{"name":"search","description":"d","input_schema":{"type":"object"}}]"#
    } else {
        ""
    };
    let marker = if tool { " sim:tool_use" } else { "" };
    format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":64,"stream":{stream}{tools},"messages":[{{"role":"user","content":"{text}{marker}"}}]}}"#
    )
}

fn request(caller: &str, body: String) -> Request<ReplayBody> {
    let mut req = Request::post("/v1/messages?beta=true")
        .body(ReplayBody::from(body))
        .unwrap();
    req.extensions_mut()
        .insert(Caller::new(caller.to_owned(), AuthMethod::ClientKey));
    req
}

/// The usage a client reads from a body: the JSON `usage`, or the stream's
/// `message_start` then `message_delta` usage, merged field by field.
fn client_usage(bytes: &[u8], streamed: bool) -> TokenUsage {
    let mut usage = TokenUsage::default();
    let mut merge = |u: &Value| {
        let get = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(n) = get("input_tokens") {
            usage.input = n;
        }
        if let Some(n) = get("output_tokens") {
            usage.output = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            usage.cache_creation_input = n;
        }
        if let Some(n) = get("cache_read_input_tokens") {
            usage.cache_read_input = n;
        }
    };
    let text = std::str::from_utf8(bytes).unwrap();
    if !streamed {
        let v: Value = serde_json::from_str(text).unwrap();
        merge(&v["usage"]);
        return usage;
    }
    for event in text.split("\n\n") {
        let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        match v["type"].as_str() {
            Some("message_start") => merge(&v["message"]["usage"]),
            Some("message_delta") => merge(&v["usage"]),
            _ => {}
        }
    }
    usage
}

fn sum(a: TokenUsage, b: TokenUsage) -> TokenUsage {
    TokenUsage {
        input: a.input + b.input,
        output: a.output + b.output,
        cache_creation_input: a.cache_creation_input + b.cache_creation_input,
        cache_read_input: a.cache_read_input + b.cache_read_input,
    }
}

#[tokio::test(start_paused = true)]
async fn a_mix_of_requests_sums_to_what_the_clients_read() {
    let s = setup([Face::Anthropic, Face::Foundry]).await;
    let mut client_total = TokenUsage::default();
    let mut n = 0;
    for (i, (stream, tool)) in [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .cycle()
        .take(12)
        .enumerate()
    {
        let caller = if i % 3 == 0 { "alice" } else { "bob" };
        let text = "x".repeat(10 + i * 37);
        let res = s
            .svc
            .clone()
            .oneshot(request(caller, body(stream, tool, &text)))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        client_total = sum(client_total, client_usage(&bytes, stream));
        n += 1;
    }
    let records = s.records.lock().unwrap().clone();
    assert_eq!(records.len(), n);
    let layer_total = records.iter().fold(TokenUsage::default(), |t, r| {
        sum(t, r.usage.expect("usage known"))
    });
    assert_eq!(layer_total, client_total);
    assert!(client_total.input > 0 && client_total.output > 0);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.streamed, i % 2 == 1);
        assert_eq!(r.route.as_ref().map(RouteId::as_str), Some("anthropic"));
        assert_eq!(r.face, Some(Face::Anthropic));
        assert_eq!(r.attempts, 1);
        assert_eq!(r.requested_model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(r.response_model.as_deref(), Some("claude-sonnet-4-5"));
        let tool = i % 4 >= 2;
        assert_eq!(
            r.stop_reason.as_deref(),
            Some(if tool { "tool_use" } else { "end_turn" })
        );
        assert!(!r.local && !r.client_disconnected && r.error_class.is_none());
        assert!(
            r.request_ids
                .request_id()
                .is_some_and(|id| id.starts_with("req_sim_"))
        );
        if r.streamed {
            assert!(r.time_to_first_chunk.is_some());
        }
    }
    let by_alice = records
        .iter()
        .filter(|r| r.caller.as_ref().is_some_and(|c| c.id() == "alice"))
        .count();
    assert_eq!(by_alice, 4);
    assert_eq!(s.sim.requests().len(), n);
}

#[tokio::test(start_paused = true)]
async fn a_retried_fault_and_a_failover_count_their_attempts() {
    let s = setup([Face::Anthropic, Face::Foundry]).await;
    s.sim.set_faults("anthropic=429;foundry=ok").unwrap();
    let res = s
        .svc
        .clone()
        .oneshot(request("alice", body(true, false, "hello")))
        .await
        .unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let r = s.records.lock().unwrap().pop().unwrap();
    assert_eq!(r.usage, Some(client_usage(&bytes, true)));
    assert_eq!(r.attempts, 2, "one 429, then the retry on the same route");
    assert_eq!(r.route.as_ref().map(RouteId::as_str), Some("anthropic"));

    s.sim.set_faults("anthropic=500*3;foundry=ok").unwrap();
    let res = s
        .svc
        .clone()
        .oneshot(request("alice", body(false, false, "hello")))
        .await
        .unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let r = s.records.lock().unwrap().pop().unwrap();
    assert_eq!(r.usage, Some(client_usage(&bytes, false)));
    assert_eq!(r.route.as_ref().map(RouteId::as_str), Some("foundry"));
    assert_eq!(r.face, Some(Face::Foundry));
    assert_eq!(r.attempts, 4, "three on anthropic, one on foundry");
}

#[tokio::test(start_paused = true)]
async fn an_error_event_after_the_200_and_an_upstream_error() {
    let s = setup([Face::Foundry, Face::Anthropic]).await;
    s.sim.set_faults("foundry=stream-error").unwrap();
    let res = s
        .svc
        .clone()
        .oneshot(request("bob", body(true, false, "hi")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let r = s.records.lock().unwrap().pop().unwrap();
    assert_eq!(r.error_class, Some(ErrorClass::Overloaded));
    assert_eq!(r.usage, Some(client_usage(&bytes, true)));
    assert_eq!(r.face, Some(Face::Foundry));

    s.sim.set_faults("foundry=400;anthropic=400").unwrap();
    let res = s
        .svc
        .clone()
        .oneshot(request("bob", body(false, false, "hi")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    res.into_body().collect().await.unwrap();
    let r = s.records.lock().unwrap().pop().unwrap();
    assert_eq!(r.error_class, Some(ErrorClass::InvalidRequest));
    assert_eq!(r.usage, Some(TokenUsage::default()));
    assert!(!r.local);
}

#[tokio::test(start_paused = true)]
async fn a_client_gone_mid_stream_gives_one_record_with_what_it_read() {
    let s = setup([Face::Anthropic, Face::Foundry]).await;
    let mut req = request("carol", body(true, true, "long"));
    req.headers_mut()
        .insert("x-sim-stream-bytes", HeaderValue::from_static("1000000"));
    let res = s.svc.clone().oneshot(req).await.unwrap();
    let mut body = res.into_body();
    let mut read = Vec::new();
    while read.len() < 20_000 {
        let frame = body.frame().await.unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
        }
    }
    assert!(
        s.records.lock().unwrap().is_empty(),
        "no record before the end"
    );
    drop(body);
    let records = s.records.lock().unwrap().clone();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert!(r.client_disconnected);
    // What the client read: message_start's usage (the deltas carry none yet).
    let seen = client_usage(&read, true);
    assert!(seen.input > 0);
    assert_eq!(r.usage, Some(seen));
}

#[tokio::test(start_paused = true)]
async fn a_hook_inside_the_layer_is_called_exactly_once() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (id, route) = route(&sim, Face::Anthropic);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    // A settling layer inside Usage (what the quota does): puts a hook in.
    let hooked = tower::util::MapResponseLayer::new(move |mut res: Response<_>| {
        let seen = Arc::clone(&seen);
        res.extensions_mut()
            .insert(UsageHook::new(move |r: &UsageRecord| {
                seen.lock().unwrap().push(r.tokens());
            }));
        res
    });
    let failover = Failover::builder().route(id, route).build();
    let svc = ServiceBuilder::new()
        .layer(UsageLayer::new())
        .layer(hooked)
        .service(failover);
    let res = svc
        .clone()
        .oneshot(request("dan", body(true, false, "hi")))
        .await
        .unwrap();
    let bytes: Bytes = res.into_body().collect().await.unwrap().to_bytes();
    let res = svc
        .oneshot(request("dan", body(false, false, "hi")))
        .await
        .unwrap();
    let json: Bytes = res.into_body().collect().await.unwrap().to_bytes();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [client_usage(&bytes, true), client_usage(&json, false)]
    );
}
