//! Credentials stay where they belong: never in a log line, never upstream.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use claude_tower_auth::{AuthLayer, Credential, Endpoint, Secret};
use claude_tower_core::Caller;
use claude_tower_identity::test_util::{SigningKey, now};
use claude_tower_identity::{IdentityConfig, IdentityLayer};
use http::{Request, Response};
use http_body_util::Full;
use serde_json::json;
use support::{Issuer, Mode, bearer, request, send};
use tower::{Layer, ServiceExt, service_fn};

const AUD: &str = "api://claude-gateway";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_token_or_key_reaches_a_log_line() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // One thread: the fetch tasks log through the same subscriber.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let secrets = runtime.block_on(async {
        let key = SigningKey::rsa("k1");
        let issuer = Issuer::start(&[&key]).await;
        let layer = IdentityLayer::new(
            IdentityConfig::default()
                .with_issuer(issuer.iss())
                .with_audience(AUD)
                .with_required_role("Claude.Use")
                .with_client_key("ci", "k-super-secret-client-key"),
        )
        .unwrap();
        let svc = layer.layer(support::Recorder::default());
        let good = issuer.claims(AUD);
        let tokens = vec![
            key.sign(&good),
            key.sign(&json!({"iss": issuer.iss(), "aud": AUD, "sub": "x", "exp": now() - 999})),
            key.sign(&json!({"iss": issuer.iss(), "aud": "nope", "sub": "x", "exp": now() + 60})),
            key.sign(&json!({"iss": "https://evil.example", "aud": AUD, "sub": "x", "exp": now() + 60})),
            key.sign(&json!({"iss": issuer.iss(), "aud": AUD, "sub": "x", "exp": now() + 60, "roles": []})),
            SigningKey::rsa("k2").sign(&good),
        ];
        for token in &tokens {
            send(&svc, bearer(token)).await;
        }
        send(&svc, request("x-api-key", "k-super-secret-client-key")).await;
        send(&svc, request("x-api-key", "k-a-wrong-but-secret-key")).await;
        // An issuer that fails, logged as a warning.
        issuer.set_mode(Mode::Down);
        let cold = IdentityLayer::new(
            IdentityConfig::default().with_issuer(issuer.iss()).with_audience(AUD),
        )
        .unwrap();
        let cold_svc = cold.layer(support::Recorder::default());
        assert_eq!(send(&cold_svc, bearer(&tokens[0])).await.status, 503);
        assert!(!format!("{layer:?}").contains("k-super-secret"));
        tokens
    });

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request refused"), "{logs}");
    assert!(logs.contains("could not fetch signing keys"), "{logs}");
    for token in &secrets {
        for part in token.split('.') {
            assert!(
                !logs.contains(part),
                "a token segment reached the logs:\n{logs}"
            );
        }
    }
    assert!(
        !logs.contains("k-super-secret") && !logs.contains("k-a-wrong"),
        "{logs}"
    );
}

#[tokio::test]
async fn the_inbound_credential_never_goes_upstream() {
    let key = SigningKey::ec("k1");
    let issuer = Issuer::start(&[&key]).await;
    let identity = IdentityLayer::new(
        IdentityConfig::default()
            .with_issuer(issuer.iss())
            .with_audience(AUD)
            .with_client_key("ci", "k-inbound"),
    )
    .unwrap();
    let auth = AuthLayer::new(
        Endpoint::anthropic(),
        Credential::anthropic_api_key(Secret::new("route-key")).unwrap(),
    );
    let transport = service_fn(|req: Request<Full<Bytes>>| async move {
        assert!(req.extensions().get::<Caller>().is_some());
        assert!(req.headers().get("authorization").is_none());
        assert!(req.headers().get("api-key").is_none());
        assert_eq!(req.headers()["x-api-key"], "route-key");
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let svc = identity.layer(auth.layer(transport));
    let token = key.sign(&issuer.claims(AUD));
    for request in [
        bearer(&token),
        support::request("x-api-key", "k-inbound"),
        support::request("api-key", &token),
    ] {
        let response = svc.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
}
