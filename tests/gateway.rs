//! The gateway end to end: real HTTP in, the default stack, the simulator's
//! two faces behind it.

use claude_tower_e2e as common;

use bytes::Bytes;
use claude_tower_core::Face;
use claude_tower_sim::{Credential, Sim, SimConfig, event_names};
use common::{HELLO, HELLO_STREAM, json, read, start};
use http::StatusCode;
use http_body_util::{BodyExt, Full};

#[tokio::test]
async fn non_streaming_round_trip_names_the_route_and_keeps_request_ids() {
    let gw = start(&[]).await;
    let (status, headers, body) = read(gw.call("/v1/messages", HELLO).await).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(json(&body)["type"], "message");
    assert_eq!(headers["x-claude-tower-route"], "anthropic");
    assert_eq!(headers["x-claude-tower-attempts"], "anthropic=1");
    let seen = gw.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(headers["request-id"], seen[0].request_id.as_str());
}

#[tokio::test]
async fn foundry_prefix_reaches_the_same_stack() {
    let gw = start(&[("CLAUDE_TOWER_ROUTES", "foundry")]).await;
    let (status, headers, _) = read(gw.call("/anthropic/v1/messages?beta=true", HELLO).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-claude-tower-route"], "foundry");
    let seen = gw.requests();
    assert_eq!(seen[0].route, Face::Foundry);
    assert_eq!(seen[0].path, "/anthropic/v1/messages");
    assert_eq!(seen[0].query.as_deref(), Some("beta=true"));
    let (status, _, body) = read(gw.call("/anthropic/v1/messages/count_tokens", HELLO).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(json(&body)["input_tokens"].as_u64().unwrap() > 0);
}

/// `POST /v1/messages` goes to the stack without the router; with a trailing
/// slash it goes through the router. Both ways must answer alike: status,
/// the stack's headers, the body, what reached upstream, and the router's
/// 405 for another method on the fast path.
#[tokio::test]
async fn the_fast_way_and_the_router_answer_messages_alike() {
    let gw = start(&[]).await;
    let mut answers = Vec::new();
    for path in [
        "/v1/messages",
        "/v1/messages/",
        "/anthropic/v1/messages/count_tokens",
        "/anthropic/v1/messages/count_tokens/",
    ] {
        let (status, headers, body) = read(gw.call(path, HELLO).await).await;
        let mut body = json(&body);
        body.as_object_mut().map(|o| o.remove("id"));
        answers.push((
            status,
            headers["x-claude-tower-route"].clone(),
            headers["content-type"].clone(),
            body,
        ));
    }
    assert_eq!(answers[0].0, StatusCode::OK);
    assert_eq!(answers[0], answers[1], "/v1/messages");
    assert_eq!(answers[2].0, StatusCode::OK);
    assert_eq!(answers[2], answers[3], "count_tokens");
    let seen: Vec<String> = gw.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        seen,
        [
            "/v1/messages",
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/messages/count_tokens"
        ]
    );
    for method in [http::Method::GET, http::Method::PUT, http::Method::HEAD] {
        let (status, _, _) = read(gw.bare(method.clone(), "/v1/messages").await).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    assert_eq!(gw.requests().len(), 4);
}

/// Message ids are counters; everything else in a stream must be byte-equal.
fn without_message_ids(sse: &[u8]) -> String {
    let text = String::from_utf8_lossy(sse).into_owned();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("msg_sim_") {
        out.push_str(&rest[..at]);
        out.push_str("msg_sim_ID");
        rest =
            rest[at + "msg_sim_".len()..].trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn sse_arrives_unchanged_and_incrementally() {
    let gw = start(&[]).await;
    gw.faults("anthropic=slow-stream:40ms");
    let res = gw.call("/v1/messages", HELLO_STREAM).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let first = body
        .frame()
        .await
        .expect("a first frame")
        .unwrap()
        .into_data()
        .unwrap();
    let first_text = String::from_utf8_lossy(&first).into_owned();
    assert!(
        first_text.starts_with("event: message_start"),
        "{first_text}"
    );
    assert!(
        !first_text.contains("message_stop"),
        "the first bytes arrive before the stream ends, not buffered: {first_text}"
    );
    let mut all = first.to_vec();
    all.extend_from_slice(&body.collect().await.unwrap().to_bytes());

    // The same request straight to the simulator, for comparison.
    let direct = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .request(
            http::Request::post(format!("{}/v1/messages", gw.sim().anthropic_base_url()))
                .header("content-type", "application/json")
                .header("anthropic-version", "2023-06-01")
                .header("x-api-key", "direct")
                .body(Full::new(Bytes::from_static(HELLO_STREAM.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    let direct = direct.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(without_message_ids(&all), without_message_ids(&direct));
    assert!(
        without_message_ids(&all)
            .ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    );
}

#[tokio::test]
async fn a_full_tool_use_loop() {
    let gw = start(&[]).await;
    let ask = r#"{"model":"claude-sonnet-4-5","max_tokens":64,
        "tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
        "messages":[{"role":"user","content":"What is the weather? sim:tool_use"}]}"#;
    let (status, _, body) = read(gw.call("/v1/messages", ask).await).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let first = json(&body);
    assert_eq!(first["stop_reason"], "tool_use");
    let tool_use = first["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .expect("a tool_use block")
        .clone();
    let id = tool_use["id"].as_str().unwrap();

    let follow_up = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "tools": [{"name":"get_weather","description":"Weather","input_schema":{"type":"object"}}],
        "messages": [
            {"role": "user", "content": "What is the weather? sim:tool_use"},
            {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "Sunny, 21 C"}]}
        ]
    });
    let req = gw
        .post("/v1/messages")
        .body(Full::new(Bytes::from(follow_up.to_string())))
        .unwrap();
    let (status, _, body) = read(gw.send(req).await).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(json(&body)["stop_reason"], "end_turn");
    assert_eq!(gw.requests().len(), 2);
}

#[tokio::test]
async fn each_retryable_fault_step_is_retried_on_the_same_route() {
    let steps = [
        ("anthropic", "429"),
        ("anthropic", "429:ms30"),
        ("foundry", "429:xms30"),
        ("foundry", "429:1s"),
        ("foundry", "429:date+1s"),
        ("anthropic", "529"),
        ("foundry", "503"),
        ("anthropic", "500"),
        ("anthropic", "502"),
        ("foundry", "504"),
        ("foundry", "transient-auth"),
        ("anthropic", "reset"),
        ("anthropic", "delay:30ms"),
    ];
    let runs = steps.iter().map(|(route, step)| async move {
        let gw = start(&[("CLAUDE_TOWER_ROUTES", route)]).await;
        gw.faults(&format!("{route}={step},ok"));
        let (status, headers, body) = read(gw.call("/v1/messages", HELLO).await).await;
        assert_eq!(status, StatusCode::OK, "{route}={step}: {body:?}");
        let expected = if *step == "delay:30ms" { 1 } else { 2 };
        assert_eq!(
            headers["x-claude-tower-attempts"],
            format!("{route}={expected}").as_str(),
            "{route}={step}"
        );
        assert_eq!(gw.requests().len(), expected as usize, "{route}={step}");
    });
    futures_util::future::join_all(runs).await;
}

#[tokio::test]
async fn failover_both_ways() {
    let gw = start(&[]).await;
    gw.faults("anthropic=529*10");
    let (status, headers, _) = read(gw.call("/v1/messages", HELLO).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-claude-tower-route"], "foundry");
    assert_eq!(headers["x-claude-tower-attempts"], "anthropic=3, foundry=1");

    let gw = start(&[("CLAUDE_TOWER_ROUTES", "foundry,anthropic")]).await;
    gw.faults("foundry=404:deployment");
    let (status, headers, _) = read(gw.call("/v1/messages", HELLO).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-claude-tower-route"], "anthropic");
    assert_eq!(headers["x-claude-tower-attempts"], "foundry=1, anthropic=1");
}

#[tokio::test]
async fn invalid_requests_and_bad_keys_fail_fast_with_no_second_route() {
    for step in ["400", "401", "403"] {
        let gw = start(&[]).await;
        gw.faults(&format!("anthropic={step}"));
        let (status, headers, body) = read(gw.call("/v1/messages", HELLO).await).await;
        assert_eq!(status.as_str(), step, "{body:?}");
        assert_eq!(headers["x-claude-tower-attempts"], "anthropic=1");
        let seen = gw.requests();
        assert_eq!(seen.len(), 1, "{step}: {seen:?}");
        assert!(seen.iter().all(|r| r.route == Face::Anthropic));
    }
}

#[tokio::test]
async fn a_foundry_error_reaches_clients_in_anthropics_envelope() {
    let gw = start(&[
        ("CLAUDE_TOWER_ROUTES", "foundry"),
        ("CLAUDE_TOWER_RETRY_ATTEMPTS", "1"),
    ])
    .await;
    gw.faults("foundry=429:date+2s");
    let (status, headers, body) = read(gw.call("/v1/messages", HELLO).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let hint: u64 = headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("integer seconds, never a date");
    assert!((1..=3).contains(&hint), "{hint}");
    assert!(headers.contains_key("retry-after-ms"));
    assert!(
        headers.contains_key("apim-request-id"),
        "Azure's ids pass through"
    );
    let v = json(&body);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn inbound_credentials_never_reach_upstream() {
    // A simulator that accepts only the routes' own keys, run as a real upstream.
    let sim = Sim::start(
        SimConfig::default()
            .anthropic_key("route-anthropic-key")
            .foundry_key("route-foundry-key"),
    )
    .await
    .unwrap();
    let anthropic = sim.anthropic_base_url();
    let foundry = sim.foundry_base_url();
    let gw = start(&[
        ("ANTHROPIC_API_KEY", "route-anthropic-key"),
        ("ANTHROPIC_BASE_URL", anthropic.as_str()),
        ("ANTHROPIC_FOUNDRY_BASE_URL", foundry.as_str()),
        ("ANTHROPIC_FOUNDRY_API_KEY", "route-foundry-key"),
    ])
    .await;
    sim.set_faults("anthropic=529*10").unwrap();
    let req = gw
        .post("/v1/messages")
        .header("authorization", "Bearer developer-gateway-token")
        .header("api-key", "caller-azure-key")
        .body(Full::new(Bytes::from_static(HELLO.as_bytes())))
        .unwrap();
    let (status, headers, body) = read(gw.send(req).await).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(headers["x-claude-tower-route"], "foundry");
    let seen = sim.requests();
    assert_eq!(seen.len(), 4);
    for r in &seen {
        assert!(r.accepted, "the route's own key was sent: {r:?}");
        assert!(
            !r.credentials_present.contains(&Credential::Bearer),
            "{r:?}"
        );
    }
    assert_eq!(seen[0].credentials_present, vec![Credential::XApiKey]);
    assert_eq!(
        seen[3].credentials_present,
        vec![Credential::XApiKey, Credential::ApiKey]
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_and_are_not_sent() {
    let gw = start(&[("CLAUDE_TOWER_BODY_LIMIT", "64")]).await;
    let (status, _, body) = read(gw.call("/v1/messages", HELLO).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(&body)["error"]["type"], "request_too_large");
    assert!(gw.requests().is_empty());
}

#[tokio::test]
async fn malformed_json_is_the_upstreams_400_sent_once() {
    let gw = start(&[]).await;
    let (status, _, body) = read(gw.call("/v1/messages", "{\"model\": oops").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["error"]["type"], "invalid_request_error");
    assert_eq!(gw.requests().len(), 1);
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_envelope() {
    let gw = start(&[]).await;
    let (status, _, body) = read(gw.call("/v1/complete", "{}").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["error"]["type"], "not_found_error");
    let get = http::Request::get(format!("http://{}/v1/messages", gw.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = read(gw.send(get).await).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json(&body)["type"], "error");
    assert!(gw.requests().is_empty());
}

const DANGLING: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[
    {"role":"user","content":"weather?"},
    {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}]},
    {"role":"user","content":"never mind"}]}"#;

#[tokio::test]
async fn tool_pairing_in_each_mode() {
    let gw = start(&[]).await;
    let (status, _, body) = read(gw.call("/v1/messages", DANGLING).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "reject is the default");
    assert!(
        json(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("messages.1: `tool_use` ids were found")
    );
    assert!(gw.requests().is_empty(), "rejected before any request");

    let gw = start(&[("CLAUDE_TOWER_TOOLPAIR", "repair")]).await;
    let (status, _, body) = read(gw.call("/v1/messages", DANGLING).await).await;
    assert_eq!(status, StatusCode::OK, "repaired: {body:?}");
    assert_eq!(gw.requests().len(), 1);

    let gw = start(&[("CLAUDE_TOWER_TOOLPAIR", "observe")]).await;
    let (status, _, _) = read(gw.call("/v1/messages", DANGLING).await).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "observe sends it as is; the upstream refuses"
    );
    assert_eq!(gw.requests().len(), 1);
}

#[tokio::test]
async fn client_keys_guard_the_gateway_and_stay_local() {
    let gw = start(&[("CLAUDE_TOWER_CLIENT_KEYS", "team-key-1,team-key-2")]).await;
    let (status, _, body) = read(gw.call("/v1/messages", HELLO).await).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the SDK's own key is not a gateway key"
    );
    assert_eq!(json(&body)["error"]["type"], "authentication_error");
    assert!(gw.requests().is_empty());

    for (name, value) in [
        ("x-api-key", "team-key-2"),
        ("authorization", "Bearer team-key-1"),
    ] {
        let req = http::Request::post(format!("http://{}/v1/messages", gw.addr))
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .header(name, value)
            .body(Full::new(Bytes::from_static(HELLO.as_bytes())))
            .unwrap();
        let (status, _, body) = read(gw.send(req).await).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body:?}");
    }
    // The gateway key stayed here: the route sent its own credential only.
    for r in gw.requests() {
        assert_eq!(r.credentials_present, vec![Credential::XApiKey], "{r:?}");
    }
    // The health check stays open for load balancers.
    let health = http::Request::get(format!("http://{}/healthz", gw.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(gw.send(health).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_deadline_answers_504() {
    let gw = start(&[("CLAUDE_TOWER_DEADLINE", "150ms")]).await;
    gw.faults("anthropic=delay:5s");
    let (status, _, body) = read(gw.call("/v1/messages", HELLO).await).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json(&body)["error"]["type"], "timeout_error");
}

#[tokio::test]
async fn readyz_reports_each_route_and_its_breaker() {
    let gw = start(&[]).await;
    gw.faults("anthropic=529*20");
    for _ in 0..2 {
        let (status, _, _) = read(gw.call("/v1/messages", HELLO).await).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, body) = read(gw.bare(http::Method::GET, "/readyz").await).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["mode"], "simulator");
    assert_eq!(v["routes"][0]["id"], "anthropic");
    assert_eq!(v["routes"][0]["face"], "anthropic");
    assert_eq!(v["routes"][0]["consecutive_failures"], 2);
    assert_eq!(v["routes"][1]["id"], "foundry");
    assert_eq!(v["routes"][1]["breaker"], "closed");
}

#[tokio::test]
async fn an_error_event_after_a_200_passes_through_and_is_never_retried() {
    let gw = start(&[]).await;
    gw.faults("anthropic=stream-error");
    let (status, headers, body) = read(gw.call("/v1/messages", HELLO_STREAM).await).await;
    assert_eq!(status, StatusCode::OK, "the decision is made on the head");
    assert_eq!(headers["x-claude-tower-attempts"], "anthropic=1");
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("overloaded_error"), "{text}");
    assert_eq!(gw.requests().len(), 1);
}

#[tokio::test]
async fn an_error_event_before_any_content_is_retried_into_one_clean_stream() {
    let gw = start(&[]).await;
    gw.faults("anthropic=stream-error:early");
    let (status, headers, body) = read(gw.call("/v1/messages", HELLO_STREAM).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-claude-tower-attempts"], "anthropic=2");
    assert_eq!(headers["x-claude-tower-route"], "anthropic");
    let names = event_names(&body);
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert_eq!(names.iter().filter(|n| *n == "message_start").count(), 1);
    assert!(!names.iter().any(|n| n == "error"), "{names:?}");
    assert_eq!(gw.requests().len(), 2);
}

#[tokio::test]
async fn a_route_that_keeps_failing_before_content_fails_over_to_foundry() {
    let gw = start(&[]).await;
    gw.faults("anthropic=stream-error:early*50");
    let (status, headers, body) = read(gw.call("/v1/messages", HELLO_STREAM).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-claude-tower-route"], "foundry");
    assert_eq!(headers["x-claude-tower-attempts"], "anthropic=3, foundry=1");
    let names = event_names(&body);
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(!names.iter().any(|n| n == "error"), "{names:?}");
}
