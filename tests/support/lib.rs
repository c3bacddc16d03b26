//! The end-to-end harness: a gateway on an ephemeral loopback port, served
//! exactly as the binary serves it, and plain HTTP clients to drive it.
//!
//! Each test passes the gateway's whole environment as a list of variables,
//! so tests never read or write the process environment.

#![forbid(unsafe_code)]
#![allow(missing_docs, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use claude_tower_gateway::{Gateway, GatewayError};
use claude_tower_sim::{RecordedRequest, Sim};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub const HELLO: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":32,"messages":[{"role":"user","content":"Hello"}]}"#;
pub const HELLO_STREAM: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;

pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for TestGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestGateway")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// `vars` over the harness defaults: fast retries (1-5 ms backoff) and a
/// simulator without faults.
pub fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let mut env: HashMap<String, String> = HashMap::from([
        ("CLAUDE_TOWER_RETRY_BACKOFF".into(), "1ms,5ms".into()),
        ("CLAUDE_TOWER_SIM_FAULTS".into(), String::new()),
    ]);
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    move |name| env.get(name).cloned()
}

/// The gateway `vars` configure, or why it would not start.
pub async fn configure(vars: &[(&str, &str)]) -> Result<Gateway, GatewayError> {
    Gateway::from_lookup(env(vars)).await
}

/// Starts a gateway with `vars` as its whole environment (over [`env()`]'s
/// defaults), serving on an ephemeral loopback port.
pub async fn start(vars: &[(&str, &str)]) -> TestGateway {
    let gateway = configure(vars).await.expect("gateway configures");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = gateway.serve(listener, std::future::pending());
    tokio::spawn(async move {
        serving.await.expect("the gateway serves");
    });
    TestGateway {
        addr,
        gateway,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl TestGateway {
    pub fn sim(&self) -> &Sim {
        self.gateway.simulator().expect("simulator mode")
    }

    pub fn faults(&self, script: &str) {
        self.sim().set_faults(script).expect("valid fault script");
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.sim().requests()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A POST with the headers an Anthropic SDK sends, including its key.
    pub fn post(&self, path: &str) -> http::request::Builder {
        Request::post(self.url(path))
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .header("x-api-key", "sk-ant-CALLER-KEY")
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Response<Incoming> {
        self.client.request(req).await.expect("gateway answers")
    }

    pub async fn call(&self, path: &str, body: &'static str) -> Response<Incoming> {
        let req = self
            .post(path)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        self.send(req).await
    }

    /// A request with no body and no headers.
    pub async fn bare(&self, method: http::Method, path: &str) -> Response<Incoming> {
        let req = Request::builder()
            .method(method)
            .uri(self.url(path))
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(req).await
    }
}

pub async fn read(res: Response<Incoming>) -> (StatusCode, http::HeaderMap, Bytes) {
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body arrives").to_bytes();
    (parts.status, parts.headers, bytes)
}

pub fn json(bytes: &Bytes) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null)
}

/// A stand-in upstream that records what reaches it and answers every
/// request with one status and body.
#[derive(Debug, Clone)]
pub struct Capture {
    pub addr: SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(http::Method, String)>>>,
}

impl Capture {
    pub async fn start(status: u16, body: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::default();
        let capture = Self { addr, seen };
        let recorder = capture.seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let recorder = recorder.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let recorder = recorder.clone();
                    async move {
                        recorder
                            .lock()
                            .unwrap()
                            .push((req.method().clone(), req.uri().path().to_owned()));
                        let _ = req.into_body().collect().await;
                        Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
                );
            }
        });
        capture
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Method and path of every request so far.
    pub fn seen(&self) -> Vec<(http::Method, String)> {
        self.seen.lock().unwrap().clone()
    }
}
