//! Against the simulator over real HTTP (hyper-util's client as transport):
//! each credential type is accepted on its face, and inbound credentials
//! never arrive.

#[cfg(feature = "entra")]
mod common;

use bytes::Bytes;
use claude_tower_auth::{AuthLayer, BoxError, Credential, Endpoint, Secret};
use claude_tower_core::Face;
use claude_tower_sim::{Credential as Seen, RecordedRequest, Sim, SimConfig};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

const BODY: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What Claude Code sends a gateway: its own credentials included.
fn inbound(path: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "gateway.internal:8080")
        .header("authorization", "Bearer developer-gateway-token")
        .header("x-api-key", "caller-key")
        .header("api-key", "caller-azure-key")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("request")
}

async fn send(layer: &AuthLayer, path: &str) -> Result<Response<Incoming>, BoxError> {
    layer.layer(client()).oneshot(inbound(path)).await
}

/// A simulator taking `sk-sim` on Anthropic's face, and a route that sends it.
async fn anthropic_route() -> (Sim, AuthLayer) {
    let sim = Sim::start(SimConfig::default().anthropic_key("sk-sim"))
        .await
        .expect("sim");
    let layer = AuthLayer::new(
        Endpoint::anthropic_base_url(&sim.anthropic_base_url()).expect("url"),
        Credential::anthropic_api_key(Secret::new("sk-sim")).expect("key"),
    );
    (sim, layer)
}

fn only(sim: &Sim) -> RecordedRequest {
    let mut requests = sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    requests.remove(0)
}

#[tokio::test]
async fn anthropic_key_is_accepted_and_inbound_credentials_are_dropped() {
    let (sim, layer) = anthropic_route().await;

    for path in ["/v1/messages?beta=true", "/anthropic/v1/messages?beta=true"] {
        let response = send(&layer, path).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let seen = only(&sim);
        assert_eq!(seen.route, Face::Anthropic);
        assert_eq!(seen.path, "/v1/messages");
        assert_eq!(seen.query.as_deref(), Some("beta=true"));
        assert!(seen.accepted);
        assert_eq!(seen.credential, Seen::XApiKey);
        assert_eq!(seen.credentials_present, vec![Seen::XApiKey]);
        assert_eq!(seen.anthropic_version.as_deref(), Some("2023-06-01"));
        sim.reset();
    }
}

#[tokio::test]
async fn foundry_key_is_sent_in_both_headers_and_accepted() {
    let sim = Sim::start(SimConfig::default().foundry_key("fk-sim"))
        .await
        .expect("sim");
    let layer = AuthLayer::new(
        Endpoint::foundry_base_url(&sim.foundry_base_url()).expect("url"),
        Credential::foundry_api_key(Secret::new("fk-sim")).expect("key"),
    );

    for path in ["/v1/messages?beta=true", "/anthropic/v1/messages?beta=true"] {
        let response = send(&layer, path).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let seen = only(&sim);
        assert_eq!(seen.route, Face::Foundry);
        assert_eq!(seen.path, "/anthropic/v1/messages");
        assert_eq!(seen.query.as_deref(), Some("beta=true"));
        assert!(seen.accepted);
        assert_eq!(seen.credentials_present, vec![Seen::XApiKey, Seen::ApiKey]);
        sim.reset();
    }
}

#[tokio::test]
async fn an_http2_callers_request_reaches_an_http1_route() {
    // What a gateway serving an HTTP/2 client hands Auth. Before, hyper-util
    // refused it ("Connection is HTTP/1, but request requires HTTP/2") and
    // the failure counted as a transport error against the route.
    let (sim, layer) = anthropic_route().await;
    let mut request = inbound("/v1/messages?beta=true");
    *request.version_mut() = http::Version::HTTP_2;
    let response = layer
        .layer(client())
        .oneshot(request)
        .await
        .expect("no transport error");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(only(&sim).accepted);
}

#[tokio::test]
async fn a_wrong_key_is_refused_upstream_not_replaced_by_the_callers() {
    let sim = Sim::start(SimConfig::default().anthropic_key("sk-sim"))
        .await
        .expect("sim");
    let layer = AuthLayer::new(
        Endpoint::anthropic_base_url(&sim.anthropic_base_url()).expect("url"),
        Credential::anthropic_api_key(Secret::new("sk-wrong")).expect("key"),
    );
    let response = send(&layer, "/v1/messages").await.expect("response");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!only(&sim).accepted);
}

#[cfg(feature = "entra")]
mod entra {
    use super::*;
    use common::{FakeCredential, Mode};
    use std::time::Duration;

    #[tokio::test]
    async fn an_entra_token_is_sent_as_bearer_and_accepted() {
        let sim = Sim::start(SimConfig::default().foundry_token("entra-token"))
            .await
            .expect("sim");
        let credential = FakeCredential::new(Mode::Fixed("entra-token"), Duration::from_secs(3600));
        let layer = AuthLayer::new(
            Endpoint::foundry_base_url(&sim.foundry_base_url()).expect("url"),
            Credential::entra(credential.clone()),
        );

        let response = send(&layer, "/anthropic/v1/messages?beta=true")
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let seen = only(&sim);
        assert_eq!(seen.route, Face::Foundry);
        assert!(seen.accepted);
        assert_eq!(seen.credential, Seen::Bearer);
        assert_eq!(seen.credentials_present, vec![Seen::Bearer]);
        assert_eq!(credential.calls(), 1);
    }

    #[tokio::test]
    async fn a_refused_token_is_replaced_on_the_next_attempt() {
        let sim = Sim::start(SimConfig::default().foundry_token("entra-token"))
            .await
            .expect("sim");
        let credential = FakeCredential::new(
            Mode::Sequence(vec!["revoked-token", "entra-token"]),
            Duration::from_secs(3600),
        );
        let layer = AuthLayer::new(
            Endpoint::foundry_base_url(&sim.foundry_base_url()).expect("url"),
            Credential::entra(credential.clone()),
        );

        let first = send(&layer, "/v1/messages").await.expect("response");
        assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
        let second = send(&layer, "/v1/messages").await.expect("response");
        assert_eq!(second.status(), StatusCode::OK);
        assert_eq!(credential.calls(), 2);
        let seen = sim.requests();
        assert_eq!(seen.len(), 2);
        assert!(!seen[0].accepted);
        assert!(seen[1].accepted);
    }
}
