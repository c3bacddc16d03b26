//! What `Auth` does to a request, seen by a recording transport.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use claude_tower_auth::{Auth, AuthLayer, Credential, Endpoint, Secret};
use http::{HeaderMap, Request, Response, Uri};
use tower::{Layer, ServiceExt, service_fn};

type Seen = Arc<Mutex<Vec<(Uri, HeaderMap)>>>;

async fn through(layer: AuthLayer, request: Request<String>) -> (Uri, HeaderMap) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let svc: Auth<_> = layer.layer(service_fn(move |req: Request<String>| {
        record
            .lock()
            .expect("seen")
            .push((req.uri().clone(), req.headers().clone()));
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    }));
    svc.oneshot(request).await.expect("sent");
    let mut seen = seen.lock().expect("seen");
    seen.pop().expect("one request")
}

fn with_inbound_credentials(path: &str) -> http::request::Builder {
    Request::post(path)
        .header("host", "gateway.internal")
        .header("authorization", "Bearer developer-token")
        .header("x-api-key", "caller-key")
        .header("api-key", "caller-azure-key")
        .header("anthropic-beta", "context-management-2025-06-27")
        .header("x-stainless-lang", "js")
}

#[tokio::test]
async fn anthropic_key_replaces_every_inbound_credential() {
    let layer = AuthLayer::new(
        Endpoint::anthropic(),
        Credential::anthropic_api_key(Secret::new("route-key")).expect("key"),
    );
    let request = with_inbound_credentials("/anthropic/v1/messages?beta=true")
        .body(String::new())
        .expect("request");
    let (uri, headers) = through(layer, request).await;

    assert_eq!(uri, "https://api.anthropic.com/v1/messages?beta=true");
    assert_eq!(headers["x-api-key"], "route-key");
    assert!(headers.get("api-key").is_none());
    assert!(headers.get("authorization").is_none());
    assert!(headers.get("host").is_none());
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    // Everything else passes through.
    assert_eq!(headers["anthropic-beta"], "context-management-2025-06-27");
    assert_eq!(headers["x-stainless-lang"], "js");
}

#[tokio::test]
async fn foundry_key_goes_in_both_key_headers() {
    let layer = AuthLayer::new(
        Endpoint::foundry_resource("res").expect("resource"),
        Credential::foundry_api_key(Secret::new("route-key")).expect("key"),
    );
    let request = with_inbound_credentials("/v1/messages")
        .body(String::new())
        .expect("request");
    let (uri, headers) = through(layer, request).await;

    assert_eq!(
        uri,
        "https://res.services.ai.azure.com/anthropic/v1/messages"
    );
    assert_eq!(headers["x-api-key"], "route-key");
    assert_eq!(headers["api-key"], "route-key");
    assert_eq!(headers.get_all("x-api-key").iter().count(), 1);
    assert!(headers.get("authorization").is_none());
}

#[tokio::test]
async fn no_credential_still_strips_the_inbound_ones() {
    let layer = AuthLayer::new(
        Endpoint::foundry_base_url("https://gw.example/anthropic").expect("url"),
        Credential::none(),
    );
    let request = with_inbound_credentials("/v1/messages")
        .body(String::new())
        .expect("request");
    let (_, headers) = through(layer, request).await;
    for name in ["x-api-key", "api-key", "authorization"] {
        assert!(headers.get(name).is_none(), "{name}");
    }
}

#[tokio::test]
async fn an_explicit_anthropic_version_is_kept() {
    let layer = AuthLayer::new(
        Endpoint::anthropic(),
        Credential::anthropic_api_key(Secret::new("k")).expect("key"),
    );
    let request = Request::post("/v1/messages")
        .header("anthropic-version", "2099-01-01")
        .body(String::new())
        .expect("request");
    let (_, headers) = through(layer, request).await;
    assert_eq!(headers["anthropic-version"], "2099-01-01");
    assert_eq!(headers.get_all("anthropic-version").iter().count(), 1);
}
