//! Proxy hygiene at the upstream boundary: the HTTP version is the
//! transport's, and hop-by-hop headers stay on their own connection, in both
//! directions. (An HTTP/2 caller against the simulator: `tests/sim.rs`.)

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use claude_tower_auth::{AuthLayer, Credential, Endpoint, Secret};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{Layer, ServiceExt, service_fn};

const BODY: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

fn anthropic(key: &str) -> AuthLayer {
    AuthLayer::new(
        Endpoint::anthropic(),
        Credential::anthropic_api_key(Secret::new(key)).expect("key"),
    )
}

/// The request as the transport received it, and the response the caller got.
async fn through(
    layer: AuthLayer,
    request: Request<String>,
    upstream: Response<String>,
) -> ((Version, HeaderMap), Response<String>) {
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let mut upstream = Some(upstream);
    let svc = layer.layer(service_fn(move |req: Request<String>| {
        *record.lock().expect("seen") = Some((req.version(), req.headers().clone()));
        let response = upstream.take().expect("one call");
        async move { Ok::<_, Infallible>(response) }
    }));
    let response = svc.oneshot(request).await.expect("sent");
    let seen = seen.lock().expect("seen").take().expect("one request");
    (seen, response)
}

#[tokio::test]
async fn the_callers_version_is_not_the_routes() {
    for version in [Version::HTTP_2, Version::HTTP_10, Version::HTTP_11] {
        let request = Request::post("/v1/messages")
            .version(version)
            .body(String::new())
            .expect("request");
        let ((sent, _), _) = through(anthropic("k"), request, Response::default()).await;
        assert_eq!(sent, Version::HTTP_11, "from {version:?}");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_and_proxy_credentials_never_go_upstream() {
    let request = Request::post("/v1/messages")
        .header("connection", "keep-alive, X-Trace-Hop")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("transfer-encoding", "chunked")
        .header("upgrade", "h2c")
        .header("proxy-authorization", "Basic cHJveHk6c2VjcmV0")
        .header("proxy-authenticate", "Basic")
        .header("cookie", "gateway_session=abc")
        .header("x-trace-hop", "1")
        .header("anthropic-beta", "context-management-2025-06-27")
        .header("x-claude-code-session-id", "s-1")
        .body(String::new())
        .expect("request");
    let ((_, headers), _) = through(anthropic("route-key"), request, Response::default()).await;
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "cookie",
        "x-trace-hop",
    ] {
        assert!(headers.get(name).is_none(), "{name} went upstream");
    }
    assert_eq!(headers["anthropic-beta"], "context-management-2025-06-27");
    assert_eq!(headers["x-claude-code-session-id"], "s-1");
    assert_eq!(headers["x-api-key"], "route-key");
}

#[tokio::test]
async fn connection_cannot_smuggle_the_callers_credential_past_the_swap() {
    // `Connection: x-api-key` removes the caller's key (as it should); the
    // route's own is injected after.
    let request = Request::post("/v1/messages")
        .header("connection", "x-api-key")
        .header("x-api-key", "caller-key")
        .body(String::new())
        .expect("request");
    let ((_, headers), _) = through(anthropic("route-key"), request, Response::default()).await;
    assert_eq!(headers["x-api-key"], "route-key");
    assert_eq!(headers.get_all("x-api-key").iter().count(), 1);
}

#[tokio::test]
async fn hop_by_hop_headers_from_upstream_are_not_passed_back() {
    let upstream = Response::builder()
        .status(StatusCode::OK)
        .header("connection", "keep-alive, x-upstream-hop")
        .header("keep-alive", "timeout=60")
        .header("transfer-encoding", "chunked")
        .header("upgrade", "h2")
        .header("proxy-authenticate", "Basic")
        .header("set-cookie", "__cf_bm=abc; path=/; secure")
        .header("x-upstream-hop", "1")
        .header("request-id", "req_1")
        .header("anthropic-ratelimit-requests-remaining", "99")
        .header("content-type", "text/event-stream")
        .body(String::from("data: {}\n\n"))
        .expect("response");
    let request = Request::post("/v1/messages")
        .body(String::new())
        .expect("request");
    let (_, response) = through(anthropic("k"), request, upstream).await;
    let mut names: Vec<_> = response.headers().keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "anthropic-ratelimit-requests-remaining",
            "content-type",
            "request-id",
        ]
    );
    assert_eq!(response.body(), "data: {}\n\n");
}

/// What a gateway serving an HTTP/2 client hands Auth: version HTTP/2.
fn h2_inbound() -> Request<Full<Bytes>> {
    Request::post("/v1/messages?beta=true")
        .version(Version::HTTP_2)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("request")
}

#[tokio::test]
async fn the_normalised_request_still_speaks_http2_where_the_connection_does() {
    // An HTTP/2-only upstream (prior knowledge here; ALPN h2 takes the same
    // path in hyper-util): the HTTP/1.1 request Auth hands on goes out as
    // HTTP/2 with `:authority` from the URI.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        let service =
            hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                let answer = format!(
                    "{:?} {} {}",
                    req.version(),
                    req.uri().authority().map_or("-", |a| a.as_str()),
                    req.headers()
                        .get("x-api-key")
                        .map_or("-", |v| v.to_str().unwrap_or("?")),
                );
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
            });
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(socket), service)
            .await
            .ok();
    });

    let layer = AuthLayer::new(
        Endpoint::anthropic_base_url(&format!("http://{addr}")).expect("url"),
        Credential::anthropic_api_key(Secret::new("route-key")).expect("key"),
    );
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let response = layer
        .layer(client)
        .oneshot(h2_inbound())
        .await
        .expect("sent over h2");
    assert_eq!(response.version(), Version::HTTP_2);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, format!("HTTP/2.0 {addr} route-key"));
}
