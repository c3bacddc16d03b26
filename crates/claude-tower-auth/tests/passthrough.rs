//! `Credential::passthrough()` against the simulator: the caller's own
//! credential reaches a route of the caller's face, and nothing is sent
//! without one or across faces.

use bytes::Bytes;
use claude_tower_auth::{AuthLayer, BoxError, Credential, Endpoint};
use claude_tower_core::{ClaudeError, ErrorClass, Face, RouteId};
use claude_tower_sim::{Credential as Seen, Sim, SimConfig};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

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

fn route(sim: &Sim, face: Face) -> AuthLayer {
    let endpoint = match face {
        Face::Anthropic => Endpoint::anthropic_base_url(&sim.anthropic_base_url()),
        _ => Endpoint::foundry_base_url(&sim.foundry_base_url()),
    };
    AuthLayer::new(endpoint.expect("url"), Credential::passthrough())
        .with_route(RouteId::new(face.as_str()))
}

async fn send(
    layer: &AuthLayer,
    path: &str,
    credential: Option<(&str, &str)>,
) -> Result<Response<Incoming>, BoxError> {
    let mut request = Request::post(path).header("content-type", "application/json");
    if let Some((name, value)) = credential {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("request");
    let client = Client::builder(TokioExecutor::new()).build_http();
    layer.layer(client).oneshot(request).await
}

fn claude_error(err: &BoxError) -> &ClaudeError {
    ClaudeError::find_in(&**err).expect("a ClaudeError")
}

#[tokio::test]
async fn a_foundry_callers_key_or_token_reaches_foundry_as_sent() {
    let sim = sim().await;
    let foundry = route(&sim, Face::Foundry);
    for (header, value, seen) in [
        ("x-api-key", "caller-foundry-key", Seen::XApiKey),
        ("api-key", "caller-foundry-key", Seen::ApiKey),
    ] {
        let response = send(&foundry, "/anthropic/v1/messages", Some((header, value)))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{header}");
        let log = sim.requests();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].route, Face::Foundry);
        assert_eq!(log[0].credential, seen);
        assert_eq!(log[0].credentials_present, vec![seen]);
        assert!(log[0].accepted, "the caller's own key was accepted");
        sim.reset();
    }
}

#[tokio::test]
async fn a_foundry_callers_entra_token_is_forwarded_as_bearer() {
    let sim = Sim::start(SimConfig::default().foundry_token("caller-entra-token"))
        .await
        .expect("sim");
    let response = send(
        &route(&sim, Face::Foundry),
        "/anthropic/v1/messages?beta=true",
        Some(("authorization", "Bearer caller-entra-token")),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let log = sim.requests();
    assert_eq!(log[0].credential, Seen::Bearer);
    assert!(log[0].accepted);
}

#[tokio::test]
async fn an_anthropic_callers_key_reaches_anthropic() {
    let sim = sim().await;
    let response = send(
        &route(&sim, Face::Anthropic),
        "/v1/messages",
        Some(("x-api-key", "caller-anthropic-key")),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let log = sim.requests();
    assert_eq!((log[0].route, log[0].accepted), (Face::Anthropic, true));
}

#[tokio::test]
async fn no_credential_is_refused_here_and_nothing_is_sent() {
    let sim = sim().await;
    for credential in [
        None,
        Some(("authorization", "Basic dXNlcjpwdw==")),
        Some(("x-api-key", " ")),
    ] {
        let err = send(
            &route(&sim, Face::Foundry),
            "/anthropic/v1/messages",
            credential,
        )
        .await
        .expect_err("refused");
        let err = claude_error(&err);
        assert_eq!(err.class(), ErrorClass::Auth, "{credential:?}");
        assert_eq!(err.response_status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.status(), None, "no route answered");
        assert_eq!(err.route().map(RouteId::as_str), Some("foundry"));
    }
    assert!(sim.requests().is_empty(), "nothing went upstream");
}

#[tokio::test]
async fn a_rejected_caller_credential_is_the_routes_answer() {
    let sim = sim().await;
    let response = send(
        &route(&sim, Face::Foundry),
        "/anthropic/v1/messages",
        Some(("x-api-key", "someone-elses-key")),
    )
    .await
    .expect("a response, not an error");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let log = sim.requests();
    assert_eq!(log.len(), 1);
    assert!(!log[0].accepted);
}

#[tokio::test]
async fn a_credential_never_crosses_faces() {
    let sim = sim().await;
    // A Foundry-mode caller at an Anthropic passthrough route, and the other
    // way round: turned away unsent.
    for (face, path, credential) in [
        (
            Face::Anthropic,
            "/anthropic/v1/messages",
            ("x-api-key", "caller-foundry-key"),
        ),
        (
            Face::Foundry,
            "/v1/messages",
            ("x-api-key", "caller-anthropic-key"),
        ),
    ] {
        let err = send(&route(&sim, face), path, Some(credential))
            .await
            .expect_err("turned away");
        let err = claude_error(&err);
        assert_eq!(err.class(), ErrorClass::RouteUnavailable, "{face}");
        assert_eq!(err.status(), None);
        assert!(err.failover_worthy(), "another route may take it");
    }
    assert!(sim.requests().is_empty());
}

#[test]
fn passthrough_names_itself() {
    let credential = Credential::passthrough();
    assert!(credential.is_passthrough());
    assert_eq!(credential.kind(), "passthrough");
    assert!(!Credential::none().is_passthrough());
}
