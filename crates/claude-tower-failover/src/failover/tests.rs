//! Failover behaviour against scripted fake routes, under paused time.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use claude_tower_core::{Attempt, ClaudeError, ErrorClass, ReplayBody, RetryAfter, RouteId};
use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::*;
use crate::breaker::{BreakerConfig, CircuitState};

#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// 200, after `attempts` attempts (as Retry would report).
    Ok(u32),
    /// A classified failed response.
    Fail(ErrorClass, Option<Duration>, u32),
    /// `Err`: a boxed `ClaudeError` of this class, or a bare io error.
    Err(Option<ErrorClass>),
    /// `Err`: a `ClaudeError` of this class that Retry gave up on after
    /// this many attempts.
    ErrAfter(ErrorClass, u32),
    /// A failed response carrying this exact error (status included).
    Answer(ClaudeError),
    /// 200 after a delay.
    Slow(Duration),
}

#[derive(Clone)]
pub(crate) struct Fake {
    id: &'static str,
    script: Arc<Mutex<VecDeque<Step>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    pub(crate) fn new(id: &'static str, steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            id,
            script: Arc::new(Mutex::new(steps.into_iter().collect())),
            calls: Arc::default(),
        }
    }

    pub(crate) fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().unwrap().extend(steps);
    }

    /// Bodies of the requests this route received.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Response<String>, tower::BoxError>> + Send>>;

impl Service<Request<ReplayBody>> for Fake {
    type Response = Response<String>;
    type Error = tower::BoxError;
    type Future = BoxFut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReplayBody>) -> BoxFut {
        let body = String::from_utf8_lossy(req.body().as_bytes()).into_owned();
        self.calls.lock().unwrap().push(body);
        let step = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Ok(1));
        let route = RouteId::new(self.id);
        Box::pin(async move {
            let attempt = |n| Attempt::new(route.clone(), n);
            match step {
                Step::Ok(n) => {
                    let mut res = Response::new(format!("from {route}"));
                    res.extensions_mut().insert(attempt(n));
                    Ok(res)
                }
                Step::Slow(wait) => {
                    tokio::time::sleep(wait).await;
                    Ok(Response::new(format!("from {route}")))
                }
                Step::Fail(class, wait, n) => {
                    let mut err = ClaudeError::new(class, "scripted").with_route(route.clone());
                    if let Some(wait) = wait {
                        err = err.with_retry_after(RetryAfter::new(wait));
                    }
                    let mut res = Response::new(format!("failed on {route}"));
                    *res.status_mut() = err.response_status();
                    res.extensions_mut().insert(err);
                    res.extensions_mut().insert(attempt(n));
                    Ok(res)
                }
                Step::Err(Some(class)) => Err(ClaudeError::new(class, "scripted error").into()),
                Step::ErrAfter(class, n) => Err(ClaudeError::new(class, "scripted error")
                    .with_attempt(attempt(n))
                    .into()),
                Step::Answer(err) => {
                    let mut res = Response::new(format!("failed on {route}"));
                    *res.status_mut() = err.response_status();
                    res.extensions_mut().insert(err.with_route(route.clone()));
                    Ok(res)
                }
                Step::Err(None) => Err(std::io::Error::other("connection reset").into()),
            }
        })
    }
}

pub(crate) fn request(body: &str) -> Request<ReplayBody> {
    Request::post("/v1/messages")
        .body(ReplayBody::from(body.to_owned()))
        .unwrap()
}

fn two(a: &Fake, b: &Fake, breaker: BreakerConfig) -> Failover<Fake> {
    Failover::builder()
        .route("anthropic", a.clone())
        .route("foundry", b.clone())
        .with_breaker(breaker)
        .with_seed(1)
        .build()
}

/// `a` then `b`, after request "1" opened `a`'s breaker (threshold 1,
/// 5 s cool-down) and the cool-down passed: the next request to `a` probes.
async fn due_for_a_probe(a: &Fake, b: &Fake) -> Failover<Fake> {
    let cfg = BreakerConfig::new()
        .with_failure_threshold(1)
        .with_cool_down(Duration::from_secs(5));
    a.push([Step::Err(None)]);
    let failover = two(a, b, cfg);
    failover.clone().oneshot(request("1")).await.unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    failover
}

fn report<B>(res: &Response<B>) -> &FailoverReport {
    res.extensions()
        .get::<FailoverReport>()
        .expect("report on every response")
}

fn attempts(report: &FailoverReport) -> Vec<(String, u32)> {
    report
        .attempts()
        .iter()
        .map(|(r, n)| (r.to_string(), *n))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn healthy_primary_serves_alone() {
    let (a, b) = (Fake::new("anthropic", []), Fake::new("foundry", []));
    let res = two(&a, &b, BreakerConfig::new())
        .oneshot(request("hi"))
        .await
        .unwrap();
    assert_eq!(res.body(), "from anthropic");
    let r = report(&res);
    assert_eq!(r.served_by().unwrap(), "anthropic");
    assert_eq!(attempts(r), [("anthropic".into(), 1)]);
    assert_eq!(a.calls(), ["hi"]);
    assert!(b.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn failover_worthy_outcomes_move_on_with_attempts_counted() {
    for step in [
        Step::Fail(ErrorClass::Overloaded, None, 3),
        Step::Fail(ErrorClass::RateLimited, Some(Duration::from_secs(1)), 2),
        Step::Fail(ErrorClass::TransientAuth, None, 2),
        Step::Fail(ErrorClass::RouteUnavailable, None, 1),
        Step::Err(None),
        Step::Err(Some(ErrorClass::Timeout)),
    ] {
        let (a, b) = (
            Fake::new("anthropic", [step.clone()]),
            Fake::new("foundry", []),
        );
        let res = two(&a, &b, BreakerConfig::new())
            .oneshot(request("x"))
            .await
            .unwrap();
        assert_eq!(res.body(), "from foundry", "{step:?}");
        let r = report(&res);
        assert_eq!(r.served_by().unwrap(), "foundry");
        let spent = match step {
            Step::Fail(_, _, n) => n,
            _ => 1,
        };
        assert_eq!(
            attempts(r),
            [("anthropic".into(), spent), ("foundry".into(), 1)]
        );
        assert_eq!(b.calls(), ["x"], "the same body reaches the next route");
    }
}

#[tokio::test(start_paused = true)]
async fn fail_fast_classes_never_reach_a_second_route() {
    for class in [
        ErrorClass::InvalidRequest,
        ErrorClass::Auth,
        ErrorClass::Conflict,
    ] {
        let (a, b) = (
            Fake::new("anthropic", [Step::Fail(class, None, 1)]),
            Fake::new("foundry", []),
        );
        let res = two(&a, &b, BreakerConfig::new())
            .oneshot(request("x"))
            .await
            .unwrap();
        assert_eq!(res.status(), class.default_status());
        assert_eq!(
            res.extensions().get::<ClaudeError>().unwrap().class(),
            class
        );
        let r = report(&res);
        assert_eq!(r.served_by(), None);
        assert_eq!(r.answered_by().unwrap(), "anthropic");
        assert!(b.calls().is_empty(), "{class:?} must not be sent twice");

        let (a, b) = (
            Fake::new("anthropic", [Step::Err(Some(class))]),
            Fake::new("foundry", []),
        );
        let err = two(&a, &b, BreakerConfig::new())
            .oneshot(request("x"))
            .await
            .unwrap_err();
        assert_eq!(err.class(), class);
        assert_eq!(err.route().unwrap(), "anthropic");
        let r = FailoverReport::from_error(&err).expect("report under the error");
        assert_eq!(attempts(r), [("anthropic".into(), 1)]);
        assert_eq!(r.answered_by(), None, "an error is no route's answer");
        assert!(b.calls().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn most_informative_failure_is_returned() {
    // A response beats an error, whichever route gave it.
    let a = Fake::new("anthropic", [Step::Err(None)]);
    let b = Fake::new("foundry", [Step::Fail(ErrorClass::Overloaded, None, 2)]);
    let res = two(&a, &b, BreakerConfig::new())
        .oneshot(request("x"))
        .await
        .unwrap();
    assert_eq!(res.body(), "failed on foundry");
    let r = report(&res);
    assert_eq!(r.answered_by().unwrap(), "foundry");
    assert_eq!(
        attempts(r),
        [("anthropic".into(), 1), ("foundry".into(), 2)]
    );

    // Two responses: the primary's.
    let a = Fake::new("anthropic", [Step::Fail(ErrorClass::Overloaded, None, 1)]);
    let b = Fake::new(
        "foundry",
        [Step::Fail(ErrorClass::RouteUnavailable, None, 1)],
    );
    let res = two(&a, &b, BreakerConfig::new())
        .oneshot(request("x"))
        .await
        .unwrap();
    assert_eq!(res.status(), ErrorClass::Overloaded.default_status());
    assert_eq!(res.body(), "failed on anthropic");
    assert_eq!(report(&res).answered_by().unwrap(), "anthropic");

    // Two errors: a classified one beats a bare transport error...
    let a = Fake::new("anthropic", [Step::Err(None)]);
    let b = Fake::new("foundry", [Step::Err(Some(ErrorClass::Timeout))]);
    let err = two(&a, &b, BreakerConfig::new())
        .oneshot(request("x"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.class(), err.route().unwrap().as_str()),
        (ErrorClass::Timeout, "foundry")
    );
    // ...and on a tie the primary's, with its original chain kept.
    let a = Fake::new("anthropic", [Step::Err(None)]);
    let b = Fake::new("foundry", [Step::Err(None)]);
    let err = two(&a, &b, BreakerConfig::new())
        .oneshot(request("x"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport);
    assert_eq!(err.route().unwrap(), "anthropic");
    assert_eq!(err.message(), "connection reset");
    let r = FailoverReport::from_error(&err).unwrap();
    assert_eq!(
        attempts(r),
        [("anthropic".into(), 1), ("foundry".into(), 1)]
    );
    assert!(!r.succeeded());
    assert_eq!(r.answered_by(), None, "no route answered");
    let mut source = std::error::Error::source(&err);
    let mut found_io = false;
    while let Some(e) = source {
        found_io |= e.downcast_ref::<std::io::Error>().is_some();
        source = e.source();
    }
    assert!(found_io, "the route's own error stays in the chain");
}

#[tokio::test(start_paused = true)]
async fn errors_count_retrys_attempts_and_name_no_answering_route() {
    // Three refused connections on each route, as Retry reports them.
    let a = Fake::new("anthropic", [Step::ErrAfter(ErrorClass::Transport, 3)]);
    let b = Fake::new("foundry", [Step::ErrAfter(ErrorClass::Transport, 3)]);
    let err = two(&a, &b, BreakerConfig::new())
        .oneshot(request("x"))
        .await
        .unwrap_err();
    let r = FailoverReport::from_error(&err).unwrap();
    assert_eq!(r.to_string(), "anthropic=3, foundry=3");
    assert_eq!(r.total_attempts(), 6);
    assert_eq!(r.answered_by(), None);
    assert_eq!(r.served_by(), None);

    // A primary's errors, then the secondary's answer: counted, and named.
    let a = Fake::new("anthropic", [Step::ErrAfter(ErrorClass::Timeout, 2)]);
    let b = Fake::new("foundry", [Step::Ok(1)]);
    let res = two(&a, &b, BreakerConfig::new())
        .oneshot(request("x"))
        .await
        .unwrap();
    let r = report(&res);
    assert_eq!(r.to_string(), "anthropic=2, foundry=1");
    assert_eq!(r.answered_by().unwrap(), "foundry");

    // An error after a failed response: the response is what is returned,
    // and its route is named.
    let a = Fake::new("anthropic", [Step::Fail(ErrorClass::Overloaded, None, 3)]);
    let b = Fake::new("foundry", [Step::ErrAfter(ErrorClass::Transport, 3)]);
    let res = two(&a, &b, BreakerConfig::new())
        .oneshot(request("x"))
        .await
        .unwrap();
    let r = report(&res);
    assert_eq!(r.to_string(), "anthropic=3, foundry=3");
    assert_eq!(r.answered_by().unwrap(), "anthropic");
}

#[tokio::test(start_paused = true)]
async fn a_failure_caused_by_the_request_never_counts_against_the_route() {
    let cfg = BreakerConfig::new().with_failure_threshold(2);
    let model_missing = ClaudeError::new(ErrorClass::RouteUnavailable, "DeploymentNotFound")
        .with_status(StatusCode::NOT_FOUND);
    let a = Fake::new("anthropic", []);
    let b = Fake::new("foundry", []);
    let failover = two(&a, &b, cfg);
    let failures = |f: &Failover<Fake>| {
        f.breakers()
            .get("anthropic")
            .map(|h| (h.state(), h.consecutive_failures()))
            .unwrap()
    };

    // One real failure on the books, then many the request caused.
    a.push([Step::Fail(ErrorClass::Server, None, 1)]);
    failover.clone().oneshot(request("x")).await.unwrap();
    assert_eq!(failures(&failover), (CircuitState::Closed, 1));
    for _ in 0..5 {
        // A local error below Failover (Auth could not move the request,
        // could not get a token): no response, so no evidence either way.
        a.push([Step::Err(Some(ErrorClass::InvalidRequest))]);
        let err = failover.clone().oneshot(request("x")).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::InvalidRequest);
        a.push([Step::Err(Some(ErrorClass::Auth))]);
        failover.clone().oneshot(request("x")).await.unwrap_err();
        assert_eq!(failures(&failover), (CircuitState::Closed, 1));
    }
    // A model the route does not have: the request moves on, and the route,
    // which answered, is up.
    for _ in 0..5 {
        a.push([Step::Answer(model_missing.clone())]);
        let res = failover.clone().oneshot(request("x")).await.unwrap();
        assert_eq!(report(&res).served_by().unwrap(), "foundry");
    }
    assert_eq!(failures(&failover), (CircuitState::Closed, 0));
    // An upstream 400 is an answer too.
    a.push(vec![Step::Fail(ErrorClass::InvalidRequest, None, 1); 5]);
    for _ in 0..5 {
        failover.clone().oneshot(request("x")).await.unwrap();
    }
    assert_eq!(failures(&failover), (CircuitState::Closed, 0));

    // The route's own failures do count: a 402 is the route's billing.
    let billing = ClaudeError::new(ErrorClass::RouteUnavailable, "billing")
        .with_status(StatusCode::PAYMENT_REQUIRED);
    a.push([Step::Answer(billing.clone()), Step::Answer(billing)]);
    failover.clone().oneshot(request("x")).await.unwrap();
    failover.clone().oneshot(request("x")).await.unwrap();
    assert_eq!(failures(&failover).0, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_fails_by_the_requests_fault_gives_its_slot_back() {
    let (a, b) = (Fake::new("anthropic", []), Fake::new("foundry", []));
    let failover = due_for_a_probe(&a, &b).await;

    a.push([Step::Err(Some(ErrorClass::InvalidRequest))]);
    failover.clone().oneshot(request("bad")).await.unwrap_err();
    let res = failover.clone().oneshot(request("next")).await.unwrap();
    assert_eq!(
        report(&res).served_by().unwrap(),
        "anthropic",
        "the next request probes"
    );
    assert_eq!(a.calls(), ["1", "bad", "next"]);
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_skips_then_probes_and_closes() {
    let cfg = BreakerConfig::new()
        .with_failure_threshold(3)
        .with_cool_down(Duration::from_secs(10));
    let a = Fake::new(
        "anthropic",
        vec![Step::Fail(ErrorClass::Overloaded, None, 1); 3],
    );
    let b = Fake::new("foundry", []);
    let failover = two(&a, &b, cfg);
    let health = failover.breakers();
    for _ in 0..3 {
        let res = failover.clone().oneshot(request("x")).await.unwrap();
        assert_eq!(report(&res).served_by().unwrap(), "foundry");
    }
    let snap = health.get("anthropic").unwrap();
    assert_eq!(snap.state(), CircuitState::Open);
    assert_eq!(snap.consecutive_failures(), 3);
    assert_eq!(snap.seconds_until_reopen(), 10);

    // Open: straight to Foundry, zero Anthropic attempts, from any clone.
    let res = failover.clone().oneshot(request("x")).await.unwrap();
    assert_eq!(attempts(report(&res)), [("foundry".into(), 1)]);
    assert_eq!(a.calls().len(), 3);

    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        health.get("anthropic").unwrap().state(),
        CircuitState::HalfOpen
    );
    // Half-open: one probe; it succeeds and closes the breaker.
    let res = failover.clone().oneshot(request("x")).await.unwrap();
    assert_eq!(report(&res).served_by().unwrap(), "anthropic");
    let snap = health.snapshot();
    assert_eq!(snap[0].state(), CircuitState::Closed);
    assert_eq!(snap[0].consecutive_failures(), 0);
    assert_eq!(snap[1].route(), "foundry");
}

#[tokio::test(start_paused = true)]
async fn only_one_probe_while_half_open_and_a_failed_probe_reopens() {
    let (a, b) = (Fake::new("anthropic", []), Fake::new("foundry", []));
    let failover = due_for_a_probe(&a, &b).await;

    // The probe is slow; meanwhile another request must not reach Anthropic.
    a.push([Step::Slow(Duration::from_secs(1))]);
    let probe = tokio::spawn(failover.clone().oneshot(request("probe")));
    tokio::task::yield_now().await;
    let res = failover.clone().oneshot(request("other")).await.unwrap();
    assert_eq!(report(&res).served_by().unwrap(), "foundry");
    assert_eq!(a.calls(), ["1", "probe"]);
    let res = probe.await.unwrap().unwrap();
    assert_eq!(report(&res).served_by().unwrap(), "anthropic");

    // A failed probe re-opens for another cool-down.
    a.push([Step::Err(None), Step::Fail(ErrorClass::Server, None, 1)]);
    failover.clone().oneshot(request("2")).await.unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    failover.clone().oneshot(request("3")).await.unwrap();
    let snap = failover.breakers().get("anthropic").unwrap();
    assert_eq!(snap.state(), CircuitState::Open);
    assert_eq!(snap.seconds_until_reopen(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back() {
    let (a, b) = (Fake::new("anthropic", []), Fake::new("foundry", []));
    let failover = due_for_a_probe(&a, &b).await;
    a.push([Step::Slow(Duration::from_secs(60))]);
    let mut probe = Box::pin(failover.clone().oneshot(request("probe")));
    assert!(futures_poll(&mut probe).is_pending());
    drop(probe);
    let res = failover.clone().oneshot(request("next")).await.unwrap();
    assert_eq!(
        report(&res).served_by().unwrap(),
        "anthropic",
        "next request probes"
    );
}

fn futures_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    Pin::new(f).poll(&mut cx)
}

#[tokio::test(start_paused = true)]
async fn long_retry_after_opens_the_breaker_for_exactly_that_long() {
    let a = Fake::new(
        "anthropic",
        [Step::Fail(
            ErrorClass::RateLimited,
            Some(Duration::from_secs(120)),
            1,
        )],
    );
    let b = Fake::new("foundry", []);
    let failover = two(&a, &b, BreakerConfig::new());
    let started = Instant::now();
    let res = failover.clone().oneshot(request("x")).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO, "no stall");
    assert_eq!(report(&res).served_by().unwrap(), "foundry");
    let snap = failover.breakers().get("anthropic").unwrap();
    assert_eq!(snap.state(), CircuitState::Open);
    assert_eq!(snap.reopens_in(), Some(Duration::from_secs(120)));

    tokio::time::advance(Duration::from_millis(119_999)).await;
    let res = failover.clone().oneshot(request("x")).await.unwrap();
    assert_eq!(attempts(report(&res)), [("foundry".into(), 1)]);
    tokio::time::advance(Duration::from_millis(1)).await;
    let res = failover.clone().oneshot(request("x")).await.unwrap();
    assert_eq!(report(&res).served_by().unwrap(), "anthropic");
}

#[tokio::test(start_paused = true)]
async fn every_breaker_open_still_tries_the_soonest_to_reopen() {
    let cfg = BreakerConfig::new()
        .with_failure_threshold(1)
        .with_cool_down(Duration::from_secs(10));
    let a = Fake::new(
        "anthropic",
        [Step::Fail(
            ErrorClass::RateLimited,
            Some(Duration::from_secs(300)),
            1,
        )],
    );
    let b = Fake::new("foundry", [Step::Err(None)]);
    let failover = two(&a, &b, cfg);
    let err = failover.clone().oneshot(request("1")).await.unwrap();
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
    let snap = failover.breakers().snapshot();
    assert!(snap.iter().all(|h| h.state() == CircuitState::Open));

    // Foundry reopens in 10 s, Anthropic in 300 s: Foundry is tried.
    let res = failover.clone().oneshot(request("2")).await.unwrap();
    assert_eq!(attempts(report(&res)), [("foundry".into(), 1)]);
    assert_eq!(
        failover.breakers().get("foundry").unwrap().state(),
        CircuitState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn weighted_spread_within_a_tier_is_seeded_and_fails_over_inside_it() {
    let east = Fake::new("east", []);
    let west = Fake::new("west", []);
    let direct = Fake::new("direct", []);
    let build = || {
        Failover::builder()
            .weighted_route("east", east.clone(), 0, 3)
            .weighted_route("west", west.clone(), 0, 1)
            .weighted_route("direct", direct.clone(), 1, 1)
            .with_seed(99)
            .build()
    };
    let mut order = Vec::new();
    let failover = build();
    for _ in 0..400 {
        let res = failover.clone().oneshot(request("x")).await.unwrap();
        order.push(report(&res).served_by().unwrap().to_string());
    }
    let east_share = order.iter().filter(|r| *r == "east").count();
    assert!(
        (260..340).contains(&east_share),
        "about 3:1, got {east_share}"
    );
    assert!(direct.calls().is_empty());

    // Same seed, same order.
    let again = build();
    for expected in order.iter().take(50) {
        let res = again.clone().oneshot(request("x")).await.unwrap();
        assert_eq!(report(&res).served_by().unwrap(), expected.as_str());
    }

    // A failure in the tier tries the tier's other route before the next tier.
    east.push([Step::Fail(ErrorClass::Overloaded, None, 1)]);
    west.push([Step::Fail(ErrorClass::Overloaded, None, 1)]);
    let res = build().oneshot(request("x")).await.unwrap();
    let r = report(&res);
    assert_eq!(r.served_by().unwrap(), "direct");
    assert_eq!(r.attempts().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn no_routes_is_an_error_not_a_panic() {
    let failover: Failover<Fake> = Failover::new([]);
    let err = failover.oneshot(request("x")).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::RouteUnavailable);
    assert!(
        FailoverReport::from_error(&err)
            .unwrap()
            .attempts()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn layer_builds_from_a_route_list() {
    use tower::Layer;
    let a = Fake::new("anthropic", [Step::Fail(ErrorClass::Server, None, 1)]);
    let b = Fake::new("foundry", []);
    let failover = FailoverLayer::new().with_seed(3).layer(vec![
        (RouteId::new("anthropic"), a),
        (RouteId::new("foundry"), b),
    ]);
    let mut failover = failover;
    std::future::poll_fn(|cx| failover.poll_ready(cx))
        .await
        .unwrap();
    let res = failover.call(request("x")).await.unwrap();
    assert_eq!(report(&res).to_string(), "anthropic=1, foundry=1");
    assert!(format!("{failover:?}").contains("anthropic"));
}

#[test]
fn futures_are_send_for_sync_routes() {
    fn assert_send<T: Send>(_: &T) {}
    let failover = Failover::new([(RouteId::new("a"), Fake::new("a", []))]);
    let fut = failover.clone().oneshot(request("x"));
    assert_send(&fut);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (1u32..4).prop_map(Step::Ok),
            1 => Just(Step::Fail(ErrorClass::InvalidRequest, None, 1)),
            1 => Just(Step::Fail(ErrorClass::Auth, None, 1)),
            2 => (1u32..4).prop_map(|n| Step::Fail(ErrorClass::Overloaded, None, n)),
            1 => (0u64..120).prop_map(|s| Step::Fail(ErrorClass::RateLimited, Some(Duration::from_secs(s)), 1)),
            1 => Just(Step::Fail(ErrorClass::RouteUnavailable, None, 1)),
            1 => Just(Step::Err(None)),
            1 => Just(Step::Err(Some(ErrorClass::Auth))),
        ]
    }

    fn classify(step: &Step) -> Option<bool> {
        // Some(true): success; Some(false): fail fast; None: fail over.
        match step {
            Step::Ok(_) | Step::Slow(_) => Some(true),
            Step::Fail(c, ..) | Step::Err(Some(c)) if !c.failover_worthy() => Some(false),
            _ => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn no_request_lost_no_fail_fast_resent_attempts_bounded(
            a_steps in proptest::collection::vec(step(), 0..12),
            b_steps in proptest::collection::vec(step(), 0..12),
            gaps in proptest::collection::vec(0u64..20, 8),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            rt.block_on(async {
                let a = Fake::new("anthropic", a_steps.clone());
                let b = Fake::new("foundry", b_steps.clone());
                let failover = two(&a, &b, BreakerConfig::new().with_failure_threshold(2).with_cool_down(Duration::from_secs(10)));
                let mut a_seen = 0;
                let mut b_seen = 0;
                for (i, gap) in gaps.iter().enumerate() {
                    tokio::time::advance(Duration::from_secs(*gap)).await;
                    let body = format!("req-{i}");
                    let outcome = failover.clone().oneshot(request(&body)).await;
                    let a_calls = a.calls();
                    let b_calls = b.calls();
                    let a_new = &a_calls[a_seen..];
                    let b_new = &b_calls[b_seen..];
                    // Each route at most once per request, and only this request's body.
                    prop_assert!(a_new.len() <= 1 && b_new.len() <= 1);
                    prop_assert!(a_new.iter().chain(b_new).all(|c| *c == body));
                    prop_assert!(!a_new.is_empty() || !b_new.is_empty(), "every request is tried somewhere");
                    // A fail-fast outcome on the first route tried never reaches the second.
                    if !a_new.is_empty() {
                        let step = a_steps.get(a_seen).cloned().unwrap_or(Step::Ok(1));
                        if classify(&step).is_some() {
                            prop_assert!(b_new.is_empty(), "{step:?} was resent");
                        }
                    }
                    // No request lost: a success, a classified failure response, or a ClaudeError.
                    let report = match &outcome {
                        Ok(res) => {
                            let report = report(res);
                            prop_assert_eq!(report.succeeded(), res.extensions().get::<ClaudeError>().is_none());
                            report.clone()
                        }
                        Err(err) => FailoverReport::from_error(err).cloned().expect("report"),
                    };
                    let expect_attempts = |steps: &[Step], seen: usize, tried: bool| -> u32 {
                        if !tried { return 0 }
                        match steps.get(seen).cloned().unwrap_or(Step::Ok(1)) {
                            Step::Ok(n) | Step::Fail(_, _, n) => n,
                            _ => 1,
                        }
                    };
                    prop_assert_eq!(report.attempts_on("anthropic"), expect_attempts(&a_steps, a_seen, !a_new.is_empty()));
                    prop_assert_eq!(report.attempts_on("foundry"), expect_attempts(&b_steps, b_seen, !b_new.is_empty()));
                    prop_assert!(report.total_attempts() <= 3 + 3);
                    a_seen = a_calls.len();
                    b_seen = b_calls.len();
                }
                Ok(())
            })?;
        }
    }
}
