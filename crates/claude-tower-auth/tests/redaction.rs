//! No secret reaches a log line, a `Debug` print or an error message.
//! Tracing output is captured at TRACE level while keys and tokens flow,
//! fail and are refused.

use std::io::Write;
use std::sync::{Arc, Mutex};

use claude_tower_auth::{AuthLayer, Credential, Endpoint, Secret};
use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture")).into_owned()
    }
}

const SECRETS: [&str; 4] = [
    "sk-ant-SECRET-anthropic",
    "SECRET-foundry-key",
    "SECRET-entra-token",
    "SECRET-caller-token",
];

fn assert_clean(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
    }
}

#[tokio::test]
async fn no_secret_in_logs_debug_or_errors() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let layers = [
        AuthLayer::new(
            Endpoint::anthropic(),
            Credential::anthropic_api_key(Secret::new(SECRETS[0])).expect("key"),
        ),
        AuthLayer::new(
            Endpoint::foundry_resource("res").expect("resource"),
            Credential::foundry_api_key(Secret::new(SECRETS[1])).expect("key"),
        ),
    ];
    let mut printed = String::new();
    for layer in layers {
        let svc = layer.layer(service_fn(|req: Request<String>| async move {
            tracing::info!(headers = ?req.headers(), "transport saw");
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        }));
        tracing::info!(?svc, "auth service");
        printed.push_str(&format!("{svc:?}"));
        let request = Request::post("/v1/messages")
            .header("authorization", format!("Bearer {}", SECRETS[3]))
            .body(String::new())
            .expect("request");
        svc.oneshot(request).await.expect("sent");
    }
    printed.push_str(&format!(
        "{:?} {}",
        Secret::new(SECRETS[0]),
        Secret::new(SECRETS[0])
    ));

    #[cfg(feature = "entra")]
    printed.push_str(&entra::exercise().await);

    let logged = capture.text();
    assert!(logged.contains("transport saw"), "capture works:\n{logged}");
    #[cfg(feature = "entra")]
    for line in [
        "Entra ID token cached",
        "token forgotten",
        "no valid token is left",
    ] {
        assert!(logged.contains(line), "{line} not logged:\n{logged}");
    }
    assert_clean(&logged);
    assert_clean(&printed);
}

#[cfg(feature = "entra")]
mod entra {
    use super::*;
    use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
    use azure_core::error::ErrorKind;
    use azure_core::time::{Duration, OffsetDateTime};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers the secret token once, then fails.
    #[derive(Debug, Default)]
    struct OnceThenFail(AtomicUsize);

    #[async_trait::async_trait]
    impl TokenCredential for OnceThenFail {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                Ok(AccessToken::new(
                    SECRETS[2],
                    OffsetDateTime::now_utc() + Duration::hours(1),
                ))
            } else {
                Err(azure_core::Error::with_message(
                    ErrorKind::Credential,
                    "refused",
                ))
            }
        }
    }

    /// Fetches the token, has it refused (401), fails the refetch; returns
    /// everything printed on the way.
    pub(super) async fn exercise() -> String {
        let layer = AuthLayer::new(
            Endpoint::foundry_resource("res").expect("resource"),
            Credential::entra(Arc::new(OnceThenFail::default())),
        );
        let svc = layer.layer(service_fn(|req: Request<String>| async move {
            tracing::trace!(headers = ?req.headers(), "transport saw");
            let mut response = Response::new(String::new());
            *response.status_mut() = http::StatusCode::UNAUTHORIZED;
            Ok::<_, std::convert::Infallible>(response)
        }));
        let mut printed = format!("{svc:?} {:?}", layer.credential());
        let first = svc.clone().oneshot(Request::new(String::new())).await;
        printed.push_str(&format!("{first:?}"));
        let err = svc
            .oneshot(Request::new(String::new()))
            .await
            .expect_err("refetch fails");
        printed.push_str(&format!("{err} {err:?}"));
        printed
    }
}
