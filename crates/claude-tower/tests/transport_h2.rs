//! What the transport does with a request when an HTTP/2 upstream already
//! has as many streams open as its `SETTINGS_MAX_CONCURRENT_STREAMS` allows
//! ([`https_client_with`] and [`UpstreamHttp::Http2`]), and what the default
//! ([`https_client`], HTTP/1.1 only) does instead: why HTTP/2 is not the
//! default.
//!
//! Found here (hyper-util 0.1 legacy client, hyper 1, h2 0.4): the request
//! neither fails nor gets a second connection. hyper-util's pool hands out
//! the one HTTP/2 connection to a host to every request (`can_share`, and
//! `PoolClient::poll_ready` is always ready for HTTP/2), so the request
//! waits inside hyper/h2 until a stream on that connection ends. A
//! deadline around the request still fires while it waits; but the first
//! request in line has already been handed to h2, so when it is abandoned
//! its stream is still opened upstream once a slot frees (and reset at
//! once). Through the default stack the waiting attempt neither errors nor
//! answers, so retry and failover never act on it: only the stack's
//! deadline ends it, with a 504. Over HTTP/1.1 the same load opens one
//! connection per open stream instead.
//!
//! Streams are held open without a clock: the simulator generates an
//! `x-sim-stream-bytes` stream as the client reads, so a body the test does
//! not read stays open (HTTP/2 flow control stops the server) until the
//! test reads it to the end.
//!
//! `https_client()` trusts the platform's roots, which rustls-native-certs
//! reads from `SSL_CERT_FILE` on Linux. The workspace forbids `unsafe`, so
//! a test cannot `set_var` it in its own process; each test instead runs
//! itself again in a child process that has `SSL_CERT_FILE` pointing at a
//! test CA generated for that run (see [`in_child_trusting_test_ca`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use claude_tower::prelude::*;
use claude_tower::transport::{HttpsClient, UpstreamHttp, https_client, https_client_with};
use claude_tower_core::{ClaudeError, ErrorClass, ReplayBody};
use claude_tower_sim::{Alpn, Sim, SimConfig};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tower::ServiceExt;

/// Set in the child process: the directory holding the test PKI.
const PKI_DIR_ENV: &str = "CLAUDE_TOWER_TEST_H2_PKI_DIR";

/// How long the simulator's held streams are. More than the client's
/// HTTP/2 stream window (hyper's default, 2 MiB) plus the server's send
/// buffer, so an unread body cannot reach its end; small enough to read
/// through in a moment.
const HELD_STREAM_BYTES: usize = 4 << 20;

/// The streams the simulator's HTTP/2 connections admit at once.
const MAX_STREAMS: u32 = 2;

/// Long enough for a request that could be sent to be answered on
/// loopback; a queued request can never finish inside it, however loaded
/// the machine, so it cannot make the test flaky.
const DEADLINE: Duration = Duration::from_millis(300);

/// The stack's deadline in the stack scenario: roomy, since the held
/// requests (a TLS handshake among them) must beat it on a loaded machine.
const STACK_DEADLINE: Duration = Duration::from_secs(2);

/// Safety net for awaits that must finish.
const PATIENCE: Duration = Duration::from_secs(5);

// === the scenarios (run in the child) ===

#[test]
fn h2_over_the_stream_limit_waits_for_a_stream_to_end_on_one_connection() {
    in_child_trusting_test_ca(
        "h2_over_the_stream_limit_waits_for_a_stream_to_end_on_one_connection",
        h2_over_the_stream_limit,
    );
}

async fn h2_over_the_stream_limit(pki_dir: PathBuf) {
    let sim = sim(&pki_dir, &[Alpn::H2]).await;
    let client = https_client_with(UpstreamHttp::Http2).expect("TLS set up");

    let held_a = send(&client, &sim, "held-a", true).await;
    let held_b = send(&client, &sim, "held-b", true).await;
    assert_eq!(held_a.version(), Version::HTTP_2);
    let stats = sim.connections();
    assert_eq!((stats.accepted, stats.tls_h2), (1, 1), "{stats:?}");
    assert_eq!(models_seen(&sim), ["held-a", "held-b"]);

    // Request 3 while both streams are open: it neither fails nor opens a
    // connection; its deadline fires while it waits.
    let queued = tokio::time::timeout(DEADLINE, send(&client, &sim, "abandoned", false)).await;
    assert!(queued.is_err(), "request 3 was not held back");
    // Request 4 also waits, behind the abandoned one, without failing.
    let mut waiting = tokio::spawn({
        let client = client.clone();
        let request = request(&sim, "waiting", false);
        async move { client.request(request).await }
    });
    assert!(
        tokio::time::timeout(DEADLINE, &mut waiting).await.is_err(),
        "request 4 was not held back"
    );
    let stats = sim.connections();
    assert_eq!(
        (stats.accepted, stats.tls_h2, stats.h2_streams),
        (1, 1, 2),
        "no second connection, no third stream: {stats:?}"
    );
    assert_eq!(models_seen(&sim), ["held-a", "held-b"], "nothing was sent");

    // Stream A ends: the waiting request goes out on the same connection.
    read_to_end(held_a).await;
    let answer = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("request 4 answered once a stream ended")
        .expect("request task")
        .expect("request 4 succeeded");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.version(), Version::HTTP_2);
    read_to_end(answer).await;

    let stats = sim.connections();
    assert_eq!((stats.accepted, stats.tls_h2), (1, 1), "{stats:?}");
    // The request whose deadline fired had already been handed to h2 (it
    // was first in line), so its stream is opened anyway when A ends, and
    // reset at once: the upstream sees a fourth stream. Whether its body
    // arrives before the reset is a race, so the log (answered requests
    // only) is checked without it.
    assert_eq!(stats.h2_streams, 4, "{stats:?}");
    let seen = models_seen(&sim);
    let answered: Vec<_> = seen.iter().filter(|m| *m != "abandoned").collect();
    assert_eq!(answered, ["held-a", "held-b", "waiting"]);
    println!("h2, max {MAX_STREAMS} streams: connections {stats:?}; upstream logged {seen:?}");
    drop(held_b);
}

#[test]
fn http11_over_the_same_load_opens_a_connection_per_open_stream() {
    in_child_trusting_test_ca(
        "http11_over_the_same_load_opens_a_connection_per_open_stream",
        http11_under_the_same_load,
    );
}

async fn http11_under_the_same_load(pki_dir: PathBuf) {
    // The upstream offers both; the default transport offers HTTP/1.1 only.
    let sim = sim(&pki_dir, &Alpn::DEFAULT).await;
    let client = https_client().expect("TLS set up");

    let held_a = send(&client, &sim, "held-a", true).await;
    let held_b = send(&client, &sim, "held-b", true).await;
    assert_eq!(held_a.version(), Version::HTTP_11);
    // A third request is answered while both streams are still open.
    let third = tokio::time::timeout(PATIENCE, send(&client, &sim, "third", false))
        .await
        .expect("request 3 answered while two streams are open");
    assert_eq!(third.status(), StatusCode::OK);
    read_to_end(third).await;

    let stats = sim.connections();
    // HTTP/1.1 without ALPN: hyper-rustls names no protocol when it offers
    // only one, and a server then speaks HTTP/1.1.
    assert_eq!(
        (
            stats.accepted,
            stats.tls_h2,
            stats.tls_http11 + stats.tls_no_alpn
        ),
        (3, 0, 3),
        "one connection per open stream: {stats:?}"
    );
    assert_eq!(models_seen(&sim), ["held-a", "held-b", "third"]);
    println!(
        "http/1.1: connections {stats:?}; upstream saw {:?}",
        models_seen(&sim)
    );
    drop((held_a, held_b));
}

#[test]
fn through_the_stack_a_request_past_the_limit_gets_the_deadlines_504() {
    in_child_trusting_test_ca(
        "through_the_stack_a_request_past_the_limit_gets_the_deadlines_504",
        stack_deadline_past_the_limit,
    );
}

/// What the gateway's stack makes of it: the waiting attempt neither
/// errors nor answers, so retry and failover never see it; the stack's
/// deadline is what ends it, with a 504 `timeout_error`.
async fn stack_deadline_past_the_limit(pki_dir: PathBuf) {
    let sim = sim(&pki_dir, &[Alpn::H2]).await;
    let route = Route::new(
        "anthropic",
        Endpoint::anthropic_base_url(&sim.anthropic_base_url()).expect("a base URL"),
        Credential::anthropic_api_key(Secret::new("k")).expect("a key"),
    );
    let stack = ClaudeStack::new()
        .route(route)
        .with_deadline(STACK_DEADLINE)
        .build(https_client_with(UpstreamHttp::Http2).expect("TLS set up"))
        .expect("the stack builds");
    let through_stack = |model: &str, held: bool| {
        let req = request(&sim, model, held);
        let (mut parts, body) = req.into_parts();
        parts.uri = "/v1/messages".parse().expect("a path");
        stack.clone().oneshot(Request::from_parts(parts, body))
    };

    let held_a = through_stack("held-a", true).await.expect("an answer");
    let held_b = through_stack("held-b", true).await.expect("an answer");
    assert_eq!(
        (held_a.status(), held_b.status()),
        (StatusCode::OK, StatusCode::OK)
    );

    let late = tokio::time::timeout(PATIENCE, through_stack("late", false))
        .await
        .expect("the deadline answers")
        .expect("an answer");
    assert_eq!(late.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        late.extensions()
            .get::<ClaudeError>()
            .map(ClaudeError::class),
        Some(ErrorClass::Timeout)
    );
    let body = late.into_body().collect().await.expect("a body").to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["error"]["type"], "timeout_error");

    let stats = sim.connections();
    assert_eq!(
        (stats.accepted, stats.tls_h2, stats.h2_streams),
        (1, 1, 2),
        "the late request has not left the gateway (it would once a stream ends, \
         as the h2 scenario shows): {stats:?}"
    );
    println!("stack, deadline {STACK_DEADLINE:?}: 504 timeout_error; connections {stats:?}");
    drop((held_a, held_b));
}

// === helpers ===

/// A TLS simulator with the test PKI, offering `alpn`, whose HTTP/2
/// connections admit [`MAX_STREAMS`] streams.
async fn sim(pki_dir: &Path, alpn: &[Alpn]) -> Sim {
    let config = SimConfig::default()
        .tls_pem_files(pki_dir.join("cert.pem"), pki_dir.join("key.pem"))
        .alpn(alpn.iter().copied())
        .h2_max_concurrent_streams(MAX_STREAMS);
    Sim::start(config).await.expect("TLS simulator starts")
}

/// A Messages request; `model` names it in the simulator's log. A `held`
/// one streams [`HELD_STREAM_BYTES`], more than the client buffers unread.
fn request(sim: &Sim, model: &str, held: bool) -> Request<ReplayBody> {
    let body = serde_json::json!({
        "model": model,
        "max_tokens": 16,
        "stream": held,
        "messages": [{"role": "user", "content": "Hello"}],
    });
    let mut builder = Request::post(format!("{}/v1/messages", sim.anthropic_base_url()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json");
    if held {
        builder = builder.header("x-sim-stream-bytes", HELD_STREAM_BYTES);
    }
    builder
        .body(ReplayBody::new(Bytes::from(body.to_string())))
        .expect("a valid request")
}

/// Sends a request and waits for its response head (not its body).
async fn send(client: &HttpsClient, sim: &Sim, model: &str, held: bool) -> Response<Incoming> {
    let res = client
        .request(request(sim, model, held))
        .await
        .expect("an answer");
    assert_eq!(res.status(), StatusCode::OK, "{model}");
    res
}

async fn read_to_end(res: Response<Incoming>) {
    tokio::time::timeout(PATIENCE, res.into_body().collect())
        .await
        .expect("the body ends")
        .expect("the body reads");
}

/// The models of the Messages requests the simulator received, in order.
fn models_seen(sim: &Sim) -> Vec<String> {
    sim.requests().into_iter().filter_map(|r| r.model).collect()
}

// === running in a child that trusts the test CA ===

/// Runs `scenario` in a child process of this test binary whose
/// `SSL_CERT_FILE` is a freshly generated test CA, so that the real
/// [`https_client`] (platform verifier) trusts the simulator's certificate.
///
/// In the parent: generates the PKI, runs this binary again filtered to
/// `test_name` exactly, forwards its output and fails if it fails or ran
/// no test. In the child (`PKI_DIR_ENV` set): runs `scenario` on a
/// multi-threaded runtime.
fn in_child_trusting_test_ca<F, Fut>(test_name: &str, scenario: F)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(dir) = std::env::var_os(PKI_DIR_ENV) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(scenario(PathBuf::from(dir)));
        return;
    }
    let pki = TestPki::generate(test_name);
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(PKI_DIR_ENV, &pki.dir)
        .env("SSL_CERT_FILE", pki.dir.join("ca.pem"))
        .env_remove("SSL_CERT_DIR")
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- child stdout ---\n{stdout}--- child stderr ---\n{stderr}");
    assert!(out.status.success(), "the scenario failed in the child");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test named {test_name}"
    );
}

/// A test CA and a `localhost` / `127.0.0.1` leaf signed by it, written to
/// a directory removed on drop.
struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    fn generate(test_name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "claude-tower-transport-h2-{}-{test_name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let pki = TestPki { dir };

        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "claude-tower transport_h2 test CA",
        );
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("the CA signs itself");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let leaf_key = rcgen::KeyPair::generate().expect("a leaf key");
        let mut leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("the CA signs the leaf");

        let write = |name: &str, pem: String| {
            std::fs::write(pki.dir.join(name), pem).expect("the PKI is written");
        };
        write("ca.pem", ca_cert.pem());
        write("cert.pem", leaf.pem());
        write("key.pem", leaf_key.serialize_pem());
        pki
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
