//! Normalize against the simulator: every fault step, on both faces, through
//! a real hyper client.

use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::{ClaudeError, ErrorClass, Face, RequestIds, RetryAfter, RouteId};
use claude_tower_normalize::{Normalize, NormalizeBody, NormalizeLayer};
use claude_tower_sim::{Sim, SimConfig};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

type Route = Normalize<Client<HttpConnector, Full<Bytes>>>;

const BODY: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;
const STREAM_BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

struct Fixture {
    sim: Sim,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Fixture {
    async fn new() -> Self {
        let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { sim, client }
    }

    fn route(&self, face: Face, layer: impl Fn(NormalizeLayer) -> NormalizeLayer) -> Route {
        let base = NormalizeLayer::new(RouteId::new(face.as_str()), face);
        layer(base).layer(self.client.clone())
    }

    fn request(&self, face: Face, body: &'static str) -> Request<Full<Bytes>> {
        let base = match face {
            Face::Anthropic => self.sim.anthropic_base_url(),
            Face::Foundry => self.sim.foundry_base_url(),
        };
        Request::post(format!("{base}/v1/messages?beta=true"))
            .header("x-api-key", "test-key")
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request")
    }

    /// Sends one request on `face` with `step` as that route's next fault.
    async fn send(
        &self,
        face: Face,
        step: &str,
    ) -> Result<Response<NormalizeBody<Incoming>>, ClaudeError> {
        self.send_with(face, step, BODY, |l| l).await
    }

    async fn send_with(
        &self,
        face: Face,
        step: &str,
        body: &'static str,
        layer: impl Fn(NormalizeLayer) -> NormalizeLayer,
    ) -> Result<Response<NormalizeBody<Incoming>>, ClaudeError> {
        self.sim
            .set_faults(&format!("{}={step}", face.as_str()))
            .expect("fault script parses");
        self.route(face, layer)
            .oneshot(self.request(face, body))
            .await
    }
}

fn class_of<B>(res: &Response<B>) -> Option<ErrorClass> {
    res.extensions()
        .get::<ClaudeError>()
        .map(ClaudeError::class)
}

fn wait_of<B>(res: &Response<B>) -> Option<Duration> {
    res.extensions().get::<RetryAfter>().map(|w| w.duration())
}

const FACES: [Face; 2] = [Face::Anthropic, Face::Foundry];

#[tokio::test]
async fn every_status_step_on_both_faces() {
    let fx = Fixture::new().await;
    let table: [(&str, ErrorClass, ErrorClass); 12] = [
        // step, Anthropic class, Foundry class
        ("429", ErrorClass::RateLimited, ErrorClass::RateLimited),
        ("529", ErrorClass::Overloaded, ErrorClass::Overloaded),
        ("503", ErrorClass::Overloaded, ErrorClass::Overloaded),
        ("500", ErrorClass::Server, ErrorClass::Server),
        ("502", ErrorClass::Server, ErrorClass::Server),
        ("504", ErrorClass::Timeout, ErrorClass::Timeout),
        (
            "400",
            ErrorClass::InvalidRequest,
            ErrorClass::InvalidRequest,
        ),
        ("401", ErrorClass::Auth, ErrorClass::Auth),
        ("403", ErrorClass::Auth, ErrorClass::Auth),
        (
            "404:deployment",
            ErrorClass::InvalidRequest,
            ErrorClass::RouteUnavailable,
        ),
        // Anthropic has no such blip: the sim answers a plain 401 there.
        (
            "transient-auth",
            ErrorClass::Auth,
            ErrorClass::TransientAuth,
        ),
        // Non-streaming: an overload status.
        (
            "stream-error",
            ErrorClass::Overloaded,
            ErrorClass::Overloaded,
        ),
    ];
    for (step, anthropic, foundry) in table {
        for face in FACES {
            let expected = if face == Face::Anthropic {
                anthropic
            } else {
                foundry
            };
            let res = fx.send(face, step).await.expect("a response");
            assert_eq!(class_of(&res), Some(expected), "{face} {step}");
            let err = res.extensions().get::<ClaudeError>().unwrap();
            assert_eq!(err.route().map(RouteId::as_str), Some(face.as_str()));
            assert_eq!(
                err.status(),
                Some(res.status()),
                "status kept: {face} {step}"
            );
            let ids = res.extensions().get::<RequestIds>().expect("ids");
            match face {
                Face::Anthropic => assert!(
                    ids.request_id()
                        .is_some_and(|id| id.starts_with("req_sim_"))
                ),
                Face::Foundry => {
                    assert!(ids.apim_request_id().is_some());
                    assert!(ids.x_ms_request_id().is_some());
                }
            }
            // Rewriting is off: the body is the route's own, read and handed on.
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert!(json["error"].is_object(), "{face} {step}: {json}");
        }
    }
}

#[tokio::test]
async fn every_retry_hint_form_on_both_faces() {
    let fx = Fixture::new().await;
    for face in FACES {
        for (step, min, max) in [
            ("429", None, None),
            ("429:2s", Some(2000), Some(2000)),
            ("429:1.5s", Some(1500), Some(1500)),
            // At least 2 s ahead, rounded up to the second; our clock has moved on a bit.
            ("429:date+2s", Some(1000), Some(3000)),
            ("429:ms1500", Some(1500), Some(1500)),
            ("429:xms1500", Some(1500), Some(1500)),
        ] {
            let res = fx.send(face, step).await.expect("a response");
            assert_eq!(
                class_of(&res),
                Some(ErrorClass::RateLimited),
                "{face} {step}"
            );
            let wait = wait_of(&res).map(|w| w.as_millis() as u64);
            match (min, max) {
                (Some(min), Some(max)) => {
                    let wait = wait.unwrap_or_else(|| panic!("{face} {step}: no wait"));
                    assert!((min..=max).contains(&wait), "{face} {step}: {wait} ms");
                }
                _ => assert_eq!(wait, None, "{face} {step}"),
            }
            let err = res.extensions().get::<ClaudeError>().unwrap();
            assert_eq!(err.retry_after().map(|w| w.duration()), wait_of(&res));
        }
    }
}

// Paused: the sim's delays run on tokio time, so nothing sleeps for real.
#[tokio::test(start_paused = true)]
async fn success_steps_pass_through() {
    let fx = Fixture::new().await;
    for face in FACES {
        for step in ["ok", "delay:300ms", "slow-stream:50ms"] {
            let res = fx.send(face, step).await.expect("a response");
            assert_eq!(res.status(), StatusCode::OK, "{face} {step}");
            assert_eq!(class_of(&res), None);
            let ids = res.extensions().get::<RequestIds>().expect("ids");
            assert!(
                ids.request_id().is_some(),
                "{face}: the backend's request-id"
            );
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).expect("a message");
            assert_eq!(json["type"], "message");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn streams_pass_through_including_a_late_error_event() {
    let fx = Fixture::new().await;
    for face in FACES {
        for step in ["ok", "slow-stream:50ms", "stream-error"] {
            let res = fx
                .send_with(face, step, STREAM_BODY, |l| l.with_rewrite_envelope(true))
                .await
                .expect("a response");
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(class_of(&res), None, "a 200 is a success, whatever follows");
            assert_eq!(res.headers()["content-type"], "text/event-stream");
            let mut body = res.into_body();
            let mut text = String::new();
            let mut frames = 0;
            while let Some(frame) = body.frame().await {
                let data = frame.expect("frame").into_data().expect("data");
                text.push_str(std::str::from_utf8(&data).expect("utf-8"));
                frames += 1;
            }
            assert!(frames > 1, "streamed, not buffered into one frame");
            assert!(text.starts_with("event: message_start"), "{text}");
            if step == "stream-error" {
                assert!(text.contains("event: error"), "{text}");
            } else {
                assert!(
                    text.trim_end().ends_with("{\"type\":\"message_stop\"}"),
                    "{text}"
                );
            }
        }
    }
}

#[tokio::test]
async fn reset_is_a_transport_error() {
    let fx = Fixture::new().await;
    for face in FACES {
        let err = fx.send(face, "reset").await.expect_err("no response");
        assert_eq!(err.class(), ErrorClass::Transport, "{face}: {err}");
        assert_eq!(err.route().map(RouteId::as_str), Some(face.as_str()));
        assert!(err.retryable() && err.failover_worthy());
    }
}

#[tokio::test(start_paused = true)]
async fn a_delay_beyond_the_timeout_is_class_timeout() {
    let fx = Fixture::new().await;
    fx.sim.set_faults("foundry=delay:300ms").unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(NormalizeLayer::new(RouteId::new("foundry"), Face::Foundry))
        .timeout(Duration::from_millis(100))
        .service(fx.client.clone());
    let err = svc
        .oneshot(fx.request(Face::Foundry, BODY))
        .await
        .expect_err("timed out");
    assert_eq!(err.class(), ErrorClass::Timeout);
}

#[tokio::test]
async fn random_faults_classify_into_the_expected_classes() {
    let fx = Fixture::new().await;
    fx.sim
        .set_faults("anthropic=random(p=1.0,seed=7);foundry=random(p=1.0,seed=7)")
        .unwrap();
    for face in FACES {
        let route = fx.route(face, |l| l);
        for _ in 0..20 {
            let class = match route.clone().oneshot(fx.request(face, BODY)).await {
                Ok(res) => class_of(&res).expect("p=1: always a failure"),
                Err(err) => err.class(),
            };
            let allowed: &[ErrorClass] = match face {
                Face::Anthropic => &[
                    ErrorClass::RateLimited,
                    ErrorClass::Overloaded,
                    ErrorClass::Server,
                    ErrorClass::Timeout,
                    ErrorClass::Transport,
                ],
                Face::Foundry => &[
                    ErrorClass::RateLimited,
                    ErrorClass::Overloaded,
                    ErrorClass::Server,
                    ErrorClass::Timeout,
                    ErrorClass::TransientAuth,
                ],
            };
            assert!(allowed.contains(&class), "{face}: {class}");
            assert!(class.retryable() && class.failover_worthy());
        }
    }
}

// === the gateway's options ===

#[tokio::test]
async fn foundry_errors_rewritten_for_anthropic_sdks() {
    let fx = Fixture::new().await;
    let rewrite = |l: NormalizeLayer| {
        l.with_rewrite_envelope(true)
            .with_canonical_retry_headers(true)
    };
    let cases = [
        ("429:date+2s", 429, "rate_limit_error", "Requests"),
        ("503", 503, "overloaded_error", "The service"),
        // Upstream's message verbatim: no code in front.
        (
            "404:deployment",
            404,
            "not_found_error",
            "The API deployment for this resource",
        ),
        ("403", 403, "permission_error", "The principal lacks"),
        // A retryable 503 for SDKs, instead of a 401 they would never retry.
        (
            "transient-auth",
            503,
            "api_error",
            "Failed to authenticate to the model endpoint.",
        ),
    ];
    for (step, status, kind, prefix) in cases {
        let res = fx
            .send_with(Face::Foundry, step, BODY, rewrite)
            .await
            .expect("a response");
        assert_eq!(res.status().as_u16(), status, "{step}");
        if step.starts_with("429") {
            let secs: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=3).contains(&secs), "{secs}");
            assert!(res.headers().contains_key("retry-after-ms"));
        }
        let retryable = res.extensions().get::<ClaudeError>().unwrap().retryable();
        assert_eq!(
            res.headers()["x-should-retry"],
            if retryable { "true" } else { "false" }
        );
        let apim = res.headers()["apim-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "error", "{step}");
        assert_eq!(json["error"]["type"], kind, "{step}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(prefix), "{step}: {message}");
        assert_eq!(json["request_id"], apim.as_str());
    }
}

#[tokio::test]
async fn anthropic_errors_are_left_alone_by_the_rewrite() {
    let fx = Fixture::new().await;
    let res = fx
        .send_with(Face::Anthropic, "529", BODY, |l| {
            l.with_rewrite_envelope(true)
        })
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 529);
    assert!(res.headers().get("x-should-retry").is_none());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["type"], "overloaded_error");
    assert_eq!(json["error"]["message"], "Overloaded");
}

#[tokio::test]
async fn repeated_steps_then_success() {
    let fx = Fixture::new().await;
    fx.sim.set_faults("foundry=503*2,429:xms1500").unwrap();
    let route = fx.route(Face::Foundry, |l| l);
    let mut classes = Vec::new();
    for _ in 0..4 {
        let res = route
            .clone()
            .oneshot(fx.request(Face::Foundry, BODY))
            .await
            .unwrap();
        classes.push(class_of(&res));
    }
    assert_eq!(
        classes,
        [
            Some(ErrorClass::Overloaded),
            Some(ErrorClass::Overloaded),
            Some(ErrorClass::RateLimited),
            None,
        ]
    );
}

#[tokio::test]
async fn title_case_header_names_are_read_alike() {
    let sim = Sim::start(SimConfig::default().title_case_headers(true))
        .await
        .unwrap();
    sim.set_faults("foundry=429:2s").unwrap();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let route = NormalizeLayer::new(RouteId::new("foundry"), Face::Foundry).layer(client);
    let req = Request::post(format!("{}/v1/messages", sim.foundry_base_url()))
        .header("api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap();
    let res = route.oneshot(req).await.unwrap();
    assert_eq!(class_of(&res), Some(ErrorClass::RateLimited));
    assert_eq!(wait_of(&res), Some(Duration::from_secs(2)));
}
