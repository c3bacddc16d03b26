use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use http::StatusCode;

use crate::{Attempt, ErrorClass, RequestIds, RetryAfter, RouteId};

/// A classified failure from one route, or produced locally by a layer.
///
/// Normalize puts one in the response extensions of every failed response
/// (and returns one as the error for transport failures); Retry and Failover
/// read it to decide. It carries everything a log line or a support ticket
/// needs: the route, the status, the class, the server's retry hint, the raw
/// `error.type` / `error.code`, the message and every request id.
///
/// `ClaudeError` is `Clone` (extensions require it) and one pointer wide:
/// its fields live behind an `Arc`, so `Result<Response, ClaudeError>` stays
/// small on the hot path and a clone is a reference count increment. An
/// underlying cause is reachable through [`std::error::Error::source`].
///
/// ```
/// use claude_tower_core::{ClaudeError, ErrorClass, RouteId};
/// use http::StatusCode;
///
/// let err = ClaudeError::new(ErrorClass::TransientAuth, "backend auth blip")
///     .with_route(RouteId::new("foundry"))
///     .with_status(StatusCode::UNAUTHORIZED)
///     .with_code("invalid_model_endpoint_authentication");
/// assert_eq!(
///     err.to_string(),
///     "route foundry: 401 Unauthorized (transient-auth, invalid_model_endpoint_authentication): backend auth blip",
/// );
/// assert!(err.retryable());
/// ```
#[derive(Clone)]
pub struct ClaudeError {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    route: Option<RouteId>,
    status: Option<StatusCode>,
    class: ErrorClass,
    retry_after: Option<RetryAfter>,
    code: Option<Arc<str>>,
    message: Arc<str>,
    request_ids: RequestIds,
    should_retry: Option<bool>,
    attempt: Option<Attempt>,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl ClaudeError {
    /// A failure of `class` with a human-readable message.
    pub fn new(class: ErrorClass, message: impl Into<Arc<str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                route: None,
                status: None,
                class,
                retry_after: None,
                code: None,
                message: message.into(),
                request_ids: RequestIds::default(),
                should_retry: None,
                attempt: None,
                source: None,
            }),
        }
    }

    // Builders run on a fresh, unshared error, so this does not copy.
    fn edit(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.inner)
    }

    /// Sets the route that produced the failure.
    pub fn with_route(mut self, route: RouteId) -> Self {
        self.edit().route = Some(route);
        self
    }

    /// Sets the HTTP status the route answered with.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.edit().status = Some(status);
        self
    }

    /// Sets the wait the server asked for.
    pub fn with_retry_after(mut self, wait: RetryAfter) -> Self {
        self.edit().retry_after = Some(wait);
        self
    }

    /// Sets the raw error code or type (`error.type` on Anthropic,
    /// `error.code` on Azure).
    pub fn with_code(mut self, code: impl Into<Arc<str>>) -> Self {
        self.edit().code = Some(code.into());
        self
    }

    /// Sets the request ids of the response.
    pub fn with_request_ids(mut self, ids: RequestIds) -> Self {
        self.edit().request_ids = ids;
        self
    }

    /// Sets the server's `x-should-retry` answer.
    pub fn with_should_retry(mut self, should_retry: bool) -> Self {
        self.edit().should_retry = Some(should_retry);
        self
    }

    /// Sets the attempt that failed last: Retry puts it on the error it
    /// gives up with, so that a count survives where there is no response
    /// to carry an [`Attempt`] extension (a connection refused three times
    /// is three attempts).
    pub fn with_attempt(mut self, attempt: Attempt) -> Self {
        self.edit().attempt = Some(attempt);
        self
    }

    /// Sets the underlying cause (a transport error, a credential error).
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.edit().source = Some(Arc::new(source));
        self
    }

    /// Sets the underlying cause from a boxed error.
    pub fn with_boxed_source(mut self, source: Box<dyn StdError + Send + Sync + 'static>) -> Self {
        self.edit().source = Some(Arc::from(source));
        self
    }

    /// The route that produced the failure; `None` for local failures.
    pub fn route(&self) -> Option<&RouteId> {
        self.inner.route.as_ref()
    }

    /// The HTTP status the route answered with; `None` when no response
    /// arrived (a transport failure) or the failure is local.
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// The status to answer a client with: the route's, or the class's
    /// [default](ErrorClass::default_status).
    pub fn response_status(&self) -> StatusCode {
        self.inner
            .status
            .unwrap_or(self.inner.class.default_status())
    }

    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        self.inner.class
    }

    /// The wait the server asked for, if it said.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        self.inner.retry_after
    }

    /// The raw `error.type` (Anthropic) or `error.code` (Azure).
    pub fn code(&self) -> Option<&str> {
        self.inner.code.as_deref()
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// Every request id of the failed response.
    pub fn request_ids(&self) -> &RequestIds {
        &self.inner.request_ids
    }

    /// The server's `x-should-retry` answer, if it sent one.
    pub fn should_retry(&self) -> Option<bool> {
        self.inner.should_retry
    }

    /// The attempt that failed last, when Retry recorded it
    /// ([`with_attempt`](Self::with_attempt)).
    pub fn attempt(&self) -> Option<&Attempt> {
        self.inner.attempt.as_ref()
    }

    /// Whether the same request may be sent to the same route again: the
    /// server's `x-should-retry` if present, else the class's
    /// [`retryable`](ErrorClass::retryable).
    pub fn retryable(&self) -> bool {
        self.inner
            .should_retry
            .unwrap_or(self.inner.class.retryable())
    }

    /// Whether another route may serve the request: the class's
    /// [`failover_worthy`](ErrorClass::failover_worthy).
    pub fn failover_worthy(&self) -> bool {
        self.inner.class.failover_worthy()
    }

    /// The first `ClaudeError` in `err` or its source chain: how Retry and
    /// Failover read a failure out of any error a layer below returned (a
    /// `tower::BoxError`, a timeout wrapping one), by type and never by
    /// message text.
    ///
    /// ```
    /// use claude_tower_core::{ClaudeError, ErrorClass};
    ///
    /// let boxed: Box<dyn std::error::Error + Send + Sync> =
    ///     Box::new(ClaudeError::new(ErrorClass::Auth, "no token"));
    /// let found = ClaudeError::find_in(&*boxed).expect("found through the box");
    /// assert_eq!(found.class(), ErrorClass::Auth);
    /// ```
    pub fn find_in<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a ClaudeError> {
        let mut next = Some(err);
        while let Some(err) = next {
            if let Some(found) = err.downcast_ref::<ClaudeError>() {
                return Some(found);
            }
            next = err.source();
        }
        None
    }
}

impl fmt::Debug for ClaudeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClaudeError");
        d.field("route", &self.inner.route)
            .field("status", &self.inner.status)
            .field("class", &self.inner.class)
            .field("retry_after", &self.inner.retry_after)
            .field("code", &self.inner.code)
            .field("message", &self.inner.message)
            .field("request_ids", &self.inner.request_ids);
        if let Some(should_retry) = self.inner.should_retry {
            d.field("should_retry", &should_retry);
        }
        if let Some(attempt) = &self.inner.attempt {
            d.field("attempt", attempt);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for ClaudeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(route) = &self.inner.route {
            write!(f, "route {route}: ")?;
        }
        if let Some(status) = self.inner.status {
            write!(f, "{status} ")?;
        }
        write!(f, "({}", self.inner.class)?;
        if let Some(code) = &self.inner.code {
            write!(f, ", {code}")?;
        }
        write!(f, "): {}", self.inner.message)?;
        if let Some(wait) = self.inner.retry_after {
            write!(f, " (retry after {:?})", wait.duration())?;
        }
        if !self.inner.request_ids.is_empty() {
            write!(f, " [{}]", self.inner.request_ids)?;
        }
        Ok(())
    }
}

impl StdError for ClaudeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn should_retry_overrides_the_class() {
        let err = ClaudeError::new(ErrorClass::Overloaded, "busy");
        assert!(err.retryable());
        assert!(!err.clone().with_should_retry(false).retryable());
        let auth = ClaudeError::new(ErrorClass::Auth, "bad key");
        assert!(!auth.retryable());
        assert!(auth.with_should_retry(true).retryable());
    }

    #[test]
    fn display_names_everything_a_ticket_needs() {
        let mut h = http::HeaderMap::new();
        h.insert("apim-request-id", "abc".parse().unwrap());
        let err = ClaudeError::new(ErrorClass::RateLimited, "too many")
            .with_route(RouteId::new("foundry"))
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .with_code("429")
            .with_retry_after(RetryAfter::new(Duration::from_secs(2)))
            .with_request_ids(RequestIds::from_headers(&h));
        assert_eq!(
            err.to_string(),
            "route foundry: 429 Too Many Requests (rate-limited, 429): too many \
             (retry after 2s) [apim-request-id=abc]"
        );
    }

    #[test]
    fn carries_the_last_attempt() {
        let err = ClaudeError::new(ErrorClass::Transport, "connection refused");
        assert_eq!(err.attempt(), None);
        let shared = err.clone();
        let err = err.with_attempt(Attempt::new(RouteId::new("anthropic"), 3));
        assert_eq!(err.attempt().map(Attempt::number), Some(3));
        assert_eq!(shared.attempt(), None, "a clone is not edited");
        assert!(format!("{err:?}").contains("attempt"));
    }

    #[test]
    fn source_chain_is_walkable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = ClaudeError::new(ErrorClass::Transport, "connection reset").with_source(io);
        let source = err.source().expect("source kept");
        let io = source.downcast_ref::<std::io::Error>().expect("io error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(err.response_status(), StatusCode::BAD_GATEWAY);
        assert_eq!(err.status(), None);
    }

    #[test]
    fn find_in_walks_the_source_chain() {
        #[derive(Debug)]
        struct Wrapper(ClaudeError);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped = Wrapper(ClaudeError::new(ErrorClass::Timeout, "slow"));
        assert_eq!(
            ClaudeError::find_in(&wrapped).map(ClaudeError::class),
            Some(ErrorClass::Timeout)
        );
        let io = std::io::Error::other("plain");
        assert!(ClaudeError::find_in(&io).is_none());
    }

    #[test]
    fn is_one_pointer_wide() {
        assert_eq!(
            std::mem::size_of::<ClaudeError>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn is_send_sync_and_an_extension() {
        fn assert_ext<T: Clone + Send + Sync + 'static>() {}
        assert_ext::<ClaudeError>();
        let mut ext = http::Extensions::new();
        ext.insert(ClaudeError::new(ErrorClass::Server, "boom"));
        assert_eq!(
            ext.get::<ClaudeError>().map(ClaudeError::class),
            Some(ErrorClass::Server)
        );
    }
}
