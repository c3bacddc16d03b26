//! Passthrough routes under Failover, against simulators: a caller's
//! credential only ever reaches routes of the caller's face, a rejected
//! credential is the caller's answer (no failover, no breaker charge), and
//! a request without one is refused before anything is sent.

use std::time::Duration;

use bytes::Bytes;
use claude_tower_auth::{AuthLayer, Credential, Endpoint};
use claude_tower_core::{ClaudeError, ErrorClass, Face, ReplayBody, RouteId};
use claude_tower_failover::{BreakerConfig, CircuitState, Failover, FailoverReport};
use claude_tower_normalize::{NormalizeBody, NormalizeLayer};
use claude_tower_retry::{RetryAfterPolicy, RetryLayer};
use claude_tower_sim::{Sim, SimConfig};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

type Route =
    BoxCloneSyncService<Request<ReplayBody>, Response<NormalizeBody<Incoming>>, ClaudeError>;

const BODY: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

async fn sim() -> Sim {
    Sim::start(
        SimConfig::default()
            .anthropic_key("caller-anthropic-key")
            .foundry_key("caller-foundry-key"),
    )
    .await
    .expect("sim")
}

/// Retry -> Normalize -> Auth(passthrough) -> hyper-util, as the stack builds a route.
fn route(id: &str, sim: &Sim, face: Face) -> (RouteId, Route) {
    let id = RouteId::new(id);
    let endpoint = match face {
        Face::Anthropic => Endpoint::anthropic_base_url(&sim.anthropic_base_url()),
        _ => Endpoint::foundry_base_url(&sim.foundry_base_url()),
    }
    .expect("url");
    let policy = RetryAfterPolicy::builder(id.clone())
        .with_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .no_budget()
        .build()
        .expect("retry");
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .layer(NormalizeLayer::new(id.clone(), face))
        .layer(AuthLayer::new(endpoint, Credential::passthrough()).with_route(id.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http::<ReplayBody>());
    (id, BoxCloneSyncService::new(service))
}

fn failover(routes: impl IntoIterator<Item = (RouteId, Route)>) -> Failover<Route> {
    let mut builder =
        Failover::builder().with_breaker(BreakerConfig::new().with_failure_threshold(1));
    for (id, route) in routes {
        builder = builder.route(id, route);
    }
    builder.build()
}

fn request(path: &str, credential: Option<&str>) -> Request<ReplayBody> {
    let mut request = Request::post(path).header("content-type", "application/json");
    if let Some(key) = credential {
        request = request.header("x-api-key", key);
    }
    request
        .body(ReplayBody::from(Bytes::from_static(BODY.as_bytes())))
        .expect("request")
}

async fn send(
    f: &Failover<Route>,
    path: &str,
    credential: &str,
) -> Response<NormalizeBody<Incoming>> {
    f.clone()
        .oneshot(request(path, Some(credential)))
        .await
        .expect("a response")
}

fn report<B>(response: &Response<B>) -> &FailoverReport {
    response
        .extensions()
        .get::<FailoverReport>()
        .expect("report")
}

fn all_closed(f: &Failover<Route>) {
    for health in f.breakers().snapshot() {
        assert_eq!(health.state(), CircuitState::Closed, "{}", health.route());
        assert_eq!(health.consecutive_failures(), 0, "{}", health.route());
    }
}

#[tokio::test]
async fn a_foundry_callers_key_skips_anthropic_and_reaches_foundry() {
    let sim = sim().await;
    let f = failover([
        route("anthropic", &sim, Face::Anthropic),
        route("foundry", &sim, Face::Foundry),
    ]);
    let response = send(&f, "/anthropic/v1/messages", "caller-foundry-key").await;
    assert_eq!(response.status(), StatusCode::OK);
    let r = report(&response);
    assert_eq!(r.to_string(), "foundry=1", "Anthropic was never tried");
    assert_eq!(r.served_by().unwrap(), "foundry");
    let log = sim.requests();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].route, log[0].accepted), (Face::Foundry, true));
    all_closed(&f);
}

#[tokio::test]
async fn an_anthropic_callers_key_never_reaches_foundry() {
    let sim = sim().await;
    sim.set_faults("anthropic=529*10").unwrap();
    let f = failover([
        route("foundry", &sim, Face::Foundry),
        route("anthropic", &sim, Face::Anthropic),
    ]);
    let response = send(&f, "/v1/messages", "caller-anthropic-key").await;
    // Anthropic is overloaded, and Foundry must not be the way out.
    assert_eq!(response.status().as_u16(), 529);
    assert_eq!(report(&response).to_string(), "anthropic=3");
    assert!(sim.requests().iter().all(|r| r.route == Face::Anthropic));
}

#[tokio::test]
async fn a_foundry_token_may_move_to_another_foundry_resource() {
    let (east, west) = (sim().await, sim().await);
    east.set_faults("foundry=503*10").unwrap();
    let f = failover([
        route("foundry-east", &east, Face::Foundry),
        route("anthropic", &west, Face::Anthropic),
        route("foundry-west", &west, Face::Foundry),
    ]);
    let response = send(&f, "/anthropic/v1/messages", "caller-foundry-key").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        report(&response).to_string(),
        "foundry-east=3, foundry-west=1"
    );
    let west_log = west.requests();
    assert_eq!(west_log.len(), 1);
    assert_eq!(
        (west_log[0].route, west_log[0].accepted),
        (Face::Foundry, true)
    );
}

#[tokio::test]
async fn a_rejected_caller_key_is_passed_back_without_failover_or_breaker_charge() {
    let (east, west) = (sim().await, sim().await);
    let f = failover([
        route("foundry-east", &east, Face::Foundry),
        route("foundry-west", &west, Face::Foundry),
    ]);
    for _ in 0..3 {
        let response = send(&f, "/anthropic/v1/messages", "not-my-key").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let err = response.extensions().get::<ClaudeError>().expect("error");
        assert_eq!(err.class(), ErrorClass::Auth);
        assert_eq!(report(&response).answered_by().unwrap(), "foundry-east");
    }
    assert_eq!(east.requests().len(), 3, "never retried");
    assert!(west.requests().is_empty(), "never failed over");
    all_closed(&f);
}

#[tokio::test]
async fn no_caller_credential_is_a_401_and_nothing_is_sent() {
    let sim = sim().await;
    let f = failover([
        route("foundry", &sim, Face::Foundry),
        route("anthropic", &sim, Face::Anthropic),
    ]);
    for path in ["/anthropic/v1/messages", "/v1/messages"] {
        let err = f
            .clone()
            .oneshot(request(path, None))
            .await
            .expect_err("refused");
        assert_eq!(err.class(), ErrorClass::Auth, "{path}");
        assert_eq!(err.response_status(), StatusCode::UNAUTHORIZED);
        let r = FailoverReport::from_error(&err).expect("report");
        assert_eq!(r.answered_by(), None);
    }
    assert!(sim.requests().is_empty());
    all_closed(&f);
}

#[tokio::test]
async fn a_caller_with_no_route_of_its_face_is_told_so() {
    let sim = sim().await;
    let f = failover([route("anthropic", &sim, Face::Anthropic)]);
    let err = f
        .clone()
        .oneshot(request(
            "/anthropic/v1/messages",
            Some("caller-foundry-key"),
        ))
        .await
        .expect_err("no route for it");
    assert_eq!(err.class(), ErrorClass::RouteUnavailable);
    assert!(err.message().contains("Anthropic-mode callers"), "{err}");
    let r = FailoverReport::from_error(&err).expect("report");
    assert!(r.attempts().is_empty(), "nothing was sent");
    assert!(sim.requests().is_empty());
    all_closed(&f);
}
