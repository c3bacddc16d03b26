//! A small HTTP client for the simulator tests.

#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use claude_tower_sim::Sim;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Request headers as (name, value).
pub type Headers = Vec<(&'static str, String)>;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Anthropic,
    Foundry,
}

pub const BOTH: [Route; 2] = [Route::Anthropic, Route::Foundry];

pub fn url(sim: &Sim, route: Route, path: &str) -> String {
    match route {
        Route::Anthropic => format!("{}{path}", sim.anthropic_base_url()),
        Route::Foundry => format!("{}{path}", sim.foundry_base_url()),
    }
}

pub fn simple_body() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    })
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// SSE events as (name, data).
    pub fn events(&self) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(&self.body).expect("utf8");
        text.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let mut name = String::new();
                let mut data = Value::Null;
                for line in e.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(d).expect("event json");
                    }
                }
                (name, data)
            })
            .collect()
    }
}

/// Default headers: a credential the route accepts when no key is configured, and the version.
pub fn default_headers(route: Route) -> Headers {
    let cred = match route {
        Route::Anthropic => ("x-api-key", "k".to_owned()),
        Route::Foundry => ("api-key", "fk".to_owned()),
    };
    vec![cred, ("anthropic-version", "2023-06-01".to_owned())]
}

pub async fn send_raw(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, String)],
    body: impl Into<Bytes>,
) -> Result<Reply, hyper_util::client::legacy::Error> {
    let mut req = Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .expect("request");
    let res = client.request(req).await?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

pub async fn send(sim: &Sim, route: Route, body: &Value) -> Reply {
    send_with(sim, route, &default_headers(route), body).await
}

pub async fn send_with(sim: &Sim, route: Route, headers: &[(&str, String)], body: &Value) -> Reply {
    send_raw(
        &client(),
        &url(sim, route, "/v1/messages"),
        headers,
        body.to_string(),
    )
    .await
    .expect("request")
}
