//! Failover against the simulator, with both faces.
//!
//! Each route is the real per-route stack over a real HTTP client:
//! claude-tower-retry's `Retry` (3 attempts, 30 s Retry-After cap, fixed
//! jitter, no budget so counts are exact) -> claude-tower-normalize's
//! `Normalize` -> `ModelMap` -> a small endpoint service that sets the
//! route's URL and key (standing in for Auth) -> hyper-util. Time is paused:
//! retry waits, cool-downs and `advance` cost nothing.

use std::task::{Context, Poll};
use std::time::Duration;

use claude_tower_core::{ClaudeError, ErrorClass, Face, ReplayBody, RouteId};
use claude_tower_failover::{BreakerConfig, CircuitState, Failover, FailoverReport};
use claude_tower_normalize::NormalizeLayer;
use claude_tower_retry::{Retry, RetryAfterPolicy, RetryLayer};
use claude_tower_sim::{RecordedRequest, Sim, SimConfig};
use claude_tower_toolpair::{ModelMapLayer, ModelMapping};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Sets the route's URL and credential, then sends (Auth's job in the real stack).
#[derive(Clone)]
struct Endpoint {
    client: Client<HttpConnector, ReplayBody>,
    url: Uri,
    key: &'static str,
}

impl Service<Request<ReplayBody>> for Endpoint {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<ReplayBody>>::poll_ready(&mut self.client, cx)
    }

    fn call(&mut self, mut req: Request<ReplayBody>) -> Self::Future {
        *req.uri_mut() = self.url.clone();
        let h = req.headers_mut();
        h.insert("x-api-key", HeaderValue::from_static(self.key));
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        self.client.request(req)
    }
}

type Route = Retry<claude_tower_normalize::Normalize<claude_tower_toolpair::ModelMap<Endpoint>>>;

fn route(sim: &Sim, face: Face) -> (RouteId, Route) {
    let (id, base, key) = match face {
        Face::Anthropic => ("anthropic", sim.anthropic_base_url(), "ak"),
        _ => ("foundry", sim.foundry_base_url(), "fk"),
    };
    let route = RouteId::new(id);
    let mapping = match face {
        Face::Anthropic => ModelMapping::new(),
        _ => ModelMapping::new()
            .exact("claude-sonnet-4-5-20250929", "claude-sonnet-4-5")
            .alias("sonnet", "claude-sonnet-4-5-20250929"),
    };
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
        .layer(ModelMapLayer::new(mapping))
        .service(Endpoint {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url: format!("{base}/v1/messages").parse().unwrap(),
            key,
        });
    (route, stack)
}

async fn sim() -> Sim {
    Sim::start(SimConfig::default().anthropic_key("ak").foundry_key("fk"))
        .await
        .expect("sim starts")
}

fn failover(sim: &Sim, order: [Face; 2], breaker: BreakerConfig) -> Failover<Route> {
    let (first, second) = (route(sim, order[0]), route(sim, order[1]));
    Failover::builder()
        .route(first.0, first.1)
        .route(second.0, second.1)
        .with_breaker(breaker)
        .build()
}

const BODY: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":16,"metadata":{"user_id":"u"},"messages":[{"role":"user","content":"hi"}]}"#;

type Body = claude_tower_normalize::NormalizeBody<Incoming>;

async fn send(f: &Failover<Route>) -> Result<Response<Body>, ClaudeError> {
    let req = Request::post("/v1/messages")
        .body(ReplayBody::from(BODY))
        .unwrap();
    f.clone().oneshot(req).await
}

fn report(res: &Response<Body>) -> &FailoverReport {
    res.extensions().get::<FailoverReport>().expect("report")
}

fn on(log: &[RecordedRequest], face: Face) -> Vec<&RecordedRequest> {
    log.iter().filter(|r| r.route == face).collect()
}

#[tokio::test(start_paused = true)]
async fn overloaded_anthropic_is_served_by_foundry_with_its_deployment_name() {
    let sim = sim().await;
    sim.set_faults("anthropic=529*10").unwrap();
    let f = failover(&sim, [Face::Anthropic, Face::Foundry], BreakerConfig::new());
    let res = send(&f).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let r = report(&res);
    assert_eq!(r.served_by().unwrap(), "foundry");
    assert_eq!(r.to_string(), "anthropic=3, foundry=1");

    let log = sim.requests();
    let (a, fo) = (on(&log, Face::Anthropic), on(&log, Face::Foundry));
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|r| r.status == 529));
    assert_eq!(a[0].model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(fo.len(), 1);
    assert_eq!(
        fo[0].model.as_deref(),
        Some("claude-sonnet-4-5"),
        "mapped per route"
    );
    assert_eq!(
        fo[0].body_len,
        BODY.len() - "-20250929".len(),
        "only the model changed"
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_request_and_auth_fail_fast_and_never_reach_foundry() {
    let sim = sim().await;
    let f = failover(&sim, [Face::Anthropic, Face::Foundry], BreakerConfig::new());
    for (script, status, class) in [
        ("anthropic=400", 400, ErrorClass::InvalidRequest),
        ("anthropic=401", 401, ErrorClass::Auth),
        ("anthropic=403", 403, ErrorClass::Auth),
        // The Anthropic face answers a transient-auth step with a plain 401
        // "invalid x-api-key": that is Auth on this face, so no failover.
        ("anthropic=transient-auth", 401, ErrorClass::Auth),
    ] {
        sim.reset();
        sim.set_faults(script).unwrap();
        let res = send(&f).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{script}");
        assert_eq!(
            res.extensions().get::<ClaudeError>().unwrap().class(),
            class
        );
        let r = report(&res);
        assert_eq!(r.to_string(), "anthropic=1", "{script}");
        assert_eq!(r.answered_by().unwrap(), "anthropic");
        let log = sim.requests();
        assert_eq!(on(&log, Face::Anthropic).len(), 1, "{script}: not retried");
        assert!(
            on(&log, Face::Foundry).is_empty(),
            "{script}: never sent to Foundry"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn foundry_transient_auth_is_retried_then_failed_over() {
    let sim = sim().await;
    sim.set_faults("foundry=transient-auth*5").unwrap();
    let f = failover(&sim, [Face::Foundry, Face::Anthropic], BreakerConfig::new());
    let res = send(&f).await.unwrap();
    let r = report(&res);
    assert_eq!(r.served_by().unwrap(), "anthropic");
    assert_eq!(r.to_string(), "foundry=3, anthropic=1");
    let log = sim.requests();
    assert_eq!(on(&log, Face::Foundry).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn missing_foundry_deployment_fails_over_without_retrying() {
    let sim = sim().await;
    sim.set_faults("foundry=404:deployment").unwrap();
    let f = failover(&sim, [Face::Foundry, Face::Anthropic], BreakerConfig::new());
    let res = send(&f).await.unwrap();
    assert_eq!(report(&res).to_string(), "foundry=1, anthropic=1");
    assert_eq!(report(&res).served_by().unwrap(), "anthropic");
    let log = sim.requests();
    assert_eq!(on(&log, Face::Foundry)[0].status, 404);
    assert_eq!(
        on(&log, Face::Anthropic)[0].model.as_deref(),
        Some("claude-sonnet-4-5-20250929"),
        "Anthropic gets the model id unmapped"
    );
}

#[tokio::test(start_paused = true)]
async fn long_retry_after_date_opens_the_breaker_instead_of_stalling() {
    let sim = sim().await;
    sim.set_faults("anthropic=429:date+120s").unwrap();
    let f = failover(&sim, [Face::Anthropic, Face::Foundry], BreakerConfig::new());
    let health = f.breakers();
    let started = tokio::time::Instant::now();
    let res = send(&f).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "no 120 s stall");
    assert_eq!(report(&res).to_string(), "anthropic=1, foundry=1");
    let a = health.get("anthropic").unwrap();
    assert_eq!(a.state(), CircuitState::Open);
    let secs = a.seconds_until_reopen();
    assert!((118..=121).contains(&secs), "open ~120 s, got {secs}");

    // While open: straight to Foundry, zero Anthropic attempts.
    tokio::time::advance(Duration::from_secs(100)).await;
    for _ in 0..3 {
        let res = send(&f).await.unwrap();
        assert_eq!(report(&res).to_string(), "foundry=1");
    }
    assert_eq!(on(&sim.requests(), Face::Anthropic).len(), 1);

    // After it: one probe (the script is spent, so it succeeds) closes it.
    tokio::time::advance(Duration::from_secs(21)).await;
    let res = send(&f).await.unwrap();
    assert_eq!(report(&res).to_string(), "anthropic=1");
    assert_eq!(
        health.get("anthropic").unwrap().state(),
        CircuitState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_the_breaker_and_a_probe_closes_it() {
    let sim = sim().await;
    sim.set_faults("anthropic=500*100").unwrap();
    let cfg = BreakerConfig::new()
        .with_failure_threshold(2)
        .with_cool_down(Duration::from_secs(10));
    let f = failover(&sim, [Face::Anthropic, Face::Foundry], cfg);
    for _ in 0..2 {
        let res = send(&f).await.unwrap();
        assert_eq!(report(&res).to_string(), "anthropic=3, foundry=1");
    }
    let health = f.breakers();
    assert_eq!(health.get("anthropic").unwrap().state(), CircuitState::Open);
    assert_eq!(health.get("anthropic").unwrap().consecutive_failures(), 2);

    let res = send(&f).await.unwrap();
    assert_eq!(report(&res).to_string(), "foundry=1");
    assert_eq!(on(&sim.requests(), Face::Anthropic).len(), 6);

    // Cool-down over, Anthropic healthy again: the probe closes the breaker.
    tokio::time::advance(Duration::from_secs(10)).await;
    sim.set_faults("anthropic=ok").unwrap();
    let res = send(&f).await.unwrap();
    assert_eq!(report(&res).to_string(), "anthropic=1");
    let snap = health.snapshot();
    assert_eq!(snap[0].state(), CircuitState::Closed);
    assert_eq!(snap[0].consecutive_failures(), 0);
}

#[tokio::test(start_paused = true)]
async fn both_routes_down_returns_the_primarys_answer() {
    let sim = sim().await;
    sim.set_faults("anthropic=529*10;foundry=reset*10").unwrap();
    let f = failover(&sim, [Face::Anthropic, Face::Foundry], BreakerConfig::new());
    let res = send(&f).await.unwrap();
    assert_eq!(
        res.status().as_u16(),
        529,
        "a response beats a transport error"
    );
    let r = report(&res);
    assert_eq!(r.answered_by().unwrap(), "anthropic");
    assert!(!r.succeeded());
    assert_eq!(r.attempts_on("anthropic"), 3);
    // Three connections reset: Retry's count rides on the error.
    assert_eq!(r.attempts_on("foundry"), 3, "{r}");
    assert_eq!(on(&sim.requests(), Face::Foundry).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn every_route_without_an_answer_names_none() {
    let sim = sim().await;
    sim.set_faults("reset*10").unwrap();
    let f = failover(&sim, [Face::Anthropic, Face::Foundry], BreakerConfig::new());
    let err = send(&f).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport);
    let r = FailoverReport::from_error(&err).expect("report");
    assert_eq!(r.answered_by(), None, "no route answered");
    assert_eq!(r.to_string(), "anthropic=3, foundry=3");
}

const STREAM_BODY: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

async fn send_stream(f: &Failover<Route>) -> Response<Body> {
    let req = Request::post("/v1/messages")
        .body(ReplayBody::from(STREAM_BODY))
        .unwrap();
    f.clone().oneshot(req).await.expect("a response")
}

#[tokio::test(start_paused = true)]
async fn streams_pass_through_and_are_judged_on_the_head_only() {
    use http_body_util::BodyExt;
    let sim = sim().await;

    // Served by the fallback, the SSE stream arrives whole.
    sim.set_faults("anthropic=529*10").unwrap();
    let f = failover(&sim, [Face::Anthropic, Face::Foundry], BreakerConfig::new());
    let res = send_stream(&f).await;
    assert_eq!(report(&res).served_by().unwrap(), "foundry");
    let text =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: message_stop"));

    // An error event after a 200 head is the caller's to see: no failover.
    sim.reset();
    sim.set_faults("anthropic=stream-error").unwrap();
    let res = send_stream(&f).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(report(&res).to_string(), "anthropic=1");
    let _ = res.into_body().collect().await;
    assert!(on(&sim.requests(), Face::Foundry).is_empty());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn step() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            4 => Just("ok"),
            1 => Just("429"),
            1 => Just("429:1s"),
            1 => Just("429:date+120s"),
            1 => Just("529"),
            1 => Just("503"),
            1 => Just("500"),
            1 => Just("400"),
            1 => Just("401"),
            1 => Just("404:deployment"),
            1 => Just("transient-auth"),
            1 => Just("reset"),
        ]
    }

    fn fail_fast(status: u16, face: Face) -> bool {
        // 400, and 401/403 other than Foundry's transient-auth (which the
        // step column tells apart).
        status == 400 || ((status == 401 || status == 403) && face == Face::Anthropic)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn no_request_lost_no_invalid_request_resent_attempts_bounded(
            a in proptest::collection::vec(step(), 1..8),
            b in proptest::collection::vec(step(), 1..8),
            gaps in proptest::collection::vec(0u64..40, 5),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let sim = sim().await;
                sim.set_faults(&format!("anthropic={};foundry={}", a.join(","), b.join(","))).unwrap();
                let f = failover(&sim, [Face::Anthropic, Face::Foundry], BreakerConfig::new().with_failure_threshold(2));
                let mut seen = 0;
                for gap in gaps {
                    tokio::time::advance(Duration::from_secs(gap)).await;
                    let outcome = send(&f).await;
                    let log = sim.requests();
                    let new = &log[seen..];
                    seen = log.len();
                    let (on_a, on_f) = (on(new, Face::Anthropic), on(new, Face::Foundry));
                    // Attempts within the limits: 3 per route, every request tried.
                    prop_assert!(on_a.len() <= 3 && on_f.len() <= 3);
                    prop_assert!(!new.is_empty());
                    // Anthropic is tried first whenever both are: a fail-fast
                    // answer there never reaches Foundry.
                    if let Some(last) = on_a.last() && !on_f.is_empty() {
                        prop_assert!(!fail_fast(last.status, Face::Anthropic), "{} resent", last.step);
                    }
                    // No request lost: a success, a classified failure, or a ClaudeError.
                    let report = match &outcome {
                        Ok(res) => {
                            let failed = res.extensions().get::<ClaudeError>().is_some();
                            prop_assert_eq!(failed, !res.status().is_success());
                            res.extensions().get::<FailoverReport>().cloned().expect("report")
                        }
                        Err(err) => FailoverReport::from_error(err).cloned().expect("report"),
                    };
                    prop_assert!(report.attempts_on("anthropic") as usize <= on_a.len().max(1));
                    prop_assert!(report.attempts_on("foundry") as usize <= on_f.len().max(1));
                    prop_assert_eq!(report.attempts_on("anthropic") == 0, on_a.is_empty());
                    prop_assert_eq!(report.attempts_on("foundry") == 0, on_f.is_empty());
                }
                Ok(())
            })?;
        }
    }
}
