//! The policy inside tower's `Retry`, over scripted fakes of a normalized
//! route, under paused tokio time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::{ClaudeError, ErrorClass, ReplayBody, RetryAfter};
use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceExt};

use crate::{Attempt, ReplayableBody, Retry, RetryAfterPolicy, RetryLayer, TpsBudget};

/// What the fake route does with one request.
#[derive(Clone)]
enum Step {
    Ok,
    /// A failed answer, as Normalize hands it up.
    Fail(Box<ClaudeError>),
    /// A failed call.
    Err(fn() -> BoxError),
}

fn fail_with(err: ClaudeError) -> Step {
    Step::Fail(Box::new(err))
}

fn fail(class: ErrorClass) -> Step {
    Step::Fail(Box::new(ClaudeError::new(class, "scripted")))
}

fn fail_after(class: ErrorClass, wait: Duration) -> Step {
    Step::Fail(Box::new(
        ClaudeError::new(class, "scripted").with_retry_after(RetryAfter::new(wait)),
    ))
}

/// When a request arrived (since the route was made), and its `Attempt`.
type Seen = (Duration, Option<u32>);

/// A fake route: plays its steps in order, the last one forever.
#[derive(Clone)]
struct Route {
    steps: Arc<Mutex<VecDeque<Step>>>,
    /// For each request received: when (since the route was made), and its
    /// `Attempt` extension.
    seen: Arc<Mutex<Vec<Seen>>>,
    born: Instant,
}

impl Route {
    fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
            seen: Arc::default(),
            born: Instant::now(),
        }
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn answer<B>(&self, req: &Request<B>) -> Result<Response<Bytes>, BoxError> {
        self.seen.lock().unwrap().push((
            self.born.elapsed(),
            req.extensions().get::<Attempt>().map(Attempt::number),
        ));
        let step = {
            let mut steps = self.steps.lock().unwrap();
            if steps.len() > 1 {
                steps.pop_front()
            } else {
                steps.front().cloned()
            }
        };
        match step.unwrap_or(Step::Ok) {
            Step::Ok => Ok(Response::new(Bytes::from_static(b"ok"))),
            Step::Fail(err) => {
                let mut response = Response::new(Bytes::from_static(b"error"));
                *response.status_mut() = err.response_status();
                if let Some(wait) = err.retry_after() {
                    response.extensions_mut().insert(wait);
                }
                response.extensions_mut().insert(*err);
                Ok(response)
            }
            Step::Err(make) => Err(make()),
        }
    }

    fn service<B: Send + 'static>(
        &self,
    ) -> impl Service<
        Request<B>,
        Response = Response<Bytes>,
        Error = BoxError,
        Future = std::future::Ready<Result<Response<Bytes>, BoxError>>,
    > + Clone
    + use<B> {
        let route = self.clone();
        tower::service_fn(move |req: Request<B>| std::future::ready(route.answer(&req)))
    }
}

fn request() -> Request<ReplayBody> {
    Request::new(ReplayBody::from(r#"{"model":"claude-sonnet-4-5"}"#))
}

/// Defaults, but a fixed jitter and no budget unless a test wants one.
fn settings() -> crate::RetryAfterPolicyBuilder {
    RetryAfterPolicy::builder("foundry")
        .with_jitter(|| 1.0)
        .no_budget()
}

async fn run(
    policy: RetryAfterPolicy,
    route: &Route,
) -> (Result<Response<Bytes>, BoxError>, Duration) {
    let started = Instant::now();
    let result = Retry::new(policy, route.service()).oneshot(request()).await;
    (result, started.elapsed())
}

fn attempt_of(response: &Response<Bytes>) -> u32 {
    response
        .extensions()
        .get::<Attempt>()
        .map(Attempt::number)
        .expect("final response carries an Attempt")
}

#[tokio::test(start_paused = true)]
async fn a_success_is_returned_at_once_and_marked_attempt_one() {
    let route = Route::new([Step::Ok]);
    let (result, waited) = run(settings().build().unwrap(), &route).await;
    let response = result.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(waited, Duration::ZERO);
    assert_eq!(route.calls(), 1);
    let attempt = response.extensions().get::<Attempt>().unwrap();
    assert_eq!((attempt.route().as_str(), attempt.number()), ("foundry", 1));
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_are_honoured_exactly() {
    let route = Route::new([
        fail_after(ErrorClass::RateLimited, Duration::from_secs(2)),
        Step::Ok,
    ]);
    let (result, waited) = run(settings().build().unwrap(), &route).await;
    let response = result.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(waited, Duration::from_secs(2));
    assert_eq!(attempt_of(&response), 2);
    assert_eq!(
        route.seen(),
        vec![(Duration::ZERO, None), (Duration::from_secs(2), Some(2))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_extension_alone_is_honoured() {
    // Normalize may put the folded wait (from an HTTP date, say) next to an
    // error that does not carry it.
    let route = Route::new([Step::Ok]);
    let svc = tower::service_fn({
        let route = route.clone();
        move |req: Request<ReplayBody>| {
            let mut answer = route.answer(&req);
            if route.calls() == 1
                && let Ok(response) = &mut answer
            {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
                    .extensions_mut()
                    .insert(ClaudeError::new(ErrorClass::Overloaded, "busy"));
                response
                    .extensions_mut()
                    .insert(RetryAfter::new(Duration::from_millis(1500)));
            }
            std::future::ready(answer)
        }
    });
    let started = Instant::now();
    let response = Retry::new(settings().build().unwrap(), svc)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_above_the_cap_returns_at_once() {
    let route = Route::new([
        fail_after(ErrorClass::RateLimited, Duration::from_secs(31)),
        Step::Ok,
    ]);
    let (result, waited) = run(settings().build().unwrap(), &route).await;
    let response = result.unwrap();
    assert_eq!(waited, Duration::ZERO);
    assert_eq!(route.calls(), 1);
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // The failure goes up intact, so failover can move on and a caller
    // sees the wait the server asked for.
    let err = response.extensions().get::<ClaudeError>().unwrap();
    assert_eq!(err.class(), ErrorClass::RateLimited);
    assert_eq!(
        response.extensions().get::<RetryAfter>(),
        Some(&RetryAfter::new(Duration::from_secs(31)))
    );
    assert_eq!(attempt_of(&response), 1);

    // Exactly the cap is still honoured.
    let route = Route::new([
        fail_after(ErrorClass::RateLimited, Duration::from_secs(30)),
        Step::Ok,
    ]);
    let (result, waited) = run(settings().build().unwrap(), &route).await;
    assert_eq!(result.unwrap().status(), StatusCode::OK);
    assert_eq!(waited, Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn backoff_is_full_jitter_doubling_up_to_the_cap() {
    let route = Route::new([fail(ErrorClass::Overloaded)]);
    let policy = settings()
        .with_max_attempts(5)
        .with_backoff(Duration::from_millis(500), Duration::from_millis(1500))
        .build()
        .unwrap();
    let (result, _) = run(policy, &route).await;
    let response = result.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(attempt_of(&response), 5);
    let at: Vec<u64> = route
        .seen()
        .iter()
        .map(|(t, _)| t.as_millis() as u64)
        .collect();
    // Windows 500, 1000, then capped at 1500 twice; the jitter is 1.0.
    assert_eq!(at, vec![0, 500, 1500, 3000, 4500]);

    let route = Route::new([fail(ErrorClass::Server)]);
    let policy = settings().with_jitter(|| 0.5).build().unwrap();
    let (_, waited) = run(policy, &route).await;
    assert_eq!(route.calls(), 3);
    assert_eq!(waited, Duration::from_millis(250 + 500));

    // A jitter source that misbehaves is clamped, never a panic.
    let route = Route::new([fail(ErrorClass::Server)]);
    let policy = settings().with_jitter(|| f64::NAN).build().unwrap();
    let (_, waited) = run(policy, &route).await;
    assert_eq!((route.calls(), waited), (3, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn max_attempts_counts_the_first_send() {
    let route = Route::new([fail(ErrorClass::Server)]);
    let (result, _) = run(settings().build().unwrap(), &route).await;
    let response = result.unwrap();
    assert_eq!(route.calls(), 3);
    assert_eq!(attempt_of(&response), 3);
    assert!(response.extensions().get::<ClaudeError>().is_some());
    let attempts: Vec<_> = route.seen().into_iter().map(|(_, a)| a).collect();
    assert_eq!(attempts, vec![None, Some(2), Some(3)]);

    let route = Route::new([fail(ErrorClass::Server)]);
    let (_, _) = run(settings().with_max_attempts(1).build().unwrap(), &route).await;
    assert_eq!(route.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_request_gets_its_own_attempts() {
    let route = Route::new([fail(ErrorClass::Server)]);
    let mut service = Retry::new(
        settings().with_max_attempts(2).build().unwrap(),
        route.service(),
    );
    for round in 1..=3 {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap();
        assert_eq!(attempt_of(&response), 2);
        assert_eq!(route.calls(), 2 * round);
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_and_auth_failures_are_never_retried() {
    for status in [400, 401, 403, 404, 413, 422] {
        let status = StatusCode::from_u16(status).unwrap();
        let class = ErrorClass::from_status(status).unwrap();
        let route = Route::new([
            fail_with(ClaudeError::new(class, "no").with_status(status)),
            Step::Ok,
        ]);
        let (result, waited) = run(settings().build().unwrap(), &route).await;
        let response = result.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!((route.calls(), waited), (1, Duration::ZERO), "{status}");
        assert_eq!(attempt_of(&response), 1);
    }
    // Foundry's deployment-not-found is for failover, not for retry.
    let route = Route::new([fail(ErrorClass::RouteUnavailable), Step::Ok]);
    run(settings().build().unwrap(), &route).await.0.unwrap();
    assert_eq!(route.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn every_retryable_class_is_retried() {
    for class in ErrorClass::ALL.into_iter().filter(|c| c.retryable()) {
        let route = Route::new([fail(class), Step::Ok]);
        let (result, _) = run(settings().build().unwrap(), &route).await;
        assert_eq!(result.unwrap().status(), StatusCode::OK, "{class}");
        assert_eq!(route.calls(), 2, "{class}");
    }
}

#[tokio::test(start_paused = true)]
async fn transient_auth_is_retried() {
    let route = Route::new([
        fail_with(
            ClaudeError::new(ErrorClass::TransientAuth, "backend auth blip")
                .with_status(StatusCode::UNAUTHORIZED)
                .with_code("invalid_model_endpoint_authentication"),
        ),
        Step::Ok,
    ]);
    let (result, _) = run(settings().build().unwrap(), &route).await;
    assert_eq!(result.unwrap().status(), StatusCode::OK);
    assert_eq!(route.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_overrides_the_class() {
    let route = Route::new([
        fail_with(ClaudeError::new(ErrorClass::Overloaded, "busy").with_should_retry(false)),
        Step::Ok,
    ]);
    run(settings().build().unwrap(), &route).await.0.unwrap();
    assert_eq!(route.calls(), 1);

    let route = Route::new([
        fail_with(ClaudeError::new(ErrorClass::InvalidRequest, "odd").with_should_retry(true)),
        Step::Ok,
    ]);
    let (result, _) = run(settings().build().unwrap(), &route).await;
    assert_eq!(result.unwrap().status(), StatusCode::OK);
    assert_eq!(route.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn errors_are_classified_by_the_claude_error_inside() {
    // A boxed credential failure, as Auth returns it: not retried.
    let route = Route::new([
        Step::Err(|| Box::new(ClaudeError::new(ErrorClass::Auth, "no token"))),
        Step::Ok,
    ]);
    let (result, _) = run(settings().build().unwrap(), &route).await;
    let err = result.unwrap_err();
    assert!(err.downcast_ref::<ClaudeError>().is_some());
    assert_eq!(route.calls(), 1);

    // A plain I/O error counts as transport: retried.
    let route = Route::new([
        Step::Err(|| Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset))),
        Step::Ok,
    ]);
    let (result, waited) = run(settings().build().unwrap(), &route).await;
    assert_eq!(result.unwrap().status(), StatusCode::OK);
    assert_eq!(route.calls(), 2);
    assert_eq!(waited, Duration::from_millis(500));

    // A timeout with a server wait: honoured.
    let route = Route::new([
        Step::Err(|| {
            Box::new(
                ClaudeError::new(ErrorClass::Timeout, "slow")
                    .with_retry_after(RetryAfter::new(Duration::from_secs(3))),
            )
        }),
        Step::Ok,
    ]);
    let (_, waited) = run(settings().build().unwrap(), &route).await;
    assert_eq!(waited, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn the_error_given_up_with_carries_the_attempt_count() {
    // Three connection failures: the error says attempt 3, so a failover
    // layer above counts three attempts, not one.
    let route = Route::new([Step::Err(|| {
        Box::new(ClaudeError::new(
            ErrorClass::Transport,
            "connection refused",
        ))
    })]);
    let (result, _) = run(settings().build().unwrap(), &route).await;
    let err = result.unwrap_err();
    let attempt = err
        .downcast_ref::<ClaudeError>()
        .and_then(ClaudeError::attempt)
        .expect("the attempt is on the error");
    assert_eq!((attempt.route().as_str(), attempt.number()), ("foundry", 3));
    assert_eq!(route.calls(), 3);

    // Not retried: attempt 1, said all the same.
    let route = Route::new([Step::Err(|| {
        Box::new(ClaudeError::new(ErrorClass::Auth, "no token"))
    })]);
    let (result, _) = run(settings().build().unwrap(), &route).await;
    let err = result.unwrap_err();
    let number = err
        .downcast_ref::<ClaudeError>()
        .and_then(ClaudeError::attempt)
        .map(Attempt::number);
    assert_eq!(number, Some(1));

    // An error type that cannot carry it is left as it was.
    let route = Route::new([Step::Err(|| {
        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
    })]);
    let (result, _) = run(settings().build().unwrap(), &route).await;
    assert!(result.unwrap_err().is::<std::io::Error>());
}

#[tokio::test(start_paused = true)]
async fn the_deadline_includes_every_wait() {
    let route = Route::new([fail_after(ErrorClass::RateLimited, Duration::from_secs(2))]);
    let policy = settings()
        .with_max_attempts(10)
        .with_deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let (result, waited) = run(policy, &route).await;
    // Sends at 0, 2 and 4 s; a fourth would follow a wait ending at 6 s.
    assert_eq!(route.calls(), 3);
    assert_eq!(waited, Duration::from_secs(4));
    assert_eq!(attempt_of(&result.unwrap()), 3);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_the_time_attempts_take() {
    let route = Route::new([fail_after(ErrorClass::Overloaded, Duration::from_secs(1))]);
    let slow = tower::service_fn({
        let route = route.clone();
        move |req: Request<ReplayBody>| {
            let answer = route.answer(&req);
            async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                answer
            }
        }
    });
    let policy = settings()
        .with_max_attempts(10)
        .with_deadline(Duration::from_millis(5500))
        .build()
        .unwrap();
    let started = Instant::now();
    Retry::new(policy, slow).oneshot(request()).await.unwrap();
    // 2 s attempt, 1 s wait, 2 s attempt; another wait would end at 6 s.
    assert_eq!(route.calls(), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_stops_retrying() {
    // One retry per request deposited, no floor.
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 1.0));
    let policy = settings()
        .with_max_attempts(5)
        .with_shared_budget(budget)
        .build()
        .unwrap();
    let route = Route::new([fail(ErrorClass::Overloaded)]);
    let mut service = Retry::new(policy, route.service());

    let response = service
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert_eq!(route.calls(), 2, "one deposit pays for one retry");
    assert_eq!(attempt_of(&response), 2);
    assert!(response.extensions().get::<ClaudeError>().is_some());

    service
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert_eq!(route.calls(), 4);

    // A budget that allows nothing: failures come back after one attempt.
    let none = settings()
        .with_budget(Duration::from_secs(1), 0, 0.0)
        .build()
        .unwrap();
    let route = Route::new([fail(ErrorClass::Overloaded)]);
    run(none, &route).await.0.unwrap();
    assert_eq!(route.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_default_budget_has_a_floor() {
    // Without traffic to speak of, a failing request still gets retried.
    let policy = RetryAfterPolicy::builder("anthropic")
        .with_jitter(|| 0.0)
        .build()
        .unwrap();
    let route = Route::new([fail(ErrorClass::Server)]);
    run(policy, &route).await.0.unwrap();
    assert_eq!(route.calls(), 3);
}

/// A body that only sometimes can be replayed.
struct OneShot(bool);

impl http_body::Body for OneShot {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(None)
    }
}

impl ReplayableBody for OneShot {
    fn replay(&self) -> Option<Self> {
        self.0.then_some(OneShot(true))
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_cannot_be_replayed_is_sent_once() {
    let route = Route::new([fail(ErrorClass::Overloaded), Step::Ok]);
    let response = Retry::new(settings().build().unwrap(), route.service())
        .oneshot(Request::new(OneShot(false)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(route.calls(), 1);

    let route = Route::new([fail(ErrorClass::Overloaded), Step::Ok]);
    let response = Retry::new(settings().build().unwrap(), route.service())
        .oneshot(Request::new(OneShot(true)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(route.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_resent_request_is_the_same_request() {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let svc = tower::service_fn({
        let bodies = bodies.clone();
        let route = Route::new([fail(ErrorClass::Server), Step::Ok]);
        move |req: Request<ReplayBody>| {
            let (parts, body) = req.into_parts();
            bodies.lock().unwrap().push((
                parts.method.clone(),
                parts.uri.to_string(),
                parts.headers.get("anthropic-version").cloned(),
                body.as_bytes().clone(),
            ));
            std::future::ready(route.answer(&Request::from_parts(parts, ())))
        }
    });
    let req = Request::post("http://gateway/v1/messages?beta=true")
        .header("anthropic-version", "2023-06-01")
        .body(ReplayBody::from("{\"max_tokens\":1}"))
        .unwrap();
    Retry::new(settings().build().unwrap(), svc)
        .oneshot(req)
        .await
        .unwrap();
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1].3, "{\"max_tokens\":1}");
}

#[tokio::test(start_paused = true)]
async fn the_wait_holds_the_retry_until_its_time() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<ReplayBody>, Response<Bytes>>();
    let layer = RetryLayer::new(settings().build().unwrap());
    let service = tower::ServiceBuilder::new().layer(layer).service(mock);
    let call = tokio::spawn(service.oneshot(request()));

    let (first, send) = handle.next_request().await.unwrap();
    assert!(first.extensions().get::<Attempt>().is_none());
    let mut limited = Response::new(Bytes::new());
    *limited.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    limited.extensions_mut().insert(
        ClaudeError::new(ErrorClass::RateLimited, "slow down")
            .with_retry_after(RetryAfter::new(Duration::from_secs(2))),
    );
    send.send_response(limited);

    tokio::time::advance(Duration::from_millis(1999)).await;
    assert!(
        futures_util::FutureExt::now_or_never(handle.next_request()).is_none(),
        "retried before the server's wait was over"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let (second, send) = handle.next_request().await.unwrap();
    assert_eq!(second.extensions().get::<Attempt>().unwrap().number(), 2);
    send.send_response(Response::new(Bytes::from_static(b"ok")));

    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(attempt_of(&response), 2);
}

#[test]
fn the_policy_is_cheap_to_clone_and_thread_safe() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_clone<T: Clone>() {}
    assert_send_sync::<RetryAfterPolicy>();
    assert_clone::<RetryAfterPolicy>();
    assert_send_sync::<crate::future::RetryWait>();
    let policy = RetryAfterPolicy::new("anthropic");
    assert_eq!(policy.route(), "anthropic");
    assert_eq!(policy.max_attempts(), 3);
    assert_eq!(policy.max_retry_after(), Duration::from_secs(30));
    assert_eq!(policy.deadline(), Some(Duration::from_secs(120)));
}

/// Collects what a `fmt` subscriber writes, for asserting on events.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish()
    }
}

/// One process-wide capturing subscriber, installed by the first test that
/// asks. A scoped (`set_default`) subscriber is not enough here: the other
/// tests of this binary hit the same callsites on other threads with no
/// subscriber, and a callsite registered there can keep a cached interest of
/// "never" (seen as a missing event about once in ten full runs). A global
/// subscriber is consulted by every registration; tests tell their own
/// events apart by a route name no other test uses.
fn global_capture() -> &'static Captured {
    static CAPTURE: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let captured = Captured::default();
        tracing::subscriber::set_global_default(captured.subscriber())
            .expect("no other test installs a global subscriber");
        captured
    })
}

#[tokio::test(start_paused = true)]
async fn each_retry_and_each_refusal_is_an_event() {
    let captured = global_capture();
    let settings = || {
        RetryAfterPolicy::builder("retry-events")
            .with_jitter(|| 1.0)
            .no_budget()
    };

    let route = Route::new([
        fail_after(ErrorClass::RateLimited, Duration::from_secs(2)),
        fail(ErrorClass::Overloaded),
        fail_after(ErrorClass::RateLimited, Duration::from_secs(40)),
    ]);
    let policy = settings().with_max_attempts(5).build().unwrap();
    run(policy, &route).await.0.unwrap();
    let text = captured.text();
    assert!(
        text.contains(
            "retrying on the same route route=retry-events attempt=2 class=rate-limited wait_ms=2000 server_wait=true"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "retrying on the same route route=retry-events attempt=3 class=overloaded wait_ms=1000 server_wait=false"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "server asked for a wait above the cap route=retry-events attempt=3 class=rate-limited retry_after_ms=40000"
        ),
        "{text}"
    );

    let route = Route::new([fail(ErrorClass::Overloaded)]);
    Retry::new(settings().build().unwrap(), route.service())
        .oneshot(Request::new(OneShot(false)))
        .await
        .unwrap();
    assert!(
        captured.text().contains(
            "request body is not replayable; it is sent once and not retried route=retry-events"
        ),
        "{}",
        captured.text()
    );
}

#[tokio::test(start_paused = true)]
async fn many_attempts_never_overflow_the_backoff() {
    let route = Route::new([fail(ErrorClass::Server)]);
    let policy = settings()
        .with_max_attempts(40)
        .no_deadline()
        .build()
        .unwrap();
    run(policy, &route).await.0.unwrap();
    let at: Vec<Duration> = route.seen().into_iter().map(|(t, _)| t).collect();
    assert_eq!(at.len(), 40);
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps[..5]
            .iter()
            .map(Duration::as_millis)
            .collect::<Vec<_>>(),
        [500, 1000, 2000, 4000, 8000]
    );
    assert!(gaps[4..].iter().all(|g| *g == Duration::from_secs(8)));
}
