//! `QuotaLayer` -> `Quota<S>` -> `ResponseFuture`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use claude_tower_core::{
    Caller, ClaudeError, ErrorClass, ResponseBody, RetryAfter, UsageHook, UsageRecord, UsageSink,
    error_response,
};
use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

#[cfg(feature = "redis")]
use crate::RedisStore;
use crate::config::{HeaderPrecedence, Limits, QuotaConfig};
use crate::store::{
    Admission, QuotaStore, Reservation, Standing, StoreFuture, StoreHealth, Verdict,
};
use crate::{Estimate, InvalidQuotaConfig, KeySource, MemoryStore, QuotaKey, Timestamp, Weights};

/// `anthropic-ratelimit-tokens-limit`.
pub const TOKENS_LIMIT: HeaderName = HeaderName::from_static("anthropic-ratelimit-tokens-limit");
/// `anthropic-ratelimit-tokens-remaining`.
pub const TOKENS_REMAINING: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-tokens-remaining");
/// `anthropic-ratelimit-tokens-reset` (RFC 3339).
pub const TOKENS_RESET: HeaderName = HeaderName::from_static("anthropic-ratelimit-tokens-reset");
/// `anthropic-ratelimit-requests-limit`.
pub const REQUESTS_LIMIT: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-requests-limit");
/// `anthropic-ratelimit-requests-remaining`.
pub const REQUESTS_REMAINING: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-requests-remaining");
/// `anthropic-ratelimit-requests-reset` (RFC 3339).
pub const REQUESTS_RESET: HeaderName =
    HeaderName::from_static("anthropic-ratelimit-requests-reset");
/// `x-quota-tokens-limit`: the period quota.
pub const QUOTA_LIMIT: HeaderName = HeaderName::from_static("x-quota-tokens-limit");
/// `x-quota-tokens-remaining`.
pub const QUOTA_REMAINING: HeaderName = HeaderName::from_static("x-quota-tokens-remaining");
/// `x-quota-tokens-reset` (RFC 3339): when the next period starts.
pub const QUOTA_RESET: HeaderName = HeaderName::from_static("x-quota-tokens-reset");

const RATELIMIT_PREFIX: &str = "anthropic-ratelimit-";

/// Per-caller token and request limits for a tower service.
///
/// See the [crate docs](crate) for the model. Cloning is cheap and shares
/// the store.
#[derive(Clone)]
pub struct QuotaLayer {
    shared: Arc<Shared>,
}

struct Shared {
    limits: Limits,
    store: Arc<dyn QuotaStore>,
    keys: KeySource,
    estimate: Estimate,
    weights: Weights,
    headers: HeaderPrecedence,
    unknown: AtomicU64,
    settled: AtomicU64,
}

/// The layer's counters, with its store's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct QuotaHealth {
    /// The store's counters.
    pub store: StoreHealth,
    /// Admitted requests settled from a usage record.
    pub settled: u64,
    /// Admitted requests whose usage never became known (no usage layer, or
    /// unreadable usage): their estimate stands.
    pub unknown_usage: u64,
}

impl QuotaLayer {
    /// A layer enforcing `limits` in `store`, keyed by the caller.
    pub fn new(limits: Limits, store: impl QuotaStore) -> Self {
        Self::with_store_arc(limits, Arc::new(store))
    }

    /// A layer over a shared store.
    pub fn with_store_arc(limits: Limits, store: Arc<dyn QuotaStore>) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                store,
                keys: KeySource::default(),
                estimate: Estimate::default(),
                weights: Weights::default(),
                headers: HeaderPrecedence::default(),
                unknown: AtomicU64::new(0),
                settled: AtomicU64::new(0),
            }),
        }
    }

    /// The layer a [`QuotaConfig`] describes: the Redis store when it names
    /// a URL, else the memory store. Call inside a tokio runtime.
    pub fn from_config(config: &QuotaConfig) -> Result<Self, InvalidQuotaConfig> {
        let limits = config.limits()?;
        let store: Arc<dyn QuotaStore> = match &config.redis_url {
            #[cfg(feature = "redis")]
            Some(url) => Arc::new(
                RedisStore::builder(url.as_str())
                    .with_timeout(config.redis_timeout())
                    .with_fail_mode(config.on_redis_error)
                    .build()?,
            ),
            // Without the feature `limits()` above refused a URL.
            _ => Arc::new(MemoryStore::new()),
        };
        let mut keys = KeySource::new();
        if let Some(h) = &config.key_header {
            keys = keys.with_header(HeaderName::try_from(h.as_str()).map_err(|_| {
                InvalidQuotaConfig::new(format!("key_header = {h:?} is not a header name"))
            })?);
        }
        Ok(Self::with_store_arc(limits, store)
            .with_key_source(keys)
            .with_estimate(config.estimate)
            .with_weights(config.weights)
            .with_upstream_headers(config.upstream_headers))
    }

    fn edit(&mut self) -> &mut Shared {
        // Builders run before the layer is cloned into a stack; a clone made
        // earlier keeps the old settings.
        if Arc::get_mut(&mut self.shared).is_none() {
            let s = &*self.shared;
            self.shared = Arc::new(Shared {
                limits: s.limits.clone(),
                store: Arc::clone(&s.store),
                keys: s.keys.clone(),
                estimate: s.estimate,
                weights: s.weights,
                headers: s.headers,
                unknown: AtomicU64::new(0),
                settled: AtomicU64::new(0),
            });
        }
        Arc::get_mut(&mut self.shared).expect("a fresh Arc is unique")
    }

    /// How requests are keyed (default: the caller, else global).
    pub fn with_key_source(mut self, keys: KeySource) -> Self {
        self.edit().keys = keys;
        self
    }

    /// What a request is charged at admission (default: body bytes / 4).
    pub fn with_estimate(mut self, estimate: Estimate) -> Self {
        self.edit().estimate = estimate;
        self
    }

    /// How each kind of token counts (default: 1 each).
    pub fn with_weights(mut self, weights: Weights) -> Self {
        self.edit().weights = weights;
        self
    }

    /// Whose `anthropic-ratelimit-*` headers win (default: upstream's).
    pub fn with_upstream_headers(mut self, precedence: HeaderPrecedence) -> Self {
        self.edit().headers = precedence;
        self
    }

    /// Every key's standing, for a `GET /usage` handler (serialize the
    /// `Vec` as JSON).
    pub fn snapshot(&self) -> StoreFuture<Vec<Standing>> {
        self.shared.store.snapshot()
    }

    /// One key's standing.
    pub fn standing(&self, key: &QuotaKey) -> StoreFuture<Option<Standing>> {
        self.shared.store.standing(key)
    }

    /// Sends the settlements the store still holds (the Redis store gathers
    /// them for 5 ms before sending); call it when the service stops, after
    /// its last response.
    pub fn flush(&self) -> StoreFuture<()> {
        self.shared.store.flush()
    }

    /// Counters for `/metrics`.
    pub fn health(&self) -> QuotaHealth {
        QuotaHealth {
            store: self.shared.store.health(),
            settled: self.shared.settled.load(Ordering::Relaxed),
            unknown_usage: self.shared.unknown.load(Ordering::Relaxed),
        }
    }

    /// The compiled limits.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }
}

impl fmt::Debug for QuotaLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaLayer")
            .field("store", &self.shared.store)
            .field("keys", &self.shared.keys)
            .field("estimate", &self.shared.estimate)
            .field("headers", &self.shared.headers)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for QuotaLayer {
    type Service = Quota<S>;

    fn layer(&self, inner: S) -> Quota<S> {
        Quota {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`QuotaLayer`] makes: checks the caller's buckets, answers
/// 429 / 403 locally, and settles admitted requests through a [`UsageHook`].
///
/// `S: Clone` because an admission that waits on Redis takes the service
/// that `poll_ready` readied along into the future (leaving a clone behind),
/// as tower's docs recommend; the memory store answers at once and calls the
/// service directly.
#[derive(Clone)]
pub struct Quota<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Quota<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn body_bytes<B: Body>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| req.body().size_hint().exact())
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Quota<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    ReqB: Body,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let shared = &self.shared;
        let caller = req.extensions().get::<Caller>();
        let id = shared.keys.id(caller, req.headers());
        let policy = shared.limits.resolve(id.as_str().unwrap_or(""), caller);
        if policy.is_unlimited() {
            return ResponseFuture::calling(self.inner.call(req), None, shared.headers);
        }
        let key = id.key();
        let cost = shared.estimate.tokens(body_bytes(&req));
        match shared.store.check(&key, &policy, cost).into_ready() {
            Ok(admission) => admit(admission, &mut self.inner, req, shared),
            Err(check) => {
                // The ready service goes with the request; this one keeps a
                // clone that will be polled ready before its next call.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    headers: shared.headers,
                    state: State::Checking {
                        pending: Box::new(Pending {
                            check,
                            shared: Arc::clone(shared),
                            inner: Some(inner),
                            request: Some(req),
                        }),
                    },
                }
            }
        }
    }
}

fn admit<S, ReqB>(
    admission: Admission,
    inner: &mut S,
    req: Request<ReqB>,
    shared: &Arc<Shared>,
) -> ResponseFuture<S::Future, S, ReqB>
where
    S: Service<Request<ReqB>>,
{
    let Admission {
        verdict,
        standing,
        reservation,
    } = admission;
    match (verdict, reservation) {
        (Verdict::Admit, Some(reservation)) => {
            let admitted = Arc::new(Settlement {
                shared: Arc::clone(shared),
                reservation,
                standing,
                done: AtomicBool::new(false),
            });
            ResponseFuture::calling(inner.call(req), Some(admitted), shared.headers)
        }
        (verdict, _) => ResponseFuture {
            headers: shared.headers,
            state: State::Local {
                answer: Some(Box::new(LocalAnswer { verdict, standing })),
            },
        },
    }
}

pin_project! {
    /// The future of [`Quota`]: an admission check (ready for the memory
    /// store, no allocation; two on the Redis path), then the
    /// inner call or a local answer.
    ///
    /// Unlike most of our layers it names the service and request body
    /// types too (`ResponseFuture<S::Future, S, ReqB>`): while Redis answers
    /// it holds the ready service and the request.
    ///
    /// It holds the one setting the answer needs (where the
    /// `anthropic-ratelimit-*` headers come from), not the layer's shared
    /// state: an admitted request's settlement holds that.
    pub struct ResponseFuture<F, S, ReqB> {
        headers: HeaderPrecedence,
        #[pin]
        state: State<F, S, ReqB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, ReqB> {
        Checking {
            pending: Box<Pending<S, ReqB>>,
        },
        Calling {
            #[pin]
            future: F,
            // Shared with the usage hook once the response comes: the
            // standing and the reservation are ~300 bytes that every layer
            // around this one would otherwise move with its future, for
            // the one allocation the hook needs anyway.
            admitted: Option<Arc<Settlement>>,
        },
        Local {
            // Boxed: refusals and local answers only.
            answer: Option<Box<LocalAnswer>>,
        },
    }
}

/// A check the store answers later (Redis), with the ready service and the
/// request it admits. Boxed: only that path has it (next to a boxed store
/// future and a round trip), and inline it would make every request's
/// future, which each layer around this one moves, 200 bytes larger.
struct Pending<S, ReqB> {
    check: StoreFuture<Admission>,
    shared: Arc<Shared>,
    inner: Option<S>,
    request: Option<Request<ReqB>>,
}

impl<F, S, ReqB> ResponseFuture<F, S, ReqB> {
    fn calling(future: F, admitted: Option<Arc<Settlement>>, headers: HeaderPrecedence) -> Self {
        Self {
            headers,
            state: State::Calling { future, admitted },
        }
    }
}

impl<F, S, ReqB> fmt::Debug for ResponseFuture<F, S, ReqB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Checking { .. } => "checking",
            State::Calling { .. } => "calling",
            State::Local { .. } => "local",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, S, ReqB, ResB, E> Future for ResponseFuture<F, S, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>, Error = E, Future = F>,
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<ResponseBody<ResB>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                StateProj::Checking { pending } => {
                    let Pending {
                        check,
                        shared,
                        inner,
                        request,
                    } = &mut **pending;
                    let admission = ready!(Pin::new(check).poll(cx));
                    let (Some(mut svc), Some(req)) = (inner.take(), request.take()) else {
                        panic!("quota ResponseFuture polled after completion");
                    };
                    let next = admit(admission, &mut svc, req, shared);
                    let next = next.state;
                    self.as_mut().project().state.set(next);
                }
                StateProj::Calling { future, admitted } => {
                    return Poll::Ready(match ready!(future.poll(cx)) {
                        Ok(res) => Ok(finish(res, admitted.take(), *this.headers)),
                        Err(e) => {
                            // No response: the request failed below us and
                            // billed nothing.
                            if let Some(settlement) = admitted.take() {
                                settlement.settle(Some(0));
                            }
                            Err(e)
                        }
                    });
                }
                StateProj::Local { answer } => {
                    let answer = answer
                        .take()
                        .expect("quota ResponseFuture polled after completion");
                    return Poll::Ready(Ok(answer.render(*this.headers)));
                }
            }
        }
    }
}

fn finish<B>(
    res: Response<B>,
    admitted: Option<Arc<Settlement>>,
    precedence: HeaderPrecedence,
) -> Response<ResponseBody<B>> {
    let (mut parts, body) = res.into_parts();
    if let Some(settlement) = admitted {
        write_standing(&mut parts.headers, &settlement.standing, precedence);
        parts.extensions.insert(UsageHook::from_arc(settlement));
    }
    Response::from_parts(parts, ResponseBody::upstream(body))
}

struct LocalAnswer {
    verdict: Verdict,
    standing: Standing,
}

impl LocalAnswer {
    fn render<B>(self, precedence: HeaderPrecedence) -> Response<ResponseBody<B>> {
        let s = &self.standing;
        let err = match self.verdict {
            Verdict::RateLimited { wait } => {
                let mut limits = Vec::new();
                if let Some(t) = s.tokens {
                    limits.push(format!("{} tokens", t.limit));
                }
                if let Some(r) = s.requests {
                    limits.push(format!("{} requests", r.limit));
                }
                ClaudeError::new(
                    ErrorClass::RateLimited,
                    format!(
                        "This request would exceed your rate limit of {} per minute; retry after {:.3} s.",
                        limits.join(" and "),
                        wait.as_secs_f64()
                    ),
                )
                .with_retry_after(RetryAfter::new(wait))
            }
            Verdict::QuotaExhausted { quota, resets } => ClaudeError::new(
                ErrorClass::Auth,
                format!(
                    "Your token quota of {} per {} is used up; it resets at {resets}.",
                    quota.tokens(),
                    quota.period()
                ),
            )
            .with_status(StatusCode::FORBIDDEN),
            Verdict::Admit | Verdict::Unavailable => ClaudeError::new(
                ErrorClass::Server,
                "The quota store is unavailable; retry shortly.",
            )
            .with_status(StatusCode::SERVICE_UNAVAILABLE),
        };
        let mut res: Response<ResponseBody<B>> = error_response(&err);
        write_standing(res.headers_mut(), s, precedence);
        if let Some(wait) = err.retry_after() {
            res.extensions_mut().insert(wait);
        }
        res.extensions_mut().insert(err);
        res
    }
}

fn write_standing(h: &mut HeaderMap, s: &Standing, precedence: HeaderPrecedence) {
    let ours = match precedence {
        HeaderPrecedence::Ours => true,
        HeaderPrecedence::None => false,
        HeaderPrecedence::Upstream => !h.keys().any(|k| k.as_str().starts_with(RATELIMIT_PREFIX)),
    };
    h.reserve(9);
    let mut put = |names: [HeaderName; 3], limit: u64, remaining: u64, reset: Timestamp| {
        let [l, r, t] = names;
        h.insert(l, HeaderValue::from(limit));
        h.insert(r, HeaderValue::from(remaining));
        h.insert(t, reset.header_value());
    };
    if ours {
        let tokens = [TOKENS_LIMIT, TOKENS_REMAINING, TOKENS_RESET];
        if let Some(t) = s.tokens {
            put(tokens, t.limit, t.remaining, t.reset);
        } else if let Some(q) = s.quota {
            put(tokens, q.limit, q.remaining, q.reset);
        }
        if let Some(r) = s.requests {
            put(
                [REQUESTS_LIMIT, REQUESTS_REMAINING, REQUESTS_RESET],
                r.limit,
                r.remaining,
                r.reset,
            );
        }
    }
    if let Some(q) = s.quota {
        put(
            [QUOTA_LIMIT, QUOTA_REMAINING, QUOTA_RESET],
            q.limit,
            q.remaining,
            q.reset,
        );
    }
}

// === impl Settlement ===

/// Settles one admitted request exactly once: from the usage record when the
/// usage layer calls the hook, else (dropped uncalled) the estimate stands.
/// It also carries the standing the admission returned, for the response's
/// headers.
struct Settlement {
    shared: Arc<Shared>,
    reservation: Reservation,
    standing: Standing,
    done: AtomicBool,
}

impl Settlement {
    /// `actual`: the tokens to settle at, `None` when unknown.
    fn settle(&self, actual: Option<u64>) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        match actual {
            Some(tokens) => {
                self.shared.settled.fetch_add(1, Ordering::Relaxed);
                self.shared.store.settle(&self.reservation, tokens);
            }
            None => {
                self.shared.unknown.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl UsageSink for Settlement {
    fn record(&self, record: &UsageRecord) {
        let actual = match record.usage {
            Some(usage) => Some(self.shared.weights.tokens(&usage)),
            // An error answer with no usage billed nothing.
            None if !record.status.is_success() => Some(0),
            None => None,
        };
        self.settle(actual);
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        // Usage unknown: the estimate charged at admission stands (refunding
        // it would let a stack without a usage layer spend without limit).
        self.settle(None);
    }
}
