//! `ClaudeMiddleware` in a `ClientWithMiddleware`, against the simulator.

use std::time::Duration;

use claude_tower::prelude::*;
use claude_tower::stack::{MAX_ROUTES, StackError};
use claude_tower_core::Face;
use claude_tower_reqwest::ClaudeMiddleware;
use claude_tower_sim::{Sim, SimConfig};
use http::Extensions;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};

const BODY: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
const STREAM_BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// Retries without waiting long: the simulator answers at once, and these
/// tests cross real sockets, so time cannot be paused.
fn quick_retry(route: &str) -> RetryAfterPolicy {
    RetryAfterPolicy::builder(route)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .no_budget()
        .build()
        .unwrap()
}

/// A route at `base`, with a key (the simulator in its default settings
/// takes any).
fn route(id: &str, base: &str, face: Face) -> Route {
    let (endpoint, credential) = match face {
        Face::Foundry => (
            Endpoint::foundry_base_url(base),
            Credential::foundry_api_key(Secret::new("foundry-test")),
        ),
        _ => (
            Endpoint::anthropic_base_url(base),
            Credential::anthropic_api_key(Secret::new("sk-test")),
        ),
    };
    Route::new(id, endpoint.unwrap(), credential.unwrap())
}

fn both(sim: &Sim) -> ClaudeStack {
    ClaudeStack::new()
        .route(
            route("anthropic", &sim.anthropic_base_url(), Face::Anthropic)
                .with_retry(quick_retry("anthropic")),
        )
        .route(
            route("foundry", &sim.foundry_base_url(), Face::Foundry)
                .with_retry(quick_retry("foundry")),
        )
}

fn middleware(sim: &Sim) -> ClaudeMiddleware {
    ClaudeMiddleware::new(both(sim)).unwrap()
}

fn client(middleware: ClaudeMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

fn messages(
    client: &ClientWithMiddleware,
    sim: &Sim,
    body: &'static str,
) -> reqwest_middleware::RequestBuilder {
    client
        .post(format!(
            "{}/v1/messages?beta=true",
            sim.anthropic_base_url()
        ))
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body)
}

async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn count(sim: &Sim, face: Face) -> usize {
    sim.requests().iter().filter(|r| r.route == face).count()
}

#[tokio::test]
async fn an_overloaded_primary_fails_over_to_foundry() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_faults("anthropic=529*10").unwrap();
    let client = client(middleware(&sim));

    let response = messages(&client, &sim, BODY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.url().as_str().starts_with(&sim.foundry_base_url()));
    assert!(
        response
            .url()
            .as_str()
            .ends_with("/anthropic/v1/messages?beta=true")
    );
    let report = response.extensions().get::<FailoverReport>().unwrap();
    assert_eq!(report.served_by().unwrap(), "foundry");
    assert_eq!(report.to_string(), "anthropic=3, foundry=1");
    assert!(response.extensions().get::<ClaudeError>().is_none());
    let json = json(response).await;
    assert_eq!(json["type"], "message");

    assert_eq!(count(&sim, Face::Anthropic), 3);
    assert_eq!(count(&sim, Face::Foundry), 1);
    let foundry = sim
        .requests()
        .into_iter()
        .find(|r| r.route == Face::Foundry)
        .unwrap();
    assert_eq!(foundry.path, "/anthropic/v1/messages");
    assert_eq!(foundry.query.as_deref(), Some("beta=true"));
}

#[tokio::test]
async fn a_bad_request_is_not_sent_to_another_route() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_faults("anthropic=400").unwrap();
    let client = client(middleware(&sim));

    let response = messages(&client, &sim, BODY).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let err = response.extensions().get::<ClaudeError>().unwrap();
    assert_eq!(err.class(), ErrorClass::InvalidRequest);
    assert_eq!(err.route().unwrap(), "anthropic");
    let json = json(response).await;
    assert_eq!(json["error"]["type"], "invalid_request_error");

    assert_eq!(count(&sim, Face::Anthropic), 1);
    assert_eq!(count(&sim, Face::Foundry), 0);
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_the_wait_the_server_asked() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_faults("anthropic=429:ms100,ok").unwrap();
    let client = client(middleware(&sim));

    let started = std::time::Instant::now();
    let response = messages(&client, &sim, BODY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(response.extensions().get::<Attempt>().unwrap().number(), 2);
    let report = response.extensions().get::<FailoverReport>().unwrap();
    assert_eq!(report.to_string(), "anthropic=2");
    assert_eq!(count(&sim, Face::Anthropic), 2);
    assert_eq!(count(&sim, Face::Foundry), 0);
}

#[tokio::test]
async fn broken_tool_pairing_is_answered_locally() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = client(middleware(&sim));
    let body = r#"{"model":"m","max_tokens":1,"messages":[
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_gone","content":"ok"}]}]}"#;

    let url = format!("{}/v1/messages?beta=true", sim.anthropic_base_url());
    let response = messages(&client, &sim, body).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.url().as_str(), url);
    let json = json(response).await;
    assert_eq!(json["error"]["type"], "invalid_request_error");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unexpected `tool_use_id` found in `tool_result` blocks: toolu_gone")
    );
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn a_streaming_answer_passes_through() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = client(middleware(&sim));

    let mut response = messages(&client, &sim, STREAM_BODY)
        .header("x-sim-stream-bytes", "65536")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut chunks = 0;
    let mut text = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks += 1;
        text.extend_from_slice(&chunk);
    }
    assert!(chunks > 1, "the stream arrived in {chunks} chunk(s)");
    assert!(text.len() > 65536);
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with("event: message_start"));
    assert!(text.trim_end().ends_with(r#"{"type":"message_stop"}"#));
}

#[tokio::test]
async fn requests_addressed_to_foundry_are_rebased_on_every_route() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = client(middleware(&sim));

    let response = client
        .post(format!("{}/v1/messages", sim.foundry_base_url()))
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let requests = sim.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].route, Face::Anthropic);
    assert_eq!(requests[0].path, "/v1/messages");
}

#[tokio::test]
async fn each_route_sends_its_own_credential_never_the_requests() {
    let sim = Sim::start(SimConfig::default().anthropic_key("k").foundry_key("fk"))
        .await
        .unwrap();
    sim.set_faults("anthropic=503*10").unwrap();
    let stack = ClaudeStack::new()
        .route(
            Route::new(
                "anthropic",
                Endpoint::anthropic_base_url(&sim.anthropic_base_url()).unwrap(),
                Credential::anthropic_api_key(Secret::new("k")).unwrap(),
            )
            .with_retry(quick_retry("anthropic")),
        )
        .route(
            Route::new(
                "foundry",
                Endpoint::foundry_base_url(&sim.foundry_base_url()).unwrap(),
                Credential::foundry_api_key(Secret::new("fk")).unwrap(),
            )
            .with_retry(quick_retry("foundry")),
        );
    let middleware = ClaudeMiddleware::new(stack).unwrap();
    assert!(!format!("{middleware:?}").contains("fk"));
    let client = client(middleware);

    let response = client
        .post(format!("{}/v1/messages", sim.anthropic_base_url()))
        .header("x-api-key", "a-key-for-no-route")
        .header("anthropic-version", "2023-06-01")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let foundry: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.route == Face::Foundry)
        .collect();
    assert_eq!(foundry.len(), 1);
    assert!(foundry[0].accepted);
}

/// A port nothing listens on.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn a_connect_failure_fails_over_and_alone_is_returned_as_reqwest_said() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dead = dead_url().await;
    let client_over = client(
        ClaudeMiddleware::new(
            ClaudeStack::new()
                .route(route("dead", &dead, Face::Anthropic).with_retry(quick_retry("dead")))
                .route(route(
                    "anthropic",
                    &sim.anthropic_base_url(),
                    Face::Anthropic,
                )),
        )
        .unwrap(),
    );
    let response = messages(&client_over, &sim, BODY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let report = response.extensions().get::<FailoverReport>().unwrap();
    assert_eq!(report.served_by().unwrap(), "anthropic");
    // Every attempt counts, the refused ones included.
    assert_eq!(report.attempts_on("dead"), 3, "{report}");

    let alone = client(
        ClaudeMiddleware::new(
            ClaudeStack::new()
                .route(route("dead", &dead, Face::Anthropic).with_retry(quick_retry("dead"))),
        )
        .unwrap(),
    );
    let err = messages(&alone, &sim, BODY).send().await.unwrap_err();
    assert!(
        matches!(err, reqwest_middleware::Error::Reqwest(_)),
        "{err:?}"
    );
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn a_streamed_request_body_is_sent_once_as_it_is() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_faults("anthropic=529*10").unwrap();
    let client = client(middleware(&sim));
    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(BODY)]);

    let response = messages(&client, &sim, BODY)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 529);
    assert!(response.extensions().get::<FailoverReport>().is_none());
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn a_body_over_the_limit_is_answered_locally_with_413() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let middleware = ClaudeMiddleware::new(
        ClaudeStack::new()
            .route(route(
                "anthropic",
                &sim.anthropic_base_url(),
                Face::Anthropic,
            ))
            .with_body_limit(16),
    )
    .unwrap();
    let response = messages(&client(middleware), &sim, BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let json = json(response).await;
    assert_eq!(json["error"]["type"], "request_too_large");
    assert!(sim.requests().is_empty());
}

/// Records what it sees in the extensions of each attempt.
struct Tag;

#[derive(Clone, Debug, PartialEq)]
struct SeenBy(u32);

#[async_trait::async_trait]
impl Middleware for Tag {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        // Every attempt starts from the caller's extensions.
        assert_eq!(extensions.get::<&'static str>(), Some(&"caller"));
        assert!(extensions.get::<SeenBy>().is_none());
        let n = req.url().path().len() as u32;
        extensions.insert(SeenBy(n));
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn later_middlewares_see_fresh_extensions_per_attempt_and_the_answer_is_kept() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_faults("anthropic=503*10").unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(middleware(&sim))
        .with(Tag)
        .build();
    let mut extensions = Extensions::new();
    extensions.insert("caller");
    let request = messages(&client, &sim, BODY).build().unwrap();
    let response = client
        .execute_with_extensions(request, &mut extensions)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The foundry attempt answered: its path is `/anthropic/v1/messages`.
    assert_eq!(
        extensions.get::<SeenBy>(),
        Some(&SeenBy("/anthropic/v1/messages".len() as u32))
    );
    assert_eq!(extensions.get::<&'static str>(), Some(&"caller"));
}

#[test]
fn the_middleware_and_the_transport_future_are_send() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<ClaudeMiddleware>();
    send_sync::<claude_tower_reqwest::ReqwestService>();
    send::<claude_tower_reqwest::ResponseFuture>();
}

#[test]
fn build_checks_the_routes_as_every_stack_does() {
    assert_eq!(
        ClaudeMiddleware::new(ClaudeStack::new()).unwrap_err(),
        StackError::NoRoutes
    );
    let a = route("a", "http://a.example", Face::Anthropic);
    let err =
        ClaudeMiddleware::new(ClaudeStack::new().route(a.clone()).route(a.clone())).unwrap_err();
    assert_eq!(err.to_string(), "route `a` is configured twice");
    let err = (0..=MAX_ROUTES).fold(ClaudeStack::new(), |stack, i| {
        stack.route(route(&format!("r{i}"), "http://a.example", Face::Anthropic))
    });
    assert_eq!(
        ClaudeMiddleware::new(err).unwrap_err(),
        StackError::TooManyRoutes {
            count: MAX_ROUTES + 1
        }
    );
    let ok = ClaudeMiddleware::new(ClaudeStack::new().route(route(
        "a",
        "https://example.com/anthropic",
        Face::Foundry,
    )));
    let text = format!("{:?}", ok.unwrap());
    assert!(!text.contains("foundry-test"), "{text}");
    assert!(text.contains("example.com/anthropic"), "{text}");
}

#[tokio::test]
async fn each_route_gets_its_own_model_name() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.set_faults("anthropic=529*10").unwrap();
    let client = client(
        ClaudeMiddleware::new(
            ClaudeStack::new()
                .route(
                    route("anthropic", &sim.anthropic_base_url(), Face::Anthropic)
                        .with_retry(quick_retry("anthropic")),
                )
                .route(
                    route("foundry", &sim.foundry_base_url(), Face::Foundry).with_model_map(
                        ModelMapping::new().prefix("claude-sonnet-4-5", "sonnet-prod"),
                    ),
                ),
        )
        .unwrap(),
    );
    let response = messages(&client, &sim, BODY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let models: Vec<_> = sim
        .requests()
        .into_iter()
        .map(|r| (r.route, r.model.unwrap_or_default()))
        .collect();
    assert_eq!(models.len(), 4);
    assert!(
        models[..3]
            .iter()
            .all(|(face, model)| *face == Face::Anthropic && model == "claude-sonnet-4-5")
    );
    assert_eq!(models[3], (Face::Foundry, "sonnet-prod".to_owned()));
}

/// Fails the first `fail` requests it sees with its own error.
struct Flaky {
    fail: u32,
    seen: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl Middleware for Flaky {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < self.fail {
            let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "flaky hop");
            return Err(reqwest_middleware::Error::middleware(err));
        }
        next.run(req, extensions).await
    }
}

fn flaky(fail: u32) -> Flaky {
    Flaky {
        fail,
        seen: std::sync::atomic::AtomicU32::new(0),
    }
}

#[tokio::test]
async fn errors_of_later_middlewares_are_retried_and_returned_as_they_were() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let one_route = || {
        ClaudeMiddleware::new(
            ClaudeStack::new().route(
                route("anthropic", &sim.anthropic_base_url(), Face::Anthropic)
                    .with_retry(quick_retry("anthropic")),
            ),
        )
        .unwrap()
    };

    let client = ClientBuilder::new(reqwest::Client::new())
        .with(one_route())
        .with(flaky(1))
        .build();
    let response = messages(&client, &sim, BODY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.extensions().get::<Attempt>().unwrap().number(), 2);

    let client = ClientBuilder::new(reqwest::Client::new())
        .with(one_route())
        .with(flaky(u32::MAX))
        .build();
    let err = messages(&client, &sim, BODY).send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("expected the later middleware's own error, got {err:?}");
    };
    let io = err.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.to_string(), "flaky hop");
    assert_eq!(sim.requests().len(), 1);
}
