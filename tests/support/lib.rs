//! A gateway on an ephemeral port, and a plain HTTP client to drive it.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use claude_tower_gateway::Gateway;
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

/// Starts a gateway with `vars` as its whole environment. Retries are fast
/// (1-5 ms backoff) unless `vars` says otherwise.
pub async fn start(vars: &[(&str, &str)]) -> TestGateway {
    let mut env: HashMap<String, String> = HashMap::from([
        ("CLAUDE_TOWER_RETRY_BACKOFF".into(), "1ms,5ms".into()),
        ("CLAUDE_TOWER_SIM_FAULTS".into(), String::new()),
    ]);
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let gateway = Gateway::from_lookup(move |name| env.get(name).cloned())
        .await
        .expect("gateway configures");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = gateway.router();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
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

    /// A POST with the headers an Anthropic SDK sends, including its key.
    pub fn post(&self, path: &str) -> http::request::Builder {
        Request::post(format!("http://{}{path}", self.addr))
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
}

pub async fn read(res: Response<Incoming>) -> (StatusCode, http::HeaderMap, Bytes) {
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body arrives").to_bytes();
    (parts.status, parts.headers, bytes)
}

pub fn json(bytes: &Bytes) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null)
}
