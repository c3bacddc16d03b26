//! Error bodies that are not Azure's envelope cross a real HTTP connection
//! untouched: a canned upstream on 127.0.0.1 answers with exact bytes, a
//! hyper client reads them through a rewriting Foundry route.

use std::io::Write;

use bytes::Bytes;
use claude_tower_core::{ClaudeError, ErrorClass, Face, RouteId};
use claude_tower_normalize::NormalizeLayer;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

/// Serves one connection: reads the request head, answers `head` + `body`.
async fn canned(head: String, body: Bytes) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.expect("read");
            if n == 0 {
                return;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        socket.write_all(head.as_bytes()).await.expect("head");
        socket.write_all(&body).await.expect("body");
        socket.shutdown().await.ok();
    });
    format!("http://{addr}/anthropic/v1/messages")
}

async fn fetch(url: String) -> http::Response<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let route = NormalizeLayer::new(RouteId::new("foundry"), Face::Foundry)
        .with_rewrite_envelope(true)
        .layer(client);
    let request = Request::post(url)
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    let response = route.oneshot(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    http::Response::from_parts(parts, body)
}

#[tokio::test]
async fn a_gzip_encoded_400_arrives_byte_identical_and_still_decodes() {
    let json = br#"{"error":{"code":"400","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(json).expect("gzip");
    let gz = Bytes::from(encoder.finish().expect("gzip"));
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
         content-encoding: gzip\r\ncontent-length: {}\r\napim-request-id: apim-gz\r\n\r\n",
        gz.len()
    );

    let response = fetch(canned(head, gz.clone()).await).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.headers()["content-length"], gz.len().to_string());
    let err = response
        .extensions()
        .get::<ClaudeError>()
        .expect("classified");
    assert_eq!(err.class(), ErrorClass::InvalidRequest);
    assert_eq!(err.request_ids().apim_request_id(), Some("apim-gz"));
    assert_eq!(response.body(), &gz, "the bytes upstream sent");

    // What httpx or fetch would do with it: decode as labelled.
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&response.body()[..]),
        &mut decoded,
    )
    .expect("still a gzip stream");
    assert_eq!(decoded, json);
}

#[tokio::test]
async fn an_html_503_from_a_front_door_arrives_untouched() {
    let page = Bytes::from_static(b"<!DOCTYPE html><html><body>Service Unavailable</body></html>");
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 2\r\n\r\n",
        page.len()
    );
    let response = fetch(canned(head, page.clone()).await).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let err = response
        .extensions()
        .get::<ClaudeError>()
        .expect("classified");
    assert_eq!(err.class(), ErrorClass::Overloaded);
    assert_eq!(err.retry_after().map(|w| w.duration().as_secs()), Some(2));
    assert_eq!(response.body(), &page);
}
