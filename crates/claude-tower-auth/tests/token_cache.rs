//! The Entra ID token cache, driven through `Auth` with a fake credential
//! and paused time.

#![cfg(feature = "entra")]

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claude_tower_auth::{
    Auth, AuthLayer, BoxError, COGNITIVE_SERVICES_SCOPE, Credential, DEFAULT_SCOPE, Endpoint,
    EntraConfig,
};
use claude_tower_core::{ClaudeError, ErrorClass, RouteId};
use common::{FakeCredential, Mode};
use http::{Request, Response, StatusCode};
use std::task::{Context, Poll};
use tower::{Layer, Service, ServiceExt};

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// Records the `authorization` header of every request and answers 401 to
/// the tokens in `refused`.
#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<HashSet<String>>>,
}

impl Service<Request<String>> for Upstream {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<String>) -> Self::Future {
        let header = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let refused = self.refused.lock().expect("refused").contains(&header);
        self.seen.lock().expect("seen").push(header);
        let mut response = Response::new(String::new());
        if refused {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
        }
        std::future::ready(Ok(response))
    }
}

impl Upstream {
    fn service(&self) -> Self {
        self.clone()
    }

    fn last(&self) -> String {
        self.seen
            .lock()
            .expect("seen")
            .last()
            .cloned()
            .unwrap_or_default()
    }

    fn refuse(&self, header: &str) {
        self.refused
            .lock()
            .expect("refused")
            .insert(header.to_owned());
    }
}

fn auth<S>(credential: Arc<FakeCredential>, config: EntraConfig, inner: S) -> Auth<S> {
    AuthLayer::new(
        Endpoint::foundry_resource("res").expect("resource"),
        Credential::entra_with(credential, config),
    )
    .with_route(RouteId::new("foundry"))
    .layer(inner)
}

fn request() -> Request<String> {
    Request::post("/v1/messages")
        .body(String::from("{}"))
        .expect("request")
}

async fn send<S>(svc: &S) -> Result<Response<String>, BoxError>
where
    S: Service<Request<String>, Response = Response<String>, Error = BoxError> + Clone,
{
    svc.clone().oneshot(request()).await
}

/// Lets spawned tasks (the background refresh) run.
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

fn auth_error(err: BoxError) -> ClaudeError {
    err.downcast_ref::<ClaudeError>()
        .cloned()
        .unwrap_or_else(|| panic!("not a ClaudeError: {err}"))
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_requests_on_a_cold_cache_make_one_call() {
    let credential = FakeCredential::with_latency(Mode::Tokens, HOUR, Duration::from_millis(50));
    let upstream = Upstream::default();
    let svc = auth(
        credential.clone(),
        EntraConfig::default(),
        upstream.service(),
    );

    let results =
        futures_util::future::join_all((0..10_000).map(|_| svc.clone().oneshot(request()))).await;

    assert_eq!(credential.calls(), 1);
    assert!(results.iter().all(|r| r.is_ok()));
    let seen = upstream.seen.lock().expect("seen");
    assert_eq!(seen.len(), 10_000);
    assert!(seen.iter().all(|h| h == "Bearer token-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_flight_holds_across_threads() {
    let credential = FakeCredential::new(Mode::Tokens, HOUR);
    let upstream = Upstream::default();
    let svc = auth(
        credential.clone(),
        EntraConfig::default(),
        upstream.service(),
    );

    let tasks: Vec<_> = (0..10_000)
        .map(|_| tokio::spawn(svc.clone().oneshot(request())))
        .collect();
    for task in tasks {
        task.await.expect("task").expect("response");
    }
    assert_eq!(credential.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn refreshes_ahead_of_expiry_in_the_background() {
    let credential = FakeCredential::new(Mode::Tokens, HOUR);
    let upstream = Upstream::default();
    let svc = auth(
        credential.clone(),
        EntraConfig::default(),
        upstream.service(),
    );

    send(&svc).await.expect("first");
    assert_eq!(upstream.last(), "Bearer token-1");

    tokio::time::advance(54 * MINUTE).await;
    send(&svc).await.expect("before the window");
    settle().await;
    assert_eq!(credential.calls(), 1, "no refresh before the window");

    // 56 minutes in: inside the default 5-minute window.
    tokio::time::advance(2 * MINUTE).await;
    send(&svc).await.expect("in the window");
    assert_eq!(
        upstream.last(),
        "Bearer token-1",
        "the old token is used at once"
    );
    settle().await;
    assert_eq!(credential.calls(), 2, "one background refresh");

    send(&svc).await.expect("after the refresh");
    assert_eq!(upstream.last(), "Bearer token-2");
    assert_eq!(credential.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_old_token_and_backs_off() {
    let credential = FakeCredential::new(Mode::Tokens, 10 * MINUTE);
    let upstream = Upstream::default();
    let svc = auth(
        credential.clone(),
        EntraConfig::default(),
        upstream.service(),
    );

    send(&svc).await.expect("first");
    credential.set_mode(Mode::Fail);

    tokio::time::advance(6 * MINUTE).await;
    send(&svc).await.expect("old token still valid");
    assert_eq!(upstream.last(), "Bearer token-1");
    settle().await;
    assert_eq!(credential.calls(), 2, "the refresh was tried");

    send(&svc).await.expect("old token still valid");
    settle().await;
    assert_eq!(credential.calls(), 2, "no retry inside the backoff");

    tokio::time::advance(Duration::from_secs(2)).await;
    send(&svc).await.expect("old token still valid");
    assert_eq!(upstream.last(), "Bearer token-1");
    settle().await;
    assert_eq!(credential.calls(), 3, "retried after the backoff");

    // Past expiry with the identity provider still down: a clear error.
    tokio::time::advance(5 * MINUTE).await;
    let err = auth_error(send(&svc).await.expect_err("no valid token"));
    assert_eq!(err.class(), ErrorClass::Auth);
    assert_eq!(err.route().map(RouteId::as_str), Some("foundry"));
    assert!(err.message().contains("FakeCredential"), "{err}");
    assert!(err.message().contains(DEFAULT_SCOPE), "{err}");
    assert!(
        err.message().contains("identity provider unreachable"),
        "{err}"
    );
    assert!(!err.to_string().contains("token-1"), "{err}");
    let calls = credential.calls();

    // Inside the backoff the error comes back at once, without a call.
    let again = auth_error(send(&svc).await.expect_err("still failing"));
    assert_eq!(again.class(), ErrorClass::Auth);
    assert_eq!(credential.calls(), calls);

    // The identity provider recovers: the next request after the backoff
    // gets a fresh token.
    credential.set_mode(Mode::Fixed("recovered"));
    tokio::time::advance(MINUTE).await;
    send(&svc).await.expect("recovered");
    assert_eq!(upstream.last(), "Bearer recovered");
}

#[tokio::test(start_paused = true)]
async fn expiry_without_refresh_fetches_on_the_next_request() {
    // A refresh-ahead of zero: the token is only replaced once it is gone.
    let credential = FakeCredential::new(Mode::Tokens, 10 * MINUTE);
    let upstream = Upstream::default();
    let config = EntraConfig::default().with_refresh_ahead(Duration::ZERO);
    let svc = auth(credential.clone(), config, upstream.service());

    send(&svc).await.expect("first");
    tokio::time::advance(9 * MINUTE).await;
    send(&svc).await.expect("still valid");
    settle().await;
    assert_eq!(credential.calls(), 1);

    tokio::time::advance(2 * MINUTE).await;
    send(&svc).await.expect("after expiry");
    assert_eq!(upstream.last(), "Bearer token-2");
    assert_eq!(credential.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_401_on_a_bearer_request_forgets_the_token() {
    let credential = FakeCredential::new(Mode::Tokens, HOUR);
    let upstream = Upstream::default();
    upstream.refuse("Bearer token-1");
    let svc = auth(
        credential.clone(),
        EntraConfig::default(),
        upstream.service(),
    );

    let first = send(&svc).await.expect("answered");
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);

    // The retry above re-sends: a fresh token this time.
    let second = send(&svc).await.expect("answered");
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(upstream.last(), "Bearer token-2");
    assert_eq!(credential.calls(), 2);

    // A 200 forgets nothing.
    send(&svc).await.expect("answered");
    assert_eq!(credential.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_credential_times_out_with_a_clear_error() {
    let credential = FakeCredential::new(Mode::Hang, HOUR);
    let upstream = Upstream::default();
    let config = EntraConfig::default().with_fetch_timeout(Duration::from_secs(10));
    let svc = auth(credential.clone(), config, upstream.service());

    let pending = tokio::spawn({
        let svc = svc.clone();
        async move { send(&svc).await }
    });
    tokio::time::advance(Duration::from_secs(11)).await;
    let err = auth_error(pending.await.expect("task").expect_err("timed out"));
    assert_eq!(err.class(), ErrorClass::Auth);
    assert!(err.message().contains("timed out"), "{err}");
    assert_eq!(credential.calls(), 1);
    assert!(upstream.seen.lock().expect("seen").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hanging_refresh_does_not_hold_requests_up() {
    let credential = FakeCredential::new(Mode::Tokens, HOUR);
    let upstream = Upstream::default();
    let svc = auth(
        credential.clone(),
        EntraConfig::default(),
        upstream.service(),
    );
    send(&svc).await.expect("first");

    credential.set_mode(Mode::Hang);
    tokio::time::advance(56 * MINUTE).await;
    for _ in 0..100 {
        send(&svc).await.expect("old token");
        settle().await;
    }
    assert_eq!(upstream.last(), "Bearer token-1");
    assert_eq!(
        credential.calls(),
        2,
        "one refresh in flight, not one per request"
    );
}

#[tokio::test(start_paused = true)]
async fn every_waiter_on_a_failed_cold_fetch_gets_the_error() {
    let credential = FakeCredential::with_latency(Mode::Fail, HOUR, Duration::from_millis(10));
    let upstream = Upstream::default();
    let svc = auth(
        credential.clone(),
        EntraConfig::default(),
        upstream.service(),
    );

    let results =
        futures_util::future::join_all((0..100).map(|_| svc.clone().oneshot(request()))).await;
    assert_eq!(credential.calls(), 1);
    for result in results {
        let err = auth_error(result.expect_err("failed"));
        assert_eq!(err.class(), ErrorClass::Auth);
    }
}

#[tokio::test(start_paused = true)]
async fn the_scope_is_configurable() {
    let credential = FakeCredential::new(Mode::Tokens, HOUR);
    let upstream = Upstream::default();
    let config = EntraConfig::default().with_scope(COGNITIVE_SERVICES_SCOPE);
    let svc = auth(credential.clone(), config, upstream.service());
    send(&svc).await.expect("sent");
    assert_eq!(
        credential.scopes(),
        vec![COGNITIVE_SERVICES_SCOPE.to_owned()]
    );
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_cache() {
    let credential = FakeCredential::new(Mode::Tokens, HOUR);
    let upstream = Upstream::default();
    let layer = AuthLayer::new(
        Endpoint::foundry_resource("res").expect("resource"),
        Credential::entra(credential.clone()),
    );
    let a = layer.layer(upstream.service());
    let b = layer.clone().layer(upstream.service());
    send(&a).await.expect("a");
    send(&b).await.expect("b");
    assert_eq!(credential.calls(), 1);
}
