//! Identity, usage and quota wired into the gateway, end to end: real
//! loopback HTTP, the simulator behind, `/metrics` and `/usage` read back.

use claude_tower_e2e as common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestGateway, json, read, start};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

const KEYS: (&str, &str) = ("CLAUDE_TOWER_CLIENT_KEYS", "ada=k-ada,bob=k-bob");

const TOOLS: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":STREAM,"tools":[{"name":"search","description":"Search","input_schema":{"type":"object","properties":{"query":{"type":"string"}}}}],"messages":[{"role":"user","content":"Look it up. sim:tool_use"}]}"#;

fn body(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"Hello there"}}]}}"#
    )
}

fn tools(stream: bool) -> String {
    TOOLS.replace("STREAM", &stream.to_string())
}

/// A Messages request with `key` as the caller's credential.
fn request(gw: &TestGateway, path: &str, key: &str, body: String) -> Request<Full<Bytes>> {
    Request::post(gw.url(path))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", key)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Token counts the client saw: (input incl. cache, output).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    input: u64,
    output: u64,
}

impl std::ops::AddAssign for Seen {
    fn add_assign(&mut self, o: Self) {
        self.input += o.input;
        self.output += o.output;
    }
}

fn n(v: &serde_json::Value, field: &str) -> Option<u64> {
    v.get(field).and_then(serde_json::Value::as_u64)
}

/// From a JSON message's `usage`.
fn from_json(bytes: &[u8]) -> Seen {
    let v: serde_json::Value = serde_json::from_slice(bytes).expect("a JSON message");
    let u = &v["usage"];
    Seen {
        input: n(u, "input_tokens").unwrap_or(0)
            + n(u, "cache_creation_input_tokens").unwrap_or(0)
            + n(u, "cache_read_input_tokens").unwrap_or(0),
        output: n(u, "output_tokens").unwrap_or(0),
    }
}

/// From SSE events: `message_start`'s usage, then `message_delta`'s fields
/// replacing it one by one (as far as the bytes go).
fn from_sse(bytes: &[u8]) -> Seen {
    let text = String::from_utf8_lossy(bytes);
    let mut fields: [u64; 4] = [0; 4];
    const NAMES: [&str; 4] = [
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    ];
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
            continue; // an event cut by the disconnect
        };
        let usage = match v["type"].as_str() {
            Some("message_start") => &v["message"]["usage"],
            Some("message_delta") => &v["usage"],
            _ => continue,
        };
        for (slot, name) in fields.iter_mut().zip(NAMES) {
            if let Some(x) = n(usage, name) {
                *slot = x;
            }
        }
    }
    Seen {
        input: fields[0] + fields[1] + fields[2],
        output: fields[3],
    }
}

/// The sum of every sample of `metric` whose labels contain all of `labels`.
fn sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(gw: &TestGateway) -> String {
    let (status, headers, body) = read(gw.bare(http::Method::GET, "/metrics").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    String::from_utf8(body.to_vec()).unwrap()
}

/// `/metrics` once `claude_tower_requests_total` reaches `requests` (records
/// go when a body ends, or when the gateway notices a client left).
async fn metrics_after(gw: &TestGateway, requests: f64) -> String {
    for _ in 0..200 {
        let text = metrics(gw).await;
        if sum(&text, "claude_tower_requests_total", &[]) >= requests {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{requests} requests never showed: {}", metrics(gw).await);
}

#[tokio::test]
async fn token_sums_on_metrics_equal_what_the_clients_received() {
    let gw = start(&[KEYS]).await;
    let mut seen = Seen::default();
    let mut count = 0.0;
    let send = async |key: &str, body: String, stream: bool| {
        let (status, _, bytes) = read(gw.send(request(&gw, "/v1/messages", key, body)).await).await;
        assert_eq!(status, StatusCode::OK, "{bytes:?}");
        if stream {
            from_sse(&bytes)
        } else {
            from_json(&bytes)
        }
    };
    // Plain, both ways, two callers.
    for i in 0..3 {
        seen += send("k-ada", body("claude-sonnet-4-5", false), false).await;
        seen += send("k-bob", body("claude-sonnet-4-5", true), true).await;
        count += 2.0;
        let _ = i;
    }
    // Tool use, both ways.
    seen += send("k-ada", tools(false), false).await;
    seen += send("k-ada", tools(true), true).await;
    count += 2.0;
    // A fault that is retried: the client sees (and is billed) the second answer.
    gw.faults("anthropic=529");
    seen += send("k-bob", body("claude-opus-4-1", true), true).await;
    count += 1.0;
    gw.faults("anthropic=529");
    seen += send("k-bob", body("claude-opus-4-1", false), false).await;
    count += 1.0;
    // A client that goes away after the first bytes of a slow stream.
    gw.faults("anthropic=slow-stream:50ms");
    let res = gw
        .send(request(
            &gw,
            "/v1/messages",
            "k-ada",
            body("claude-sonnet-4-5", true),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = res.into_body();
    let first = stream.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"event: message_start"), "{first:?}");
    drop(stream);
    seen += from_sse(&first);
    count += 1.0;

    let text = metrics_after(&gw, count).await;
    let tokens = |kind: &str| {
        sum(
            &text,
            "gen_ai_client_token_usage_sum",
            &[&format!("gen_ai_token_type=\"{kind}\"")],
        )
    };
    assert!(seen.input > 0 && seen.output > 0, "{seen:?}");
    assert_eq!(tokens("input"), seen.input as f64, "input tokens\n{text}");
    assert_eq!(
        tokens("output"),
        seen.output as f64,
        "output tokens\n{text}"
    );

    // Counts by caller, route and requested model.
    let requests = |labels: &[&str]| sum(&text, "claude_tower_requests_total", labels);
    assert_eq!(requests(&["claude_tower_caller=\"ada\""]), 6.0, "{text}");
    assert_eq!(requests(&["claude_tower_caller=\"bob\""]), 5.0, "{text}");
    assert_eq!(requests(&["claude_tower_route=\"anthropic\""]), count);
    assert_eq!(
        requests(&["gen_ai_request_model=\"claude-opus-4-1\""]),
        2.0,
        "the requested model reaches the usage layer outside the stack\n{text}"
    );
    assert_eq!(
        requests(&["gen_ai_request_model=\"claude-sonnet-4-5\""]),
        count - 2.0
    );
    assert_eq!(
        requests(&["error_type=\"client_disconnected\""]),
        1.0,
        "{text}"
    );
    // Route health beside the GenAI metrics; the retried 529s show as attempts.
    assert!(
        text.contains("claude_tower_route_breaker_state{")
            && text.contains("claude_tower_route=\"anthropic\""),
        "{text}"
    );
    assert_eq!(
        sum(&text, "claude_tower_upstream_attempts_total", &[]),
        count + 2.0,
        "{text}"
    );
    assert!(text.contains("claude_tower_quota_shared"), "{text}");
}

// === identity ===

mod issuer {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use hyper::body::Incoming;

    /// Discovery and JWKS on 127.0.0.1: an OpenID Connect issuer as the
    /// identity layer finds one.
    pub(crate) async fn serve(jwks: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let discovery = serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
        })
        .to_string();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (discovery, jwks) = (discovery.clone(), jwks.clone());
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let body = match req.uri().path() {
                        "/.well-known/openid-configuration" => discovery.clone(),
                        "/jwks" => jwks.clone(),
                        _ => String::new(),
                    };
                    async move {
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
                );
            }
        });
        issuer
    }
}

#[tokio::test]
async fn tokens_and_client_keys_name_the_caller() {
    use claude_tower_identity::test_util::{SigningKey, jwks, now};

    let key = SigningKey::rsa("k1");
    let issuer = issuer::serve(jwks(&[&key])).await;
    let gw = start(&[
        ("CLAUDE_TOWER_OIDC_ISSUER", issuer.as_str()),
        ("CLAUDE_TOWER_OIDC_AUDIENCE", "api://claude-gateway"),
        ("CLAUDE_TOWER_CLIENT_KEYS", "ci-bot=k-ci"),
    ])
    .await;
    let token = key.sign(&serde_json::json!({
        "iss": issuer, "aud": "api://claude-gateway", "sub": "ada-sub", "oid": "ada-oid",
        "preferred_username": "ada@contoso.com", "exp": now() + 600,
    }));
    let bearer = |token: &str| {
        Request::post(gw.url("/anthropic/v1/messages"))
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from(body("claude-sonnet-4-5", false))))
            .unwrap()
    };

    // Claude Code in Foundry mode with an Entra-style token.
    let (status, _, bytes) = read(gw.send(bearer(&token)).await).await;
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    // A client key.
    let (status, _, _) = read(
        gw.send(request(
            &gw,
            "/v1/messages",
            "k-ci",
            body("claude-sonnet-4-5", false),
        ))
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A token signed by someone else, and garbage: 401 in Anthropic's envelope.
    let forged = SigningKey::rsa("k1").sign(&serde_json::json!({
        "iss": issuer, "aud": "api://claude-gateway", "sub": "mallory", "exp": now() + 600,
    }));
    for bad in [forged.as_str(), "not-a-key"] {
        let (status, headers, bytes) = read(gw.send(bearer(bad)).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json(&bytes)["error"]["type"], "authentication_error");
        assert_eq!(
            headers["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        assert!(!String::from_utf8_lossy(&bytes).contains(bad));
    }
    // No credential at all.
    let (status, _, _) = read(gw.call_bare_messages().await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The inbound credential never went upstream.
    for seen in gw.requests() {
        assert!(!format!("{:?}", seen).contains(&token));
    }

    // Refused requests never reach the usage layer (identity is outside it).
    let text = metrics_after(&gw, 2.0).await;
    let requests = |caller: &str| {
        sum(
            &text,
            "claude_tower_requests_total",
            &[&format!("claude_tower_caller=\"{caller}\"")],
        )
    };
    assert_eq!(requests("ada-oid"), 1.0, "{text}");
    assert_eq!(requests("ci-bot"), 1.0, "{text}");
}

trait BareMessages {
    async fn call_bare_messages(&self) -> http::Response<hyper::body::Incoming>;
}

impl BareMessages for TestGateway {
    async fn call_bare_messages(&self) -> http::Response<hyper::body::Incoming> {
        let req = Request::post(self.url("/v1/messages"))
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .body(Full::new(Bytes::from(body("claude-sonnet-4-5", false))))
            .unwrap();
        self.send(req).await
    }
}

#[tokio::test]
async fn off_loopback_without_an_identity_does_not_start() {
    let err = common::configure(&[
        ("CLAUDE_TOWER_LISTEN", "0.0.0.0:0"),
        ("CLAUDE_TOWER_SIMULATOR", "1"),
    ])
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("CLAUDE_TOWER_CLIENT_KEYS"), "{err}");
    assert!(err.contains("CLAUDE_TOWER_ENTRA_TENANT_ID"), "{err}");
    // Some identity: it starts.
    common::configure(&[
        ("CLAUDE_TOWER_LISTEN", "0.0.0.0:0"),
        ("CLAUDE_TOWER_SIMULATOR", "1"),
        KEYS,
    ])
    .await
    .expect("starts with client keys");
}

// === quota ===

/// A config file in a directory of its own, removed with the directory when
/// the test is done with it (passed or not).
struct ConfigFile {
    dir: std::path::PathBuf,
    path: String,
}

impl ConfigFile {
    fn as_str(&self) -> &str {
        &self.path
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config_file(name: &str, text: &str) -> ConfigFile {
    let dir = std::env::temp_dir().join(format!("ct-wave2-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    ConfigFile {
        path: path.display().to_string(),
        dir,
    }
}

/// One non-streaming Messages call on the Foundry prefix as `key`.
async fn foundry_call(gw: &TestGateway, key: &str) -> (StatusCode, http::HeaderMap, Bytes) {
    let req = request(
        gw,
        "/anthropic/v1/messages",
        key,
        body("claude-sonnet-4-5", false),
    );
    read(gw.send(req).await).await
}

/// Sends `key`'s requests until one is refused (usage settles when a body
/// ends, a moment after the client has it).
async fn until_refused(gw: &TestGateway, key: &str) -> (http::HeaderMap, Bytes) {
    for _ in 0..100 {
        let (status, headers, bytes) = foundry_call(gw, key).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return (headers, bytes);
        }
        assert_eq!(status, StatusCode::OK, "{bytes:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{key} was never limited");
}

#[tokio::test]
async fn a_low_tpm_limits_one_caller_with_retry_after_and_ratelimit_headers() {
    let file = config_file(
        "tpm",
        "[quota.callers.ada]\ntokens_per_minute = 20\nburst_tokens = 20\n",
    );
    let gw = start(&[
        KEYS,
        ("CLAUDE_TOWER_CONFIG", file.as_str()),
        ("CLAUDE_TOWER_ROUTES", "foundry"),
    ])
    .await;
    // The Foundry route sends no ratelimit headers: the caller's own come back.
    let (status, headers, _) = foundry_call(&gw, "k-ada").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["anthropic-ratelimit-tokens-limit"], "20");
    assert!(headers.contains_key("anthropic-ratelimit-tokens-remaining"));
    assert!(headers.contains_key("anthropic-ratelimit-tokens-reset"));

    let (headers, bytes) = until_refused(&gw, "k-ada").await;
    assert_eq!(json(&bytes)["error"]["type"], "rate_limit_error");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(headers.contains_key("retry-after-ms"));
    assert_eq!(headers["anthropic-ratelimit-tokens-remaining"], "0");

    // Bob has no limit of his own and is not held back.
    for _ in 0..3 {
        let (status, _, _) = foundry_call(&gw, "k-bob").await;
        assert_eq!(status, StatusCode::OK);
    }

    // /usage (loopback): consumption per caller and ada's standing.
    let (status, _, bytes) = read(gw.bare(http::Method::GET, "/usage").await).await;
    assert_eq!(status, StatusCode::OK);
    let usage = json(&bytes);
    let ada = usage["consumption"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["caller"] == "ada")
        .cloned()
        .unwrap_or_default();
    assert!(ada["requests"].as_u64().unwrap() >= 2, "{usage}");
    assert!(ada["output_tokens"].as_u64().unwrap() > 0, "{usage}");
    let limits = usage["limits"].as_array().unwrap();
    let standing = limits
        .iter()
        .find(|s| s["key"] == "caller:ada")
        .unwrap_or_else(|| panic!("{usage}"));
    assert_eq!(standing["tokens"]["limit"], 20, "{usage}");
    assert_eq!(standing["tokens"]["remaining"], 0, "{usage}");
}

#[tokio::test]
async fn usage_off_leaves_out_the_records_but_limits_still_settle() {
    let file = config_file(
        "usage-off",
        "[quota.callers.ada]\ntokens_per_minute = 100000\n",
    );
    let gw = start(&[
        KEYS,
        ("CLAUDE_TOWER_CONFIG", file.as_str()),
        ("CLAUDE_TOWER_ROUTES", "foundry"),
        ("CLAUDE_TOWER_USAGE", "off"),
    ])
    .await;
    for _ in 0..2 {
        let (status, headers, _) = foundry_call(&gw, "k-ada").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["anthropic-ratelimit-tokens-limit"], "100000");
    }
    // The quota still settles both from the usage read off the answers...
    let mut usage = serde_json::Value::Null;
    for _ in 0..200 {
        let (status, _, bytes) = read(gw.bare(http::Method::GET, "/usage").await).await;
        assert_eq!(status, StatusCode::OK);
        usage = json(&bytes);
        if usage["quota"]["settled"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(usage["quota"]["settled"], 2, "{usage}");
    assert_eq!(usage["quota"]["unknown_usage"], 0, "{usage}");
    // ...but no record was made: no GenAI metrics, no consumption.
    assert_eq!(usage["consumption"], serde_json::json!([]), "{usage}");
    let text = metrics(&gw).await;
    assert!(!text.contains("gen_ai_client_token_usage"), "{text}");
    assert!(!text.contains("claude_tower_requests_total"), "{text}");
    assert!(text.contains("claude_tower_quota_settled"), "{text}");
}

#[tokio::test]
async fn two_gateways_on_one_redis_share_a_callers_limit() {
    let redis = claude_tower_quota::test_util::RedisServer::start();
    let url = redis.url();
    let file = config_file(
        "redis",
        "[quota.callers.ada]\ntokens_per_minute = 20\nburst_tokens = 20\n",
    );
    let vars = [
        KEYS,
        ("CLAUDE_TOWER_CONFIG", file.as_str()),
        ("CLAUDE_TOWER_ROUTES", "foundry"),
        ("CLAUDE_TOWER_REDIS_URL", url.as_str()),
    ];
    let one = start(&vars).await;
    let two = start(&vars).await;
    // Ada spends her tokens on the first instance...
    let _ = until_refused(&one, "k-ada").await;
    // ...and the second one knows.
    let (status, headers, bytes) = foundry_call(&two, "k-ada").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{bytes:?}");
    assert!(headers.contains_key("retry-after"));
    let (status, _, bytes) = read(two.bare(http::Method::GET, "/usage").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&bytes)["quota"]["store"]["shared"], true, "{bytes:?}");
}
