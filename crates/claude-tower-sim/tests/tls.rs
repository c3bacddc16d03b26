//! The simulator over TLS: HTTP/1.1 and HTTP/2 chosen by ALPN, the same
//! answers as over plain TCP, and handshakes that fail without harm.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use claude_tower_sim::{Alpn, ConnectionStats, Sim, SimConfig};
use common::*;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A self-signed certificate for `localhost`, the only root the clients trust.
struct Pki {
    cert_pem: String,
    key_pem: String,
    root: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Self {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("rcgen makes a certificate");
        Self {
            cert_pem: key.cert.pem(),
            key_pem: key.signing_key.serialize_pem(),
            root: key.cert.der().clone(),
        }
    }

    async fn sim(&self, alpn: &[Alpn]) -> Sim {
        let config = SimConfig::default()
            .tls_pem(self.cert_pem.clone(), self.key_pem.clone())
            .alpn(alpn.iter().copied());
        Sim::start(config).await.expect("TLS sim starts")
    }

    /// A TLS connection to `sim` offering `alpn`, checked against [`Pki::root`] only.
    async fn connect(&self, sim: &Sim, alpn: &[&str]) -> std::io::Result<TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.root.clone())
            .expect("the root is a certificate");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(sim.addr()).await?;
        let name = ServerName::try_from("localhost").expect("a DNS name");
        connector.connect(name, tcp).await
    }
}

fn messages_request(authority: &str) -> Request<Full<Bytes>> {
    Request::post(format!("https://{authority}/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(simple_body().to_string())))
        .expect("a valid request")
}

/// Sends one Messages request on `tls` as ALPN decided: HTTP/2 for `h2`,
/// else HTTP/1.1.
async fn send_over(tls: TlsStream<TcpStream>) -> Response<Incoming> {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        sender
            .send_request(messages_request("localhost"))
            .await
            .expect("an answer")
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("http/1.1 handshake");
        tokio::spawn(conn);
        let mut req = messages_request("localhost");
        *req.uri_mut() = "/v1/messages".parse().expect("a path");
        req.headers_mut()
            .insert(http::header::HOST, "localhost".parse().expect("a host"));
        sender.send_request(req).await.expect("an answer")
    }
}

/// The answer without what differs per request (ids).
async fn answer_json(res: Response<Incoming>) -> Value {
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.expect("a body").to_bytes();
    let mut v: Value = serde_json::from_slice(&body).expect("json");
    assert!(
        v["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_sim_"))
    );
    v["id"] = Value::Null;
    v
}

async fn plain_answer() -> Value {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let reply = send(&sim, Route::Anthropic, &simple_body()).await;
    assert_eq!(reply.status, 200);
    let mut v = reply.json();
    v["id"] = Value::Null;
    v
}

#[tokio::test]
async fn h2_and_http11_by_alpn_answer_as_plain_tcp_does() {
    let pki = Pki::new();
    let sim = pki.sim(&Alpn::DEFAULT).await;
    assert!(sim.is_tls());
    assert!(sim.anthropic_base_url().starts_with("https://127.0.0.1:"));
    let plain = plain_answer().await;

    let tls = pki.connect(&sim, &["h2"]).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let res = send_over(tls).await;
    assert_eq!(res.version(), Version::HTTP_2);
    assert!(
        res.headers()["request-id"]
            .to_str()
            .is_ok_and(|id| id.starts_with("req_sim_"))
    );
    assert_eq!(answer_json(res).await, plain);

    let tls = pki.connect(&sim, &["http/1.1"]).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let res = send_over(tls).await;
    assert_eq!(res.version(), Version::HTTP_11);
    assert_eq!(answer_json(res).await, plain);

    let seen = sim.connections();
    assert_eq!(
        (seen.accepted, seen.tls_h2, seen.tls_http11, seen.tls_failed),
        (2, 1, 1, 0)
    );
    let logged = sim.requests();
    assert_eq!(logged.len(), 2);
    assert!(logged.iter().all(|r| r.status == 200 && r.accepted));
}

#[tokio::test]
async fn a_client_offering_both_gets_h2_first_by_default() {
    let pki = Pki::new();
    let sim = pki.sim(&Alpn::DEFAULT).await;
    let tls = pki
        .connect(&sim, &["http/1.1", "h2"])
        .await
        .expect("handshake");
    // rustls picks by the server's order of preference.
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(send_over(tls).await.version(), Version::HTTP_2);
}

#[tokio::test]
async fn a_server_offering_only_http11_forces_it() {
    let pki = Pki::new();
    let sim = pki.sim(&[Alpn::Http11]).await;
    let tls = pki
        .connect(&sim, &["h2", "http/1.1"])
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let res = send_over(tls).await;
    assert_eq!(res.version(), Version::HTTP_11);
    assert_eq!(answer_json(res).await, plain_answer().await);

    // A client that will speak h2 only has nothing in common with it.
    assert!(pki.connect(&sim, &["h2"]).await.is_err());
    let seen = sim.connections();
    assert_eq!((seen.tls_http11, seen.tls_h2, seen.tls_failed), (1, 0, 1));
}

#[tokio::test]
async fn a_server_offering_only_h2_forces_it() {
    let pki = Pki::new();
    let sim = pki.sim(&[Alpn::H2]).await;
    let tls = pki
        .connect(&sim, &["http/1.1", "h2"])
        .await
        .expect("handshake");
    assert_eq!(send_over(tls).await.version(), Version::HTTP_2);
    // No ALPN at all is HTTP/1.1, and is counted apart.
    let tls = pki.connect(&sim, &[]).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    assert_eq!(send_over(tls).await.version(), Version::HTTP_11);
    let seen = sim.connections();
    assert_eq!((seen.tls_h2, seen.tls_no_alpn), (1, 1));
}

#[tokio::test]
async fn a_plain_client_on_the_tls_port_fails_its_handshake_and_the_server_goes_on() {
    let pki = Pki::new();
    let sim = pki.sim(&Alpn::DEFAULT).await;

    let mut plain = TcpStream::connect(sim.addr()).await.expect("connects");
    plain
        .write_all(b"GET /_sim/health HTTP/1.1\r\nhost: sim\r\n\r\n")
        .await
        .expect("writes");
    // The server closes the connection once the handshake has failed (a TLS
    // alert at most comes back): that close is the signal, no sleeping.
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the server closes a failed handshake");
    assert!(!seen.starts_with(b"HTTP/1.1"), "{seen:?}");
    let seen: ConnectionStats = sim.connections();
    assert_eq!((seen.accepted, seen.tls_failed, seen.tls_h2), (1, 1, 0));

    let tls = pki.connect(&sim, &["h2"]).await.expect("still serving");
    assert_eq!(send_over(tls).await.status(), 200);
    assert_eq!(sim.connections().accepted, 2);
}

#[tokio::test]
async fn a_bad_certificate_fails_the_start_with_invalid_input() {
    let pki = Pki::new();
    let err = Sim::start(SimConfig::default().tls_pem("not pem", pki.key_pem.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("no certificate"), "{err}");

    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let err = Sim::start(
        SimConfig::default().tls_pem(pki.cert_pem.clone(), other.signing_key.serialize_pem()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("do not work together"), "{err}");
}

#[tokio::test]
async fn plain_connections_are_counted_and_served_over_control() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    assert!(!sim.is_tls());
    let c = client();
    let res = c
        .request(
            Request::get(format!("{}/_sim/connections", sim.anthropic_base_url()))
                .body(Full::new(Bytes::new()))
                .expect("a request"),
        )
        .await
        .expect("an answer");
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.expect("a body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["accepted"], 1, "its own connection is counted: {v}");
    assert_eq!(v["tls_failed"], 0);
    assert_eq!(sim.connections().tls_h2, 0);
}

/// A streaming Messages request whose answer is larger than an HTTP/2
/// client buffers unread (hyper's stream window is 2 MiB), so it stays open
/// until the client reads on or drops it.
fn held_stream_request() -> Request<Full<Bytes>> {
    let mut body = simple_body();
    body["stream"] = Value::Bool(true);
    Request::post("https://localhost/v1/messages")
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .header("x-sim-stream-bytes", 4 << 20)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid request")
}

/// One HTTP/2 connection to `sim`, and the sender for it.
async fn h2_sender(pki: &Pki, sim: &Sim) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tls = pki.connect(sim, &["h2"]).await.expect("handshake");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn h2_max_concurrent_streams_holds_the_next_request_until_a_stream_ends() {
    let pki = Pki::new();
    let config = SimConfig::default()
        .tls_pem(pki.cert_pem.clone(), pki.key_pem.clone())
        .alpn([Alpn::H2])
        .h2_max_concurrent_streams(1);
    let sim = Sim::start(config).await.expect("TLS sim starts");
    let mut sender = h2_sender(&pki, &sim).await;

    let held = sender
        .send_request(held_stream_request())
        .await
        .expect("an answer");
    assert_eq!(held.status(), 200);
    let mut next = tokio::spawn(sender.send_request(held_stream_request()));
    // A request the server could take would be answered on loopback well
    // inside this; one held back can never be, so this cannot flake.
    let waited = tokio::time::timeout(Duration::from_millis(300), &mut next).await;
    assert!(waited.is_err(), "the second stream was not held back");
    assert_eq!(sim.connections().h2_streams, 1);

    // The client gives up on the first stream (RST_STREAM): the next goes.
    drop(held);
    let next = tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("answered once the first stream ended")
        .expect("the request task")
        .expect("an answer");
    assert_eq!(next.status(), 200);
    let seen = sim.connections();
    assert_eq!((seen.accepted, seen.h2_streams), (1, 2), "{seen:?}");
}

#[tokio::test]
async fn by_default_an_h2_connection_takes_many_streams_at_once() {
    let pki = Pki::new();
    let sim = pki.sim(&[Alpn::H2]).await;
    let mut sender = h2_sender(&pki, &sim).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let res = tokio::time::timeout(
            Duration::from_secs(5),
            sender.send_request(held_stream_request()),
        )
        .await
        .expect("answered while the others are open")
        .expect("an answer");
        assert_eq!(res.status(), 200);
        open.push(res);
    }
    let seen = sim.connections();
    assert_eq!((seen.accepted, seen.h2_streams), (1, 3), "{seen:?}");
}
