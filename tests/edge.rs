//! The gateway's edge over real loopback connections: HTTP/2 from clients,
//! the header-read and idle timeouts, the connection cap, TLS with ALPN, the
//! paths Claude Code probes, the Anthropic-only APIs, health and readiness,
//! and refusing to start on a partial upstream configuration.

use std::time::{Duration, Instant};

use bytes::Bytes;
use claude_tower_e2e::{Capture, HELLO, configure, json, read, start};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn hello() -> Full<Bytes> {
    Full::new(Bytes::from_static(HELLO.as_bytes()))
}

fn messages(uri: String) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(hello())
        .unwrap()
}

/// Reads until the server closes the connection; what it sent on the way.
async fn until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

// === HTTP/2 ===

#[tokio::test]
async fn an_h2_prior_knowledge_client_gets_200_and_no_breaker_moves() {
    // Needs proxy hygiene in Auth (branch `hygiene`): the upstream request's
    // HTTP version is the transport's, never the caller's.
    let gw = start(&[]).await;
    let h2 = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    for _ in 0..3 {
        let res = h2.request(messages(gw.url("/v1/messages"))).await.unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2);
        let (status, _, body) = read(res).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
    }
    let (_, _, body) = read(gw.bare(Method::GET, "/readyz").await).await;
    for route in json(&body)["routes"].as_array().unwrap() {
        assert_eq!(route["consecutive_failures"], 0, "{route}");
        assert_eq!(route["breaker"], "closed", "{route}");
    }
}

// === timeouts and limits ===

/// Starts a Messages head and sends one more header line every 50 ms, never
/// the blank line that ends them, until the gateway closes the connection;
/// how long that took. Panics after 5 s.
async fn trickle_a_head_until_closed(tcp: &mut TcpStream) -> Duration {
    let began = Instant::now();
    let (mut rd, mut wr) = tcp.split();
    let trickle = async {
        if wr
            .write_all(b"POST /v1/messages HTTP/1.1\r\nhost: gw\r\n")
            .await
            .is_err()
        {
            return;
        }
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if wr
                .write_all(format!("x-slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let closed = async {
        let mut buf = [0u8; 256];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = closed => {},
        () = trickle => {},
        () = tokio::time::sleep(Duration::from_secs(5)) => panic!("still open after 5 s"),
    }
    began.elapsed()
}

/// One `GET /healthz` on `tcp`, answered 200.
async fn healthz(tcp: &mut TcpStream) {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
}

#[tokio::test]
async fn a_slow_header_client_is_dropped_after_the_header_read_timeout() {
    let gw = start(&[("CLAUDE_TOWER_HEADER_READ_TIMEOUT", "300ms")]).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let took = trickle_a_head_until_closed(&mut tcp).await;
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    assert!(gw.requests().is_empty());
}

#[tokio::test]
async fn a_slow_second_head_on_a_kept_alive_connection_is_cut_at_the_timeout() {
    // After a first request the first-request guard is spent and the idle
    // timeout is far off: only hyper's header-read timer can end this.
    let gw = start(&[
        ("CLAUDE_TOWER_HEADER_READ_TIMEOUT", "300ms"),
        ("CLAUDE_TOWER_IDLE_TIMEOUT", "30s"),
    ])
    .await;
    // After one request, then after two: each head has a timer of its own.
    for requests in 1..=2 {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        for _ in 0..requests {
            healthz(&mut tcp).await;
        }
        let took = trickle_a_head_until_closed(&mut tcp).await;
        assert!(
            took >= Duration::from_millis(250),
            "closed too early after {requests} request(s): {took:?}"
        );
    }
    assert!(gw.requests().is_empty(), "no head was ever completed");
}

#[tokio::test]
async fn a_kept_alive_http1_connection_waits_for_its_next_request_up_to_the_header_read_timeout() {
    let gw = start(&[
        ("CLAUDE_TOWER_HEADER_READ_TIMEOUT", "300ms"),
        ("CLAUDE_TOWER_IDLE_TIMEOUT", "30s"),
    ])
    .await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    healthz(&mut tcp).await;
    let began = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), until_closed(&mut tcp))
        .await
        .expect("closed within 5 s");
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_header_read_timeout() {
    // Not a byte, so not even the HTTP/2 preface check completes: hyper's own
    // timer never starts; the gateway's does.
    let gw = start(&[("CLAUDE_TOWER_HEADER_READ_TIMEOUT", "200ms")]).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let began = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), until_closed(&mut tcp))
        .await
        .expect("closed within 5 s");
    assert!(began.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed() {
    let gw = start(&[
        ("CLAUDE_TOWER_IDLE_TIMEOUT", "300ms"),
        ("CLAUDE_TOWER_HEADER_READ_TIMEOUT", "10s"),
    ])
    .await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let health = Request::get(gw.url("/healthz"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = sender.send_request(health).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Idle now: the gateway says GOAWAY and the connection ends.
    let began = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("closed within 5 s")
        .unwrap()
        .ok();
    assert!(
        began.elapsed() >= Duration::from_millis(250),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn a_request_in_flight_keeps_its_connection_past_the_idle_timeout() {
    let gw = start(&[
        ("CLAUDE_TOWER_IDLE_TIMEOUT", "200ms"),
        ("CLAUDE_TOWER_HEADER_READ_TIMEOUT", "10s"),
    ])
    .await;
    gw.faults("anthropic=delay:800ms");
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(messages(gw.url("/v1/messages")))
        .await
        .expect("the answer arrives although nothing moved for 4x the idle timeout");
    let (status, _, body) = read(res).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait() {
    let gw = start(&[("CLAUDE_TOWER_MAX_CONNECTIONS", "1")]).await;
    let open = |gw_addr| async move {
        let tcp = TcpStream::connect(gw_addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
                .await
                .unwrap();
        (sender, tokio::spawn(conn))
    };
    let (mut first, first_conn) = open(gw.addr).await;
    let res = first
        .send_request(Request::get(gw.url("/")).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (mut second, _second_conn) = open(gw.addr).await;
    let waiting = second.send_request(Request::get(gw.url("/")).body(Full::default()).unwrap());
    tokio::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "the second connection is not served while the first holds the only slot"
    );
    drop(first);
    first_conn.abort();
    let res = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once the slot is free")
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_a_request_in_flight_finish() {
    let gw = configure(&[]).await.unwrap();
    gw.simulator()
        .unwrap()
        .set_faults("anthropic=delay:300ms")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(gw.serve(listener, async {
        let _ = stopped.await;
    }));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let in_flight =
        tokio::spawn(sender.send_request(messages(format!("http://{addr}/v1/messages"))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "refused while the request in flight finishes"
    );
    let res = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    let (status, _, body) = read(res).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve returns once the connection is done")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

// === TLS ===

struct Pems {
    dir: std::path::PathBuf,
    ca: rustls_pki_types::CertificateDer<'static>,
}

impl Pems {
    fn new(name: &str) -> Self {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!("ctg-e2e-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), key.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.signing_key.serialize_pem()).unwrap();
        Self {
            dir,
            ca: key.cert.der().clone(),
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    async fn connect(
        &self,
        addr: std::net::SocketAddr,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.expect("TLS handshake")
    }
}

impl Drop for Pems {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn tls_serves_http1_and_h2_chosen_by_alpn() {
    let pems = Pems::new("alpn");
    let (cert, key) = (pems.path("cert.pem"), pems.path("key.pem"));
    let gw = start(&[
        ("CLAUDE_TOWER_TLS_CERT", cert.as_str()),
        ("CLAUDE_TOWER_TLS_KEY", key.as_str()),
    ])
    .await;

    let tls = pems.connect(gw.addr, b"http/1.1").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(messages("/v1/messages".to_owned()))
        .await
        .unwrap();
    let (status, headers, body) = read(res).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(headers["x-claude-tower-route"], "anthropic");

    let tls = pems.connect(gw.addr, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(
            Request::get(format!("https://localhost:{}/healthz", gw.addr.port()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let (status, _, body) = read(res).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["mode"], "simulator");

    // Plain HTTP on the TLS port gets nothing served.
    let mut plain = TcpStream::connect(gw.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), until_closed(&mut plain))
        .await
        .unwrap();
    assert!(!seen.starts_with(b"HTTP/1.1 200"), "{seen:?}");
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_naming_the_file() {
    let pems = Pems::new("bad");
    let cert = pems.path("cert.pem");
    let wrong = pems.path("missing.pem");
    let err = configure(&[
        ("CLAUDE_TOWER_TLS_CERT", cert.as_str()),
        ("CLAUDE_TOWER_TLS_KEY", wrong.as_str()),
    ])
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("missing.pem"), "{err}");
    let err = configure(&[("CLAUDE_TOWER_TLS_CERT", cert.as_str())])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("CLAUDE_TOWER_TLS_KEY"), "{err}");
}

// === paths ===

#[tokio::test]
async fn the_start_up_probe_answers_200() {
    let gw = start(&[("CLAUDE_TOWER_CLIENT_KEYS", "team-key")]).await;
    for path in ["/", "/anthropic", "/anthropic/"] {
        for method in [Method::HEAD, Method::GET] {
            let (status, _, _) = read(gw.bare(method.clone(), path).await).await;
            assert_eq!(status, StatusCode::OK, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_trailing_slash_reaches_upstream_as_the_canonical_path() {
    let gw = start(&[]).await;
    for (path, upstream) in [
        ("/v1/messages/", "/v1/messages"),
        (
            "/v1/messages/count_tokens/?beta=true",
            "/v1/messages/count_tokens",
        ),
        ("/anthropic/v1/messages/", "/v1/messages"),
    ] {
        let (status, _, body) = read(gw.call(path, HELLO).await).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body:?}");
        let seen = gw.requests();
        assert_eq!(seen.last().unwrap().path, upstream, "{path}");
    }
}

#[tokio::test]
async fn without_an_anthropic_route_models_are_listed_from_the_configuration() {
    let gw = start(&[
        (
            "CLAUDE_TOWER_MODEL_MAP",
            "claude-sonnet-4-5-20250929=sonnet,claude-opus-4-1*=opus",
        ),
        ("CLAUDE_TOWER_MODELS", "claude-sonnet-4-5,claude-haiku-4-5"),
    ])
    .await;
    for prefix in ["", "/anthropic"] {
        let (status, _, body) = read(
            gw.bare(Method::GET, &format!("{prefix}/v1/models?limit=1000"))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        let v = json(&body);
        let ids: Vec<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["claude-sonnet-4-5", "claude-haiku-4-5"]);
        assert_eq!(v["data"][0]["type"], "model");
        assert_eq!(v["has_more"], false);
        assert_eq!(v["first_id"], "claude-sonnet-4-5");
    }
    let (status, _, body) = read(gw.bare(Method::GET, "/v1/models/claude-haiku-4-5").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["id"], "claude-haiku-4-5");
    let (status, _, body) = read(gw.bare(Method::GET, "/v1/models/gpt-4").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["error"]["type"], "not_found_error");

    // Without CLAUDE_TOWER_MODELS: the model map's exact names.
    let gw = start(&[(
        "CLAUDE_TOWER_MODEL_MAP",
        "claude-sonnet-4-5-20250929=sonnet,claude-opus-4-1*=opus",
    )])
    .await;
    let (_, _, body) = read(gw.bare(Method::GET, "/v1/models").await).await;
    assert_eq!(json(&body)["data"][0]["id"], "claude-sonnet-4-5-20250929");
    assert_eq!(json(&body)["data"].as_array().unwrap().len(), 1);
    assert!(gw.requests().is_empty());
}

#[tokio::test]
async fn without_an_anthropic_route_batches_and_files_are_404_naming_foundry() {
    let gw = start(&[]).await;
    for (method, path) in [
        (Method::POST, "/v1/messages/batches"),
        (Method::GET, "/v1/messages/batches/msgbatch_1/results"),
        (Method::GET, "/anthropic/v1/files"),
        (Method::DELETE, "/v1/files/file_1"),
    ] {
        let (status, _, body) = read(gw.bare(method.clone(), path).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        let v = json(&body);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "not_found_error");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("Foundry"),
            "{v}"
        );
    }
    assert!(gw.requests().is_empty());
}

#[tokio::test]
async fn anthropic_only_apis_go_to_the_anthropic_route_and_never_fail_over() {
    let anthropic = Capture::start(
        529,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
    )
    .await;
    let foundry = Capture::start(200, r#"{"data":[],"has_more":false}"#).await;
    let (a, f) = (anthropic.url(), format!("{}/anthropic", foundry.url()));
    let gw = start(&[
        ("ANTHROPIC_API_KEY", "route-key"),
        ("ANTHROPIC_BASE_URL", a.as_str()),
        ("ANTHROPIC_FOUNDRY_BASE_URL", f.as_str()),
        ("ANTHROPIC_FOUNDRY_API_KEY", "route-key"),
        ("CLAUDE_TOWER_RETRY_ATTEMPTS", "1"),
    ])
    .await;
    for (method, path, upstream) in [
        (Method::GET, "/v1/models?limit=1000", "/v1/models"),
        (
            Method::GET,
            "/anthropic/v1/models/claude-x",
            "/v1/models/claude-x",
        ),
        (Method::POST, "/v1/messages/batches", "/v1/messages/batches"),
        (
            Method::GET,
            "/v1/files/file_1/content",
            "/v1/files/file_1/content",
        ),
    ] {
        let (status, _, _) = read(gw.bare(method.clone(), path).await).await;
        assert_eq!(
            status.as_u16(),
            529,
            "{method} {path}: the Anthropic answer, no failover"
        );
        assert_eq!(
            anthropic.seen().last(),
            Some(&(method.clone(), upstream.to_owned())),
            "{path}"
        );
    }
    assert!(foundry.seen().is_empty(), "{:?}", foundry.seen());
}

// === health and readiness ===

#[tokio::test]
async fn healthz_is_open_and_says_little_readyz_is_guarded() {
    let gw = start(&[("CLAUDE_TOWER_CLIENT_KEYS", "team-key")]).await;
    let (status, _, body) = read(gw.bare(Method::GET, "/healthz").await).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["mode"], "simulator");
    assert!(v["warning"].as_str().unwrap().contains("SIMULATOR"));
    let text = String::from_utf8_lossy(&body);
    for secretish in ["http://", "api-key", "endpoint", "credential", "127.0.0.1"] {
        assert!(!text.contains(secretish), "{secretish} in {text}");
    }

    // Loopback clients pass without a key (off loopback a credential is
    // needed: `access` unit tests, as this harness only connects over
    // loopback).
    let (status, _, _) = read(gw.bare(Method::GET, "/readyz").await).await;
    assert_eq!(status, StatusCode::OK);
    let req = Request::get(gw.url("/readyz"))
        .header("x-api-key", "team-key")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = read(gw.send(req).await).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["routes"][0]["credential"], "anthropic-api-key");
    assert!(
        v["simulator"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
}

#[tokio::test]
async fn readyz_is_503_when_every_breaker_is_open_while_healthz_stays_200() {
    let gw = start(&[("CLAUDE_TOWER_RETRY_ATTEMPTS", "1")]).await;
    gw.faults("anthropic=529*100;foundry=503*100");
    for _ in 0..5 {
        let (status, _, _) = read(gw.call("/v1/messages", HELLO).await).await;
        assert!(status.is_server_error(), "{status}");
    }
    let (status, _, body) = read(gw.bare(Method::GET, "/readyz").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
    assert_eq!(json(&body)["routes"][1]["breaker"], "open");
    let (status, _, body) = read(gw.bare(Method::GET, "/healthz").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["status"], "degraded");
}

// === failing closed ===

// The partial-configuration cases are tested on the binary itself
// (crates/claude-tower-gateway/tests/cli.rs) and one by one in `upstream`.

#[tokio::test]
async fn off_loopback_the_simulator_runs_only_when_asked() {
    let public = [
        ("CLAUDE_TOWER_LISTEN", "0.0.0.0:0"),
        ("CLAUDE_TOWER_CLIENT_KEYS", "team-key"),
    ];
    let err = configure(&public)
        .await
        .expect_err("no upstream, not loopback");
    assert!(err.to_string().contains("--simulator"), "{err}");
    let mut asked = public.to_vec();
    asked.push(("CLAUDE_TOWER_SIMULATOR", "true"));
    let gw = configure(&asked).await.expect("asked for");
    assert!(gw.simulator().is_some());
    let err = configure(&[
        ("CLAUDE_TOWER_LISTEN", "0.0.0.0:0"),
        ("CLAUDE_TOWER_SIMULATOR", "1"),
    ])
    .await
    .expect_err("client keys are still required");
    assert!(
        err.to_string().contains("CLAUDE_TOWER_CLIENT_KEYS"),
        "{err}"
    );
}

#[tokio::test]
async fn a_whole_upstream_never_starts_the_simulator() {
    let gw = configure(&[("ANTHROPIC_API_KEY", "sk-ant-real")])
        .await
        .unwrap();
    assert!(gw.simulator().is_none());
    let banner = gw.banner("127.0.0.1:8787".parse().unwrap());
    assert!(banner.contains("mode: upstream"), "{banner}");
    assert!(!banner.contains("sk-ant-real"), "{banner}");
    let gw = configure(&[]).await.unwrap();
    let banner = gw.banner("127.0.0.1:8787".parse().unwrap());
    assert!(banner.contains("mode: SIMULATOR"), "{banner}");
}
