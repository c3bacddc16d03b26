//! `CLAUDE_TOWER_PASSTHROUGH`: routes that forward each caller's own
//! credential, end to end against the simulator, whose request log shows
//! what reached each face and whether the credential was accepted.

use claude_tower_e2e as common;

use bytes::Bytes;
use claude_tower_core::Face;
use claude_tower_sim::{Credential, Sim, SimConfig};
use common::{HELLO, TestGateway, json, read, start};
use http::StatusCode;
use http_body_util::Full;

async fn sim() -> Sim {
    Sim::start(
        SimConfig::default()
            .anthropic_key("sk-ant-callers-own")
            .foundry_key("callers-foundry-key"),
    )
    .await
    .expect("the simulator starts")
}

/// A POST to `path` with `credential` (header, value), if any.
async fn call(
    gw: &TestGateway,
    path: &str,
    credential: Option<(&str, &str)>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut req = http::Request::post(gw.url(path))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01");
    if let Some((name, value)) = credential {
        req = req.header(name, value);
    }
    let req = req
        .body(Full::new(Bytes::from_static(HELLO.as_bytes())))
        .expect("request");
    read(gw.send(req).await).await
}

/// Foundry forwards callers' keys; the Anthropic route holds its own key.
async fn foundry_passthrough(sim: &Sim) -> TestGateway {
    start(&[
        ("CLAUDE_TOWER_PASSTHROUGH", "foundry"),
        ("CLAUDE_TOWER_ROUTES", "foundry,anthropic"),
        ("ANTHROPIC_FOUNDRY_BASE_URL", &sim.foundry_base_url()),
        ("ANTHROPIC_BASE_URL", &sim.anthropic_base_url()),
        ("ANTHROPIC_API_KEY", "sk-ant-callers-own"),
    ])
    .await
}

#[tokio::test]
async fn the_callers_key_reaches_the_route_and_is_accepted() {
    let sim = sim().await;
    let gw = foundry_passthrough(&sim).await;
    for header in ["x-api-key", "api-key"] {
        let (status, headers, body) = call(
            &gw,
            "/anthropic/v1/messages",
            Some((header, "callers-foundry-key")),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{header}: {body:?}");
        assert_eq!(headers["x-claude-tower-route"], "foundry");
    }
    let seen = sim.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|r| r.route == Face::Foundry && r.accepted));
    assert_eq!(seen[0].credential, Credential::XApiKey);
    assert_eq!(seen[1].credential, Credential::ApiKey);
}

#[tokio::test]
async fn no_credential_is_401_and_nothing_is_sent() {
    let sim = sim().await;
    let gw = foundry_passthrough(&sim).await;
    let (status, _, body) = call(&gw, "/anthropic/v1/messages", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:?}");
    let body = json(&body);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    assert!(
        sim.requests().is_empty(),
        "nothing upstream, not even the Anthropic route: {:?}",
        sim.requests()
    );
}

#[tokio::test]
async fn a_rejected_key_is_the_callers_answer_without_failover_or_breaker_penalty() {
    let sim = sim().await;
    let gw = foundry_passthrough(&sim).await;
    // More rejections than the breaker's threshold (5).
    for _ in 0..7 {
        let (status, headers, body) = call(
            &gw,
            "/anthropic/v1/messages",
            Some(("x-api-key", "not-the-key")),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:?}");
        assert_eq!(json(&body)["error"]["type"], "authentication_error");
        assert_eq!(headers["x-claude-tower-attempts"], "foundry=1");
    }
    let seen = sim.requests();
    assert_eq!(seen.len(), 7, "one attempt each, no retry: {seen:?}");
    assert!(seen.iter().all(|r| r.route == Face::Foundry && !r.accepted));
    // The route was not charged: a good key still goes to it first.
    let (status, headers, _) = call(
        &gw,
        "/anthropic/v1/messages",
        Some(("x-api-key", "callers-foundry-key")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-claude-tower-route"], "foundry");
}

#[tokio::test]
async fn a_callers_credential_never_crosses_faces() {
    let sim = sim().await;
    let gw = start(&[
        ("CLAUDE_TOWER_PASSTHROUGH", "foundry,anthropic"),
        ("CLAUDE_TOWER_ROUTES", "foundry,anthropic"),
        ("ANTHROPIC_FOUNDRY_BASE_URL", &sim.foundry_base_url()),
        ("ANTHROPIC_BASE_URL", &sim.anthropic_base_url()),
    ])
    .await;
    // Foundry is down: a Foundry caller's key is not offered to Anthropic.
    sim.set_faults("foundry=503*20").expect("script");
    let (status, headers, _) = call(
        &gw,
        "/anthropic/v1/messages",
        Some(("x-api-key", "callers-foundry-key")),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !headers["x-claude-tower-attempts"]
            .to_str()
            .unwrap_or_default()
            .contains("anthropic"),
        "{headers:?}"
    );
    assert!(sim.requests().iter().all(|r| r.route == Face::Foundry));
    // An Anthropic caller's key goes to the Anthropic route only.
    sim.reset();
    let (status, headers, body) = call(
        &gw,
        "/v1/messages",
        Some(("x-api-key", "sk-ant-callers-own")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(headers["x-claude-tower-route"], "anthropic");
    let seen = sim.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].route, Face::Anthropic);
    assert!(seen[0].accepted);
}
