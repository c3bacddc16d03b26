//! Behaviour of the simulator over real HTTP on loopback.

mod common;

use std::time::{Duration, SystemTime};

use claude_tower_core::Face;
use claude_tower_sim::{Credential, Sim, SimConfig};
use common::*;
use serde_json::{Value, json};

async fn sim() -> Sim {
    Sim::start(SimConfig::default()).await.expect("sim starts")
}

fn assert_anthropic_error(reply: &Reply, status: u16, kind: &str) {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    let v = reply.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(v["error"]["message"].is_string());
    let id = reply.header("request-id").expect("request-id");
    assert!(id.starts_with("req_sim_"));
    assert_eq!(v["request_id"], id);
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

fn assert_foundry_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    let v = reply.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string());
    assert!(v.get("type").is_none());
    let apim = reply.header("apim-request-id").expect("apim-request-id");
    assert_eq!(reply.header("x-ms-request-id"), Some(apim));
    assert!(reply.header("request-id").is_none());
}

// === success ===

#[tokio::test]
async fn anthropic_face_answers_a_message() {
    let sim = sim().await;
    let reply = send(&sim, Route::Anthropic, &simple_body()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("request-id").unwrap().starts_with("req_sim_"));
    assert!(reply.header("anthropic-ratelimit-requests-limit").is_some());
    assert!(reply.header("apim-request-id").is_none());
    let v = reply.json();
    assert!(reply.body.starts_with(b"{\"id\":\"msg_sim_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(
        v["content"][0]["text"],
        "Hello from the claude-tower simulator."
    );
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn foundry_face_answers_a_message_with_azure_ids() {
    let sim = sim().await;
    let reply = send(&sim, Route::Foundry, &simple_body()).await;
    assert_eq!(reply.status, 200);
    let apim = reply.header("apim-request-id").unwrap();
    assert_eq!(reply.header("x-ms-request-id"), Some(apim));
    assert!(reply.header("request-id").unwrap().starts_with("req_sim_"));
    assert!(reply.header("anthropic-ratelimit-requests-limit").is_none());
    assert_eq!(reply.json()["type"], "message");
}

#[tokio::test]
async fn count_tokens_on_both_faces() {
    let sim = sim().await;
    for route in BOTH {
        let body =
            json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(400)}]});
        let reply = send_raw(
            &client(),
            &url(&sim, route, "/v1/messages/count_tokens"),
            &default_headers(route),
            body.to_string(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200);
        let n = reply.json()["input_tokens"].as_u64().unwrap();
        assert!((100..200).contains(&n), "{n}");
    }
}

#[tokio::test]
async fn query_strings_and_large_bodies_are_fine() {
    let sim = sim().await;
    let big = json!({
        "model": "m", "max_tokens": 1, "system": "s".repeat(250_000),
        "metadata": {"user_id": "u"}, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "hi"}],
    });
    let reply = send_raw(
        &client(),
        &url(&sim, Route::Foundry, "/v1/messages?beta=true"),
        &default_headers(Route::Foundry),
        big.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let log = sim.requests();
    assert_eq!(log[0].path, "/anthropic/v1/messages");
    assert_eq!(log[0].query.as_deref(), Some("beta=true"));
    assert!(log[0].body_len > 250_000);
}

// === auth ===

#[tokio::test]
async fn anthropic_auth_wants_x_api_key() {
    let sim = Sim::start(SimConfig::default().anthropic_key("good"))
        .await
        .unwrap();
    let version = ("anthropic-version", "2023-06-01".to_owned());
    let cases: [(Headers, u16, Option<&str>); 4] = [
        (vec![("x-api-key", "good".into())], 200, None),
        (
            vec![("x-api-key", "bad".into())],
            401,
            Some("invalid x-api-key"),
        ),
        (vec![], 401, Some("x-api-key header is required")),
        (
            vec![("authorization", "Bearer good".into())],
            401,
            Some("x-api-key header is required"),
        ),
    ];
    for (mut headers, status, message) in cases {
        headers.push(version.clone());
        let reply = send_with(&sim, Route::Anthropic, &headers, &simple_body()).await;
        match message {
            None => assert_eq!(reply.status, status),
            Some(m) => {
                assert_anthropic_error(&reply, status, "authentication_error");
                assert_eq!(reply.json()["error"]["message"], m);
            }
        }
    }
    let log = sim.requests();
    let seen: Vec<(Credential, bool)> = log.iter().map(|r| (r.credential, r.accepted)).collect();
    assert_eq!(
        seen,
        [
            (Credential::XApiKey, true),
            (Credential::XApiKey, false),
            (Credential::None, false),
            (Credential::None, false)
        ]
    );
    assert_eq!(log[3].credentials_present, [Credential::Bearer]);
    assert_eq!(log[1].step, "-");
}

#[tokio::test]
async fn foundry_auth_takes_either_key_header_or_a_bearer_token() {
    let sim = Sim::start(SimConfig::default().foundry_key("fk").foundry_token("tok"))
        .await
        .unwrap();
    let version = ("anthropic-version", "2023-06-01".to_owned());
    let cases: [(Headers, u16, &str); 7] = [
        (vec![("x-api-key", "fk".into())], 200, ""),
        (vec![("api-key", "fk".into())], 200, ""),
        (vec![("authorization", "Bearer tok".into())], 200, ""),
        (
            vec![("api-key", "nope".into())],
            401,
            "invalid subscription key",
        ),
        (
            vec![("x-api-key", "nope".into())],
            401,
            "invalid subscription key",
        ),
        (
            vec![("authorization", "Bearer nope".into())],
            401,
            "Access token is missing, invalid",
        ),
        (vec![], 401, "missing subscription key"),
    ];
    for (mut headers, status, message) in cases {
        headers.push(version.clone());
        let reply = send_with(&sim, Route::Foundry, &headers, &simple_body()).await;
        if status == 200 {
            assert_eq!(reply.status, 200);
        } else {
            assert_foundry_error(&reply, 401, "401");
            assert!(
                reply.json()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(message)
            );
        }
    }
    let creds: Vec<Credential> = sim.requests().iter().map(|r| r.credential).collect();
    assert_eq!(
        creds,
        [
            Credential::XApiKey,
            Credential::ApiKey,
            Credential::Bearer,
            Credential::ApiKey,
            Credential::XApiKey,
            Credential::Bearer,
            Credential::None
        ]
    );
}

#[tokio::test]
async fn unset_secrets_accept_any_non_empty_credential() {
    let sim = sim().await;
    let version = ("anthropic-version", "2023-06-01".to_owned());
    let ok = send_with(
        &sim,
        Route::Foundry,
        &[("authorization", "Bearer whatever".into()), version.clone()],
        &simple_body(),
    )
    .await;
    assert_eq!(ok.status, 200);
    let empty = send_with(
        &sim,
        Route::Anthropic,
        &[("x-api-key", "".into()), version.clone()],
        &simple_body(),
    )
    .await;
    assert_anthropic_error(&empty, 401, "authentication_error");
    let empty = send_with(
        &sim,
        Route::Foundry,
        &[("authorization", "Bearer ".into()), version],
        &simple_body(),
    )
    .await;
    assert_foundry_error(&empty, 401, "401");
}

// === validation ===

#[tokio::test]
async fn anthropic_version_is_required_on_both_faces() {
    let sim = sim().await;
    let a = send_with(
        &sim,
        Route::Anthropic,
        &[("x-api-key", "k".into())],
        &simple_body(),
    )
    .await;
    assert_anthropic_error(&a, 400, "invalid_request_error");
    assert_eq!(
        a.json()["error"]["message"],
        "anthropic-version: header is required"
    );
    let f = send_with(
        &sim,
        Route::Foundry,
        &[("api-key", "k".into())],
        &simple_body(),
    )
    .await;
    assert_foundry_error(&f, 400, "400");
    assert_eq!(
        f.json()["error"]["message"],
        "anthropic-version: header is required"
    );
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.anthropic_version.is_none() && r.step == "-")
    );
}

#[tokio::test]
async fn malformed_json_gets_each_faces_400() {
    let sim = sim().await;
    for garbage in [
        "{not json",
        "",
        "[1,2",
        "\u{0}\u{1}",
        "{\"model\": 5}",
        "{\"stream\": \"yes\"}",
    ] {
        let a = send_raw(
            &client(),
            &url(&sim, Route::Anthropic, "/v1/messages"),
            &default_headers(Route::Anthropic),
            garbage.to_owned(),
        )
        .await
        .unwrap();
        assert_anthropic_error(&a, 400, "invalid_request_error");
        let f = send_raw(
            &client(),
            &url(&sim, Route::Foundry, "/v1/messages"),
            &default_headers(Route::Foundry),
            garbage.to_owned(),
        )
        .await
        .unwrap();
        assert_foundry_error(&f, 400, "400");
    }
    let missing = send(
        &sim,
        Route::Anthropic,
        &json!({"model": "m", "messages": []}),
    )
    .await;
    assert_eq!(
        missing.json()["error"]["message"],
        "max_tokens: Field required"
    );
}

#[tokio::test]
async fn random_bodies_and_headers_get_clean_answers() {
    let sim = sim().await;
    let c = client();
    let mut rng = fastrand::Rng::with_seed(3);
    for i in 0..200 {
        let len = rng.usize(0..300);
        let body: Vec<u8> = match i % 3 {
            0 => (0..len).map(|_| rng.u8(..)).collect(),
            1 => {
                // Plausible JSON with random shapes in the fields the simulator reads.
                let pick = |rng: &mut fastrand::Rng| match rng.u8(0..6) {
                    0 => json!(null),
                    1 => json!(rng.i64(..)),
                    2 => json!("s"),
                    3 => json!([{"role": "user", "content": [{"type": "tool_result"}]}]),
                    4 => json!({"role": 5}),
                    _ => json!([1, "x", {"type": "tool_use", "id": 7}]),
                };
                json!({"model": pick(&mut rng), "max_tokens": pick(&mut rng), "messages": pick(&mut rng),
                       "stream": pick(&mut rng), "tools": pick(&mut rng)})
                .to_string()
                .into_bytes()
            }
            _ => b"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[1,null,{}]}]}".to_vec(),
        };
        let route = if i % 2 == 0 {
            Route::Anthropic
        } else {
            Route::Foundry
        };
        let mut headers = default_headers(route);
        headers.push(("x-sim-stream-bytes", format!("{}", rng.i32(..))));
        let reply = send_raw(&c, &url(&sim, route, "/v1/messages"), &headers, body)
            .await
            .expect("an answer");
        assert!(
            reply.status == 200 || reply.status == 400,
            "{} {:?}",
            reply.status,
            reply.body
        );
        assert!(serde_json::from_slice::<Value>(&reply.body).is_ok());
    }
}

#[tokio::test]
async fn broken_tool_pairing_gets_the_apis_wording_on_both_faces() {
    let sim = sim().await;
    let body = json!({
        "model": "m", "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}]},
            {"role": "user", "content": "forgot the result"},
        ],
    });
    let expected = "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1. \
                    Each `tool_use` block must have a corresponding `tool_result` block in the next message.";
    let a = send(&sim, Route::Anthropic, &body).await;
    assert_anthropic_error(&a, 400, "invalid_request_error");
    assert_eq!(a.json()["error"]["message"], expected);
    let f = send(&sim, Route::Foundry, &body).await;
    assert_foundry_error(&f, 400, "400");
    assert_eq!(f.json()["error"]["message"], expected);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let sim = Sim::start(SimConfig::default().body_limit(1000))
        .await
        .unwrap();
    let big = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x".repeat(2000)}]});
    let a = send(&sim, Route::Anthropic, &big).await;
    assert_anthropic_error(&a, 413, "request_too_large");
    let f = send(&sim, Route::Foundry, &big).await;
    assert_foundry_error(&f, 413, "413");
}

#[tokio::test]
async fn unknown_paths_get_each_faces_404() {
    let sim = sim().await;
    let a = send_raw(
        &client(),
        &url(&sim, Route::Anthropic, "/v1/models"),
        &default_headers(Route::Anthropic),
        "",
    )
    .await
    .unwrap();
    assert_anthropic_error(&a, 404, "not_found_error");
    let f = send_raw(
        &client(),
        &url(&sim, Route::Foundry, "/v1/batches"),
        &default_headers(Route::Foundry),
        "",
    )
    .await
    .unwrap();
    assert_foundry_error(&f, 404, "404");
}

// === fault steps ===

/// Sets `step` on both routes and checks each face's answer.
async fn fault_case(
    sim: &Sim,
    step: &str,
    anthropic: (u16, &str),
    foundry: (u16, &str),
) -> (Reply, Reply) {
    sim.set_faults(&format!("anthropic={step};foundry={step}"))
        .unwrap();
    let a = send(sim, Route::Anthropic, &simple_body()).await;
    assert_anthropic_error(&a, anthropic.0, anthropic.1);
    let f = send(sim, Route::Foundry, &simple_body()).await;
    assert_foundry_error(&f, foundry.0, foundry.1);
    // The script ran out: the next request on each route succeeds.
    assert_eq!(
        send(sim, Route::Anthropic, &simple_body()).await.status,
        200,
        "{step}"
    );
    assert_eq!(
        send(sim, Route::Foundry, &simple_body()).await.status,
        200,
        "{step}"
    );
    (a, f)
}

#[tokio::test]
async fn status_steps_shape_each_face() {
    let sim = sim().await;
    let cases = [
        ("529", (529, "overloaded_error"), (529, "529")),
        ("503", (503, "overloaded_error"), (503, "503")),
        ("500", (500, "api_error"), (500, "500")),
        ("502", (502, "api_error"), (502, "502")),
        ("504", (504, "timeout_error"), (504, "504")),
        ("400", (400, "invalid_request_error"), (400, "400")),
        ("401", (401, "authentication_error"), (401, "401")),
        ("403", (403, "permission_error"), (403, "PermissionDenied")),
        (
            "404:deployment",
            (404, "not_found_error"),
            (404, "DeploymentNotFound"),
        ),
        (
            "transient-auth",
            (401, "authentication_error"),
            (401, "invalid_model_endpoint_authentication"),
        ),
    ];
    for (step, a, f) in cases {
        fault_case(&sim, step, a, f).await;
    }
    sim.set_faults("404:deployment").unwrap();
    let f = send(&sim, Route::Foundry, &simple_body()).await;
    assert!(
        f.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("The API deployment for this resource does not exist.")
    );
    let a = send(&sim, Route::Anthropic, &simple_body()).await;
    assert_eq!(a.json()["error"]["message"], "model: claude-sonnet-4-5");
}

#[tokio::test]
async fn rate_limit_steps_carry_the_hint_they_name() {
    let sim = sim().await;
    let hints = ["retry-after", "retry-after-ms", "x-ms-retry-after-ms"];
    let cases: [(&str, Option<(&str, &str)>); 5] = [
        ("429", None),
        ("429:2s", Some(("retry-after", "2"))),
        ("429:1.5s", Some(("retry-after", "1.5"))),
        ("429:ms1500", Some(("retry-after-ms", "1500"))),
        ("429:xms1500", Some(("x-ms-retry-after-ms", "1500"))),
    ];
    for (step, expected) in cases {
        let (a, f) = fault_case(&sim, step, (429, "rate_limit_error"), (429, "429")).await;
        for reply in [&a, &f] {
            for h in hints {
                let want = expected.filter(|(name, _)| *name == h).map(|(_, v)| v);
                assert_eq!(reply.header(h), want, "{step} {h}");
            }
        }
    }
    let (a, f) = fault_case(&sim, "429:date+2s", (429, "rate_limit_error"), (429, "429")).await;
    for reply in [a, f] {
        let date = httpdate::parse_http_date(reply.header("retry-after").unwrap()).unwrap();
        let ahead = date.duration_since(SystemTime::now()).unwrap_or_default();
        assert!(
            ahead > Duration::from_millis(900) && ahead <= Duration::from_secs(3),
            "{ahead:?}"
        );
    }
}

#[tokio::test]
async fn title_case_headers_send_retry_after_capitalised() {
    let sim = Sim::start(
        SimConfig::default()
            .title_case_headers(true)
            .faults("foundry=429:2s"),
    )
    .await
    .unwrap();
    let addr = sim.addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = simple_body().to_string();
    let req = format!(
        "POST /anthropic/v1/messages HTTP/1.1\r\nhost: x\r\napi-key: k\r\nanthropic-version: 2023-06-01\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 429"), "{out}");
    assert!(out.contains("\r\nRetry-After: 2\r\n"), "{out}");
    assert!(out.contains("\r\nApim-Request-Id: "), "{out}");
}

#[tokio::test]
async fn steps_repeat_and_then_run_out() {
    let sim = Sim::start(SimConfig::default().faults("anthropic=503*2,429;foundry=500"))
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            send(&sim, Route::Anthropic, &simple_body())
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses, [503, 503, 429, 200]);
    assert_eq!(send(&sim, Route::Foundry, &simple_body()).await.status, 500);
    assert_eq!(send(&sim, Route::Foundry, &simple_body()).await.status, 200);
    let steps: Vec<String> = sim.requests().into_iter().map(|r| r.step).collect();
    assert_eq!(steps, ["503", "503", "429", "ok", "500", "ok"]);
}

#[tokio::test]
async fn bad_scripts_are_refused_and_keep_the_old_one() {
    let sim = Sim::start(SimConfig::default().faults("anthropic=500"))
        .await
        .unwrap();
    assert!(sim.set_faults("anthropic=418").is_err());
    assert!(
        sim.set_faults("mars=429")
            .unwrap_err()
            .to_string()
            .contains("mars")
    );
    assert_eq!(
        send(&sim, Route::Anthropic, &simple_body()).await.status,
        500
    );
    let err = Sim::start(SimConfig::default().faults("nonsense"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn reset_step_drops_the_connection() {
    let sim = Sim::start(SimConfig::default().faults("reset"))
        .await
        .unwrap();
    for route in BOTH {
        let res = send_raw(
            &client(),
            &url(&sim, route, "/v1/messages"),
            &default_headers(route),
            simple_body().to_string(),
        )
        .await;
        let err = res.expect_err("connection dropped");
        assert!(!err.is_connect(), "{err:?}");
        assert_eq!(send(&sim, route, &simple_body()).await.status, 200);
    }
    let log = sim.requests();
    assert_eq!((log[0].step.as_str(), log[0].status), ("reset", 0));
    assert_eq!(log[1].step, "ok");
}

#[tokio::test]
async fn reset_on_a_pooled_connection_is_not_retried_by_the_client() {
    let sim = sim().await;
    let c = client();
    let target = url(&sim, Route::Anthropic, "/v1/messages");
    let headers = default_headers(Route::Anthropic);
    let first = send_raw(&c, &target, &headers, simple_body().to_string())
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    sim.set_faults("anthropic=reset").unwrap();
    assert!(
        send_raw(&c, &target, &headers, simple_body().to_string())
            .await
            .is_err()
    );
    let again = send_raw(&c, &target, &headers, simple_body().to_string())
        .await
        .unwrap();
    assert_eq!(again.status, 200);
    let steps: Vec<String> = sim.requests().into_iter().map(|r| r.step).collect();
    assert_eq!(steps, ["ok", "reset", "ok"]);
}

#[tokio::test(start_paused = true)]
async fn delay_step_waits_in_tokio_time() {
    let sim = Sim::start(SimConfig::default().faults("anthropic=delay:300ms"))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let reply = send(&sim, Route::Anthropic, &simple_body()).await;
    assert_eq!(reply.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(sim.requests()[0].step, "delay:300ms");
}

#[tokio::test]
async fn random_is_a_seeded_mix_of_retryable_faults() {
    async fn run() -> Vec<String> {
        let sim = Sim::start(SimConfig::default().faults("foundry=random(p=0.5,seed=7)*40"))
            .await
            .unwrap();
        for _ in 0..41 {
            let _ = send_raw(
                &client(),
                &url(&sim, Route::Foundry, "/v1/messages"),
                &default_headers(Route::Foundry),
                simple_body().to_string(),
            )
            .await;
        }
        sim.requests().into_iter().map(|r| r.step).collect()
    }
    let a = run().await;
    assert_eq!(a, run().await);
    assert_eq!(a.len(), 41);
    assert_eq!(a[40], "ok");
    let faults = a.iter().filter(|s| *s != "ok").count();
    assert!((8..32).contains(&faults), "{a:?}");
    let allowed = [
        "429",
        "429:ms100",
        "503",
        "500",
        "502",
        "504",
        "transient-auth",
    ];
    assert!(
        a.iter().all(|s| s == "ok" || allowed.contains(&s.as_str())),
        "{a:?}"
    );
}

// === streaming ===

fn stream_body() -> Value {
    let mut b = simple_body();
    b["stream"] = json!(true);
    b
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "ping")
        .collect()
}

#[tokio::test]
async fn stream_events_come_in_order() {
    let sim = sim().await;
    for route in BOTH {
        let reply = send(&sim, route, &stream_body()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("text/event-stream"));
        let raw = std::str::from_utf8(&reply.body).unwrap();
        for line in raw.lines().filter(|l| l.starts_with("data: ")) {
            assert!(
                line.starts_with("data: {\"type\":"),
                "type goes first: {line}"
            );
        }
        let events = reply.events();
        assert!(events.iter().any(|(n, _)| n == "ping"));
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_str());
        }
        let n = names(&events);
        assert_eq!(n[..2], ["message_start", "content_block_start"]);
        assert_eq!(
            n[n.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let deltas = &n[2..n.len() - 3];
        assert!(deltas.len() >= 3 && deltas.iter().all(|d| *d == "content_block_delta"));
        let text: String = events
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(text, "Hello from the claude-tower simulator.");
        let start = &events[0].1["message"];
        assert_eq!(start["model"], "claude-sonnet-4-5");
        let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 1);
        assert_eq!(
            delta["usage"]["input_tokens"],
            start["usage"]["input_tokens"]
        );
    }
    assert!(sim.requests().iter().all(|r| r.stream));
}

#[tokio::test]
async fn stream_error_sends_an_error_event_after_the_200() {
    let sim = Sim::start(SimConfig::default().faults("stream-error*2"))
        .await
        .unwrap();
    let reply = send(&sim, Route::Foundry, &stream_body()).await;
    assert_eq!(reply.status, 200);
    let events = reply.events();
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error");
    assert_eq!(data["error"]["type"], "overloaded_error");
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));
    assert_eq!(events[0].0, "message_start");
    let a = send(&sim, Route::Anthropic, &stream_body()).await;
    assert_eq!(a.events().last().unwrap().0, "error");
    // Non-streaming requests get the face's overload error.
    let a = send(&sim, Route::Anthropic, &simple_body()).await;
    assert_anthropic_error(&a, 529, "overloaded_error");
    let f = send(&sim, Route::Foundry, &simple_body()).await;
    assert_foundry_error(&f, 503, "503");
}

#[tokio::test]
async fn early_stream_error_comes_before_any_content() {
    let sim = Sim::start(SimConfig::default().faults("stream-error:early*2"))
        .await
        .unwrap();
    for route in BOTH {
        let reply = send(&sim, route, &stream_body()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("text/event-stream"));
        let events = reply.events();
        let n: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(n, ["message_start", "ping", "error"]);
        let (_, data) = events.last().unwrap();
        assert_eq!(data["type"], "error");
        assert_eq!(data["error"]["type"], "overloaded_error");
    }
    // A non-streaming request gets the face's overload error; then Anthropic's script has run out.
    let a = send(&sim, Route::Anthropic, &simple_body()).await;
    assert_anthropic_error(&a, 529, "overloaded_error");
    let ok = send(&sim, Route::Anthropic, &stream_body()).await;
    assert_eq!(ok.events().last().unwrap().0, "message_stop");
    let steps: Vec<String> = sim.requests().into_iter().map(|r| r.step).collect();
    assert_eq!(
        steps,
        [
            "stream-error:early",
            "stream-error:early",
            "stream-error:early",
            "ok"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn slow_stream_spaces_events_in_tokio_time() {
    let sim = Sim::start(SimConfig::default().faults("slow-stream:50ms"))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let reply = send(&sim, Route::Anthropic, &stream_body()).await;
    let events = reply.events();
    assert_eq!(events.last().unwrap().0, "message_stop");
    let gaps = events.len() as u32 - 1;
    assert!(
        start.elapsed() >= Duration::from_millis(50) * gaps,
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn stream_bytes_header_asks_for_a_big_stream() {
    let sim = sim().await;
    let mut headers = default_headers(Route::Anthropic);
    headers.push(("x-sim-stream-bytes", "1000000".into()));
    let reply = send_with(&sim, Route::Anthropic, &headers, &stream_body()).await;
    let events = reply.events();
    let text: usize = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap().len())
        .sum();
    assert_eq!(text, 1_000_000);
    assert_eq!(events.last().unwrap().0, "message_stop");
}

// === tools ===

fn tool_body(stream: bool) -> Value {
    json!({
        "model": "m", "max_tokens": 100, "stream": stream,
        "tools": [{"name": "search", "input_schema": {"type": "object"}}, {"name": "weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "look it up, sim:tool_use:weather"}],
    })
}

#[tokio::test]
async fn tool_use_marker_gets_a_tool_call_and_the_loop_ends() {
    let sim = sim().await;
    let reply = send(&sim, Route::Foundry, &tool_body(false)).await;
    let v = reply.json();
    assert_eq!(v["stop_reason"], "tool_use");
    let call = &v["content"][1];
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["name"], "weather");
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("toolu_sim_"));

    let mut next = tool_body(false);
    next["messages"] = json!([
        {"role": "user", "content": "look it up, sim:tool_use:weather"},
        {"role": "assistant", "content": v["content"].clone()},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny"}]},
    ]);
    let done = send(&sim, Route::Foundry, &next).await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert_eq!(done.json()["stop_reason"], "end_turn");
}

#[tokio::test]
async fn streamed_tool_use_has_a_tool_block_and_input_deltas() {
    let sim = sim().await;
    let reply = send(&sim, Route::Anthropic, &tool_body(true)).await;
    let events = reply.events();
    let start = events
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["index"] == 1)
        .expect("tool block");
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    assert_eq!(start.1["content_block"]["name"], "weather");
    let json: String = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({"query": "simulated"})
    );
    let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    let n = names(&events);
    assert_eq!(n.last(), Some(&"message_stop"));
}

// === request log and control endpoints ===

#[tokio::test]
async fn request_log_records_what_arrived() {
    let sim = sim().await;
    let mut headers = default_headers(Route::Foundry);
    headers.push((
        "anthropic-beta",
        "context-1m-2025-08-07,interleaved-thinking-2025-05-14".into(),
    ));
    headers.push(("authorization", "Bearer t".into()));
    send_with(&sim, Route::Foundry, &headers, &stream_body()).await;
    send(&sim, Route::Anthropic, &simple_body()).await;
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    let f = &log[0];
    assert_eq!(f.route, Face::Foundry);
    assert_eq!(f.path, "/anthropic/v1/messages");
    assert_eq!(f.model.as_deref(), Some("claude-sonnet-4-5"));
    assert!(f.stream);
    assert_eq!(f.credential, Credential::ApiKey);
    assert_eq!(
        f.credentials_present,
        [Credential::ApiKey, Credential::Bearer]
    );
    assert!(f.accepted);
    assert_eq!(f.anthropic_version.as_deref(), Some("2023-06-01"));
    assert_eq!(
        f.anthropic_beta.as_deref(),
        Some("context-1m-2025-08-07,interleaved-thinking-2025-05-14")
    );
    assert_eq!((f.step.as_str(), f.status), ("ok", 200));
    assert_eq!(log[1].route, Face::Anthropic);
    assert!(!log[1].stream);
    sim.reset();
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn control_endpoints_set_faults_list_requests_and_reset() {
    let sim = sim().await;
    let c = client();
    let base = sim.anthropic_base_url();
    let set = send_raw(&c, &format!("{base}/_sim/faults"), &[], "foundry=502")
        .await
        .unwrap();
    assert_eq!(set.status, 204);
    let bad = send_raw(&c, &format!("{base}/_sim/faults"), &[], "foundry=999")
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(send(&sim, Route::Foundry, &simple_body()).await.status, 502);

    let req = http::Request::get(format!("{base}/_sim/requests"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let res = c.request(req).await.unwrap();
    assert_eq!(res.headers()["x-sim-dropped"], "0");
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["route"], "foundry");
    assert_eq!(list[0]["step"], "502");
    assert_eq!(list[0]["credential"], "api-key");
    assert_eq!(list[0]["accepted"], true);
    assert_eq!(list[0]["status"], 502);

    let reset = send_raw(&c, &format!("{base}/_sim/reset"), &[], "")
        .await
        .unwrap();
    assert_eq!(reset.status, 204);
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn the_log_is_bounded_and_counts_what_it_dropped() {
    let sim = Sim::start(SimConfig::default().log_capacity(3))
        .await
        .unwrap();
    for _ in 0..5 {
        send(&sim, Route::Anthropic, &simple_body()).await;
    }
    assert_eq!(sim.requests().len(), 3);
    assert_eq!(sim.dropped_requests(), 2);
    sim.reset();
    assert_eq!(sim.dropped_requests(), 0);
}

#[tokio::test]
async fn dropping_the_sim_stops_it() {
    let sim = sim().await;
    let addr = sim.addr();
    drop(sim);
    tokio::task::yield_now().await;
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused);
}
